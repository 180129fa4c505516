"""A small triangle rasteriser in torch (pytorch3d has no installable build here).

Screen-space, orthographic: vertices are pixel coordinates (x, y) plus a depth z (smaller
is nearer). Candidate pixels are enumerated in one flat list, no padding (every pixel of
each triangle's bounding box for small triangles; for large ones only each box row's span
that the triangle crosses, a pixel wider each side), tested with edge functions, and
resolved with a z-buffer by one ``scatter_reduce(amin)`` over packed (depth, triangle) keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_DEPTH_BITS = 40   # quantised depth in the high bits of the key, triangle id in the low
_ID_BITS = 16
_BOX_EPS = 1e-3    # pixels: a centre this far outside a triangle's box is still tested
_SPAN_MIN_WIDTH = 4.0  # boxes wider than this on average: candidates by row spans, not whole boxes


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

    tri : float[F x 3 x 3] (x, y, z per corner)  ->  float[9 x F], rows (a, b, c) of w0,
    then of w1, then of z. Degenerate triangles get w0 = -1 everywhere (never inside).
    """
    x0, y0, z0 = tri[:, 0].unbind(-1)
    x1, y1, z1 = tri[:, 1].unbind(-1)
    x2, y2, z2 = tri[:, 2].unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    ok = area.abs() >= 1e-9
    inv = torch.where(ok, 1 / torch.where(ok, area, torch.ones_like(area)), torch.zeros_like(area))
    w0 = torch.stack([(y1 - y2) * inv, (x2 - x1) * inv, (x1 * y2 - x2 * y1) * inv])
    w1 = torch.stack([(y2 - y0) * inv, (x0 - x2) * inv, (x2 * y0 - x0 * y2) * inv])
    w0[2, ~ok] = -1.0
    z = (z0 - z2) * w0 + (z1 - z2) * w1
    z[2] += z2
    return torch.cat([w0, w1, z])


def _eval(g: torch.Tensor, row: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Plane ``row`` (0: w0, 1: w1, 2: z) of coefficients g float[9 x P] at x, y float[P]."""
    a, b, c = g[3 * row:3 * row + 3]
    return torch.addcmul(torch.addcmul(c, a, x), b, y)


def _nothing(size) -> Fragments:
    empty = torch.zeros(0, dtype=torch.long)
    return Fragments(empty, empty, torch.zeros(0, 3), size)


def _box_candidates(width: torch.Tensor, height: torch.Tensor):
    """Every pixel of every box: (owner, row, col) int64[P], box-relative."""
    counts = width * height
    owner = torch.repeat_interleave(counts)                      # (P,)
    k = torch.arange(len(owner)) - (counts.cumsum(0) - counts)[owner]
    row = k.div(width[owner], rounding_mode="floor")
    return owner, row, k - row * width[owner]


def _span_candidates(local: torch.Tensor, width: torch.Tensor, height: torch.Tensor):
    """The pixels of each box row where the row's centre line crosses the triangle (from
    its three edge functions ``local`` float[9 x V], box coordinates; one pixel wider each
    side): (owner, row, col) int64[P], a superset of the pixels inside, far fewer than
    the box's for large triangles."""
    row_owner = torch.repeat_interleave(height)                  # (R,) row -> visible triangle
    row = torch.arange(len(row_owner)) - (height.cumsum(0) - height)[row_owner]
    rowf = row.float()
    a0, b0, c0, a1, b1, c1 = local[:6, row_owner]
    e0, e1 = c0 + b0 * rowf, c1 + b1 * rowf                      # w0, w1 at the row's column 0
    lo, hi = torch.zeros_like(rowf), (width[row_owner] - 1).float()
    for a, e in ((a0, e0), (a1, e1), (-(a0 + a1), 1 - e0 - e1)):    # w = a * col + e >= 0
        bound = -e / torch.where(a == 0, torch.ones_like(a), a)
        lo = torch.where(a > 0, torch.maximum(lo, bound - 1), lo)
        hi = torch.where(a < 0, torch.minimum(hi, bound + 1), hi)
        hi = torch.where((a == 0) & (e < -1e-5), torch.full_like(hi, -1.0), hi)
    first = lo.clamp(0, 1e6).ceil().long()
    counts = (hi.clamp(-1, 1e6).floor().long() - first + 1).clamp_(min=0)
    cand = torch.repeat_interleave(counts)                       # (P,) candidate -> row
    col = torch.arange(len(cand)) - (counts.cumsum(0) - counts)[cand] + first[cand]
    return row_owner[cand], row[cand], col


