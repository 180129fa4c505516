"""Limits on the work one input may ask for: every cap in one place, named, with units.

A motion keyframe at ``t = 1e7`` s, a million keyframes or 100 000 characters of text
would otherwise run for hours or allocate more memory than the machine has. Each limit
has one ``check_*`` helper that raises :class:`LimitError` (a ``ValueError``) naming the
input, the limit (by its name here) and the fix; the CLI, the Python API, the demo and
the server all call the same helpers.

Two tiers:

- ``MAX_*``: what one job may ask for from the CLI or the Python API (your machine, your
  time). An hour of speech takes ~1.6 GB at peak (docs/benchmarks.md §3), so two hours
  stays under ~3.5 GB.
- ``SERVICE_*``: what one request may ask of a shared service (``puppetry demo``,
  ``puppetry serve``), where other users wait behind it.

>>> from puppetry import limits
>>> limits.check_text("Hello there")                 # fine: returns None
>>> limits.check_text("a" * 20_000)                  # LimitError naming MAX_TEXT_CHARS
"""
from __future__ import annotations

import numbers

MB = 1024 * 1024  # bytes

# -- jobs (CLI and Python API) --------------------------------------------------------------
MAX_SPEECH_S = 2 * 3600.0      # s of speech in one animate job (audio file or --text)
MAX_VIDEO_S = 2 * 3600.0       # s of video in one job: motion files, presets, --duration
MAX_FPS = 120.0                # frames/s of any video or motion; must be > 0
MAX_FRAMES = 200_000           # frames in one video (2 h at 25 frames/s is 180 000)
MAX_KEYFRAMES = 100_000        # keyframes in one motion file (an hour at 25 frames/s, one per frame)
MAX_MOTION_BYTES = 64 * MB     # bytes of a motion JSON file (read before parsing)
MAX_TEXT_CHARS = 10_000        # characters of text to speak (~11 min of speech at ~15 characters/s)
MAX_IMAGE_PIXELS = 64_000_000  # px of a photo (width x height): 8000 x 8000, a 64 MP camera
MIN_SIZE_PX, MAX_SIZE_PX = 64, 2048  # output frame side (crop) or long side (full), pixels

# -- shared services (puppetry demo, puppetry serve), per request ---------------------------
SERVICE_MAX_SPEECH_S = 300.0        # s of speech (~4 min to render at 512 px on 2 cores)
SERVICE_MAX_TEXT_CHARS = 3000       # characters of typed text (~3 min of speech)
SERVICE_MAX_IMAGE_BYTES = 20 * MB   # bytes of an uploaded portrait
SERVICE_MAX_AUDIO_BYTES = 50 * MB   # bytes of an uploaded speech file (and of any upload)
SERVICE_MAX_IMAGE_PIXELS = 40_000_000  # px of an uploaded portrait (decoding 9000 x 9000
#   cost 5.6 s of CPU and 320 MB: a service refuses it before decoding)


class LimitError(ValueError):
    """An input asks for more work than a limit here allows; the message names the limit."""


def _over(what: str, amount: str, limit: str, name: str, fix: str) -> LimitError:
    return LimitError(f"{what} {amount}, over the limit of {limit} "
                      f"(puppetry.limits.{name}): {fix}")


def check_duration(seconds: float, what: str = "the video", *, limit: float = MAX_VIDEO_S,
                   name: str = "MAX_VIDEO_S", fix: str = "shorten it or split it into parts"
                   ) -> None:
    """``seconds`` of media must be finite and at most ``limit`` (named ``name`` in the error)."""
    if seconds != seconds:  # NaN
        raise LimitError(f"{what} has no finite length (NaN s): {fix}")
    if not seconds <= limit:
        raise _over(what, f"lasts {_duration(seconds)}", _duration(limit), name, fix)


def check_speech(seconds: float, what: str = "the speech", *, service: bool = False) -> None:
    """Speech of ``seconds`` for one job (or one service request with ``service``)."""
    limit, name = (SERVICE_MAX_SPEECH_S, "SERVICE_MAX_SPEECH_S") if service else \
        (MAX_SPEECH_S, "MAX_SPEECH_S")
    check_duration(seconds, what, limit=limit, name=name, fix="trim it or split it into parts")


