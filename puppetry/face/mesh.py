"""The face mesh: MediaPipe's 468-vertex topology, its contours and a head frame.

The mesh has three holes, bounded by ordered contours: the mouth (inner lips) and the two
eyes. ``Left``/``Right`` are the subject's own, as in ARKit names (subject's left = image
right for a frontal photo).

Head frame: origin between the eyes, x toward the subject's left (image right), y up,
z toward the camera; unit = inter-ocular distance (IOD, between the eye centres).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

# Ordered contours (corner to corner). Upper and lower lists share their end points.
LIP_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIP_INNER_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
LIP_OUTER_UPPER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LIP_OUTER_LOWER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
EYE_RIGHT_UPPER = [33, 246, 161, 160, 159, 158, 157, 173, 133]   # subject's right eye
EYE_RIGHT_LOWER = [33, 7, 163, 144, 145, 153, 154, 155, 133]
EYE_LEFT_UPPER = [263, 466, 388, 387, 386, 385, 384, 398, 362]   # subject's left eye
EYE_LEFT_LOWER = [263, 249, 390, 373, 374, 380, 381, 382, 362]
BROW_RIGHT = [70, 63, 105, 66, 107, 46, 53, 52, 65, 55]           # outer ... inner
BROW_LEFT = [300, 293, 334, 296, 336, 276, 283, 282, 295, 285]
IRIS_RIGHT = [468, 469, 470, 471, 472]                             # centre first
IRIS_LEFT = [473, 474, 475, 476, 477]
NOSE_TIP, CHIN, FOREHEAD, NOSE_BRIDGE = 1, 152, 10, 168
LIP_UPPER_MID, LIP_LOWER_MID = 13, 14                              # inner lip midpoints
# Symmetric pairs (subject's right, left) that define the head's x axis.
SYMMETRIC_PAIRS = [(33, 263), (133, 362), (61, 291), (234, 454), (127, 356), (70, 300),
                   (105, 334), (172, 397), (58, 288), (93, 323), (132, 361), (98, 327)]
# Points that move with the skull and not with expressions (pose fitting). No face-oval
# points: on a turned face a tracker puts those on the visible silhouette, not on the
# same skin point.
RIGID_POINTS = [33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 151, 9, 8, 98, 327, 129,
                358, 64, 294, 116, 345, 50, 280, 205, 425, 31, 261, 117, 346]


def closed_loop(upper: list[int], lower: list[int]) -> list[int]:
    """The hole's boundary as one closed loop: upper corner-to-corner, lower back."""
    return upper + lower[-2:0:-1]


@dataclass(frozen=True)
class FaceModel:
    """Topology and the canonical neutral shape (``pipelines/make_face_model.py``).

    triangles : int32[852 x 3], the skin (holes at mouth and eyes)
    canonical : float32[468 x 3], a neutral face in the head frame (IOD = 1)
    mirror    : int32[468], index of each vertex's mirror image
    """

    triangles: np.ndarray
    canonical: np.ndarray
    mirror: np.ndarray


@lru_cache(maxsize=1)
def face_model() -> FaceModel:
    with resources.files("puppetry.assets").joinpath("face_model.npz").open("rb") as f:
        z = np.load(f)
        return FaceModel(z["triangles"].astype(np.int32), z["canonical"].astype(np.float32),
                         z["mirror"].astype(np.int32))


@dataclass(frozen=True)
class HeadFrame:
    """Similarity between the head frame and the image: ``p_img = scale * R @ p_head + origin``.

    rotation : float64[3 x 3], columns = head axes in image coordinates (x right, y down,
               z away from the camera)
    origin   : float64[3], pixels; scale : pixels per IOD
    """

    rotation: np.ndarray
    origin: np.ndarray
    scale: float

    def to_head(self, pts: np.ndarray) -> np.ndarray:
        """float[N x 3] image pixels -> head frame (IOD units)."""
        return (pts - self.origin) @ self.rotation / self.scale

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """float[N x 3] head frame -> image pixels."""
        return pts @ self.rotation.T * self.scale + self.origin


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject's right, left) eye centres from the eye corners, float[3] each."""
    right = (landmarks[33] + landmarks[133]) / 2
    left = (landmarks[263] + landmarks[362]) / 2
    return right, left


def interocular(landmarks: np.ndarray) -> float:
    """Distance between the eye centres, in the landmarks' units (2-D, image plane)."""
    r, l = eye_centres(landmarks)
    return float(np.linalg.norm((l - r)[:2]))


def head_frame(landmarks: np.ndarray) -> HeadFrame:
    """The head frame of one face from its landmarks (float[>=468 x 3], pixels).

    x from the symmetric pairs (right -> left), y from chin to forehead made orthogonal to
    x (pointing up, i.e. toward -y in the image), z = x × y points toward the camera.
    """
    lm = landmarks.astype(np.float64)
    x = sum(lm[l] - lm[r] for r, l in SYMMETRIC_PAIRS)
    x /= np.linalg.norm(x)
    up = lm[FOREHEAD] - lm[CHIN]
    y = up - x * (up @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z], axis=1)
    r, l = eye_centres(lm)
    origin = (r + l) / 2
    scale = float(np.linalg.norm(l - r))
    return HeadFrame(rot, origin, scale)


def rigid_align(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Similarity (R, s, t) minimising ``|s R src + t - dst|`` (Umeyama), float[N x 3] each."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    corr = np.diag([1.0, 1.0, d])
    rot = u @ corr @ vt
    s = float((sig * np.diag(corr)).sum() / (a ** 2).sum())
    return rot, s, mu_d - s * rot @ mu_s
