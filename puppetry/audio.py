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
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from .drive.frames import FPS  # video frame rate, frames/s

SAMPLE_RATE = 16000  # Hz, the rate every feature extractor expects
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640 samples per video frame at 25 fps
CHUNK_S = 30.0  # s, default length of the chunks that iter_audio yields
MIN_DECODED = 0.5  # fraction of the header's duration that must decode, else "corrupt"
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


def iter_audio(path: PathLike, chunk_s: float = CHUNK_S) -> Iterator[np.ndarray]:
    """Decode ``path`` to mono 16 kHz, yielding ``float32[n]`` chunks of ``chunk_s`` seconds.

    Every chunk but the last holds exactly ``round(chunk_s * SAMPLE_RATE)`` samples, in
    -1..1 (resampling can overshoot a full-scale click a little). Only one chunk (plus one decoded packet) is in memory at a time. The file is
    opened and checked before this returns, so a missing or unreadable file raises
    :class:`AudioError` here, not at the first ``next()``. A stream that breaks while
    decoding, holds no samples, or decodes to less than ``MIN_DECODED`` of the duration
    its header states (garbage after a valid header) raises it during iteration.
    """
    if not chunk_s > 0:
        raise AudioError(f"chunk_s={chunk_s}: use a chunk length above 0 seconds")
    chunk = max(1, round(chunk_s * SAMPLE_RATE))  # samples per chunk
    container, stream = _open(path)
    name = Path(path).name
    header_s = float(stream.duration * stream.time_base) \
        if stream.duration is not None and stream.time_base is not None else None

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
                while n_pending >= chunk:
                    buf = np.concatenate(pending)
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
        decoded_s = (n_done + n_pending) / SAMPLE_RATE
        if header_s is not None and decoded_s < MIN_DECODED * header_s:
            raise AudioError(f"{name} is not a readable audio file (only {decoded_s:.2f} s of "
                             f"the {header_s:.2f} s its header states could be decoded: it is "
                             f"truncated or corrupt): export it again; supported are "
                             f"{SUPPORTED}")
        if n_pending:
            yield np.concatenate(pending).astype(np.float32, copy=False)

    return chunks()


def load_audio(path: PathLike) -> np.ndarray:
    """Decode a whole file as ``float32[N]``, mono, ``SAMPLE_RATE`` Hz, -1..1.

    Holds the whole signal (64 kB per second, 230 MB per hour): for very long inputs
    iterate over :func:`iter_audio` instead.
    """
    return np.concatenate(list(iter_audio(path))).astype(np.float32, copy=False)


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
