"""Vary's ``format=cda`` answers render through Contentful's own ``@contentful/rich-text-html-renderer``.

The renderer is the published npm package (pinned in richtext_js/package-lock.json), run under Node
(tests/node_tools.py: Node from the ``test`` extra's wheel, else from PATH; a missing Node fails the
test, it never skips) by richtext_js/render.mjs, with the ``renderNode`` options Contentful's docs
show: embedded entries and assets are looked up by id in the answer's entries and ``includes``.
"""

from __future__ import annotations

import copy
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from tests.node_tools import NodeProject, npm_project

HARNESS = Path(__file__).parent / "richtext_js"
FIXTURES = Path(__file__).parents[2] / "fixtures" / "contentful"


@pytest.fixture(scope="module")
def renderer() -> NodeProject:
    return npm_project(HARNESS)


def _render(renderer: NodeProject, documents: list[dict[str, Any]], answer: dict[str, Any]) -> list[str]:
    payload = {"documents": documents, "items": answer["entries"], "includes": answer["includes"]}
    return renderer.run("render.mjs", payload)["html"]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("content", ()):
        yield from _nodes(child)


@pytest.fixture
def space(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """Contentful's marketing-template export, with one rich-text body given an inline entry and an
    asset block (in memory: the export itself embeds entries only as blocks and hyperlinks)."""
    export = json.loads((FIXTURES / "marketing-fintech-export.json").read_text())
    export = copy.deepcopy(export)
    host = next(e for e in export["entries"] if '"embedded-entry-block"' in json.dumps(e["fields"]))
    body = next(
        v
        for values in host["fields"].values()
        for v in values.values()
        if isinstance(v, dict) and v.get("nodeType") == "document"
    )
    other = next(e for e in export["entries"] if e is not host)["sys"]["id"]
    body["content"] += [
        {
            "nodeType": "paragraph",
            "data": {},
            "content": [
                {"nodeType": "text", "value": "Inline: ", "marks": [], "data": {}},
                {
                    "nodeType": "embedded-entry-inline",
                    "content": [],
                    "data": {"target": {"sys": {"id": other, "type": "Link", "linkType": "Entry"}}},
                },
            ],
        },
        {
            "nodeType": "embedded-asset-block",
            "content": [],
            "data": {
                "target": {
                    "sys": {"id": export["assets"][0]["sys"]["id"], "type": "Link", "linkType": "Asset"}
                }
            },
        },
    ]
    path = tmp_path / "space.json"
    path.write_text(json.dumps(export))
    with TestClient(create_app(msgspec.structs.replace(settings, content_source=str(path)))) as client:
        yield client, export


def test_every_rich_text_field_renders_with_its_embeds_resolved(
    renderer: NodeProject, space: tuple[TestClient, dict[str, Any]], delivery: dict[str, str]
) -> None:
    client, export = space
    rich_ids = [
        e["sys"]["id"] for e in export["entries"] if '"nodeType": "document"' in json.dumps(e["fields"])
    ]
    urls = {a["sys"]["id"]: a["fields"]["file"]["en-US"]["url"] for a in export["assets"]}
    kinds: set[str] = set()
    for locale in ("en-US", "de-DE"):
        body = {"visitor": {"id": "v-render"}, "entries": rich_ids, "locale": locale, "format": "cda"}
        answer = client.post("/v1/personalize", json=body, headers=delivery)
        assert answer.status_code == 200, answer.text
        data = answer.json()
        documents = [
            value
            for entry in data["entries"]
            for value in entry["fields"].values()
            if isinstance(value, dict) and value.get("nodeType") == "document"
        ]
        rendered = _render(renderer, documents, data)
        for document, out in zip(documents, rendered, strict=True):
            text = html.unescape(re.sub(r"<[^>]+>", "", out))
            for node in _nodes(document):
                kinds.add(node["nodeType"])
                if node["nodeType"] == "text" and node["value"].strip():
                    assert all(part.strip() in text for part in node["value"].split("\n")), node["value"]
                target = node.get("data", {}).get("target", {}).get("sys", {})
                if node["nodeType"] in ("embedded-entry-block", "embedded-entry-inline", "entry-hyperlink"):
                    assert f':{target["id"]}"' in out  # found in includes, not "missing"
                if node["nodeType"] == "embedded-asset-block":
                    assert f'<img src="https:{urls[target["id"]]}"' in out
    assert {
        "embedded-entry-block",
        "embedded-entry-inline",
        "embedded-asset-block",
        "entry-hyperlink",
    } <= kinds
