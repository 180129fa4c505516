"""Benchmark ``puppetry animate``: speed of the whole job, blinks and head motion.

    python pipelines/benchmark_animate.py [--out docs/benchmarks_animate.md]

1. Speed: ``puppetry animate astronaut CLIP -o OUT.mp4`` as a subprocess (decode, features,
   network, render, encode, process start and exit included) on the dev speech clips,
   five runs each: real-time factor = median wall time / speech duration (the fastest
   and slowest runs are shown beside it), and the time to the first rendered frame as the
   command reports it (median).
2. Motion: on every dev speech clip, blinks per minute and the yaw standard deviation of
   the generated motion, by default and with ``--still``.
Prints a markdown table and PASS/FAIL lines, and writes them to ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from puppetry.audio import SAMPLE_RATE, load_audio  # noqa: E402
from puppetry.expression.arkit import INDEX  # noqa: E402
from puppetry.pipeline import AnimateJob, speech_to_motion  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_AUDIO = ROOT.parent / "shared" / "dev" / "audio"
RUNS = 5


def measure_speed(clip: Path) -> dict:
    """Wall times (s) of ``RUNS`` runs of the CLI on ``clip``, and the first-frame times
    it reported: their medians, the fastest and the slowest run."""
    exe = str(Path(sys.executable).with_name("puppetry"))
    walls, firsts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(RUNS):
            t0 = time.perf_counter()
            out = subprocess.run([exe, "animate", "astronaut", str(clip), "-o", f"{tmp}/o.mp4"],
                                 capture_output=True, text=True, check=True).stdout
            walls.append(time.perf_counter() - t0)
            firsts.append(float(re.search(r"first frame after ([\d.]+) s", out).group(1)))
    duration = len(load_audio(clip)) / SAMPLE_RATE
    wall = float(np.median(walls))
    return {"wall": wall, "fastest": min(walls), "slowest": max(walls), "first": float(np.median(firsts)),
            "duration": duration, "rtf": wall / duration, "rtf_slowest": max(walls) / duration}


def measure_motion(clip: Path) -> dict:
    audio = load_audio(clip)
    minutes = len(audio) / SAMPLE_RATE / 60
    moving = speech_to_motion(audio, AnimateJob())
    still = speech_to_motion(audio, replace(AnimateJob(), still=True))
    blink = moving.expression[:, INDEX["eyeBlinkLeft"]]
    onsets = int(np.sum((blink[1:] >= 0.5) & (blink[:-1] < 0.5)))
    return {"blinks_per_min": onsets / minutes, "yaw_std": float(moving.rotation[:, 0].std()),
            "yaw_std_still": float(still.rotation[:, 0].std())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_animate.md")
    args = ap.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    clips = sorted(DEV_AUDIO.glob("*.wav"))
    rows = []
    for clip in clips:
        row = {"clip": clip.stem, **measure_speed(clip), **measure_motion(clip)}
        rows.append(row)
        print(f"measured {clip.stem}", flush=True)
    lines = [f"Command: `{command}` ({datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}), "
             f"2 CPU cores, 512² output, {RUNS} runs a clip: median wall time (fastest–slowest).", "",
             "| clip | speech (s) | wall (s) | real-time factor | slowest run's RTF | first frame (s) | blinks / min | yaw std (°) | yaw std --still (°) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['duration']:.1f} | {r['wall']:.2f} ({r['fastest']:.2f}–{r['slowest']:.2f}) | "
                     f"{r['rtf']:.2f} | {r['rtf_slowest']:.2f} | {r['first']:.2f} | "
                     f"{r['blinks_per_min']:.1f} | {r['yaw_std']:.2f} | {r['yaw_std_still']:.2f} |")
    total_min = sum(r["duration"] for r in rows) / 60
    pooled_blinks = sum(r["blinks_per_min"] * r["duration"] / 60 for r in rows) / total_min
    verdicts = [
        ("real-time factor <= 0.5 on every clip (median run)", all(r["rtf"] <= 0.5 for r in rows)),
        (f"blinks 10-20 a minute (pooled over all clips: {pooled_blinks:.1f})", 10 <= pooled_blinks <= 20),
        ("yaw std 2-6 degrees by default on every clip", all(2 <= r["yaw_std"] <= 6 for r in rows)),
        ("yaw std 0 with --still", all(r["yaw_std_still"] == 0 for r in rows)),
    ]
    lines += ["", "```"] + [f"{'PASS' if ok else 'FAIL'}  {label}" for label, ok in verdicts] + ["```"]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
