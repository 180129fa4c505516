"""Speech in: any common audio file as mono float32 at 16 kHz, in chunks.

- :func:`iter_audio` decodes with PyAV (FFmpeg bundled in the wheel) and yields chunks of
  about ``chunk_s`` seconds, so memory stays flat for hour-long recordings.
- :func:`load_audio` concatenates those chunks; :func:`audio_duration` reads the length.
- :func:`to_pcm16` / :func:`from_pcm16` convert to and from 16-bit PCM bytes, the format
  streamed over the network.

Every channel layout (mono, stereo, 5.1, ...) is downmixed with FFmpeg's matrix, scaled
so that it cannot clip, and every sample rate is resampled, both by FFmpeg's
libswresample. Video files give their first audio stream.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from . import limits
from .drive.frames import FPS  # video frame rate, frames/s

SAMPLE_RATE = 16000  # Hz, the rate every feature extractor expects
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640 samples per video frame at 25 fps
CHUNK_S = 30.0  # s, default length of the chunks that iter_audio yields
SHORT_SLACK_S = 0.25  # s a stream may decode short of the duration its header states ...
SHORT_FRACTION = 0.02  # ... or this fraction of it, whichever is more; else "truncated"
MIN_DECODED = 0.5  # fraction that must decode where the header's duration is an estimate
#   (an mp3 without a Xing/Info/VBRI frame: FFmpeg guesses from the first bit rate)
OGG_TAIL = 65_536  # bytes read from the end of an Ogg file: more than one page (<= 65 307)
PCM16_SCALE = 32768.0  # int16 full scale: float 1.0 <-> 32767, -1.0 <-> -32768
DOWNMIX = {"rematrix_maxval": "1.0"}  # libswresample: downmix weights sum to <= 1, so stereo
#   becomes (L + R) / 2 and 5.1 never clips (FFmpeg's own matrix sums to 3.4 for 5.1)
SUPPORTED = ("wav, flac, mp3, ogg/opus, m4a/aac, and the audio track of video files "
             "(mp4, mov, mkv, webm)")

PathLike = str | os.PathLike


class AudioError(ValueError):
    """An audio input is missing, unreadable or empty; the message names the file and the fix."""


def _open(path: PathLike) -> tuple[av.container.InputContainer, av.audio.stream.AudioStream]:
    """Open ``path`` and return it with its first audio stream, or raise :class:`AudioError`."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file {path} not found: check the path and file name")
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file: pass the file inside it")
    if path.stat().st_size == 0:
        raise AudioError(f"{path} is empty (0 bytes): record or export the audio again")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise AudioError(f"{path.name} is not a readable audio file ({reason}): "
                         f"supported are {SUPPORTED}") from None
    if not container.streams.audio:
        has_video = bool(container.streams.video)
        container.close()
        if has_video:
            raise AudioError(f"{path.name} has no audio track: use a video with sound, "
                             f"or pass the speech as a separate audio file")
        raise AudioError(f"{path.name} is not a readable audio file (no audio stream found): "
                         f"supported are {SUPPORTED}")
    return container, container.streams.audio[0]


def _stated_duration(path: Path, container, stream) -> tuple[float | None, bool]:
    """The duration the file's header states, s (None if none), and whether it is exact
    (else an estimate, checked with ``MIN_DECODED`` only)."""
    fmt = container.format.name
    if fmt == "wav":  # FFmpeg reports what the file holds; the header says what it should
        stated = _wav_data_seconds(path)
        if stated is not None:
            return stated, True
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        return seconds, not (fmt == "mp3" and not _mp3_length_header(path))
    if container.duration is not None:  # Matroska/WebM: the segment's duration
        seconds = container.duration / av.time_base
        if not container.streams.video:
            return seconds, True
        # with video, the audio may rightly end early; the whole file may not
        return seconds, _demuxed_end(path) < seconds - _slack(seconds)
    return None, False


def _slack(seconds: float) -> float:
    """How much shorter than ``seconds`` a whole stream may decode (else "truncated")."""
    return max(SHORT_SLACK_S, SHORT_FRACTION * seconds)


def _demuxed_end(path: Path) -> float:
    """The end time of the last packet of any stream, s (packets read, not decoded)."""
    end = 0.0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except av.error.FFmpegError:
        pass  # decoding reports it
    return end


