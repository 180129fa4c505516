"""Shared fixtures: a headless Chromium for the browser pages (the Gradio demo, the
streaming page), a free port, and the demo served on one. Playwright cannot download its
own browsers here, so it drives the system's Chromium (Debian's, or PUPPETRY_CHROMIUM)."""
import os
import shutil
import socket

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")  # names looked up on PATH


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium binary; fails (never skips) with how to get one."""
    on_path = [p for p in map(shutil.which, CHROMIUM) if p]
    path = os.environ.get("PUPPETRY_CHROMIUM") or (on_path[0] if on_path else None)
    if not path or not os.access(path, os.X_OK):
        pytest.fail("chromium not found: `make test` installs Debian chromium; "
                    "or set PUPPETRY_CHROMIUM=/path", pytrace=False)
    return path


@pytest.fixture
def browser(chromium_path):
    """A headless Chromium driven by Playwright (``--no-sandbox``: tests run as root).

    One per test, not per session: while Playwright's sync API is open the main thread has
    a running event loop, so any later test's ``asyncio.run()`` would fail. Starting it
    costs ~1 s."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True,
                                     args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page at 1280 x 900 in its own context; closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_url(free_port):
    """The Gradio demo served by ``puppetry.ui.demo.launch`` in a background thread."""
    from puppetry.ui.demo import launch
    demo = launch(port=free_port, block=False)
    yield f"http://127.0.0.1:{free_port}/"
    demo.close()


@pytest.fixture(scope="session")
def pipeline():
    """Import a script of pipelines/ by name: ``pipeline("calibrate_lips").open_gain``."""
    import importlib.util
    import sys
    from pathlib import Path

    def load(name: str):
        if name not in sys.modules:
            path = Path(__file__).resolve().parents[1] / "pipelines" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]
    return load
