"""Image and video files in and out: the only module that touches media formats.

- :func:`load_image` reads any still photo as ``uint8[H x W x 3]`` RGB.
- :func:`write_video` streams RGB frames (and optional audio) to a video file in the
  format its name asks for (``VIDEO_FORMATS``: MP4 by default, MOV, MKV, WebM, GIF);
  :func:`check_video_path` refuses any other name before work starts.
- :func:`write_image`, :func:`read_video_frames`, :func:`video_info` and
  :func:`contact_sheet` cover the rest.

Every writer is atomic: it encodes to a hidden temp file beside the target and moves it
into place only on success, so a failed run never leaves a half-written file nor
damages the file that was there before.
"""
from __future__ import annotations

import itertools
import os
import re
import secrets
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from fractions import Fraction
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
import soundfile as sf
from PIL import Image, ImageOps, UnidentifiedImageError

from . import provenance
from . import limits
from .drive.frames import FPS  # default video frame rate, frames/s

BACKGROUND = (255, 255, 255)  # RGB behind transparent pixels
PRESET = "superfast"  # x264 speed preset: leaves the CPU to rendering; CRF keeps the quality
CRF = 18  # x264 constant rate factor: 0 lossless .. 51 worst; 18 ~ visually lossless
AUDIO_BITRATE = "128k"  # AAC bit rate, bits/s
STDERR_TAIL = 2000  # characters of ffmpeg's log quoted in errors
GAP = 2  # px between contact-sheet tiles
GAP_GRAY = 24  # 0..255, colour of the contact-sheet gaps
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # write_image suffixes
VP9_CRF = 32  # libvpx-vp9 constant quality for .webm: 0 best .. 63 worst (x264's 18 looks alike)
OPUS_BITRATE = "96k"  # Opus bit rate in .webm, bits/s
# Video files write_video makes, by the name's suffix (a name without one gets MP4):
# ffmpeg muxer, what is inside (for messages), whether it carries sound.
VIDEO_FORMATS: dict[str, tuple[str, str, bool]] = {
    ".mp4": ("mp4", "H.264 + AAC", True),
    ".mov": ("mov", "H.264 + AAC", True),
    ".mkv": ("matroska", "H.264 + AAC", True),
    ".webm": ("webm", "VP9 + Opus", True),
    ".gif": ("gif", "animated GIF, no sound", False),
}

PathLike = str | os.PathLike


class ImageError(ValueError):
    """An input image is missing, unreadable or unusable; the message names the fix."""