def _wav_data_seconds(path: Path) -> float | None:
    """Seconds a RIFF/WAVE header's ``data`` chunk states (its size / the byte rate), or
    None (not RIFF, or a size of 0 / 0xFFFFFFFF that streaming writers leave)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate = None
        for _ in range(64):  # chunks before "data": fmt, LIST, fact, ...
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + size % 2)
                byte_rate = struct.unpack("<I", fmt[8:12])[0] if len(fmt) >= 12 else None
            elif cid == b"data":
                if not byte_rate or size in (0, 0xFFFFFFFF):
                    return None
                return size / byte_rate
            else:
                f.seek(size + size % 2, os.SEEK_CUR)
    return None


def _mp3_length_header(path: Path) -> bool:
    """Whether an mp3 states its exact length (a Xing/Info or VBRI frame after any ID3v2)."""
    with open(path, "rb") as f:
        head = f.read(10)
        skip = 0
        if head[:3] == b"ID3" and len(head) == 10:  # syncsafe size, 7 bits a byte
            skip = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        f.seek(skip)
        first = f.read(4096)
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


def _ogg_cut(path: Path) -> str | None:
    """Why an Ogg file is cut short, or None: a whole stream ends with a complete page
    flagged end-of-stream; a truncated file ends inside a page, or on one without it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - OGG_TAIL))
        base, tail = max(0, size - OGG_TAIL), f.read()
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        head = tail[pos:pos + 27]
        if len(head) == 27 and head[4] == 0 and len(tail) >= pos + 27 + head[26]:
            end = base + pos + 27 + head[26] + sum(tail[pos + 27:pos + 27 + head[26]])
            if end > size:
                return f"its last page is cut off after {size - base - pos} bytes"
            if not head[5] & 0x04:
                return "it ends without the end-of-stream page"
            return None
        pos = tail.rfind(b"OggS", 0, pos)
    return "no complete Ogg page was found at its end"