def rasterize(verts: torch.Tensor, faces: torch.Tensor, size: tuple[int, int]) -> Fragments:
    """Rasterise triangles: a pixel is covered when its centre (x + 0.5, y + 0.5) is inside.

    verts : float32[V x 3], pixels (x, y) and depth z (any units, smaller = nearer)
    faces : int64[F x 3]
    size  : (H, W)
    """
    h, w = size
    tri = verts[faces]                                           # (F, 3, 3)
    xy = tri[..., :2]
    # each triangle's box: the pixels whose centres can be inside it
    lo = (xy.amin(1) - (0.5 + _BOX_EPS)).ceil_().clamp_(min=0)                      # (F, 2)
    hi = torch.minimum((xy.amax(1) - (0.5 - _BOX_EPS)).floor_(), torch.tensor([w - 1.0, h - 1.0]))
    ext = (hi - lo + 1).clamp_(min=0).long()                     # (F, 2) box width, height
    visible = (ext[:, 0] * ext[:, 1]).nonzero().squeeze(1)
    if len(visible) == 0:
        return _nothing(size)
    width, height, corner = ext[visible, 0], ext[visible, 1], lo[visible]
    planes = _planes(tri)                                        # (9, F)
    # the visible triangles' planes in box coordinates (0, 0 = the box's first pixel
    # centre): small numbers, so w0, w1 keep their precision far from the origin
    local = planes[:, visible]                                   # (9, V)
    local[2::3] += local[0::3] * (corner[:, 0] + 0.5) + local[1::3] * (corner[:, 1] + 0.5)
    # every candidate pixel, without padding: (visible triangle, box row, box column)
    if width.float().mean() > _SPAN_MIN_WIDTH:
        owner, row, col = _span_candidates(local, width, height)
    else:
        owner, row, col = _box_candidates(width, height)
    g = local[:6, owner]                                         # (6, P)
    colf, rowf = col.float(), row.float()
    w0, w1 = _eval(g, 0, colf, rowf), _eval(g, 1, colf, rowf)
    inside = ((w0 >= -1e-5) & (w1 >= -1e-5) & (w0 + w1 <= 1 + 1e-5)).nonzero().squeeze(1)
    if len(inside) == 0:
        return _nothing(size)
    owner, row, col = owner[inside], row[inside], col[inside]
    z = _eval(local[6:, owner], 0, colf[inside], rowf[inside])
    # z-buffer over the boxes' extent only (often far smaller than the target), by one
    # scatter_reduce(amin) over packed (quantised depth, triangle) keys
    zmin, zmax = verts[:, 2].min(), verts[:, 2].max()
    zq = ((z - zmin) * ((2 ** (_DEPTH_BITS - 1)) / (zmax - zmin + 1e-9))).long()
    keys = (zq << _ID_BITS) | visible[owner]
    bx0, by0 = int(corner[:, 0].min()), int(corner[:, 1].min())
    bx1, by1 = int(hi[visible, 0].max()) + 1, int(hi[visible, 1].max()) + 1
    zw = bx1 - bx0
    cx, cy = corner.long().unbind(1)
    cell = (cy[owner] + row - by0) * zw + (cx[owner] + col - bx0)
    empty = torch.iinfo(torch.long).max
    best = torch.full(((by1 - by0) * zw,), empty, dtype=torch.long)
    best.scatter_reduce_(0, cell, keys, reduce="amin")
    hit = (best != empty).nonzero().squeeze(1)
    face = best[hit] & ((1 << _ID_BITS) - 1)
    px, py = hit % zw + bx0, hit // zw + by0                     # int64
    g, cx, cy = planes[:6, face], px + 0.5, py + 0.5
    w0, w1 = _eval(g, 0, cx, cy), _eval(g, 1, cx, cy)
    bary = torch.stack([w0, w1, 1 - w0 - w1], -1).clamp(0, 1)
    return Fragments(py * w + px, face, bary / bary.sum(-1, keepdim=True), size)
