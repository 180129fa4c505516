"""A person learned from their video (Neural Voice Puppetry, Deep Video Portraits).

``learn`` tracks a video of one person, fits their speaking style and trains a neural
renderer of their lower face; the result is one ``.puppet`` file. ``dub_video`` puts new
speech over their footage with it.

>>> from puppetry.person import learn, load_person, dub_video
>>> learn("me.mp4", "me.puppet")                     # ~25 min on a 2-core CPU
>>> dub_video("me.puppet", "new_line.wav", "me_saying_it.mp4")
"""
from .dub import DubJob, dub_video
from .learn import LearnConfig, learn
from .puppet import Person, PersonError, load_person

__all__ = ["DubJob", "LearnConfig", "Person", "PersonError", "dub_video", "learn", "load_person"]
