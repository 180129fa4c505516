"""A portrait made ready to animate: canvas, landmarks, face model, masks, background.

``load_portrait`` does all per-portrait work once (tracking, segmentation, background
fill, blendshape fitting) so that rendering a frame is only warping.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .expression.arkit import INDEX, N_EXPRESSIONS
from .face.blendshapes import blendshape_basis, close_lips, jaw_open
from .face.mesh import LIP_INNER_LOWER, LIP_INNER_UPPER, HeadFrame, head_frame, interocular
from .face.tracker import (MIN_FACE_PX, Face, FaceNotFoundError, detect_face, detect_upright_face,
                           segment_person)
from .io import load_image

WORK_PX = 1280        # long side at which a large photo is searched for its face
CROP_FACE_WIDTHS = 2.7  # crop side = this many face widths (head, hair, neck, some shoulder)
CROP_LIFT = 0.12      # crop centre above the face box centre, in face heights
# The photo's own expression (DESIGN.md §3): fitted against the canonical neutral face,
# so that all-zero weights mean a closed, neutral mouth on every photo.
OWN_NAMES = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthUpperUpLeft", "mouthUpperUpRight",
             "mouthLowerDownLeft", "mouthLowerDownRight", "mouthFunnel", "mouthStretchLeft",
             "mouthStretchRight")     # fitted (the others stay 0); a smile is kept as the photo's style
UNDONE = ("jawOpen",)   # taken out of the neutral shape; the lips' remaining gap is closed after
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
    source_box: (x0, y0, x1, y1) of the photo shown on the canvas, photo pixels (inside
                the photo: nothing on the canvas is invented beyond it)
    expression: float32[52], the photo's own expression as fitted (0..1); ``shape`` is the
                face with ``jawOpen`` undone and the lips closed, so all-zero weights
                render a closed mouth whatever the photo shows
    """

    image: np.ndarray
    landmarks: np.ndarray
    frame: HeadFrame
    shape: np.ndarray
    basis: np.ndarray
    alpha: np.ndarray
    background: np.ndarray
    name: str = "portrait"
    source_box: tuple[float, float, float, float] | None = None
    expression: np.ndarray | None = None

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

    # 1. find the face at a working resolution, in photo coordinates; a photo whose face
    #    lies on its side or upside down is turned upright first
    if min(rgb.shape[:2]) < MIN_FACE_PX:
        raise FaceNotFoundError(f"{name} is only {rgb.shape[1]} x {rgb.shape[0]} px: no face "
                                f"{MIN_FACE_PX} px wide fits in it; use a larger photo")
    k = min(1.0, WORK_PX / max(rgb.shape[:2]))
    work = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else rgb
    turns, face = detect_upright_face(work, name)
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
        turn = ("90° counter-clockwise", "180°", "90° clockwise")[turns - 1]
        warnings.warn(f"the face in {name} was {'upside down' if turns == 2 else 'on its side'}: "
                      f"the photo is turned {turn} so that it is upright")
    box = np.array(face.box) / k

    # 2. the canvas: a head crop or the whole photo, at the requested size
    if frame == "crop":
        canvas, source_box = _crop(rgb, box, size)
    else:
        canvas, source_box = _resize_long(rgb, size), (0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0]))

    # 3. track again on the canvas (where frames are rendered and re-tracked)
    try:
        face = detect_face(canvas, name)
    except FaceNotFoundError as err:
        raise FaceNotFoundError(f"{err} (after resizing to {size} px: try a larger size)") from None
    return prepare(canvas, face, name, source_box)


def prepare(canvas: np.ndarray, face: Face, name: str = "portrait",
            source_box: tuple[float, float, float, float] | None = None) -> Portrait:
    """A Portrait from a canvas image and its tracked face."""
    lm = face.landmarks.astype(np.float32)
    hf = head_frame(lm)
    shape, expression = neutral_shape(hf.to_head(lm[:468].astype(np.float64)))
    alpha = _person_alpha(canvas, lm)
    return Portrait(canvas, lm, hf, shape, blendshape_basis(shape, hf.rotation), alpha,
                    _background(canvas, alpha), name, source_box, expression)


