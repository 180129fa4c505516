"""Give an Audio2Expression checkpoint its lip calibration (``LipCalibration`` in its meta).

    python pipelines/calibrate_lips.py --model /tmp/a2e.pt --out /tmp/a2e_cal.pt [--data data/speech]
    python pipelines/calibrate_lips.py --model M --out OUT --no-rounding   # the map without the rounding pull

The calibration is an inference-time map (``puppetry.expression.speech.calibrate_lips``).
Its fixed values come from the corpus's own targets (``puppetry.expression.visemes``), not
from real clips:

- dead_zone: the jaw target of t/d/n (0.15; also iy's and uw's): consonants with the lips
  in contact or nearly so stay at or below it;
- press_full: m's press target (0.35), the weakest bilabial press;
- roll_full: v's lower-lip roll target (0.5);
- pucker_from, pucker_full: uh's and uw's pucker targets (0.35, 0.75). The targets render
  uw (and w, pucker 0.85) with the jaw inside the dead zone, lips nearly shut whatever
  else happens, and uh with the jaw open; so rounding from uh's level up to uw's pulls
  the lips shut as a press does. On the corpus targets themselves this pull changes the
  rendered lip gap very little (they already have that relation); on real speech the
  model hears the rounding of a w but leaves the jaw half open, which would part the lips.

One value is the model's own: open_gain = 1 / (p99 - dead_zone), where p99 is the 99th
percentile of the model's jawOpen (``SpeechToExpression`` without calibration, activity
gate included, 25 fps) over the held-out synthetic validation utterances of ``--data``
(the voices ``train_audio2expression.py`` holds out), so that a wide-open vowel maps to 1.

The checkpoint is copied with ``lip_calibration`` and ``lip_calibration_notes`` in its
meta; weights and everything else stay as they are.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))       # train_audio2expression

from puppetry.audio import SAMPLE_RATE  # noqa: E402
from puppetry.expression.arkit import INDEX  # noqa: E402
from puppetry.expression.model import Audio2Expression  # noqa: E402
from puppetry.expression.speech import LipCalibration, SpeechToExpression  # noqa: E402
from puppetry.expression.visemes import VISEME_TARGETS  # noqa: E402

FPS = 25.0
GAIN_PERCENTILE = 99


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


def validation_audio(data: Path) -> list[np.ndarray]:
    """The held-out voices' utterances of the corpus (clean and augmented variants)."""
    import train_audio2expression as train

    items = train.load_corpus(data, ("jawOpen",))
    held = train.held_out_voices([v for *_, v in items])
    return [audio for audio, _, voice in items if voice in held]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="the calibrated copy")
    ap.add_argument("--data", type=Path, default=Path("data/speech"),
                    help="the corpus the model was trained on (its held-out voices set the gain)")
    ap.add_argument("--no-rounding", action="store_true",
                    help="leave out the rounding pull (pucker_from / pucker_full)")
    args = ap.parse_args(argv)

    values = target_values(rounding=not args.no_rounding)
    raw = SpeechToExpression(Audio2Expression.load(args.model), None)
    clips = validation_audio(args.data)
    if not clips:
        raise SystemExit(f"no held-out utterances in {args.data}")
    jaw = np.concatenate([raw(a, n_frames=round(len(a) / SAMPLE_RATE * FPS), fps=FPS)[:, INDEX["jawOpen"]]
                          for a in clips])
    gain, p99 = open_gain(jaw, values["dead_zone"])
    cal = LipCalibration(open_gain=gain, **values)

    ckpt = torch.load(args.model, map_location="cpu", weights_only=True)
    meta = ckpt.setdefault("meta", {})
    if "lip_calibration" in meta:                   # keep the record of the one replaced
        meta["lip_calibration_previous"] = {"lip_calibration": meta["lip_calibration"],
                                            "notes": meta.get("lip_calibration_notes")}
    meta["lip_calibration"] = {k: float(v) for k, v in vars(cal).items()}
    notes = {
        "dead_zone": f"{cal.dead_zone} = the corpus's jawOpen at t/d/n (puppetry/expression/visemes.py)",
        "open_gain": f"1 / ({p99:.3f} - {cal.dead_zone}): the model's {GAIN_PERCENTILE}th-percentile "
                     f"jawOpen on the {len(clips)} held-out synthetic validation utterances "
                     f"({args.data}) maps to 1",
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
    print(f"p99 jawOpen {p99:.3f} on {len(clips)} held-out utterances -> {cal}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
