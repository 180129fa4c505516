"""Lip sync on real clips: drive a still frame of each speaker with the clip's own audio,
re-track the generated video and the real one, and compare mouth openings over time.

    python pipelines/evaluate_lipsync.py [--model PATH] [--features SPEC] [--stream]
        [--predictor model|loudness] [--portrait-frame closed|first]
        [--out docs/benchmarks_lipsync.md] [--videos-out /tmp/puppetry_lipsync]

Dev media are read in place from ``/work/shared/dev`` and never copied into the
repository; the videos this writes go to ``--videos-out``, outside it.

For every dev video:

1. Real openings: ``lip_opening`` of every frame, tracked in video mode (cached under
   the temp folder, keyed by file name, size and mtime).
2. Portrait: of the frames where the real lips are closed, the one with the widest-open
   eyes (the GRID clips open with parted lips; ``--portrait-frame first`` takes frame 0
   anyway), prepared at the video's own resolution (``frame="full"``, long side as in
   the video, at most 512 px) when the face is at least
   80 px wide there, else as a 512 px head crop.
3. Generated expressions: ``predict(audio, n_frames)`` for the video's frame count,
   rendered with no head motion (rotation 0), so that only the mouth differs; the
   loudness baseline (``jawOpen = 0.5 x loudness``) is rendered the same way.
4. Re-track the generated frames (video mode) -> openings.
5. Metrics: Pearson r at the best lag within ±2 frames against the real openings (over
   the whole clip, and over speech only), closure recall. The frozen portrait's r is
   undefined (a constant curve): counted as 0.
6. A side-by-side mp4 (real | generated | loudness, with the clip's audio) and a 4 x 4
   contact sheet of it under ``--videos-out``.

Then every file in ``/work/shared/dev/audio`` on the bundled portrait: pause behaviour
(rest level and chatter in pauses over 300 ms) and syllable following.
Finally the tables (printed, and written to ``--out`` with the command and date) and one
PASS/FAIL line per target.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from puppetry import Motion, load_portrait, render
from puppetry.audio import SAMPLE_RATE, load_audio
from puppetry.eval import lipsync
from puppetry.eval.metrics import eye_aspect_ratio, lip_opening
from puppetry.expression.arkit import N_EXPRESSIONS
from puppetry.expression.speech import (CalibrationFold, LipCalibration, SpeechToExpression,
                                        default_model_path, load_calibration_folds)
from puppetry.face.tracker import MIN_FACE_PX, FaceTracker
from puppetry.io import contact_sheet, read_video_frames, video_info, write_image, write_video
from puppetry.portrait import BUNDLED, Portrait

ROOT = Path(__file__).resolve().parents[1]
DEV = Path("/work/shared/dev")                 # dev media: read here, never committed
DEV_VIDEOS = sorted((DEV / "videos").glob("*.mp4"))
DEV_AUDIO = sorted((DEV / "audio").glob("*.wav"))
CACHE = Path(tempfile.gettempdir()) / "puppetry_lipsync_cache"
MAX_SIZE = 512                                 # px, largest canvas side for the video portraits
CROP_SIZE = 512                                # px, canvas side when the face is too small in full
SHEET_TILE = 640                               # px, contact-sheet tile width (a side-by-side frame)
LOUDNESS, MODEL = "loudness", "model"

Predict = Callable[[np.ndarray, int], np.ndarray]   # (audio float32[N], n_frames) -> [n x 52]

# Targets on the evaluated predictor, on held-out clips. The issues fix r, the margin over
# loudness, the lag, the recall, the mouth range and the rest level; the chatter and
# syllable thresholds are ours (weak checks).
MIN_R, MIN_GAIN, MAX_ABS_LAG, MIN_RECALL = 0.55, 0.2, 1, 0.8
RANGE_PERCENTILES = (5, 95)     # a mouth's range: these percentiles of its opening, apart
RANGE_RATIO = (0.7, 1.4)        # generated range / the real speaker's, on every clip
MAX_CHATTER, MIN_SYLLABLE_R = 0.1, 0.3


# ---------------------------------------------------------------------------------------
# The predictors


def model_predictor(path: Path, features: str | None, fps: float,
                    calibration: LipCalibration | None | str = "checkpoint") -> Predict:
    """An Audio2Expression checkpoint as ``predict(audio, n_frames)``; ``features``
    replaces the extractor the checkpoint names (e.g. a local wav2vec2 folder);
    ``calibration`` replaces the checkpoint's own lip calibration (e.g. a fold's)."""
    s2e = SpeechToExpression.load(path)
    if calibration != "checkpoint":
        s2e = s2e.with_calibration(calibration)
    if features:
        from puppetry.features import load_features
        extractor = load_features(features)
        if (extractor.dim, extractor.rate) != (s2e.dims.feature_dim, s2e.dims.feature_rate):
            raise ValueError(f"--features {features} gives {extractor.dim} values at "
                             f"{extractor.rate:g} Hz, but {path.name} was trained on "
                             f"{s2e.dims.feature_dim} at {s2e.dims.feature_rate:g} Hz "
                             f"({s2e.dims.features}): pass a matching extractor")
        s2e.features = extractor
    return lambda audio, n_frames: s2e(audio, n_frames=n_frames, fps=fps)


def stream_predictor(path: Path | None, fps: float,
                     calibration: LipCalibration | None | str = "checkpoint") -> Predict:
    """An Audio2Expression checkpoint run as a stream (``ExpressionStream``), fed 20 ms
    chunks as from a microphone; frames past the audio's are held at the last one."""
    from puppetry.expression.stream import ExpressionStream

    loaded = ExpressionStream.load(path, fps=fps)
    chunk = SAMPLE_RATE // 50                                            # 20 ms
    cal = loaded.calibration if calibration == "checkpoint" else calibration

    def predict(audio: np.ndarray, n_frames: int) -> np.ndarray:
        stream = ExpressionStream(loaded.model, fps, cal)               # a fresh session per clip
        out = [stream.push(audio[i:i + chunk]) for i in range(0, len(audio), chunk)]
        out = np.concatenate([*out, stream.flush(), np.zeros((0, N_EXPRESSIONS), np.float32)])
        if len(out) < n_frames:
            out = np.concatenate([out, np.repeat(out[-1:] if len(out) else
                                                 np.zeros((1, N_EXPRESSIONS), np.float32),
                                                 n_frames - len(out), 0)])
        return out[:n_frames]
    return predict


