"""A small triangle rasteriser in torch (pytorch3d has no installable build here).

Screen-space, orthographic: vertices are pixel coordinates (x, y) plus a depth z (smaller
is nearer). Every pixel of every triangle's bounding box is enumerated (one flat list,
no padding), tested with edge functions, and resolved with a z-buffer by one
``scatter_reduce(amin)`` over packed (depth, triangle) keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_DEPTH_BITS = 40   # quantised depth in the high bits of the key, triangle id in the low
_ID_BITS = 16


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


def _planes(tri: torch.Tensor) -> torch.Tensor:
    """Per-triangle affine coefficients: w0, w1 and z as ``a * x + b * y + c``.

    tri : float[F x 3 x 3] (x, y, z per corner)  ->  float[F x 3 x 3], rows (w0, w1, z),
    columns (a, b, c). Degenerate triangles get w0 = -1 everywhere (never inside).
    """
    x0, y0, z0 = tri[:, 0].unbind(-1)
    x1, y1, z1 = tri[:, 1].unbind(-1)
    x2, y2, z2 = tri[:, 2].unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    ok = area.abs() >= 1e-9
    inv = torch.where(ok, 1 / torch.where(ok, area, torch.ones_like(area)), torch.zeros_like(area))
    w0 = torch.stack([(y1 - y2) * inv, (x2 - x1) * inv, (x1 * y2 - x2 * y1) * inv], -1)
    w1 = torch.stack([(y2 - y0) * inv, (x0 - x2) * inv, (x2 * y0 - x0 * y2) * inv], -1)
    w0[~ok, 2] = -1.0
    z = (z0 - z2)[:, None] * w0 + (z1 - z2)[:, None] * w1
    z[:, 2] += z2
    return torch.stack([w0, w1, z], 1)


def _eval(planes: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Evaluate planes float[P x 3 x 3] at points float[P] -> float[P x 3] (w0, w1, z)."""
    return planes[..., 0] * px[:, None] + planes[..., 1] * py[:, None] + planes[..., 2]


def _nothing(size) -> Fragments:
    empty = torch.zeros(0, dtype=torch.long)
    return Fragments(empty, empty, torch.zeros(0, 3), size)


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
    if len(visible) == 0:
        return _nothing(size)
    zmin, zmax = verts[:, 2].min(), verts[:, 2].max()
    # every pixel of every triangle's box, without padding: (candidate -> triangle)
    bw, bh = ext[visible, 0], ext[visible, 1]
    counts = bw * bh
    owner = torch.repeat_interleave(torch.arange(len(visible)), counts)     # (P,)
    start = torch.cumsum(counts, 0) - counts
    k = torch.arange(len(owner)) - start[owner]
    tid = visible[owner]
    width = bw[owner]
    row = k // width
    corner = lo[visible].long()[owner]                                   # (P, 2) box corner
    px = (corner[:, 0] + k - row * width).float()
    py = (corner[:, 1] + row).float()
    planes = _planes(tri)                                               # (F, 3, 3)
    w0, w1, z = _eval(planes[tid], px + 0.5, py + 0.5).unbind(-1)
    inside = (w0 >= -1e-5) & (w1 >= -1e-5) & (w0 + w1 <= 1 + 1e-5)
    zq = ((z - zmin) / (zmax - zmin + 1e-9) * (2 ** (_DEPTH_BITS - 1))).long()
    keys = ((zq << _ID_BITS) | tid)[inside]
    pixels = (py * w + px).long()[inside]
    if len(keys) == 0:
        return _nothing(size)
    # z-buffer over the triangles' bounding box only (often far smaller than the target)
    bx0, by0 = int(lo[visible, 0].min()), int(lo[visible, 1].min())
    bx1, by1 = int(hi[visible, 0].max()) + 1, int(hi[visible, 1].max()) + 1
    zw = bx1 - bx0
    local = (pixels // w - by0) * zw + (pixels % w - bx0)
    empty = torch.iinfo(torch.long).max
    best = torch.full(((by1 - by0) * zw,), empty, dtype=torch.long)
    best.scatter_reduce_(0, local, keys, reduce="amin")
    hit = (best != empty).nonzero().squeeze(1)
    face = best[hit] & ((1 << _ID_BITS) - 1)
    px, py = hit % zw + bx0, hit // zw + by0                     # int64
    w0, w1, _ = _eval(planes[face], px + 0.5, py + 0.5).unbind(-1)
    bary = torch.stack([w0, w1, 1 - w0 - w1], -1).clamp(0, 1)
    return Fragments(py * w + px, face, bary / bary.sum(-1, keepdim=True), size)
