"""End to end: the example plugin package, installed with pip, found through its entry point.

``pip install --no-deps --target <tmp> examples/vary-example-plugin`` builds and installs the real
package into a directory that only the server's ``PYTHONPATH`` sees, so the test environment is not
changed. The real ``vary serve`` then loads it through the ``vary.plugins`` entry point: an audience
on the plugin's ``crm_tier`` attribute matches (and the reason says so), and the plugin's sink file
receives the exposures that the sink runner reads from the stream.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from content.sources import demo_space_path
from tests.content.spaces import remove_field, set_field
from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DELIVERY = "e2e-plugin-delivery"
ADMIN = "e2e-plugin-admin"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-target")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(ROOT / "examples" / "vary-example-plugin")],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return target


@pytest.fixture
def server(redis_url: str, model_dir: Path, tmp_path: Path, plugin_dir: Path) -> Iterator[tuple[VaryProcess, Path]]:
    export = json.loads(demo_space_path().read_text())
    remove_field(export, "priceSensitive", "segment")
    remove_field(export, "priceSensitive", "minScore")
    set_field(export, "priceSensitive", "rules", {"crm_tier": "gold"})
    space = tmp_path / "space.json"
    space.write_text(json.dumps(export))
    table = tmp_path / "crm.csv"
    table.write_text("visitor_id,tier\ncustomer-gold,gold\ncustomer-basic,basic\n")
    sink_file = tmp_path / "sink.jsonl"
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir / "models", data_dir / "models")
    pythonpath = os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    process = VaryProcess(
        {
            "VARY_REDIS_URL": redis_url,
            "VARY_DELIVERY_KEYS": DELIVERY,
            "VARY_ADMIN_KEYS": ADMIN,
            "VARY_CONTENT_SOURCE": str(space),
            "VARY_EXAMPLE_CRM_TABLE": str(table),
            "VARY_EXAMPLE_SINK_FILE": str(sink_file),
            # One worker: /v1/plugins health counts this worker's calls, and the test counts them.
            "VARY_WORKERS": "1",
            "PYTHONPATH": pythonpath,
        },
        data_dir,
    )
    try:
        process.wait_ready()
        yield process, sink_file
    finally:
        process.stop()


def test_the_example_plugin_adds_an_attribute_and_receives_exposures(server: tuple[VaryProcess, Path]) -> None:
    process, sink_file = server
    delivery = {"Authorization": f"Bearer {DELIVERY}"}
    decisions = {}
    for visitor in ("customer-gold", "customer-basic"):
        body = {"visitor": {"id": visitor, "country": "DE"}, "entries": ["heroHome", "bannerShipping"]}
        response = httpx.post(f"{process.base}/v1/personalize", json=body, headers=delivery, timeout=10)
        assert response.status_code == 200, response.text + process.output()
        decisions[visitor] = response.json()["entries"]
    gold_hero = decisions["customer-gold"][0]
    assert gold_hero["experience"] == "hero-sale", gold_hero
    assert "crm_tier" in gold_hero["reason"] and "gold" in gold_hero["reason"]
    assert decisions["customer-basic"][0]["experience"] != "hero-sale"

    expected = {e["exposure_id"] for entries in decisions.values() for e in entries}
    received: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not expected <= received:
        if sink_file.exists():
            lines = [json.loads(line) for line in sink_file.read_text().splitlines() if line]
            received = {line["data"]["id"] for line in lines if line["kind"] == "exposure"}
        time.sleep(0.2)
    assert expected <= received, process.output()

    listed = httpx.get(f"{process.base}/v1/plugins", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert listed.status_code == 200
    (example,) = [p for p in listed.json()["plugins"] if p["name"] == "example"]
    assert example["loaded"] and example["seams"] == ["attributes", "sinks"]
    assert example["origin"] == "entry point example = vary_example_plugin:plugin"
    assert example["health"]["calls"] == 2 and example["health"]["failures"] == 0
    (sink,) = listed.json()["sinks"]
    assert sink["name"] == "example-jsonl" and sink["provider"] == "example" and sink["in_process"]