def load_image(path: PathLike) -> np.ndarray:
    """Read a photo as ``uint8[H x W x 3]`` RGB, upright as its EXIF orientation says.

    Grayscale, palette, CMYK and 16-bit/float images are converted; transparent pixels
    are composited over white. Raises :class:`ImageError` naming the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path} not found: check the path and file name")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image: pass the photo file inside it")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes): copy or export the photo again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked here:
            with Image.open(path) as im:
                limits.check_pixels(im.width, im.height, str(path))  # from the header
                im.load()  # decode now so that truncated or corrupt data fails here
                if _is_animated(im):
                    warnings.warn(f"{path.name} is animated: its first frame is used")
                return _to_rgb(ImageOps.exif_transpose(im))
    except limits.LimitError as e:
        raise ImageError(str(e)) from None
    except Image.DecompressionBombError as e:  # PIL's own guard, met before the header's size
        pixels = re.search(r"\((\d+) pixels\)", str(e))  # is ours to check: our limit's words
        size = f" ({int(pixels[1]) / 1e6:.0f} million pixels)" if pixels else ""
        raise ImageError(f"{path} is too large{size}: the limit is "
                         f"{limits.MAX_IMAGE_PIXELS / 1e6:.0f} million pixels "
                         "(puppetry.limits.MAX_IMAGE_PIXELS); downscale it before use "
                         "(a portrait needs no more than ~2000 px)") from None
    except UnidentifiedImageError:
        reason = "cannot identify image file"
    except (OSError, SyntaxError, ValueError) as e:  # PIL's ways of saying "corrupt"
        reason = str(e) or type(e).__name__
    raise ImageError(f"{path} is not a readable image ({reason}): use a JPEG or PNG photo")


def _is_animated(im: Image.Image) -> bool:
    """Whether an image file holds more frames than the first (read up to the second only)."""
    try:
        return bool(getattr(im, "is_animated", False))     # PIL seeks back to frame 0
    except (OSError, EOFError, ValueError, SyntaxError):   # a broken second frame: not used
        im.seek(0)
        return False


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> ``uint8[H x W x 3]``; 16-bit and float gray are scaled, not clipped."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        gray = np.asarray(im, dtype=np.float64)
        # Full scale: 65535 for 16-bit files; for 32-bit int/float, the smallest usual
        # range that holds the data (0..1 float, 0..255, 0..65535), else the data's peak.
        ranges = (65535.0,) if im.mode.startswith("I;16") else (
            (1.0, 255.0, 65535.0) if im.mode == "F" else (255.0, 65535.0))
        top = float(gray.max(initial=0.0))
        peak = next((r for r in ranges if top <= r), top)
        gray = np.clip(gray / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.has_transparency_data:  # an alpha band or a transparent palette entry
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba)
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ValueError as e:
        raise OSError(f"unsupported colour mode {im.mode}") from e


class OutputError(ValueError):
    """An output path that must not be written; the message names the path and the fix."""


def check_output(path: PathLike, inputs: Sequence[PathLike] = (), *, force: bool = False) -> Path:
    """Refuse an output path before any work is done; returns it as a Path.

    Refused, with :class:`OutputError`: one of ``inputs`` (outputs never overwrite inputs,
    also through a link); a folder; anything that exists but is not a regular file (a
    device such as ``/dev/null``, a pipe, a socket: the temp-file rename would replace the
    node itself); an existing read-only file, unless ``force`` (as ``cp`` refuses it).
    """
    path = Path(path)
    check_not_input(path, inputs)
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give a file name such as {path / 'out.mp4'}")
    if os.path.lexists(path):
        try:
            st = path.stat()                                   # through a link: what it names
        except OSError:
            st = None                                          # a dangling link: replaced
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise OutputError(f"refusing to write {path}: it is a {_kind(st.st_mode)}, not a "
                              "regular file; give a new file name such as out.mp4")
        if st is not None and not force and _read_only(path, st):
            raise OutputError(f"refusing to overwrite {path}: it is read-only; choose another "
                              "name, make it writable (chmod u+w), or pass --force (force=True)")
    return path


def _kind(mode: int) -> str:
    return ("character device" if stat.S_ISCHR(mode) else "block device" if stat.S_ISBLK(mode)
            else "named pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "special file")


def _read_only(path: Path, st: os.stat_result) -> bool:
    """No write permission for us: for root (whom ``os.access`` lets write anything), no
    write bit at all, as ``cp -i`` and ``rm`` treat it."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    return not os.access(path, os.W_OK)


@contextmanager
def atomic_path(path: PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a hidden temp path beside ``path``; move it onto ``path`` if the block
    succeeds (:func:`check_output` first: never onto a device or, unless ``force``, a
    read-only file)."""
    path = check_output(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: PathLike, text: str, *, force: bool = False) -> Path:
    """Atomically write UTF-8 ``text`` to ``path`` (:func:`atomic_path`)."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _check_frame(frame, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what} has shape {a.shape} and dtype {a.dtype}: expected uint8 "
                         "H x W x 3 RGB (use np.clip(x * 255, 0, 255).astype(np.uint8))")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{what} is {a.shape}, but the first frame is {shape}: "
                         "give every frame the same size")
    return a


def check_not_input(path: PathLike, inputs: Sequence[PathLike]) -> None:
    """Raise OutputError if ``path`` is one of ``inputs`` (outputs never overwrite inputs)."""
    for src in inputs:
        if Path(path).resolve() == Path(src).resolve():
            raise OutputError(f"refusing to write {path}: it is one of the inputs; "
                             "choose another output path")


def write_image(path: PathLike, rgb: np.ndarray, *, force: bool = False) -> Path:
    """Atomically write ``rgb : uint8[H x W x 3]`` as PNG or JPEG, chosen by the suffix
    (``force``: overwrite a read-only file)."""
    path = Path(path)
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {path}: use a .png or .jpg file name")
    image = Image.fromarray(_check_frame(rgb, "image"))
    with atomic_path(path, force=force) as tmp:
        image.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def check_video_path(path: PathLike) -> str:
    """The suffix of a video output name that :func:`write_video` can write (``".mp4"`` for a
    name without one), or :class:`OutputError` listing the formats: run it before any work."""
    suffix = Path(path).suffix.lower() or ".mp4"
    if suffix not in VIDEO_FORMATS:
        formats = ", ".join(f"{k} ({v[1]})" for k, v in VIDEO_FORMATS.items())
        raise OutputError(f"cannot write {path}: {suffix} is not a video format puppetry "
                          f"writes; name the output with one of {formats}")
    return suffix


