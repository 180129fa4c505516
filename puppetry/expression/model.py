"""Audio2Expression: speech feature windows -> ARKit weights, with Neural Voice
Puppetry's content-aware temporal filter.

Per video frame t the network sees a window of feature frames around t (centred, as NVP
does with DeepSpeech features, or with a shorter ``lookahead`` for streaming), encodes it
to a latent code z_t and an expression e_t. The temporal filter then predicts, from the
latent codes of the neighbouring frames, softmax weights over the expressions of frames
t-(k-1-f)..t+f (f = ``filter_lookahead``, k//2 when centred) and blends them: lips stay
smooth yet still reach closures, because the weights depend on the content.

Look-ahead (what a stream must wait for before frame t can be emitted): the window's
``lookahead`` feature frames after t, plus the filter's ``filter_lookahead`` video frames
(:attr:`ModelDims.lookahead_s`).

A checkpoint stores its own :class:`ModelDims`, so ``Audio2Expression.load(path)``
needs nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .arkit import ARKIT_NAMES, INDEX, SPEECH_NAMES  # noqa: F401  (SPEECH_NAMES re-exported)


@dataclass
class ModelDims:
    """Everything needed to rebuild the network and feed it."""

    features: str = "mel"          # feature extractor spec (puppetry.features.load_features)
    feature_dim: int = 80          # D, values per feature frame
    feature_rate: float = 100.0    # feature frames per second
    window: int = 24               # W, feature frames seen per video frame (240 ms at 100 Hz)
    # how features are standardised per band (see normalize_features):
    # True = CMVN over the whole utterance (offline only), "running" = causal CMVN from a
    # prior (norm_mean, norm_std) and the speech frames so far (streamable), False = none
    normalize: bool | str = True
    fps: float = 25.0              # video frames per second
    hidden: int = 128              # channels of the window encoder
    latent: int = 32               # size of the per-frame latent code z_t
    filter_size: int = 9           # frames blended by the temporal filter (360 ms at 25 fps)
    outputs: tuple[str, ...] = field(default_factory=lambda: SPEECH_NAMES)
    lookahead: int | None = None   # feature frames in the window after frame t's (None: W-1-W//2, centred)
    filter_lookahead: int | None = None  # filter taps after frame t (None: filter_size // 2, centred)
    norm_mean: tuple[float, ...] | None = None  # "running": prior per-band mean [D] (training corpus)
    norm_std: tuple[float, ...] | None = None   # "running": prior per-band std [D]
    norm_prior_frames: float = 100.0   # "running": weight of the prior, in speech feature frames
    norm_memory_frames: float = 3000.0  # "running": speech frames remembered (exponential forgetting)

    @property
    def window_after(self) -> int:
        """Feature frames of the window after the one at frame t's time."""
        return self.window - 1 - self.window // 2 if self.lookahead is None else self.lookahead

    @property
    def filter_after(self) -> int:
        """Temporal-filter taps (video frames) after frame t."""
        return self.filter_size // 2 if self.filter_lookahead is None else self.filter_lookahead

    @property
    def lookahead_s(self) -> float:
        """Seconds of features after frame t's time that frame t depends on (window +
        filter; the feature extractor's own look-ahead comes on top)."""
        return self.window_after / self.feature_rate + self.filter_after / self.fps


# Causal ("running") CMVN: which feature frames count as speech for the statistics.
NORM_LEVEL_FLOOR = -0.75   # mean log-mel level (MelFeatures units) below this is silence (~ -60 dBFS)
NORM_LEVEL_RANGE = 0.85    # ... as is a frame this far under the loudest so far (~ 30 dB)
NORM_STD_EPS = 0.05        # added to the std, as in the utterance CMVN
NORM_BLOCK = 1024          # feature frames per vectorised step (10 s at 100 Hz)


