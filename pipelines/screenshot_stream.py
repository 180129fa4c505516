"""Screenshot of the streaming page while the portrait speaks -> docs/screenshot_stream.png.

    python pipelines/screenshot_stream.py [--out docs/screenshot_stream.png]

Starts ``puppetry serve`` on a free port, opens / in headless Chromium (Debian's, or
PUPPETRY_CHROMIUM), types words, presses Say and captures the page mid-utterance.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot_stream.png")
    ap.add_argument("--text", default="Hello! I am a portrait that talks, streamed live from a CPU.")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from puppetry.ui.server import serve_in_subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve_in_subprocess(port)                     # 1. the server is up
    try:
        chromium = os.environ.get("PUPPETRY_CHROMIUM") or shutil.which("chromium")
        with sync_playwright() as pw:                      # 2. the page speaks
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("Number(document.getElementById('face').dataset.frames || 0) > 10",
                                   timeout=60_000)
            page.fill("#text", args.text)
            page.click("#say")
            page.wait_for_function("document.getElementById('state').textContent.startsWith('speaking')",
                                   timeout=60_000)
            page.wait_for_function("(document.getElementById('state').textContent.match(/, ([0-9.]+) s/) "
                                   "|| [0, 0])[1] > 1.6", timeout=60_000)   # mid-utterance, curves drawn
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
