"""Motion files and presets: keyframed pose codes and expressions -> a :class:`Motion`.

A motion file is JSON with keyframes in seconds::

    {"fps": 25,
     "frames": [{"t": 0.0, "yaw": 0, "pitch": 0, "roll": 0, "tx": 0, "ty": 0, "scale": 1,
                 "gaze": [0, 0], "expression": {"jawOpen": 0.0}},
                {"t": 1.5, "yaw": 20, "expression": {"mouthSmileLeft": 0.8}}]}

- Keyframes may come in any order; they are sorted by ``t``. The clip starts at 0 s and
  ends at the last keyframe: ``round(t_last * fps) + 1`` frames. Before the first
  keyframe every channel holds its first keyed value.
- A field left out of a keyframe keeps its value from the keyframe before; so does each
  expression weight not named (0 until first named). Defaults: the portrait's own pose
  (0, scale 1), gaze (0, 0), neutral face.
- Between keyframes each channel follows a monotone cubic (PCHIP, Fritsch-Carlson) through
  its keyed values, so it never overshoots them: a turn from 0 to 20 degrees stays in
  [0, 20], and a value held over several keyframes stays flat. The slope is zero at the
  first and last keyframe and at every local peak, so motion eases in and out; with two
  keyframes this is smoothstep.
- Values outside ``POSE_LIMITS`` / ``EXPRESSION_RANGE`` are clipped with one warning per
  field; anything else that is wrong raises :class:`MotionError` naming the file and the fix.
- ``"lost"`` (optional, written by ``puppetry track``): the frame numbers where the face
  was lost and its values bridged from the frames around; read past (the bridged values
  are used), so a tracked file renders as it is.
- A file over ``limits.MAX_MOTION_BYTES``, with more than ``limits.MAX_KEYFRAMES``
  keyframes, lasting over ``limits.MAX_VIDEO_S`` or making over ``limits.MAX_FRAMES``
  frames raises :class:`~puppetry.limits.LimitError` before any big allocation.

Presets (``PRESETS``) are built the same way, or from the generators in ``idle.py``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .. import limits
from ..expression.arkit import ARKIT_NAMES, INDEX, N_EXPRESSIONS, check_name
from . import idle
from .frames import FPS, Motion

MAX_FPS = limits.MAX_FPS  # frames/s; a motion file's fps must lie in (0, MAX_FPS]

# Valid ranges, shared with the renderer and the UI. Out-of-range file values are clipped.
POSE_LIMITS: dict[str, tuple[float, float]] = {
    "yaw": (-45.0, 45.0),  # degrees
    "pitch": (-30.0, 30.0),  # degrees
    "roll": (-30.0, 30.0),  # degrees
    "tx": (-0.5, 0.5),  # face widths
    "ty": (-0.5, 0.5),  # face widths
    "scale": (0.5, 2.0),  # zoom factor
    "gaze": (-1.0, 1.0),  # both components
}
EXPRESSION_RANGE = (0.0, 1.0)  # ARKit weights

TOP_KEYS = ("fps", "frames", "lost")   # "lost": frames where `track` lost the face (ignored)
FRAME_KEYS = ("t", "yaw", "pitch", "roll", "tx", "ty", "scale", "gaze", "expression")
PRESETS = ("nod", "shake", "smile", "blink", "talk-idle")

# One column per interpolated channel: 6 pose codes, 2 gaze, 52 expressions (60 in all).
_POSE_KEYS = ("yaw", "pitch", "roll", "tx", "ty", "scale")
_CHANNELS = _POSE_KEYS + ("gaze_h", "gaze_v") + ARKIT_NAMES
_COLUMN = {name: i for i, name in enumerate(_CHANNELS)}
_GAZE = slice(6, 8)
_EXPR = slice(8, 8 + N_EXPRESSIONS)
_DEFAULTS = np.zeros(len(_CHANNELS))
_DEFAULTS[_COLUMN["scale"]] = 1.0
_LOW = np.array([POSE_LIMITS[k][0] for k in _POSE_KEYS] + [POSE_LIMITS["gaze"][0]] * 2
                + [EXPRESSION_RANGE[0]] * N_EXPRESSIONS)
_HIGH = np.array([POSE_LIMITS[k][1] for k in _POSE_KEYS] + [POSE_LIMITS["gaze"][1]] * 2
                 + [EXPRESSION_RANGE[1]] * N_EXPRESSIONS)
# Fields as warnings name them, with their columns.
_FIELDS = ([(k, [_COLUMN[k]]) for k in _POSE_KEYS] + [("gaze", [6, 7])]
           + [(name, [_COLUMN[name]]) for name in ARKIT_NAMES])


class MotionError(ValueError):
    """A motion file or preset that cannot be used; the message names the input and the fix."""


# ---------------------------------------------------------------------------------------
# Parsing


def load_motion(path) -> Motion:
    """Read a motion JSON file (format in the module docstring)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        limits.check_bytes(size, str(path), limit=limits.MAX_MOTION_BYTES,
                           name="MAX_MOTION_BYTES", fix="key fewer frames")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MotionError(f"{path}: not UTF-8 text (byte {e.start}): save the motion file "
                          "as UTF-8 JSON") from None
    except (FileNotFoundError, IsADirectoryError):
        raise MotionError(f"{path}: not found or not a file: check the path") from None
    return parse_motion(text, source=str(path))


