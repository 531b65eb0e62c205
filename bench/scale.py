"""Scale: decision cost as a request asks for more experiences, and as the space grows.

* **Experiences per request** (1 → 50, the API's maximum of entries per request): ``decide()`` for
  ``n`` entries that each carry one running experience (alternately everyone / an audience
  condition, hash v2), a new visitor every call, no segment model.
* **Space size** (the demo space → 1,000 entries / 50 experiences → 10,000 entries / 500
  experiences): a synthetic ``contentful space export`` built from the demo space's content types,
  locales and audiences (banners with an English and a German text, each experience on its own
  baseline with one or two variant entries, the rest plain entries). For each size: loading the
  export, compiling the snapshot (time), the memory the compiled snapshot holds, the loaded items it keeps
  included (``tracemalloc``: retained, and the peak while loading and compiling), and ``decide()`` for a 3-entry request on that snapshot — which
  should not depend on the size of the space (experiences are looked up per entry, never scanned).

The HTTP side of the scale curve (req/s and p99 at 1–128 connections) is in :mod:`bench.run`.
"""

from __future__ import annotations

import copy
import gc
import json
import random
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import time_per_call
from personalization.decision.decide import EntryRequest, decide
from personalization.types import Audience, Experience, Profile, Visitor

__all__ = ["experiences_per_request", "space_sizes", "synthetic_export", "run"]


def _visitors(n: int) -> list[Visitor]:
    rng = random.Random(5)
    return [
        Visitor(id=f"{rng.getrandbits(128):032x}", channel="web", country=rng.choice(["US", "DE", "CA"]),
                device="mobile")
        for _ in range(n)
    ]


def experiences_per_request(quick: bool = False) -> list[dict[str, Any]]:
    counts = (1, 10, 50) if quick else (1, 5, 10, 25, 50)
    batch, repeats, min_time = (50, 3, 0.05) if quick else (100, 5, 0.2)
    audience = Audience(id="aud", key="north_america", name="North America",
                        condition={"country": {"$in": ["CA", "US"]}})
    experiences = [
        Experience(id=f"e{i}", key=f"scale-exp-{i}", name=f"scale {i}", type="ab_test",
                   variants=(f"e{i}-v1",), weights=(0.5, 0.5), audience=audience if i % 2 else None)
        for i in range(max(counts))
    ]
    visitors = _visitors(batch)
    profile = Profile()
    now = time.time()
    rows = []
    for n in counts:
        entries = [EntryRequest(f"entry-{i}", (experiences[i],)) for i in range(n)]

        def call(entries: list[EntryRequest] = entries) -> None:
            for visitor in visitors:
                decide(visitor, profile, entries, None, now)

        us = time_per_call(call, batch, repeats, min_time) * 1e6
        rows.append({"experiences": n, "decide_us": round(us, 1), "us_per_experience": round(us / n, 1)})
    return rows


