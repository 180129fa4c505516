"""wav2vec2 / HuBERT hidden states from a local Hugging Face folder, offline, at 50 Hz.

The folder is what ``save_pretrained`` writes (``config.json`` + ``model.safetensors``);
nothing is ever downloaded (``HF_HUB_OFFLINE=1``, ``local_files_only=True``). Needs
``pip install transformers==5.23.0``.

The convolutional front end hops ``STRIDE`` = 320 samples (20 ms) and reads ``N_FFT`` = 400
samples per frame (the standard wav2vec2 / HuBERT / WavLM layout); the input is padded by
half a receptive field in front so that frame ``i`` is centred at ``i / 50`` seconds, like
every extractor here. A model with another stride is resampled to 50 Hz.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from . import check_audio, encode_in_windows, n_feature_frames

RATE = 50.0  # feature frames per second, 20 ms
HOP = round(SAMPLE_RATE / RATE)  # 320 samples between output frames
MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")  # config.json model_type


class Wav2Vec2Features:
    """Hidden states of a local wav2vec2-style model: ``float32[N]`` -> ``float32[T x hidden]``.

    path  : folder with ``config.json`` and the weights, as ``save_pretrained`` writes it
    layer : which hidden state, ``None`` for the last one; 0 is the projected conv output,
            ``k`` the output of transformer layer ``k`` (middle layers carry the most
            phonetic detail in wav2vec2 base)

    ``T = ceil(N / SAMPLE_RATE * 50)``; frame ``i`` is centred at ``i / 50`` seconds. Long
    audio runs in 30 s windows with 5 s of context either side (see
    :func:`puppetry.features.encode_in_windows`).
    """

    rate = RATE

    def __init__(self, path: str | os.PathLike, layer: int | None = None):
        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a Hugging Face model folder (no config.json): "
                                    f"pass the folder that save_pretrained wrote")
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"{path} holds a {model_type!r} model: wav2vec2 features need one "
                             f"of {', '.join(MODEL_TYPES)}")
        os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers reads it; never download
        try:
            from transformers import AutoModel
        except ImportError as e:
            raise ImportError(f"wav2vec2 features need transformers ({e}): "
                              f"pip install transformers==5.23.0") from None
        # 1. The model, without any head (a ...ForCTC checkpoint loads its encoder only).
        self.model = AutoModel.from_pretrained(path, local_files_only=True,
                                               dtype=torch.float32).eval()
        config = self.model.config
        n_layers = config.num_hidden_layers
        if layer is not None and not 0 <= layer <= n_layers:
            raise ValueError(f"layer={layer}, but {path} has {n_layers} layers: "
                             f"use 0..{n_layers}, or None for the last")
        # 2. Its frame geometry: hop and receptive field of the conv front end, in samples.
        self.stride = math.prod(config.conv_stride)
        receptive, jump = 1, 1
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            receptive, jump = receptive + (kernel - 1) * jump, jump * stride
        self.receptive = receptive  # 400 samples for the standard layout
        # 3. Input normalisation as its feature extractor does it (zero mean, unit variance
        #    per window; Wav2Vec2FeatureExtractor's default when no preprocessor config).
        pre = path / "preprocessor_config.json"
        self.normalize = not pre.is_file() or \
            bool(json.loads(pre.read_text()).get("do_normalize", True))
        self.layer, self.path, self.dim = layer, path, int(config.hidden_size)
        self.name = f"wav2vec2:{path}"

    def __repr__(self) -> str:
        return f"Wav2Vec2Features({str(self.path)!r}, layer={self.layer})"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """audio: float32[N], 16 kHz, -1..1 -> float32[ceil(N / 320) x hidden]."""
        audio = check_audio(audio)
        t = n_feature_frames(len(audio), RATE)
        if t == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.stride == HOP:
            return encode_in_windows(self._encode, audio, HOP)
        # A non-standard stride: encode at its own rate, then resample linearly to 50 Hz.
        native = encode_in_windows(self._encode, audio, self.stride)
        x = np.minimum(np.arange(t) * HOP / self.stride, len(native) - 1)  # native frames
        lo = np.floor(x).astype(np.int64)
        hi, w = np.minimum(lo + 1, len(native) - 1), (x - lo)[:, None].astype(np.float32)
        return (1 - w) * native[lo] + w * native[hi]

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        """float32[n] -> float32[ceil(n / stride) x hidden], frame k centred on sample k*stride."""
        t = -(-len(audio) // self.stride)
        if self.normalize:
            audio = (audio - audio.mean()) / math.sqrt(audio.var() + 1e-7)
        # Half a receptive field of zeros in front centres frame k on sample k * stride;
        # zeros behind give every sample a frame.
        front = self.receptive // 2
        back = max(0, (t - 1) * self.stride + self.receptive - front - len(audio))
        x = torch.from_numpy(np.pad(audio, (front, back)).astype(np.float32))[None]  # (1, n')
        with torch.no_grad():
            out = self.model(x, output_hidden_states=self.layer is not None)
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        return hidden[0, :t].float().numpy()  # (t, hidden)