def loudness_predictor(fps: float) -> Predict:
    return lambda audio, n_frames: lipsync.baseline_expressions(audio, n_frames, fps)


def held_out_fold(folds: list[CalibrationFold], clip: str) -> CalibrationFold | None:
    """The first calibration fold not tuned on ``clip`` (a file stem), or None."""
    return next((f for f in folds if clip not in f.tuned_on), None)


# ---------------------------------------------------------------------------------------
# 1.-4. Real and generated openings


def real_openings(path: Path) -> np.ndarray:
    """Step 1: the real speaker's lip opening per frame (IOD), float32[T], cached."""
    st = path.stat()
    cached = CACHE / f"{path.stem}-{st.st_size}-{st.st_mtime_ns}.npy"
    if cached.is_file():
        return np.load(cached)
    tracker = FaceTracker(static=False)
    openings = lipsync.track_openings(read_video_frames(path), tracker)
    tracker.close()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, openings)
    return openings


@dataclass
class Still:
    """Step 2: the still frame a clip's speaker is driven from."""

    portrait: Portrait
    index: int            # frame of the video
    mode: str             # "full" or "crop"
    face_px: float        # face width on the canvas

    def describe(self) -> str:
        h, w = self.portrait.size
        return f"#{self.index}, {self.mode} {w}×{h}, face {self.face_px:.0f} px"


def face_width(p: Portrait) -> float:
    x = p.landmarks[:, 0]
    return float(x.max() - x.min())


def still_index(path: Path, openings: np.ndarray) -> int:
    """Step 2: of the frames where the real lips are closed (below 15 % of their open
    level; else the most closed one), the one with the widest-open eyes (no blink)."""
    closed = np.flatnonzero(lipsync.closed_mask(openings))
    if len(closed) == 0:
        return int(np.argmin(openings))
    wanted, tracker, eyes = set(closed.tolist()), FaceTracker(static=True), {}
    for i, rgb in enumerate(read_video_frames(path)):
        face = tracker.track(rgb) if i in wanted else None
        if face is not None:
            eyes[i] = eye_aspect_ratio(face.landmarks)
    tracker.close()
    return max(eyes, key=eyes.get) if eyes else int(closed[0])


