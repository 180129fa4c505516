"""Log-mel spectrogram features: the default, no download, streamable chunk by chunk.

Frame ``i`` is the 25 ms Hann-windowed spectrum centred on sample ``i * hop`` (the audio
gets ``N_FFT // 2`` zeros in front and enough zeros behind), mapped to ``n_mels`` mel bands
between ``F_MIN`` and ``F_MAX``, then ``log(power + LOG_EPS)`` and a fixed affine map to
about -1..1. Nothing depends on the rest of the utterance (no per-utterance mean or
variance), so :class:`MelStream` fed 20 ms chunks gives the same numbers as one call on
the whole signal, with ``N_FFT // 2`` samples (12.5 ms) of look-ahead.
"""
from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE
from . import check_audio, n_feature_frames, slaney_mel_filters, stft_power

N_FFT = 400  # samples per STFT window, 25 ms at 16 kHz
N_MELS = 80  # mel bands
RATE = 100  # feature frames per second: hop of 160 samples, 10 ms
F_MIN = 20.0  # Hz, lowest mel band edge (below: rumble, DC)
F_MAX = 7600.0  # Hz, highest mel band edge (just under Nyquist, 8 kHz)
LOG_EPS = 1e-6  # added to the mel power before the log: ln(1e-6) = -13.8, the floor
# Fixed affine map of ln(mel power) to about -1..1, the same for every utterance:
# digital silence (ln LOG_EPS = -13.8) -> -0.98; on the dev speech clips (-28..-17 dBFS RMS)
# the median band is -0.6..-0.2 and the 99th percentile -0.6..+0.95; full-scale uniform
# noise (-4.8 dBFS) sits at about +1, a full-scale sine's own band at +1.4.
LOG_CENTER = -6.0  # ln power mapped to 0
LOG_HALF_RANGE = 8.0  # ln power units mapped to 1


class MelFeatures:
    """Log-mel features: ``float32[N]`` audio at 16 kHz -> ``float32[T x n_mels]`` at ``rate`` Hz.

    ``T = ceil(N / SAMPLE_RATE * rate)``; frame ``i`` is centred at ``i / rate`` seconds.
    ``rate`` must divide 16000 (hop = 16000 / rate samples).

    >>> mel = MelFeatures()
    >>> mel(np.zeros(16000, np.float32)).shape  # 1 s of silence
    (100, 80)
    """

    def __init__(self, n_mels: int = N_MELS, rate: float = RATE):
        hop = SAMPLE_RATE / rate if rate > 0 else 0
        if not (n_mels >= 1 and hop >= 1 and hop == int(hop)):
            raise ValueError(f"MelFeatures(n_mels={n_mels}, rate={rate}): use n_mels >= 1 and "
                             f"a rate that divides {SAMPLE_RATE} (e.g. 50, 100 or 200)")
        self.n_mels, self.rate, self.hop = int(n_mels), float(rate), int(hop)
        self.dim = self.n_mels
        self.name = "mel" if (self.n_mels, self.rate) == (N_MELS, RATE) else \
            f"mel(n_mels={self.n_mels}, rate={self.rate:g})"
        self._filters = slaney_mel_filters(N_FFT, self.n_mels, F_MIN, F_MAX)  # (201, n_mels)

    def __repr__(self) -> str:
        return f"MelFeatures(n_mels={self.n_mels}, rate={self.rate:g})"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """audio: float32[N], 16 kHz, -1..1 -> float32[ceil(N / hop) x n_mels], about -1..1."""
        audio = check_audio(audio)
        t = n_feature_frames(len(audio), self.rate)
        # 1. Pad so frame i spans samples [i*hop - N_FFT/2, i*hop + N_FFT/2) of the input.
        right = max(0, (t - 1) * self.hop + N_FFT - (N_FFT // 2 + len(audio)))
        padded = np.pad(audio, (N_FFT // 2, right))
        # 2. One STFT over it, keeping the first t frames.
        return self.frames(padded)[:t]

    def frames(self, padded: np.ndarray) -> np.ndarray:
        """Every whole STFT frame of already padded audio: float32[n] -> float32[t x n_mels].

        ``t = (n - N_FFT) // hop + 1`` (0 if ``n < N_FFT``); frame ``k`` reads samples
        ``[k * hop, k * hop + N_FFT)``.
        """
        if len(padded) < N_FFT:
            return np.zeros((0, self.n_mels), np.float32)
        power = stft_power(padded, N_FFT, self.hop) @ self._filters        # (t, n_mels)
        return ((np.log(power + LOG_EPS) - LOG_CENTER) / LOG_HALF_RANGE).astype(np.float32)

    def stream(self) -> "MelStream":
        """A fresh :class:`MelStream` for computing these features chunk by chunk."""
        return MelStream(self)


class MelStream:
    """Chunk-by-chunk log-mel: ``push`` any chunk sizes, then ``flush`` once at the end.

    The frames returned, concatenated, equal ``features(whole_audio)``. A frame is returned
    as soon as the ``N_FFT // 2`` samples (12.5 ms) after its centre have arrived.

    >>> stream = MelFeatures().stream()
    >>> parts = [stream.push(chunk) for chunk in chunks]  # each float32[t_k x 80]
    >>> parts.append(stream.flush())
    """

    def __init__(self, features: MelFeatures):
        self.features = features
        self.reset()

    def reset(self) -> None:
        """Forget all audio: the next push starts a new utterance."""
        self._buffer = np.zeros(N_FFT // 2, np.float32)  # the left padding of sample 0
        self._n_samples = 0  # samples pushed
        self._n_frames = 0  # frames returned

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add ``float32[n]`` audio; return the frames now complete, ``float32[t x n_mels]``."""
        chunk = check_audio(chunk)
        self._n_samples += len(chunk)
        self._buffer = np.concatenate([self._buffer, chunk])
        return self._emit(self._buffer)

    def flush(self) -> np.ndarray:
        """End the utterance: return the last frames (zero look-ahead), then reset."""
        hop = self.features.hop
        left = n_feature_frames(self._n_samples, self.features.rate) - self._n_frames
        need = (left - 1) * hop + N_FFT  # samples the remaining frames read
        out = self._emit(np.pad(self._buffer, (0, max(0, need - len(self._buffer)))), left)
        self.reset()
        return out

    def _emit(self, buffer: np.ndarray, limit: int | None = None) -> np.ndarray:
        hop = self.features.hop
        t = (len(buffer) - N_FFT) // hop + 1 if len(buffer) >= N_FFT else 0
        t = t if limit is None else max(0, min(t, limit))
        out = self.features.frames(buffer[: (t - 1) * hop + N_FFT] if t else buffer[:0])
        self._buffer = buffer[t * hop:]
        self._n_frames += t
        return out

