"""Watermark benchmark: is puppetry's mark found after sharing, and never on real video?

1. Generated: 50 clips of 2 s (5 portraits: the bundled one and the 4 dev portraits;
   5 motion presets; 256 and 512 px), written by ``puppetry.io.write_video`` (marked),
   then re-encoded as a sharing site would: H.264 CRF 28 at half size, tags stripped.
2. Real: 50 clips puppetry never touched: segments, crops, resizes and CRF 28 half-size
   re-encodes of the dev videos, and stills of the dev portraits made into clips.
3. Server path: generated frames marked and JPEG-encoded at quality 80 (as
   ``ui/server.py`` sends them), decoded and collected into a clip.

Prints a table (docs/benchmarks.md, "Provenance"): detection rate and false positives at
``provenance.Z_FOUND``, with z-scores.

    python pipelines/benchmark_watermark.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

import puppetry
from puppetry import provenance
from puppetry.io import read_video_frames, write_video

DEV = Path(os.environ.get("PUPPETRY_DEV", Path(__file__).resolve().parents[2] / "shared" / "dev"))
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
MOTIONS = ("nod", "shake", "smile", "blink", "talk-idle")
SIZES = (256, 512)
SECONDS = 2.0


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", *args], check=True)


def share(src: Path, dst: Path, scale: float = 0.5, crf: int = 28, vf: str = "",
          start: float = 0.0, seconds: float | None = None) -> Path:
    """Re-encode like a sharing site: H.264 at ``crf``, resized by ``scale`` (after the
    ``vf`` filters), no audio, no tags."""
    chain = ",".join(x for x in (vf, f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2") if x)
    ffmpeg("-ss", f"{start}", *(["-t", f"{seconds}"] if seconds else []), "-i", str(src),
           "-vf", chain, "-an", "-map_metadata", "-1", "-c:v", "libx264", "-crf", str(crf),
           "-preset", "medium", "-pix_fmt", "yuv420p", str(dst))
    return dst


def still_clip(image: Path, dst: Path, size: int) -> Path:
    """A 2 s clip of a photo, slowly zooming in (a real photo, never marked)."""
    ffmpeg("-loop", "1", "-i", str(image), "-t", f"{SECONDS}", "-vf",
           f"scale={size}:{size},zoompan=z='1+0.002*on':d=1:s={size}x{size}:fps=25",
           "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(dst))
    return dst


def generated(work: Path, quick: bool) -> list[dict]:
    portraits = ["astronaut", *sorted(str(p) for p in (DEV / "portraits").glob("*.jpg"))]
    rows = []
    for src in portraits[:2] if quick else portraits:
        name = Path(src).stem.split("_")[0]
        for size in SIZES:
            portrait = puppetry.load_portrait(src, size=size)
            for seed, motion in enumerate(MOTIONS):
                clip = work / f"{name}_{size}_{motion}.mp4"
                frames = list(puppetry.render(portrait, puppetry.preset(motion, duration=SECONDS, seed=seed)))
                psnr = np.mean([cv2.PSNR(f, provenance.embed(f)) for f in frames[::10]])
                write_video(clip, frames)
                shared = share(clip, work / f"{clip.stem}_shared.mp4")
                rows.append(dict(kind="generated", group=name, clip=clip.stem, psnr=psnr,
                                 **provenance.verify(shared)))
                print(f"  {clip.stem}: z {rows[-1]['z']:.1f}", file=sys.stderr, flush=True)
    return rows


def real(work: Path, quick: bool) -> list[dict]:
    clips: list[tuple[str, Path]] = []
    obama = DEV / "videos" / "obama_weekly_address_2010.mp4"
    for i in range(4 if quick else 13):                  # 13 segments of 1.5 s, 2 variants each
        clips.append(("obama", share(obama, work / f"obama_{i}_half.mp4", start=1.5 * i, seconds=1.5)))
        clips.append(("obama", share(obama, work / f"obama_{i}_crop.mp4", scale=1.0, crf=23,
                                     vf="crop=300:300", start=1.5 * i, seconds=1.5)))
    for video in sorted((DEV / "videos").glob("grid_*.mp4")):   # 6 variants each
        stem = video.stem
        clips.append(("grid", share(video, work / f"{stem}_same.mp4", scale=1.0, crf=18)))
        clips.append(("grid", share(video, work / f"{stem}_half.mp4")))
        clips.append(("grid", share(video, work / f"{stem}_a.mp4", scale=1.0, seconds=1.5)))
        clips.append(("grid", share(video, work / f"{stem}_b.mp4", scale=1.0, start=1.5)))
        clips.append(("grid", share(video, work / f"{stem}_crop.mp4", scale=1.5, crf=23,
                                    vf="crop=200:200")))
        clips.append(("grid", share(video, work / f"{stem}_flip.mp4", scale=0.75, vf="hflip")))
    for photo in sorted((DEV / "portraits").glob("*.jpg")):     # 3 clips each
        for size in (256, 512):
            clips.append(("portrait stills", still_clip(photo, work / f"{photo.stem}_{size}.mp4", size)))
        clips.append(("portrait stills", share(clips[-1][1], work / f"{photo.stem}_shared.mp4")))
    return [dict(kind="real", group=group, clip=path.stem, **provenance.verify(path))
            for group, path in clips]


def server_path(quick: bool) -> list[dict]:
    """Frames as the server makes them: marked, then JPEG at quality 80, collected."""
    rows = []
    portraits = ["astronaut", *sorted(str(p) for p in (DEV / "portraits").glob("*.jpg"))]
    for src in portraits[:1] if quick else portraits:
        portrait = puppetry.load_portrait(src, size=256)
        frames = []
        for frame in puppetry.render(portrait, puppetry.preset("talk-idle", duration=SECONDS)):
            ok, jpeg = cv2.imencode(".jpg", provenance.embed(frame)[:, :, ::-1],
                                    [cv2.IMWRITE_JPEG_QUALITY, 80])
            frames.append(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1])
        found, z, p = provenance.detect(frames)
        one = provenance.detect(frames[:1])[1]
        rows.append(dict(kind="server JPEG q80", group=Path(src).stem.split("_")[0],
                         watermark=found, z=z, z_one=one))
    return rows


def table(rows: list[dict]) -> str:
    out = ["| clips | n | marked found | z min | z median | z max | PSNR of the mark, dB (min, median) |",
           "|---|---|---|---|---|---|---|"]
    for kind in dict.fromkeys(r["kind"] for r in rows):
        sub = [r for r in rows if r["kind"] == kind]
        for group in [*dict.fromkeys(r["group"] for r in sub), "all"]:
            g = sub if group == "all" else [r for r in sub if r["group"] == group]
            z = np.array([r["z"] for r in g])
            found = sum(r["watermark"] for r in g)
            p = [r["psnr"] for r in g if "psnr" in r]
            psnr = f"{min(p):.1f}, {np.median(p):.1f}" if p else ""
            label = f"**{kind}, all**" if group == "all" else f"{kind}: {group}"
            out.append(f"| {label} | {len(g)} | {found} ({100 * found / len(g):.0f} %) | "
                       f"{z.min():.1f} | {np.median(z):.1f} | {z.max():.1f} | {psnr} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few clips of each kind")
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = generated(work, args.quick) + real(work, args.quick) + server_path(args.quick)
    print(table(rows))
    print(f"\nthreshold z > {provenance.Z_FOUND}; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
