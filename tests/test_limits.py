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


# ---- the cases of issue 13: each allocated gigabytes or hung before -----------------------

def test_a_keyframe_at_ten_million_seconds_is_refused_before_allocating():
    from puppetry.drive.motion import parse_motion
    with pytest.raises(LimitError, match=r"far.json: frames\[1\].*MAX_VIDEO_S"):
        parse_motion('{"fps": 25, "frames": [{"t": 0}, {"t": 1e7}]}', source="far.json")
    with pytest.raises(LimitError, match="MAX_FRAMES"):         # short, but too many frames
        parse_motion('{"fps": 120, "frames": [{"t": 0}, {"t": 7000}]}', source="fast.json")


def test_too_many_keyframes_are_refused():
    from puppetry.drive.motion import parse_motion
    keys = ",".join(f'{{"t": {i / 100}}}' for i in range(limits.MAX_KEYFRAMES + 1))
    with pytest.raises(LimitError, match=f"many.json has {limits.MAX_KEYFRAMES + 1} keyframes"):
        parse_motion(f'{{"fps": 25, "frames": [{keys}]}}', source="many.json")


def test_motion_files_too_big_or_too_deep_get_clear_errors(tmp_path, monkeypatch):
    from puppetry.drive.motion import MotionError, load_motion, parse_motion
    with pytest.raises(MotionError, match="deep.json: arrays or objects nested too deeply"):
        parse_motion("[" * 100_000 + "]" * 100_000, source="deep.json")     # RecursionError before
    (tmp_path / "latin1.json").write_bytes(b'{"fps": 25, "frames": [{"t": 0, "yaw": "\xe9"}]}')
    with pytest.raises(MotionError, match="latin1.json: not UTF-8"):
        load_motion(tmp_path / "latin1.json")                   # UnicodeDecodeError before
    monkeypatch.setattr(limits, "MAX_MOTION_BYTES", 1000)
    (tmp_path / "big.json").write_text('{"fps": 25, "frames": [' + " " * 2000 + '{"t": 0}]}')
    with pytest.raises(LimitError, match="big.json is 2.*MAX_MOTION_BYTES"):
        load_motion(tmp_path / "big.json")


@pytest.mark.parametrize("duration", [1e7, math.inf])
def test_a_preset_longer_than_the_limit_is_refused(duration):
    from puppetry.drive.motion import preset
    with pytest.raises(LimitError, match="preset 'nod'.*MAX_VIDEO_S"):
        preset("nod", duration=duration)


def test_long_text_is_refused_before_synthesis():
    from puppetry.tts import synthesize
    with pytest.raises(LimitError, match="--text has 100000 characters.*MAX_TEXT_CHARS"):
        synthesize("word " * 20_000)                             # hung for minutes before


def test_only_installed_voices_are_offered(monkeypatch):
    import importlib.util

    from puppetry import tts
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "piper" else real(name, *a))
    voices = tts.installed_voices()
    assert "joe" not in voices and "espeak" in voices and set(voices) <= set(tts.VOICES)


@pytest.mark.parametrize("command, words", [
    (["render", "astronaut", "--motion", "FAR"], "MAX_VIDEO_S"),
    (["render", "astronaut", "--motion", "nod", "--duration", "1e7"], "MAX_VIDEO_S"),
    (["render", "astronaut", "--motion", "nod", "--fps", "1e6"], "fps must be in"),
    (["render", "astronaut", "--motion", "nod", "--size", "100000"], "MAX_SIZE_PX"),
    (["animate", "astronaut", "--text", "word " * 20_000], "MAX_TEXT_CHARS"),
    (["animate", "astronaut", "--text", "Hi", "--fps", "1e6"], "MAX_FPS"),
    (["animate", "astronaut", "--text", "Hi", "--size", "0"], "MAX_SIZE_PX"),
])
def test_the_cli_refuses_over_limit_work_before_starting_it(tmp_path, capsys, command, words):
    from puppetry.cli import main
    far = tmp_path / "far.json"
    far.write_text('{"fps": 25, "frames": [{"t": 0}, {"t": 1e7}]}')
    command = [str(far) if c == "FAR" else c for c in command]
    assert main([*command, "-o", str(tmp_path / "out.mp4")]) == 1
    assert words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.json"]
