"""Expression curves out to (and back from) the files a 3D rig reads.

The shared expression space is ARKit's 52 blendshapes, so the curves drive any
ARKit-rigged avatar (web, game engine, VTuber rig) as they are (DESIGN.md §1).

``.json``::

    {"fps": 25,
     "names": ["eyeBlinkLeft", ..., "tongueOut"],
     "frames": [{"t": 0.0, "weights": {"eyeBlinkLeft": 0.0, ..., "tongueOut": 0.0}},
                {"t": 0.04, "weights": {...}}, ...]}

``.csv``: a header ``time,eyeBlinkLeft,...,tongueOut`` and one row per frame, time in
seconds.

Every frame carries every name written (all 52 by default), weights rounded to
``DECIMALS``; frame ``i`` is at ``t = i / fps``. Files are written atomically (a temp file
beside the target, then ``os.replace``).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..drive.frames import FPS
from .arkit import ARKIT_NAMES, N_EXPRESSIONS, check_name

DECIMALS = 4  # weights are rounded to this many decimals (1e-4 is below what a rig shows)
TIME_DECIMALS = 6  # frame times, s
FORMATS = (".json", ".csv")


class CurvesError(ValueError):
    """An expression-curve file that cannot be written or read; the message says why."""


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise CurvesError(f"cannot use {path.name}: expression curves are written and read as "
                          f"{' or '.join(FORMATS)} (ARKit blendshape JSON, or CSV); "
                          f"rename the file with one of those extensions")
    return suffix


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def write_curves(path, expressions: np.ndarray, fps: float, *,
                 names: tuple[str, ...] = ARKIT_NAMES, force: bool = False) -> Path:
    """Write ARKit expression curves as ``.json`` or ``.csv`` (by the extension).

    expressions : float[T x 52], 0..1, ARKIT_NAMES order
    fps         : frames per second of the curves
    names       : the ARKit names to write, in this order (default all 52)
    force       : overwrite a read-only file (``io.check_output``)
    Returns ``path``.
    """
    path = Path(path)
    fmt = _format(path)
    e = np.asarray(expressions, np.float64)
    if e.ndim != 2 or e.shape[1] != N_EXPRESSIONS:
        raise CurvesError(f"expressions have shape {e.shape}: pass float[T x {N_EXPRESSIONS}] "
                          "ARKit weights in ARKIT_NAMES order")
    if not np.all(np.isfinite(e)):
        raise CurvesError("expressions contain NaN or infinite values")
    if e.size and (e.min() < -1e-6 or e.max() > 1 + 1e-6):
        raise CurvesError(f"expression weights span [{e.min():.3g}, {e.max():.3g}], outside "
                          "ARKit's [0, 1]: clip them first (np.clip(e, 0, 1))")
    if not (np.isfinite(fps) and fps > 0):
        raise CurvesError(f"fps must be a positive number of frames per second, got {fps!r}")
    names = tuple(names)
    columns = [check_name(n) for n in names]
    if len(set(names)) != len(names):
        raise CurvesError(f"names repeat: {names}; give each ARKit name once")
    weights = np.round(np.clip(e[:, columns], 0.0, 1.0), DECIMALS)
    times = np.round(np.arange(len(e)) / fps, TIME_DECIMALS)

    if fmt == ".json":
        frames = [{"t": float(t), "weights": dict(zip(names, map(float, row)))}
                  for t, row in zip(times, weights)]
        text = json.dumps({"fps": _number(fps), "names": list(names), "frames": frames},
                          separators=(",", ":"))
    else:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["time", *names])
        for t, row in zip(times, weights):
            out.writerow([f"{t:.{TIME_DECIMALS}f}".rstrip("0").rstrip("."),
                          *(f"{w:.{DECIMALS}f}".rstrip("0").rstrip(".") for w in row)])
        text = buf.getvalue()
    from ..io import write_text  # av, cv2: loaded by the jobs anyway, not by this import
    write_text(path, text, force=force)
    return path


def read_curves(path) -> tuple[np.ndarray, float]:
    """Read a ``.json`` or ``.csv`` written by :func:`write_curves` (or by hand the same way).

    Names left out are 0. Returns ``(expressions float32[T x 52] in ARKIT_NAMES order, fps)``;
    a CSV's fps comes from its time column (``FPS`` for a single row).
    """
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise CurvesError(f"expression curves {path} not found: check the path")
    text = path.read_text(encoding="utf-8")
    return _read_json(text, path.name) if fmt == ".json" else _read_csv(text, path.name)


def _columns(names, source: str) -> list[int]:
    try:
        return [check_name(str(n)) for n in names]
    except ValueError as e:
        raise CurvesError(f"{source}: {e}") from None


def _read_json(text: str, source: str) -> tuple[np.ndarray, float]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CurvesError(f"{source}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise CurvesError(f'{source}: expected {{"fps": 25, "names": [...], "frames": '
                          '[{"t": 0.0, "weights": {...}}, ...]}')
    fps = data.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise CurvesError(f"{source}: 'fps' must be a positive number, got {fps!r}")
    out = np.zeros((len(data["frames"]), N_EXPRESSIONS), np.float32)
    for i, frame in enumerate(data["frames"]):
        weights = frame.get("weights") if isinstance(frame, dict) else None
        if not isinstance(weights, dict):
            raise CurvesError(f"{source}: frames[{i}] has no 'weights' object of ARKit names")
        for column, w in zip(_columns(weights, f"{source}: frames[{i}]"), weights.values()):
            out[i, column] = float(w)
    return out, float(fps)


def _read_csv(text: str, source: str) -> tuple[np.ndarray, float]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0] or rows[0][0].strip() != "time":
        raise CurvesError(f"{source}: the first row must be the header time,<ARKit names>")
    columns = _columns([n.strip() for n in rows[0][1:]], source)
    rows = [r for r in rows[1:] if r]
    try:
        table = np.array(rows, np.float64).reshape(len(rows), len(columns) + 1)
    except ValueError:
        raise CurvesError(f"{source}: every row must hold {len(columns) + 1} numbers "
                          "(time, then one weight per name)") from None
    out = np.zeros((len(rows), N_EXPRESSIONS), np.float32)
    out[:, columns] = table[:, 1:]
    times = table[:, 0]
    if len(times) < 2:
        return out, float(FPS)
    if not np.all(np.diff(times) > 0):
        raise CurvesError(f"{source}: times must increase from row to row")
    fps = (len(times) - 1) / (times[-1] - times[0])
    return out, float(np.round(fps, 3))

