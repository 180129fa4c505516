"""The driving-video adapter: a face in a video (or a webcam) -> driving frames.

Offline, :func:`track_clip` reads a whole clip::

    >>> clip = track_clip("driver.mp4")
    >>> clip.motion            # a Motion at the video's fps, ready for puppetry.render
    >>> clip.valid.mean()      # share of frames where the face was found and kept

Live, :class:`FaceDriver` turns one camera frame at a time into a :class:`DrivingFrame`.

The tracking loop (one, shared by ``track_clip``, ``FaceDriver`` and the person-style fit):

1. Track every frame (MediaPipe Face Mesh in video mode, one face: its detector runs only
   to find the face again once lost): 478 landmarks in pixels.
2. Reject frames where no face was found, the face is blurred (Laplacian variance of the
   face box under ``BLUR_SHARE`` of the clip's median) or the fit below is implausible
   (residual over ``MAX_RESIDUAL_IOD``, or the head turning more than ``MAX_TURN_DEG``
   from one kept frame to the next).
3. Identity: the tracked person's neutral face (:func:`neutral_identity`: the median of
   the frames with the lips closest together, in the head frame), so the weights of every
   frame are measured from that person's own face shape, never from the first frame's
   expression.
4. Fit every kept frame (``face.fitting.ExpressionFitter``, all ARKit names that move the
   mesh): rigid pose, scale, translation and bounded weights; each frame starts from the
   one before (at most ``VIDEO_ITERATIONS`` Gauss-Newton steps).
5. Channels, relative to the first kept frame (X2Face's relative motion): rotation
   ``R_t R_0ᵀ`` as (yaw, pitch, roll); translation the shift of the renderer's pivot
   (``RenderConfig.pivot``) in face widths of the first frame; scale ``s_t / s_0``; gaze
   the irises' offset from the eye centres in the head frame (over ``GAZE_IOD``, the
   renderer's iris shift at full gaze), relative to the first frame, held through blinks.
   The 52 weights stay absolute (from the neutral face).
6. Lost frames are bridged (linear between the kept frames around them, held at the
   ends) and every channel is smoothed by a one-euro filter (Casiez et al. 2012: a low
   cut-off while a channel is still, no jitter; a cut-off rising with its speed, no smear
   on a fast blink), run forward and backward and averaged, so offline curves have no lag.
   The jaw and mouth weights get a lighter zero-phase [1, 2, 1] / 4 filter instead
   (:func:`smooth_speech`): syllables come faster than the one-euro filter lets through.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..expression.arkit import INDEX, N_EXPRESSIONS
from ..face import mesh as M
from ..face.blendshapes import GAZE_IOD
from ..face.fitting import STEP_TOL, ExpressionFitter, Fit, Identity
from ..face.pose import euler_angles
from ..render.config import RenderConfig
from .frames import DrivingFrame, Motion

NEUTRAL_SHARE = 0.1       # fraction of kept frames (smallest lip opening) that make the identity
VIDEO_ITERATIONS = 1      # Gauss-Newton steps per frame when starting from the frame before
                          # (on Obama 0-6 s one step against two: weights within 4e-4 on
                          # average, 0.03 at most, angles within 0.16°; 3.3 ms a frame, not 5)
LIVE_ITERATIONS = 1       # ... for live driving
TRACK_FACES = 1           # faces MediaPipe tracks in a video: with one, its detector runs
                          # only when the face is lost (with 4 it ran on every frame looking
                          # for more: 14.5 ms CPU a 450² frame against 9.2)
BLUR_SHARE = 0.3          # a face box sharper than this share of the clip's median is kept
BLUR_WIDTH_PX = 128       # face boxes are compared for sharpness at this width
MAX_RESIDUAL_IOD = 0.08   # RMS distance of the landmarks from the fitted model, beyond: rejected
MAX_TURN_DEG = 25.0       # rotation between consecutive kept frames, beyond: rejected
BLINK_HOLD = 0.5          # gaze is not read while an eyeBlink weight exceeds this
REFERENCE_SECONDS = 1.0   # live driving: the rest pose is the mean of the faces seen this long
MIN_VALID = 2             # a clip needs a face in at least this many frames
SPAN_MIN = 50             # frames a worker tracks at least (track_clip's workers)
SPAN_WARMUP = 4           # frames tracked before a span and dropped: MediaPipe's first frames
                          # of a face differ from the tracked ones (1.2 px, then 0.4, then
                          # under 0.1 on average: Obama, the frames after a cut at 5 s)
OTHER_MOUTH_STD = 0.05    # prior spread of the mouth, cheek and nose shapes speech does not use
LIP_PARTING_STD = 0.15    # prior spread of mouthUpperUp/LowerDown at least (driving_prior)

# Channels, as motion files name them: 6 pose codes, 2 gaze, 52 weights (60 in all).
N_CHANNELS = 8 + N_EXPRESSIONS
ROTATION, TRANSLATION, SCALE, GAZE = slice(0, 3), slice(3, 5), 5, slice(6, 8)
EXPRESSION = slice(8, 8 + N_EXPRESSIONS)
SPEECH = np.array([8 + INDEX[n] for n in INDEX if n.startswith(("jaw", "mouth"))])  # jaw, mouth
# One-euro filter, per channel in units of that channel's tracking noise on a still face
# (measured on rendered frames: ~0.1-0.25°, 0.001-0.003 face widths, 0.004 scale, 0.02 gaze,
# up to 0.05 weight): 0.3° for rotation, 0.003 for translation, 0.005 for scale, 0.03 for
# gaze and weights. On white noise of one unit the offline smoother keeps a quarter of the
# frame-to-frame jitter; a three-frame blink keeps 90 % of its peak, in place.
NOISE_UNITS = np.r_[np.full(3, 0.3), np.full(2, 0.003), 0.005, np.full(2, 0.03),
                    np.full(N_EXPRESSIONS, 0.03)]
CSV_POSE = ("yaw", "pitch", "roll", "tx", "ty", "scale", "gaze_h", "gaze_v")  # TrackedClip.to_csv
MIN_CUTOFF_HZ = 1.0       # cut-off of a still channel
BETA = 0.2                # cut-off rise per noise unit/s of speed
D_CUTOFF_HZ = 1.0         # cut-off of the speed estimate


class TrackingError(ValueError):
    """A driving video or frame that cannot be tracked; the message names the fix."""


@dataclass
class TrackedClip:
    """A driving video as the face model sees it.

    fps       : frames/s of the video
    size      : (H, W) of the frames, pixels
    landmarks : float32[T x 478 x 3], pixels; NaN rows where the face was lost
    valid     : bool[T], face found (and not rejected as blurred/implausible)
    motion    : Motion (T frames at ``fps``): rotation, translation and scale relative to
                the first valid frame, gaze, the 52 ARKit weights from the person's
                neutral face; lost frames bridged, smoothed (module doc, 5-6)
    identity  : the tracked person's neutral face (``face.fitting.Identity``)
    angles    : float32[T x 3], absolute head pose (yaw, pitch, roll) in degrees from
                facing the camera upright, NaN where not valid (not smoothed)
    source    : where the frames came from, for messages
    """

    fps: float
    size: tuple[int, int]
    landmarks: np.ndarray
    valid: np.ndarray
    motion: Motion
    identity: Identity
    angles: np.ndarray | None = None
    source: str = "video"

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def first_valid(self) -> int:
        """Index of the first valid frame (the motion's reference)."""
        return int(np.argmax(self.valid))

    @property
    def lost(self) -> list[int]:
        """Frame numbers where the face was lost (or rejected) and bridged."""
        return [int(i) for i in np.flatnonzero(~self.valid)]

    def to_json(self) -> dict:
        """The motion file ``render --motion`` reads (``drive.motion``), with ``"lost"``:
        the bridged frames, which the reader passes over."""
        from .motion import motion_to_json
        return {**motion_to_json(self.motion), "lost": self.lost}

    def to_csv(self) -> str:
        """One row per frame: ``frame, time`` (s), ``lost`` (1 where bridged), ``yaw, pitch,
        roll`` (degrees, relative to the first valid frame), ``tx, ty`` (face widths),
        ``scale``, ``gaze_h, gaze_v``, then the 52 ARKit weights by name (0..1)."""
        import csv
        import io
        from ..expression.arkit import ARKIT_NAMES
        m, buf = self.motion, io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["frame", "time", "lost", *CSV_POSE, *ARKIT_NAMES])
        num = lambda x: format(round(float(x), 6) + 0.0, ".6g")     # + 0.0: no "-0"
        for i in range(len(m)):
            values = [*m.rotation[i], *m.translation[i], m.scale[i], *m.gaze[i], *m.expression[i]]
            out.writerow([i, num(i / m.fps), int(not self.valid[i]), *map(num, values)])
        return buf.getvalue()


