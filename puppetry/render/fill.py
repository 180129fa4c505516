"""Smooth extension of sparse fields (pull-push over an image pyramid)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pull_push(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Fill where ``weight`` is 0 with a smooth extension of the known values.

    values : float[C x H x W]; weight : float[1 x H x W] in [0, 1] (1 = known)
    returns float[C x H x W], equal to ``values`` where weight is 1.
    """
    levels = [(values * weight, weight)]
    while max(levels[-1][1].shape[-2:]) > 1:
        v, w = levels[-1]
        levels.append((F.avg_pool2d(v[None], 2, ceil_mode=True)[0],
                       F.avg_pool2d(w[None], 2, ceil_mode=True)[0]))
    v, w = levels[-1]
    filled = v / w.clamp_min(1e-6)
    for v, w in reversed(levels[:-1]):
        up = F.interpolate(filled[None], size=v.shape[-2:], mode="bilinear", align_corners=False)[0]
        conf = (w * 4).clamp(max=1)
        filled = conf * v / w.clamp_min(1e-6) + (1 - conf) * up
    return filled
