"""``puppetry learn``: a video of one person -> a ``.puppet`` file, as numbered steps."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import crop as C
from .net import MouthNet, NetDims
from .train import TrainConfig, train_renderer

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class LearnConfig:
    """Knobs of ``puppetry learn`` (override with ``dataclasses.replace``).

    minutes : the whole job's time budget (tracking, style, training), minutes; training
              gets what tracking and the style fit leave of it
    until_s : learn from the video's first ``until_s`` seconds only (None: all of it)
    start   : a ``.puppet`` learned from the same video whose renderer training goes on
              from (its network and crop settings are kept; ``train.lr`` applies)
    """

    minutes: float = 25.0
    until_s: float | None = None
    style: bool = True
    start: str | None = None
    crop: C.CropConfig = field(default_factory=C.CropConfig)
    dims: NetDims = field(default_factory=NetDims)
    train: TrainConfig = field(default_factory=TrainConfig)


def pick_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"; "cuda" without one -> ValueError."""
    import torch
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: use one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no usable CUDA GPU here; use --device cpu (or auto)")
    return device


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _relative(video, out) -> str | None:
    """The video's path relative to the ``.puppet``'s folder (None where there is none:
    another drive)."""
    try:
        return os.path.relpath(Path(video).resolve(), Path(out).resolve().parent)
    except ValueError:
        return None


def geometry_of(footage, frames: np.ndarray, size: int, expression: np.ndarray | None = None
                ) -> np.ndarray:
    """The drawn geometry (``crop.draw_geometry``) of footage ``frames`` (int[N]) with their
    own fitted expressions, or ``expression`` float[N x 52] -> uint8[N x 3 x size x size]."""
    from .footage import driven_points

    out = np.zeros((len(frames), C.GEOMETRY_CHANNELS, size, size), np.uint8)
    for k, i in enumerate(frames):
        e = footage.expression[i] if expression is None else expression[k]
        pts = C.to_crop(footage.affine[i].astype(np.float64),
                        driven_points(footage.identity, e, footage.pose[i]))
        out[k] = np.round(C.draw_geometry(pts, size) * 255)
    return out



def _style(video, footage):
    """The person's speaking style from the video's own audio (the learned part's) and
    tracked mouth (with the person's own spread: ``expression.style.match_spread``)."""
    from ..audio import SAMPLE_RATE
    from ..expression.speech import SpeechToExpression
    from ..expression.style import StyleError, TrackedVideo, fit_style

    tracked = TrackedVideo(np.where(footage.valid[:, None], footage.expression, np.nan),
                           np.full((len(footage), 3), np.nan, np.float32), footage.identity,
                           footage.fps, Path(video).name)
    model = SpeechToExpression.load()

    def shared(audio, n_frames, fps):   # the learned part's audio only
        return model(audio[:int(round(n_frames / fps * SAMPLE_RATE))], n_frames=n_frames, fps=fps)

    try:
        return fit_style(video, shared=shared, tracked=tracked)
    except StyleError:
        return fit_style(video, shared=None, tracked=tracked)       # no audio track: statistics


def learn(video, out, config: LearnConfig = LearnConfig(), device: str = "auto",
          progress=None, force: bool = False) -> dict:
    """Learn a person from ``video`` and write ``out`` (a ``.puppet`` file).

    progress : ``progress(done, total, stage, info="")`` (``train.progress_bar`` draws it)
    force    : overwrite a read-only ``out`` (never an input)
    Returns the summary stored in the file (frames used and dropped, training curve, s).
    """
    import torch

    from ..io import check_output, read_video_frames
    from .footage import read_footage
    from .puppet import Person

    t0 = time.perf_counter()
    device = pick_device(device)
    report = progress or (lambda *a: None)
    # 1. cheap checks first: the output is never the input
    check_output(out, [video], force=force)
    # 2. track every frame, fit the person's face, crop the lower faces; drop lost/blurred
    footage, crops, frames = read_footage(video, config.crop, end_s=config.until_s,
                                          progress=report)
    # 3. the person's speaking style from their own audio and tracked mouth
    style = _style(video, footage) if config.style else None
    # 4. the renderer's conditioning: each frame's own fitted expression, drawn
    geometry = geometry_of(footage, frames, config.crop.size)
    t_prep = time.perf_counter() - t0
    # 5. train for what is left of the budget
    torch.manual_seed(config.train.seed)
    net = MouthNet(config.dims)
    trained_s = 0.0
    if config.start is not None:
        from .puppet import load_person
        before = load_person(config.start)
        if before.crop != config.crop:
            raise ValueError(f"{config.start} was learned with another crop: learn from scratch")
        net = before.net
        trained_s = before.meta["training"]["seconds"] + before.meta["training"].get("before_s", 0.0)
    left = max(config.minutes * 60 - t_prep, 60.0)
    summary = train_renderer(net, crops, geometry, config.crop,
                             replace(config.train, minutes=left / 60), device=device,
                             progress=report)
    net.cpu().eval()
    # 6. a closed-mouth reference frame (the warp renderer's texture)
    ok = np.flatnonzero(footage.valid)
    ref = int(ok[np.argmin(footage.opening[ok])])
    reference = next(rgb for i, rgb in enumerate(read_video_frames(video)) if i == ref)
    # 7. write the file
    meta = {"recipe": {"minutes": config.minutes, "until_s": config.until_s,
                       "train": asdict(config.train), "device": device},
            "commit": _commit(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": {"path": str(Path(video).resolve()), "name": Path(video).name,
                       "relative": _relative(video, out),
                       "bytes": Path(video).stat().st_size, "frames": len(footage),
                       "fps": footage.fps, "size": list(footage.size)},
            "frames_used": int(len(frames)),
            "frames_dropped": {"lost": footage.lost, "blurred": footage.blurred},
            "training": {**summary, "prepare_s": t_prep, "params": net.n_params,
                         "before_s": trained_s, "started_from": config.start},
            "seconds": time.perf_counter() - t0}
    person = Person(net, config.crop, footage.identity, style, footage.arrays(), reference, ref, meta)
    person.save(out)
    return meta
