"""The deployment recipe (deploy/k8s) and the Dockerfile agree with the code they deploy.

No cluster is needed: the manifests are parsed and checked against the app itself — probes point at
routes the app really serves, every ``VARY_*`` name is a real setting whose value loads, every
container runs a real ``vary`` command, and nothing runs as root.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.app import create_app
from api.cli.main import main as vary_main
from api.redis_client import cluster_seed, is_cluster
from api.settings import _FIELDS, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                doc["_file"] = path.name
                docs.append(doc)
    return docs


DOCS = _documents()


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _deployments() -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == "Deployment"]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def test_every_manifest_parses_and_names_itself() -> None:
    assert DOCS, "no manifests under deploy/k8s"
    for doc in DOCS:
        assert doc.get("apiVersion") and doc.get("kind"), doc["_file"]
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], doc["_file"]


def test_the_recipe_has_every_part() -> None:
    kinds = {(d["kind"], d.get("metadata", {}).get("name")) for d in DOCS}
    assert {
        ("Deployment", "vary-api"),
        ("Deployment", "vary-aggregate"),
        ("Deployment", "vary-sinks"),
        ("Service", "vary-api"),
        ("HorizontalPodAutoscaler", "vary-api"),
        ("ConfigMap", "vary-config"),
        ("Secret", "vary-secrets"),
    } <= kinds


def test_kustomization_lists_every_file() -> None:
    kustomization = _one_kustomization()
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def _one_kustomization() -> dict[str, Any]:
    found = [d for d in DOCS if d["kind"] == "Kustomization"]
    assert len(found) == 1
    return found[0]


def _environment() -> dict[str, str]:
    config = _one("ConfigMap", "vary-config")["data"]
    secret = _one("Secret", "vary-secrets")["stringData"]
    assert not set(config) & set(secret), "a setting is in both the ConfigMap and the Secret"
    return {**config, **secret}


def test_every_variable_is_a_real_setting_and_loads() -> None:
    env = _environment()
    for deployment in _deployments():
        for var in _container(deployment).get("env", []):
            if var["name"].startswith("VARY_"):
                env[var["name"]] = var["value"]
    unknown = sorted(set(env) - set(_FIELDS))
    assert not unknown, f"not fields of api/settings.py: {unknown}"
    for name, value in env.items():
        assert isinstance(value, str), f"{name}: quote the value, ConfigMaps and Secrets hold strings"
    settings = load_settings(env)  # raises SettingsError on a malformed value
    assert is_cluster(settings) and settings.stream_partitions > 1
    assert settings.redis_url and len(cluster_seed(settings.redis_url).nodes) >= 3


def test_every_deployment_reads_the_config_and_the_secret() -> None:
    for deployment in _deployments():
        sources = _container(deployment)["envFrom"]
        assert {"configMapRef": {"name": "vary-config"}} in sources
        assert {"secretRef": {"name": "vary-secrets"}} in sources


def _routes() -> set[str]:
    settings = Settings(delivery_keys=("d",), admin_keys=("a",), redis_url="redis://127.0.0.1:1")
    app = create_app(settings, print_keys=False)
    return {route.path for route in app.routes}


def test_api_probes_point_at_real_routes_on_the_served_port() -> None:
    api = _one("Deployment", "vary-api")
    container = _container(api)
    routes = _routes()
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(_environment()["VARY_PORT"])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes, f"{probe} {get['path']} is not a route of the app"
        assert get["port"] in ports or get["port"] in ports.values()


def test_the_api_does_not_aggregate_and_the_aggregator_has_its_own_deployment() -> None:
    env = {v["name"]: v.get("value") for v in _container(_one("Deployment", "vary-api")).get("env", [])}
    assert load_settings({"VARY_AGGREGATE": env["VARY_AGGREGATE"]}).aggregate is False
    assert _container(_one("Deployment", "vary-aggregate"))["command"][:2] == ["vary", "aggregate"]
    assert _container(_one("Deployment", "vary-sinks"))["command"][:2] == ["vary", "sinks"]


def test_service_and_autoscaler_target_the_api() -> None:
    api = _one("Deployment", "vary-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = _one("Service", "vary-api")
    assert service["spec"]["selector"].items() <= labels.items()
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in _container(api)["ports"]}
    hpa = _one("HorizontalPodAutoscaler", "vary-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vary-api"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "requests" in _container(api)["resources"]  # utilisation is relative to the request


@pytest.mark.parametrize("name", ["vary-api", "vary-aggregate", "vary-sinks"])
def test_containers_run_a_real_vary_command_as_non_root(name: str) -> None:
    deployment = _one("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    command = container["command"]
    assert command[0] == "vary"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        vary_main([command[1], "--help"])
    assert exit_.value.code == 0, f"`vary {command[1]}` is not a command"
    for option in (arg for arg in command[2:] if arg.startswith("--")):
        assert option in out.getvalue(), f"`vary {command[1]}` has no option {option}"


def test_dockerfile_runs_as_non_root_and_serves_by_default() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    uid = int(users[-1].split(":")[0])
    for deployment in _deployments():
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    cmd = [line for line in lines if line.startswith("CMD ")][-1]
    assert re.fullmatch(r'CMD \["vary", "serve"\]', cmd)
    assert any(line.startswith("EXPOSE 8000") for line in lines)
