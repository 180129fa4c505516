"""Give an Audio2Expression checkpoint its lip calibration (``LipCalibration`` in its meta),
tuned on some real clips and judged on the others.

    python pipelines/calibrate_lips.py --model M --out OUT [--data data/speech]
    python pipelines/calibrate_lips.py --model M --out OUT --stream      # a streaming model
    python pipelines/calibrate_lips.py --model M --out OUT --folds ""    # no real clips

The calibration is an inference-time map (``puppetry.expression.speech.calibrate_lips``).

1. Fixed values, from the corpus's own targets (``puppetry.expression.visemes``), never
   from real clips:

   - dead_zone: the jaw target of t/d/n (0.15; also iy's and uw's): consonants with the
     lips in contact or nearly so stay at or below it;
   - press_full: m's press target (0.35), the weakest bilabial press;
   - roll_full: v's lower-lip roll target (0.5);
   - pucker_from, pucker_full: uh's and uw's pucker targets (0.35, 0.75): rounding from
     uh's level up to uw's pulls the lips shut as a press does (the targets render uw and
     w with the jaw inside the dead zone; on real speech the model hears the rounding of a
     w but leaves the jaw half open).

2. Start: open_gain = 1 / (p99 - dead_zone), p99 the 99th percentile of the model's
   jawOpen on the held-out synthetic voices of ``--data`` (the voices
   ``train_audio2expression.py`` holds out; their features from its cache beside the
   corpus when it has them), so that a wide-open vowel maps to 1.

3. Folds (``--folds``, default ``grid,obama``: the dev videos ``grid_*`` and ``obama_*``):
   for each fold, open_gain is tuned on that fold's clips only, so that the mouth the
   renderer draws moves as far as the real speaker's: the clip's own audio drives a still
   frame of its speaker (as ``evaluate_lipsync.py`` does), the result is re-tracked, and
   the geometric mean over the fold's clips of (5th-95th percentile of the generated lip
   opening) / (the real one's) is brought to 1 by secant steps on log gain. This is the
   one value real speech sets: how far lips part for a given jawOpen is the renderer's
   (and, for an ARKit rig, the rig's) business, how far real speakers open is not in the
   synthetic corpus. Each fold's calibration is stored, so that
   ``evaluate_lipsync.py`` judges every clip with a calibration that never saw it.

4. The calibration used (``lip_calibration``): the fixed values and the geometric mean of
   the folds' gains (with no folds: the start gain). Its held-out figures are the folds'.

The checkpoint is copied with ``lip_calibration``, ``lip_calibration_folds`` and
``lip_calibration_notes`` in its meta; weights and everything else stay as they are.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))       # sibling pipelines

from puppetry.audio import SAMPLE_RATE, load_audio  # noqa: E402
from puppetry.eval import lipsync  # noqa: E402
from puppetry.expression.arkit import INDEX  # noqa: E402
from puppetry.expression.model import Audio2Expression  # noqa: E402
from puppetry.expression.speech import LipCalibration, SpeechToExpression  # noqa: E402
from puppetry.expression.visemes import VISEME_TARGETS  # noqa: E402
from puppetry.io import video_info  # noqa: E402

FPS = 25.0
GAIN_PERCENTILE = 99
FOLDS = {"grid": "grid_*.mp4", "obama": "obama_*.mp4"}   # name -> dev video glob
RANGE_TOLERANCE = 0.04     # stop when the fold's range ratio is within 4 % of 1
MAX_STEPS = 6              # renders per fold at most
GAIN_LIMITS = (0.5, 8.0)


def target_values(rounding: bool = True) -> dict[str, float]:
    """The calibration's fixed values, read from the corpus targets."""
    values = dict(dead_zone=VISEME_TARGETS["t"]["jawOpen"],
                  press_full=VISEME_TARGETS["m"]["mouthPressLeft"],
                  roll_full=VISEME_TARGETS["v"]["mouthRollLower"])
    if rounding:
        values.update(pucker_from=VISEME_TARGETS["uh"]["mouthPucker"],
                      pucker_full=VISEME_TARGETS["uw"]["mouthPucker"])
    return values


def open_gain(jaw: np.ndarray, dead_zone: float) -> tuple[float, float]:
    """(gain, p99): the gain that maps the ``GAIN_PERCENTILE``-th percentile of ``jaw``
    (the model's jawOpen on held-out speech, all frames) to 1, rounded to 2 decimals."""
    p99 = float(np.percentile(jaw, GAIN_PERCENTILE))
    if p99 <= dead_zone:
        raise ValueError(f"the model's {GAIN_PERCENTILE}th-percentile jawOpen ({p99:.3f}) is "
                         f"not above the dead zone ({dead_zone}): is it trained?")
    return round(1.0 / (p99 - dead_zone), 2), p99


