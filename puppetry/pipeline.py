"""End-to-end jobs, as short numbered steps over library calls."""
from __future__ import annotations

import ctypes
import mmap
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .drive.frames import Motion
from .drive.motion import resolve_motion
from .io import check_not_input, write_video
from .portrait import Portrait, load_portrait
from .render.config import RenderConfig


@dataclass(frozen=True)
class RenderJob:
    """Knobs of ``puppetry render`` (override with ``dataclasses.replace``)."""

    size: int = 512            # canvas side (crop) or long side (full), pixels
    frame: str = "crop"        # "crop" around the head, or the "full" photo
    fps: float = 25.0          # frame rate for presets; a motion file sets its own
    duration: float = 4.0      # seconds, for presets
    seed: int = 0              # for presets with random idle motion
    renderer: RenderConfig = field(default_factory=RenderConfig)


def render(portrait: Portrait, motion: Motion, config: RenderConfig = RenderConfig(),
           workers: int | None = None, *, lend: bool = False) -> Iterator[np.ndarray]:
    """Frames of ``portrait`` driven by ``motion``: an iterator of uint8[H x W x 3], in order.

    Frames are independent, so long motions are rendered by ``workers`` forked processes
    (default: one per CPU core, at most 2), each with one torch thread. With ``lend``,
    such frames are lent, not given: each is valid only until the next is asked for (for
    a consumer that writes each frame out at once, like ``write_video``: no copy).

    >>> p = puppetry.load_portrait("me.jpg")
    >>> frames = list(puppetry.render(p, puppetry.preset("nod")))
    """
    from .render.warp import WarpRenderer
    renderer = WarpRenderer(portrait, config)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers < 2 or len(motion) < PARALLEL_MIN_FRAMES or "fork" not in mp.get_all_start_methods():
        yield from renderer.render(motion)
        return
    # frames come back through a ring of shared buffers, not pickled through a pipe
    # (pickles cost ~0.2 s per 130 frames at 512²): frame i goes into slot i % SLOTS once
    # the frame that used the slot before has been taken
    ctx = mp.get_context("fork")
    h, w = renderer.size
    ring = mmap.mmap(-1, RING_SLOTS * h * w * 3)          # anonymous, shared with the forks
    slots = np.frombuffer(ring, np.uint8).reshape(RING_SLOTS, h, w, 3)
    taken, cond = ctx.RawValue("q", 0), ctx.Condition()
    global _JOB
    _JOB = (renderer, motion, slots, taken, cond)  # inherited by the forked workers, never pickled
    try:
        with ctx.Pool(workers, initializer=_start_worker) as pool:
            for slot in pool.imap(_render_one, range(len(motion)), chunksize=PARALLEL_CHUNK):
                if lend:
                    yield slots[slot]             # used by the caller before it asks again
                    frame = None
                else:
                    frame = slots[slot].copy()
                with cond:
                    taken.value += 1
                    cond.notify_all()
                if frame is not None:
                    yield frame
    finally:
        _JOB = None                       # also when the caller stops early
        del slots
        with suppress(BufferError):       # a view still held (a traceback): freed with it
            ring.close()


PARALLEL_MIN_FRAMES = 50   # shorter motions render in this process
PARALLEL_CHUNK = 5         # frames a worker renders per task
RING_SLOTS = 16            # shared frame buffers (>= 2 chunks per worker in flight)
_JOB = None


def _start_worker() -> None:
    import torch
    torch.set_num_threads(1)
    _start_helper()


def _start_helper() -> None:
    """Set up a short-lived forked process that shares few cores with its siblings."""
    keep_freed_memory()
    one_blas_thread()


def one_blas_thread() -> None:
    """Make each OpenBLAS loaded in this process (numpy's, OpenCV's, SciPy's) run on one
    thread.

    numpy's small products and solves (a frame's pose, its skull's inverse) wake OpenBLAS's
    thread pool, whose threads then spin in ``sched_yield`` for a while after each call:
    in a render worker forked on a 2-core machine that took a second core, doubling the
    worker's CPU time for the same frames. A no-op where no OpenBLAS is loaded or
    ``/proc`` is missing.
    """
    for lib in openblas_libraries():
        for name in ("openblas_set_num_threads64_", "openblas_set_num_threads",
                     "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads"):
            if hasattr(lib, name):
                getattr(lib, name)(1)
                break