def neutral_shape(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo's face without its mouth opening, and the photo's own expression.

    shape : float[468 x 3], the tracked face in its head frame (IOD)
    returns (float32[468 x 3] the face with ``UNDONE`` weights taken out and the lips
    closed (``close_lips``), float32[52] the fitted expression of the photo)

    The expression is fitted (``ExpressionFitter``) against the canonical neutral face, on
    ``OWN_NAMES`` only: identity differences go into the shapes that are not undone.
    """
    from .face.fitting import ExpressionFitter, Identity
    from .face.mesh import face_model

    expression = np.zeros(N_EXPRESSIONS, np.float32)
    fitter = ExpressionFitter(Identity.from_shape(face_model().canonical), OWN_NAMES)
    _, expression[:] = fitter(np.asarray(shape, np.float64) * [1, -1, -1])   # head axes -> image axes
    # The jaw opening undone is at most what parts the photo's lips: a long chin on closed
    # lips fits as some jawOpen against the canonical face, but it is identity, not an
    # open mouth (undoing it would push the lower lip into the upper one).
    s = np.asarray(shape, np.float64)
    jaw = INDEX["jawOpen"]
    expression[jaw] = min(expression[jaw], _jaw_parting_lips(s))
    # (the jaw is undone from the lower face only: the upper lip stays where the photo
    # shows it, and only follows the corners when the jaw is driven)
    for _ in range(2):   # the field depends on the shape it acts on: settle it
        s = shape - expression[jaw] * jaw_open(s, upper_lip_follows=False)
    return close_lips(s).astype(np.float32), expression


def _jaw_parting_lips(shape: np.ndarray) -> float:
    """The jawOpen weight that parts a face's lips as far as ``shape`` (float[468 x 3],
    head frame, IOD) shows them parted: the mean inner-lip gap over the gap that jawOpen
    = 1 adds to it. 0 for closed lips."""
    iu, il = list(LIP_INNER_UPPER), list(LIP_INNER_LOWER)
    gap = np.clip(shape[iu, 1] - shape[il, 1], 0.0, None).mean()       # y up: upper above
    field = jaw_open(shape, upper_lip_follows=False)
    per_unit = (field[iu, 1] - field[il, 1]).mean()
    return float(gap / per_unit) if per_unit > 1e-9 else 0.0


def _crop(rgb: np.ndarray, box: np.ndarray, size: int):
    """The head crop: a square ``CROP_FACE_WIDTHS`` face widths wide, shifted to stay
    inside the photo; where the photo is smaller than that, as much of the photo as there
    is on that side (the canvas is then not square: long side ``size``, short side even).
    Returns (uint8[h x w x 3], (x0, y0, x1, y1) the region of the photo, pixels)."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    side = CROP_FACE_WIDTHS * max(fw, 0.8 * fh)
    h, w = rgb.shape[:2]
    cw, ch = min(side, w), min(side, h)
    cx = float(np.clip((x0 + x1) / 2, cw / 2, w - cw / 2))
    cy = float(np.clip((y0 + y1) / 2 - CROP_LIFT * fh, ch / 2, h - ch / 2))
    if cw == ch:
        out_w = out_h = size
    elif cw > ch:
        out_w, out_h = size, max(2, round(size * ch / cw / 2) * 2)
    else:
        out_w, out_h = max(2, round(size * cw / ch / 2) * 2), size
    sx, sy = out_w / cw, out_h / ch
    left, top = cx - cw / 2, cy - ch / 2
    # pixel centres: canvas (i + 0.5) / s = photo (x + 0.5) - left
    m = np.array([[sx, 0, sx * (0.5 - left) - 0.5], [0, sy, sy * (0.5 - top) - 0.5]], np.float64)
    if max(sx, sy) < 1:   # shrink without aliasing: resize first, then place
        small = cv2.resize(rgb, None, fx=sx, fy=sy, interpolation=cv2.INTER_AREA)
        m = np.array([[1, 0, -sx * left], [0, 1, -sy * top]], np.float64)
        canvas = cv2.warpAffine(small, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    else:
        canvas = cv2.warpAffine(rgb, m, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return canvas, (left, top, left + cw, top + ch)


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