def check_fps(fps: float, what: str = "the frame rate") -> None:
    """A frame rate in (0, MAX_FPS] frames/s."""
    if not 0 < fps <= MAX_FPS:
        raise LimitError(f"{what} is {fps:g} frames/s: use more than 0 and at most "
                         f"{MAX_FPS:g} (puppetry.limits.MAX_FPS), e.g. 25")


def check_frames(n_frames: float, what: str = "the video") -> None:
    """At most MAX_FRAMES frames in one video."""
    if not n_frames <= MAX_FRAMES:
        raise _over(what, f"has {n_frames:.0f} frames", f"{MAX_FRAMES} frames", "MAX_FRAMES",
                    "shorten it or lower the frame rate")


def check_video(seconds: float, fps: float, what: str = "the video") -> None:
    """A video of ``seconds`` at ``fps``: its rate, length and frame count."""
    check_fps(fps, f"{what}'s frame rate")
    check_duration(seconds, what)
    check_frames(seconds * fps, what)


def check_keyframes(n: int, what: str = "the motion file") -> None:
    """At most MAX_KEYFRAMES keyframes in one motion file."""
    if n > MAX_KEYFRAMES:
        raise _over(what, f"has {n} keyframes", f"{MAX_KEYFRAMES}", "MAX_KEYFRAMES",
                    "key fewer frames (values between keyframes are interpolated)")


def check_bytes(n_bytes: int, what: str, *, limit: int, name: str, fix: str) -> None:
    """A file or upload of ``n_bytes`` must be at most ``limit`` bytes (named ``name``)."""
    if n_bytes > limit:
        raise _over(what, f"is {_bytes(n_bytes)}", _bytes(limit), name, fix)


def check_text(text: str, what: str = "--text", *, service: bool = False) -> None:
    """Text to speak: at most MAX_TEXT_CHARS characters (SERVICE_MAX_TEXT_CHARS for a
    service request)."""
    limit, name = (SERVICE_MAX_TEXT_CHARS, "SERVICE_MAX_TEXT_CHARS") if service else \
        (MAX_TEXT_CHARS, "MAX_TEXT_CHARS")
    if len(text) > limit:
        raise _over(what, f"has {len(text)} characters", f"{limit} characters", name,
                    "shorten it or split it into several videos")


def check_pixels(width: int, height: int, what: str = "the image", *,
                 service: bool = False) -> None:
    """A photo of ``width x height`` px: at most MAX_IMAGE_PIXELS (SERVICE_MAX_IMAGE_PIXELS
    for an upload to a service). Call it with the header's size, before decoding."""
    limit, name = (SERVICE_MAX_IMAGE_PIXELS, "SERVICE_MAX_IMAGE_PIXELS") if service else \
        (MAX_IMAGE_PIXELS, "MAX_IMAGE_PIXELS")
    if width * height > limit:
        raise _over(what, f"is {width} x {height} px ({width * height / 1e6:.0f} million "
                    "pixels)", f"{limit / 1e6:.0f} million pixels", name,
                    "downscale it before use (a portrait needs no more than ~2000 px)")


def check_size(size: int, what: str = "--size") -> None:
    """An output frame size in MIN_SIZE_PX..MAX_SIZE_PX pixels."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or \
            not MIN_SIZE_PX <= size <= MAX_SIZE_PX:
        raise LimitError(f"{what} {size!r} is out of range: use {MIN_SIZE_PX}..{MAX_SIZE_PX} "
                         "pixels (puppetry.limits.MIN_SIZE_PX, MAX_SIZE_PX)")


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return f"{seconds} s"
    if abs(seconds) >= 3600:
        return f"{seconds:.0f} s ({seconds / 3600:.1f} h)"
    if abs(seconds) >= 120:
        return f"{seconds:.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:g} s"


def _bytes(n: float) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n:.0f} bytes"
