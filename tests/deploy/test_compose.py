"""compose.yaml is a valid Compose file (the Compose Specification's own JSON schema, vendored in
deploy/) and agrees with the code and files it runs: Vary's variables are real settings that load,
Valkey keeps its data, Prometheus scrapes Vary with the admin key and loads the alert rules, Grafana
gets the Prometheus datasource and the dashboard, and every file it mounts exists."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from opentelemetry import environment_variables as otel_api_variables
from opentelemetry.sdk import environment_variables as otel_sdk_variables

from api import tracing
from api.settings import _FIELDS, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / "deploy" / "compose-spec.schema.json"
#: The vendored schema: compose-spec/compose-spec, schema/compose-spec.json at commit
#: 170098ba07d9f53c383a41bfd4c5166b0a4529a6 (deploy/README.md), unchanged.
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
ENV = {"VARY_ADMIN_KEY": "compose-admin-key"}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _validator() -> Any:
    return jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (the forms the
    file uses), throughout a parsed document. A missing required variable raises ValueError with
    the file's message, as ``docker compose`` refuses to start."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        have = env.get(name)
        if op in (":-", "-"):
            return have if have or (op == "-" and have is not None) else arg
        if op in (":?", "?") and not have:
            raise ValueError(f"{name}: {arg}")
        return have or ""

    return _VARIABLE.sub(one, value)


def test_the_vendored_schema_is_the_published_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")


def test_compose_yaml_validates_against_the_compose_specification() -> None:
    validator = _validator()
    document = _compose()
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors
    assert validator.is_valid(interpolate(document, ENV))
    # the schema is really enforced: a misspelt key or a wrong type is refused
    broken = copy.deepcopy(document)
    broken["services"]["vary"]["enviroment"] = {"VARY_PORT": "8000"}
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(document)
    broken["services"]["valkey"]["volumes"] = {"valkey-data": "/data"}  # a list, not a mapping
    assert not validator.is_valid(broken)


def test_the_admin_key_is_required_and_named() -> None:
    with pytest.raises(ValueError, match="VARY_ADMIN_KEY"):
        interpolate(_compose(), {})


def _service(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(_compose(), ENV if env is None else env)["services"][name]


def _otel_variables() -> set[str]:
    """The ``OTEL_*`` names the installed OpenTelemetry API and SDK read (their published constants)."""
    names = set()
    for module in (otel_api_variables, otel_sdk_variables):
        names |= {v for k, v in vars(module).items() if k.startswith("OTEL_") and isinstance(v, str)}
    return names


def test_vary_reads_every_variable_it_is_given_and_they_load() -> None:
    environment = _service("vary")["environment"]
    names = set(environment)
    vary_names = {n for n in names if n.startswith("VARY_")}
    assert not vary_names - set(_FIELDS), f"not settings of api/settings.py: {sorted(vary_names - set(_FIELDS))}"
    otel = names - vary_names
    assert otel <= _otel_variables(), f"not OpenTelemetry variables: {sorted(otel - _otel_variables())}"
    settings = load_settings(environment)
    assert settings.admin_keys == ("compose-admin-key",)
    assert settings.delivery_keys == ()  # generated at first start, kept in the data volume
    assert settings.redis_url == "redis://valkey:6379/0"  # the real Valkey, not the embedded one
    assert not tracing.wanted(environment)  # tracing is off unless asked for
    traced = _service("vary", {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})["environment"]
    assert tracing.wanted(traced)


def test_vary_is_built_from_the_dockerfile_and_keeps_its_data_dir() -> None:
    vary = _service("vary")
    build = vary["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    data_dir = re.search(r"VARY_DATA_DIR=(\S+)", dockerfile)
    assert data_dir is not None
    assert any(v.split(":")[1] == data_dir.group(1) for v in vary["volumes"]), "the data dir is not a volume"
    exposed = re.search(r"^EXPOSE (\d+)", dockerfile, re.MULTILINE)
    assert exposed is not None and any(p.endswith(f":{exposed.group(1)}") for p in vary["ports"])
    assert vary["depends_on"]["valkey"]["condition"] == "service_healthy"


def test_valkey_is_real_and_durable() -> None:
    valkey = _service("valkey")
    assert valkey["image"].startswith("valkey/valkey:")
    command = valkey["command"]
    assert command[0] == "valkey-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"  # docs/operations.md
    volume = valkey["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in _compose()["volumes"]
    assert "valkey-cli" in valkey["healthcheck"]["test"]


def test_every_mounted_file_exists() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in _compose()["volumes"], f"{name}: {source} is no named volume"


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → file in the repository, for a service's bind mounts."""
    return {v.split(":")[1]: ROOT / v.split(":")[0] for v in service["volumes"] if v.startswith(".")}


def test_observability_is_an_optional_profile() -> None:
    services = _compose()["services"]
    assert "profiles" not in services["vary"] and "profiles" not in services["valkey"]
    assert services["prometheus"]["profiles"] == ["observability"]
    assert services["grafana"]["profiles"] == ["observability"]


def test_prometheus_scrapes_vary_with_the_admin_key_and_loads_the_rules() -> None:
    prometheus = _service("prometheus")
    mounts = _mounts(prometheus)
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    config = yaml.safe_load(mounts[config_path].read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:
        assert mounts[rule_file] == ROOT / "deploy" / "prometheus" / "alerts.yml"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "vary" and job["metrics_path"] == "/metrics"
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "vary" and any(p.endswith(f":{port}") for p in _service("vary")["ports"])
    # the bearer credentials are the compose secret made from the same variable as VARY_ADMIN_KEYS
    (secret,) = prometheus["secrets"]
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    assert _compose()["secrets"][secret] == {"environment": "VARY_ADMIN_KEY"}
    assert "${VARY_ADMIN_KEY" in _compose()["services"]["vary"]["environment"]["VARY_ADMIN_KEYS"]


def test_grafana_gets_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = _service("grafana")
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert any(p.endswith(":9090") for p in _service("prometheus")["ports"])
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "vary.yml").read_text())["providers"]
    folder = provider["options"]["path"]
    dashboards = {path: file for path, file in mounts.items() if path.startswith(folder + "/")}
    assert list(dashboards.values()) == [ROOT / "deploy" / "grafana" / "vary-dashboard.json"]
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] in dashboards
