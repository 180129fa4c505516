"""``puppetry dub``: new speech over a learned person's footage, as numbered steps.

The footage is kept as it is outside the lower face. Its length follows the speech: when
the speech is longer, the footage plays forward and back (ping-pong), so there is no jump
cut; each output frame's lower face is re-rendered for the speech's expression at that
time, by the person's neural renderer or, for comparison, by the one-shot warp renderer
on the person's closed-mouth reference frame (:class:`WarpMouth`).

>>> dub_video("obama.puppet", "translation.wav", "dubbed.mp4")
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import crop as C
from .footage import FootageError
from .puppet import Person, load_person

RENDERERS = ("neural", "warp")


@dataclass(frozen=True)
class DubJob:
    """Knobs of ``puppetry dub`` (override with ``dataclasses.replace``)."""

    renderer: str = "neural"     # "neural" (the learned renderer) or "warp" (one-shot, for comparison)
    style: bool = True           # apply the person's speaking style to expressions from speech
    intensity: float = 1.0       # mouth expression strength (1 = as predicted)
    workers: int | None = None   # render processes (default: one per core, at most 2)
    voice: str = "espeak"        # TTS voice for ``text``


class WarpMouth:
    """The warp renderer as a lower-face renderer with :meth:`Person.render_frame`'s call:
    the person's closed-mouth reference frame, warped to each expression, cropped and
    blended into the footage frame with the same mask as the neural renderer."""

    def __init__(self, person: Person):
        from ..face.tracker import detect_face
        from ..portrait import prepare
        from ..render.warp import WarpRenderer

        face = detect_face(person.reference, "the person's reference frame")
        self.renderer = WarpRenderer(prepare(person.reference, face, "reference"))
        self.affine = np.asarray(person.footage["affine"][person.reference_index], np.float64)
        self.crop = person.crop

    def render_frame(self, frame, pose, affine, expression, out=None) -> np.ndarray:
        from ..drive.frames import DrivingFrame
        warped = self.renderer.render_frame(DrivingFrame(np.asarray(expression, np.float32)))
        synth = C.crop(warped, self.affine, self.crop.size)
        return C.paste(frame, synth, np.asarray(affine, np.float64), self.crop, out=out)


def ping_pong(n_out: int, n_footage: int) -> np.ndarray:
    """Footage frame of each output frame: forward, then back, ... -> int64[n_out]."""
    if n_footage <= 1:
        return np.zeros(n_out, np.int64)
    period = 2 * (n_footage - 1)
    p = np.arange(n_out) % period
    return np.where(p < n_footage, p, period - p).astype(np.int64)


def nearest_valid(valid: np.ndarray) -> np.ndarray:
    """For each frame, the nearest frame with a usable face (itself if usable) -> int64[T]."""
    ok = np.flatnonzero(valid)
    if len(ok) == 0:
        raise FootageError("no frame of the footage has a usable face: use a video where the "
                           "person's face is visible")
    t = np.arange(len(valid))
    pos = np.clip(np.searchsorted(ok, t), 1, len(ok) - 1) if len(ok) > 1 else np.zeros(len(t), int)
    left, right = ok[np.maximum(pos - 1, 0)], ok[pos]
    return np.where(np.abs(t - left) <= np.abs(right - t), left, right).astype(np.int64)


def speech_expressions(audio: np.ndarray, n_frames: int, fps: float, person: Person,
                       job: DubJob = DubJob()) -> np.ndarray:
    """16 kHz speech float32[N] -> this person's expressions float32[n_frames x 52]."""
    from ..expression.speech import SpeechToExpression

    e = SpeechToExpression.load()(audio, n_frames=n_frames, fps=fps)
    if job.style and person.style is not None:
        e = person.style.apply(e)
    return np.clip(e * job.intensity, 0.0, 1.0).astype(np.float32)


def motion_expressions(path, n_frames: int, fps: float) -> np.ndarray:
    """The expressions of a motion file at ``fps`` (nearest frame in time, the last held)
    -> float32[n_frames x 52]."""
    from ..drive.motion import load_motion

    motion = load_motion(path)
    idx = np.minimum(np.round(np.arange(n_frames) * motion.fps / fps).astype(int), len(motion) - 1)
    return motion.expression[idx]


