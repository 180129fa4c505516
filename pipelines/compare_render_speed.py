"""CPU time per frame of the warp renderer now against its code at another revision.

    python pipelines/compare_render_speed.py REV [--photos astronaut,london024]

On a shared machine wall times swing by +-25 % from minute to minute; this compares in one
process, frame by frame, interleaved (A B, B A, ...), so both sides see the same load:

1. The renderer's own files (``puppetry/render/*.py``) at REV are read with ``git show``
   and loaded beside today's as a second module (the rest of the library is today's: the
   same portrait, mesh and blendshapes drive both).
2. For each photo, ``load_portrait(size=512)`` and one renderer of each (one thread).
3. 100 talk-idle frames, 10 at jawOpen 0.8, 10 blinks, twice, each timed with the
   process's CPU clock (``time.process_time``) on both renderers in alternating order.
4. The median CPU milliseconds per frame of each, and the median of the per-frame ratios.
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

from puppetry import DrivingFrame, load_portrait, preset
from puppetry.portrait import bundled_portrait

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = Path("/work/shared/dev/portraits")          # dev media: read in place
RENDER_FILES = ("raster", "fill", "mouth", "config", "warp")


def renderer_at(rev: str):
    """``WarpRenderer`` as it was at git revision ``rev`` (its render/ files only)."""
    for name in RENDER_FILES:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:puppetry/render/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        for other in RENDER_FILES:      # its own siblings, not today's
            source = source.replace(f"from .{other} import", f"from .{other}_at_rev import")
        module = types.ModuleType(f"puppetry.render.{name}_at_rev")
        module.__package__ = "puppetry.render"
        sys.modules[module.__name__] = module
        exec(compile(source, f"{rev}:puppetry/render/{name}.py", "exec"), module.__dict__)
    return sys.modules["puppetry.render.warp_at_rev"].WarpRenderer


def photo(name: str) -> np.ndarray | str:
    if name == "astronaut":
        return bundled_portrait()
    found = sorted(PORTRAITS.glob(f"{name}*.jpg"))
    if not found:
        raise SystemExit(f"no portrait {name}*.jpg in {PORTRAITS}")
    return str(found[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="git revision to compare against (e.g. dc28c69)")
    ap.add_argument("--photos", default="astronaut,london024", help="comma-separated: astronaut or dev portrait names")
    args = ap.parse_args(argv)

    now = importlib.import_module("puppetry.render.warp").WarpRenderer
    then = renderer_at(args.rev)
    cases = {"talk-idle": list(preset("talk-idle", duration=4.0)),
             "jawOpen 0.8": [DrivingFrame.make(expression={"jawOpen": 0.8})] * 10,
             "blink": [DrivingFrame.make(expression={"eyeBlinkLeft": 1, "eyeBlinkRight": 1})] * 10}
    print(f"| photo | frames | {args.rev} (ms CPU) | now (ms CPU) | now / {args.rev} (median per frame) |")
    print("|---|---|---|---|---|")
    for name in args.photos.split(","):
        portrait = load_portrait(photo(name), size=512)
        a, b = then(portrait), now(portrait)
        for label, frames in cases.items():
            ta, tb = [], []
            for i, frame in enumerate(frames * 2):
                for r, ts in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
                    t = time.process_time()
                    r.render_frame(frame)
                    ts.append(1000 * (time.process_time() - t))
            ta, tb = np.array(ta), np.array(tb)
            print(f"| {name} | {label} | {np.median(ta):.1f} | {np.median(tb):.1f} | {np.median(tb / ta):.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
