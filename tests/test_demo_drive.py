"""The demo's "drive with a video or your webcam" tab: its handler on a tiny rendered
driving clip and the bundled portrait, and its messages for bad input (no browser)."""
import numpy as np
import pytest

gr = pytest.importorskip("gradio", reason="the demo needs the 'demo' extra: "
                                          "pip install -e '.[demo]'")
from puppetry.ui import demo, tab_drive  # noqa: E402  (after the importorskip)

FPS, N = 25, 30


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> str:
    """1.2 s of the bundled portrait turning its head 15° and opening its mouth, as mp4."""
    from puppetry import Motion, WarpRenderer, load_portrait
    from puppetry.expression.arkit import INDEX
    from puppetry.io import write_video
    t = np.arange(N) / FPS
    motion = Motion.still(N, FPS)
    motion.rotation[:, 0] = 15 * np.sin(2 * np.pi * t / 1.2)
    motion.expression[:, INDEX["jawOpen"]] = 0.5 * np.sin(np.pi * t / 1.2) ** 2
    renderer = WarpRenderer(load_portrait("astronaut", size=256))
    path = tmp_path_factory.mktemp("drive") / "driver.mp4"
    return str(write_video(path, [renderer.render_frame(f).copy() for f in motion], FPS))


def test_drive_gives_the_driven_photo(driver):
    from puppetry.drive.video import track_clip
    from puppetry.io import video_info
    video = tab_drive.generate(driver, demo._example_portrait(), size=256, keep_audio=False)
    info = video_info(video)
    assert video.endswith(".mp4") and info["n_frames"] == N and info["fps"] == FPS
    assert (info["width"], info["height"]) == (256, 256)
    yaw = track_clip(video).motion.rotation[:, 0]                  # the photo turns with the driver
    assert np.ptp(yaw) > 15
    only_pose = tab_drive.generate(driver, demo._example_portrait(), "absolute",
                                   "only the head pose", size=256)
    assert video_info(only_pose)["n_frames"] == N


def test_bad_input_is_refused_naming_the_upload(driver, tmp_path):
    with pytest.raises(gr.Error, match="no driving clip"):
        tab_drive.generate(None, demo._example_portrait())
    with pytest.raises(gr.Error, match="no photo"):
        tab_drive.generate(driver, None)
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    with pytest.raises(gr.Error, match="notes.mp4") as err:
        tab_drive.generate(str(notes), demo._example_portrait(), size=256)
    assert str(tmp_path) not in str(err.value)


def test_the_tab_is_on_the_page():
    assert tab_drive in demo.TABS
    page = demo.build()
    labels = {getattr(block, "label", None) for block in page.blocks.values()}
    assert {"driving clip", "photo to drive", "driven photo"} <= labels