class RunningNorm:
    """Causal per-band CMVN with a prior: what a stream can do, and what the "running"
    models are trained with (the same code offline, in training and in the stream).

    Feature frame j is standardised with the mean and std of a blend of the prior
    (``dims.norm_mean``, ``dims.norm_std``: the training corpus, weighted as
    ``norm_prior_frames`` frames) and the speech frames 0..j seen so far (a frame counts
    when its mean level is above ``NORM_LEVEL_FLOOR`` and within ``NORM_LEVEL_RANGE`` of
    the loudest frame so far; older speech is forgotten exponentially, over
    ``norm_memory_frames``). Silence never moves the statistics, so pauses of any length
    do not shift them; the prior keeps the first frames of a session sane; a new room,
    microphone or level is learned within a second or two of speech.

    >>> norm = RunningNorm(dims)
    >>> a = norm(feats[:100]); b = norm(feats[100:])   # == RunningNorm(dims)(feats)

    The statistics carry on across calls (a stream's utterances); :meth:`reset` goes back
    to the prior.
    """

    def __init__(self, dims: ModelDims):
        if dims.norm_mean is None or dims.norm_std is None:
            raise ValueError("running normalisation needs dims.norm_mean and dims.norm_std "
                             "(the training corpus's per-band statistics)")
        self.prior_mean = np.asarray(dims.norm_mean, np.float64)       # (D,)
        self.prior_var = np.asarray(dims.norm_std, np.float64) ** 2   # (D,)
        self.prior_n = float(dims.norm_prior_frames)
        self.decay = 1.0 - 1.0 / float(dims.norm_memory_frames)       # per speech frame
        self.reset()

    def reset(self) -> None:
        """Back to the prior: forget every frame seen."""
        self.count = 0.0                                # decayed number of speech frames
        self.sum = np.zeros_like(self.prior_mean)       # decayed sums of x and x^2, (D,)
        self.sum2 = np.zeros_like(self.prior_mean)
        self.peak = -np.inf                             # loudest mean level so far

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """feats : float32[T x D] (the next frames) -> float32[T x D], standardised."""
        feats = np.asarray(feats, np.float32)
        out = np.empty_like(feats)
        for a in range(0, len(feats), NORM_BLOCK):       # blocks: flat memory, no overflow
            out[a:a + NORM_BLOCK] = self._block(feats[a:a + NORM_BLOCK].astype(np.float64))
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        """x : float64[T x D], T <= NORM_BLOCK -> float32[T x D]; updates the statistics."""
        t = len(x)
        level = x.mean(1)                                                # (T,)
        peak = np.maximum.accumulate(np.maximum(level, self.peak))
        idx = np.flatnonzero((level > NORM_LEVEL_FLOOR) & (level > peak - NORM_LEVEL_RANGE))
        self.peak = float(peak[-1])
        count = np.full((t, 1), self.count)                              # statistics per frame
        s1, s2 = np.tile(self.sum, (t, 1)), np.tile(self.sum2, (t, 1))
        if len(idx):
            # decayed sums over the speech frames, s_k = decay * s_{k-1} + x_k, in closed form
            p = self.decay ** np.arange(1, len(idx) + 1)[:, None]           # (m, 1)
            xs = x[idx]                                                  # (m, D)
            c = self.count * p + np.cumsum(1 / p, 0) * p                  # (m, 1)
            a1 = self.sum * p + np.cumsum(xs / p, 0) * p                  # (m, D)
            a2 = self.sum2 * p + np.cumsum(xs * xs / p, 0) * p
            # each frame uses the statistics after the last speech frame at or before it
            last = np.searchsorted(idx, np.arange(t), side="right") - 1   # -1: none yet
            has = last >= 0
            count[has], s1[has], s2[has] = c[last[has]], a1[last[has]], a2[last[has]]
            self.count, self.sum, self.sum2 = float(c[-1, 0]), a1[-1].copy(), a2[-1].copy()
        n = self.prior_n + count                                         # (T, 1)
        mean = (self.prior_n * self.prior_mean + s1) / n
        var = (self.prior_n * (self.prior_var + self.prior_mean ** 2) + s2) / n - mean ** 2
        return ((x - mean) / (np.sqrt(np.maximum(var, 0)) + NORM_STD_EPS)).astype(np.float32)


def normalize_features(feats: np.ndarray, dims: ModelDims) -> np.ndarray:
    """A whole utterance's features float32[T x D], standardised as ``dims.normalize``
    says: the utterance CMVN (True), :class:`RunningNorm` from the prior ("running"; what
    a stream that starts with this utterance computes) or unchanged (False)."""
    if dims.normalize == "running":
        return RunningNorm(dims)(feats)
    if dims.normalize:
        from .speech import normalize_features as utterance_cmvn

        return utterance_cmvn(np.array(feats, np.float32))
    return np.asarray(feats, np.float32)