def _encoder_args(suffix: str, crf: int, sound: bool) -> list[str]:
    """ffmpeg's codec and muxer arguments for a ``VIDEO_FORMATS`` suffix (input 0 is the
    raw video, input 1 the audio when ``sound``)."""
    muxer = VIDEO_FORMATS[suffix][0]
    if muxer == "gif":  # a palette per frame (no whole-clip buffering), dithered
        return ["-filter_complex", "[0:v]split[a][b];[a]palettegen=stats_mode=single[p];"
                "[b][p]paletteuse=new=1", "-loop", "0", "-f", "gif"]
    maps = ["-map", "0:v", "-map", "1:a"] if sound else []
    if muxer == "webm":  # VP9 in real-time mode: ~4x faster than "good", ~same size here
        return maps + (["-c:a", "libopus", "-b:a", OPUS_BITRATE] if sound else []) + [
            "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1",
            "-crf", str(VP9_CRF), "-b:v", "0", "-pix_fmt", "yuv420p", *provenance.ffmpeg_args(muxer),
            "-f", "webm"]
    return maps + (["-c:a", "aac", "-b:a", AUDIO_BITRATE] if sound else []) + [
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(crf), "-pix_fmt", "yuv420p",
        *(["-movflags", "+faststart+use_metadata_tags"] if muxer in ("mp4", "mov") else []),
        *provenance.ffmpeg_args(muxer), "-f", muxer]


def _widen_pipe(pipe, nbytes: int) -> None:
    """Let a pipe hold ``nbytes`` (up to the system's limit, 1 MB by default on Linux), so
    a whole frame goes to ffmpeg in one write rather than sixteen 64 KB handoffs."""
    with suppress(OSError, AttributeError, ValueError):
        import fcntl
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, max(nbytes, 1 << 16))


def write_video(path: PathLike, frames: Iterable[np.ndarray], fps: float = FPS,
                audio: PathLike | tuple[np.ndarray, int] | None = None, *, crf: int = CRF,
                inputs: Sequence[PathLike] = (), force: bool = False) -> Path:
    """Stream frames to a video file, with optional audio, in the format ``path`` names.

    ``.mp4`` (also a name without suffix), ``.mov`` and ``.mkv``: H.264 (yuv420p) + AAC;
    ``.webm``: VP9 + Opus; ``.gif``: an animated GIF, which has no sound (a warning says
    the audio is left out). Any other suffix raises :class:`OutputError` listing these.

    frames : iterable of uint8[H x W x 3] RGB, all one size; consumed one at a time. Odd
             sizes are padded by one edge pixel, as yuv420p needs even ones.
    fps    : frames/s.
    audio  : an audio file, or ``(samples float32[N], sample_rate Hz)`` mono; it starts
             with the first frame and is kept whole (the file lasts as long as the longer).
    crf    : H.264's constant rate factor (WebM uses ``VP9_CRF``).
    inputs : files this video is made from; writing onto one of them is refused.
    force  : overwrite a read-only file (a device, a folder or an input: never).

    The file appears at ``path`` only when encoding succeeded; returns ``path``.
    """
    path = Path(path)
    # 1. Refuse to overwrite the inputs (the audio file counts as one).
    audio_file = None if audio is None or isinstance(audio, tuple) else Path(audio)
    check_output(path, [*inputs, *([audio_file] if audio_file else [])], force=force)
    suffix = check_video_path(path)
    if not (fps > 0 and 0 <= crf <= 51):
        raise ValueError(f"cannot write {path} at fps={fps}, crf={crf}: use fps > 0 and "
                         "crf in 0..51 (lower is better quality)")
    if audio_file is not None and not audio_file.is_file():
        raise FileNotFoundError(f"audio file {audio_file} not found: check the path")
    if isinstance(audio, tuple):
        samples, sample_rate = np.asarray(audio[0], np.float32), int(audio[1])
        if samples.ndim != 1 or samples.size == 0 or sample_rate <= 0:
            raise ValueError(f"audio is {samples.shape} samples at {sample_rate} Hz: pass "
                             "(samples float32[N], sample_rate Hz), mono, N > 0")
    # 2. Peek at the first frame for the size.
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}: pass at least one H x W x 3 frame")
    shape = _check_frame(first, "frame 0").shape
    h, w = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
    sound = audio is not None and VIDEO_FORMATS[suffix][2]
    if audio is not None and not sound:
        warnings.warn(f"{path.name}: {VIDEO_FORMATS[suffix][1]}: the speech is left out "
                      "(name the output .mp4 or .webm to keep it)", stacklevel=2)
    with tempfile.TemporaryDirectory() as scratch, atomic_path(path, force=force) as tmp, \
            tempfile.TemporaryFile() as log:
        # 3. Build the ffmpeg command: raw RGB on stdin, audio from a file.
        if isinstance(audio, tuple) and sound:
            audio_file = Path(scratch) / "audio.wav"
            sf.write(audio_file, samples, sample_rate, subtype="FLOAT")
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", str(Fraction(fps).limit_denominator(1001)), "-i", "-"]
        if sound:
            cmd += ["-i", str(audio_file)]
        cmd += [*_encoder_args(suffix, crf, sound), str(tmp)]
        # 4. Stream the frames; stop ffmpeg on any error so the temp file can go.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=log)
        _widen_pipe(proc.stdin, 3 * w * h)
        try:
            for i, frame in enumerate(itertools.chain([first], frames)):
                a = provenance.embed(_check_frame(frame, f"frame {i}", shape))  # a marked copy
                if a.shape[:2] != (h, w):
                    a = np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1]), (0, 0)), mode="edge")
                proc.stdin.write(memoryview(np.ascontiguousarray(a)))
        except BrokenPipeError:
            pass  # ffmpeg quit early; its exit code and log below say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with suppress(OSError):
                proc.stdin.close()
        if proc.wait() != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip()[-STDERR_TAIL:]
            raise RuntimeError(f"ffmpeg could not write {path} (exit {proc.returncode}): {tail}")
        if VIDEO_FORMATS[suffix][0] == "gif":   # ffmpeg writes no tags into a GIF
            provenance.tag_gif(tmp)
    return path


