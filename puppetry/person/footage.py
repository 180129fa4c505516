"""A person's footage as the neural renderer uses it: tracked, fitted and aligned.

:func:`read_footage` tracks every frame with the project's one tracking loop
(``drive.video.track_clip``: landmarks, frames lost or rejected as blurred or implausible,
the person's neutral face, the speech expression of every kept frame), then places the
lower-face crop (``crop.py``) by the skull points and drops the frames whose mouth crop
is blurred.

:func:`driven_points` is the geometry the renderer is conditioned on: the identity deformed
by any expression (``Identity.basis``) and posed like a given footage frame's skull, so
the same call serves training (a frame's own fitted expression) and dubbing (expressions
from speech, over another frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..expression.arkit import N_EXPRESSIONS, SPEECH_NAMES
from ..face import mesh as M
from ..face.fitting import ExpressionFitter, Identity
from . import crop as C

BLUR_FRACTION = 0.35   # a frame whose mouth crop is less sharp than this x the median is dropped
MAX_CROPS = 4500       # training crops at most (3 min at 25 frames/s), evenly spread over the video
MIN_USABLE = 25        # frames with a usable face needed to learn a person (1 s at 25 frames/s)


class FootageError(ValueError):
    """Footage that cannot be used; the message names the video and the fix."""


@dataclass
class Footage:
    """A tracked video of one person (T frames of H x W pixels at ``fps``).

    valid      : bool[T], face found, kept by the tracking loop and mouth sharp
    lost       : frames where no face was found (count)
    blurred    : frames found but dropped: face or mouth blurred, or a fit the tracking
                 loop rejected as implausible (count)
    pose       : float32[T x 3 x 4], skull pose [s R | t]: image pixel = s R p + t for a
                 head-frame point p (IOD units); NaN where not valid
    affine     : float32[T x 2 x 3], image pixels -> crop pixels; NaN where not valid
    opening    : float32[T], inner-lip opening (IOD); NaN where not valid
    expression : float32[T x 52], speech shapes fitted to ``identity`` (0..1); NaN where not valid
    identity   : the person's neutral face (``drive.video.neutral_identity``)
    landmarks  : float32[T x 478 x 3] pixels, NaN rows where lost (not kept in a ``.puppet``)
    """

    fps: float
    size: tuple[int, int]
    valid: np.ndarray
    lost: int
    blurred: int
    pose: np.ndarray
    affine: np.ndarray
    opening: np.ndarray
    expression: np.ndarray
    identity: Identity
    source: str = ""
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.valid)

    def arrays(self) -> dict:
        """What a ``.puppet`` file keeps of the footage (a few bytes a frame)."""
        return {"fps": float(self.fps), "size": tuple(self.size), "valid": self.valid,
                "lost": int(self.lost), "blurred": int(self.blurred), "pose": self.pose,
                "affine": self.affine, "opening": self.opening, "source": self.source}


def skull_pose(landmarks: np.ndarray, identity: Identity) -> np.ndarray:
    """float32[3 x 4] ``[s R | t]`` mapping the identity's skull points onto ``landmarks``."""
    rot, s, t = M.rigid_align(identity.shape[M.RIGID_POINTS].astype(np.float64),
                              np.asarray(landmarks, np.float64)[M.RIGID_POINTS])
    return np.concatenate([s * rot, t[:, None]], 1).astype(np.float32)


