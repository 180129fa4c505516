"""A quick look at an Audio2Expression model on the dev videos without rendering: its
calibrated lip aperture against the real speaker's re-tracked opening, under variants of
the lip calibration and of the temporal filter.

    python pipelines/diagnose_lipsync.py --model M [M2 ...] [--calibration-from C] [--variants]

For every dev video (``evaluate_lipsync.DEV_VIDEOS``): the model's curves for the clip's
audio with the calibration of the fold that never saw the clip (``--calibration-from``:
another checkpoint's folds, e.g. the shipped model's, for a model not calibrated yet),
turned into an aperture ``(jawOpen - mouthClose) + 0.3 (mouthLowerDown + mouthUpperUp)``
and compared with ``evaluate_lipsync.compare`` (r at the best lag within ±2 frames,
closure recall). No renderer, no re-tracking of generated frames: seconds per model
instead of minutes, for diagnosis only; the figures to report are
``evaluate_lipsync.py``'s. On the shipped model (2026-12-06) this aperture's r is
0.63 / 0.60 / 0.58 where the rendered and re-tracked one is 0.60 / 0.57 / 0.55, with the
same closure recall.

``--variants``: also without the calibration, with other dead zones, without the
rounding or the press/roll pulls, and with the temporal filter off (each frame its own
expression), to see what each part does. Nothing here is chosen on these clips.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))       # sibling pipelines

import evaluate_lipsync as ev  # noqa: E402
from puppetry.audio import load_audio  # noqa: E402
from puppetry.eval import lipsync  # noqa: E402
from puppetry.expression.arkit import INDEX  # noqa: E402
from puppetry.expression.model import Audio2Expression  # noqa: E402
from puppetry.expression.speech import LipCalibration, SpeechToExpression, load_calibration_folds  # noqa: E402
from puppetry.io import video_info  # noqa: E402

LIP_SHAPES_WEIGHT = 0.3      # how much mouthLowerDown + mouthUpperUp add to the aperture


def aperture(e: np.ndarray) -> np.ndarray:
    """expressions float32[T x 52] -> a lip aperture float32[T] (jaw units)."""
    gap = np.clip(e[:, INDEX["jawOpen"]] - e[:, INDEX["mouthClose"]], 0, None)
    return gap + LIP_SHAPES_WEIGHT * (e[:, INDEX["mouthLowerDownLeft"]] + e[:, INDEX["mouthUpperUpLeft"]])


def clips() -> list[dict]:
    out = []
    for path in ev.DEV_VIDEOS:
        info = video_info(path)
        audio, n, fps = load_audio(path), info["n_frames"], info["fps"]
        out.append(dict(stem=path.stem, audio=audio, n=n, fps=fps, real=ev.real_openings(path),
                        speech=lipsync.speech_mask(audio, n, fps), features={}))
    return out


def unfiltered(model: Audio2Expression) -> Audio2Expression:
    """The model with its temporal filter replaced by the identity (each frame its own)."""
    def blend(z, e, pad=True):
        k, after = model.dims.filter_size, model.dims.filter_after
        out = e if pad else e[:, k - 1 - after: e.shape[1] - after]
        return out if model.training else out.clamp(0, 1)
    model.blend = blend
    return model


def run(path: Path, clips_: list[dict], calibration_from: Path,
        change: Callable[[LipCalibration], LipCalibration | None] = lambda c: c,
        filter_off: bool = False) -> dict:
    model = Audio2Expression.load(path)
    s2e = SpeechToExpression(unfiltered(model) if filter_off else model)
    folds = load_calibration_folds(calibration_from)
    shipped = SpeechToExpression.load(calibration_from).calibration
    res = {}
    for c in clips_:
        key = s2e.dims.features
        if key not in c["features"]:
            c["features"][key] = s2e.features(c["audio"])
        fold = ev.held_out_fold(folds, c["stem"])
        cal = change(fold.calibration if fold else shipped)
        e = s2e.with_calibration(cal)(c["audio"], n_frames=c["n"], fps=c["fps"],
                                      features=c["features"][key])
        res[c["stem"]] = ev.compare(aperture(e), c["real"], c["speech"])
    return res


def row(name: str, res: dict) -> str:
    cells = [f"{m['r']:.2f} ({m['lag']:+d}), {m['recall']:.2f}" for m in res.values()]
    return f"| {name} | " + " | ".join(cells) + f" | **{np.mean([m['r'] for m in res.values()]):.3f}** |"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, nargs="+", required=True)
    ap.add_argument("--calibration-from", type=Path, default=None,
                    help="take the lip calibration folds from this checkpoint (default: each model's own)")
    ap.add_argument("--variants", action="store_true", help="also the calibration and filter variants")
    args = ap.parse_args(argv)
    cs = clips()
    print("| model, variant | " + " | ".join(f"{c['stem']}: r (lag), recall" for c in cs) + " | mean r |")
    print("|---" * (len(cs) + 2) + "|")
    for path in args.model:
        cal_from = args.calibration_from or path
        print(row(path.name, run(path, cs, cal_from)), flush=True)
        if not args.variants:
            continue
        variants = {
            "no lip calibration": dict(change=lambda c: None),
            "dead zone 0": dict(change=lambda c: replace(c, dead_zone=0.0)),
            "dead zone 0.10": dict(change=lambda c: replace(c, dead_zone=0.10)),
            "no rounding pull": dict(change=lambda c: replace(c, pucker_full=0.0)),
            "no press / roll pull": dict(change=lambda c: replace(c, press_full=0.0, roll_full=0.0)),
            "temporal filter off": dict(filter_off=True),
        }
        for name, kw in variants.items():
            print(row(f"{path.name}, {name}", run(path, cs, cal_from, **kw)), flush=True)


if __name__ == "__main__":
    main()
