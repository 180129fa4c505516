"""Driving frames: the one per-frame interface between every driver and the generator.

A single frame is a :class:`DrivingFrame`; a clip is a :class:`Motion`, the same fields
stacked over time so that drivers and renderers work on arrays, not lists of objects.

Conventions (DESIGN.md §1), all relative to the portrait's own pose:

- ``rotation`` (yaw, pitch, roll) in degrees: yaw + turns the face toward the image's
  right, pitch + lifts the chin, roll + turns the head clockwise as seen in the image.
- ``translation`` (tx, ty): in-plane head offset in fractions of the face width,
  +x to the image's right, +y down.
- ``scale``: zoom factor of the head, 1 = as in the portrait.
- ``gaze`` (h, v): eye direction in [-1, 1], +h toward the image's right, +v up.
- ``expression``: ARKit weights in [0, 1], ordered as ``ARKIT_NAMES``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..expression.arkit import N_EXPRESSIONS, to_dict, to_vector

FPS = 25  # default video frame rate, frames/s


@dataclass
class DrivingFrame:
    """One frame of driving signal (see module docstring for units)."""

    expression: np.ndarray = field(default_factory=lambda: np.zeros(N_EXPRESSIONS, np.float32))
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    gaze: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def make(cls, *, yaw=0.0, pitch=0.0, roll=0.0, tx=0.0, ty=0.0, scale=1.0,
             gaze=(0.0, 0.0), expression: dict[str, float] | None = None) -> "DrivingFrame":
        """Build a frame from named fields: ``DrivingFrame.make(yaw=10, expression={"jawOpen": 1})``."""
        return cls(to_vector(expression or {}), (float(yaw), float(pitch), float(roll)),
                   (float(tx), float(ty)), float(scale), (float(gaze[0]), float(gaze[1])))


@dataclass
class Motion:
    """A clip of driving frames at ``fps``.

    expression : float32[T x 52], 0..1
    rotation   : float32[T x 3], degrees (yaw, pitch, roll)
    translation: float32[T x 2], face widths
    scale      : float32[T]
    gaze       : float32[T x 2], -1..1
    """

    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    gaze: np.ndarray
    fps: float = FPS

    def __post_init__(self):
        t = len(self.expression)
        self.expression = np.asarray(self.expression, np.float32).reshape(t, N_EXPRESSIONS)
        self.rotation = np.asarray(self.rotation, np.float32).reshape(t, 3)
        self.translation = np.asarray(self.translation, np.float32).reshape(t, 2)
        self.scale = np.asarray(self.scale, np.float32).reshape(t)
        self.gaze = np.asarray(self.gaze, np.float32).reshape(t, 2)

    @classmethod
    def still(cls, n_frames: int, fps: float = FPS) -> "Motion":
        """``n_frames`` of the portrait's own pose and a neutral face."""
        return cls(np.zeros((n_frames, N_EXPRESSIONS)), np.zeros((n_frames, 3)),
                   np.zeros((n_frames, 2)), np.ones(n_frames), np.zeros((n_frames, 2)), fps)

    @classmethod
    def from_frames(cls, frames: list[DrivingFrame], fps: float = FPS) -> "Motion":
        return cls(np.stack([f.expression for f in frames]), [f.rotation for f in frames],
                   [f.translation for f in frames], [f.scale for f in frames],
                   [f.gaze for f in frames], fps)

    def __len__(self) -> int:
        return len(self.expression)

    @property
    def duration(self) -> float:
        """Seconds."""
        return len(self) / self.fps

    def __getitem__(self, i: int) -> DrivingFrame:
        return DrivingFrame(self.expression[i].copy(), tuple(map(float, self.rotation[i])),
                            tuple(map(float, self.translation[i])), float(self.scale[i]),
                            tuple(map(float, self.gaze[i])))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def expression_dicts(self) -> list[dict[str, float]]:
        """Per-frame ``{ARKit name: weight}``, for export."""
        return [to_dict(e) for e in self.expression]
