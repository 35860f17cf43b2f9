"""Playwright (sync API) driving Debian's chromium from trio tests, plus the demo pages' helpers.

Playwright's sync API must be used from the one thread that started it, and our tests run on trio.
So a test hands a *scenario* (a plain function taking a chromium ``Browser``) to ``in_browser``,
which runs it on a worker thread with a freshly launched chromium; the scenario calls back into
trio with ``trio.from_thread.run`` (to kill a frontend, say). Every Playwright step has a timeout
(``STEP_MS``), and waits are ``wait_for_function`` on the page's own state, never sleeps.

Chromium is ``/usr/bin/chromium`` (apt), or ``$CONTINUITY_CHROMIUM``; never ``playwright install``.
Screenshots go to ``tests/artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from tests.support.procs import REPO

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

T = TypeVar("T")

CHROMIUM = Path(os.environ.get("CONTINUITY_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "tests" / "artifacts" / "browser"
STEP_MS = 45_000  # any single Playwright step (a click, a wait_for_function), generous for 2 busy cores
LAUNCH_MS = 60_000


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None if they can."""
    if not CHROMIUM.is_file():
        return (
            f"BROWSER TESTS SKIPPED: no chromium at {CHROMIUM}. Install it with "
            "`apt-get install -y chromium` (.ci/run does this when run as root), or point "
            "CONTINUITY_CHROMIUM at a chromium binary."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "BROWSER TESTS SKIPPED: the playwright package is missing: run `make install` (test extra)."
    return None


async def in_browser(scenario: Callable[[Browser], T]) -> T:
    """Run ``scenario(browser)`` on a worker thread with a fresh headless chromium; return its value.

    Bounded: launch and every step inside carry Playwright timeouts, so the thread always ends.
    """
    from playwright.sync_api import sync_playwright

    def body() -> T:
        args = ["--disable-dev-shm-usage", "--disable-gpu"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # chromium refuses to sandbox as root
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args, timeout=LAUNCH_MS)
            try:
                return scenario(browser)
            finally:
                browser.close()

    return await trio.to_thread.run_sync(body)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under ``ARTIFACTS`` and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def save_events(page: Page, name: str) -> Path:
    """Save the demo page's event log (``window.demo.events``) beside the screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.events.json"
    path.write_text(json.dumps(page.evaluate("window.demo ? window.demo.events : []"), indent=1))
    return path


def new_page(browser_or_context: Any, console: list[str]) -> Page:
    page: Page = browser_or_context.new_page()
    page.set_default_timeout(STEP_MS)
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    return page


def join_demo(page: Page, base_url: str, *, name: str, room: str, transport: str) -> None:
    """Open ``/demo/``, fill the form as a person would, join, and wait for the first attach."""
    page.goto(f"{base_url}/demo/")
    page.wait_for_function("document.body.dataset.ready === 'true'")
    page.fill("#name", name)
    page.fill("#room", room)
    page.select_option("#transport", transport)
    page.click("#join-button")
    page.wait_for_function("window.demo.state === 'connected' && window.demo.continuity === 'new'")


def texts_from(page: Page, client_id: str) -> list[str]:
    """The texts ``page`` received from ``client_id``, in arrival order (duplicates kept)."""
    script = "(who) => window.demo.received.filter(m => m.clientId === who).map(m => m.text)"
    return list(page.evaluate(script, client_id))


def wait_for_text(page: Page, text: str) -> None:
    page.wait_for_function("(t) => window.demo.received.some(m => m.text === t)", arg=text)