# ---------------------------------------------------------------------------------------
# Smoothing


class OneEuroFilter:
    """The one-euro filter (Casiez, Roussel & Vogel, CHI 2012) over C channels at once.

    ``units`` (float[C]) is each channel's noise scale: speeds are measured in units/s.
    Call with each sample x float[C] and its time t (s), in order -> the filtered sample.
    """

    def __init__(self, units: np.ndarray = NOISE_UNITS, min_cutoff: float = MIN_CUTOFF_HZ,
                 beta: float = BETA, d_cutoff: float = D_CUTOFF_HZ):
        self.units = np.asarray(units, np.float64)
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64) / self.units
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x, np.zeros_like(x), t
            return x * self.units
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x * self.units


def smooth_channels(values: np.ndarray, fps: float, **filter_args) -> np.ndarray:
    """Lag-free smoothing of whole curves: the one-euro filter run forward and backward
    in time, averaged (the lags cancel). values float[T x C] -> float32[T x C].
    ``filter_args`` go to :class:`OneEuroFilter` (``units`` default ``NOISE_UNITS``)."""
    values = np.asarray(values, np.float64)
    out = np.empty_like(values)
    for direction in (1, -1):
        f = OneEuroFilter(**filter_args)
        seq = values[::direction]
        run = np.stack([f(x, i / fps) for i, x in enumerate(seq)])
        out = run[::direction] if direction == 1 else (out + run[::direction]) / 2
    return out.astype(np.float32)


