"""What the browser tests share: a real server process on a free port,
Debian's Chromium driven by Playwright, pages at a laptop's size, and
screenshots in tests/screenshots/ (not committed) for a reviewer to look at.

A test module binds the fixtures it uses to its own names (``page =
browser_support.page``; all four: ``browser``, ``page``, ``server`` and
``server_env``); a module changes its server's settings by defining its own
``server_env`` fixture instead."""

import os
import shutil
from pathlib import Path

import pytest

from .servers import flask_run

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "screenshots"
LAPTOP = {"width": 1366, "height": 768}
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"Chromium is missing at {CHROMIUM}: `make test` installs Debian's chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (make test installs it)", allow_module_level=True)

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


def settings(work: Path) -> dict:
    """The test server's settings: small videos, a storage folder in ``work``."""
    return {"FLASK_STORAGE_DIR": str(work / "operations"), "FLASK_SECRET_KEY": "browser-tests",
            "FLASK_LOCAL_VIDEO_SIZE": "128", "FLASK_MAX_VIDEO_FRAMES": "16"}


@pytest.fixture(scope="module")
def server_env(tmp_path_factory) -> dict:
    return settings(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory):
    """The studio served by ``flask run`` on a free port; its base URL."""
    with open(tmp_path_factory.mktemp("server") / "server.log", "w") as log:
        process, base = flask_run(server_env, log)
        try:
            yield base
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A page on a 1366×768 screen, its base URL the server's."""
    context = browser.new_context(viewport=LAPTOP, base_url=server)
    page = context.new_page()
    yield page
    context.close()


def shot(page, name, full_page=False):
    """A screenshot in tests/screenshots/<name>.png, once the page is still."""
    SHOTS.mkdir(exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=SHOTS / f"{name}.png", full_page=full_page)
