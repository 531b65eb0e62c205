"""Make docs/img/metrics.png: Chromium showing a real ``GET /metrics`` of a running ``vary serve``.

Run by hand (not a test), from the repository root, with the test extras installed (Playwright;
Debian's chromium, as tests/e2e/browser.py uses it):

    .venv/bin/python docs/img/metrics_screenshot.py

It starts ``vary serve`` (two workers, the embedded Valkey, the demo space) in a temporary data
directory, sends some traffic (decisions, events, a rejected event, an unknown entry, a burst over a
tiny admin rate limit), scrapes ``/metrics`` in Chromium with the admin key and screenshots the
page. The only change to the page is presentation: comment lines dimmed, the histogram's buckets
folded to those of ``POST /v1/personalize``, so one screen shows every family.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.browser import CHROMIUM_ARGS, chromium_path

DELIVERY, ADMIN = "screenshot-delivery-key", "screenshot-admin-key"
OUT = ROOT / "docs" / "img" / "metrics.png"

#: Runs in the page: dims comments, folds buckets other than POST /v1/personalize's, bolds names.
STYLE_PAGE = r"""
() => {
  const text = document.body.innerText;
  const keep = (line) => !line.includes('_bucket{') ||
      (line.includes('route="/v1/personalize"') && line.includes('method="POST"') && line.includes('status="200"'));
  const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  let folded = 0;
  const html = text.split('\n').filter((line) => keep(line) || (folded++, false)).map((line) => {
    if (line.startsWith('#')) return `<span class="c">${esc(line)}</span>`;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(.*) (\S+)$/);
    return m ? `<b>${esc(m[1])}</b>${esc(m[2])} <span class="v">${esc(m[3])}</span>` : esc(line);
  }).join('\n');
  document.head.innerHTML = `<style>
    body { margin: 0; background: #0f172a; color: #e2e8f0; font: 12px/1.45 ui-monospace, 'DejaVu Sans Mono', monospace; }
    header { padding: 10px 16px; background: #1e293b; color: #f8fafc; font: 600 14px system-ui, sans-serif; }
    header small { color: #94a3b8; font-weight: 400; margin-left: 8px; }
    pre { margin: 0; padding: 10px 16px; white-space: pre; }
    .c { color: #64748b; } b { color: #7dd3fc; font-weight: 600; } .v { color: #fbbf24; }
  </style>`;
  document.body.innerHTML = `<header>GET /metrics — Vary, 2 workers summed<small>Prometheus text format ·
    ${folded} histogram bucket lines of other routes folded</small></header><pre>${html}</pre>`;
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, key: str, body: object | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {key}"})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, ConnectionError):
        return 0  # not listening yet


def _traffic(base: str) -> None:
    for i in range(300):
        visitor = {"id": f"shot-{i}", "country": ["US", "CA", "DE", "GB"][i % 4], "channel": "web"}
        assert _call(f"{base}/v1/personalize", DELIVERY, {"visitor": visitor, "entries": ["heroHome", "bannerShipping"]}) == 200
        if i % 3 == 0:
            events = [{"type": "page_view", "visitor_id": f"shot-{i}", "channel": "web"}]
            if i % 30 == 0:
                events.append({"type": "page_view", "visitor_id": f"shot-{i}", "channel": "carrier-pigeon"})
            assert _call(f"{base}/v1/events", DELIVERY, {"events": events}) == 202
    assert _call(f"{base}/v1/personalize", DELIVERY, {"visitor": {"id": "x"}, "entries": ["noSuchEntry"]}) == 404
    statuses = [_call(f"{base}/metrics", ADMIN) for _ in range(30)]  # over the tiny admin limit
    assert 429 in statuses, statuses
    time.sleep(6)  # the workers copy their counts every 5 s; the admin window resets


def main() -> None:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="vary-shot-") as data_dir:
        env = {
            **os.environ,
            "VARY_DATA_DIR": data_dir,
            "VARY_PORT": str(port),
            "VARY_DELIVERY_KEYS": DELIVERY,
            "VARY_ADMIN_KEYS": ADMIN,
            "VARY_RATE_LIMIT_ADMIN_PER_S": "10",
            "VARY_LOG_FORMAT": "json",
            "VARY_ACCESS_LOG": "false",
        }
        server = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "vary"), "serve"], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while _call(f"{base}/ready", ADMIN) != 200:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("vary serve did not become ready")
                time.sleep(0.5)
            _traffic(base)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
                context = browser.new_context(
                    viewport={"width": 1280, "height": 1400}, device_scale_factor=1,
                    extra_http_headers={"Authorization": f"Bearer {ADMIN}"},
                )
                page = context.new_page()
                answer = page.goto(f"{base}/metrics")
                assert answer is not None and answer.status == 200, answer and answer.status
                assert "vary_decisions_total" in page.inner_text("body")
                page.evaluate(STYLE_PAGE)
                page.screenshot(path=str(OUT), full_page=False)
                browser.close()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