def smooth_speech(values: np.ndarray) -> np.ndarray:
    """Zero-phase [1, 2, 1] / 4 smoothing of the jaw and mouth weights float[T x C] (ends
    held) -> float32[T x C]. Speech moves the lips several times a second: the one-euro
    filter, whose cut-off starts at ``MIN_CUTOFF_HZ``, smeared syllables (re-tracked lip r
    0.84 on the tuning clip, 0.90 unsmoothed); this keeps them and halves white jitter."""
    values = np.asarray(values, np.float64)
    padded = np.concatenate([values[:1], values, values[-1:]])
    return (0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]).astype(np.float32)


def bridge(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the rows of values float[T x C] where ``known`` (bool[T]) is False: linear
    between the known rows around them, held before the first and after the last."""
    values = np.array(values, np.float64)
    idx = np.flatnonzero(known)
    if len(idx) == 0:
        raise TrackingError("no frame to bridge from: no face was tracked")
    missing = np.flatnonzero(~known)
    for c in range(values.shape[1]):
        values[missing, c] = np.interp(missing, idx, values[idx, c])
    return values


# ---------------------------------------------------------------------------------------
# The face model of one frame


def lip_opening(lm: np.ndarray) -> float:
    """Inner-lip gap over the inter-ocular distance (landmarks float[>=468 x 3])."""
    gap = np.linalg.norm(lm[M.LIP_LOWER_MID, :2] - lm[M.LIP_UPPER_MID, :2])
    return float(gap / max(M.interocular(lm), 1e-9))


def neutral_identity(landmarks: list[np.ndarray]) -> Identity:
    """The neutral face of tracked frames (float[478 x 3] pixels each): the median of the
    ``NEUTRAL_SHARE`` of frames with the smallest lip opening, in the head frame."""
    opening = np.array([lip_opening(lm) for lm in landmarks])
    count = max(1, int(round(NEUTRAL_SHARE * len(landmarks))))
    picked = np.argsort(opening, kind="stable")[:count]
    shapes = []
    for i in picked:
        lm = np.asarray(landmarks[i], np.float64)[:468]
        shape = M.head_frame(lm).to_head(lm)
        if shapes:  # align to the first on the skull points: head frames jitter a little
            rot, s, t = M.rigid_align(shape[M.RIGID_POINTS], shapes[0][M.RIGID_POINTS])
            shape = s * shape @ rot.T + t
        shapes.append(shape)
    return Identity.from_shape(np.median(np.stack(shapes), axis=0))


def driving_prior(fps: float = 25.0) -> np.ndarray:
    """The default prior spread of each weight, float64[52] (``ExpressionFitter``'s
    ``prior_std``): the speech shapes as spread as in the shared space's reference speech
    (``style.reference_statistics``; the opening of the lips goes to the jaw unless they
    clearly move on their own), but the lips' own parting (mouthUpperUp, mouthLowerDown)
    at least ``LIP_PARTING_STD``: real speakers open their lips more than their jaw, which
    the reference speech hardly shows (re-tracked lip r of Obama's self-reenactment 0.88
    -> 0.92 on seconds 10-16, 0.71 -> 0.90 on 0-6); the other mouth, cheek
    and nose shapes ``OTHER_MOUTH_STD`` (seldom used), eyes and brows
    ``fitting.PRIOR_STD`` (blinks, raised brows)."""
    from ..expression.arkit import ARKIT_NAMES, SPEECH_NAMES
    from ..expression.style import MIN_STD, reference_statistics
    from ..face.fitting import PRIOR_STD

    _, spread = reference_statistics(float(fps))
    prior = np.array([PRIOR_STD if n.startswith(("eye", "brow")) else OTHER_MOUTH_STD
                      for n in ARKIT_NAMES])
    speech = [INDEX[n] for n in SPEECH_NAMES]
    prior[speech] = np.maximum(spread[speech], MIN_STD)
    parting = [INDEX[n] for n in INDEX if n.startswith(("mouthUpperUp", "mouthLowerDown"))]
    prior[parting] = np.maximum(prior[parting], LIP_PARTING_STD)
    return prior


def _eye_offsets(fit: Fit, lm: np.ndarray) -> np.ndarray:
    """Mean offset of the two irises from their eye centres, head frame, IOD: float[2] (x
    toward the subject's left = image right, y up)."""
    centres = np.stack(M.eye_centres(lm[:468].astype(np.float64)))          # right, left
    irises = lm[[M.IRIS_RIGHT[0], M.IRIS_LEFT[0]]].astype(np.float64)
    return (fit.to_head(irises) - fit.to_head(centres))[:, :2].mean(0)


@dataclass(frozen=True)
class _Reference:
    """The first kept frame, which the relative channels are measured from."""

    rotation: np.ndarray     # float64[3 x 3], head -> image
    scale: float             # pixels per IOD
    pivot: np.ndarray        # float64[3], the renderer's pivot in the image, pixels
    face_width: float        # pixels
    eyes: np.ndarray         # float[2], iris offsets (``_eye_offsets``)

    @classmethod
    def of(cls, fit: Fit, lm: np.ndarray) -> "_Reference":
        pivot = fit.to_image(np.array([RenderConfig().pivot]))[0]
        return cls(fit.rotation, fit.scale, pivot, float(np.ptp(lm[:, 0])), _eye_offsets(fit, lm))

    @classmethod
    def mean(cls, refs: list["_Reference"], open_eyes: list[bool]) -> "_Reference":
        """The average of several references (the rotation: the nearest rotation to the
        mean matrix); the eyes from the frames with ``open_eyes`` (all if none)."""
        u, _, vt = np.linalg.svd(np.mean([r.rotation for r in refs], axis=0))
        rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
        eyes = [r.eyes for r, ok in zip(refs, open_eyes) if ok] or [r.eyes for r in refs]
        return cls(rotation, float(np.mean([r.scale for r in refs])),
                   np.mean([r.pivot for r in refs], axis=0),
                   float(np.mean([r.face_width for r in refs])), np.mean(eyes, axis=0))


def _channels(fit: Fit, lm: np.ndarray, ref: _Reference) -> np.ndarray:
    """One fitted frame -> float64[60] channels relative to ``ref`` (module doc, 5); the
    gaze is NaN while the eyes are closed."""
    out = np.empty(N_CHANNELS)
    out[ROTATION] = euler_angles(fit.rotation @ ref.rotation.T)
    pivot = fit.to_image(np.array([RenderConfig().pivot]))[0]
    out[TRANSLATION] = (pivot - ref.pivot)[:2] / ref.face_width
    out[SCALE] = fit.scale / ref.scale
    out[GAZE] = (_eye_offsets(fit, lm) - ref.eyes) / GAZE_IOD
    if max(fit.weights[INDEX["eyeBlinkLeft"]], fit.weights[INDEX["eyeBlinkRight"]]) > BLINK_HOLD:
        out[GAZE] = np.nan
    out[EXPRESSION] = fit.weights
    return out


def _neutral_of(lm: np.ndarray) -> Identity:
    """The identity of one tracked face (float[478 x 3] pixels) with its mouth taken out,
    as a photo's (``portrait.neutral_shape``): the jaw opening undone, the lips closed."""
    from ..portrait import neutral_shape
    lm = np.asarray(lm, np.float64)[:468]
    shape, _ = neutral_shape(M.head_frame(lm).to_head(lm))
    return Identity.from_shape(shape)


def _to_motion(table: np.ndarray, fps: float) -> Motion:
    """float[T x 60] channels -> Motion, gaze clipped to [-1, 1] and weights to [0, 1]."""
    return Motion(expression=np.clip(table[:, EXPRESSION], 0, 1), rotation=table[:, ROTATION],
                  translation=table[:, TRANSLATION], scale=table[:, SCALE],
                  gaze=np.clip(table[:, GAZE], -1, 1), fps=fps)


def sharpness(rgb: np.ndarray, box) -> float:
    """Variance of the Laplacian of the face box (x0, y0, x1, y1), grey, at
    ``BLUR_WIDTH_PX`` wide: blur lowers it."""
    h, w = rgb.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    k = BLUR_WIDTH_PX / (x1 - x0)
    grey = cv2.resize(grey, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


# ---------------------------------------------------------------------------------------
# A whole clip


def _frames_of(source, fps: float | None) -> tuple[Iterable[np.ndarray], float, int, str]:
    """(frames, fps, frame count or 0, name) of a video path or an iterable of frames."""
    from ..io import read_video_frames, video_info

    if isinstance(source, (str, Path)):
        info = video_info(source)
        rate = float(fps or info["fps"])
        if not rate > 0:
            raise TrackingError(f"{Path(source).name} has no frame rate: pass fps=")
        return read_video_frames(source), rate, int(info["n_frames"]), Path(source).name
    if fps is None or not fps > 0:
        raise TrackingError("frames given as arrays need their rate: track_clip(frames, fps=25)")
    n = len(source) if hasattr(source, "__len__") else 0
    return source, float(fps), n, "frames"


def track_clip(source, *, fps: float | None = None, progress: Callable | None = None,
               names: tuple[str, ...] | None = None, prior_std: np.ndarray | None = None,
               smooth: bool = True, workers: int | None = 1) -> TrackedClip:
    """Track a face through a video (module doc, steps 1-6).

    source    : a video path (any format PyAV reads), or an iterable of uint8[H x W x 3]
                RGB frames with ``fps``
    fps       : frames/s (for a path: overrides the file's rate)
    progress  : called as ``progress(done, total, stage)`` (total 0 when unknown)
    names     : the ARKit names fitted (default all that move the mesh)
    prior_std : float[52], prior spread of each weight (default :func:`driving_prior`)
    smooth    : smooth the motion's channels (step 6); lost frames are bridged either way
    workers   : forked processes that track (steps 1-2) and fit (step 4) consecutive spans
                of the clip at once (None: one per core, ``runtime.map_in_forks``), for a
                path or a list of frames of at least ``2 * SPAN_MIN`` frames where forking
                is safe; each span is tracked from ``SPAN_WARMUP`` frames before it and
                its first frame fitted from scratch, the rest as in one pass. 1: one pass.
    """
    from ..runtime import default_workers, fork_is_safe, map_in_forks

    frames, fps, total, name = _frames_of(source, fps)
    report = progress or (lambda done, total, stage: None)
    # 1. Track; 2. (blur) measure each face box's sharpness: in spans, one per worker.
    is_path = isinstance(source, (str, Path))
    workers = default_workers() if workers is None else workers
    if not (fork_is_safe() and (is_path or hasattr(source, "__getitem__"))):
        workers = 1                    # (spans tracked one after the other gain nothing)
    spans = _spans(total, workers)
    if len(spans) > 1:
        def span(k: int) -> tuple[list, list, tuple | None]:
            a, b = spans[k]
            early = min(a, SPAN_WARMUP)                   # tracked, then dropped
            if is_path:
                from ..io import read_video_frames
                frames = itertools.islice(read_video_frames(source), a - early, b)
            else:
                frames = source[a - early:b]
            landmarks, sharp, size = _track(frames, name, a - early)
            return landmarks[early:], sharp[early:], size

        report(0, total, "tracking")
        tracked = map_in_forks(span, len(spans), len(spans))
    else:
        spans = [(0, None)]
        tracked = [_track(frames, name, 0, lambda i: report(i, total, "tracking"))]
    landmarks = [lm for part, _, _ in tracked for lm in part]
    sharp = [x for _, part, _ in tracked for x in part]
    size = next((s for _, _, s in tracked if s is not None), None)
    n = len(landmarks)
    found = np.array([lm is not None for lm in landmarks], bool)
    if found.sum() < MIN_VALID:
        raise TrackingError(f"a face was found in only {found.sum()} of {n} frames of {name}: "
                            "use a video where one face is clearly visible, roughly frontal")
    valid = found & (np.nan_to_num(sharp) >= BLUR_SHARE * np.nanmedian(sharp))
    # 3. Identity from the kept frames; 4. fit them in order, each from the one before.
    report(n, total, "fitting")
    identity = neutral_identity([landmarks[i] for i in np.flatnonzero(valid)])
    fitter = ExpressionFitter(identity, names, driving_prior(fps) if prior_std is None else prior_std)
    bounds = [a for a, _ in spans] + [n]
    fitted = map_in_forks(lambda k: _fit_span(fitter, landmarks, valid, bounds[k], bounds[k + 1]),
                          len(spans), len(spans))
    table = np.full((n, N_CHANNELS), np.nan)
    angles = np.full((n, 3), np.nan, np.float32)
    ref = None
    for i, fit in (item for part in fitted for item in part):
        if fit is None:                                   # implausible: rejected
            valid[i] = False
            continue
        ref = ref or _Reference.of(fit, landmarks[i])
        table[i] = _channels(fit, landmarks[i], ref)
        angles[i] = fit.angles
    if valid.sum() < MIN_VALID:
        raise TrackingError(f"only {valid.sum()} of {n} frames of {name} could be fitted: use "
                            "a sharper video where one face is clearly visible")
    # 5.-6. Bridge the lost frames (and the gaze through blinks), smooth.
    table[:, :GAZE.start] = bridge(table[:, :GAZE.start], valid)
    table[:, EXPRESSION] = bridge(table[:, EXPRESSION], valid)
    gaze_known = valid & ~np.isnan(table[:, GAZE.start])
    table[:, GAZE] = bridge(table[:, GAZE], gaze_known) if gaze_known.any() else 0.0
    if smooth:
        speech = table[:, SPEECH]
        table = smooth_channels(table, fps)
        table[:, SPEECH] = smooth_speech(speech)
    stack = np.full((n, 478, 3), np.nan, np.float32)
    for i in np.flatnonzero(found):
        stack[i] = landmarks[i]
    report(n, total, "done")
    return TrackedClip(fps, tuple(size), stack, valid, _to_motion(table, fps), identity,
                       angles, name)


def _spans(total: int, workers: int) -> list[tuple[int, int | None]]:
    """Consecutive spans [a, b) of a clip of ``total`` frames (0: unknown) for ``workers``
    processes, each at least ``SPAN_MIN`` frames; the last open-ended (b None), since a
    file's frame count is only its header's word."""
    k = max(1, min(workers, total // SPAN_MIN))
    cuts = [round(total * j / k) for j in range(k)]
    return [(a, b) for a, b in zip(cuts, cuts[1:] + [None])]


def _track(frames: Iterable[np.ndarray], name: str, first: int = 0,
           tick: Callable | None = None) -> tuple[list, list, tuple | None]:
    """Steps 1-2 over consecutive frames (the first is frame ``first`` of the clip) ->
    (landmarks float32[478 x 3] or None, face-box sharpness or NaN, (H, W) or None)."""
    from ..face.tracker import FaceTracker  # mediapipe: heavy, imported on use

    tracker = FaceTracker(static=False, max_faces=TRACK_FACES)
    landmarks, sharp, size = [], [], None
    try:
        for i, rgb in enumerate(frames, first):
            rgb = np.asarray(rgb)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise TrackingError(f"frame {i} of {name} is {rgb.dtype} {rgb.shape}: pass "
                                    "uint8 H x W x 3 RGB frames")
            size = size or rgb.shape[:2]
            face = tracker.track(rgb)
            landmarks.append(None if face is None else face.landmarks)
            sharp.append(np.nan if face is None else sharpness(rgb, face.box))
            if tick and i % 25 == 0:
                tick(i)
    finally:
        tracker.close()
    return landmarks, sharp, size


def _fit_span(fitter: ExpressionFitter, landmarks: list, valid: np.ndarray, a: int, b: int
              ) -> list[tuple[int, Fit | None]]:
    """Step 4 over the kept frames of [a, b), each from the one before: [(frame, its Fit,
    or None where the fit is implausible: residual over ``MAX_RESIDUAL_IOD`` or a turn
    over ``MAX_TURN_DEG`` from the last kept frame)]."""
    out, last = [], None
    for i in np.flatnonzero(valid[a:b]) + a:
        lm = landmarks[i]
        fit = fitter.fit(lm) if last is None else \
            fitter.fit(lm, start=last, iterations=VIDEO_ITERATIONS, tol=STEP_TOL)
        turn = 0.0 if last is None else _angle_between(fit.rotation, last.rotation)
        if fit.residual > MAX_RESIDUAL_IOD or turn > MAX_TURN_DEG:
            out.append((int(i), None))
            continue
        out.append((int(i), fit))
        last = fit
    return out


def _angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation between two rotation matrices, degrees."""
    cos = (np.trace(a @ b.T) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


# ---------------------------------------------------------------------------------------
# Live driving


class FaceDriver:
    """Live driving, frame by frame (a webcam): ``driver(rgb) -> DrivingFrame | None``.

    Expressions are absolute, as ``track_clip``'s: the identity is the first face seen with
    its mouth taken out (``portrait.neutral_shape``: the jaw opening undone, the lips
    closed, as for a photo), so a user who starts mid-word does not shift every later
    expression by that word's opening. Pose, gaze, translation and scale are relative (an
    X2Face driving frame) to the user's rest pose: the mean of the faces seen in the first
    ``REFERENCE_SECONDS`` (a running mean until then), so one odd first frame (a turn, a
    nod) does not offset the whole session; ``reset()`` forgets identity and reference.
    Frames without a face (or whose fit is implausible) give None. Channels are smoothed by
    a causal one-euro filter (module doc, 6) on the frames' times.

    Speed: MediaPipe in video mode (~3-5 ms at 256²) plus ``LIVE_ITERATIONS`` step of the
    fit started from the frame before (~3 ms): about 10 ms a 256² frame on one core,
    before rendering. Track at 256² (or downscale the camera to it): landmarks are
    no steadier at higher resolution. Not thread-safe: one driver per camera.

    >>> driver = FaceDriver()
    >>> frame = driver(camera_rgb)           # uint8[H x W x 3] -> DrivingFrame or None
    >>> if frame is not None: out = renderer.render_frame(frame)
    """

    def __init__(self, *, fps: float = 25.0, smooth: bool = True,
                 names: tuple[str, ...] | None = None):
        from ..face.tracker import FaceTracker  # mediapipe: heavy, imported on use

        self.fps, self.smooth, self.names = float(fps), smooth, names
        self._tracker = FaceTracker(static=False, max_faces=TRACK_FACES)
        self._filter = OneEuroFilter()
        self._count = 0
        self.reset()

    def reset(self) -> None:
        """Forget the identity and the reference: they are taken again from the next faces."""
        self._fitter = self._ref = self._last = None
        self._warmup: list[_Reference] = []         # references seen in REFERENCE_SECONDS
        self._open: list[bool] = []                 # ... with the eyes open
        self._since = None                          # time of the first of them, s
        self._gaze = np.zeros(2)
        self._filter.reset()

    def __call__(self, rgb: np.ndarray, t: float | None = None) -> DrivingFrame | None:
        """rgb : uint8[H x W x 3] RGB; t : its time in seconds (default frame count / fps)
        -> the DrivingFrame relative to the reference, or None without a face."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise TrackingError(f"camera frame is {rgb.dtype} {rgb.shape}: pass uint8 "
                                "H x W x 3 RGB")
        t = self._count / self.fps if t is None else float(t)
        self._count += 1
        face = self._tracker.track(rgb)
        if face is None:
            self._last = None
            return None
        lm = face.landmarks
        if self._fitter is None:
            self._fitter = ExpressionFitter(_neutral_of(lm), self.names, driving_prior(self.fps))
        if self._last is None:
            fit = self._fitter.fit(lm)
        else:
            fit = self._fitter.fit(lm, start=self._last, iterations=LIVE_ITERATIONS,
                                            tol=STEP_TOL)
            if fit.residual > MAX_RESIDUAL_IOD or \
                    _angle_between(fit.rotation, self._last.rotation) > MAX_TURN_DEG:
                return None
        if self._since is None or t - self._since < REFERENCE_SECONDS:   # the rest pose
            self._since = t if self._since is None else self._since
            self._warmup.append(_Reference.of(fit, lm))
            self._open.append(max(fit.weights[INDEX["eyeBlinkLeft"]],
                                  fit.weights[INDEX["eyeBlinkRight"]]) <= BLINK_HOLD)
            self._ref = _Reference.mean(self._warmup, self._open)
        self._last = fit
        channels = _channels(fit, lm, self._ref)
        if np.isnan(channels[GAZE.start]):          # eyes closed: hold the gaze
            channels[GAZE] = self._gaze
        self._gaze = channels[GAZE].copy()
        if self.smooth:
            channels = self._filter(channels, t)
        return _to_motion(channels[None], self.fps)[0]

    def close(self) -> None:
        self._tracker.close()


# ---------------------------------------------------------------------------------------
# Transfer onto another face


def transfer(clip: TrackedClip, portrait=None, *, mode: str = "relative", only: str | None = None,
             expression: dict[str, float] | None = None) -> Motion:
    """The driver's motion for a source face (X2Face's relative transfer) -> Motion.

    relative : the driver's pose relative to its first valid frame moves the source from
               its own pose (X2Face), so the source keeps its own face shape and place
    absolute : the source takes the driver's head orientation (``portrait.frame`` needed)
    In both modes the weights are the driver's own, absolute ARKit weights, measured from
    the driver's neutral face (``track_clip``, step 3), never from its first frame: a
    driver filmed mid-word would otherwise move every later frame's mouth by that word's
    opening. The renderer reads weights absolutely too (all-zero: the source's face at
    rest, whatever its photo shows), so the source's mouth opens as the driver's does.
    only     : "pose" (the source's own expression) or "expression" (the source's pose)
    expression : {ARKit name: weight} set in every frame (e.g. ``{"mouthSmileLeft": 0.6}``)
    """
    from ..expression.arkit import check_name
    from ..face.fitting import HEAD_TO_IMAGE
    from ..face.pose import rotation_matrix

    if mode not in ("relative", "absolute"):
        raise ValueError(f"mode {mode!r}: use 'relative' or 'absolute'")
    if only not in (None, "pose", "expression"):
        raise ValueError(f"only={only!r}: use 'pose' or 'expression'")
    m = clip.motion
    out = Motion(m.expression.copy(), m.rotation.copy(), m.translation.copy(), m.scale.copy(),
                 m.gaze.copy(), m.fps)
    first = clip.first_valid
    if mode == "absolute":
        if portrait is None:
            raise ValueError("absolute transfer needs the source portrait (its own pose)")
        source = np.asarray(portrait.frame.rotation, np.float64) @ HEAD_TO_IMAGE
        r0 = rotation_matrix(*clip.angles[first])
        for i, angles in enumerate(m.rotation):       # driver's absolute pose, from the source's
            out.rotation[i] = euler_angles(rotation_matrix(*angles) @ r0 @ source.T)
    if only == "pose":                                 # the source's own expression
        own = getattr(portrait, "expression", None)
        out.expression[:] = 0.0 if own is None else np.asarray(own, np.float32)
    elif only == "expression":
        out.rotation[:] = 0.0
        out.translation[:] = 0.0
        out.scale[:] = 1.0
    for name, value in (expression or {}).items():
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"--expression {name}={value}: weights are in 0..1")
        out.expression[:, check_name(name)] = float(value)
    return out
