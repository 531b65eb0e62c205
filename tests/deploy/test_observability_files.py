"""deploy/prometheus/alerts.yml and deploy/grafana/vary-dashboard.json agree with the app they watch.

Every series an alert or a panel queries is one a real ``/metrics`` scrape of the app (real Valkey,
demo content and model, traffic through the app) exports; the rule file has Prometheus's rule-file
structure and the dashboard what Grafana needs to load it. Where Debian's ``promtool`` is installed
(``apt-get install prometheus``) the rules are also checked, and unit-tested
(deploy/prometheus/alerts.test.yml), by Prometheus itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "vary-dashboard.json"
DELIVERY, ADMIN = "obs-delivery-key", "obs-admin-key"

#: Series Prometheus itself makes for every scrape job (not the app's).
PROMETHEUS_OWN = {"up"}
#: The sample names Prometheus stores for each family type of the text format.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "stateset": ("",),
    "gauge": ("",),
    "unknown": ("",),
}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
#: Family names of the last scrape (a family's samples share its name as a prefix).
_FAMILIES: set[str] = set()
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def _rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in _rules()["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert and every panel target."""
    found = [(f"alert {rule['alert']}", rule["expr"]) for rule in _alert_rules()]
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return found


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: what is left once strings, label matchers,
    range selectors, grouping clauses and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, quantile args)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries: [5m], [$__rate_interval]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in PROMQL_WORDS or re.fullmatch(r"e\d*", name):
            continue
        names.add(name)
    return names


def test_the_name_extraction_reads_promql_as_prometheus_does() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(vary_http_request_duration_seconds_bucket{route="/v1/x",'
        ' status=~"5.."}[5m]))) > 0.25 unless on() max(vary_up_like:recorded) > 1e-9 and bool vary_b offset 5m'
    )
    assert metric_names(expr) == {"vary_http_request_duration_seconds_bucket", "vary_up_like:recorded", "vary_b"}


@pytest.fixture
def scraped(redis_url: str, model_dir: Path) -> set[str]:
    """Every sample name a real scrape exports, after traffic that moves the series, plus the names
    a family of that type stores once it has samples (a counter nobody incremented yet)."""
    settings = Settings(
        redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,), train_demo_model=False
    )
    delivery, admin = {"Authorization": f"Bearer {DELIVERY}"}, {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(settings)) as client:
        for i in range(4):
            body = {"visitor": {"id": f"obs-{i}", "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
            assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
        events = [{"type": "page_view", "visitor_id": "obs-0", "channel": "web"}]
        assert client.post("/v1/events", json={"events": events}, headers=delivery).status_code == 202
        answer = client.get("/metrics", headers=admin)
        assert answer.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(answer.text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        _FAMILIES.add(family.name)
    assert "vary_decisions_total" in names and "vary_http_request_duration_seconds_bucket" in names
    return names


def test_every_series_in_the_alerts_and_the_dashboard_is_one_the_app_exports(scraped: set[str]) -> None:
    used: dict[str, set[str]] = {}
    for where, expr in _queries():
        names = metric_names(expr)
        assert names, f"{where}: no series in {expr!r}"
        for name in names:
            used.setdefault(name, set()).add(where)
    unknown = {name: sorted(where) for name, where in used.items() if name not in scraped | PROMETHEUS_OWN}
    assert not unknown, f"series no /metrics scrape has: {unknown}"
    # and the dashboard watches every Vary family the app exports
    families = {n for n in scraped if n.startswith("vary_") and not n.endswith("_created")} & _FAMILIES
    shown = {n for where, expr in _queries() if where.startswith("panel") for n in metric_names(expr)}
    unwatched = {f for f in families if not any(n.startswith(f) for n in shown)}
    assert not unwatched, f"exported but on no panel: {sorted(unwatched)}"


def test_the_rule_file_has_prometheus_structure() -> None:
    document = _rules()
    assert set(document) == {"groups"} and document["groups"]
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    alerts = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"} and group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            alerts.append(rule["alert"])
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert DURATION.match(rule["for"]), f"{rule['alert']}: for {rule['for']!r}"
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            runbook = rule["annotations"].get("runbook")
            if runbook is not None:  # a runbook names a real doc
                assert (ROOT / runbook.split()[0]).is_file(), runbook
    assert len(alerts) == len(set(alerts)), "alert names repeat"


def test_the_alerts_cover_the_failure_modes_operations_describes() -> None:
    by_series: dict[str, list[str]] = {}
    for rule in _alert_rules():
        for name in metric_names(rule["expr"]):
            by_series.setdefault(name, []).append(rule["expr"])
    assert any('degraded="true"' in e for e in by_series["vary_decisions_total"])  # Redis down
    assert "vary_profile_breaker_open" in by_series
    assert any('exposure_spool' in e for e in by_series["vary_local_bytes"])  # spool growing
    assert any('event_spool' in e for e in by_series["vary_local_bytes"])
    assert any('outcome="lost"' in e for e in by_series["vary_exposures_total"])
    assert "vary_aggregator_lag_entries" in by_series and "vary_aggregator_pending_entries" in by_series
    assert any('"stale"' in e for e in by_series["vary_content_info"])  # content stale
    assert "vary_content_syncs_total" in by_series
    assert "vary_rate_limited_requests_total" in by_series
    assert "vary_http_request_duration_seconds_bucket" in by_series  # slow decisions


def test_the_dashboard_has_what_grafana_needs() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    uid = "${" + variable["name"] + "}"
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    queried = 0
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip()
            queried += 1
    assert queried >= 10


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False)


def test_prometheus_itself_accepts_and_fires_the_rules() -> None:
    """Only where promtool is installed (Debian's ``prometheus`` package; CI images without it check
    the structure above instead)."""
    assert RULES_TEST.is_file()
    if shutil.which("promtool") is None:
        return
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
