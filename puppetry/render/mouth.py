"""The mouth interior: teeth, tongue and a dark cavity, drawn where the lips part.

Drawn in mouth coordinates that the rasteriser interpolates over the mouth hole:
u runs from the right corner (0) to the left corner (1), v from the upper lip (0) to the
lower lip (1). Colours are taken from the portrait's own skin and lips, so the interior
is lit like the face.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

UPPER_TEETH_IOD = 0.15   # visible height of the upper incisors, IOD
LOWER_TEETH_IOD = 0.09
TOOTH_U = 0.085          # width of a front tooth along the mouth (u units)
TEETH_RGB = np.array([0.93, 0.90, 0.84])
CAVITY_RGB = np.array([0.20, 0.06, 0.06])
TONGUE_RGB = np.array([0.72, 0.36, 0.36])


@dataclass(frozen=True)
class MouthPalette:
    teeth: torch.Tensor   # float[3], 0..1
    cavity: torch.Tensor
    tongue: torch.Tensor

    @classmethod
    def from_portrait(cls, image: np.ndarray, landmarks: np.ndarray) -> "MouthPalette":
        """Colours lit to match the face: skin sampled on the cheeks and forehead."""
        h, w = image.shape[:2]
        pick = lambda idx: image[np.clip(landmarks[idx, 1].astype(int), 0, h - 1),
                                 np.clip(landmarks[idx, 0].astype(int), 0, w - 1)] / 255.0
        skin = np.median(pick([50, 280, 205, 425, 151, 9]), axis=0)
        lips = np.median(pick([0, 17, 84, 314, 37, 267]), axis=0)
        light = np.clip(skin.max() / 0.75, 0.45, 1.15)    # exposure of the face
        t = lambda c: torch.tensor(np.clip(c, 0, 1), dtype=torch.float32)
        return cls(t(TEETH_RGB * light * (0.85 + 0.15 * skin / skin.max())),
                   t(CAVITY_RGB * light * 0.6 + lips * 0.08),
                   t(0.6 * TONGUE_RGB * light + 0.4 * lips * 0.9))


def draw_mouth(u: torch.Tensor, v: torch.Tensor, open_px: float, iod_px: float,
               palette: MouthPalette, tongue_out: float = 0.0) -> torch.Tensor:
    """Interior colours for pixels of the mouth hole.

    u, v    : float[H x W] mouth coordinates (see module docstring)
    open_px : lip opening at the middle of the mouth, pixels; iod_px : pixels per IOD
    returns float[3 x H x W], 0..1
    """
    across = (2 * u - 1).abs()                               # 0 middle .. 1 corners
    height = open_px * (1 - across ** 2).clamp_min(0).sqrt() + 1e-3
    from_top, from_bottom = v * height, (1 - v) * height     # pixels to each lip
    # cavity: darkest at the back and toward the corners
    depth = 1 - (2 * v - 1).abs()
    rgb = palette.cavity[:, None, None] * (1.1 - 0.5 * depth - 0.4 * across)
    # tongue: a low mound, further forward with tongueOut
    tu, tv = (u - 0.5) / 0.32, (v - (0.92 - 0.25 * tongue_out)) / (0.32 + 0.3 * tongue_out)
    tongue = (1 - (tu ** 2 + tv ** 2)).clamp(0, 1).sqrt()
    rgb = torch.lerp(rgb, palette.tongue[:, None, None] * (0.6 + 0.4 * tongue), (tongue * 3).clamp(0, 1))
    # teeth: upper row under the upper lip, lower row above the lower lip
    lateral = (1 - across / 0.78).clamp(0, 1)                # none past the canines
    slot = (u - 0.5) / TOOTH_U
    gap = 1 - 0.45 * torch.exp(-((slot - slot.round()) / 0.07) ** 2)
    shade = (0.55 + 0.45 * lateral) * gap
    upper = ((UPPER_TEETH_IOD * iod_px * (0.92 + 0.08 * (slot - slot.round()).abs().mul(2).neg().add(1))
              - from_top) / 1.5).clamp(0, 1) * (lateral * 4).clamp(0, 1)
    lower_h = LOWER_TEETH_IOD * iod_px * (open_px / (0.25 * iod_px)).clamp(max=1) if torch.is_tensor(open_px) \
        else LOWER_TEETH_IOD * iod_px * min(1.0, open_px / (0.25 * iod_px))
    lower = ((lower_h - from_bottom) / 1.5).clamp(0, 1) * (lateral * 4).clamp(0, 1) * 0.9
    lip_shadow = 1 - 0.35 * torch.exp(-from_top / (0.02 * iod_px + 1))
    teeth = palette.teeth[:, None, None] * shade * lip_shadow
    rgb = torch.lerp(rgb, teeth * 0.85, lower)
    return torch.lerp(rgb, teeth, upper)