def iter_audio(path: PathLike, chunk_s: float = CHUNK_S, *,
               service: bool = False) -> Iterator[np.ndarray]:
    """Decode ``path`` to mono 16 kHz, yielding ``float32[n]`` chunks of ``chunk_s`` seconds.

    Every chunk but the last holds exactly ``round(chunk_s * SAMPLE_RATE)`` samples, in
    -1..1 (samples beyond full scale, which float files can hold, are clipped). Only one
    chunk (plus one decoded packet) is in memory at a time. The file is opened and checked
    before this returns, so a missing, unreadable or cut-off (Ogg) file, or one whose header
    states more than ``limits.MAX_SPEECH_S`` seconds (``SERVICE_MAX_SPEECH_S`` with
    ``service``, for a request to the demo or server), raises
    :class:`AudioError` / :class:`~puppetry.limits.LimitError` here, not at the first
    ``next()``. During iteration: a stream that breaks while decoding, holds no samples,
    NaN or infinite samples, runs past that limit, or decodes short of the duration its
    header states (truncated: by more than ``SHORT_SLACK_S`` or ``SHORT_FRACTION``;
    ``MIN_DECODED`` where that duration is an estimate) raises it.
    """
    if not chunk_s > 0:
        raise AudioError(f"chunk_s={chunk_s}: use a chunk length above 0 seconds")
    chunk = max(1, round(chunk_s * SAMPLE_RATE))  # samples per chunk
    container, stream = _open(path)
    name = Path(path).name
    try:
        header_s, exact = _stated_duration(Path(path), container, stream)
        cut = _ogg_cut(Path(path)) if container.format.name == "ogg" else None
        if cut:
            raise AudioError(f"{name} is not a readable audio file: it is truncated or "
                             f"corrupt ({cut}); export or copy it again")
        if header_s is not None:
            limits.check_speech(header_s, f"{name} (as its header states)", service=service)
    except BaseException:
        container.close()
        raise
    max_samples = (limits.SERVICE_MAX_SPEECH_S if service else limits.MAX_SPEECH_S) * SAMPLE_RATE

    def chunks() -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE,
                                      options=DOWNMIX)
        pending: list[np.ndarray] = []  # resampled pieces not yet yielded
        n_pending = n_done = 0  # samples pending, samples yielded

        def take(frames) -> None:
            nonlocal n_pending
            for out in frames:
                pending.append(out.to_ndarray().reshape(-1))
                n_pending += out.samples

        try:
            for frame in container.decode(stream):
                frame.pts = None  # samples are concatenated; timestamp gaps are ignored
                take(resampler.resample(frame))
                if n_done + n_pending > max_samples:
                    _over_limit((n_done + n_pending) / SAMPLE_RATE)
                while n_pending >= chunk:
                    buf = np.concatenate(pending)
                    _check_finite(buf[:chunk], n_done)
                    yield buf[:chunk]
                    pending[:] = [buf[chunk:]]
                    n_pending -= chunk
                    n_done += chunk
            take(resampler.resample(None))  # flush the resampler's delay line
        except av.error.FFmpegError as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise AudioError(f"{name} is not a readable audio file (decoding failed after "
                             f"{(n_done + n_pending) / SAMPLE_RATE:.2f} s: {reason}): "
                             f"supported are {SUPPORTED}") from None
        finally:
            container.close()
        if n_done + n_pending == 0:
            raise AudioError(f"{name} contains no audio samples (zero length): "
                             f"record or export the audio again")
        if n_done + n_pending > max_samples:
            _over_limit((n_done + n_pending) / SAMPLE_RATE)
        decoded_s = (n_done + n_pending) / SAMPLE_RATE
        if header_s is not None:
            short = header_s - _slack(header_s) if exact else MIN_DECODED * header_s
            if decoded_s < short:
                raise AudioError(f"{name} is not a readable audio file: it is truncated or "
                                 f"corrupt (only {decoded_s:.2f} s of the {header_s:.2f} s its "
                                 f"header states could be decoded); export or copy it again")
        if n_pending:
            last = np.concatenate(pending).astype(np.float32, copy=False)
            _check_finite(last, n_done)
            yield last

    def _check_finite(buf: np.ndarray, start: int) -> None:
        if not np.isfinite(buf).all():
            at = (start + int(np.argmin(np.isfinite(buf)))) / SAMPLE_RATE
            raise AudioError(f"{name} is corrupt: NaN or infinite samples from {at:.2f} s: "
                             f"export it again as 16-bit PCM or a compressed format")
        np.clip(buf, -1.0, 1.0, out=buf)   # a float file may hold 1e30: full scale is 1

    def _over_limit(seconds: float) -> None:
        limits.check_speech(seconds, f"{name} (decoded so far)", service=service)

    return chunks()


def load_audio(path: PathLike, *, service: bool = False) -> np.ndarray:
    """Decode a whole file as ``float32[N]``, mono, ``SAMPLE_RATE`` Hz, -1..1.

    Holds the whole signal (64 kB per second, 230 MB per hour): for very long inputs
    iterate over :func:`iter_audio` instead. Files over the speech limit (``service``: a
    shared service's), truncated or corrupt are refused (:func:`iter_audio`).
    """
    return np.concatenate(list(iter_audio(path, service=service))).astype(np.float32, copy=False)


def audio_duration(path: PathLike) -> float:
    """Length of the first audio track of ``path`` in seconds.

    Read from the container's header when it states one (instant); otherwise the file is
    decoded in chunks (memory stays flat).
    """
    container, stream = _open(path)
    with container:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None and not container.streams.video:
            return container.duration / av.time_base  # only trusted without a video track
    return sum(len(c) for c in iter_audio(path)) / SAMPLE_RATE


def to_pcm16(audio: np.ndarray) -> bytes:
    """``float32[N]`` in -1..1 to little-endian signed 16-bit PCM bytes (2N bytes), clipped."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise AudioError(f"audio has shape {audio.shape}: pass mono samples float32[N]")
    pcm = np.clip(np.round(audio * PCM16_SCALE), -PCM16_SCALE, PCM16_SCALE - 1)
    return pcm.astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit PCM bytes (2N) to ``float32[N]`` in -1..1."""
    if len(data) % 2:
        raise AudioError(f"PCM16 data has an odd length ({len(data)} bytes): "
                         f"send whole 2-byte samples")
    return (np.frombuffer(data, "<i2").astype(np.float32) / PCM16_SCALE)