def validation_audio(data: Path, dims=None) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """The held-out voices' utterances of the corpus (clean and augmented variants), and
    their features where ``train_audio2expression.py``'s feature cache beside the corpus
    holds them for the extractor ``dims`` names (a model's ModelDims), else None."""
    import types

    import train_audio2expression as train

    items = train.load_corpus(data, ("jawOpen",))
    held = train.held_out_voices([v for *_, v in items])
    keep = [k for k, (_, _, voice) in enumerate(items) if voice in held]
    cache = None
    if dims is not None:
        spec = types.SimpleNamespace(name=dims.features, dim=dims.feature_dim, rate=dims.feature_rate)
        cache = train.cached_features(items, spec, data)
    return [items[k][0] for k in keep], None if cache is None else [cache[k] for k in keep]


def next_gain(tried: list[tuple[float, float]]) -> float:
    """The next gain to try from (gain, range ratio) pairs: the ratio taken as a power law
    of the gain through the last two (secant on logs; proportional from one), clamped."""
    (g1, r1), (g0, r0) = tried[-1], (tried[-2] if len(tried) > 1 else (0.0, 0.0))
    slope = 1.0
    if len(tried) > 1 and g0 != g1 and r0 > 0 and r1 > 0 and r0 != r1:
        slope = float(np.clip(math.log(r1 / r0) / math.log(g1 / g0), 0.2, 2.0))
    g = g1 * math.exp(-math.log(max(r1, 1e-3)) / slope)
    return float(np.clip(g, *GAIN_LIMITS))


@dataclass
class TuningClip:
    """A real clip to tune on: its audio, the real speaker's openings and the still."""

    stem: str
    audio: np.ndarray          # float32[N], 16 kHz
    n: int                     # video frames
    fps: float
    real: np.ndarray           # float32[n], IOD
    speech: np.ndarray         # bool[n], False inside pauses
    portrait: object           # the Portrait of the still frame
    features: np.ndarray | None = None   # the offline model's features, computed once


def tuning_clips(pattern: str) -> list[TuningClip]:
    """The dev videos matching ``pattern``, prepared as ``evaluate_lipsync`` does."""
    import evaluate_lipsync as ev

    clips = []
    for path in sorted((ev.DEV / "videos").glob(pattern)):
        info = video_info(path)
        audio, n, fps = load_audio(path), info["n_frames"], info["fps"]
        real = ev.real_openings(path)
        still = ev.choose_still(path, real, "closed")
        clips.append(TuningClip(path.stem, audio, n, fps, real,
                                lipsync.speech_mask(audio, n, fps), still.portrait))
    return clips


class Renderer:
    """Drives each tuning clip's still with the model under a candidate calibration and
    measures the re-tracked mouth against the real one (``evaluate_lipsync.compare``)."""

    def __init__(self, model: Path, stream: bool):
        import evaluate_lipsync as ev

        self.ev, self.model, self.stream = ev, model, stream
        self.s2e = None if stream else SpeechToExpression.load(model)

    def measure(self, cal: LipCalibration, clip: TuningClip) -> dict:
        if self.stream:
            predict = self.ev.stream_predictor(self.model, clip.fps, cal)
        else:
            if clip.features is None:
                clip.features = self.s2e.features(clip.audio)
            s2e = self.s2e.with_calibration(cal)
            predict = lambda audio, n: s2e(audio, n_frames=n, fps=clip.fps,  # noqa: E731
                                           features=clip.features)
        _, openings = self.ev.generate(clip.portrait, predict, clip.audio, clip.n, clip.fps)
        return self.ev.compare(openings, clip.real, clip.speech)


