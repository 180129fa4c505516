"""Screenshot of the Gradio demo after generating from its first example.

    python pipelines/screenshot_demo.py [--out docs/screenshot_demo.png] [--chromium PATH]

Serves the demo on a free local port, drives a headless Chromium with Playwright (the
system's Chromium: Playwright's own browsers are not downloaded), clicks the example, then
Generate, and captures the whole page once the video and the curves plot are shown.
"""
from __future__ import annotations

import argparse
import os
import socket
import time

from playwright.sync_api import sync_playwright

from puppetry.ui.demo import launch

VIEWPORT = {"width": 1280, "height": 1400}  # the whole page: no re-layout while capturing
EXAMPLE = "astronaut, bundled speech"       # the example's label on the page
TIMEOUT_MS = 180_000                        # for the generation
SEEK_S = 0.6                                # video time shown, s (the mouth open on "Hi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshot_demo.png", help="PNG to write")
    parser.add_argument("--chromium",
                        default=os.environ.get("PUPPETRY_CHROMIUM", "/usr/bin/chromium"),
                        help="Chromium binary (default: $PUPPETRY_CHROMIUM or /usr/bin/chromium)")
    args = parser.parse_args()

    # 1. the demo on a free port, in a background thread
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(port=port, block=False)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            # 2. the page, the example, Generate
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text(EXAMPLE).click()
            page.wait_for_selector("#speech audio[src]", state="attached")
            t0 = time.perf_counter()
            page.get_by_role("button", name="Generate").click()
            # 3. wait for the video and the plot, let them settle, capture
            page.wait_for_selector("#video video[src]", timeout=TIMEOUT_MS)
            page.wait_for_selector("#curves .role-legend", timeout=TIMEOUT_MS)
            page.evaluate("""t => new Promise(done => {   // show a frame mid-word, not the first
                const video = document.querySelector('#video video');
                video.addEventListener('seeked', done, {once: true});
                video.currentTime = t; })""", SEEK_S)
            print(f"generated in {time.perf_counter() - t0:.1f} s (click to video shown)")
            page.wait_for_timeout(1500)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
