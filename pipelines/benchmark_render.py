"""Benchmark the warp renderer by re-tracking what it draws.

    python pipelines/benchmark_render.py [--portraits DIR] [--out docs/benchmarks_render.md]

For the bundled portrait and every JPEG in ``--portraits`` (read in place, never copied
into the repository; skipped if the folder is missing):

1. Prepare: ``load_portrait(size=512)``, a ``WarpRenderer``, a static ``FaceTracker``;
   the reference landmarks are the tracker's reading of the rendered neutral frame.
2. Pose: yaw -20/-10/+10/+20, pitch -15/+15, roll -15/+15 degrees, re-tracked and read
   back with ``fitted_pose`` (2-D fit) and ``relative_pose`` (the tracker's own 3-D).
3. Mouth: ``lip_opening`` (inter-ocular distances) at jawOpen 0, 0.25, 0.5, 0.75, 1.
4. Blink: eye-aspect-ratio drop at eyeBlink 1 (both eyes), percent of the neutral one.
5. Identity: dlib distance from the portrait to every rendered test frame (worst), with
   two baselines: the portrait mirrored, and the portrait itself (frozen, 0).
6. Background: share of the pixels away from the person (alpha > 0.02, dilated 5 px)
   left unchanged (|diff| <= 2/255 on all channels) by an expression-only motion.
7. Speed (bundled portrait only): render-only frames/s over 100 talk-idle frames, and
   the whole ``puppetry render`` job as a subprocess, as a real-time factor.
8. The table (printed, and written to ``--out`` with the command line and date), then
   one PASS/FAIL line per target.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from puppetry import DrivingFrame, Motion, WarpRenderer, load_portrait, preset
from puppetry.eval.identity import IdentityEncoder
from puppetry.eval.metrics import eye_aspect_ratio, fitted_pose, lip_opening, relative_pose
from puppetry.face.tracker import FaceTracker

ROOT = Path(__file__).resolve().parents[1]
DEV_PORTRAITS = Path("/work/shared/dev/portraits")   # dev media: read here, never committed
BUNDLED = "astronaut"
SIZE = 512                                           # canvas side, pixels

# The test drive. Poses: (axis, degrees); the other two angles stay 0.
POSES = [("yaw", -20), ("yaw", -10), ("yaw", 10), ("yaw", 20),
         ("pitch", -15), ("pitch", 15), ("roll", -15), ("roll", 15)]
AXES = ("yaw", "pitch", "roll")                      # order of fitted_pose's angles
JAW_LEVELS = [0.0, 0.25, 0.5, 0.75, 1.0]
BLINK = {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}
JAW_OPEN = {"jawOpen": 1.0}

# Background test: person mask grown by this many pixels; "unchanged" tolerance.
ALPHA_PERSON, DILATE_PX, UNCHANGED = 0.02, 5, 2 / 255
BACKGROUND_STEPS = [0.25, 0.5, 0.75, 1.0]            # expression ramp, worst frame counts

# Speed test.
WARMUP, TIMED = 5, 100                               # render-only frames
JOB_SECONDS, JOB_REPEATS = 10, 3                     # whole `puppetry render` job

# Targets: (label, result key, test, threshold). Every portrait must pass.
TARGETS = [
    ("pose: re-tracked angle MAE (2-D fit) <= 3 degrees", "pose_mae", "<=", 3.0),
    ("pose: re-tracked signs all match", "pose_signs", "true", None),
    ("mouth: lip opening monotonic in jawOpen", "lip_monotonic", "true", None),
    ("mouth: lip opening at jawOpen 1 >= 0.35 IOD", "lip_at_1", ">=", 0.35),
    ("eyes: EAR drop at eyeBlink 1 >= 70 %", "ear_drop", ">=", 70.0),
    ("identity: max dlib distance to portrait <= 0.35", "id_max", "<=", 0.35),
    ("background: unchanged pixels >= 98 %", "bg_unchanged", ">=", 98.0),
    ("speed: render-only frames/s at 512² >= 30", "fps", ">=", 30.0),
    ("speed: real-time factor of `puppetry render` <= 0.5", "rtf", "<=", 0.5),
]


def smile_expression() -> np.ndarray:
    """The smile preset at its peak (smile 0.8, cheek and eye squint), float32[52]."""
    motion = preset("smile")
    return motion.expression[len(motion) // 2]


def pose_frame(axis: str, degrees: float) -> DrivingFrame:
    return DrivingFrame.make(**{axis: degrees})


def test_frames() -> dict[str, DrivingFrame]:
    """Every rendered test frame the identity check looks at: 8 poses, jaw, blink, smile."""
    frames = {f"{axis}{deg:+d}": pose_frame(axis, deg) for axis, deg in POSES}
    frames["jawOpen 1"] = DrivingFrame.make(expression=JAW_OPEN)
    frames["blink"] = DrivingFrame.make(expression=BLINK)
    frames["smile"] = DrivingFrame(expression=smile_expression())
    return frames


# ---------------------------------------------------------------------------------------
# 1. Prepare


@dataclass
class Subject:
    """One portrait ready to measure."""

    name: str
    renderer: WarpRenderer
    tracker: FaceTracker
    reference: np.ndarray                  # landmarks of the rendered neutral frame
    lost: list[str] = field(default_factory=list)   # test frames the tracker missed

    @property
    def portrait(self):
        return self.renderer.portrait

    def render(self, frame: DrivingFrame) -> np.ndarray:
        return self.renderer.render_frame(frame)

    def landmarks(self, frame: DrivingFrame, label: str) -> np.ndarray | None:
        """Re-tracked landmarks of a rendered frame, or None (noted in ``lost``)."""
        face = self.tracker.track(self.render(frame))
        if face is None:
            self.lost.append(label)
            return None
        return face.landmarks


def portrait_sources(folder: Path | None) -> list[str]:
    """The bundled portrait, then the JPEGs of ``folder`` (if it exists)."""
    sources = [BUNDLED]
    if folder is None:
        return sources
    if not folder.is_dir():
        print(f"note: {folder} not found; benchmarking the bundled portrait only", file=sys.stderr)
        return sources
    jpegs = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    return sources + [str(p) for p in jpegs]


def prepare(source: str, tracker: FaceTracker) -> Subject:
    renderer = WarpRenderer(load_portrait(source, size=SIZE))
    face = tracker.track(renderer.render_frame(DrivingFrame.make()))
    if face is None:
        raise RuntimeError(f"{source}: no face found in the rendered neutral frame")
    return Subject(Path(source).stem, renderer, tracker, face.landmarks)


# ---------------------------------------------------------------------------------------
# 2.-6. Measurements: each takes a Subject and returns a dict of results


def measure_pose(s: Subject) -> dict:
    """Error of the driven angle as read back in 2-D (fitted) and 3-D (tracker)."""
    err_2d, err_3d, signs = [], [], True
    for axis, deg in POSES:
        lm = s.landmarks(pose_frame(axis, deg), f"{axis}{deg:+d}")
        k = AXES.index(axis)
        if lm is None:
            got_2d = got_3d = np.inf
        else:
            got_2d, got_3d = fitted_pose(lm, s.reference)[k], relative_pose(lm, s.reference)[k]
        err_2d.append(abs(got_2d - deg))
        err_3d.append(abs(got_3d - deg))
        signs &= bool(np.sign(got_2d) == np.sign(deg))
    return {"pose_mae": float(np.mean(err_2d)), "pose_worst": float(np.max(err_2d)),
            "pose_worst_at": "{}{:+d}".format(*POSES[int(np.argmax(err_2d))]),
            "pose_signs": signs, "pose_mae_3d": float(np.mean(err_3d))}


def measure_mouth(s: Subject) -> dict:
    """Re-tracked lip opening (IOD) along the jawOpen ramp."""
    opening = []
    for level in JAW_LEVELS:
        lm = s.landmarks(DrivingFrame.make(expression={"jawOpen": level}), f"jawOpen {level}")
        opening.append(np.nan if lm is None else lip_opening(lm))
    return {"lip": opening, "lip_monotonic": bool(np.all(np.diff(opening) > 0)),
            "lip_at_1": opening[-1]}


def measure_blink(s: Subject) -> dict:
    """Drop of the eye aspect ratio at a full blink, percent of the neutral one."""
    neutral = eye_aspect_ratio(s.reference)
    lm = s.landmarks(DrivingFrame.make(expression=BLINK), "blink")
    closed = np.nan if lm is None else eye_aspect_ratio(lm)
    return {"ear_neutral": neutral, "ear_drop": 100 * (1 - closed / neutral)}


def measure_identity(s: Subject, encoder: IdentityEncoder) -> dict:
    """dlib distance portrait -> each test frame (worst), and the two baselines."""
    image = s.portrait.image
    anchor = encoder.embed(image)
    if anchor is None:
        return {"id_max": np.nan, "id_worst_at": "no face in portrait", "id_flip": np.nan,
                "id_frozen": np.nan}
    dist = {}
    for label, frame in test_frames().items():
        emb = encoder.embed(s.render(frame))
        dist[label] = np.inf if emb is None else encoder.distance(anchor, emb)
    worst = max(dist, key=dist.get)
    flipped = encoder.embed(np.ascontiguousarray(image[:, ::-1]))
    return {"id_max": dist[worst], "id_worst_at": worst,
            "id_flip": np.nan if flipped is None else encoder.distance(anchor, flipped),
            "id_frozen": encoder.distance(anchor, encoder.embed(image.copy()))}


def measure_background(s: Subject) -> dict:
    """Unchanged share of the pixels away from the person, worst frame of an
    expression-only ramp (jawOpen + smile + blink together)."""
    p = s.portrait
    size = 2 * DILATE_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    person = cv2.dilate((p.alpha > ALPHA_PERSON).astype(np.uint8), kernel) > 0
    away = ~person
    full = smile_expression() + DrivingFrame.make(expression={**JAW_OPEN, **BLINK}).expression
    shares = []
    for step in BACKGROUND_STEPS:
        rgb = s.render(DrivingFrame(expression=np.clip(step * full, 0, 1).astype(np.float32)))
        diff = np.abs(rgb.astype(np.int16) - p.image.astype(np.int16)).max(-1)
        unchanged = diff <= round(UNCHANGED * 255)
        shares.append(100 * unchanged[away].mean())
    return {"bg_unchanged": float(min(shares)), "bg_away_px": int(away.sum())}


# ---------------------------------------------------------------------------------------
# 7. Speed


def measure_render_fps(s: Subject) -> float:
    """Render-only frames/s over the talk-idle preset, after a warm-up."""
    motion = preset("talk-idle", duration=(WARMUP + TIMED) / 25, fps=25)
    frames = list(motion)
    for frame in frames[:WARMUP]:
        s.render(frame)
    t0 = time.perf_counter()
    for frame in frames[WARMUP:WARMUP + TIMED]:
        s.render(frame)
    return TIMED / (time.perf_counter() - t0)


def measure_job_rtf() -> tuple[float, list[float]]:
    """Best wall time / video seconds of ``puppetry render`` as a subprocess."""
    exe = str(Path(sys.executable).with_name("puppetry"))
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [exe, "render", BUNDLED, "--motion", "talk-idle", "--duration", str(JOB_SECONDS),
               "-o", str(Path(tmp) / "bench.mp4")]
        for _ in range(JOB_REPEATS):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=tmp, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            walls.append(time.perf_counter() - t0)
    return min(walls) / JOB_SECONDS, walls


# ---------------------------------------------------------------------------------------
# 8. Report


COLUMNS = [  # header, result key, format
    ("portrait", "name", "{}"),
    ("pose MAE 2-D (°)", "pose_mae", "{:.1f}"),
    ("worst (°)", "pose_worst", "{:.1f}"),
    ("worst at", "pose_worst_at", "{}"),
    ("signs", "pose_signs", "yn"),
    ("pose MAE 3-D (°)", "pose_mae_3d", "{:.1f}"),
    ("lip opening @ jaw 0/.25/.5/.75/1 (IOD)", "lip", "list"),
    ("monotonic", "lip_monotonic", "yn"),
    ("lip @ 1", "lip_at_1", "{:.2f}"),
    ("EAR drop (%)", "ear_drop", "{:.0f}"),
    ("id max", "id_max", "{:.3f}"),
    ("id worst at", "id_worst_at", "{}"),
    ("id flip", "id_flip", "{:.3f}"),
    ("id frozen", "id_frozen", "{:.3f}"),
    ("bg unchanged (%)", "bg_unchanged", "{:.2f}"),
    ("tracker lost", "lost", "lost"),
]


def cell(value, fmt: str) -> str:
    if fmt == "yn":
        return value if isinstance(value, str) else ("yes" if value else "**no**")
    if fmt == "list":
        return " ".join(f"{v:.2f}" for v in value)
    if fmt == "lost":
        return ", ".join(value) if value else "-"
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return fmt.format(value)


def mean_row(rows: list[dict]) -> dict:
    """Means of the numeric columns; counts for yes/no ones; blank otherwise."""
    mean = {"name": "**mean**"}
    for _, key, fmt in COLUMNS[1:]:
        values = [r[key] for r in rows]
        if fmt == "yn":
            mean[key] = f"{sum(values)}/{len(values)}"
        elif fmt == "list":
            mean[key] = list(np.mean(values, axis=0))
        elif fmt == "lost":
            mean[key] = [f"{sum(len(v) for v in values)} frames"] if any(values) else []
        elif isinstance(values[0], (float, int)):
            mean[key] = float(np.mean(values))
        else:
            mean[key] = ""
    return mean


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in [*rows, mean_row(rows)]:
        lines.append("| " + " | ".join("" if row[k] == "" else cell(row[k], f)
                                       for _, k, f in COLUMNS) + " |")
    return "\n".join(lines)


def verdicts(rows: list[dict], speed: dict) -> list[str]:
    """One PASS/FAIL line per target; per-portrait targets must hold for every portrait."""
    lines = []
    for label, key, test, threshold in TARGETS:
        if key in ("rtf", "fps"):
            checked = {BUNDLED: speed[key]}
        else:
            checked = {r["name"]: r[key] for r in rows}
        ok = {name: (bool(v) if test == "true" else
                     (v >= threshold) if test == ">=" else (v <= threshold))
              for name, v in checked.items()}
        failing = [n for n, good in ok.items() if not good]
        shown = ", ".join(f"{n} {cell(checked[n], '{:.2f}') if test != 'true' else ''}".strip()
                          for n in failing)
        lines.append(f"{'PASS' if not failing else 'FAIL'}  {label}"
                     + (f"  (failing: {shown})" if failing else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portraits", type=Path, default=DEV_PORTRAITS,
                        help=f"folder of extra JPEG portraits (default {DEV_PORTRAITS})")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_render.md",
                        help="markdown file for the table (default docs/benchmarks_render.md)")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")

    # 1.-6. every portrait through every measurement
    tracker, encoder = FaceTracker(static=True), IdentityEncoder()
    measurements = [measure_pose, measure_mouth, measure_blink,
                    lambda s: measure_identity(s, encoder), measure_background]
    rows, subjects = [], []
    for source in portrait_sources(args.portraits):
        s = prepare(source, tracker)
        row = {"name": s.name}
        for measure in measurements:
            row.update(measure(s))
        row["lost"] = s.lost
        rows.append(row)
        subjects.append(s)
        print(f"measured {s.name}", file=sys.stderr)

    # 7. speed, on the bundled portrait
    fps = measure_render_fps(subjects[0])
    rtf, walls = measure_job_rtf()
    speed = {"fps": fps, "rtf": rtf, "walls": walls}

    # 8. report
    elapsed = time.perf_counter() - t_start
    speed_text = (f"Speed ({BUNDLED}, {SIZE}², {os.cpu_count()} CPUs, load average "
                  f"{os.getloadavg()[0]:.1f}): render only {fps:.1f} frames/s "
                  f"({TIMED} talk-idle frames after {WARMUP} warm-up); "
                  f"`puppetry render {BUNDLED} --motion talk-idle --duration {JOB_SECONDS}` "
                  f"wall {' / '.join(f'{w:.1f} s' for w in walls)}, best real-time factor "
                  f"{rtf:.2f}.")
    results = "\n".join(verdicts(rows, speed))
    report = "\n\n".join([
        "# Warp renderer benchmark",
        f"`{command}`  \n{started}, benchmark run time {elapsed:.0f} s",
        "Pose: driven angle vs. re-tracked angle over yaw ±10/±20, pitch ±15, roll ±15 "
        "(2-D: `fitted_pose`; 3-D: `relative_pose`, the tracker's own depth). Lip opening "
        "in inter-ocular distances. EAR drop: eyeBlink 1 vs. neutral render. Identity: dlib "
        "distance from the portrait to each rendered test frame (8 poses, jawOpen 1, "
        "blink, smile); baselines: portrait mirrored (flip), portrait itself (frozen). "
        "Background: pixels outside the dilated person mask unchanged by jawOpen + smile + "
        "blink (worst of a 4-step ramp).",
        table(rows), speed_text, "```\n" + results + "\n```", ""])
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