def tune_gain(renderer: Renderer, clips: list[TuningClip], base: LipCalibration,
              start: float) -> tuple[float, list[dict]]:
    """open_gain that makes the geometric-mean mouth range over ``clips`` match the real
    speakers' (within ``RANGE_TOLERANCE``), and every step tried."""
    tried, steps, gain = [], [], start
    for _ in range(MAX_STEPS):
        gain = round(gain, 2)
        results = {c.stem: renderer.measure(replace(base, open_gain=gain), c) for c in clips}
        ratio = float(np.exp(np.mean([np.log(m["range"]) for m in results.values()])))
        steps.append({"open_gain": gain, "range": round(ratio, 3),
                      **{stem: {k: round(float(m[k]), 3) for k in ("r", "recall", "range")}
                         for stem, m in results.items()}})
        print(f"  open_gain {gain:.2f}: range {ratio:.3f} x real "
              + "  ".join(f"{s} r {m['r']:.2f} recall {m['recall']:.2f}" for s, m in results.items()),
              flush=True)
        tried.append((gain, ratio))
        if abs(math.log(ratio)) < math.log(1 + RANGE_TOLERANCE):
            break
        nxt = round(next_gain(tried), 2)
        if any(abs(nxt - g) < 0.005 for g, _ in tried):
            break
        gain = nxt
    best = min(tried, key=lambda gr: abs(math.log(gr[1])))
    return best[0], steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="the calibrated copy")
    ap.add_argument("--data", type=Path, default=Path("data/speech"),
                    help="the corpus the model was trained on (its held-out voices set the "
                         "starting gain)")
    ap.add_argument("--folds", default=",".join(FOLDS),
                    help=f"comma-separated folds of dev videos to tune the gain on, each "
                         f"judged on the others ({', '.join(f'{k}: {v}' for k, v in FOLDS.items())}); "
                         f"'' for none (the start gain)")
    ap.add_argument("--stream", action="store_true",
                    help="the model is a streaming one: tune it run as ExpressionStream")
    ap.add_argument("--no-rounding", action="store_true",
                    help="leave out the rounding pull (pucker_from / pucker_full)")
    args = ap.parse_args(argv)
    folds = [f.strip() for f in args.folds.split(",") if f.strip()]
    unknown = [f for f in folds if f not in FOLDS]
    if unknown:
        ap.error(f"unknown fold(s) {unknown}: use some of {', '.join(FOLDS)}")

    # 1.-2. fixed values and the start gain from the held-out synthetic voices
    values = target_values(rounding=not args.no_rounding)
    raw = SpeechToExpression(Audio2Expression.load(args.model), None)
    clips, feats = validation_audio(args.data, raw.dims)
    if not clips:
        raise SystemExit(f"no held-out utterances in {args.data}")
    jaw = np.concatenate([raw(a, n_frames=round(len(a) / SAMPLE_RATE * FPS), fps=FPS,
                              features=None if feats is None else feats[k])[:, INDEX["jawOpen"]]
                          for k, a in enumerate(clips)])
    start, p99 = open_gain(jaw, values["dead_zone"])
    base = LipCalibration(open_gain=start, **values)
    print(f"p99 jawOpen {p99:.3f} on {len(clips)} held-out synthetic utterances: start gain "
          f"{start:.2f}", flush=True)

    # 3. the gain per fold, tuned on its clips only
    renderer = Renderer(args.model, args.stream) if folds else None
    fold_meta = {}
    for name in folds:
        tuning = tuning_clips(FOLDS[name])
        if not tuning:
            raise SystemExit(f"no dev videos {FOLDS[name]} in the dev media: pass --folds ''")
        print(f"fold {name}: tuning on {', '.join(c.stem for c in tuning)}", flush=True)
        gain, steps = tune_gain(renderer, tuning, base, start)
        fold_meta[name] = {"tuned_on": [c.stem for c in tuning],
                           "lip_calibration": {k: float(v) for k, v in
                                               asdict(replace(base, open_gain=gain)).items()},
                           "steps": steps}

    # 4. the calibration used: the folds' gains, geometric mean
    gains = [f["lip_calibration"]["open_gain"] for f in fold_meta.values()]
    used = round(float(np.exp(np.mean(np.log(gains)))), 2) if gains else start
    cal = replace(base, open_gain=used)

    ckpt = torch.load(args.model, map_location="cpu", weights_only=True)
    meta = ckpt.setdefault("meta", {})
    if "lip_calibration" in meta:                   # keep the record of the one replaced
        meta["lip_calibration_previous"] = {"lip_calibration": meta["lip_calibration"],
                                            "notes": meta.get("lip_calibration_notes")}
    meta["lip_calibration"] = {k: float(v) for k, v in asdict(cal).items()}
    meta["lip_calibration_folds"] = fold_meta
    notes = {
        "dead_zone": f"{cal.dead_zone} = the corpus's jawOpen at t/d/n (puppetry/expression/visemes.py)",
        "start_gain": f"1 / ({p99:.3f} - {cal.dead_zone}) = {start:.2f}: the model's "
                      f"{GAIN_PERCENTILE}th-percentile jawOpen on the {len(clips)} held-out "
                      f"synthetic validation utterances ({args.data}) maps to 1",
        "open_gain": (f"{used:.2f} = geometric mean of the folds' gains "
                      + ", ".join(f"{k} {f['lip_calibration']['open_gain']:.2f} (tuned on "
                                  f"{', '.join(f['tuned_on'])})" for k, f in fold_meta.items())
                      + ": each brings the rendered mouth's 5th-95th percentile range to the "
                        "real speakers' on its clips" if fold_meta else f"{used:.2f}: the start gain"),
        "press_full": f"{cal.press_full} = the corpus's m press target",
        "roll_full": f"{cal.roll_full} = the corpus's v rollLower target",
        "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
    }
    if cal.pucker_full > 0:
        notes["pucker"] = (f"{cal.pucker_from} -> {cal.pucker_full} = the corpus's uh and uw pucker "
                           f"targets: rounding from uh's to uw's level pulls the lips shut")
    meta["lip_calibration_notes"] = notes
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(args.out)
    print(f"{cal}\nfolds: " + ", ".join(f"{k} {f['lip_calibration']['open_gain']:.2f}"
                                        for k, f in fold_meta.items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