def choose_still(path: Path, openings: np.ndarray, which: str) -> Still:
    """Step 2: the still frame (closed lips, open eyes; or frame 0) at the video's own
    resolution when the face is big enough there, else as a head crop."""
    index = 0 if which == "first" else still_index(path, openings)
    rgb = next(f for i, f in enumerate(read_video_frames(path)) if i == index)
    size = min(MAX_SIZE, max(rgb.shape[:2]))
    portrait = load_portrait(rgb, size=size, frame="full")
    if face_width(portrait) >= MIN_FACE_PX:
        return Still(portrait, index, "full", face_width(portrait))
    portrait = load_portrait(rgb, size=CROP_SIZE, frame="crop")
    return Still(portrait, index, "crop", face_width(portrait))


def mouth_motion(expressions: np.ndarray, fps: float) -> Motion:
    """Step 3: expressions float32[T x 52] on a still head (rotation, translation 0)."""
    motion = Motion.still(len(expressions), fps)
    motion.expression = np.asarray(expressions, np.float32)
    return motion


def generate(portrait: Portrait, predict: Predict, audio: np.ndarray, n_frames: int,
             fps: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Steps 3-4: rendered frames (uint8[H x W x 3]) and their re-tracked openings."""
    expressions = predict(audio, n_frames)
    if expressions.shape != (n_frames, N_EXPRESSIONS):
        raise ValueError(f"the predictor gave expressions of shape {expressions.shape}: "
                         f"expected ({n_frames}, {N_EXPRESSIONS})")
    frames = list(render(portrait, mouth_motion(expressions, fps)))
    tracker = FaceTracker(static=False)
    openings = lipsync.track_openings(frames, tracker)
    tracker.close()
    return frames, openings


# ---------------------------------------------------------------------------------------
# 5. Metrics


def mouth_range(openings: np.ndarray) -> float:
    """How far a mouth moves: the ``RANGE_PERCENTILES`` (5th to 95th) of its opening
    curve float[T] apart, in the curve's units (IOD)."""
    lo, hi = np.percentile(np.asarray(openings, np.float64), RANGE_PERCENTILES)
    return float(hi - lo)


def compare(generated: np.ndarray, real: np.ndarray, speech: np.ndarray) -> dict:
    """r and lag over the clip and over speech only (pause interiors masked), the closure
    recall and the mouth range (generated / real) of one generated opening curve against
    the real one."""
    r, lag = lipsync.best_lag_correlation(generated, real)
    r_speech, _ = lipsync.best_lag_correlation(generated, np.where(speech, real, np.nan))
    return {"r": r, "lag": lag, "r_speech": r_speech,
            "recall": lipsync.closure_recall(real, generated, speech),
            "range": mouth_range(generated) / max(mouth_range(real), 1e-6)}


# ---------------------------------------------------------------------------------------
# 6. Pictures


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` outlined in its top-left corner (a copy)."""
    out = rgb.copy()
    scale = out.shape[0] / 480
    for color, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, (6, round(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale,
                    color, thick, cv2.LINE_AA)
    return out


def side_by_side(panels: list[tuple[str, np.ndarray]], height: int) -> np.ndarray:
    """Labelled panels resized to ``height`` px, left to right."""
    row = []
    for name, rgb in panels:
        h, w = rgb.shape[:2]
        if h != height:
            rgb = cv2.resize(rgb, (round(w * height / h), height), interpolation=cv2.INTER_AREA)
        row.append(label(rgb, name))
    return np.concatenate(row, axis=1)


def write_pictures(out: Path, stem: str, panels: dict[str, list[np.ndarray]],
                   audio: np.ndarray, fps: float) -> tuple[Path, Path]:
    """Step 6: ``stem``.mp4 (the panels side by side, with ``audio``) and
    ``stem``_sheet.png (16 of its frames, evenly spaced)."""
    names = list(panels)
    n = len(panels[names[0]])
    height = panels[names[0]][0].shape[0]
    picks = set(np.linspace(0, n - 1, 16).round().astype(int).tolist())
    sheet, labels = [], []

    def frames():
        for i in range(n):
            rgb = side_by_side([(k, panels[k][i]) for k in names], height)
            if i in picks:
                sheet.append(rgb)
                labels.append(f"{i / fps:.2f} s")
            yield rgb

    video = write_video(out / f"{stem}.mp4", frames(), fps, audio=(audio, SAMPLE_RATE))
    image = write_image(out / f"{stem}_sheet.png", contact_sheet(sheet, labels=labels,
                                                                  tile=SHEET_TILE))
    return video, image


# ---------------------------------------------------------------------------------------
# The two evaluations


@dataclass
class Clip:
    name: str
    frames: int
    still: str
    closures: int
    results: dict[str, dict] = field(default_factory=dict)   # predictor -> compare()
    av_lag: tuple[float, int] = (np.nan, 0)   # real opening vs loudness, ±5 frames
    seconds: float = 0.0
    calibration: str = "checkpoint"           # the model's lip calibration: a fold's name


def evaluate_clip(path: Path, predictors: dict[str, Predict], args) -> Clip:
    """Steps 1-6 for one dev video."""
    t0 = time.perf_counter()
    info = video_info(path)
    fps, n = info["fps"], info["n_frames"]
    audio = load_audio(path)
    # 1. real openings
    real = real_openings(path)
    if len(real) != n:
        raise RuntimeError(f"{path.name}: tracked {len(real)} frames, the header says {n}")
    speech = lipsync.speech_mask(audio, n, fps)
    # 2. the still frame
    still = choose_still(path, real, args.portrait_frame)
    clip = Clip(path.stem, n, still.describe(),
                len(lipsync.find_closures(real, speech)))
    clip.av_lag = lipsync.best_lag_correlation(lipsync.loudness_baseline(audio, n, fps), real, 5)
    # 3.-5. generate, re-track, compare: every predictor on the same still frame
    panels = {"real": list(read_video_frames(path))}
    for name, predict in predictors.items():
        frames, openings = generate(still.portrait, predict, audio, n, fps)
        clip.results[name] = compare(openings, real, speech)
        panels[name] = frames
    # 6. pictures
    write_pictures(args.videos_out, path.stem, panels, audio, fps)
    clip.seconds = time.perf_counter() - t0
    return clip


@dataclass
class Speech:
    name: str
    seconds: float
    pauses: list
    behaviour: dict
    syllable: tuple[float, int]


def evaluate_audio(path: Path, portrait: Portrait, rest: float, name: str, predict: Predict,
                   args, fps: float) -> Speech:
    """A speech file on the bundled portrait: pause behaviour and syllable following."""
    audio = load_audio(path)
    n = round(len(audio) / SAMPLE_RATE * fps)
    frames, openings = generate(portrait, predict, audio, n, fps)
    behaviour = lipsync.pause_behaviour(audio, openings, fps, rest=rest)
    write_pictures(args.videos_out, f"audio_{path.stem}", {name: frames}, audio, fps)
    return Speech(path.stem, len(audio) / SAMPLE_RATE, behaviour["pauses"], behaviour,
                  lipsync.syllable_following(audio, openings, fps))


def held_out_protocol(folds: list[CalibrationFold], model: bool) -> str:
    """Which clips each calibration was tuned on and which it is judged on (markdown)."""
    stems = [p.stem for p in DEV_VIDEOS]
    if not model:
        return "Held-out protocol: nothing is tuned (the loudness baseline alone)."
    if not folds:
        return ("Held-out protocol: **none**. The checkpoint has no calibration folds "
                "(`lip_calibration_folds`, written by `pipelines/calibrate_lips.py`), so which "
                "clips its lip calibration was chosen on is unknown: these figures are not "
                "held out.")
    lines = ["Held-out protocol: each clip is driven with the lip calibration of a fold "
             "that was not tuned on it; only those held-out clips are reported.", "",
             "| calibration fold | tuned on | judged on (held out) | open_gain | dead_zone |",
             "|---|---|---|---|---|"]
    for f in folds:
        judged = [s for s in stems if held_out_fold(folds, s) is f]
        lines.append(f"| {f.name} | {', '.join(f.tuned_on)} | {', '.join(judged) or '–'} | "
                     f"{f.calibration.open_gain:.2f} | {f.calibration.dead_zone:.2f} |")
    unjudged = [s for s in stems if held_out_fold(folds, s) is None]
    if unjudged:
        lines += ["", f"Not reported (every fold was tuned on them): {', '.join(unjudged)}."]
    return "\n".join(lines)


def rest_opening(portrait: Portrait) -> float:
    """Lip opening of the portrait rendered with no expression (IOD)."""
    frame = next(render(portrait, Motion.still(1)))
    face = FaceTracker(static=True).track(frame)
    return 0.0 if face is None else lip_opening(face.landmarks)


# ---------------------------------------------------------------------------------------
# Report


def fmt(x, spec="{:.2f}") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return spec.format(x)


def pooled_recall(clips: list[Clip], name: str) -> float:
    """Closures reproduced over closures, all clips together."""
    hits = sum(c.results[name]["recall"] * c.closures for c in clips if c.closures)
    total = sum(c.closures for c in clips)
    return hits / total if total else float("nan")


def geometric_range(clips: list[Clip], name: str) -> float:
    """Geometric mean over the clips of the generated mouth range / the real one."""
    return float(np.exp(np.mean([np.log(c.results[name]["range"]) for c in clips])))


def clip_table(clips: list[Clip], names: list[str], main: str) -> str:
    head = ["clip", "frames", "still frame", "A/V: real vs loudness r (lag)", "closures"]
    if main != LOUDNESS:
        head.append("calibration")
    for name in names:
        head += [f"{name} r", "lag", "r speech", "recall", "range (× real)"]
    if main != LOUDNESS:
        head.append("r − loudness")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in clips:
        row = [c.name, str(c.frames), c.still, f"{fmt(c.av_lag[0])} ({c.av_lag[1]:+d})",
               str(c.closures)]
        if main != LOUDNESS:
            row.append(c.calibration)
        for name in names:
            m = c.results[name]
            row += [fmt(m["r"]), f"{m['lag']:+d}", fmt(m["r_speech"]), fmt(m["recall"]),
                    fmt(m["range"])]
        if main != LOUDNESS:
            row.append(fmt(c.results[main]["r"] - c.results[LOUDNESS]["r"], "{:+.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    mean = ["**mean**", str(sum(c.frames for c in clips)), "", "",
            str(sum(c.closures for c in clips))]
    if main != LOUDNESS:
        mean.append("")
    for name in names:
        mean += [fmt(np.mean([c.results[name]["r"] for c in clips])),
                 fmt(np.mean([abs(c.results[name]["lag"]) for c in clips]), "|{:.1f}|"),
                 fmt(np.mean([c.results[name]["r_speech"] for c in clips])),
                 fmt(pooled_recall(clips, name)) + " (pooled)",
                 fmt(geometric_range(clips, name)) + " (geo. mean)"]
    if main != LOUDNESS:
        mean.append(fmt(np.mean([c.results[main]["r"] - c.results[LOUDNESS]["r"]
                                 for c in clips]), "{:+.2f}"))
    lines.append("| " + " | ".join(mean) + " |")
    return "\n".join(lines)


def audio_table(rows: list[Speech], name: str) -> str:
    head = ["audio", "s", "pauses > 0.3 s", "floor (IOD)", "open level (IOD above floor)",
            "mean in pauses (IOD)", "pause level (× open)", "chatter (× open)",
            "syllable r (lag)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in rows:
        b = s.behaviour
        total = sum(e - a for a, e in s.pauses)
        lines.append("| " + " | ".join([
            s.name, f"{s.seconds:.1f}", f"{len(s.pauses)} ({total:.1f} s)",
            fmt(b["floor"], "{:.3f}"), fmt(b["open_level"], "{:.3f}"),
            fmt(b["pause_mean"], "{:.3f}"), fmt(b["pause_level"]), fmt(b["chatter"]),
            f"{fmt(s.syllable[0])} ({s.syllable[1]:+d})"]) + " |")
    return "\n".join(lines)


def verdicts(clips: list[Clip], speech: list[Speech], main: str) -> list[str]:
    def line(ok: bool, text: str, detail: str = "") -> str:
        return f"{'PASS' if ok else 'FAIL'}  {text}" + (f"  ({detail})" if detail else "")

    r = [c.results[main]["r"] for c in clips]
    gain = [c.results[main]["r"] - c.results[LOUDNESS]["r"] for c in clips]
    lags = {c.name: c.results[main]["lag"] for c in clips}
    recall = pooled_recall(clips, main)
    late = [f"{k} {v:+d}" for k, v in lags.items() if abs(v) > MAX_ABS_LAG]
    off_range = [f"{c.name} {c.results[main]['range']:.2f}" for c in clips
                 if not RANGE_RATIO[0] <= c.results[main]["range"] <= RANGE_RATIO[1]]
    with_pauses = [s for s in speech if s.pauses]
    open_rest = [f"{s.name} {s.behaviour['pause_level']:.2f}" for s in with_pauses
                 if not s.behaviour["rests_closed"]]
    chatter = [f"{s.name} {s.behaviour['chatter']:.2f}" for s in with_pauses
               if not s.behaviour["chatter"] < MAX_CHATTER]
    deaf = [f"{s.name} {s.syllable[0]:.2f}" for s in speech if not s.syllable[0] >= MIN_SYLLABLE_R]
    return [
        line(np.mean(r) >= MIN_R, f"lip sync: mean r >= {MIN_R}", f"{main} {np.mean(r):.2f}"),
        line(np.mean(gain) >= MIN_GAIN, f"lip sync: mean r − loudness baseline r >= {MIN_GAIN}",
             f"{np.mean(gain):+.2f}" + (" (the loudness baseline against itself)"
                                        if main == LOUDNESS else "")),
        line(not late, f"lip sync: best lag within ±{MAX_ABS_LAG} frame on every clip",
             ", ".join(late)),
        line(recall >= MIN_RECALL, f"closures: lips closed in >= {MIN_RECALL:.0%} of the "
             f"real speaker's closures (pooled)", f"{recall:.2f}"),
        line(not off_range, f"mouth range ({RANGE_PERCENTILES[0]}th-{RANGE_PERCENTILES[1]}th "
             f"percentile) {RANGE_RATIO[0]}-{RANGE_RATIO[1]} × the real speaker's on every clip",
             ", ".join(off_range) or f"geometric mean {geometric_range(clips, main):.2f}"),
        line(not open_rest, f"pauses > {lipsync.MIN_PAUSE_S} s: mouth rests closed "
             f"(pause level < {lipsync.REST_FRACTION} × open level)", ", ".join(open_rest)),
        line(not chatter, f"pauses: no chatter (std < {MAX_CHATTER} × open level)",
             ", ".join(chatter)),
        line(not deaf, f"audio files: mouth follows syllables (r >= {MIN_SYLLABLE_R})",
             ", ".join(deaf)),
    ]


NOTES = """\
Openings are inner-lip gaps (`metrics.lip_opening`, inter-ocular distances), tracked in
video mode on the real clip and on the generated one. r: Pearson r at the best lag within
±2 frames; lag > 0 means the generated mouth is late. "r speech" masks the interiors of
pauses over 0.3 s (the GRID speakers rest with parted lips there). Closures: runs of
frames where the real opening is below 15 % of its 90th percentile, not wholly inside a
pause; reproduced if the generated opening is below 15 % of its own 90th percentile
within ±1 frame. A/V: the real opening against the clip's own loudness envelope, best lag
within ±5 frames (a check of the clip's audio/video alignment, no rendering involved).
The loudness baseline drives jawOpen = 0.5 × speech-band loudness (300-3400 Hz, dB,
80 ms smoothing, 10th-90th percentile mapped to 0-1); the frozen portrait's r is undefined
(constant opening), counted as 0. Audio files: the bundled portrait, which is photographed
with parted lips; openings are measured above its floor, the lower of its rest opening
(no expression) and the curve's 2nd percentile; pause level and chatter (std) are the
mean and spread in pause interiors (80 ms trimmed at each end) as fractions of the
90th-percentile opening in speech."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="Audio2Expression checkpoint (default: the shipped "
                             "puppetry/assets/audio2expression.pt)")
    parser.add_argument("--features", default=None,
                        help="feature extractor replacing the one the checkpoint names, "
                             "e.g. mel or wav2vec2:/path (default: the checkpoint's)")
    parser.add_argument("--stream", action="store_true",
                        help="run the model as a stream (ExpressionStream, 20 ms chunks; "
                             "default --model: the shipped streaming model)")
    parser.add_argument("--predictor", choices=(MODEL, LOUDNESS), default=MODEL,
                        help="evaluate the model (with the loudness baseline beside it), "
                             "or only the loudness baseline")
    parser.add_argument("--portrait-frame", choices=("closed", "first"), default="closed",
                        help="still frame of each clip: lips closed and eyes open (default), "
                             "or frame 0")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_lipsync.md",
                        help="markdown report (default docs/benchmarks_lipsync.md)")
    parser.add_argument("--videos-out", type=Path, default=Path("/tmp/puppetry_lipsync"),
                        help="folder for the side-by-side videos and contact sheets; keep "
                             "it outside the repository (dev media are not ours to commit)")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if not DEV_VIDEOS:
        parser.error(f"no dev videos in {DEV / 'videos'}: this evaluation needs the shared "
                     f"dev media")
    fps = video_info(DEV_VIDEOS[0])["fps"]

    # The predictors: the loudness baseline always, the model unless --predictor loudness.
    # A checkpoint with calibration folds (pipelines/calibrate_lips.py) is run on each clip
    # with the calibration of a fold that was not tuned on that clip: held out.
    loudness = loudness_predictor(fps)
    main_name, model_text, shipped, folds, by_fold = LOUDNESS, "none (--predictor loudness)", None, [], {}
    if args.predictor == MODEL:
        path = args.model or default_model_path()
        try:
            if args.stream:
                from puppetry.expression.stream import default_stream_model_path

                path = args.model or default_stream_model_path()
                make = lambda cal="checkpoint": stream_predictor(path, fps, cal)  # noqa: E731
            else:
                make = lambda cal="checkpoint": model_predictor(path, args.features, fps, cal)  # noqa: E731
            shipped = make()
        except FileNotFoundError as err:
            parser.error(f"{err}; or evaluate the baseline alone with --predictor loudness")
        folds = load_calibration_folds(path)
        by_fold = {f.name: make(f.calibration) for f in folds}
        main_name, model_text = MODEL, f"`{path}`" + (" as a stream" if args.stream else "")
    protocol = held_out_protocol(folds, args.predictor == MODEL)
    print(protocol, file=sys.stderr)

    # Steps 1-6 on every held-out dev video, then the speech files on the bundled portrait.
    clips = []
    for path in DEV_VIDEOS:
        fold = held_out_fold(folds, path.stem)
        if folds and fold is None:
            continue                                     # every fold was tuned on it
        predictors = {LOUDNESS: loudness}
        if shipped is not None:
            predictors = {MODEL: by_fold[fold.name] if fold else shipped, **predictors}
        clips.append(evaluate_clip(path, predictors, args))
        clips[-1].calibration = fold.name if fold else "checkpoint"
        print(f"{path.stem}: {clips[-1].seconds:.0f} s", file=sys.stderr)
    t_clips = time.perf_counter()
    portrait = load_portrait(BUNDLED)
    rest = rest_opening(portrait)
    speech = [evaluate_audio(p, portrait, rest, main_name, shipped or loudness, args, fps)
              for p in DEV_AUDIO]
    elapsed = time.perf_counter() - t_start

    names = [MODEL, LOUDNESS] if shipped is not None else [LOUDNESS]
    results = "\n".join(verdicts(clips, speech, main_name))
    report = "\n\n".join([
        "# Lip-sync evaluation",
        f"`{command}`  \n{started}; model: {model_text}; run time {elapsed:.0f} s "
        f"(videos {t_clips - t_start:.0f} s, audio files {elapsed - (t_clips - t_start):.0f} s) "
        f"on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        NOTES,
        protocol,
        f"## Dev videos ({DEV / 'videos'})",
        clip_table(clips, names, main_name),
        f"## Speech files ({DEV / 'audio'}), {main_name} on the bundled portrait "
        f"(rest opening {rest:.3f} IOD)",
        audio_table(speech, main_name),
        "```\n" + results + "\n```",
        f"Side-by-side videos and contact sheets: `{args.videos_out}` (not committed).", ""])
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
