"""Head rotation in image coordinates (x right, y down, z away from the camera).

``rotation_matrix(yaw, pitch, roll)`` = Rz(roll) · Rx(-pitch) · Ry(-yaw), so that (DESIGN.md
§1) yaw + turns the face toward the image's right, pitch + lifts the chin and roll +
turns the head clockwise as seen in the image. ``euler_angles`` inverts it.
"""
from __future__ import annotations

import numpy as np


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Degrees -> float64[3 x 3]."""
    a, b, r = np.radians([-yaw, -pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def euler_angles(rot: np.ndarray) -> tuple[float, float, float]:
    """float[3 x 3] -> (yaw, pitch, roll) in degrees, the inverse of ``rotation_matrix``."""
    b = np.arcsin(np.clip(rot[2, 1], -1, 1))
    a = np.arctan2(-rot[2, 0], rot[2, 2])
    r = np.arctan2(-rot[0, 1], rot[1, 1])
    return float(-np.degrees(a)), float(-np.degrees(b)), float(np.degrees(r))
