"""Benchmark reenactment (issue 12): self- and cross-reenactment, re-tracked.

    nice -n 5 python pipelines/benchmark_reenact.py [--videos DIR] [--portraits DIR] \
        [--seconds 6] [--mode relative|absolute] [--sheets DIR]

Dev media is read in place (``/work/shared/dev``), never copied into the repository.

1. Self-reenactment (the FOMM / LivePortrait protocol): the first frame of each dev video
   (``frame="full"`` at the video's own size, so pixels line up) driven by the video
   itself (``track_clip`` + ``transfer``), compared frame by frame with the real frames:
   - AKD: mean distance of the 468 re-tracked landmarks from the real frame's, in the
     real frame's inter-ocular distances;
   - lip r: Pearson r of the re-tracked inner-lip opening with the real one over time;
   - yaw / pitch error: mean |difference| of the re-tracked head pose (``fitted_pose``
     relative to the real first frame), degrees;
   - AED: mean dlib identity distance to the real frame (every ``ID_STEP``-th frame);
   - face-box PSNR: over the box of the real frame's landmarks, dB.
   Each beside the do-nothing baseline, the first frame frozen, and the renderer's floor,
   the first frame rendered with no motion (its own jaw opening put back), measured in the
   same run: what the renderer loses before any motion is transferred.
2. Cross-reenactment: each dev portrait (512² crop) driven by other people's clips (the dev
   videos, and a synthetic driver rendered from the bundled portrait that turns, nods,
   blinks and opens the mouth wide): the worst dlib distance to the photo over every
   ``ID_STEP``-th frame, and the correlation of the output's re-tracked yaw and lip
   opening with the driver's.
3. The tables (printed, markdown), then one PASS/FAIL line per issue target.
4. ``--speed RUNS``: only the speed, ``measure_speed`` (whole-process runs beside ffmpeg;
   ``--baseline DIR``: beside older code too, e.g. ``git archive dc28c69 | tar -x -C DIR``).

Held out: the lip attribution of the tracker was tuned on the Obama clip only (its
seconds 10-20); the GRID clips are held out. Rows say which.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from puppetry import Motion, load_portrait
from puppetry.drive.video import track_clip, transfer
from puppetry.eval.identity import IdentityEncoder
from puppetry.eval.metrics import fitted_pose, lip_opening
from puppetry.expression.arkit import INDEX
from puppetry.face import mesh as M
from puppetry.face.tracker import FaceTracker
from puppetry.io import contact_sheet, read_video_frames, video_info, write_image
from puppetry.pipeline import render

DEV = Path("/work/shared/dev")
SELF_VIDEOS = ("grid_brbk7n.mp4", "grid_lbax4n.mp4", "obama_weekly_address_2010.mp4")
TUNED_ON = {"obama_weekly_address_2010.mp4"}   # the lip attribution was tuned on this clip
CROSS = {                                      # portrait -> drivers (other people)
    "london024_m47_neutral.jpg": ("grid_lbax4n.mp4", "synthetic"),
    "london061_m40_smiling.jpg": ("obama_weekly_address_2010.mp4", "synthetic"),
    "london087_f31_smiling.jpg": ("grid_brbk7n.mp4", "synthetic"),
    "london136_f54_smiling.jpg": ("grid_lbax4n.mp4", "synthetic"),
}
CROSS_SIZE = 512          # output side for cross-reenactment, pixels
ID_STEP = 3               # dlib identity on every ID_STEP-th frame
FPS = 25.0

# Targets (issue 12)
TARGET = {"akd": 0.06, "lip_r": 0.85, "pose_err": 2.0, "aed": 0.30, "psnr_gain": 2.0,
          "cross_id": 0.35, "cross_r": 0.75}


def synthetic_driver(seconds: float = 6.0, fps: float = FPS) -> tuple[list[np.ndarray], Motion]:
    """A driver who turns, nods, blinks and opens the mouth wide: the bundled portrait
    (not a dev photo) rendered at 360² under a known motion. -> (frames, motion)."""
    from puppetry import WarpRenderer
    n = int(round(seconds * fps))
    t = np.arange(n) / fps
    m = Motion.still(n, fps)
    m.rotation[:, 0] = 20 * np.sin(2 * np.pi * t / 4.0)                    # turns ±20°
    m.rotation[:, 1] = 10 * np.sin(2 * np.pi * t / 1.7) * (t > 1.0)        # nods ±10°
    jaw = np.clip(np.sin(2 * np.pi * t / 1.2), 0, 1) ** 1.5               # wide openings
    m.expression[:, INDEX["jawOpen"]] = 0.8 * jaw
    for b in (1.3, 3.1, 4.9):                                              # blinks
        blink = np.clip(1 - np.abs(t - b) / 0.1, 0, 1)
        m.expression[:, INDEX["eyeBlinkLeft"]] = np.maximum(m.expression[:, INDEX["eyeBlinkLeft"]], blink)
        m.expression[:, INDEX["eyeBlinkRight"]] = np.maximum(m.expression[:, INDEX["eyeBlinkRight"]], blink)
    renderer = WarpRenderer(load_portrait("astronaut", size=360))
    return [renderer.render_frame(f).copy() for f in m], m


def video_frames(path: Path, seconds: float) -> list[np.ndarray]:
    n = int(round(seconds * video_info(path)["fps"]))
    frames = []
    for rgb in read_video_frames(path):
        frames.append(rgb)
        if len(frames) >= n:
            break
    return frames


def retrack(frames) -> list[np.ndarray | None]:
    """Landmarks float[478 x 3] (or None) of every frame, one video-mode tracker."""
    tracker = FaceTracker(static=False)
    try:
        out = []
        for rgb in frames:
            face = tracker.track(rgb)
            out.append(None if face is None else face.landmarks.astype(np.float64))
        return out
    finally:
        tracker.close()


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def face_box(lm: np.ndarray, shape) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = np.floor(lm[:468, :2].min(0)).astype(int)
    x1, y1 = np.ceil(lm[:468, :2].max(0)).astype(int)
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def pose_series(lms, reference) -> np.ndarray:
    """(yaw, pitch, roll) of every landmark set relative to ``reference``: float[T x 3]
    (NaN rows where no face)."""
    return np.array([fitted_pose(lm, reference) if lm is not None else (np.nan,) * 3 for lm in lms])


@dataclass
class Scores:
    akd: float
    lip_r: float
    yaw_err: float
    pitch_err: float
    aed: float
    psnr: float
    lost: int


def score_against(made: list[np.ndarray], made_lm, real: list[np.ndarray], real_lm,
                  encoder: IdentityEncoder) -> Scores:
    """Self-reenactment scores of frames ``made`` against the real frames (module doc, 1)."""
    ok = [i for i in range(len(real)) if real_lm[i] is not None and made_lm[i] is not None]
    ref = real_lm[0]
    akd = np.mean([np.linalg.norm(made_lm[i][:468, :2] - real_lm[i][:468, :2], axis=1).mean()
                   / M.interocular(real_lm[i]) for i in ok])
    lip_r = pearson([lip_opening(made_lm[i]) for i in ok], [lip_opening(real_lm[i]) for i in ok])
    err = np.abs(pose_series([made_lm[i] for i in ok], ref) - pose_series([real_lm[i] for i in ok], ref))
    ids = []
    for i in ok[::ID_STEP]:
        a, b = encoder.embed(made[i]), encoder.embed(real[i])
        if a is not None and b is not None:
            ids.append(encoder.distance(a, b))
    boxes = [face_box(real_lm[i], real[i].shape) for i in ok]
    ps = [psnr(made[i][y0:y1, x0:x1], real[i][y0:y1, x0:x1]) for i, (x0, y0, x1, y1) in zip(ok, boxes)]
    return Scores(float(akd), lip_r, float(np.nanmean(err[:, 0])), float(np.nanmean(err[:, 1])),
                  float(np.mean(ids)) if ids else float("nan"), float(np.mean(ps)),
                  len(real) - len(ok))


def self_case(path: Path, seconds: float, mode: str, encoder) -> dict:
    real = video_frames(path, seconds)
    fps = float(video_info(path)["fps"])
    h, w = real[0].shape[:2]
    t0 = time.perf_counter()
    clip = track_clip(real, fps=fps)
    portrait = load_portrait(real[0], size=max(h, w), frame="full")
    motion = transfer(clip, portrait, mode=mode)
    made = [f.copy() for f in render(portrait, motion)]
    elapsed = time.perf_counter() - t0
    if made[0].shape != real[0].shape:
        raise RuntimeError(f"{path.name}: rendered {made[0].shape} vs real {real[0].shape}")
    real_lm, made_lm = retrack(real), retrack(made)
    x0, y0, x1, y1 = face_box(real_lm[0], real[0].shape)            # the face, grown for sheets
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, y1 - y0)
    box = (max(0, int(cx - half)), max(0, int(cy - half)), min(w, int(cx + half)), min(h, int(cy + half)))
    frozen = [real[0]] * len(real)
    frozen_lm = [real_lm[0]] * len(real)
    # the renderer's floor: the first frame rendered with no motion (its own jaw opening,
    # which the portrait's neutral face takes out, put back), against every real frame
    still = Motion.still(len(real), fps)
    still.expression[:, INDEX["jawOpen"]] = portrait.expression[INDEX["jawOpen"]]
    zero = [f.copy() for f in render(portrait, still)]
    return {"name": path.name, "frames": len(real), "held_out": path.name not in TUNED_ON,
            "ours": score_against(made, made_lm, real, real_lm, encoder),
            "zero": score_against(zero, retrack(zero), real, real_lm, encoder),
            "frozen": score_against(frozen, frozen_lm, real, real_lm, encoder),
            "seconds": elapsed, "made": made, "real": real, "box": box}


def cross_case(photo: Path, driver_name: str, driver_frames, seconds: float, mode: str,
               encoder) -> dict:
    frames = driver_frames[:int(round(seconds * FPS))]
    clip = track_clip(frames, fps=FPS)
    portrait = load_portrait(photo, size=CROSS_SIZE)
    motion = transfer(clip, portrait, mode=mode)
    made = [f.copy() for f in render(portrait, motion)]
    made_lm, driver_lm = retrack(made), retrack(frames)
    ok = [i for i in range(len(made)) if made_lm[i] is not None and driver_lm[i] is not None]
    yaw_made = pose_series([made_lm[i] for i in ok], made_lm[ok[0]])[:, 0]
    yaw_driver = pose_series([driver_lm[i] for i in ok], driver_lm[ok[0]])[:, 0]
    lip_made = [lip_opening(made_lm[i]) for i in ok]
    lip_driver = [lip_opening(driver_lm[i]) for i in ok]
    photo_id = encoder.embed(portrait.image)
    ids = [encoder.distance(photo_id, e) for e in (encoder.embed(made[i]) for i in ok[::ID_STEP])
           if e is not None]
    return {"photo": photo.name, "driver": driver_name, "frames": len(made),
            "id_worst": max(ids) if ids else float("nan"), "id_mean": float(np.mean(ids)) if ids else float("nan"),
            "id_missed": len(ok[::ID_STEP]) - len(ids),
            "yaw_r": pearson(yaw_made, yaw_driver), "yaw_range": float(np.ptp(yaw_driver)),
            "lip_r": pearson(lip_made, lip_driver), "made": made, "driver_frames": frames}


def key_frames(motion: Motion) -> list[int]:
    """The synthetic driver's telling frames, in time order: the first, the widest mouth,
    the turns either way, the nods either way, the first blink."""
    yaw, pitch = motion.rotation[:, 0], motion.rotation[:, 1]
    picks = {0, int(np.argmax(motion.expression[:, INDEX["jawOpen"]])), int(np.argmax(yaw)),
             int(np.argmin(yaw)), int(np.argmax(pitch)), int(np.argmin(pitch)),
             int(np.argmax(motion.expression[:, INDEX["eyeBlinkLeft"]]))}
    return sorted(picks)


def sheet(driver: list[np.ndarray], made: list[np.ndarray], n: int = 6, tile: int = 192,
          picks: list[int] | None = None, box=None) -> np.ndarray:
    """Two rows, driver above output: ``picks`` (frame indices), or ``n`` evenly spaced;
    ``box`` (x0, y0, x1, y1): show only that part of every frame (a face)."""
    import cv2
    if picks is None:
        picks = np.linspace(0, len(made) - 1, n).round().astype(int)
    if box is not None:
        x0, y0, x1, y1 = box
        driver, made = [f[y0:y1, x0:x1] for f in driver], [f[y0:y1, x0:x1] for f in made]
    square = lambda f: cv2.resize(f, (tile, round(f.shape[0] * tile / f.shape[1])), interpolation=cv2.INTER_AREA)
    top = [square(driver[i]) for i in picks]
    bottom = [square(made[i]) for i in picks]
    hmax = max(max(f.shape[0] for f in top), max(f.shape[0] for f in bottom))
    pad = lambda f: np.pad(f, ((0, hmax - f.shape[0]), (0, 0), (0, 0)), constant_values=40)
    return np.concatenate([np.concatenate([pad(f) for f in top], 1),
                           np.concatenate([pad(f) for f in bottom], 1)], 0)


def measure_speed(photo: Path, driver: Path, seconds: float, runs: int, size: int = 512,
                  baseline: Path | None = None) -> dict:
    """Whole-process ``puppetry reenact`` at ``size``² on the first ``seconds`` of ``driver``
    (cut to a temp file), ``runs`` times, each beside ffmpeg encoding the same frames and
    audio as write_video does (raw RGB from a file, H.264 + AAC), interleaved so both see
    the same load; with ``baseline`` (a checkout of older code, e.g. ``git archive``), the
    same command run from it too, in the same minutes. -> medians (s), CPU (s) and all runs."""
    import os
    import statistics
    import subprocess
    import tempfile
    import imageio_ffmpeg
    from puppetry import io as pio
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cut, out, raw = tmp / "driver.mp4", tmp / "out.mp4", tmp / "frames.rgb"
        subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(driver), "-t", f"{seconds:g}",
                        "-c", "copy", str(cut)], check=True)
        reenact = [sys.executable, "-m", "puppetry.cli", "reenact", str(photo), str(cut), "-o", str(out),
                   "--size", str(size), "--force"]
        encode = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                  "-s", f"{size}x{size}", "-r", "25", "-i", str(raw), "-i", str(cut), "-map", "0:v",
                  "-map", "1:a", "-c:a", "aac", "-b:a", pio.AUDIO_BITRATE, "-c:v", "libx264", "-preset",
                  pio.PRESET, "-crf", str(pio.CRF), "-pix_fmt", "yuv420p", str(tmp / "encoded.mp4")]
        ours, theirs, cpu, old, old_cpu = [], [], [], [], []
        for k in range(runs):
            t0, c0 = time.perf_counter(), _children_cpu()
            subprocess.run(reenact, check=True, capture_output=True)
            ours.append(time.perf_counter() - t0)
            cpu.append(_children_cpu() - c0)
            if baseline is not None:
                t0, c0 = time.perf_counter(), _children_cpu()
                subprocess.run(reenact, check=True, capture_output=True, cwd=baseline,
                               env={**os.environ, "PYTHONPATH": str(baseline)})
                old.append(time.perf_counter() - t0)
                old_cpu.append(_children_cpu() - c0)
            if k == 0:                                   # the frames ffmpeg encodes: ours
                with raw.open("wb") as f:
                    for rgb in read_video_frames(out):
                        f.write(rgb.tobytes())
            t0 = time.perf_counter()
            subprocess.run(encode, check=True)
            theirs.append(time.perf_counter() - t0)
        duration = video_info(out)["duration"]
    return {"duration": duration, "ours": statistics.median(ours), "ffmpeg": statistics.median(theirs),
            "ours_all": ours, "ffmpeg_all": theirs, "cpu": statistics.median(cpu),
            "old": statistics.median(old) if old else None, "old_all": old,
            "old_cpu": statistics.median(old_cpu) if old_cpu else None}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children, workers included."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fmt(x, spec=".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=Path, default=DEV / "videos")
    ap.add_argument("--portraits", type=Path, default=DEV / "portraits")
    ap.add_argument("--seconds", type=float, default=6.0, help="at most this much of each clip")
    ap.add_argument("--mode", choices=("relative", "absolute"), default="relative")
    ap.add_argument("--only-self", action="store_true")
    ap.add_argument("--only-cross", action="store_true")
    ap.add_argument("--sheets", type=Path, help="write driver | output contact sheets here")
    ap.add_argument("--speed", type=int, metavar="RUNS", default=0,
                    help="only the speed: RUNS whole-process reenact runs at 512² beside ffmpeg")
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="with --speed: also time the code checked out in DIR (git archive)")
    args = ap.parse_args(argv)
    if args.speed:
        photo, driver = args.portraits / "london024_m47_neutral.jpg", args.videos / SELF_VIDEOS[2]
        print(f"$ nice -n 5 python pipelines/benchmark_reenact.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
        r = measure_speed(photo, driver, args.seconds, args.speed, baseline=args.baseline)
        print(f"\n| job | median of {args.speed} (s) | all runs (s) | real-time factor |\n|---|---|---|---|")
        print(f"| puppetry reenact {photo.name} {driver.name} (first {r['duration']:g} s), 512² | "
              f"{r['ours']:.2f} | {', '.join(f'{x:.1f}' for x in r['ours_all'])} | {r['ours'] / r['duration']:.2f} |")
        if r["old"] is not None:
            print(f"| the same, code in {args.baseline} | {r['old']:.2f} | "
                  f"{', '.join(f'{x:.1f}' for x in r['old_all'])} | {r['old'] / r['duration']:.2f} |")
        print(f"| ffmpeg: the same frames + audio to H.264 + AAC | {r['ffmpeg']:.2f} | "
              f"{', '.join(f'{x:.1f}' for x in r['ffmpeg_all'])} | {r['ffmpeg'] / r['duration']:.2f} |")
        print(f"\nreenact / ffmpeg: {r['ours'] / r['ffmpeg']:.2f}; reenact's CPU time (all its "
              f"processes, median): {r['cpu']:.1f} s, {r['cpu'] / r['duration']:.2f} CPU-s per s of video "
              f"(over 2 cores: real-time factor >= {r['cpu'] / r['duration'] / 2:.2f} on an idle machine)")
        if r["old_cpu"] is not None:
            print(f"baseline's CPU time (median): {r['old_cpu']:.1f} s, "
                  f"{r['old_cpu'] / r['duration']:.2f} CPU-s per s of video")
        return 0
    encoder = IdentityEncoder()
    print(f"$ nice -n 5 python pipelines/benchmark_reenact.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    selfs, crosses = [], []
    if not args.only_cross:
        for name in SELF_VIDEOS:
            r = self_case(args.videos / name, args.seconds, args.mode, encoder)
            selfs.append(r)
            print(f"  self {name}: {r['frames']} frames, tracked+rendered in {r['seconds']:.1f} s", flush=True)
            if args.sheets:
                args.sheets.mkdir(parents=True, exist_ok=True)
                write_image(args.sheets / f"self_{Path(name).stem}.jpg",
                            sheet(r["real"], r["made"], n=8, tile=144, box=r["box"]))
    if not args.only_self:
        synth, synth_motion = synthetic_driver(args.seconds)
        cache = {"synthetic": synth}
        for photo, drivers in CROSS.items():
            for d in drivers:
                if d not in cache:
                    cache[d] = video_frames(args.videos / d, args.seconds)
                r = cross_case(args.portraits / photo, d, cache[d], args.seconds, args.mode, encoder)
                crosses.append(r)
                print(f"  cross {photo} <- {d}: done", flush=True)
                if args.sheets:
                    picks = key_frames(synth_motion) if d == "synthetic" else None
                    write_image(args.sheets / f"cross_{Path(photo).stem}_{Path(d).stem}.jpg",
                                sheet(r["driver_frames"], r["made"], picks=picks))
    if selfs:
        print(f"\nSelf-reenactment ({args.mode}; first {args.seconds:g} s of each clip; ours / "
              "the first frame rendered with no motion (the renderer's floor) / frozen first frame)\n")
        print("| clip | held out | frames | AKD (IOD) | lip r | yaw err (°) | pitch err (°) | AED | face PSNR (dB) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in selfs:
            o, z, f = r["ours"], r["zero"], r["frozen"]
            print(f"| {r['name']} | {'yes' if r['held_out'] else 'no (tuned on)'} | {r['frames']} | "
                  f"{o.akd:.3f} / {z.akd:.3f} / {f.akd:.3f} | {fmt(o.lip_r, '.2f')} / — / — | "
                  f"{o.yaw_err:.2f} / {z.yaw_err:.2f} / {f.yaw_err:.2f} | "
                  f"{o.pitch_err:.2f} / {z.pitch_err:.2f} / {f.pitch_err:.2f} | "
                  f"{fmt(o.aed)} / {fmt(z.aed)} / {fmt(f.aed)} | {o.psnr:.2f} / {z.psnr:.2f} / {f.psnr:.2f} |")
    if crosses:
        print(f"\nCross-reenactment ({args.mode}; {CROSS_SIZE}² crop; first {args.seconds:g} s of each driver)\n")
        print("| photo | driver | frames | identity to photo, worst (mean) | yaw r (driver's yaw range °) | lip r |")
        print("|---|---|---|---|---|---|")
        for r in crosses:
            print(f"| {r['photo']} | {r['driver']} | {r['frames']} | {fmt(r['id_worst'])} ({fmt(r['id_mean'])}) | "
                  f"{fmt(r['yaw_r'], '.2f')} ({r['yaw_range']:.1f}) | {fmt(r['lip_r'], '.2f')} |")
    print()
    for r in selfs:
        o, f = r["ours"], r["frozen"]
        checks = {"AKD": o.akd <= TARGET["akd"], "lip r": o.lip_r >= TARGET["lip_r"],
                  "yaw/pitch": max(o.yaw_err, o.pitch_err) <= TARGET["pose_err"],
                  "AED": o.aed <= TARGET["aed"], "PSNR gain": o.psnr - f.psnr >= TARGET["psnr_gain"]}
        print(f"self {r['name']}: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    for r in crosses:
        checks = {"identity": r["id_worst"] <= TARGET["cross_id"], "yaw r": r["yaw_r"] >= TARGET["cross_r"],
                  "lip r": r["lip_r"] >= TARGET["cross_r"]}
        print(f"cross {r['photo']} <- {r['driver']}: "
              + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
