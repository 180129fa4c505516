"""The Gradio demo: its handler on the bundled portrait, its messages for bad input, and
one real browser run of the page (example -> Generate -> video)."""
import json
import os
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

gr = pytest.importorskip("gradio", reason="the demo needs the 'demo' extra: "
                                          "pip install -e '.[demo]'")
from puppetry.ui import demo  # noqa: E402  (after the importorskip)


@pytest.fixture(scope="module")
def portrait() -> str:
    return demo._example_portrait()


@pytest.fixture
def speech(tmp_path) -> str:
    """1.2 s of speech-shaped sound: a vowel-like buzz switched on and off at 4 Hz."""
    t = np.arange(int(1.2 * 16000)) / 16000
    buzz = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1100), 1))
    path = tmp_path / "speech.wav"
    sf.write(path, 0.2 * buzz * (np.sin(2 * np.pi * 4 * t) > 0), 16000)
    return str(path)


def test_generate_gives_video_curves_and_plot(portrait, speech):
    video, files, frame = demo.generate(portrait, speech, "", size=256, still=True,
                                        intensity=1.5, blink_rate=20, yaw=10)
    assert video.endswith(".mp4") and os.path.getsize(video) > 1000
    assert files == [video, files[1]] and files[1].endswith(".json")
    curves = json.loads(open(files[1]).read())
    assert curves["fps"] == 25 and len(curves["frames"]) == 30 and "jawOpen" in curves["names"]
    assert set(frame["curve"]) == set(demo.PLOTTED) and len(frame) == 30 * len(demo.PLOTTED)
    assert frame["time (s)"].max() == pytest.approx(29 / 25)
    assert frame.loc[frame["curve"] == "jawOpen", "weight"].max() > 0.05    # the mouth moves


def test_generate_from_text(portrait):
    video, files, frame = demo.generate(portrait, None, "  Hi there.  ", size=256)
    assert os.path.getsize(video) > 1000 and len(frame) > 0


def test_a_faceless_portrait_is_refused_with_the_library_message(tmp_path, speech):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(grey)
    with pytest.raises(gr.Error, match="no face .*grey.png"):
        demo.generate(str(grey), speech, "", size=256)
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    with pytest.raises(gr.Error, match="notes.png is not a readable image"):
        demo.generate(str(notes), speech, "", size=256)


def test_missing_or_double_speech_is_refused(portrait, speech):
    with pytest.raises(gr.Error, match="no speech: upload or record speech, or type text"):
        demo.generate(portrait, None, "   ")
    with pytest.raises(gr.Error, match="both speech and text"):
        demo.generate(portrait, speech, "Hello")
    with pytest.raises(gr.Error, match="no portrait"):
        demo.generate(None, speech, "")


def test_oversized_inputs_are_refused(tmp_path, portrait, speech):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate((demo.MAX_IMAGE_MB + 1) * demo.MB)          # sparse: no 21 MB written
    with pytest.raises(gr.Error, match=f"big.jpg is 21.0 MB: the demo takes up to "
                                       f"{demo.MAX_IMAGE_MB} MB"):
        demo.generate(str(big), speech, "")
    huge = tmp_path / "huge.wav"
    with open(huge, "wb") as f:
        f.truncate((demo.MAX_AUDIO_MB + 1) * demo.MB)
    with pytest.raises(gr.Error, match=f"up to {demo.MAX_AUDIO_MB} MB"):
        demo.generate(portrait, str(huge), "")
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(int(demo.MAX_SPEECH_S + 1) * 8000, np.int16), 8000)
    with pytest.raises(gr.Error, match="lasts 5.0 min: the demo takes up to 5 min"):
        demo.generate(portrait, str(long), "")
    with pytest.raises(gr.Error, match="characters"):
        demo.generate(portrait, None, "a" * (demo.MAX_TEXT_CHARS + 1))


def test_page_in_a_browser_generates_the_example(demo_url, page):
    config = json.load(urllib.request.urlopen(demo_url + "config"))
    assert config["max_file_size"] == demo.MAX_AUDIO_MB * demo.MB
    outside = []                                               # the page must work offline
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith((demo_url, "data:", "blob:")) else None)
    page.goto(demo_url)
    page.get_by_text("astronaut, bundled speech").click()
    page.wait_for_selector("#speech audio[src]", state="attached")   # the example is loaded
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector("#video video[src]", timeout=120_000)
    assert page.get_attribute("#video video", "src")
    page.wait_for_selector("#curves .role-legend", timeout=10_000)  # the plot is drawn
    page.get_by_text("puppetry_arkit").wait_for(timeout=10_000)  # the downloads
    assert outside == []


def test_a_text_file_named_jpg_gets_the_library_message_without_server_paths(tmp_path, speech):
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is a text file, not a photo")
    with pytest.raises(gr.Error, match="photo.jpg is not a readable image") as err:
        demo.generate(str(fake), speech, "", size=256)
    assert str(tmp_path) not in str(err.value) and "/tmp" not in str(err.value)


def test_only_installed_voices_are_offered(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "piper" else real(name, *a))
    page = demo.build()
    menus = [b for b in page.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "voice"]
    offered = [choice[1] if isinstance(choice, tuple) else choice for choice in menus[0].choices]
    assert "joe" not in offered and "espeak" in offered


def test_demo_limits_come_from_limits_py():
    from puppetry import limits
    assert demo.MAX_SPEECH_S == limits.SERVICE_MAX_SPEECH_S
    assert demo.MAX_TEXT_CHARS == limits.SERVICE_MAX_TEXT_CHARS
    assert demo.MAX_IMAGE_MB * demo.MB == limits.SERVICE_MAX_IMAGE_BYTES
