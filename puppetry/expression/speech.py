"""Speech -> ARKit expression curves with a trained Audio2Expression model.

>>> from puppetry.audio import load_audio
>>> s2e = SpeechToExpression.load()                 # the shipped model
>>> curves = s2e(load_audio("speech.wav"))           # float32[T x 52] at 25 fps
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..drive.frames import FPS
from ..features import check_audio, frame_windows, load_features, n_feature_frames
from .arkit import INDEX, N_EXPRESSIONS
from .model import Audio2Expression
from .model import normalize_features as model_normalize
from .shipped import default_model_path

CHUNK_FRAMES = 500                   # video frames per network call (20 s at 25 fps)
SILENCE_DBFS = -60.0                 # frames quieter than this rest the mouth, ...
SILENCE_BELOW_PEAK_DB = 40.0         # ... as do frames this far under the utterance's loud frames
ACTIVITY_BLOCK = 9000                # video frames per block of the activity gate (6 min)


def normalize_features(feats: np.ndarray) -> np.ndarray:
    """Per-band mean and variance normalisation over the utterance (CMVN), float32[T x D],
    in place (an hour of features is ~0.3 GB: no second copy).

    A microphone's or room's steady colouring and the recording level are per-band
    offsets in log-mel: removing them is what lets a model trained on synthetic voices
    hear real recordings.
    """
    feats = np.asarray(feats, np.float32)
    mean = feats.mean(0, keepdims=True)
    std = feats.std(0, keepdims=True)
    feats -= mean
    feats /= std + 0.05
    return feats


def speech_activity(audio: np.ndarray, n_frames: int, fps: float = FPS) -> np.ndarray:
    """Per video frame, 1 where there is sound to speak and 0 in (near) silence, with
    soft edges: float32[n_frames]. Features are normalised per utterance, which would
    turn pure silence into "average speech"; this gate keeps the mouth at rest there."""
    hop = SAMPLE_RATE / fps
    edges = np.minimum((np.arange(n_frames + 1) * hop).astype(int), len(audio))
    energy = np.zeros(n_frames)                                  # 0 past the audio's end
    for a in range(0, n_frames, ACTIVITY_BLOCK):                # block-wise: flat memory
        b = min(n_frames, a + ACTIVITY_BLOCK)
        lo, hi = edges[a], edges[b]
        if hi > lo:
            power = np.concatenate([[0.0], np.cumsum(np.square(audio[lo:hi], dtype=np.float64))])
            e = edges[a:b + 1] - lo
            energy[a:b] = power[e[1:]] - power[e[:-1]]
    counts = np.maximum(np.diff(edges), 1)
    db = 10 * np.log10(energy / counts + 1e-12)
    floor = max(SILENCE_DBFS, np.percentile(db, 95) - SILENCE_BELOW_PEAK_DB) if n_frames else 0.0
    gate = np.clip((db - floor) / 6.0 + 0.5, 0, 1)              # 6 dB soft edge
    gate = np.convolve(np.pad(gate, 1, mode="edge"), np.ones(3) / 3, "valid")   # no one-frame flicker
    return gate.astype(np.float32)


@dataclass(frozen=True)
class LipCalibration:
    """How predicted curves are sharpened before rendering (an inference-time map,
    stored in a checkpoint's meta as ``lip_calibration``; see :func:`calibrate_lips`).

    Lips are soft: a real speaker's lips stay in contact while the jaw opens a little, and
    close over a lip press or a lower lip tucked under the teeth whatever the jaw does. The
    renderer's jaw parts the lips from the first degree, and a model heard through a real
    microphone predicts closures with less confidence than on its synthetic corpus
    (weaker press and roll, the jaw left half open), so p, b, m, f and v would show parted
    lips.

    The shipped models' values and where each comes from are in their meta
    (``lip_calibration_notes``; ``pipelines/calibrate_lips.py`` computes them): dead_zone
    0.15, the corpus's jaw at t/d/n, iy, uw; press_full 0.35 and roll_full 0.5, the
    corpus's m press and v roll targets; the rounding pull (pucker_from 0.35, pucker_full
    0.75: the corpus's uh and uw pucker targets) closes the lips on a w, where the model
    hears the rounding of real speech but leaves the jaw half open. open_gain is the one
    value real speech sets: tuned per fold of real clips (``lip_calibration_folds``: one
    calibration tuned on the GRID clips, one on the Obama clip) so that the rendered
    mouth's 5th-95th percentile range matches the real speaker's; the one used is the
    geometric mean of the folds' gains, and ``pipelines/evaluate_lipsync.py`` judges each
    clip with the fold that never saw it. The defaults are the identity (checkpoints
    without a calibration).
    """

    dead_zone: float = 0.0       # jawOpen at which the lips start to part (below: in contact)
    open_gain: float = 1.0       # slope above the dead zone (jawOpen per jawOpen)
    press_full: float = 0.0      # mouthPress at which the lips count as shut (0: no pull)
    roll_full: float = 0.0       # mouthRollLower at which the lower lip is tucked (0: no pull)
    pucker_from: float = 0.0     # mouthPucker below which rounding does not pull
    pucker_full: float = 0.0     # mouthPucker at which rounded lips are (nearly) shut (0: no pull)


# shapes that part the lips, pulled towards shut by a press, a tucked lower lip or rounding
PARTING_NAMES = ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
                 "mouthUpperUpRight", "mouthFunnel")


def calibrate_lips(expressions: np.ndarray, cal: LipCalibration) -> np.ndarray:
    """expressions float32[T x 52], 0..1 -> float32[T x 52], 0..1 (a copy).

    1. Closure pull: ``s = max(press / press_full, rollLower / roll_full,
       (pucker - pucker_from) / (pucker_full - pucker_from))`` (a term whose ``*_full`` is
       0 is left out), clipped to 0..1, scales the lip-parting shapes by ``1 - s``.
       Strongly rounded lips (w, u) leave a small aperture whatever the jaw does, like a
       press; mildly rounded ones (below ``pucker_from``) are left to the jaw.
    2. Jaw dead zone: ``jawOpen = clip(open_gain * (jawOpen - dead_zone), 0, 1)``:
       monotonic, 0 stays 0, small openings close, large ones open wider.
    3. ``mouthClose <= jawOpen`` (mouthClose undoes the jaw: more would push the lower lip
       through the upper one).
    """
    out = np.array(expressions, np.float32)
    pull = np.zeros(len(out), np.float32)
    if cal.press_full > 0:
        press = out[:, [INDEX["mouthPressLeft"], INDEX["mouthPressRight"]]].max(1)
        pull = np.maximum(pull, press / cal.press_full)
    if cal.roll_full > 0:
        pull = np.maximum(pull, out[:, INDEX["mouthRollLower"]] / cal.roll_full)
    if cal.pucker_full > 0:
        rounding = out[:, INDEX["mouthPucker"]] - cal.pucker_from
        pull = np.maximum(pull, rounding / max(cal.pucker_full - cal.pucker_from, 1e-6))
    parting = [INDEX[n] for n in PARTING_NAMES]
    out[:, parting] *= 1.0 - np.clip(pull, 0, 1)[:, None]
    jaw = INDEX["jawOpen"]
    out[:, jaw] = np.clip(cal.open_gain * (out[:, jaw] - cal.dead_zone), 0, 1)
    close = INDEX["mouthClose"]
    out[:, close] = np.minimum(out[:, close], out[:, jaw])
    return out


def load_calibration(path) -> LipCalibration | None:
    """The checkpoint's ``lip_calibration`` (its meta), or None if it has none."""
    meta = torch.load(Path(path), map_location="cpu", weights_only=True).get("meta", {})
    cal = meta.get("lip_calibration")
    return LipCalibration(**cal) if cal else None


@dataclass(frozen=True)
class CalibrationFold:
    """A lip calibration tuned on some real clips (``tuned_on``: their file stems), so
    that it can be judged on the others (``pipelines/calibrate_lips.py``)."""

    name: str
    tuned_on: tuple[str, ...]
    calibration: LipCalibration


def load_calibration_folds(path) -> list[CalibrationFold]:
    """The checkpoint's ``lip_calibration_folds`` (its meta): one calibration per set of
    tuning clips, for held-out evaluation; [] if it has none."""
    meta = torch.load(Path(path), map_location="cpu", weights_only=True).get("meta", {})
    return [CalibrationFold(name, tuple(f["tuned_on"]), LipCalibration(**f["lip_calibration"]))
            for name, f in meta.get("lip_calibration_folds", {}).items()]


class SpeechToExpression:
    """Features + Audio2Expression + temporal filter, over audio of any length."""

    def __init__(self, model: Audio2Expression, calibration: LipCalibration | None = None):
        self.model = model.eval()
        self.dims = model.dims
        self.calibration = calibration
        self.rate = model.dims.feature_rate      # feature frames per second
        self._features = None

    def with_calibration(self, calibration: LipCalibration | None) -> "SpeechToExpression":
        """The same model and feature extractor with another lip calibration."""
        other = SpeechToExpression(self.model, calibration)
        other._features = self._features
        return other

    @property
    def features(self):
        """The model's feature extractor (built on first use: a caller that passes
        precomputed features never loads it)."""
        if self._features is None:
            self._features = load_features(self.dims.features)
        return self._features

    @classmethod
    def load(cls, path=None) -> "SpeechToExpression":
        """A checkpoint path, or None for the shipped model."""
        path = Path(path) if path else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"Audio2Expression model {path} not found: pass a checkpoint "
                                    "made by pipelines/train_audio2expression.py")
        return cls(Audio2Expression.load(path), load_calibration(path))

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, n_frames: int | None = None, fps: float = FPS,
                 features: np.ndarray | None = None) -> np.ndarray:
        """audio : float32[N] at 16 kHz -> expressions float32[n_frames x 52], 0..1.

        ``features``: ``audio``'s features from the model's extractor, float32[T x D] at its
        rate (``load_features(dims.features)(audio)``), if they were computed elsewhere.

        ``n_frames`` defaults to the audio's duration in frames (rounded). Frames are sent
        through the network in chunks with enough context on both sides for the feature
        windows and the temporal filter, so results do not depend on the chunking and
        memory stays bounded for hour-long audio.
        """
        audio = check_audio(audio)
        n = round(len(audio) / SAMPLE_RATE * fps) if n_frames is None else n_frames
        out = np.zeros((n, N_EXPRESSIONS), np.float32)
        if n == 0 or len(audio) == 0:
            return out
        if features is None:
            features = self.features(audio)                 # ours: normalised in place
        elif np.shape(features) != (n_feature_frames(len(audio), self.rate), self.dims.feature_dim):
            raise ValueError(f"features of shape {np.shape(features)} do not fit {len(audio)} samples: "
                             f"pass load_features({self.dims.features!r})(audio), or None")
        else:
            features = np.array(features, np.float32)       # the caller's: left as they are
        feats = model_normalize(features, self.dims)        # (T_f, D), as trained
        before = self.dims.filter_size - 1 - self.dims.filter_after     # filter context, frames
        for s in range(0, n, CHUNK_FRAMES):
            e = min(n, s + CHUNK_FRAMES)
            a, b = max(0, s - before), min(n, e + self.dims.filter_after)
            w = frame_windows(feats, self.rate, b - a, fps, self.dims.window, start=a,
                              lookahead=self.dims.window_after)
            y = self.model(torch.from_numpy(w)[None])[0]                # (b-a, K)
            out[s:e] = self.model.to_arkit(y[s - a:e - a]).numpy()
        if self.calibration is not None:
            out = calibrate_lips(out, self.calibration)
        return out * speech_activity(audio, n, fps)[:, None]
