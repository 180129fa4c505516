"""puppetry: speech and a single portrait into a talking video, offline, on a CPU.

>>> import puppetry
>>> p = puppetry.load_portrait("me.jpg")
>>> frames = list(puppetry.render(p, puppetry.preset("nod")))
"""
import os as _os

_os.environ.setdefault("GLOG_minloglevel", "2")        # MediaPipe's C++ logging
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .drive.frames import FPS, DrivingFrame, Motion  # noqa: E402
from .drive.motion import load_motion, parse_motion, preset  # noqa: E402
from .expression.arkit import ARKIT_NAMES  # noqa: E402
from .pipeline import AnimateJob, RenderJob, animate, animate_video, render, render_video  # noqa: E402
from .portrait import Portrait, load_portrait  # noqa: E402
from .render.warp import RenderConfig, WarpRenderer  # noqa: E402

__all__ = ["ARKIT_NAMES", "AnimateJob", "animate", "animate_video", "FPS", "DrivingFrame", "Motion", "Portrait", "RenderConfig",
           "RenderJob", "WarpRenderer", "load_motion", "load_portrait", "parse_motion",
           "preset", "render", "render_video"]
__version__ = "0.1.0"
