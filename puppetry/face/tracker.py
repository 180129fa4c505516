"""Face tracking with MediaPipe Face Mesh (legacy solution) and selfie segmentation.

Landmarks are returned in pixels: ``float32[478 x 3]`` with (x, y) image coordinates and
z the relative depth in the same pixel units (smaller z = nearer the camera). The first
468 points are the mesh vertices, the last 10 the two irises (centre first).
"""
from __future__ import annotations

import sys
import threading
import types
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

N_LANDMARKS = 478       # 468 mesh vertices + 2 x 5 iris points
N_VERTICES = 468
MIN_FACE_PX = 80        # faces narrower than this (pixels) are refused
MAX_FACES = 4           # faces looked for; the largest is used
UPRIGHT_CROP = 1.6      # side of the square scored for uprightness, in face-box sides
UPRIGHT_MARGIN = 0.05   # detector score by which a turned face must beat the photo as it is
UPRIGHT_SURE = 0.8      # a face scored this upright ends the search (upright faces: 0.87-0.95)


class FaceNotFoundError(ValueError):
    """No usable face in an image."""


@dataclass
class Face:
    landmarks: np.ndarray   # float32[478 x 3], pixels
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the landmarks, pixels

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


def _import_solutions():
    """MediaPipe's legacy solutions, imported on first use.

    MediaPipe's package imports a landmark-plotting helper that loads matplotlib.pyplot
    (~0.3 s of a ~0.5 s import), which puppetry never calls: unless matplotlib is already
    loaded, placeholders stand in for it while MediaPipe imports, and are removed after
    (a later ``import matplotlib`` loads the real one).
    """
    if "mediapipe.python.solutions" in sys.modules:
        return sys.modules["mediapipe.python.solutions"]
    stubs = {}
    if "matplotlib" not in sys.modules:
        stubs = {"matplotlib": types.ModuleType("matplotlib"),
                 "matplotlib.pyplot": types.ModuleType("matplotlib.pyplot")}
        stubs["matplotlib"].__path__ = []                     # a package, with nothing in it
        stubs["matplotlib"].pyplot = stubs["matplotlib.pyplot"]
        sys.modules.update(stubs)
    try:
        import mediapipe.python.solutions as solutions
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]
    return solutions


class FaceTracker:
    """MediaPipe Face Mesh with iris refinement.

    ``static=True`` treats each image independently (portraits, re-tracking rendered
    frames); ``static=False`` tracks a video, faster and steadier from frame to frame.
    Not thread-safe: one tracker per thread.
    """

    def __init__(self, static: bool = True, max_faces: int = MAX_FACES, min_confidence: float = 0.5):
        solutions = _import_solutions()
        self._mesh = solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True,
            min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence)

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """All faces in ``rgb`` (uint8 HxWx3), largest first."""
        h, w = rgb.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(rgb))
        faces = []
        for lm in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lm.landmark], np.float32)
            x0, y0 = pts[:, :2].min(0)
            x1, y1 = pts[:, :2].max(0)
            faces.append(Face(pts, (float(x0), float(y0), float(x1), float(y1))))
        return sorted(faces, key=lambda f: -f.width)

    def track(self, rgb: np.ndarray) -> Face | None:
        """The largest face, or None."""
        faces = self.faces(rgb)
        return faces[0] if faces else None

    def close(self):
        self._mesh.close()


