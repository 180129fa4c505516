"""End-to-end jobs, as short numbered steps over library calls."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .drive.frames import Motion
from .drive.motion import resolve_motion
from .io import check_not_input, write_video
from .portrait import Portrait, load_portrait
from .render.warp import RenderConfig, WarpRenderer


@dataclass(frozen=True)
class RenderJob:
    """Knobs of ``puppetry render`` (override with ``dataclasses.replace``)."""

    size: int = 512            # canvas side (crop) or long side (full), pixels
    frame: str = "crop"        # "crop" around the head, or the "full" photo
    fps: float = 25.0          # frame rate for presets; a motion file sets its own
    duration: float = 4.0      # seconds, for presets
    seed: int = 0              # for presets with random idle motion
    renderer: RenderConfig = field(default_factory=RenderConfig)


def render(portrait: Portrait, motion: Motion, config: RenderConfig = RenderConfig()):
    """Frames of ``portrait`` driven by ``motion``: an iterator of uint8[H x W x 3].

    >>> p = puppetry.load_portrait("me.jpg")
    >>> frames = list(puppetry.render(p, puppetry.preset("nod")))
    """
    return WarpRenderer(portrait, config).render(motion)


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
    write_video(out_path, render(portrait, motion, job.renderer), fps=motion.fps, inputs=inputs)
    t2 = time.perf_counter()
    return {"frames": len(motion), "duration_s": motion.duration, "prepare_s": t1 - t0,
            "render_encode_s": t2 - t1, "total_s": t2 - t0}