def parse_motion(text: str, *, source: str = "MOTION.json") -> Motion:
    """Motion JSON text -> :class:`Motion`; ``source`` names the input in errors and warnings."""
    # 1. JSON and the top level, within the limits.
    limits.check_bytes(len(text), source, limit=limits.MAX_MOTION_BYTES,
                       name="MAX_MOTION_BYTES", fix="key fewer frames")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MotionError(f"{source}: invalid JSON at line {e.lineno}, column {e.colno}: "
                          f"{e.msg}") from None
    except RecursionError:
        raise MotionError(f"{source}: arrays or objects nested too deeply: a motion file "
                          f'is {{"fps": 25, "frames": [{{"t": 0.0, "yaw": 10}}, ...]}}') from None
    if not isinstance(data, dict):
        raise MotionError(f'{source}: expected an object {{"fps": 25, "frames": [...]}}, '
                          f"got {type(data).__name__}")
    _check_keys(data, TOP_KEYS, f"{source}: unknown top-level key")
    fps = _number(data.get("fps", FPS), f"{source}: 'fps'")
    if not 0 < fps <= MAX_FPS:
        raise MotionError(f"{source}: 'fps' must be in (0, {MAX_FPS:g}] frames/s, got {fps:g}")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise MotionError(f"{source}: 'frames' must be a non-empty list of keyframes "
                          f'like {{"t": 0.0, "yaw": 10}}')
    limits.check_keyframes(len(frames), source)
    lost = data.get("lost", [])   # written by `puppetry track`: informative, bridged there
    if not isinstance(lost, list) or len(lost) > limits.MAX_FRAMES or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in lost):
        raise MotionError(f"{source}: 'lost' must be a list of frame numbers (integers >= 0), "
                          "the frames where `puppetry track` lost the face; or leave it out")

    # 2. Keyframe times: numbers >= 0, all different; sorted.
    keyed = []
    for i, frame in enumerate(frames):
        where = f"{source}: frames[{i}]"
        if not isinstance(frame, dict):
            raise MotionError(f'{where}: expected an object like {{"t": 0.0, "yaw": 10}}, '
                              f"got {type(frame).__name__}")
        _check_keys(frame, FRAME_KEYS, f"{where}: unknown key")
        if "t" not in frame:
            raise MotionError(f"{where}: missing 't', the keyframe's time in seconds")
        t = _number(frame["t"], f"{where}: 't'")
        if t < 0:
            raise MotionError(f"{where}: 't' must be >= 0 seconds, got {t:g}")
        limits.check_video(t, fps, f"{where}: 't' = {t:g} s: the motion")
        keyed.append((t, i, frame))
    keyed.sort(key=lambda k: k[0])
    for (t0, i0, _), (t1, i1, _) in zip(keyed, keyed[1:]):
        if t0 == t1:
            raise MotionError(f"{source}: frames[{i0}] and frames[{i1}] both have t={t0:g}; "
                              "give each keyframe its own time or merge them")

    # 3. Channel values per keyframe, holding what a keyframe leaves out.
    values = np.empty((len(keyed), len(_CHANNELS)))  # (K, 60)
    given = np.zeros(values.shape, bool)  # which values the file states
    state = _DEFAULTS.copy()
    for k, (t, i, frame) in enumerate(keyed):
        where = f"{source}: frames[{i}]"
        for key in _POSE_KEYS:
            if key in frame:
                state[_COLUMN[key]] = _number(frame[key], f"{where}: {key!r}")
                given[k, _COLUMN[key]] = True
        if "gaze" in frame:
            gaze = frame["gaze"]
            if not isinstance(gaze, list) or len(gaze) != 2:
                raise MotionError(f"{where}: 'gaze' must be [h, v], two numbers in [-1, 1], "
                                  f"got {gaze!r}")
            state[_GAZE] = [_number(g, f"{where}: 'gaze'") for g in gaze]
            given[k, _GAZE] = True
        if "expression" in frame:
            weights = frame["expression"]
            if not isinstance(weights, dict):
                raise MotionError(f"{where}: 'expression' must be an object of ARKit weights "
                                  f'like {{"jawOpen": 0.5}}, got {weights!r}')
            for name, w in weights.items():
                try:
                    column = 8 + check_name(name)
                except ValueError as e:
                    raise MotionError(f"{where}: {e}") from None
                state[column] = _number(w, f"{where}: expression {name!r}")
                given[k, column] = True
        values[k] = state

    # 4. Clip to the valid ranges (one warning per field), then interpolate.
    times = np.array([t for t, _, _ in keyed])
    _clip(values, given, [i for _, i, _ in keyed], source)
    n_frames = int(round(times[-1] * fps)) + 1
    return _to_motion(_interpolate(times, values, n_frames, fps), fps)