def find_face_boxes(rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Face boxes (x0, y0, x1, y1), pixels, largest first, from MediaPipe's full-range
    face detector: it finds faces that are small in a large photo, which Face Mesh's own
    short-range detector misses."""
    if not hasattr(_local, "detector"):
        _local.detector = _import_solutions().face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=0.5)
    h, w = rgb.shape[:2]
    boxes = []
    for det in _local.detector.process(np.ascontiguousarray(rgb)).detections or []:
        b = det.location_data.relative_bounding_box
        boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
    return sorted(boxes, key=lambda b: -(b[2] - b[0]))


def _faces_anywhere(rgb: np.ndarray, tracker: FaceTracker) -> list[Face]:
    """Face Mesh on the whole image, or else on crops around full-range detections."""
    faces = tracker.faces(rgb)
    if faces:
        return faces
    h, w = rgb.shape[:2]
    for x0, y0, x1, y1 in find_face_boxes(rgb):
        side = 2.5 * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ox, oy = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        crop = rgb[oy:int(min(h, cy + side / 2)), ox:int(min(w, cx + side / 2))]
        for face in tracker.faces(crop):
            face.landmarks[:, :2] += (ox, oy)
            bx0, by0, bx1, by1 = face.box
            faces.append(Face(face.landmarks, (bx0 + ox, by0 + oy, bx1 + ox, by1 + oy)))
    return sorted(faces, key=lambda f: -f.width)


def detect_face(rgb: np.ndarray, name: str = "image", tracker: FaceTracker | None = None) -> Face:
    """The one face a portrait is about, with errors that name the input and the fix.

    Several faces -> the largest, with a warning. None, or under ``MIN_FACE_PX`` wide ->
    :class:`FaceNotFoundError`.
    """
    tracker = tracker or _shared_tracker()
    faces = _faces_anywhere(rgb, tracker)
    if not faces:
        raise FaceNotFoundError(
            f"no face found in {name}: use a photo where one face is clearly visible, "
            f"roughly frontal and at least {MIN_FACE_PX * 2} px wide")
    if len(faces) > 1:
        warnings.warn(f"{len(faces)} faces found in {name}; using the largest "
                      f"({faces[0].width:.0f} px wide). Crop the photo to choose another.")
    face = faces[0]
    if face.width < MIN_FACE_PX:
        raise FaceNotFoundError(
            f"the face in {name} is only {face.width:.0f} px wide: use a photo where the face "
            f"is at least {MIN_FACE_PX} px wide (ideally 200 px or more), or crop closer")
    return face


def detect_upright_face(rgb: np.ndarray, name: str = "image",
                        tracker: FaceTracker | None = None) -> tuple[int, Face]:
    """The face a portrait is about, and the quarter turns that make it upright.

    rgb     : uint8[H x W x 3] RGB
    returns (k, face): ``np.rot90(rgb, k)`` (k in 0..3, counter-clockwise) shows the face
            upright, and ``face`` is tracked on that turned image (its pixels)

    Face Mesh fits an upright face wherever it finds one: a photo on its side gives a mesh
    rolled by 90 degrees, an upside-down one a mesh that looks upright but is not (or one
    fitted to the clothes). So the surroundings of every face found are scored in all four
    turns by MediaPipe's face detector, which scores upright faces highest. Unless one
    scores ``UPRIGHT_SURE``, the photo is searched turned too (a face may be found only
    then). The best-scoring turn is taken if it beats the best reading with no turn by
    ``UPRIGHT_MARGIN``. Errors and warnings are those of :func:`detect_face` on the turned
    photo.
    """
    tracker = tracker or _shared_tracker()
    found: list[tuple[float, int]] = []     # (detector score, quarter turns from rgb)
    for turned in (0, 1, 3, 2):
        shown = np.ascontiguousarray(np.rot90(rgb, turned))
        for face in _faces_anywhere(shown, tracker):
            scores = _turn_scores(shown, face.box)
            found += [(score, (turned + k) % 4) for k, score in enumerate(scores)]
        if found and max(found)[0] >= UPRIGHT_SURE:
            break
    turns = 0
    if found:
        score, k = max(found)
        if score > max((s for s, t in found if t == 0), default=0.0) + UPRIGHT_MARGIN:
            turns = k
    return turns, detect_face(np.ascontiguousarray(np.rot90(rgb, turns)), name, tracker)


def _turn_scores(rgb: np.ndarray, box: tuple[float, float, float, float]) -> list[float]:
    """The short-range face detector's best score (0 if none) on a square around ``box``
    (``UPRIGHT_CROP`` box sides) turned by 0..3 quarter turns (``np.rot90``'s k)."""
    x0, y0, x1, y1 = box
    side = max(8, int(UPRIGHT_CROP * max(x1 - x0, y1 - y0)))
    to_crop = np.array([[1, 0, side / 2 - (x0 + x1) / 2], [0, 1, side / 2 - (y0 + y1) / 2]])
    crop = cv2.warpAffine(np.ascontiguousarray(rgb), to_crop, (side, side), borderMode=cv2.BORDER_CONSTANT)
    if not hasattr(_local, "near_detector"):
        _local.near_detector = _import_solutions().face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.2)
    scores = []
    for k in range(4):
        found = _local.near_detector.process(np.ascontiguousarray(np.rot90(crop, k))).detections or []
        scores.append(max((d.score[0] for d in found), default=0.0))
    return scores


_local = threading.local()


def _shared_tracker() -> FaceTracker:
    if not hasattr(_local, "tracker"):
        _local.tracker = FaceTracker(static=True)
    return _local.tracker


def segment_person(rgb: np.ndarray) -> np.ndarray:
    """Head-and-body probability: float32[H x W] in [0, 1] (1 = person)."""
    if not hasattr(_local, "segmenter"):
        _local.segmenter = _import_solutions().selfie_segmentation.SelfieSegmentation(model_selection=0)
    mask = _local.segmenter.process(np.ascontiguousarray(rgb)).segmentation_mask
    return np.clip(mask, 0.0, 1.0).astype(np.float32)