def driven_points(identity: Identity, expression: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The identity with ``expression`` (float[52], 0..1) posed by ``pose`` (float[3 x 4])
    -> float32[468 x 2] image pixels."""
    w = np.asarray(expression, np.float32)
    head = identity.shape + np.tensordot(w, identity.basis, 1)       # (468, 3)
    return (head @ pose[:, :3].T + pose[:, 3])[:, :2].astype(np.float32)


def sharpness(crop_rgb: np.ndarray, config: C.CropConfig) -> float:
    """Variance of the Laplacian of the crop's gray levels inside the region (blur score)."""
    gray = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    hard, _ = C.region_mask(config)
    return float(lap[hard > 0].var())


def speech_prior(fps: float) -> np.ndarray:
    """float64[52] prior spread of the fitted speech shapes (``ExpressionFitter``)."""
    from ..expression.style import MIN_STD, reference_statistics

    _, spread = reference_statistics(fps)
    return np.maximum(spread, MIN_STD)


def track_footage(frames, fps: float, config: C.CropConfig = C.CropConfig(), *,
                  identity: Identity | None = None, source: str = "video",
                  progress=None) -> Footage:
    """Track and fit frames of one person (no mouth-blur check: :func:`read_footage`).

    frames   : an iterable of uint8[H x W x 3] RGB frames (or a video path), at ``fps``
    identity : the person's neutral face the expressions are fitted to (default: found
               from these frames by the tracking loop)
    progress : ``progress(done, total, stage)`` (``drive.video.track_clip``)
    """
    from ..drive.video import TrackingError, track_clip

    # 1. the one tracking loop: landmarks, kept frames, neutral face, speech expressions
    try:
        clip = track_clip(frames, fps=fps, progress=progress, names=SPEECH_NAMES,
                          prior_std=speech_prior(fps), smooth=False)
    except TrackingError as e:
        raise FootageError(f"{source}: {e}") from None
    found = np.isfinite(clip.landmarks[:, :468]).all((1, 2))
    valid = clip.valid.copy()
    if valid.sum() < MIN_USABLE:
        raise FootageError(f"a face was found and kept in only {int(valid.sum())} of {len(valid)} "
                           f"frames of {source}: use a video of at least {MIN_USABLE} frames "
                           "where one face is visible, sharp and roughly frontal")
    # 2. expressions: the loop's own fit, or refitted to the given person's face
    t = len(valid)
    expression = np.full((t, N_EXPRESSIONS), np.nan, np.float32)
    if identity is None:
        identity = clip.identity
        expression[valid] = clip.motion.expression[valid]
    else:
        fitter = ExpressionFitter(identity, SPEECH_NAMES, prior_std=speech_prior(fps))
        for i in np.flatnonzero(valid):
            expression[i] = fitter.fit(clip.landmarks[i]).weights
    # 3. per kept frame: skull pose, crop placement, lip opening
    pose = np.full((t, 3, 4), np.nan, np.float32)
    affine = np.full((t, 2, 3), np.nan, np.float32)
    opening = np.full(t, np.nan, np.float32)
    target = C.template(identity.shape, config)
    for i in np.flatnonzero(valid):
        lm = clip.landmarks[i]
        pose[i] = skull_pose(lm, identity)
        affine[i] = C.similarity(lm[M.RIGID_POINTS, :2], target)
        opening[i] = np.linalg.norm(lm[M.LIP_LOWER_MID, :2] - lm[M.LIP_UPPER_MID, :2]) / M.interocular(lm)
    return Footage(fps, tuple(clip.size), valid, int((~found).sum()), int((found & ~valid).sum()),
                   pose, affine, opening, expression, identity, source, clip.landmarks)


def read_footage(path, config: C.CropConfig = C.CropConfig(), *, identity: Identity | None = None,
                 start_s: float = 0.0, end_s: float | None = None, max_crops: int = MAX_CROPS,
                 progress=None) -> tuple[Footage, np.ndarray, np.ndarray]:
    """Track and fit a video of one person (its frames from ``start_s`` to ``end_s`` seconds).

    Two passes over the file (no frame is kept): tracking, then the lower-face crops of at
    most ``max_crops`` usable frames, evenly spread; frames whose mouth crop is blurred
    are dropped (counted in ``Footage.blurred``).
    Returns (footage, crops uint8[N x size x size x 3], their frame indices int64[N]).
    """
    from ..io import read_video_frames, video_info

    path = Path(path)
    info = video_info(path)
    fps = info["fps"] or 25.0
    first = int(round(start_s * fps))
    last = info["n_frames"] if end_s is None else min(info["n_frames"], int(round(end_s * fps)))
    report = progress or (lambda done, total, stage: None)

    def frames():
        for i, rgb in enumerate(read_video_frames(path)):
            if i >= last:
                break
            if i >= first:
                yield rgb

    def tracking(done, _, stage):          # the loop's stages, with the frame count it lacks
        if stage != "done":
            report(done, max(last - first, done), stage)

    # 1.-2. track and fit (identity, poses, expressions, crop placement)
    footage = track_footage(frames(), fps, config, identity=identity, source=str(path),
                            progress=tracking)
    # 3. crops of the kept frames; those with a blurred mouth are dropped
    n = config.size
    found = np.flatnonzero(footage.valid)
    keep = found[np.unique(np.linspace(0, len(found) - 1, min(max_crops, len(found))).round().astype(int))]
    crops = np.zeros((len(keep), n, n, 3), np.uint8)
    slot = {int(f): k for k, f in enumerate(keep)}
    if not slot:
        return footage, crops, keep
    for i, rgb in enumerate(frames()):
        if i in slot:
            crops[slot[i]] = C.crop(rgb, footage.affine[i].astype(np.float64), n)
    score = np.array([sharpness(c, config) for c in crops])
    sharp = score >= BLUR_FRACTION * np.median(score)
    footage.blurred += int((~sharp).sum())
    footage.valid[keep[~sharp]] = False
    return footage, crops[sharp], keep[sharp]