class Audio2Expression(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        if not (0 <= dims.window_after < dims.window and 0 <= dims.filter_after < dims.filter_size):
            raise ValueError(f"lookahead={dims.lookahead}, filter_lookahead={dims.filter_lookahead}: "
                             f"use 0..window-1 (window={dims.window}) and 0..filter_size-1 "
                             f"(filter_size={dims.filter_size}), or None for centred")
        if dims.normalize not in (True, False, "running"):
            raise ValueError(f"normalize={dims.normalize!r}: use True (utterance CMVN), "
                             f"'running' (causal CMVN) or False")
        d, h = dims.feature_dim, dims.hidden
        self.encoder = nn.Sequential(                       # (N, D, W) -> (N, h, W/8)
            nn.Conv1d(d, h, 3, padding=1), nn.LeakyReLU(0.2),  # noqa: E241
            nn.Conv1d(h, h, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(h, h, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(h, h, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )
        self.to_latent = nn.Linear(h * ((dims.window + 7) // 8), dims.latent)
        self.to_expression = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(dims.latent, len(dims.outputs)))
        self.filter = nn.Sequential(                        # latent sequence -> blend logits
            nn.Conv1d(dims.latent, dims.latent, dims.filter_size),   # padded by blend()
            nn.LeakyReLU(0.2), nn.Conv1d(dims.latent, dims.filter_size, 1))
        self.register_buffer("index", torch.tensor([INDEX[n] for n in dims.outputs]))

    def per_frame(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """windows : Tensor[B x T x W x D] -> (latent [B x T x L], expressions [B x T x K])."""
        return self.head(self.encode(windows))

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """The window encoder: Tensor[B x T x W x D] -> Tensor[B x T x h * ceil(W / 8)]."""
        b, t, w, d = windows.shape
        x = self.encoder(windows.reshape(b * t, w, d).transpose(1, 2))   # (B*T, h, W/8)
        return x.flatten(1).view(b, t, -1)

    def head(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode`'s output [B x T x F] -> (latent [B x T x L], expressions [B x T x K])."""
        z = self.to_latent(encoded)                                      # (B, T, L)
        return z, self.to_expression(z)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows : Tensor[B x T x W x D] -> speech expressions Tensor[B x T x K], ordered as
        ``dims.outputs`` (0..1 in eval mode)."""
        return self.blend(*self.per_frame(windows))

    def blend(self, z: torch.Tensor, e: torch.Tensor, pad: bool = True) -> torch.Tensor:
        """The temporal filter: latent [B x T x L], expressions [B x T x K] -> [B x T' x K].

        Frame t blends e[t - before .. t + after] (``after = dims.filter_after``,
        ``before = filter_size - 1 - after``) with weights from z over the same span.
        ``pad``: T' = T, the sequence's ends padded (z with zeros, e repeated); else
        T' = T - filter_size + 1, only frames with all their neighbours given (streams).
        """
        k, after = self.dims.filter_size, self.dims.filter_after
        zt, et = z.transpose(1, 2), e.transpose(1, 2)                   # (B, L, T), (B, K, T)
        if pad:
            zt = F.pad(zt, (k - 1 - after, after))
            et = F.pad(et, (k - 1 - after, after), mode="replicate")
        weights = self.filter(zt).transpose(1, 2).softmax(-1)           # (B, T', k)
        neighbours = et.unfold(2, k, 1)                                 # (B, K, T', k)
        blended = (neighbours * weights[:, None]).sum(-1).transpose(1, 2)   # (B, T', K)
        # linear while training (most targets are exactly 0: a sigmoid would saturate there
        # and stop learning), clamped to the ARKit range when used
        return blended if self.training else blended.clamp(0, 1)

    def to_arkit(self, speech: torch.Tensor) -> torch.Tensor:
        """Tensor[... x K] in ``dims.outputs`` order -> Tensor[... x 52] in ARKit order."""
        out = speech.new_zeros(*speech.shape[:-1], len(ARKIT_NAMES))
        out[..., self.index] = speech
        return out

    # -- checkpoints ------------------------------------------------------------------
    def save(self, path, **meta) -> None:
        """Write weights + dims + ``meta`` (recipe, commit, validation) to ``path``."""
        dims = asdict(self.dims)
        for key in ("outputs", "norm_mean", "norm_std"):
            if dims[key] is not None:
                dims[key] = list(dims[key])
        state = {k: v.half() if v.is_floating_point() else v for k, v in self.state_dict().items()}
        torch.save({"dims": dims, "state": state, "meta": meta}, path)

    @classmethod
    def load(cls, path) -> "Audio2Expression":
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        dims = dict(ckpt["dims"])
        for key in ("outputs", "norm_mean", "norm_std"):
            if dims.get(key) is not None:
                dims[key] = tuple(dims[key])
        dims.setdefault("normalize", False)          # checkpoints from before CMVN
        model = cls(ModelDims(**dims))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state"].items()})
        model.meta = ckpt.get("meta", {})
        return model.eval()
