"""Audio2Expression: speech feature windows -> ARKit weights, with Neural Voice
Puppetry's content-aware temporal filter.

Per video frame t the network sees a window of feature frames centred on t (as NVP does
with DeepSpeech features), encodes it to a latent code z_t and an expression e_t. The
temporal filter then predicts, from the latent codes of the neighbouring frames, softmax
weights over the expressions of frames t-k..t+k and blends them: lips stay smooth yet
still reach closures, because the weights depend on the content.

A checkpoint stores its own :class:`ModelDims`, so ``Audio2Expression.load(path)``
needs nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .arkit import ARKIT_NAMES, INDEX

# The shapes speech moves (the rest come from idle motion, blinks and the user).
SPEECH_NAMES = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthUpperUpLeft",
    "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthSmileLeft",
    "mouthSmileRight", "mouthPressLeft", "mouthPressRight", "mouthShrugLower",
    "mouthShrugUpper", "tongueOut",
)


@dataclass
class ModelDims:
    """Everything needed to rebuild the network and feed it."""

    features: str = "mel"          # feature extractor spec (puppetry.features.load_features)
    feature_dim: int = 80          # D, values per feature frame
    feature_rate: float = 100.0    # feature frames per second
    window: int = 24               # W, feature frames seen per video frame (240 ms at 100 Hz)
    normalize: bool = True         # features standardised per band over the utterance (CMVN)
    fps: float = 25.0              # video frames per second
    hidden: int = 128              # channels of the window encoder
    latent: int = 32               # size of the per-frame latent code z_t
    filter_size: int = 9           # frames blended by the temporal filter (odd; 360 ms at 25 fps)
    outputs: tuple[str, ...] = field(default_factory=lambda: SPEECH_NAMES)


class Audio2Expression(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
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
            nn.Conv1d(dims.latent, dims.latent, dims.filter_size, padding=dims.filter_size // 2),
            nn.LeakyReLU(0.2), nn.Conv1d(dims.latent, dims.filter_size, 1))
        self.register_buffer("index", torch.tensor([INDEX[n] for n in dims.outputs]))

    def per_frame(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """windows : Tensor[B x T x W x D] -> (latent [B x T x L], expressions [B x T x K])."""
        b, t, w, d = windows.shape
        x = self.encoder(windows.reshape(b * t, w, d).transpose(1, 2))   # (B*T, h, W/8)
        z = self.to_latent(x.flatten(1)).view(b, t, -1)                  # (B, T, L)
        return z, self.to_expression(z)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows : Tensor[B x T x W x D] -> speech expressions Tensor[B x T x K], ordered as
        ``dims.outputs`` (0..1 in eval mode)."""
        z, e = self.per_frame(windows)
        k = self.dims.filter_size
        logits = self.filter(z.transpose(1, 2)).transpose(1, 2)        # (B, T, k)
        weights = logits.softmax(-1)
        padded = F.pad(e.transpose(1, 2), (k // 2, k // 2), mode="replicate")
        neighbours = padded.unfold(2, k, 1)                             # (B, K, T, k)
        blended = (neighbours * weights[:, None]).sum(-1).transpose(1, 2)
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
        dims["outputs"] = list(dims["outputs"])
        state = {k: v.half() if v.is_floating_point() else v for k, v in self.state_dict().items()}
        torch.save({"dims": dims, "state": state, "meta": meta}, path)

    @classmethod
    def load(cls, path) -> "Audio2Expression":
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        dims = dict(ckpt["dims"])
        dims["outputs"] = tuple(dims["outputs"])
        dims.setdefault("normalize", False)          # checkpoints from before CMVN
        model = cls(ModelDims(**dims))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state"].items()})
        model.meta = ckpt.get("meta", {})
        return model.eval()
