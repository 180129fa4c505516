"""Person-specific speaking style: Neural Voice Puppetry's per-person expression layer.

The shared expression space (what Audio2Expression predicts) is everyone's average mouth;
one person opens the jaw wider, another hardly rounds the lips. A :class:`Style` is a
small map from shared expressions to one person's, fitted from a video of them::

    >>> style = fit_style("me_talking.mp4", shared=SpeechToExpression.load())
    >>> style.save("me.style.json")
    >>> mine = Style.load("me.style.json").apply(curves)      # float32[T x 52], 0..1

Fitting (:func:`fit_style`):

1. Track every frame of the video (FaceTracker, video mode).
2. Identity: the neutral face is the element-wise median of the frames whose lips are
   closest together (the ``NEUTRAL_SHARE`` with the smallest inner-lip opening), each in
   its own head frame and aligned to the first on the rigid points.
3. The person's expressions: every tracked frame fitted to that identity
   (:class:`~puppetry.face.fitting.ExpressionFitter`), speech shapes only
   (``SPEECH_NAMES``), with the shared space's spread of each shape as the prior (so the
   opening of the lips goes to the jaw unless the lips clearly move on their own).
   Frames without a face are left out.
4. The map, over the speech shapes only (every other weight passes through):

   - with a speech model (``shared``): the shared expressions it predicts from the video's
     own audio are regressed onto the person's, frame by frame: a per-name scale and bias
     (ridge ``RIDGE``), plus a full ``K x K`` correction with a strong ridge
     (``RIDGE_FULL``) so one shape may borrow a little from another (a wider jaw with
     every rounding, say) without over-fitting a short video; then each shape's spread is
     raised to the person's own (:func:`match_spread`: least squares shrinks it by the
     correlation it finds);
   - without one (``shared=None``): no frame-by-frame pairing is possible, so the map
     matches statistics instead: per name, the person's mean and standard deviation on
     this video against the shared space's reference mean and deviation, i.e. those of
     the training targets (``visemes.viseme_curves``) for a reference reading
     (``REFERENCE_PASSAGE``, the opening of the Rainbow Passage). A diagonal map.

``Style.apply`` clips to [0, 1] and keeps ``mouthClose <= jawOpen`` (ARKit's lips cannot
close further than the jaw opens).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..drive.frames import FPS
from ..drive.video import NEUTRAL_SHARE, neutral_identity  # noqa: F401  (re-exported)
from ..face.fitting import Identity
from .arkit import INDEX, N_EXPRESSIONS, SPEECH_NAMES, check_name

STYLE_VERSION = 1  # file format version
METHODS = ("ridge", "statistics")
MIN_TRACKED = 10  # a style needs at least this many frames with a face
MIN_TRACKED_SHARE = 0.5  # ... and a face in at least this share of the frames
RIDGE = 1e-3  # per-name regression: added to each shared variance (weight²)
RIDGE_FULL = 1.0  # K x K correction: ridge as a multiple of the mean shared variance x T
MIN_STD = 0.02  # reference deviations below this (weight) are raised to it
MAX_SCALE = 4.0  # per-name scales are limited to [0, MAX_SCALE]
MAX_WIDEN = 3.0   # a speech shape's mapped spread is raised to the person's by at most this factor

# The reference reading for the statistics fallback: the Rainbow Passage's first
# sentences (Fairbanks 1960), in ARPAbet, "|" a short pause between words, "||" a
# sentence-end pause. Vowels last VOWEL_S, consonants CONSONANT_S (about 12 phones/s).
REFERENCE_PASSAGE = (
    "w eh n | dh ah | s ah n l ay t | s t r ay k s | r ey n d r aa p s | ih n | dh ah | eh r "
    "| dh ey | ae k t | ae z | ah | p r ih z ah m | ah n d | f ao r m | ah | r ey n b ow || "
    "dh ah | r ey n b ow | ih z | ah | d ih v ih zh ah n | ah v | w ay t | l ay t | "
    "ih n t uw | m eh n iy | b y uw t ah f ah l | k ah l er z || dh iy z | t ey k | dh ah | "
    "sh ey p | ah v | ah | l ao ng | r aw n d | aa r ch | w ih dh | ih t s | p ae th | "
    "hh ay | ah b ah v | ah n d | ih t s | t uw | eh n d z | ah p eh r ah n t l iy | "
    "b ih y aa n d | dh ah | hh er ay z ah n ||")
VOWEL_S, CONSONANT_S = 0.11, 0.07  # phone durations of the reference reading, s
WORD_PAUSE_S, SENTENCE_PAUSE_S = 0.03, 0.45  # "|" and "||", s


class StyleError(ValueError):
    """A style that cannot be fitted or read; the message names the input and the fix."""


@dataclass
class Style:
    """A per-person map over the speech shapes ``names`` (K of them):

    ``person[:, names] = clip(shared[:, names] @ matrix + bias, 0, 1)``

    names  : K ARKit names
    matrix : float32[K x K] (rows: shared input, columns: person output)
    bias   : float32[K]
    fps, source, frames : the video it was fitted on (frames/s, file name, frame count)
    method : "ridge" (paired with a speech model) or "statistics" (module doc)
    """

    names: tuple[str, ...]
    matrix: np.ndarray
    bias: np.ndarray
    fps: float = FPS
    source: str = ""
    frames: int = 0
    method: str = "ridge"
    columns: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.names = tuple(self.names)
        self.columns = np.array([check_name(n) for n in self.names], np.int64)
        k = len(self.names)
        self.matrix = np.asarray(self.matrix, np.float32).reshape(k, k)
        self.bias = np.asarray(self.bias, np.float32).reshape(k)
        if self.method not in METHODS:
            raise StyleError(f"unknown style method {self.method!r}: use one of {METHODS}")

    @classmethod
    def neutral(cls, names: tuple[str, ...] = SPEECH_NAMES) -> "Style":
        """The map that changes nothing."""
        return cls(names, np.eye(len(names)), np.zeros(len(names)))

    def apply(self, expressions: np.ndarray) -> np.ndarray:
        """expressions : float[T x 52] shared, 0..1 -> float32[T x 52] this person's, 0..1."""
        e = np.asarray(expressions, np.float32)
        if e.ndim != 2 or e.shape[1] != N_EXPRESSIONS:
            raise ValueError(f"expressions have shape {e.shape}: pass float32[T x "
                             f"{N_EXPRESSIONS}] ARKit weights")
        out = e.copy()
        out[:, self.columns] = e[:, self.columns] @ self.matrix + self.bias
        out = np.clip(out, 0.0, 1.0)
        jaw, close = INDEX["jawOpen"], INDEX["mouthClose"]
        out[:, close] = np.minimum(out[:, close], out[:, jaw])
        return out

    # -- files ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        fps = int(self.fps) if float(self.fps).is_integer() else float(self.fps)
        return {"version": STYLE_VERSION, "kind": "puppetry.style", "method": self.method,
                "names": list(self.names),
                "matrix": np.round(self.matrix.astype(np.float64), 6).tolist(),
                "bias": np.round(self.bias.astype(np.float64), 6).tolist(),
                "fps": fps, "source": self.source, "frames": int(self.frames)}

    def save(self, path, *, force: bool = False) -> Path:
        """Write the style as JSON, atomically (``io.write_text``; ``force``: overwrite a
        read-only file)."""
        from ..io import write_text
        return write_text(path, json.dumps(self.to_json(), indent=1), force=force)

    @classmethod
    def load(cls, path) -> "Style":
        path = Path(path)
        if not path.is_file():
            raise StyleError(f"style file {path} not found: fit one with fit_style(video)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise StyleError(f"{path.name}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(data, dict) or data.get("kind") != "puppetry.style":
            raise StyleError(f"{path.name} is not a puppetry style file (no \"kind\": "
                             "\"puppetry.style\"): fit one with fit_style(video)")
        if data.get("version") != STYLE_VERSION:
            raise StyleError(f"{path.name} is style version {data.get('version')!r}; this "
                             f"puppetry reads version {STYLE_VERSION}: fit the style again")
        try:
            return cls(tuple(data["names"]), data["matrix"], data["bias"],
                       fps=float(data["fps"]), source=str(data.get("source", "")),
                       frames=int(data.get("frames", 0)), method=data.get("method", "ridge"))
        except (KeyError, TypeError, ValueError) as e:
            raise StyleError(f"{path.name}: malformed style ({e}): fit the style again") from None


# ---------------------------------------------------------------------------------------
# Tracking a person's video


@dataclass
class TrackedVideo:
    """A person's video as the face model sees it.

    expressions : float32[T x 52], fitted speech shapes (NaN rows where no face was found)
    rotation    : float32[T x 3], head pose, degrees (NaN where no face)
    identity    : the neutral face used for the fit
    fps, frames, source : frames/s, T, file name
    """

    expressions: np.ndarray
    rotation: np.ndarray
    identity: Identity
    fps: float
    source: str

    @property
    def frames(self) -> int:
        return len(self.expressions)

    @property
    def tracked(self) -> np.ndarray:
        """bool[T], frames with a face."""
        return ~np.isnan(self.expressions[:, 0])


def track_video(video_path, *, names: tuple[str, ...] = SPEECH_NAMES) -> TrackedVideo:
    """Track every frame of a person's video and fit it to their own neutral face
    (module doc, steps 1-3); ``names`` are the shapes fitted."""
    from ..drive.video import TrackingError, track_clip
    from ..io import video_info

    path = Path(video_path)
    fps = float(video_info(path)["fps"]) or FPS
    _, spread = reference_statistics(fps)
    try:   # steps 1-3: the one tracking loop (drive.video), unsmoothed
        clip = track_clip(path, fps=fps, names=names, prior_std=np.maximum(spread, MIN_STD),
                          smooth=False)
    except TrackingError:
        clip = None
    kept = 0 if clip is None else int(clip.valid.sum())
    frames = len(clip) if clip is not None else video_info(path)["n_frames"]
    if kept < max(MIN_TRACKED, MIN_TRACKED_SHARE * frames):
        raise StyleError(f"a face was found in only {kept} of {frames} frames of "
                         f"{path.name}: use a video (at least {MIN_TRACKED} frames) where one "
                         "face is visible throughout, roughly frontal")
    expressions = np.where(clip.valid[:, None], clip.motion.expression, np.nan).astype(np.float32)
    return TrackedVideo(expressions, clip.angles, clip.identity, fps, path.name)


# ---------------------------------------------------------------------------------------
# Fitting the map


def reference_curves(fps: float = FPS) -> np.ndarray:
    """The shared space's reference speech: the training targets (``visemes``) for
    ``REFERENCE_PASSAGE`` read at about 12 phones/s -> float32[T x 52] at ``fps``."""
    from .visemes import VOWELS, viseme_curves

    phones, t = [("sil", 0.0, SENTENCE_PAUSE_S)], SENTENCE_PAUSE_S
    for token in REFERENCE_PASSAGE.split():
        if token in ("|", "||"):
            d, token = (WORD_PAUSE_S, "sp") if token == "|" else (SENTENCE_PAUSE_S, "sil")
        else:
            d = VOWEL_S if token in VOWELS else CONSONANT_S
        phones.append((token, t, t + d))
        t += d
    return viseme_curves(phones, rate=fps)


@lru_cache(maxsize=4)
def reference_statistics(fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each ARKit weight over :func:`reference_curves`
    -> (float64[52], float64[52])."""
    curves = reference_curves(fps)
    return curves.mean(0).astype(np.float64), curves.std(0).astype(np.float64)


def _fit_ridge(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shared x, person y (float[T x K] each) -> (matrix [K x K], bias [K]) (module doc, 4)."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    var = (xc ** 2).mean(0)                                          # (K,)
    scale = np.clip((xc * yc).mean(0) / (var + RIDGE), 0.0, MAX_SCALE)  # per name
    residual = yc - xc * scale                                       # what the diagonal misses
    lam = RIDGE_FULL * len(x) * max(float(var.mean()), RIDGE)
    correction = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ residual)
    matrix = np.diag(scale) + correction
    return matrix, my - mx @ matrix


def _fit_statistics(y: np.ndarray, columns: np.ndarray, fps: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Person y (float[T x K]) -> diagonal (matrix, bias) matching the reference statistics."""
    ref_mean, ref_std = reference_statistics(float(fps))
    ref_mean, ref_std = ref_mean[columns], np.maximum(ref_std[columns], MIN_STD)
    scale = np.clip(y.std(0) / ref_std, 0.0, MAX_SCALE)
    return np.diag(scale), y.mean(0) - scale * ref_mean


def match_spread(style: Style, shared: np.ndarray, person: np.ndarray) -> Style:
    """The ``style`` with each mapped speech shape's spread raised to the person's own.

    A least-squares map from the shared speech space to the person's shapes shrinks its
    output towards the mean by the correlation it finds (regression to the mean): on the
    dev Obama video the mapped ``jawOpen`` moved with 0.58 of the spread of the person's
    tracked jaw, so dubbed mouths barely opened and closed and the neural renderer,
    which hardly draws so small a movement, lost the sync (docs/benchmarks.md §7, 2026-12-06).
    Per shape k the map's output on the video, ``p_k``, becomes
    ``mean(p_k) + g_k (p_k - mean(p_k))`` with ``g_k = std(person_k) / std(p_k)`` in
    [1, ``MAX_WIDEN``]: the timing (what the correlation measures) is untouched, the
    amplitude is the person's.

    shared : float[T x 52], the speech model on the video's own audio
    person : float[T x 52], the person's fitted expressions on the same frames (no NaN rows)
    Returns a new ``Style`` (a ``Style`` fitted from statistics already matches the spread).
    :func:`fit_style` applies it to every map it fits from speech.
    """
    if style.method != "ridge":
        return style
    cols = style.columns
    mapped = shared[:, cols] @ style.matrix + style.bias                 # (T, K), before clipping
    spread = mapped.std(0)
    gain = np.clip(person[:, cols].std(0) / np.maximum(spread, 1e-6), 1.0, MAX_WIDEN)
    gain[spread < 1e-6] = 1.0                                            # a shape the map holds still
    mean = mapped.mean(0)
    return Style(style.names, style.matrix * gain, gain * style.bias + (1 - gain) * mean,
                 fps=style.fps, source=style.source, frames=style.frames, method=style.method)


def fit_style(video_path, *, shared=None, names: tuple[str, ...] = SPEECH_NAMES,
              tracked: TrackedVideo | None = None) -> Style:
    """Fit a person's :class:`Style` from a video of them speaking (module doc).

    video_path : the person's video (one face, roughly frontal; with its speech for ``shared``)
    shared     : a ``SpeechToExpression`` (or any ``shared(audio, n_frames, fps) ->
                 float32[T x 52]``); None fits from statistics instead
    names      : the shapes the style maps (default the speech shapes)
    tracked    : a :func:`track_video` result for this video, to skip tracking again
    """
    # 1.-3. Track and fit the person's own expressions.
    video = tracked if tracked is not None else track_video(video_path, names=names)
    columns = np.array([check_name(n) for n in names], np.int64)
    ok = video.tracked
    person = video.expressions[ok][:, columns].astype(np.float64)     # (T_ok, K)

    # 4. The map.
    if shared is None:
        matrix, bias = _fit_statistics(person, columns, video.fps)
        method = "statistics"
    else:
        from ..audio import AudioError, load_audio

        try:
            audio = load_audio(video_path)
        except AudioError as e:
            raise StyleError(f"{e}. fit_style needs the video's speech to run the speech "
                             "model; pass shared=None to fit from statistics instead") from None
        x = np.asarray(shared(audio, n_frames=video.frames, fps=video.fps), np.float64)
        if x.shape != (video.frames, N_EXPRESSIONS):
            raise StyleError(f"the speech model gave {x.shape} for {video.frames} frames: "
                             f"it must return float32[{video.frames} x {N_EXPRESSIONS}]")
        style = Style(tuple(names), *_fit_ridge(x[ok][:, columns], person), fps=video.fps,
                      source=video.source, frames=video.frames, method="ridge")
        return match_spread(style, x[ok], video.expressions[ok].astype(np.float64))
    return Style(tuple(names), matrix, bias, fps=video.fps, source=video.source,
                 frames=video.frames, method=method)