def _check_keys(obj: dict, allowed: tuple[str, ...], what: str) -> None:
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        raise MotionError(f"{what} {unknown[0]!r}; allowed keys: {', '.join(allowed)}")


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise MotionError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _clip(values: np.ndarray, given: np.ndarray, file_index: list[int], source: str) -> None:
    """Clip ``values`` (K, 60) in place to the valid ranges, warning once per field."""
    outside = given & ((values < _LOW) | (values > _HIGH))
    for field, columns in _FIELDS:
        rows, cols = np.nonzero(outside[:, columns])
        if len(rows) == 0:
            continue
        lo, hi = _LOW[columns[0]], _HIGH[columns[0]]
        excess = [max(lo - v, v - hi) for v in values[rows, np.array(columns)[cols]]]
        worst = int(np.argmax(excess))
        value = values[rows[worst], columns[cols[worst]]]
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        warnings.warn(f"{source}: {field} = {value:g} at frames[{file_index[rows[worst]]}]{more} "
                      f"is outside [{lo:g}, {hi:g}]; clipped", stacklevel=3)
    np.clip(values, _LOW, _HIGH, out=values)


def _interpolate(times: np.ndarray, values: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Keyed ``values`` (K, C) at ``times`` (K,) seconds -> (n_frames, C) at frame times.

    Monotone cubic Hermite: PCHIP slopes inside, zero slope at the first and last key.
    """
    t = np.clip(np.arange(n_frames) / fps, times[0], times[-1])
    if len(times) == 1:
        return np.repeat(values, n_frames, axis=0)
    from scipy.interpolate import CubicHermiteSpline, PchipInterpolator  # slow to import

    slopes = PchipInterpolator(times, values, axis=0).derivative()(times)  # (K, C)
    slopes[[0, -1]] = 0.0
    return CubicHermiteSpline(times, values, slopes, axis=0)(t)


def _to_motion(table: np.ndarray, fps: float) -> Motion:
    """(T, 60) channel table -> Motion."""
    return Motion(expression=table[:, _EXPR], rotation=table[:, 0:3], translation=table[:, 3:5],
                  scale=table[:, 5], gaze=table[:, _GAZE], fps=fps)


# ---------------------------------------------------------------------------------------
# Writing


def motion_to_json(motion: Motion) -> dict:
    """Motion -> the file format, one keyframe per frame (``json.dump`` it to save).

    Expression weights that are zero throughout are left out; values are rounded to 6
    decimals, so ``parse_motion(json.dumps(motion_to_json(m)))`` reproduces ``m`` to 1e-6.
    """
    fps = int(motion.fps) if float(motion.fps).is_integer() else float(motion.fps)
    used = [n for n, column in zip(ARKIT_NAMES, motion.expression.T) if np.any(column != 0)]
    frames = []
    for i in range(len(motion)):
        yaw, pitch, roll = motion.rotation[i]
        tx, ty = motion.translation[i]
        frames.append({
            "t": i / fps, "yaw": _r(yaw), "pitch": _r(pitch), "roll": _r(roll), "tx": _r(tx),
            "ty": _r(ty), "scale": _r(motion.scale[i]), "gaze": [_r(g) for g in motion.gaze[i]],
            "expression": {n: _r(motion.expression[i, INDEX[n]]) for n in used},
        })
    return {"fps": fps, "frames": frames}


def _r(x) -> float:
    return round(float(x), 6)


# ---------------------------------------------------------------------------------------
# Presets


def preset(name: str, *, duration: float = 4.0, fps: float = FPS, seed: int = 0) -> Motion:
    """A ready-made motion of ``round(duration * fps)`` frames.

    nod       pitch -10/+10 degrees, twice
    shake     yaw +15/-15 degrees, twice
    smile     mouthSmileLeft/Right up to 0.8 and back, with cheek and eye squint
    blink     two or three blinks (80 ms close, 40 ms hold, 170 ms open)
    talk-idle idle sway, blinks, gaze shifts and a ~4 Hz jaw/lip babble (uses ``seed``)
    """
    if name not in PRESETS:
        raise MotionError(f"unknown motion preset {name!r}; presets: {', '.join(PRESETS)}")
    if not duration > 0:
        raise MotionError(f"preset {name!r}: duration must be > 0 seconds, got {duration}")
    if not 0 < fps <= MAX_FPS:
        raise MotionError(f"preset {name!r}: fps must be in (0, {MAX_FPS:g}], got {fps}")
    limits.check_video(duration, fps, f"preset {name!r} of --duration {duration:g} s")
    n_frames = max(int(round(duration * fps)), 1)
    if name == "nod":
        return _keyed(n_frames, fps, [0, 0.2, 0.4, 0.6, 0.8, 1], pitch=[0, -10, 10, -10, 10, 0])
    if name == "shake":
        return _keyed(n_frames, fps, [0, 0.2, 0.4, 0.6, 0.8, 1], yaw=[0, 15, -15, 15, -15, 0])
    if name == "smile":
        smile, cheek, eye = [0, 0, 0.8, 0.8, 0, 0], [0, 0, 0.3, 0.3, 0, 0], [0, 0, 0.2, 0.2, 0, 0]
        return _keyed(n_frames, fps, [0, 0.1, 0.35, 0.65, 0.9, 1],
                      mouthSmileLeft=smile, mouthSmileRight=smile, cheekSquintLeft=cheek,
                      cheekSquintRight=cheek, eyeSquintLeft=eye, eyeSquintRight=eye)
    motion = Motion.still(n_frames, fps)
    if name == "blink":
        count = 3 if duration >= 3 else 2 if duration >= 1.5 else 1
        onsets = (np.arange(count) + 0.5) / count * (duration - idle.BLINK_S)
        blink = idle.blinks_at(onsets, n_frames, fps)
        motion.expression[:, INDEX["eyeBlinkLeft"]] = blink
        motion.expression[:, INDEX["eyeBlinkRight"]] = blink
        return motion
    # talk-idle
    motion.expression = idle.babble_mouth(n_frames, fps, seed=seed)
    return idle.add_idle(motion, seed=seed)


def _keyed(n_frames: int, fps: float, at: list[float], **channels: list[float]) -> Motion:
    """Keys at fractions ``at`` of the clip, ``channel=[values]`` per named channel."""
    times = np.asarray(at) * (n_frames - 1) / fps
    values = np.repeat(_DEFAULTS[None], len(at), axis=0)
    for name, v in channels.items():
        values[:, _COLUMN[name]] = v
    return _to_motion(_interpolate(times, values, n_frames, fps), fps)


def resolve_motion(spec, **kwargs) -> Motion:
    """A preset name (``kwargs`` go to :func:`preset`) or a motion JSON path -> Motion.

    For a file, ``kwargs`` are ignored: the file sets its own fps and length.
    """
    if isinstance(spec, str) and spec in PRESETS:
        return preset(spec, **kwargs)
    if Path(spec).is_file():
        return load_motion(spec)
    raise MotionError(f"{str(spec)!r} is neither a motion preset ({', '.join(PRESETS)}) "
                      "nor an existing file")
