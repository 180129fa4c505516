"""The lower face as the neural renderer sees it: a fixed, skull-aligned crop.

Every footage frame is mapped by a 2-D similarity (from the skull points, which do not
move with expressions) onto a square crop of ``CropConfig.size`` pixels around the mouth
and jaw, so the network always sees the same box. In that box:

- :func:`region_mask`: the part the renderer regenerates (mouth, lips, chin, lower
  cheeks), a rounded rectangle in crop coordinates, the same for every frame;
- :func:`draw_geometry`: the driving expression, drawn from the driven mesh: outer lips,
  inner mouth, and the contours of lips, jaw line and nose base;
- :func:`paste`: the synthesised crop put back into the frame with a feathered mask.

Crop coordinates: pixels of the crop, x right, y down. Head-frame units: inter-ocular
distances (IOD, ``face/mesh.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..face import mesh as M

# MediaPipe's face oval, lower part (ear to ear under the chin), and the nose base.
JAW_LINE = [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365,
            397, 288, 361, 323, 454]
NOSE_BASE = [129, 98, 97, 2, 326, 327, 358]
LIP_POINTS = sorted(set(M.LIP_OUTER_UPPER + M.LIP_OUTER_LOWER))
SUBPIXEL = 4            # cv2 drawing: coordinates with 4 fractional bits
GEOMETRY_CHANNELS = 3   # lips, inner mouth, contours


@dataclass(frozen=True)
class CropConfig:
    """Where the crop sits on the face and what it regenerates.

    size    : crop side, pixels
    side    : crop side in IOD (about 2.5: mouth, chin and lower cheeks)
    below   : crop centre below the mouth centre, IOD
    region  : (x0, y0, x1, y1) regenerated part, fractions of the crop side
    corner  : corner radius of the region, fraction of the crop side
    feather : Gaussian sigma of the blend edge, fraction of the crop side
    """

    size: int = 128
    side: float = 2.5
    below: float = 0.1
    region: tuple[float, float, float, float] = (0.13, 0.21, 0.87, 0.97)
    corner: float = 0.18
    feather: float = 0.025


def template(shape: np.ndarray, config: CropConfig) -> np.ndarray:
    """Crop coordinates of the skull points for a frontal face: float64[len(RIGID_POINTS) x 2].

    shape : float[468 x 3], the person's neutral face in the head frame (IOD, y up)
    """
    mouth = shape[LIP_POINTS, :2].mean(0)
    centre = mouth - np.array([0.0, config.below])                 # y up: below = minus
    k = config.size / config.side                                  # pixels per IOD
    p = shape[M.RIGID_POINTS, :2] - centre
    return np.stack([p[:, 0] * k, -p[:, 1] * k], 1) + config.size / 2


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2-D similarity (rotation, uniform scale, shift) that best maps ``src`` onto
    ``dst`` (float[N x 2] each, least squares) -> float64[2 x 3] for ``cv2.warpAffine``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    den = (a ** 2).sum()
    c = (a * b).sum() / den                                        # s cos
    s = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / den        # s sin
    rot = np.array([[c, -s], [s, c]])
    return np.concatenate([rot, (md - rot @ ms)[:, None]], 1)


def invert(affine: np.ndarray) -> np.ndarray:
    """Inverse of a float[2 x 3] affine map."""
    return cv2.invertAffineTransform(np.asarray(affine, np.float64))


def to_crop(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """float[N x >=2] image pixels -> float64[N x 2] crop pixels."""
    return points[:, :2] @ affine[:, :2].T + affine[:, 2]


def crop(frame: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """The crop of one frame: uint8[size x size x 3] (bilinear, edges replicated)."""
    return cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=8)
def region_mask(config: CropConfig) -> tuple[np.ndarray, np.ndarray]:
    """(hard, soft): float32[size x size] each, 1 inside the regenerated region.

    ``hard`` is what the network must fill (its input is blanked there); ``soft`` is the
    blend weight, feathered inside the hard edge so that the seam falls on pixels the
    network synthesised, fading into the footage's own.
    """
    n = config.size
    x0, y0, x1, y1 = (np.array(config.region) * n)
    r = config.corner * n
    ys, xs = np.mgrid[0:n, 0:n] + 0.5
    dx = np.maximum(np.maximum(x0 + r - xs, xs - (x1 - r)), 0)
    dy = np.maximum(np.maximum(y0 + r - ys, ys - (y1 - r)), 0)
    inside = np.hypot(dx, dy) <= r
    hard = inside.astype(np.float32)
    sigma = config.feather * n
    shrunk = cv2.erode(hard, np.ones((3, 3), np.uint8), iterations=int(round(2 * sigma)))
    soft = cv2.GaussianBlur(shrunk, (0, 0), sigma) * hard
    hard.setflags(write=False)
    soft.setflags(write=False)
    return hard, soft


def draw_geometry(points: np.ndarray, size: int) -> np.ndarray:
    """The driving expression drawn in the crop: float32[3 x size x size], 0..1.

    points : float[468 x 2], the driven mesh in crop pixels
    channel 0: the lips (outer contour filled, the mouth opening left out);
    channel 1: the mouth opening (inner lip contour filled);
    channel 2: contours (outer and inner lips, jaw line, nose base), anti-aliased.
    """
    fix = lambda idx: np.round(points[idx] * (1 << SUBPIXEL)).astype(np.int32)  # noqa: E731
    outer = fix(M.closed_loop(M.LIP_OUTER_UPPER, M.LIP_OUTER_LOWER))
    inner = fix(M.closed_loop(M.LIP_INNER_UPPER, M.LIP_INNER_LOWER))
    out = np.zeros((GEOMETRY_CHANNELS, size, size), np.float32)
    lips, mouth, lines = (np.zeros((size, size), np.uint8) for _ in range(3))
    cv2.fillPoly(lips, [outer], 255, cv2.LINE_AA, SUBPIXEL)
    cv2.fillPoly(mouth, [inner], 255, cv2.LINE_AA, SUBPIXEL)
    cv2.polylines(lines, [outer, inner], True, 255, 1, cv2.LINE_AA, SUBPIXEL)
    cv2.polylines(lines, [fix(JAW_LINE), fix(NOSE_BASE)], False, 255, 1, cv2.LINE_AA, SUBPIXEL)
    out[0] = np.maximum(lips.astype(np.float32) - mouth, 0) / 255
    out[1] = mouth / np.float32(255)
    out[2] = lines / np.float32(255)
    return out


def paste(frame: np.ndarray, synth: np.ndarray, affine: np.ndarray, config: CropConfig,
          out: np.ndarray | None = None) -> np.ndarray:
    """Blend a synthesised crop into its frame with the feathered region mask.

    frame  : uint8[H x W x 3], the footage frame
    synth  : uint8[size x size x 3], the crop the renderer made (same ``affine``)
    affine : float[2 x 3], frame -> crop
    Returns uint8[H x W x 3] (``out`` if given); only the region's bounding box changes.
    """
    if out is None:
        out = frame.copy()
    elif out is not frame:
        out[...] = frame
    h, w = frame.shape[:2]
    n = config.size
    _, soft = region_mask(config)
    back = invert(affine)
    corners = to_crop(back, np.array([[0, 0], [n, 0], [0, n], [n, n]], np.float64))
    x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [w, h])
    x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return out
    shifted = back.copy()
    shifted[:, 2] -= (x0, y0)                                       # crop -> box pixels
    size = (int(x1 - x0), int(y1 - y0))
    alpha = cv2.warpAffine(soft, shifted, size, flags=cv2.INTER_LINEAR)[..., None]
    color = cv2.warpAffine(synth, shifted, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    box = out[y0:y1, x0:x1]
    box[...] = np.clip(box * (1 - alpha) + color * alpha + 0.5, 0, 255).astype(np.uint8)
    return out
