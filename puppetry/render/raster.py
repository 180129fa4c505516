"""A small triangle rasteriser in torch (pytorch3d has no installable build here).

Screen-space, orthographic: vertices are pixel coordinates (x, y) plus a depth z (smaller
is nearer). Every triangle's bounding box is enumerated as candidate pixels, tested with
edge functions, and resolved with a z-buffer by one ``scatter_reduce(amin)`` over packed
(depth, triangle) keys. Triangles are bucketed by box size so small ones are not padded
to the largest box.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_DEPTH_BITS = 40   # quantised depth in the high bits of the key, triangle id in the low
_ID_BITS = 16
_N_BUCKETS = 4


@dataclass
class Fragments:
    """What covers each pixel.

    pix  : int64[N], flat pixel index y * W + x of the N covered pixels
    face : int64[N], index of the nearest triangle there
    bary : float32[N x 3], barycentric weights of that triangle's corners
    """

    pix: torch.Tensor
    face: torch.Tensor
    bary: torch.Tensor
    size: tuple[int, int]

    def interpolate(self, faces: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        """Per-vertex ``attr`` float[V x C] -> per covered pixel float[N x C]."""
        corners = attr[faces[self.face]]                  # (N, 3, C)
        return (self.bary[..., None] * corners).sum(1)

    def to_image(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """float[N x C] -> float[H x W x C], ``fill`` where nothing is covered."""
        h, w = self.size
        out = values.new_full((h * w, values.shape[1]), fill)
        out[self.pix] = values
        return out.view(h, w, -1)

    def mask(self) -> torch.Tensor:
        """bool[H x W], covered pixels."""
        h, w = self.size
        m = torch.zeros(h * w, dtype=torch.bool)
        m[self.pix] = True
        return m.view(h, w)


def _edge_bary(tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """Barycentrics of points (px, py) float[F x P] in triangles tri float[F x 3 x 2]."""
    x0, y0 = tri[:, 0, 0:1], tri[:, 0, 1:2]
    x1, y1 = tri[:, 1, 0:1], tri[:, 1, 1:2]
    x2, y2 = tri[:, 2, 0:1], tri[:, 2, 1:2]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    safe = torch.where(area.abs() < 1e-9, torch.full_like(area, 1e-9), area)
    w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / safe
    w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / safe
    return torch.stack([w0, w1, 1 - w0 - w1], -1), area.abs() >= 1e-9


def rasterize(verts: torch.Tensor, faces: torch.Tensor, size: tuple[int, int]) -> Fragments:
    """Rasterise triangles.

    verts : float32[V x 3], pixels (x, y) and depth z (any units, smaller = nearer)
    faces : int64[F x 3]
    size  : (H, W)
    """
    h, w = size
    tri = verts[faces]                                           # (F, 3, 3)
    lo = tri[..., :2].amin(1).floor().clamp_min(0)
    hi = tri[..., :2].amax(1).ceil()
    hi = torch.stack([hi[:, 0].clamp(max=w - 1), hi[:, 1].clamp(max=h - 1)], 1)
    ext = (hi - lo + 1).clamp_min(0).long()                      # (F, 2) box width, height
    visible = (ext > 0).all(1).nonzero().squeeze(1)
    zmin, zmax = verts[:, 2].min(), verts[:, 2].max()
    keys, pixels = [], []
    order = visible[torch.argsort((ext[visible, 0] * ext[visible, 1]))]
    for chunk in torch.tensor_split(order, _N_BUCKETS):
        if len(chunk) == 0:
            continue
        bw, bh = int(ext[chunk, 0].max()), int(ext[chunk, 1].max())
        oy, ox = torch.meshgrid(torch.arange(bh), torch.arange(bw), indexing="ij")
        px = lo[chunk, 0:1] + ox.reshape(1, -1)                  # (f, bh*bw)
        py = lo[chunk, 1:2] + oy.reshape(1, -1)
        bary, ok = _edge_bary(tri[chunk, :, :2], px + 0.5, py + 0.5)
        inside = ok & (bary >= -1e-5).all(-1) & (px < w) & (py < h)
        z = (bary * tri[chunk, None, :, 2]).sum(-1)
        zq = ((z - zmin) / (zmax - zmin + 1e-9) * (2 ** (_DEPTH_BITS - 1))).long()
        key = (zq << _ID_BITS) | chunk[:, None]
        keys.append(key[inside])
        pixels.append((py * w + px)[inside].long())
    if not keys:
        empty = torch.zeros(0, dtype=torch.long)
        return Fragments(empty, empty, torch.zeros(0, 3), size)
    keys, pixels = torch.cat(keys), torch.cat(pixels)
    best = torch.full((h * w,), torch.iinfo(torch.long).max, dtype=torch.long)
    best.scatter_reduce_(0, pixels, keys, reduce="amin")
    pix = (best != torch.iinfo(torch.long).max).nonzero().squeeze(1)
    face = best[pix] & ((1 << _ID_BITS) - 1)
    px, py = (pix % w).float()[:, None] + 0.5, (pix // w).float()[:, None] + 0.5
    bary, _ = _edge_bary(tri[face, :, :2], px, py)
    return Fragments(pix, face, bary[:, 0].clamp(0, 1) / bary[:, 0].clamp(0, 1).sum(-1, keepdim=True), size)
