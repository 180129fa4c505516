"""The neural renderer's network: a small conditional U-Net on the lower-face crop.

Input (``NetDims.in_channels`` = 7 channels at ``size``²): the footage crop (3), the
region mask (1), the driving geometry (3, ``crop.draw_geometry``). With ``NetDims.texture``
the crop keeps the lower face it shows inside the region (in training always another
frame's than the target: the network learns to move that face's mouth to the drawn
geometry, keeping its skin, folds and colour); without it (files learned before
2026-12-06) the region is blanked and the network draws the whole lower face.
Output: the crop's RGB in 0..1 (3), of which the region is kept. With ``NetDims.flow``
(and ``texture``) that RGB is a blend: the input's own lower face moved by a smooth flow
the network predicts (at 1/``unshuffle`` the size, upsampled) where it can show the
target (lips and skin it already has, moved), and the network's own drawing where it
cannot (teeth behind lips that were closed): ``a * warp(input, flow) + (1 - a) * rgb``,
a per-pixel weight from the network. At the start the flow is zero and ``a`` ~0.9: the
output is the input's lower face, sharp, which training then moves.

The crop is first folded into ``unshuffle``² times the channels at 1/``unshuffle`` the
size (pixel unshuffle; the output is unfolded the same way): every convolution runs at
a quarter of the resolution or less (1.8 s for a batch of 8 at 128² on the shared 2-core
machine, against 6.5 s with unshuffle 2), which is what lets it train on a 2-core CPU in minutes.
Encoder: ``len(channels)`` levels, each two 3x3 convolutions (GroupNorm, SiLU), halving the
resolution between levels with a strided convolution; decoder: upsampled, concatenated
with the skip of the same level, two 3x3 convolutions. The checkpoint keeps ``NetDims``, so
``MouthNet(NetDims(**dims))`` rebuilds it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .crop import GEOMETRY_CHANNELS

GROUPS = 8   # GroupNorm groups (every width is a multiple of it)


@dataclass(frozen=True)
class NetDims:
    in_channels: int = 3 + 1 + GEOMETRY_CHANNELS
    channels: tuple[int, ...] = (32, 64, 96)    # per level, the first at size / unshuffle
    # (32, 64, 96): 0.54 M parameters, ~half the time a step and a frame of (48, 96, 128),
    # and better in the same 25 min (unseen mouth PSNR 26.2 vs 25.1 dB; docs/benchmarks.md §7)
    unshuffle: int = 4       # the crop enters as unshuffle² channels per pixel at 1 / unshuffle size
    texture: bool = True     # the input keeps the region's own lower face (module doc); with it
    # dubbing from unseen audio re-tracks at r 0.49-0.70 against 0.42 blanked, mouth PSNR
    # 26.2-26.8 dB against 26.0-26.2 (docs/benchmarks.md §7, 2026-12-06)
    flow: bool = False       # the output moves that face by a predicted flow (needs texture):
    # measured, not better in 25 CPU minutes (lip r 0.66 against 0.83; §7)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(GROUPS, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(GROUPS, cout), nn.SiLU())


class MouthNet(nn.Module):
    """x : Tensor[B x in_channels x S x S] -> RGB Tensor[B x 3 x S x S] in 0..1
    (S divisible by unshuffle * 2 ** (levels - 1))."""

    def __init__(self, dims: NetDims = NetDims()):
        super().__init__()
        self.dims = dims
        ch = dims.channels
        k = dims.unshuffle
        self.stem = _block(dims.in_channels * k * k, ch[0])
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(ch, ch[1:]))
        self.enc = nn.ModuleList(_block(b, b) for b in ch[1:])
        self.dec = nn.ModuleList(_block(b + a, a) for a, b in zip(ch, ch[1:]))
        self.head = nn.Conv2d(ch[0], 3 * k * k, 3, padding=1)
        if dims.flow:
            if not dims.texture:
                raise ValueError("NetDims(flow=True) moves the input's lower face: it needs texture=True")
            self.move = nn.Conv2d(ch[0], 2 + k * k, 3, padding=1)   # flow (x, y pixels), blend logits
            nn.init.zeros_(self.move.weight)
            nn.init.constant_(self.move.bias, 2.0)                   # a ~0.88: the input, ...
            with torch.no_grad():
                self.move.bias[:2] = 0.0                             # ... not moved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(F.pixel_unshuffle(x, self.dims.unshuffle))]   # (B, c0, S/k, S/k)
        for down, enc in zip(self.down, self.enc):
            skips.append(enc(down(skips[-1])))                  # (B, c_l, S/k/2^l, S/k/2^l)
        h = skips.pop()
        for dec in reversed(self.dec):
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = dec(torch.cat([h, skip], 1))
        rgb = torch.sigmoid(F.pixel_shuffle(self.head(h), self.dims.unshuffle))
        if not self.dims.flow:
            return rgb
        m = self.move(h)                                         # (B, 2 + k², S/k, S/k)
        b, _, s, _ = x.shape
        flow = F.interpolate(m[:, :2], size=(s, s), mode="bilinear", align_corners=False)  # (B, 2, S, S) px
        a = torch.sigmoid(F.pixel_shuffle(m[:, 2:], self.dims.unshuffle))                # (B, 1, S, S)
        theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(b, 2, 3)
        grid = F.affine_grid(theta, [b, 3, s, s], align_corners=False) + flow.permute(0, 2, 3, 1) * (2 / s)
        moved = F.grid_sample(x[:, :3], grid, padding_mode="border", align_corners=False)
        return a * moved + (1 - a) * rgb

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