def _footage_frames(path, wanted: int, size: tuple[int, int], scratch: str) -> np.ndarray:
    """The first ``wanted`` frames of a video, decoded once into a file-backed array that
    forked render workers share: uint8[wanted x H x W x 3]."""
    from ..io import read_video_frames

    h, w = size
    frames = np.lib.format.open_memmap(Path(scratch) / "footage.npy", "w+", np.uint8, (wanted, h, w, 3))
    got = 0
    for i, rgb in enumerate(read_video_frames(path)):
        if i >= wanted:
            break
        frames[i] = rgb
        got += 1
    if got < wanted:
        frames[got:] = frames[got - 1]        # a short decode: hold the last frame
    return frames


def dub_video(person_path, audio_path, out_path, job: DubJob = DubJob(), *, video=None,
              motion=None, text: str | None = None, progress=None, force: bool = False) -> dict:
    """``puppetry dub``: a person + new speech -> mp4 of their footage saying it.

    person_path : a ``.puppet`` file from ``puppetry learn``
    audio_path  : the new speech (any audio or video file), or None with ``text``
    video       : other footage of the same person (default: the video it learned from)
    motion      : a MOTION.json whose expressions replace those from the speech
    text        : words to say with the offline voice instead of ``audio_path``
    force       : overwrite a read-only ``out_path`` (never an input)
    Returns timings (s) and frame counts.
    """
    from ..audio import SAMPLE_RATE, load_audio
    from ..io import check_output, write_video
    from ..runtime import frames_in_workers
    from .footage import read_footage

    t0 = time.perf_counter()
    if job.renderer not in RENDERERS:
        raise ValueError(f"renderer {job.renderer!r}: use one of {', '.join(RENDERERS)}")
    if (audio_path is None) == (text is None):
        raise ValueError("give either an AUDIO file or --text \"words to say\" (not both)")
    # 1. cheap checks first: outputs are never inputs
    inputs = [p for p in (person_path, audio_path, video, motion) if p and Path(str(p)).is_file()]
    check_output(out_path, inputs, force=force)
    person = load_person(person_path)
    # 2. the footage: the learned video's tracking, or another video of the person tracked now
    if video is None:
        footage_path, data = person.video(), person.footage
        if footage_path is None:
            raise FootageError(f"{Path(person_path).name}: the video it learned from "
                               f"({person.meta.get('source', {}).get('name', '?')}) is neither where it "
                               "was learned nor beside the .puppet: pass the footage with --video")
        valid, pose, affine = data["valid"], data["pose"], data["affine"]
        fps, size = float(data["fps"]), tuple(data["size"])
    else:
        footage_path = Path(video)
        f, _, _ = read_footage(video, person.crop, identity=person.identity, max_crops=0)
        valid, pose, affine, fps, size = f.valid, f.pose, f.affine, f.fps, f.size
    # 3. the speech, and its expressions (or a motion file's)
    if text is not None:
        from ..tts import synthesize
        audio = synthesize(text, job.voice)
    else:
        audio = load_audio(audio_path)
    n = max(1, round(len(audio) / SAMPLE_RATE * fps))
    if motion is not None:
        expressions = motion_expressions(motion, n, fps)
    else:
        expressions = speech_expressions(audio, n, fps, person, job)
    # 4. the footage timeline: forward and back as long as the speech lasts
    order = nearest_valid(valid)[ping_pong(n, len(valid))]
    renderer = person if job.renderer == "neural" else WarpMouth(person)
    t1 = time.perf_counter()
    report = progress or (lambda done, total, stage: None)
    with tempfile.TemporaryDirectory() as scratch:
        frames = _footage_frames(footage_path, int(order.max()) + 1, size, scratch)

        def render_frame(t, out):
            i = order[t]
            return renderer.render_frame(frames[i], pose[i], affine[i], expressions[t], out=out)

        def counted(stream):
            for t, frame in enumerate(stream):
                if t % 25 == 0:
                    report(t, n, "rendering")
                yield frame
            report(n, n, "rendering")

        # 5. render in worker processes, streamed to the encoder with the speech
        sound = (audio, SAMPLE_RATE) if text is not None else audio_path
        write_video(out_path, counted(frames_in_workers(render_frame, range(n), size, job.workers,
                                                        lend=True)),
                    fps=fps, audio=sound, inputs=inputs, force=force)
    t2 = time.perf_counter()
    return {"frames": n, "duration_s": len(audio) / SAMPLE_RATE, "prepare_s": t1 - t0,
            "render_encode_s": t2 - t1, "total_s": t2 - t0, "fps": fps}
