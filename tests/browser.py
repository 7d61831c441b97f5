"""A real headless browser for the tests: Debian's chromium driven by Playwright.

Playwright's own browser download is never used (`playwright install` needs hosts this
project does not reach); the system chromium that scripts/install-system-deps.sh installs is
launched by path with a fresh profile and no background networking, so a run talks to
127.0.0.1 and nothing else.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
INSTALL_HINT = "scripts/install-system-deps.sh installs Debian's chromium when run as root"


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def require_browser() -> str:
    """The chromium binary, or skip with the reason (Playwright itself is in the test extra)."""
    path = chromium_path()
    if path is None:
        pytest.skip(f"chromium is not installed here ({INSTALL_HINT})")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
    return path


@contextlib.contextmanager
def browser_page(viewport: tuple[int, int] = (1280, 760)) -> Iterator[Any]:
    """A fresh page in a fresh chromium profile; closed (and the profile removed) afterwards."""
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="pspnet-chromium-") as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.new_page()
            page.problems = []  # console errors and uncaught exceptions (CSP violations land here)
            page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page.problems.append(str(e)))
            yield page
        finally:
            context.close()


def browser_version() -> str | None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=require_browser(), headless=True, args=CHROMIUM_ARGS)
        try:
            return browser.version
        finally:
            browser.close()
