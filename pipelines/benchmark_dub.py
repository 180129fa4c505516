"""Benchmark the speed of ``puppetry dub`` (issue 11: >= 25 frames/s at 256² on the CPU).

    nice -n 5 python pipelines/benchmark_dub.py [--puppet P.puppet] [--runs 5]

1. A person at 256²: the dev Obama video scaled to 256² (made at run time in a temp
   folder), learned for ``--minutes`` (speed does not depend on how long it trained: the
   network's size is fixed by ``--channels``); or ``--puppet``.
2. ``--runs`` times, alternating: ``puppetry dub PERSON SPEECH -o OUT.mp4`` as a whole
   process (start, model load, speech to expressions, footage decode, render, encode,
   exit), then ffmpeg alone encoding the same frames (the dub's output, decoded once to
   raw RGB beforehand) and the same speech with ``write_video``'s encoder settings: the
   ratio of the two medians says how far the dub is from the cost of writing the video,
   which a loaded shared machine slows alike.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from puppetry.audio import SAMPLE_RATE, load_audio  # noqa: E402
from puppetry.io import CRF, _encoder_args, read_video_frames, video_info  # noqa: E402
from puppetry.person.net import NetDims  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "dev" / "videos" / "obama_weekly_address_2010.mp4"
SPEECH = ROOT.parent / "shared" / "dev" / "audio" / "en_m_jfk_1961.wav"
SIZE = 256


def ffmpeg() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def person_at(size: int, folder: Path, minutes: float, channels: tuple[int, ...]) -> Path:
    """The dev video scaled to size², and a person learned from its first 15 s."""
    from dataclasses import replace

    from puppetry.person import LearnConfig, learn

    video = folder / f"obama{size}.mp4"
    subprocess.run([ffmpeg(), "-loglevel", "error", "-y", "-i", str(VIDEO), "-vf",
                    f"scale={size}:{size}", "-c:v", "libx264", "-crf", "18", "-c:a", "aac",
                    str(video)], check=True)
    puppet = folder / f"obama{size}.puppet"
    config = replace(LearnConfig(), minutes=minutes, until_s=15.0,
                     dims=NetDims(channels=channels))
    learn(video, puppet, config, device="cpu")
    return puppet


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--puppet", help="a learned person (default: one learned now at 256²)")
    ap.add_argument("--speech", default=str(SPEECH))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=1.5, help="learn budget when learning now")
    ap.add_argument("--channels", default=",".join(map(str, NetDims().channels)),
                    help="network widths when learning now (default: NetDims')")
    ap.add_argument("--renderer", default="neural", choices=("neural", "warp"))
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="benchmark_dub_"))
    channels = tuple(int(c) for c in args.channels.split(","))
    puppet = Path(args.puppet) if args.puppet else person_at(SIZE, scratch, args.minutes, channels)

    # 1. one dub to get its frames; the same frames as raw RGB for ffmpeg alone
    out = scratch / "dub.mp4"
    dub = [sys.executable, "-m", "puppetry.cli", "dub", str(puppet), args.speech, "-o", str(out),
           "--renderer", args.renderer, "--force"]
    timed(dub)                                                   # warm the file cache
    info = video_info(out)
    raw = scratch / "frames.rgb"
    with open(raw, "wb") as f:
        for frame in read_video_frames(out):
            f.write(np.ascontiguousarray(frame).tobytes())
    w, h, fps = info["width"], info["height"], info["fps"]
    encode = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
              "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(Fraction(fps).limit_denominator(1001)),
              "-i", str(raw), "-i", args.speech, *_encoder_args(".mp4", CRF, True),
              str(scratch / "ffmpeg.mp4")]
    # 2. alternate the two, so that both see the same load
    dubs, encodes = [], []
    for _ in range(args.runs):
        dubs.append(timed(dub))
        encodes.append(timed(encode))
    n, seconds = info["n_frames"], len(load_audio(args.speech)) / SAMPLE_RATE
    d, e = float(np.median(dubs)), float(np.median(encodes))
    print(f"\n`{shlex.join(['puppetry', *dub[3:]])}`: {puppet.name}, {w}x{h}, {n} frames "
          f"({seconds:.1f} s of speech), {args.runs} runs each, median (fastest-slowest)\n")
    print("| job | wall s | frames/s | x real time | ratio to ffmpeg |")
    print("|---|---|---|---|---|")
    print(f"| puppetry dub ({args.renderer}) | {d:.2f} ({min(dubs):.2f}-{max(dubs):.2f}) | "
          f"{n / d:.1f} | {d / seconds:.2f} | {d / e:.1f} |")
    print(f"| ffmpeg encoding the same frames + speech | {e:.2f} ({min(encodes):.2f}-{max(encodes):.2f}) | "
          f"{n / e:.1f} | {e / seconds:.2f} | 1 |")


if __name__ == "__main__":
    main()
