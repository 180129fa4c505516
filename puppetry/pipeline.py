"""End-to-end jobs, as short numbered steps over library calls."""
from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import limits
from .drive.frames import Motion
from .drive.motion import resolve_motion
from .io import check_output, check_video_path, write_video
from .portrait import Portrait, load_portrait
from .render.config import RenderConfig
from .runtime import beside, fork_is_safe, frames_in_workers


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
    (``runtime.frames_in_workers``: default one per CPU core, at most 2). With ``lend``,
    such frames are lent, not given: each is valid only until the next is asked for (for
    a consumer that writes each frame out at once, like ``write_video``: no copy).

    >>> p = puppetry.load_portrait("me.jpg")
    >>> frames = list(puppetry.render(p, puppetry.preset("nod")))
    """
    from .render.warp import WarpRenderer
    renderer = WarpRenderer(portrait, config)
    yield from frames_in_workers(renderer.render_frame, motion, renderer.size, workers, lend=lend)


def render_video(portrait_path, motion_spec, out_path, job: RenderJob = RenderJob(), *,
                 force: bool = False) -> dict:
    """``puppetry render``: portrait + motion (preset name or JSON path) -> mp4.

    ``force``: overwrite a read-only output. Returns timings in seconds and the frame count.
    """
    t0 = time.perf_counter()
    # 1. cheap checks first: the output can be written and is not an input; the motion parses
    inputs = [p for p in (portrait_path, motion_spec) if Path(str(p)).is_file()]
    check_output(out_path, inputs, force=force)
    check_video_path(out_path)
    limits.check_size(job.size)
    motion = resolve_motion(motion_spec, duration=job.duration, fps=job.fps, seed=job.seed)
    # 2. the portrait: read, track, segment, fit
    portrait = load_portrait(portrait_path, size=job.size, frame=job.frame)
    t1 = time.perf_counter()
    # 3. render and encode, streaming frame by frame
    write_video(out_path, render(portrait, motion, job.renderer, lend=True), fps=motion.fps,
                inputs=inputs, force=force)
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
                  text: str | None = None, expressions_out=None, progress=None,
                  force: bool = False) -> dict:
    """``puppetry animate``: portrait + speech (an audio/video file, or ``text`` through the
    offline TTS voice) -> H.264 + AAC mp4 with the speech in sync. Returns timings (s).

    ``progress``, if given, is called as ``progress(done, total, stage)`` with frames done.
    ``force``: overwrite read-only outputs.
    """
    from .audio import SAMPLE_RATE, load_audio
    from .expression.export import write_curves

    t0 = time.perf_counter()
    # 1. cheap checks first: outputs can be written and are never inputs
    inputs = [p for p in (portrait_path, audio_path, job.motion, job.style) if p and Path(str(p)).is_file()]
    check_output(out_path, inputs, force=force)
    check_video_path(out_path)
    if expressions_out:
        check_output(expressions_out, inputs + [out_path], force=force)
    limits.check_size(job.size)
    limits.check_fps(job.fps, "--fps")
    if text is not None:
        limits.check_text(text)
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
    with beside() as helper:
        features = helper.submit(_speech_features, early, audio) if early else None
        reading = helper.submit(load_portrait, portrait_path, size=job.size, frame=job.frame)
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
                audio=sound, inputs=inputs, force=force)
    if expressions_out:
        write_curves(expressions_out, motion.expression, job.fps, force=force)
    t2 = time.perf_counter()
    return {"frames": len(motion), "duration_s": len(audio) / SAMPLE_RATE, "prepare_s": t1 - t0,
            "first_frame_s": (first[0] if first else t2) - t0, "total_s": t2 - t0}


# -- work beside the speech stage ------------------------------------------------------
EARLY_FEATURES_MAX_S = 300.0    # longer speech: features in this process (no big pickles)


def _early_features(job: AnimateJob, audio: np.ndarray) -> str | None:
    """The shipped model's feature spec when its features can be computed beside the
    speech stage without torch (Whisper, in a forked process, for up to 5 min), else None."""
    from .audio import SAMPLE_RATE
    from .expression.shipped import default_features

    if job.model or len(audio) > EARLY_FEATURES_MAX_S * SAMPLE_RATE or not fork_is_safe():
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


@dataclass(frozen=True)
class ReenactJob:
    """Knobs of ``puppetry reenact`` (override with ``dataclasses.replace``)."""

    size: int = 512            # canvas side (crop) or long side (full), pixels
    frame: str = "crop"        # "crop" around the head, or the "full" photo
    mode: str = "relative"     # "relative" (X2Face) or "absolute" transfer (drive.video.transfer)
    only: str | None = None    # "pose" or "expression" alone
    expression: tuple[tuple[str, float], ...] = ()   # (ARKit name, weight) set in every frame
    audio: str = "keep"        # "keep" the driver's audio, or "none"
    renderer: RenderConfig = field(default_factory=RenderConfig)


def reenact(portrait: Portrait, clip, job: ReenactJob = ReenactJob()):
    """``puppetry.reenact``: frames of ``portrait`` driven by a tracked clip
    (``drive.video.track_clip``). Returns (frames iterator of uint8[H x W x 3], Motion).

    >>> clip = puppetry.track_clip("driver.mp4")
    >>> frames, motion = puppetry.reenact(puppetry.load_portrait("me.jpg"), clip)
    """
    from .drive.video import transfer
    motion = transfer(clip, portrait, mode=job.mode, only=job.only, expression=dict(job.expression))
    return render(portrait, motion, job.renderer), motion


def reenact_video(source_path, driver_path, out_path, job: ReenactJob = ReenactJob(), *,
                  force: bool = False) -> dict:
    """``puppetry reenact``: a photo driven by a video of anyone -> a video at the driver's
    fps and length, with its audio (``job.audio``). Returns timings (s) and the frame count."""
    from .drive.video import track_clip, transfer
    from .io import video_info

    t0 = time.perf_counter()
    # 1. cheap checks first: the output can be written and is not an input, the driver a video
    inputs = [p for p in (source_path, driver_path) if Path(str(p)).is_file()]
    check_video_path(out_path)
    check_output(out_path, inputs, force=force)
    if job.audio not in ("keep", "none"):
        raise ValueError(f"audio={job.audio!r}: use 'keep' (the driver's) or 'none'")
    info = video_info(driver_path)
    # 2. the driver tracked beside 3. the source portrait (read, track, segment, fit) and
    #    its renderer (torch loads meanwhile: imported only once the helper is forked);
    #    the driver's spans in one process per core
    with beside() as helper:
        tracking = helper.submit(track_clip, driver_path, workers=None)
        try:
            from .render.warp import WarpRenderer
            portrait = load_portrait(source_path, size=job.size, frame=job.frame)
            renderer = WarpRenderer(portrait, job.renderer)
        except BaseException:
            tracking.cancel()
            raise
        clip = tracking.result()
    motion = transfer(clip, portrait, mode=job.mode, only=job.only, expression=dict(job.expression))
    t1 = time.perf_counter()
    # 4. render and encode at the driver's fps, with its audio
    audio = driver_path if job.audio == "keep" and info["has_audio"] else None
    frames = frames_in_workers(renderer.render_frame, motion, renderer.size, lend=True)
    write_video(out_path, frames, fps=clip.fps, audio=audio, inputs=inputs, force=force)
    t2 = time.perf_counter()
    return {"frames": len(motion), "duration_s": motion.duration, "track_prepare_s": t1 - t0,
            "render_encode_s": t2 - t1, "total_s": t2 - t0, "lost": int((~clip.valid).sum())}
