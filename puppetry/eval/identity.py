"""Face-identity metric for evaluation only (dlib; never needed at run time).

Embeds a face into dlib's 128-d ResNet descriptor space, where the euclidean
distance between two faces of the same person is usually below
``SAME_PERSON`` (0.6, dlib's own threshold on LFW).  Used to check that the
rendered puppet still looks like the source portrait.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

SAME_PERSON = 0.6  # euclidean distance in descriptor space; below = same identity
_SMALL = 640  # px; images whose longer side is below this get one upsampled retry
_HINT = "install the eval extra with `pip install -e .[eval]`"


def _models_dir() -> str:
    # face_recognition_models imports pkg_resources (gone from new setuptools),
    # so locate its data files without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face_recognition_models is missing: {_HINT}")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


class IdentityEncoder:
    """Lazy dlib face detector + 5-point aligner + 128-d ResNet face encoder."""

    def __init__(self) -> None:
        self._detector = self._predictor = self._encoder = None

    def _load(self) -> None:
        if self._encoder is not None:
            return
        try:
            import dlib
        except ImportError as e:
            raise ImportError(f"dlib is missing: {_HINT}") from e
        models = _models_dir()
        paths = [os.path.join(models, n) for n in (
            "shape_predictor_5_face_landmarks.dat",
            "dlib_face_recognition_resnet_model_v1.dat")]
        for p in paths:
            if not os.path.isfile(p):
                raise ImportError(f"dlib model file {p} is missing: {_HINT}")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(paths[0])
        self._encoder = dlib.face_recognition_model_v1(paths[1])

    def embed(self, rgb: np.ndarray, box=None) -> np.ndarray | None:
        """Identity descriptor of the largest (ties: most confident) face.

        rgb: uint8 array, shape (H, W, 3), RGB order.
        box: optional face box (x0, y0, x1, y1) in pixels; skips the detector.
        Returns float64 array of shape (128,) (unit-free, not normalised), or None
        when no face is found.
        """
        self._load()
        rgb = np.ascontiguousarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        if box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            rect = self._dlib.rectangle(x0, y0, x1, y1)
        else:
            faces, scores, _ = self._detector.run(rgb, 0, 0.0)
            if not faces and max(rgb.shape[:2]) < _SMALL:
                faces, scores, _ = self._detector.run(rgb, 1, 0.0)
            if not faces:
                return None
            # Largest face; the detector works in coarse scale steps, so boxes
            # within 25% of the largest area count as tied and the most
            # confident wins (keeps e.g. a badge from beating the real face).
            big = max(r.area() for r in faces)
            _, rect = max(((sc, i), r) for i, (r, sc) in enumerate(zip(faces, scores))
                          if r.area() >= 0.75 * big)
        shape = self._predictor(rgb, rect)
        return np.asarray(self._encoder.compute_face_descriptor(rgb, shape), dtype=np.float64)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        """Euclidean distance between two (128,) descriptors; < SAME_PERSON = same person."""
        return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
