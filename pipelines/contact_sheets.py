"""Contact sheets of the warp renderer, for looking at, not measuring.

    python pipelines/contact_sheets.py [--seconds 4] [--portraits DIR] [--dev-out FILE]

1. Presets: the bundled portrait under every preset (nod, shake, smile, blink,
   talk-idle) for ``--seconds``, 4 x 4 frames evenly spaced -> ``docs/contact_<preset>.png``.
2. Dev portraits: the JPEGs of ``--portraits`` (read in place), one row each, under a
   few poses and expressions -> ``--dev-out`` (default under /tmp: dev media may not be
   committed, so neither may pictures of it). Skipped if the folder is missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from puppetry import FPS, DrivingFrame, WarpRenderer, load_portrait, preset
from puppetry.drive.motion import PRESETS
from puppetry.io import contact_sheet, write_image

ROOT = Path(__file__).resolve().parents[1]
DEV_PORTRAITS = Path("/work/shared/dev/portraits")
DEV_OUT = Path("/tmp/puppetry_contact/contact_dev_portraits.png")
BUNDLED, SIZE, GRID = "astronaut", 512, 4


def smile_peak() -> DrivingFrame:
    """The smile preset at its peak (smile 0.8 with cheek and eye squint)."""
    motion = preset("smile")
    return motion[len(motion) // 2]


# One column per test: label -> driving frame ("portrait" is the input itself).
DEV_TESTS = {
    "yaw-20": DrivingFrame.make(yaw=-20),
    "yaw+20": DrivingFrame.make(yaw=20),
    "pitch+15": DrivingFrame.make(pitch=15),
    "roll+15": DrivingFrame.make(roll=15),
    "jawOpen 1": DrivingFrame.make(expression={"jawOpen": 1.0}),
    "smile": smile_peak(),
    "blink": DrivingFrame.make(expression={"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
}


def preset_sheet(renderer: WarpRenderer, name: str, seconds: float) -> np.ndarray:
    """4 x 4 frames of one preset, labelled with their time."""
    motion = preset(name, duration=seconds, fps=FPS)
    frames = list(renderer.render(motion))
    labels = [f"t={i / motion.fps:.2f}s" for i in range(len(frames))]
    return contact_sheet(frames, cols=GRID, rows=GRID, labels=labels)


def dev_sheet(paths: list[Path]) -> np.ndarray:
    """One row per portrait: the portrait, then each of ``DEV_TESTS``."""
    frames, labels = [], []
    for path in paths:
        renderer = WarpRenderer(load_portrait(path, size=SIZE))
        tag = path.stem.split("_")[0]
        frames.append(renderer.portrait.image)
        labels.append(f"{tag} portrait")
        for label, frame in DEV_TESTS.items():
            frames.append(renderer.render_frame(frame))
            labels.append(f"{tag} {label}")
    cols = 1 + len(DEV_TESTS)
    return contact_sheet(frames, cols=cols, rows=len(paths), labels=labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each preset clip")
    parser.add_argument("--portraits", type=Path, default=DEV_PORTRAITS)
    parser.add_argument("--dev-out", type=Path, default=DEV_OUT)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)

    # 1. presets on the bundled portrait
    renderer = WarpRenderer(load_portrait(BUNDLED, size=SIZE))
    for name in PRESETS:
        path = write_image(args.docs / f"contact_{name}.png", preset_sheet(renderer, name, args.seconds))
        print(f"wrote {path}")

    # 2. the dev portraits (never written into the repository)
    paths = sorted(p for p in args.portraits.glob("*") if p.suffix.lower() in (".jpg", ".jpeg")) \
        if args.portraits.is_dir() else []
    if not paths:
        print(f"note: no JPEGs in {args.portraits}; dev sheet skipped", file=sys.stderr)
        return 0
    if args.dev_out.resolve().is_relative_to(ROOT):
        parser.error(f"--dev-out {args.dev_out} is inside the repository: dev media stay out")
    args.dev_out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {write_image(args.dev_out, dev_sheet(paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
