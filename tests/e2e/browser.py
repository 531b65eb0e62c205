"""A real headless Chromium for browser tests, driven by Playwright.

Playwright's own browser download cannot run here (and should not in CI): the tests use Debian's
``chromium`` package through ``executable_path``. When ``/usr/bin/chromium`` is missing, the set-up
installs it with ``apt-get`` (root, as in CI) under a file lock so parallel sessions do not race.
Screenshots go to ``test-artifacts/screenshots`` (or ``$VARY_TEST_ARTIFACTS``) so CI can keep them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

#: Flags that keep Chromium off the (closed) network and working as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def artifacts_dir() -> Path:
    root = Path(os.environ.get("VARY_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    path = root / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium_path() -> str:
    """The system Chromium, installed with apt-get when missing (the only way it gets here)."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail("browser tests need Debian's chromium: run `apt-get install -y chromium` as root")
    lock_path = Path("/tmp/vary-chromium-install.lock")
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(CHROMIUM_CANDIDATES[0]):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            update = subprocess.run([apt, "update"], env=env, capture_output=True, text=True, timeout=600)
            install = subprocess.run(
                [apt, "install", "-y", "--no-install-recommends", "chromium"],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if install.returncode != 0:
                pytest.fail(f"apt-get install chromium failed:\n{update.stderr[-2000:]}\n{install.stderr[-2000:]}")
    return CHROMIUM_CANDIDATES[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium per test module (a ``playwright.sync_api.Browser``).

    Module scope, not session: Playwright's sync API keeps an asyncio loop running in the main
    thread while it is open, and ``asyncio.run`` in any later test would then fail.
    """
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class ConsoleErrors:
    """Collects console errors and uncaught page errors, so a test can assert there were none."""

    def __init__(self, page: object) -> None:
        self.messages: list[str] = []
        page.on("console", self._console)  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))  # type: ignore[attr-defined]

    def _console(self, message: object) -> None:
        if message.type == "error":  # type: ignore[attr-defined]
            self.messages.append(f"console: {message.text}")  # type: ignore[attr-defined]


VISITOR_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh browser context and page per test (own cookies and storage); ``page.console_errors``."""
    # A visitor's browser, not "HeadlessChrome": Vary serves but does not count known bots (#17 item 11).
    context = browser.new_context(viewport={"width": 1280, "height": 900}, user_agent=VISITOR_AGENT)  # type: ignore[attr-defined]
    new_page = context.new_page()
    new_page.console_errors = ConsoleErrors(new_page)  # type: ignore[attr-defined]
    try:
        yield new_page
    finally:
        context.close()