def _open_video(path: PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} not found: check the path")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise ValueError(f"{path} is not a readable video ({e}): use an MP4 file") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream: use a video file, not audio only")
    return container


def read_video_frames(path: PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of a video as ``uint8[H x W x 3]`` RGB, one at a time."""
    container = _open_video(path)  # opened now, so a bad path fails at the call

    def frames() -> Iterator[np.ndarray]:
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")

    return frames()


def video_info(path: PathLike) -> dict:
    """Describe a video file.

    Returns ``dict(fps, n_frames, width, height, duration, has_audio, audio_duration)``:
    fps in frames/s, width and height in px, durations in seconds (``duration`` is the
    video's, ``n_frames / fps``; ``audio_duration`` is None without audio).
    """
    with _open_video(path) as container:
        video = container.streams.video[0]
        fps = float(video.average_rate or video.guessed_rate or 0)
        n_frames = video.frames or sum(1 for p in container.demux(video) if p.size)
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_duration = None
        if audio is not None and audio.duration is not None:
            audio_duration = float(audio.duration * audio.time_base)
        return dict(fps=fps, n_frames=n_frames, width=video.codec_context.width,
                    height=video.codec_context.height,
                    duration=n_frames / fps if fps else 0.0,
                    has_audio=audio is not None, audio_duration=audio_duration)


def contact_sheet(frames: Sequence[np.ndarray], cols: int = 4, rows: int = 4, *,
                  labels: Sequence[str] | None = None, tile: int = 256) -> np.ndarray:
    """Tile ``rows * cols`` frames, evenly spaced over ``frames``, into one RGB image.

    frames : sequence of uint8[H x W x 3] RGB.
    labels : one string per frame in ``frames`` (e.g. ``f"t={i / fps:.2f}s"``), drawn on
             the tiles that show those frames.
    tile   : tile width in px; the height keeps the first frame's aspect ratio.
    Returns uint8[R * (th + GAP) - GAP x cols * (tile + GAP) - GAP x 3], with th the tile
    height and R = rows, or fewer when there are fewer frames than tiles.
    """
    if len(frames) == 0:
        raise ValueError("contact_sheet needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"got {len(labels)} labels for {len(frames)} frames: "
                         "give one label per frame")
    n = min(rows * cols, len(frames))
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    h0, w0 = _check_frame(frames[0], "frame 0").shape[:2]
    th = max(1, round(h0 * tile / w0))
    rows = -(-n // cols)
    sheet = np.full((rows * (th + GAP) - GAP, cols * (tile + GAP) - GAP, 3), GAP_GRAY, np.uint8)
    scale = tile / 512  # font size that reads well at any tile width
    for k, i in enumerate(picks):
        img = cv2.resize(_check_frame(frames[i], f"frame {i}"), (tile, th),
                         interpolation=cv2.INTER_AREA)
        if labels is not None:
            for color, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined text
                cv2.putText(img, str(labels[i]), (4, th - 6), cv2.FONT_HERSHEY_SIMPLEX,
                            scale, color, thick, cv2.LINE_AA)
        y, x = (k // cols) * (th + GAP), (k % cols) * (tile + GAP)
        sheet[y:y + th, x:x + tile] = img
    return sheet
