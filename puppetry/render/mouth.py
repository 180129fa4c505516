"""The mouth interior: teeth, tongue and a dark cavity, drawn where the lips part.

Drawn per pixel of the mouth hole from its distance to each lip and its place across
the mouth. Colours are taken from the portrait's own skin and lips, so the interior is
lit like the face. (Where the portrait shows its own teeth, the renderer uses those.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

UPPER_TEETH_IOD = 0.15   # visible height of the upper incisors, IOD
LOWER_TEETH_IOD = 0.05
TOOTH_U = 0.085          # width of a front tooth along the mouth (u units)
TEETH_RGB = np.array([0.86, 0.82, 0.74])
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


def draw_mouth(across: torch.Tensor, d_up: torch.Tensor, d_lo: torch.Tensor, iod_px: float,
               palette: MouthPalette, tongue_out: float = 0.0, shown: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Interior colours for N pixels of the mouth hole.

    across : float[N], 0 at the middle of the mouth .. 1 at the corners
    d_up, d_lo : float[N], pixels below the upper lip and above the lower lip
    iod_px : pixels per inter-ocular distance; tongue_out : 0..1
    shown  : float[N] or float, pixels below the upper lip already covered by the
             portrait's own teeth (drawn upper teeth start below that, never twice)
    returns float[N x 3], 0..1
    """
    height = d_up + d_lo + 1e-3
    v = d_up / height                                         # 0 upper lip .. 1 lower lip
    # cavity: darkest at the back and toward the corners
    depth = 1 - (2 * v - 1).abs()
    rgb = palette.cavity[None] * (1.1 - 0.5 * depth - 0.4 * across)[:, None]
    # tongue: a low mound behind the lower teeth, forward with tongueOut
    tv = (v - (0.95 - 0.3 * tongue_out)) / (0.35 + 0.3 * tongue_out)
    tongue = (1 - ((across / 0.6) ** 2 + tv ** 2)).clamp(0, 1).sqrt()
    rgb = torch.lerp(rgb, palette.tongue[None] * (0.55 + 0.45 * tongue)[:, None], (tongue * 3).clamp(0, 1)[:, None])
    # teeth: upper incisors under the upper lip, lower ones above the lower lip, soft gaps
    lateral = (1 - across / 0.8).clamp(0, 1)                  # none past the canines
    slot = across / TOOTH_U
    gap = 1 - 0.08 * torch.exp(-((slot - slot.round()) / 0.12) ** 2)
    shade = (0.6 + 0.4 * lateral) * gap
    teeth = palette.teeth[None] * shade[:, None] * (1 - 0.3 * torch.exp(-d_up / (0.02 * iod_px + 1)))[:, None]
    reach = (lateral * 4).clamp(0, 1)
    edge = 1 - 0.25 * (d_up / (UPPER_TEETH_IOD * iod_px)).clamp(0, 1)  # lit at the biting edge
    teeth = teeth * edge[:, None]
    upper = ((UPPER_TEETH_IOD * iod_px - d_up) / 1.5).clamp(0, 1) * reach
    upper = upper * (torch.as_tensor(shown) < 1.0).float()
    lower_h = LOWER_TEETH_IOD * iod_px * (height / (0.3 * iod_px)).clamp(max=1)
    lower = ((lower_h - d_lo) / 1.5).clamp(0, 1) * (1 - across / 0.55).clamp(0, 1).mul(3).clamp(max=1)
    rgb = torch.lerp(rgb, teeth * 0.7, lower[:, None])
    return torch.lerp(rgb, teeth, upper[:, None])
