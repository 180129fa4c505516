"""Measurements on re-tracked faces: the same tracker reads our output as it reads a photo.

All take landmarks float[478 x 3] in pixels (``FaceTracker`` output).
"""
from __future__ import annotations

import numpy as np

from ..face import mesh as M
from ..face.pose import euler_angles

# Eye aspect ratio points (Soukupová & Čech): corner, two upper, corner, two lower.
EAR_RIGHT = [33, 160, 158, 133, 153, 144]
EAR_LEFT = [362, 385, 387, 263, 373, 380]


def lip_opening(lm: np.ndarray) -> float:
    """Inner-lip opening at the middle of the mouth, in inter-ocular distances."""
    gap = np.linalg.norm(lm[M.LIP_LOWER_MID, :2] - lm[M.LIP_UPPER_MID, :2])
    return float(gap / M.interocular(lm))


LIP_GAP_PAIRS = [(13, 14), (82, 87), (312, 317), (81, 178), (311, 402)]   # inner lips, upper-lower
EYE_CORNERS = (33, 263)                                                   # outer eye corners


def lip_gap(lm: np.ndarray) -> float:
    """Mean of five inner-lip gaps across the middle of the mouth, over the outer
    eye-corner distance (under ~0.06: lips closed)."""
    up, lo = zip(*LIP_GAP_PAIRS)
    gaps = np.linalg.norm(lm[list(lo), :2] - lm[list(up), :2], axis=1)
    return float(gaps.mean() / np.linalg.norm(lm[EYE_CORNERS[1], :2] - lm[EYE_CORNERS[0], :2]))


def lip_offsets(tracked: np.ndarray, geometry: np.ndarray) -> tuple[float, float, float]:
    """How far re-tracked lips lie from the geometry that drove them.

    tracked, geometry : float[>=468 x 2+] image points (re-tracked landmarks, and the
    renderer's posed vertices). Returns (upper, lower, width): the mean vertical offset of
    the inner upper and lower lip's middle points, in the geometry's IOD, and the mouth
    width (61-291) tracked over the geometry's.
    """
    iod = M.interocular(geometry)
    upper, lower = (float((tracked[line, 1] - geometry[line, 1]).mean() / iod)
                    for line in (M.LIP_INNER_UPPER[1:-1], M.LIP_INNER_LOWER[1:-1]))
    width = lambda pts: np.linalg.norm(pts[61, :2] - pts[291, :2])
    return upper, lower, float(width(tracked) / width(geometry))


def eye_aspect_ratio(lm: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes (about 0.25-0.35 open, under 0.1 closed)."""
    def ear(idx):
        p = lm[idx, :2]
        return (np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * np.linalg.norm(p[0] - p[3]))
    return float((ear(EAR_RIGHT) + ear(EAR_LEFT)) / 2)


def relative_pose(lm: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of face ``lm`` relative to ``reference`` (both
    float[478 x 3]): the similarity that best maps the reference's rigid points onto
    this face's, decomposed as in ``face.pose``."""
    rot, _, _ = M.rigid_align(reference[M.RIGID_POINTS].astype(np.float64),
                              lm[M.RIGID_POINTS].astype(np.float64))
    return euler_angles(rot)


def fitted_pose(lm: np.ndarray, reference: np.ndarray, points=M.RIGID_POINTS) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of ``lm`` relative to ``reference`` from the 2-D
    landmarks alone: the reference's 3-D points (float[478 x 3]) rotated, scaled and
    shifted to match ``lm``'s image positions (weak perspective, least squares). Unlike
    :func:`relative_pose` it does not trust the tracker's depth, which regresses toward
    a frontal face."""
    from scipy.optimize import least_squares
    from ..face.pose import rotation_matrix
    ref = reference[points].astype(np.float64)
    ref = ref - ref.mean(0)
    target = lm[points, :2].astype(np.float64)

    def residual(q):
        proj = (ref @ rotation_matrix(*q[:3]).T)[:, :2] * q[3] + q[4:6]
        return (proj - target).ravel()

    q0 = np.r_[relative_pose(lm, reference), 1.0, target.mean(0)]
    return tuple(float(a) for a in least_squares(residual, q0).x[:3])