def synthetic_export(n_entries: int, n_experiences: int) -> dict[str, Any]:
    """A space export with ``n_entries`` entries, ``n_experiences`` of them experiences (each on its own
    baseline banner with 1–2 variants), built on the demo space's content types, locales, audiences."""
    from content import demo_space_path

    demo = json.loads(Path(demo_space_path()).read_text())
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in demo["entries"]:
        by_type.setdefault(entry["sys"]["contentType"]["sys"]["id"], []).append(entry)
    audiences = by_type["varyAudience"]
    banner, experience = by_type["banner"][0], by_type["varyExperience"][0]

    def link(entry_id: str) -> dict[str, Any]:
        return {"sys": {"type": "Link", "linkType": "Entry", "id": entry_id}}

    def make(template: dict[str, Any], entry_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        entry = {"metadata": template.get("metadata", {}), "sys": copy.deepcopy(template["sys"])}
        entry["sys"]["id"] = entry_id
        entry["fields"] = fields
        return entry

    def banner_entry(entry_id: str, text: str, experience_id: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "text": {"en-US": text, "de-DE": f"{text} (de)"},
            "url": {"en-US": f"/{entry_id}"},
        }
        if experience_id:
            fields["varyExperiences"] = {"en-US": [link(experience_id)]}
        return make(banner, entry_id, fields)

    entries: list[dict[str, Any]] = list(copy.deepcopy(audiences))
    for i in range(n_experiences):
        variants = [f"b{i}v1"] + ([f"b{i}v2"] if i % 3 == 0 else [])
        weights = [0.34, 0.33, 0.33] if len(variants) == 2 else [0.5, 0.5]
        fields: dict[str, Any] = {
            "name": {"en-US": f"Experience {i}"},
            "key": {"en-US": f"exp-{i}"},
            "type": {"en-US": "ab_test" if i % 2 else "personalization"},
            "variants": {"en-US": [link(v) for v in variants]},
            "weights": {"en-US": weights},
            "goals": {"en-US": ["purchase"]},
        }
        if i % 2 == 0:
            fields["audience"] = {"en-US": link(audiences[i // 2 % len(audiences)]["sys"]["id"])}
        entries.append(make(experience, f"x{i}", fields))
        entries.append(banner_entry(f"b{i}", f"Baseline banner {i}: free returns within 30 days.", f"x{i}"))
        for v in variants:
            entries.append(banner_entry(v, f"Variant {v}: free shipping on every order over 50."))
    plain = 0
    while len(entries) < n_entries:
        entries.append(banner_entry(f"p{plain}", f"Plain banner {plain}: new arrivals every week."))
        plain += 1
    export = {k: v for k, v in demo.items() if k != "entries"}
    export["entries"] = entries
    export["assets"] = demo.get("assets", [])
    return export


def _measure_space(path: Path, label: str, n_decide: int, quick: bool) -> dict[str, Any]:
    from content import compile_snapshot
    from content.sources import ExportFileSource
    from personalization.decision.audience_validate import validate_condition

    source = ExportFileSource(path)
    start = time.perf_counter()
    items = source.load()
    load_s = time.perf_counter() - start
    gc.collect()
    start = time.perf_counter()
    snapshot = compile_snapshot(items, validate_condition=validate_condition)
    compile_s = time.perf_counter() - start
    del snapshot
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    items = source.load()
    snapshot = compile_snapshot(items, validate_condition=validate_condition)
    del items  # the snapshot keeps its own reference to the items it was compiled from
    gc.collect()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with_experiences = [e for e in snapshot.entries if snapshot.experiences_for(e)]
    request = [EntryRequest(e, snapshot.experiences_for(e)) for e in with_experiences[:3]]
    visitors = _visitors(n_decide)
    now = time.time()
    profile = Profile()

    def call() -> None:
        for visitor in visitors:
            decide(visitor, profile, request, None, now)

    decide_us = time_per_call(call, n_decide, 3, 0.05 if quick else 0.2) * 1e6
    return {
        "space": label,
        "entries": len(snapshot.entries),
        "experiences": len(snapshot.experiences),
        "issues": len(snapshot.issues),
        "export_mb": round(path.stat().st_size / 1e6, 2),
        "load_s": round(load_s, 3),
        "compile_s": round(compile_s, 3),
        "snapshot_mb": round((retained - base) / 1e6, 1),
        "compile_peak_mb": round((peak - base) / 1e6, 1),
        "decide_3_entries_us": round(decide_us, 1),
    }


def space_sizes(quick: bool = False) -> list[dict[str, Any]]:
    from content import demo_space_path

    sizes = [(10_000, 500)] if quick else [(1_000, 50), (10_000, 500)]
    rows = [_measure_space(Path(demo_space_path()), "demo", 50, quick)]
    with tempfile.TemporaryDirectory(prefix="vary-bench-space-") as tmp:
        for n_entries, n_experiences in sizes:
            path = Path(tmp) / f"space-{n_entries}.json"
            path.write_text(json.dumps(synthetic_export(n_entries, n_experiences)))
            rows.append(_measure_space(path, f"{n_entries:,} entries / {n_experiences} experiences", 50, quick))
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    return {"experiences_per_request": experiences_per_request(quick), "space": space_sizes(quick)}


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
