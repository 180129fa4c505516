"""A portrait made ready to animate: canvas, landmarks, face model, masks, background.

``load_portrait`` does all per-portrait work once (tracking, segmentation, background
fill, blendshape fitting) so that rendering a frame is only warping.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .face.blendshapes import blendshape_basis
from .face.mesh import HeadFrame, head_frame, interocular
from .face.tracker import Face, FaceNotFoundError, detect_face, segment_person
from .io import load_image

WORK_PX = 1280        # long side at which a large photo is searched for its face
CROP_FACE_WIDTHS = 2.7  # crop side = this many face widths (head, hair, neck, some shoulder)
CROP_LIFT = 0.12      # crop centre above the face box centre, in face heights
FRAMES = ("crop", "full")
BUNDLED = "astronaut"   # the default portrait: scikit-image's astronaut (public domain, NASA)


def bundled_portrait() -> np.ndarray:
    """The bundled default portrait, uint8[512 x 512 x 3] (Eileen Collins, NASA, public
    domain; shipped inside scikit-image). Read straight from scikit-image's data folder:
    importing ``skimage.data`` would cost 0.2 s of every run."""
    from importlib.util import find_spec
    spec = find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the bundled portrait ships inside scikit-image: pip install scikit-image==0.26.0")
    return load_image(Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png")


@dataclass
class Portrait:
    """Everything the renderers need about one portrait, on its canvas.

    image     : uint8[H x W x 3], the canvas (a head crop, or the whole photo resized)
    landmarks : float32[478 x 3], canvas pixels (z in the same units)
    frame     : the head frame (image = scale * R @ head + origin)
    shape     : float32[468 x 3], the neutral identity shape in the head frame (IOD)
    basis     : float32[52 x 468 x 3], its blendshape displacement fields (IOD)
    alpha     : float32[H x W], head/body (1) versus background (0)
    background: uint8[H x W x 3], the canvas with the person removed and filled in
    name      : where it came from, for messages
    """

    image: np.ndarray
    landmarks: np.ndarray
    frame: HeadFrame
    shape: np.ndarray
    basis: np.ndarray
    alpha: np.ndarray
    background: np.ndarray
    name: str = "portrait"

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the canvas, pixels."""
        return self.image.shape[:2]

    @property
    def iod(self) -> float:
        """Inter-ocular distance on the canvas, pixels."""
        return interocular(self.landmarks)


def load_portrait(source, *, size: int = 512, frame: str = "crop") -> Portrait:
    """Read, track and prepare a portrait.

    source : a path, ``"astronaut"`` (the bundled portrait), or uint8[H x W x 3] RGB
    size   : canvas side for ``frame="crop"`` (square), or long side for ``"full"``, pixels
    frame  : "crop" (a square around the head) or "full" (the whole photo)
    """
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, not {frame!r}")
    if not 64 <= size <= 2048:
        raise ValueError(f"size {size} is out of range: use 64..2048 pixels")
    if isinstance(source, str) and source == BUNDLED and not Path(source).exists():
        name, rgb = BUNDLED, bundled_portrait()
    elif isinstance(source, (str, os.PathLike)):
        name, rgb = Path(source).name, load_image(source)
    else:
        name, rgb = "portrait", np.asarray(source)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"portrait array must be uint8 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")

    # 1. find the face at a working resolution, in photo coordinates
    k = min(1.0, WORK_PX / max(rgb.shape[:2]))
    work = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else rgb
    face = detect_face(work, name)
    box = np.array(face.box) / k

    # 2. the canvas: a head crop or the whole photo, at the requested size
    canvas = _crop(rgb, box, size) if frame == "crop" else _resize_long(rgb, size)

    # 3. track again on the canvas (where frames are rendered and re-tracked)
    try:
        face = detect_face(canvas, name)
    except FaceNotFoundError as err:
        raise FaceNotFoundError(f"{err} (after resizing to {size} px: try a larger size)") from None
    return prepare(canvas, face, name)


def prepare(canvas: np.ndarray, face: Face, name: str = "portrait") -> Portrait:
    """A Portrait from a canvas image and its tracked face."""
    lm = face.landmarks.astype(np.float32)
    hf = head_frame(lm)
    shape = hf.to_head(lm[:468].astype(np.float64)).astype(np.float32)
    alpha = _person_alpha(canvas, lm)
    return Portrait(canvas, lm, hf, shape, blendshape_basis(shape), alpha,
                    _background(canvas, alpha), name)


def _crop(rgb: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    side = CROP_FACE_WIDTHS * max(fw, 0.8 * fh)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - CROP_LIFT * fh
    h, w = rgb.shape[:2]
    if side <= min(h, w):          # keep the crop inside the photo: no replicated borders
        cx = float(np.clip(cx, side / 2, w - side / 2))
        cy = float(np.clip(cy, side / 2, h - side / 2))
    s = size / side
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float64)
    if s < 1:   # shrink without aliasing: resize first, then place
        small = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        m = np.array([[1, 0, size / 2 - s * cx], [0, 1, size / 2 - s * cy]], np.float64)
        return cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)


def _resize_long(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = size / max(h, w)
    out_w, out_h = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, (out_w, out_h), interpolation=interp)


def _person_alpha(canvas: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Selfie segmentation joined with the face's own outline, float32[H x W] 0..1."""
    alpha = segment_person(canvas)
    hull = np.zeros(canvas.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(lm[:468, :2].astype(np.int32)), 1)
    return np.maximum(alpha, hull.astype(np.float32))


def _background(canvas: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The canvas with the person removed: every pixel the person touches (alpha > 0.02)
    is filled from the surroundings (Telea inpainting at a coarse scale, from pixels a
    little away from the person so no fringe bleeds in); elsewhere it is the canvas. The renderer unmixes the canvas against this plate
    (``canvas = alpha * F + (1 - alpha) * background``), so a frame with no motion is
    the canvas exactly while moved hair leaves no ghost of its old outline."""
    h, w = alpha.shape
    person = cv2.dilate((alpha > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8))
    k = 160 / max(h, w)
    small = cv2.resize(canvas, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(person, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
    small_mask = cv2.dilate(small_mask, np.ones((3, 3), np.uint8))   # no person fringe in the fill
    filled = cv2.inpaint(small, small_mask, 7, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 0.015 * max(h, w))
    return np.where(alpha[..., None] > 0.02, filled, canvas).astype(np.uint8)
