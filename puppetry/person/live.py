"""A learned person as the avatar of a live stream (``puppetry serve --person``).

:class:`LivePerson` is a renderer with the warp renderer's call,
``render_frame(DrivingFrame) -> uint8[size x size x 3]``, so ``stream.AvatarStream`` takes
it in place of a portrait's: each call shows the next frame of the person's footage
(forward and back, as ``dub`` plays it) with the lower face re-rendered for the frame's
expression. The footage's own head motion, blinks and gaze stay; the driving frame's
rotation and gaze are not used.

>>> shared = LivePerson(load_person("obama.puppet"), size=256)   # decodes the footage once
>>> live = AvatarStream(None, config, renderer=shared.session())   # one per stream
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .dub import nearest_valid, ping_pong
from .puppet import Person, PersonError


def square_to(size: int, height: int, width: int) -> tuple[float, int, int]:
    """(scale, x0, y0): the centred square of a frame, scaled to ``size`` pixels."""
    side = min(height, width)
    return size / side, (width - side) // 2, (height - side) // 2


class LivePerson:
    """A person's footage at ``size``² and its renderer, shared by the streams that show it.

    frames : uint8[T x size x size x 3], the footage's centred square, scaled
    pose, affine : the footage's per-frame placement (``Footage``), in those pixels
    """

    def __init__(self, person: Person, size: int, *, video=None):
        from ..io import read_video_frames

        data = person.footage
        path = Path(video) if video else person.video()
        if path is None or not path.is_file():
            name = Path(video).name if video else person.meta.get("source", {}).get("name", "?")
            raise PersonError(f"the video this person learned from ({name}) is not here: put it "
                              "beside the .puppet file, or serve where it was learned")
        h, w = (int(v) for v in data["size"])
        k, x0, y0 = square_to(size, h, w)
        n = len(data["valid"])
        self.person, self.size = person, size
        self.frames = np.zeros((n, size, size, 3), np.uint8)
        got = 0
        for i, rgb in zip(range(n), read_video_frames(path)):
            self.frames[i] = cv2.resize(rgb[y0:y0 + min(h, w), x0:x0 + min(h, w)], (size, size),
                                        interpolation=cv2.INTER_AREA)
            got += 1
        if got == 0:
            raise PersonError(f"{path.name} has no frames: serve the person where its video is")
        # placements in the scaled square: image' = k (image - (x0, y0))
        shift = np.array([x0, y0, 0.0], np.float32)
        pose = np.asarray(data["pose"], np.float32)
        self.pose = k * np.concatenate([pose[:, :, :3], pose[:, :, 3:] - shift[:, None]], 2)
        affine = np.asarray(data["affine"], np.float64)
        self.affine = np.concatenate([affine[:, :, :2] / k,
                                      affine[:, :, :2] @ np.array([x0, y0], np.float64)[:, None]
                                      + affine[:, :, 2:]], 2)
        valid = np.asarray(data["valid"], bool).copy()
        valid[got:] = False
        self.order = nearest_valid(valid)[ping_pong(max(2 * (got - 1), 1), got)]

    def session(self) -> "LiveSession":
        """A renderer for one stream (its own place in the footage)."""
        return LiveSession(self)


class LiveSession:
    """``render_frame(DrivingFrame) -> uint8[size x size x 3]``: the next footage frame,
    its lower face saying the frame's expression (after the person's speaking style)."""

    def __init__(self, shared: LivePerson):
        self.shared, self.t = shared, 0

    def render_frame(self, frame) -> np.ndarray:
        s = self.shared
        i = int(s.order[self.t % len(s.order)])
        self.t += 1
        expression = np.asarray(frame.expression, np.float32)
        if s.person.style is not None:
            expression = np.clip(s.person.style.apply(expression[None])[0], 0.0, 1.0)
        return s.person.render_frame(s.frames[i], s.pose[i], s.affine[i], expression)
