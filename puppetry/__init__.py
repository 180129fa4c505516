"""puppetry: speech and a single portrait into a talking video, offline, on a CPU.

>>> import puppetry
>>> p = puppetry.load_portrait("me.jpg")
>>> frames = list(puppetry.render(p, puppetry.preset("nod")))

``import puppetry`` loads neither torch nor MediaPipe (``WarpRenderer`` is imported on
first use), so ``puppetry animate`` can start its torch-free work (the portrait, the
speech features) in a forked process while torch loads (``pipeline.animate_video``).
"""
import os as _os

_os.environ.setdefault("GLOG_minloglevel", "2")        # MediaPipe's C++ logging
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .drive.frames import FPS, DrivingFrame, Motion  # noqa: E402
from .drive.motion import load_motion, parse_motion, preset  # noqa: E402
from .expression.arkit import ARKIT_NAMES  # noqa: E402
from .drive.video import FaceDriver, TrackedClip, track_clip  # noqa: E402
from .pipeline import AnimateJob, RenderJob, animate, animate_video, render, render_video  # noqa: E402
from .pipeline import ReenactJob, reenact, reenact_video  # noqa: E402
from .portrait import Portrait, load_portrait  # noqa: E402
from .render.config import RenderConfig  # noqa: E402

__all__ = ["ARKIT_NAMES", "AnimateJob", "animate", "animate_video", "FPS", "DrivingFrame", "Motion", "Portrait", "RenderConfig",
           "RenderJob", "WarpRenderer", "load_motion", "load_portrait", "parse_motion",
           "preset", "render", "render_video", "FaceDriver", "ReenactJob", "TrackedClip",
           "reenact", "reenact_video", "track_clip"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "WarpRenderer":                 # torch: loaded on first use
        from .render.warp import WarpRenderer
        globals()[name] = WarpRenderer
        return WarpRenderer
    raise AttributeError(f"module 'puppetry' has no attribute {name!r}")
