"""The mouth interior: teeth, tongue and a dark cavity, drawn where the lips part.

Drawn per pixel of the mouth hole from its distance to each lip and its place across
the mouth. Colours are taken from the portrait's own skin and lips, so the interior is
lit like the face. (Where the portrait shows its own teeth, the renderer uses those.)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..face import mesh as M

UPPER_TEETH_IOD = 0.17        # height of the upper incisors' crowns, IOD (about 10 mm)
UPPER_TEETH_BELOW_IOD = 0.08  # how far their edges reach below the line where the neutral lips meet
LOWER_TEETH_IOD = 0.15        # height of the lower incisors' crowns
LOWER_TEETH_ABOVE_IOD = 0.05  # how far their edges stand above that line (moved by the jaw)
TONGUE_ABOVE_IOD = 0.09      # the tongue's top above the lower teeth's edge
TOOTH_U = 0.3                 # width of a front tooth along the mouth (``across`` units)
TEETH_RGB = np.array([0.86, 0.82, 0.74])
CAVITY_RGB = np.array([0.20, 0.06, 0.06])
TONGUE_RGB = np.array([0.72, 0.36, 0.36])
TEETH_LIGHTER = 8.0           # shown teeth: this much lighter (Lab L, 0..255) than the lips' usual ...
TEETH_LIGHTER_SPREAD = 0.35   # ... plus this share of the lips' 10-90 % lightness range
TEETH_LESS_RED = 3.0          # ... and less red (Lab a) than the lips' median


def shown_teeth(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Where a photo shows its own teeth: bool[H x W].

    Looked for between the outer upper lip and the inner lower lip (the tracker often puts
    the inner upper lip on the teeth), as pixels clearly lighter and less red than the
    lips (Lab, measured on the lips' ring between the inner and outer lines).
    image : uint8[H x W x 3] RGB; landmarks : float[478 x 2+] pixels
    """
    h, w = image.shape[:2]
    poly = lambda idx: [np.round(landmarks[idx, :2] * 4).astype(np.int32)]
    band, outer, inner = (np.zeros((h, w), np.uint8) for _ in range(3))
    cv2.fillPoly(band, poly(M.LIP_OUTER_UPPER + M.LIP_INNER_LOWER[::-1]), 1, cv2.LINE_8, 2)
    cv2.fillPoly(outer, poly(M.LIP_OUTER_UPPER + M.LIP_OUTER_LOWER[::-1]), 1, cv2.LINE_8, 2)
    cv2.fillPoly(inner, poly(M.LIP_INNER_UPPER + M.LIP_INNER_LOWER[::-1]), 1, cv2.LINE_8, 2)
    ring = (outer > 0) & (inner == 0)
    if ring.sum() < 10:
        return np.zeros((h, w), bool)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    light, red = lab[..., 0][ring], lab[..., 1][ring]
    spread = np.percentile(light, 90) - np.percentile(light, 10)
    return ((band > 0) & (lab[..., 0] > np.median(light) + TEETH_LIGHTER_SPREAD * spread + TEETH_LIGHTER)
            & (lab[..., 1] < np.median(red) - TEETH_LESS_RED))


@dataclass(frozen=True)
class MouthPalette:
    teeth: torch.Tensor   # float[3], 0..1
    cavity: torch.Tensor
    tongue: torch.Tensor
    seam: torch.Tensor    # the dark line where closed lips meet
    lips: torch.Tensor

    @classmethod
    def from_portrait(cls, image: np.ndarray, landmarks: np.ndarray,
                      interior: np.ndarray | None = None) -> "MouthPalette":
        """Colours lit to match the face: skin sampled on the cheeks and forehead; the
        teeth's colour from the portrait's own teeth where ``interior`` (bool[H x W], the
        mouth interior the portrait shows) holds enough of them."""
        h, w = image.shape[:2]
        pick = lambda idx: image[np.clip(landmarks[idx, 1].astype(int), 0, h - 1),
                                 np.clip(landmarks[idx, 0].astype(int), 0, w - 1)] / 255.0
        skin = np.median(pick([50, 280, 205, 425, 151, 9]), axis=0)
        lips = np.median(pick([0, 17, 84, 314, 37, 267]), axis=0)
        light = np.clip(skin.max() / 0.75, 0.45, 1.15)    # exposure of the face
        teeth = TEETH_RGB * light * (0.85 + 0.15 * skin / skin.max())
        if interior is not None and interior.sum() >= 30:
            px = image[interior] / 255.0
            bright = px[px.sum(1) >= np.quantile(px.sum(1), 0.7)]     # the teeth, not the cavity
            if bright.sum(1).mean() > 1.3 * skin.sum():               # clearly lighter than skin: teeth
                teeth = np.median(bright, axis=0)
        t = lambda c: torch.tensor(np.clip(c, 0, 1), dtype=torch.float32)
        return cls(t(teeth), t(CAVITY_RGB * light * 0.6 + lips * 0.08),
                   t(0.6 * TONGUE_RGB * light + 0.4 * lips * 0.9), t(lips * 0.5), t(lips))


