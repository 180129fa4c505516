"""Streaming speech -> ARKit weights, chunk by chunk, for a real-time avatar.

Audio arrives in small chunks (e.g. 20 ms from a microphone); each video frame's weights
come out as soon as the audio its prediction depends on has arrived: ``lookahead_s``
after the frame's time (log-mel's 12.5 ms + the window's look-ahead + the temporal
filter's, or the activity gate's two frames, whichever is more).

>>> stream = ExpressionStream.load()              # the shipped streaming model
>>> for chunk in microphone_chunks:               # float32[n] at 16 kHz, any n
...     for weights in stream.push(chunk):        # float32[52] per video frame, in order
...         show(weights)
>>> tail = stream.flush()                         # end of the utterance: the last frames

Frame ``i`` of an utterance is the face at ``i / fps`` seconds after its first sample;
after ``flush`` the utterance has ``round(duration * fps)`` frames, and the frames are
the same whatever the chunk sizes were. For a model trained with causal normalisation
(``dims.normalize == "running"``), a session's first utterance gives what
:class:`~puppetry.expression.speech.SpeechToExpression` gives offline, apart from the
activity gate, whose floor follows the loudest frame so far instead of the utterance's
95th percentile.

Per session (kept by :meth:`ExpressionStream.reset` and :meth:`flush`, dropped only by a
new stream): the normalisation statistics (the speaker, room and level learned so far)
and the gate's loudest level. Per utterance: everything else.

Cost per video frame: one log-mel step, the window encoder on one window and the filter
on ``filter_size`` latents; memory stays flat (rings of ``window`` feature frames and
``filter_size`` latents).
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..drive.frames import FPS
from ..features import check_audio, load_features
from ..features.mel import N_FFT
from .arkit import N_EXPRESSIONS
from .model import Audio2Expression, RunningNorm
from .speech import (SILENCE_BELOW_PEAK_DB, SILENCE_DBFS, LipCalibration, calibrate_lips,
                     load_calibration)

STREAM_MODEL_FILE = "audio2expression_stream.pt"   # in puppetry/assets: log-mel, causal CMVN
GATE_EDGE_DB = 6.0                                  # soft edge of the activity gate, dB


def default_stream_model_path() -> Path:
    """The shipped streaming model (log-mel features, causal normalisation, short look-ahead)."""
    return Path(str(resources.files("puppetry.assets").joinpath(STREAM_MODEL_FILE)))


def check_stream_audio(audio: np.ndarray) -> np.ndarray:
    """A chunk of streamed speech -> float32[n], or a ValueError naming the fix (integer
    PCM, NaN or infinite samples, or anything ``check_audio`` refuses)."""
    a = np.asarray(audio)
    if a.ndim == 1 and a.dtype.kind in "iu" and a.size:
        raise ValueError(f"audio has dtype {a.dtype}: pass float samples -1..1 "
                         f"(int16 PCM: pcm.astype(np.float32) / 32768)")
    a = check_audio(a)
    if not np.isfinite(a).all():
        raise ValueError("audio contains NaN or infinite samples: pass finite float32 "
                         "samples -1..1")
    return a


class ExpressionStream:
    """Streaming speech -> ARKit weights for one session (one speaker at a time)."""

    def __init__(self, model: Audio2Expression, fps: float = FPS,
                 calibration: LipCalibration | None = None):
        dims = model.dims
        features = load_features(dims.features)
        if not hasattr(features, "stream"):
            raise ValueError(f"model features {dims.features!r} cannot be streamed: use a model "
                             f"trained on log-mel features (--features mel)")
        if dims.normalize not in (False, "running"):
            raise ValueError("model normalises features over the whole utterance (CMVN), which a "
                             "stream cannot do: use a model trained with --normalize running")
        if not fps > 0:
            raise ValueError(f"fps={fps}: use a frame rate > 0")
        self.model, self.dims, self.features, self.fps = model.eval(), dims, features, float(fps)
        self.calibration = calibration                        # per frame: streams as it is
        self.mel = features.stream()
        self.norm = RunningNorm(dims) if dims.normalize == "running" else None
        self.hop = SAMPLE_RATE / self.fps                     # audio samples per video frame
        self.before = dims.filter_size - 1 - dims.filter_after  # filter taps before frame t
        rounding = 0.0 if (features.rate / self.fps).is_integer() else 0.5 / features.rate
        self.lookahead_s = max(dims.filter_after / self.fps + dims.window_after / features.rate
                               + rounding + N_FFT // 2 / SAMPLE_RATE,
                               2 / self.fps)                    # the gate reads frame t + 1
        self.gate_peak_db = -np.inf                           # loudest video frame so far
        self.reset()

    @classmethod
    def load(cls, path=None, fps: float = FPS) -> "ExpressionStream":
        """A checkpoint path, or None for the shipped streaming model."""
        path = Path(path) if path else default_stream_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"Audio2Expression model {path} not found: pass a checkpoint "
                                    "made by pipelines/train_audio2expression.py --normalize running")
        return cls(Audio2Expression.load(path), fps, load_calibration(path))

    # -- the utterance -------------------------------------------------------------------
    def reset(self) -> None:
        """Drop the utterance in progress (barge-in); the session's normalisation
        statistics and gate level are kept."""
        self.mel.reset()
        self.frames_out = 0                    # frames emitted in this utterance
        self.n_samples = 0                     # audio samples pushed in this utterance
        self.n_feats = 0                       # feature frames computed
        self.feats = np.zeros((0, self.dims.feature_dim), np.float32)  # normalised, from f0
        self.f0 = 0                            # feature index of self.feats[0]
        self.n_latents = 0                     # latents computed (frames 0 .. n_latents-1)
        self.z = torch.zeros(0, self.dims.latent)             # latents from z0, (m, L)
        self.e = torch.zeros(0, len(self.dims.outputs))       # expressions from z0, (m, K)
        self.z0 = 0
        self.gates = np.zeros(0, np.float32)  # raw activity gate of frames g0 .. n_gates-1
        self.g0 = 0
        self.n_gates = 0                       # frames whose audio is complete (all at flush)
        self.tail = np.zeros(0, np.float32)    # audio from frame n_gates's first sample on

    def push(self, audio: np.ndarray) -> np.ndarray:
        """audio : float32[n] at 16 kHz, any n (0 ok) -> float32[t x 52], the frames newly
        complete, in order (0..1, ARKit order)."""
        audio = check_stream_audio(audio)
        if len(audio) == 0:
            return np.zeros((0, N_EXPRESSIONS), np.float32)
        self.n_samples += len(audio)
        self._add_features(self.mel.push(audio))
        self._add_gates(audio)
        # frames whose inputs have all arrived and that depend on no padding at the end
        n_min = round(self.n_samples / SAMPLE_RATE * self.fps)   # the utterance has >= this
        latents = min(self._n_computable_latents(), n_min)
        self._encode(latents)
        return self._emit(min(latents - self.dims.filter_after, self.n_gates - 1), n_total=None)

    def flush(self) -> np.ndarray:
        """End of the utterance: float32[t x 52], the remaining frames, so the utterance has
        ``round(duration * fps)`` frames in all; then ready for the next utterance."""
        n = round(self.n_samples / SAMPLE_RATE * self.fps)
        out = np.zeros((0, N_EXPRESSIONS), np.float32)
        if n > self.frames_out and self.n_samples > 0:
            self._add_features(self.mel.flush())
            self._add_gates(np.zeros(0, np.float32), final=True, n_total=n)
            self._encode(n)
            out = self._emit(n, n_total=n)
        self.reset()
        return out

    # -- the steps -------------------------------------------------------------------------
    def _centre(self, j: np.ndarray | int):
        """Feature frame at video frame ``j``'s time."""
        return np.floor(np.asarray(j) * (self.features.rate / self.fps) + 0.5).astype(np.int64)

    def _add_features(self, feats: np.ndarray) -> None:
        if len(feats) == 0:
            return
        if self.norm is not None:
            feats = self.norm(feats)
        # keep only what the next latent's window can still read
        keep_from = max(0, int(self._centre(self.n_latents)) - (self.dims.window - 1 - self.dims.window_after))
        keep_from = min(keep_from, self.n_feats)
        self.feats = np.concatenate([self.feats[keep_from - self.f0:], feats])
        self.f0 = keep_from
        self.n_feats += len(feats)

    def _n_computable_latents(self) -> int:
        """Latents whose whole window has arrived (no end padding)."""
        j, ratio, last = self.n_latents, self.features.rate / self.fps, self.n_feats - 1
        while math.floor(j * ratio + 0.5) + self.dims.window_after <= last:
            j += 1
        return j

    def _encode(self, upto: int) -> None:
        """Latents and expressions of frames ``n_latents .. upto-1``."""
        if upto <= self.n_latents:
            return
        js = np.arange(self.n_latents, upto)
        w = self.dims.window
        index = self._centre(js)[:, None] + np.arange(w)[None] - (w - 1 - self.dims.window_after)
        index = np.clip(index, 0, self.n_feats - 1) - self.f0                     # (t, W)
        windows = torch.from_numpy(self.feats[index])[None]                        # (1, t, W, D)
        with torch.no_grad():
            z, e = self.model.per_frame(windows)                                   # (1, t, L|K)
        # keep the latents the filter still needs: from the next frame to emit, minus its past
        keep_from = max(0, min(self.frames_out - self.before, self.n_latents))
        self.z = torch.cat([self.z[keep_from - self.z0:], z[0]])
        self.e = torch.cat([self.e[keep_from - self.z0:], e[0]])
        self.z0 = keep_from
        self.n_latents = upto

    def _emit(self, upto: int, n_total: int | None) -> np.ndarray:
        """Frames ``frames_out .. upto-1``, blended, gated, in ARKit order."""
        if upto <= self.frames_out:
            return np.zeros((0, N_EXPRESSIONS), np.float32)
        after = self.dims.filter_after
        frames = np.arange(self.frames_out, upto)
        idx = np.arange(frames[0] - self.before, frames[-1] + after + 1)         # (t + k - 1,)
        last = self.n_latents - 1 if n_total is None else n_total - 1
        inside = torch.from_numpy((idx >= 0) & (idx <= last)).float()[:, None]
        pos = torch.from_numpy(np.clip(idx, 0, last) - self.z0)
        z, e = self.z[pos] * inside, self.e[pos]          # the ends: z zeros, e repeated
        with torch.no_grad():
            y = self.model.blend(z[None], e[None], pad=False)[0]                  # (t, K)
            out = self.model.to_arkit(y).numpy()                                   # (t, 52)
        if self.calibration is not None:
            out = calibrate_lips(out, self.calibration)
        # the gate, smoothed over frames t-1, t, t+1 (the ends repeated), as speech_activity
        near = np.clip(np.stack([frames - 1, frames, frames + 1]), 0, self.n_gates - 1)
        g = self.gates[near - self.g0].mean(0)                                     # (t,)
        self.frames_out = upto
        keep_from = upto - 1 - self.g0
        if keep_from > 0:
            self.gates, self.g0 = self.gates[keep_from:], upto - 1
        return out * g[:, None]

    def _add_gates(self, audio: np.ndarray, final: bool = False, n_total: int = 0) -> None:
        """Raw activity gate of every video frame whose audio is complete (of all
        ``n_total`` at ``final``): 1 in speech, 0 more than SILENCE_BELOW_PEAK_DB under the
        loudest frame so far or under SILENCE_DBFS, a GATE_EDGE_DB soft edge between."""
        self.tail = np.concatenate([self.tail, audio]) if len(audio) else self.tail
        start = int(self.n_gates * self.hop)                 # sample index of tail[0]
        gates = []
        while True:
            j = self.n_gates + len(gates)
            lo, hi = int(j * self.hop), int((j + 1) * self.hop)
            if final:
                if j >= n_total:
                    break
                lo, hi = min(lo, self.n_samples), min(hi, self.n_samples)
            elif hi > self.n_samples:
                break
            part = self.tail[lo - start:hi - start]
            db = 10 * math.log10(float(np.dot(part, part.astype(np.float64))) / max(hi - lo, 1) + 1e-12)
            self.gate_peak_db = max(self.gate_peak_db, db)
            floor = max(SILENCE_DBFS, self.gate_peak_db - SILENCE_BELOW_PEAK_DB)
            gates.append(min(1.0, max(0.0, (db - floor) / GATE_EDGE_DB + 0.5)))
        if gates:
            self.n_gates += len(gates)
            self.gates = np.concatenate([self.gates, np.asarray(gates, np.float32)])
            self.tail = self.tail[int(self.n_gates * self.hop) - start:]
