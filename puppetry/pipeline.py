"""End-to-end jobs, as short numbered steps over library calls."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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


def render(portrait: Portrait, motion: Motion, config: RenderConfig = RenderConfig(),
           workers: int | None = None) -> Iterator[np.ndarray]:
    """Frames of ``portrait`` driven by ``motion``: an iterator of uint8[H x W x 3], in order.

    Frames are independent, so long motions are rendered by ``workers`` forked processes
    (default: one per CPU core, at most 2), each with one torch thread.

    >>> p = puppetry.load_portrait("me.jpg")
    >>> frames = list(puppetry.render(p, puppetry.preset("nod")))
    """
    renderer = WarpRenderer(portrait, config)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers < 2 or len(motion) < PARALLEL_MIN_FRAMES or "fork" not in mp.get_all_start_methods():
        yield from renderer.render(motion)
        return
    global _JOB
    _JOB = (renderer, motion)             # inherited by the forked workers, never pickled
    with mp.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield from pool.imap(_render_one, range(len(motion)), chunksize=PARALLEL_CHUNK)
    _JOB = None


PARALLEL_MIN_FRAMES = 50   # shorter motions render in this process
PARALLEL_CHUNK = 5         # frames a worker renders per task
_JOB = None


def _render_one(i: int) -> np.ndarray:
    renderer, motion = _JOB
    return renderer.render_frame(motion[i])


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