def openblas_libraries() -> list[ctypes.CDLL]:
    """Every OpenBLAS library loaded in this process (from ``/proc/self/maps``; none where
    it is missing), opened again: the same library, not a copy."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {fields[5].rstrip("\n") for fields in (line.split(maxsplit=5) for line in maps)
                     if len(fields) == 6}                        # the 6th field: a path, spaces kept
    except OSError:
        return []
    libs = []
    for path in sorted(p for p in paths if "openblas" in p.rsplit("/", 1)[-1]):
        with suppress(OSError):
            libs.append(ctypes.CDLL(path))
    return libs


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    A frame's tensors are megabytes each; glibc serves blocks that large straight from the
    kernel (mmap) and returns them on free, so every frame faulted in ~10 MB of fresh
    zeroed pages: ~2700 page faults and a third of a render worker's time in the kernel.
    For short-lived processes only (the render workers, the helper beside the speech
    stage): the process keeps its peak heap until it exits (in the main process of an
    hour-long job that raised the peak from 1.6 to 2.0 GB). A no-op where libc is not
    glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)     # blocks below 256 MB from the heap
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)       # and the heap is not trimmed
    except (OSError, AttributeError):
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's malloc.h


def _render_one(i: int) -> int:
    """In a worker: render frame ``i`` into its ring slot; returns the slot."""
    renderer, motion, slots, taken, cond = _JOB
    with cond:
        cond.wait_for(lambda: taken.value > i - len(slots))   # the slot's last frame was taken
    renderer.render_frame(motion[i], out=slots[i % len(slots)])
    return i % len(slots)


def render_video(portrait_path, motion_spec, out_path, job: RenderJob = RenderJob()) -> dict:
    """``puppetry render``: portrait + motion (preset name or JSON path) -> mp4.

    Returns timings in seconds and the frame count.
    """
    t0 = time.perf_counter()
    # 1. cheap checks first: the output must not be an input; the motion must parse
    inputs = [p for p in (portrait_path, motion_spec) if Path(str(p)).is_file()]
    check_not_input(out_path, inputs)
    motion = resolve_motion(motion_spec, duration=job.duration, fps=job.fps, seed=job.seed)
    # 2. the portrait: read, track, segment, fit
    portrait = load_portrait(portrait_path, size=job.size, frame=job.frame)
    t1 = time.perf_counter()
    # 3. render and encode, streaming frame by frame
    write_video(out_path, render(portrait, motion, job.renderer, lend=True), fps=motion.fps, inputs=inputs)
    t2 = time.perf_counter()
    return {"frames": len(motion), "duration_s": motion.duration, "prepare_s": t1 - t0,
            "render_encode_s": t2 - t1, "total_s": t2 - t0}


@dataclass(frozen=True)
class AnimateJob:
    """Knobs of ``puppetry animate`` (override with ``dataclasses.replace``)."""

    size: int = 512               # canvas side (crop) or long side (full), pixels
    frame: str = "crop"           # "crop" around the head, or the "full" photo
    fps: float = 25.0             # video frames per second
    seed: int = 0                 # head motion, blinks and gaze
    still: bool = False           # no head motion (blinks stay)
    motion_scale: float = 1.0     # head motion amount
    intensity: float = 1.0        # mouth expression strength (1 = as predicted)
    blink_rate: float = 15.0      # blinks per minute (0 = none)
    pose_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)   # yaw, pitch, roll added, degrees
    model: str | None = None      # Audio2Expression checkpoint; None = the shipped one
    style: str | None = None      # person style JSON from ``puppetry fit-style``
    motion: str | None = None     # MOTION.json pose codes to combine with the generated ones
    motion_mode: str = "add"      # "add" to or "replace" the generated head motion
    voice: str = "espeak"         # TTS voice for --text
    renderer: RenderConfig = field(default_factory=RenderConfig)


def speech_to_motion(audio: np.ndarray, job: AnimateJob = AnimateJob(),
                     features: np.ndarray | Future | None = None) -> Motion:
    """16 kHz speech float32[N] -> the Motion that animates it (mouth, head, blinks, gaze),
    ``round(duration * fps)`` frames.

    ``features``: the model's speech features of ``audio`` if already computed (float32[T x D]
    from its extractor), or a Future of them, awaited once the model is loaded.
    """
    from .drive.motion import load_motion
    from .drive.speech_motion import combine_motion, speech_motion
    from .expression.speech import SpeechToExpression
    from .expression.style import Style

    # 1. mouth: Audio2Expression with its temporal filter; a person's style if given
    s2e = SpeechToExpression.load(job.model)
    if isinstance(features, Future):
        features = features.result()
    expressions = s2e(audio, fps=job.fps, features=features)
    if job.style:
        expressions = Style.load(job.style).apply(expressions)
    if job.intensity != 1.0:
        if not 0.0 <= job.intensity <= 3.0:
            raise ValueError(f"intensity {job.intensity}: use 0 (closed) to 3 (3x the predicted mouth)")
        expressions = np.clip(expressions * job.intensity, 0.0, 1.0)
    # 2. head motion, blinks and gaze from the audio, seeded
    motion = speech_motion(audio, expressions, job.fps, seed=job.seed,
                           motion_scale=job.motion_scale, still=job.still, blink_rate=job.blink_rate)
    if any(job.pose_offset):
        motion.rotation[:] += np.asarray(job.pose_offset, np.float32)
    # 3. the user's own pose codes, added or in place of the generated ones
    if job.motion:
        motion = combine_motion(motion, load_motion(job.motion), mode=job.motion_mode)
    return motion


def animate(portrait: Portrait, audio: np.ndarray, job: AnimateJob = AnimateJob()):
    """``puppetry.animate``: frames of ``portrait`` saying ``audio`` (float32[N], 16 kHz).

    Returns (frames iterator of uint8[H x W x 3], the Motion that drives them).

    >>> from puppetry.audio import load_audio
    >>> frames, motion = puppetry.animate(puppetry.load_portrait("me.jpg"), load_audio("hi.wav"))
    """
    motion = speech_to_motion(audio, job)
    return render(portrait, motion, job.renderer), motion


def animate_video(portrait_path, audio_path, out_path, job: AnimateJob = AnimateJob(), *,
                  text: str | None = None, expressions_out=None, progress=None) -> dict:
    """``puppetry animate``: portrait + speech (an audio/video file, or ``text`` through the
    offline TTS voice) -> H.264 + AAC mp4 with the speech in sync. Returns timings (s).

    ``progress``, if given, is called as ``progress(done, total, stage)`` with frames done.
    """
    from .audio import SAMPLE_RATE, load_audio
    from .expression.export import write_curves

    t0 = time.perf_counter()
    # 1. cheap checks first: outputs are never inputs
    inputs = [p for p in (portrait_path, audio_path, job.motion, job.style) if p and Path(str(p)).is_file()]
    check_not_input(out_path, inputs)
    if expressions_out:
        check_not_input(expressions_out, inputs + [out_path])
    # 2. the speech: decoded to 16 kHz mono, or synthesised from text
    if text is not None:
        from .tts import synthesize
        audio = synthesize(text, job.voice)
    else:
        audio = load_audio(audio_path)
    # 3. expressions and motion from the speech, while 4. the portrait is read beside it
    report = progress or (lambda done, total, stage: None)
    report(0, 1, "listening to the speech and reading the portrait")
    early = _early_features(job, audio)
    with _beside() as beside:
        features = beside.submit(_speech_features, early, audio) if early else None
        reading = beside.submit(load_portrait, portrait_path, size=job.size, frame=job.frame)
        try:
            motion = speech_to_motion(audio, job, features)
        except BaseException:
            reading.cancel()
            raise
        portrait = reading.result()
    t1 = time.perf_counter()
    # 5. frames streamed to the encoder with the speech
    sound = (audio, SAMPLE_RATE) if text is not None else audio_path
    first = []

    def stamped(frames):
        for i, frame in enumerate(frames):
            if not first:
                first.append(time.perf_counter())
            if i % 5 == 0:
                report(i, len(motion), "rendering")
            yield frame

    write_video(out_path, stamped(render(portrait, motion, job.renderer, lend=True)), fps=job.fps,
                audio=sound, inputs=inputs)
    if expressions_out:
        write_curves(expressions_out, motion.expression, job.fps)
    t2 = time.perf_counter()
    return {"frames": len(motion), "duration_s": len(audio) / SAMPLE_RATE, "prepare_s": t1 - t0,
            "first_frame_s": (first[0] if first else t2) - t0, "total_s": t2 - t0}


# -- work beside the speech stage ------------------------------------------------------
EARLY_FEATURES_MAX_S = 300.0    # longer speech: features in this process (no big pickles)


def _fork_is_safe() -> bool:
    """A process forked now can run MediaPipe and CTranslate2: neither has started its
    threads here (a forked copy of a running graph or thread pool would hang)."""
    return ("fork" in mp.get_all_start_methods()
            and not {"mediapipe", "ctranslate2"} & set(sys.modules))


def _beside() -> Executor:
    """Where the portrait (and the shipped model's speech features, see
    :func:`_early_features`) are made beside the speech stage.

    In a fresh process (``puppetry animate``): one forked process, started before torch
    is imported, so that MediaPipe, the portrait and the Whisper encoder (none needs
    torch) run while torch loads and the model is read; the two cores share them. Else
    one thread: the tracker leaves the GIL while it runs.
    """
    if _fork_is_safe():
        return ProcessPoolExecutor(1, mp_context=mp.get_context("fork"), initializer=_start_helper)
    return ThreadPoolExecutor(1)


def _early_features(job: AnimateJob, audio: np.ndarray) -> str | None:
    """The shipped model's feature spec when its features can be computed beside the
    speech stage without torch (Whisper, in a forked process, for up to 5 min), else None."""
    from .audio import SAMPLE_RATE
    from .expression.shipped import default_features

    if job.model or len(audio) > EARLY_FEATURES_MAX_S * SAMPLE_RATE or not _fork_is_safe():
        return None
    spec = default_features()
    return spec if spec == "whisper" else None


def _speech_features(spec: str, audio: np.ndarray) -> np.ndarray:
    """In the forked process: the features for the shipped model. One encoder thread: the
    other core is importing torch (two threads here ran ~0.15 s slower in all)."""
    from .features.whisper import WhisperFeatures
    if spec != "whisper":
        raise ValueError(f"only Whisper features are computed beside the speech stage, not {spec!r}")
    return WhisperFeatures(threads=1)(audio)