def _teeth(across: torch.Tensor, depth: torch.Tensor, height: float, colour: torch.Tensor) -> torch.Tensor:
    """A row of teeth: float[N x 3] shaded by ``across`` (0 middle .. 1 corners: the side
    teeth are further back and darker, a dark seam between teeth) and ``depth`` (pixels
    from the biting edge toward the gum, float[N]: the edge catches the light, the gum end
    is in the lip's shadow). ``height`` : the crown's height, pixels."""
    lateral = (1 - across / 0.8).clamp(0, 1)                     # dark past the canines
    slot = across / TOOTH_U * (1 + 0.8 * across)                  # teeth narrow toward the corners
    seam = 1 - 0.3 * torch.exp(-((slot - slot.round()) / 0.05) ** 2)
    edge = (depth / (0.04 * height + 1)).clamp(0, 1)              # thin bright biting edge
    shade = (0.45 + 0.55 * lateral) * seam * (1.05 - 0.1 * edge - 0.3 * (depth / height).clamp(0, 1) ** 2)
    return colour[None] * shade[:, None]


def draw_mouth(across: torch.Tensor, d_up: torch.Tensor, d_lo: torch.Tensor, t_up: torch.Tensor,
               t_lo: torch.Tensor, iod_px: float, palette: MouthPalette, tongue_out: float = 0.0) -> torch.Tensor:
    """Interior colours for N pixels of the mouth hole: rigid teeth, tongue and cavity.

    across : float[N], 0 at the middle of the mouth .. 1 at the corners
    d_up, d_lo : float[N], pixels below the upper lip and above the lower lip
    t_up : float[N], pixels below the upper teeth's line (where the neutral lips meet,
           posed with the skull); the upper row reaches ``UPPER_TEETH_BELOW_IOD`` below it
    t_lo : float[N], pixels below the lower teeth's line (the same line moved by the jaw);
           the lower row stands ``LOWER_TEETH_ABOVE_IOD`` above it
    iod_px : pixels per inter-ocular distance; tongue_out : 0..1
    returns float[N x 3], 0..1
    """
    height = d_up + d_lo + 1e-3
    v = d_up / height                                         # 0 upper lip .. 1 lower lip
    # cavity: darkest at the back and toward the corners
    depth = 1 - (2 * v - 1).abs()
    rgb = palette.cavity[None] * (1.1 - 0.5 * depth - 0.4 * across)[:, None]
    # tongue: a low mound behind the lower teeth, its top a little above their edge and
    # in the shadow of the upper lip; forward and up with tongueOut
    lo_edge = -LOWER_TEETH_ABOVE_IOD * iod_px
    top = lo_edge - (TONGUE_ABOVE_IOD + 0.5 * tongue_out * UPPER_TEETH_IOD) * iod_px
    tv = (t_lo - top) / (TONGUE_ABOVE_IOD * iod_px + 1)                # 0 at its top .. 1 at the teeth's edge
    tongue = (tv.clamp(0, 1) * (1 - (across / (0.55 + 0.2 * tongue_out)) ** 2).clamp(0, 1)).sqrt()
    rgb = torch.lerp(rgb, palette.tongue[None] * (0.5 + 0.4 * tongue)[:, None], (tongue * 2).clamp(0, 1)[:, None])
    # lower row, then the upper row in front of it (an overbite); soft 1.5 px edges
    lo_h = LOWER_TEETH_IOD * iod_px
    lower = ((t_lo - lo_edge) / 1.5 + 0.5).clamp(0, 1) * (1 - across / 0.6).clamp(0, 1).mul(3).clamp(max=1)
    lower_rgb = _teeth(across, t_lo - lo_edge, lo_h, palette.teeth) * 0.85
    rgb = torch.lerp(rgb, lower_rgb, lower[:, None])
    up_edge = UPPER_TEETH_BELOW_IOD * iod_px
    up_h = UPPER_TEETH_IOD * iod_px
    upper = ((up_edge - t_up) / 1.5 + 0.5).clamp(0, 1) * (1 - across / 0.8).clamp(0, 1).mul(4).clamp(max=1)
    upper_rgb = _teeth(across, up_edge - t_up, up_h, palette.teeth)
    # the lips' shadow on the teeth just inside them
    upper_rgb = upper_rgb * (1 - 0.3 * torch.exp(-d_up / (0.02 * iod_px + 1)))[:, None]
    return torch.lerp(rgb, upper_rgb, upper[:, None])
