"""Limits on the work one input may ask for (puppetry/limits.py): each check names its
limit and the fix, and the CLI, the API and the demo refuse over-limit inputs before any
heavy work."""
import math

import pytest

from puppetry import limits
from puppetry.limits import LimitError


@pytest.mark.parametrize("call, words", [
    (lambda: limits.check_text("a" * (limits.MAX_TEXT_CHARS + 1)), "MAX_TEXT_CHARS"),
    (lambda: limits.check_text("a" * (limits.SERVICE_MAX_TEXT_CHARS + 1), service=True),
     "SERVICE_MAX_TEXT_CHARS"),
    (lambda: limits.check_duration(1e7, "motion.json"), "motion.json lasts .*MAX_VIDEO_S"),
    (lambda: limits.check_duration(math.nan, "x.json"), "x.json has no finite length"),
    (lambda: limits.check_duration(math.inf, "x.json"), "MAX_VIDEO_S"),
    (lambda: limits.check_speech(limits.MAX_SPEECH_S + 1, "talk.wav"), "talk.wav.*MAX_SPEECH_S"),
    (lambda: limits.check_speech(301, "talk.wav", service=True), "SERVICE_MAX_SPEECH_S"),
    (lambda: limits.check_fps(0), "MAX_FPS"),
    (lambda: limits.check_fps(math.nan), "MAX_FPS"),
    (lambda: limits.check_fps(1e6), "MAX_FPS"),
    (lambda: limits.check_frames(limits.MAX_FRAMES + 1), "MAX_FRAMES"),
    (lambda: limits.check_video(3600, 120), "MAX_FRAMES"),
    (lambda: limits.check_keyframes(10 ** 6), "1000000 keyframes.*MAX_KEYFRAMES"),
    (lambda: limits.check_pixels(9000, 9000, "big.png"), "big.png is 9000 x 9000.*MAX_IMAGE_PIXELS"),
    (lambda: limits.check_pixels(7000, 7000, "up.png", service=True), "SERVICE_MAX_IMAGE_PIXELS"),
    (lambda: limits.check_size(4096), "MAX_SIZE_PX"),
    (lambda: limits.check_size(True), "MAX_SIZE_PX"),
    (lambda: limits.check_size(256.5), "MAX_SIZE_PX"),
    (lambda: limits.check_bytes(30 * limits.MB, "the upload", limit=limits.SERVICE_MAX_IMAGE_BYTES,
                                name="SERVICE_MAX_IMAGE_BYTES", fix="send a smaller JPEG"),
     "the upload is 30.0 MB, over the limit of 20.0 MB.*SERVICE_MAX_IMAGE_BYTES.*smaller JPEG"),
])
def test_each_check_names_its_limit(call, words):
    with pytest.raises(LimitError, match=words):
        call()


def test_within_the_limits_passes():
    limits.check_text("Hello there.")
    limits.check_duration(limits.MAX_VIDEO_S)
    limits.check_speech(60.0)
    limits.check_video(3600, 25)
    limits.check_keyframes(limits.MAX_KEYFRAMES)
    limits.check_pixels(4000, 3000)
    limits.check_size(512)
    assert issubclass(LimitError, ValueError)          # cli.main reports ValueErrors
    assert limits.SERVICE_MAX_SPEECH_S < limits.MAX_SPEECH_S
    assert limits.SERVICE_MAX_IMAGE_PIXELS < limits.MAX_IMAGE_PIXELS
