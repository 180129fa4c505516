"""The driving-video adapter: tracking a face through a clip, live driving, reenactment.

The clips are rendered from the bundled portrait with a known motion (head turns, nods,
jaw openings, blinks), written as MP4 and tracked back like any video.
"""
import numpy as np
import pytest

from puppetry.drive.frames import Motion
from puppetry.drive.video import (FaceDriver, OneEuroFilter, TrackingError, bridge,
                                  smooth_channels, track_clip)
from puppetry.expression.arkit import INDEX

FPS = 25
N = 50
SIZE = 256


def known_motion(n: int = N) -> Motion:
    """Yaw ±12°, pitch ±6°, the jaw opening twice, a blink at 1.2 s."""
    t = np.arange(n) / FPS
    motion = Motion.still(n, FPS)
    motion.rotation[:, 0] = 12 * np.sin(2 * np.pi * 0.5 * t)
    motion.rotation[:, 1] = 6 * np.sin(2 * np.pi * 0.7 * t)
    motion.expression[:, INDEX["jawOpen"]] = 0.5 * (0.5 - 0.5 * np.cos(2 * np.pi * 1.0 * t))
    blink = np.clip(1 - np.abs(t - 1.2) / 0.08, 0, 1)
    motion.expression[:, INDEX["eyeBlinkLeft"]] = blink
    motion.expression[:, INDEX["eyeBlinkRight"]] = blink
    return motion


@pytest.fixture(scope="module")
def portrait():
    from puppetry import load_portrait
    return load_portrait("astronaut", size=SIZE)


@pytest.fixture(scope="module")
def frames(portrait):
    from puppetry import WarpRenderer
    renderer = WarpRenderer(portrait)
    return [renderer.render_frame(f).copy() for f in known_motion()]


@pytest.fixture(scope="module")
def driver_video(frames, tmp_path_factory):
    from puppetry.io import write_video
    return write_video(tmp_path_factory.mktemp("drive") / "driver.mp4", frames, FPS)


@pytest.fixture(scope="module")
def clip(driver_video):
    return track_clip(driver_video)


def test_track_clip_recovers_pose_and_jaw(clip, driver_video):
    truth = known_motion()
    assert len(clip) == N and clip.fps == FPS and clip.size == (SIZE, SIZE)
    assert clip.valid.all() and clip.landmarks.shape == (N, 478, 3)
    m = clip.motion
    assert len(m) == N and m.fps == FPS
    assert np.all(np.isfinite(m.rotation)) and m.expression.min() >= 0 and m.expression.max() <= 1
    # relative to the first frame, which is the portrait's own pose
    np.testing.assert_allclose(m.rotation[0], 0, atol=1.0)
    assert m.scale[0] == pytest.approx(1, abs=0.01)
    # the renderer itself re-tracks to ~2° (docs/benchmarks.md, 1): the round trip, not the tracker alone
    yaw_err = np.abs(m.rotation[:, 0] - truth.rotation[:, 0])
    assert yaw_err.mean() < 3.0 and np.corrcoef(m.rotation[:, 0], truth.rotation[:, 0])[0, 1] > 0.98
    assert np.corrcoef(m.rotation[:, 1], truth.rotation[:, 1])[0, 1] > 0.9
    jaw = m.expression[:, INDEX["jawOpen"]]
    assert np.corrcoef(jaw, truth.expression[:, INDEX["jawOpen"]])[0, 1] > 0.8
    blink = m.expression[:, INDEX["eyeBlinkLeft"]]
    assert abs(int(np.argmax(blink)) - 30) <= 1                       # at 1.2 s: no lag
    raw = track_clip(driver_video, smooth=False).motion.expression[:, INDEX["eyeBlinkLeft"]]
    assert blink.max() > 0.8 * raw.max() > 0.3                         # no smear
    assert np.abs(m.translation).max() < 0.1                            # the head did not move
    assert np.isfinite(clip.angles).all()


def test_lost_frames_are_marked_and_bridged(frames):
    blank = np.full_like(frames[0], 128)
    lost = [20, 21, 22]
    video = [blank if i in lost else f for i, f in enumerate(frames)]
    clip = track_clip(video, fps=FPS)
    assert not clip.valid[lost].any() and clip.valid.sum() >= N - len(lost) - 1
    assert np.isnan(clip.landmarks[lost]).all()
    yaw = clip.motion.rotation[:, 0]
    assert np.all(np.isfinite(yaw))
    lo, hi = sorted((yaw[19], yaw[23]))
    assert np.all((yaw[lost] >= lo - 0.5) & (yaw[lost] <= hi + 0.5))   # bridged between


def test_smoothing_no_jitter_no_smear():
    rng = np.random.default_rng(0)
    units = np.ones(1)
    still = 0.5 + rng.normal(0, 1.0, (100, 1))                          # noise of 1 unit
    smooth = smooth_channels(still, FPS, units=units)
    assert np.std(np.diff(smooth[:, 0])) < 0.35 * np.std(np.diff(still[:, 0]))
    blink = np.zeros((60, 1))
    blink[29:32, 0] = [10, 20, 10]                                       # 3 frames, 20 units
    out = smooth_channels(blink, FPS, units=units)
    assert int(np.argmax(out[:, 0])) == 30                              # no lag
    assert out[30, 0] > 0.8 * 20                                       # little smear
    assert np.abs(out[:25]).max() < 1 and np.abs(out[36:]).max() < 1
    # the causal filter alone lags less than a frame on the same blink
    f = OneEuroFilter(units)
    causal = np.array([f(x, i / FPS) for i, x in enumerate(blink)])[:, 0]
    assert int(np.argmax(causal)) in (30, 31)


def test_bridge():
    values = np.array([[0.0], [np.nan], [np.nan], [3.0], [np.nan]])
    out = bridge(values, ~np.isnan(values[:, 0]))
    np.testing.assert_allclose(out[:, 0], [0, 1, 2, 3, 3])
    with pytest.raises(TrackingError):
        bridge(values, np.zeros(5, bool))


def test_face_driver_live(frames):
    driver = FaceDriver(fps=FPS)
    truth = known_motion()
    out = [driver(f) for f in frames]
    assert all(o is not None for o in out)
    assert out[0].rotation == pytest.approx((0, 0, 0), abs=0.5)
    yaw = np.array([o.rotation[0] for o in out])
    assert np.corrcoef(yaw, truth.rotation[:, 0])[0, 1] > 0.95
    jaw = np.array([o.expression[INDEX["jawOpen"]] for o in out])
    assert np.corrcoef(jaw, truth.expression[:, INDEX["jawOpen"]])[0, 1] > 0.8
    assert driver(np.full_like(frames[0], 128)) is None                 # no face
    with pytest.raises(TrackingError, match="uint8"):
        driver(frames[0].astype(np.float32))
    driver.close()


def test_face_driver_expressions_absolute_when_started_mid_word(frames):
    """A user who starts mid-word: the jaw opening of the first face is not taken as
    neutral, so later frames read (nearly) the same weights as for one who started closed."""
    jaw = INDEX["jawOpen"]
    start = 12                                             # jawOpen 0.5 there (known_motion)
    closed, mid_word = FaceDriver(fps=FPS, smooth=False), FaceDriver(fps=FPS, smooth=False)
    a = np.array([closed(f).expression[jaw] for f in frames])[start:]
    b = np.array([mid_word(f).expression[jaw] for f in frames[start:]])
    assert b[0] > 0.25                                     # the first face's own opening is read
    assert np.abs(a - b).mean() < 0.05 and np.corrcoef(a, b)[0, 1] > 0.95
    closed.close(), mid_word.close()


def test_face_driver_rest_pose_is_not_the_first_frame(portrait):
    """One turned first frame, then a still face: the reference is the mean pose of the
    first second, so the still face reads nearly straight (not 10° off all session)."""
    from puppetry import WarpRenderer
    renderer = WarpRenderer(portrait)
    turned = Motion.still(1, FPS)
    turned.rotation[0, 0] = 10.0
    first = renderer.render_frame(turned[0]).copy()
    still = renderer.render_frame(Motion.still(1, FPS)[0]).copy()
    driver = FaceDriver(fps=FPS, smooth=False)
    out = [driver(f) for f in [first] + [still] * 2 * FPS]
    assert out[0].rotation[0] == pytest.approx(0.0, abs=0.5)        # the first face: its own reference
    assert out[1].rotation[0] < -3.0                                  # early on, still relative to it
    late = np.array([o.rotation[0] for o in out[FPS + 1:]])          # after REFERENCE_SECONDS
    assert np.abs(late).max() < 1.5
    driver.reset()
    assert driver(still).rotation[0] == pytest.approx(0.0, abs=0.5)
    driver.close()


def test_track_clip_in_spans_matches_one_pass(driver_video, clip, tmp_path):
    """Two forked workers, each tracking half the clip (from a few frames before it), give
    the one-pass motion. In a fresh process: forking is refused once MediaPipe runs here."""
    import subprocess
    import sys
    out = tmp_path / "spans.npz"
    code = (
        "import numpy as np, puppetry.drive.video as V, puppetry.runtime as R\n"
        "assert R.fork_is_safe()\n"
        "V.SPAN_MIN = 20\n"
        f"assert len(V._spans({N}, 2)) == 2\n"
        f"c = V.track_clip({str(driver_video)!r}, workers=2)\n"
        "assert 'mediapipe' not in __import__('sys').modules  # tracked in the forks only\n"
        f"np.savez({str(out)!r}, rot=c.motion.rotation, ex=c.motion.expression, valid=c.valid)\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    spans = np.load(out)
    assert spans["valid"].all() and spans["rot"].shape == clip.motion.rotation.shape
    np.testing.assert_allclose(spans["rot"], clip.motion.rotation, atol=0.5)
    jaw, blink = INDEX["jawOpen"], INDEX["eyeBlinkLeft"]
    np.testing.assert_allclose(spans["ex"][:, [jaw, blink]], clip.motion.expression[:, [jaw, blink]],
                               atol=0.08)
    # the landmarks differ by ~0.03 px, enough for this 50-frame clip's neutral face (the
    # median of its 5 most closed frames) to pick other frames: weights the landmarks
    # hardly tell apart (eyeSquint, brows) move by up to ~0.17, 0.01 on average
    assert np.abs(spans["ex"] - clip.motion.expression).mean() < 0.025


def test_map_in_forks_keeps_order_and_falls_back_here():
    from puppetry.runtime import map_in_forks
    assert map_in_forks(lambda i: i * i, 5, workers=2) == [0, 1, 4, 9, 16]
    assert map_in_forks(lambda i: i, 1) == [0]


def test_track_clip_errors(frames, tmp_path):
    with pytest.raises(TrackingError, match="fps"):
        track_clip(frames)
    with pytest.raises(TrackingError, match="face"):
        track_clip([np.full((128, 128, 3), 90, np.uint8)] * 5, fps=FPS)
    with pytest.raises(FileNotFoundError):
        track_clip(tmp_path / "missing.mp4")


def test_cli_track_round_trips_through_render(driver_video, tmp_path):
    from puppetry.cli import main
    from puppetry.drive.motion import load_motion
    out = tmp_path / "motion.json"
    assert main(["track", str(driver_video), "-o", str(out)]) == 0
    motion = load_motion(out)
    assert len(motion) == N and motion.fps == FPS
    truth = known_motion()
    assert np.corrcoef(motion.rotation[:, 0], truth.rotation[:, 0])[0, 1] > 0.98
    video = tmp_path / "again.mp4"
    assert main(["render", "astronaut", "--motion", str(out), "--size", str(SIZE), "-o", str(video)]) == 0
    again = track_clip(video).motion                     # re-track the rendered video
    assert np.corrcoef(again.rotation[:, 0], motion.rotation[:, 0])[0, 1] > 0.95
    assert main(["track", str(tmp_path / "missing.mp4"), "-o", str(out)]) == 1
    assert main(["track", str(driver_video), "-o", str(driver_video)]) == 1   # never an input


def test_cli_reenact(driver_video, clip, tmp_path):
    from puppetry.cli import main
    from puppetry.drive.video import transfer
    from puppetry.io import video_info
    out = tmp_path / "out.mp4"
    assert main(["reenact", "astronaut", str(driver_video), "--size", "256", "-o", str(out)]) == 0
    info = video_info(out)
    assert info["n_frames"] == N and info["fps"] == FPS and (info["width"], info["height"]) == (256, 256)
    again = track_clip(out).motion                        # the source follows the driver's turn
    assert np.corrcoef(again.rotation[:, 0], known_motion().rotation[:, 0])[0, 1] > 0.9
    pose = transfer(clip, only="pose", expression={"mouthSmileLeft": 0.6})
    assert not pose.expression[:, INDEX["jawOpen"]].any()
    assert np.all(pose.expression[:, INDEX["mouthSmileLeft"]] == np.float32(0.6))
    expr = transfer(clip, only="expression")
    assert not expr.rotation.any() and np.all(expr.scale == 1)
    assert main(["reenact", "astronaut", str(driver_video), "-o", str(out), "--expression", "smile"]) == 1
    assert main(["reenact", "astronaut", str(driver_video), "-o", str(driver_video)]) == 1


def test_relative_transfer_keeps_the_drivers_absolute_weights(frames, portrait):
    """A driver filmed mid-word: its first frame's open jaw is not subtracted from the rest
    (only the pose is relative); ``only="pose"`` keeps the source photo's own expression."""
    from puppetry.drive.video import transfer
    truth = known_motion()
    start = 12                                          # the jaw ~0.5 open here
    clip = track_clip(frames[start:], fps=FPS)
    motion = transfer(clip, portrait)
    jaw = motion.expression[:, INDEX["jawOpen"]]
    assert jaw[0] > 0.25                                # open from the first frame on
    assert np.corrcoef(jaw, truth.expression[start:, INDEX["jawOpen"]])[0, 1] > 0.8
    np.testing.assert_allclose(motion.rotation[0], 0, atol=1.0)     # pose: relative
    pose = transfer(clip, portrait, only="pose")
    np.testing.assert_allclose(pose.expression, np.broadcast_to(portrait.expression, pose.expression.shape))


def test_smooth_speech_keeps_syllables():
    from puppetry.drive.video import smooth_speech
    t = np.arange(100) / FPS
    syllables = 0.3 * (0.5 - 0.5 * np.cos(2 * np.pi * 4.0 * t))[:, None]     # 4 Hz
    out = smooth_speech(syllables)
    assert out.shape == syllables.shape and int(np.argmax(out[:13, 0])) == int(np.argmax(syllables[:13, 0]))
    assert np.ptp(out[10:90]) > 0.75 * np.ptp(syllables)                   # little smear
    noise = np.random.default_rng(0).normal(0, 1, (400, 1))
    assert smooth_speech(noise).std() < 0.7 * noise.std()                   # less jitter


def test_cli_track_marks_lost_frames_in_json_and_csv(frames, tmp_path):
    import csv
    import json
    from puppetry.cli import main
    from puppetry.drive.motion import MotionError, load_motion, parse_motion
    from puppetry.expression.arkit import ARKIT_NAMES
    from puppetry.io import write_video
    lost = [20, 21, 22]
    blank = np.full_like(frames[0], 128)
    video = write_video(tmp_path / "lost.mp4", [blank if i in lost else f for i, f in enumerate(frames)], FPS)
    out, table = tmp_path / "motion.json", tmp_path / "motion.csv"
    assert main(["track", str(video), "-o", str(out), "--csv", str(table)]) == 0
    data = json.loads(out.read_text())
    assert set(lost) <= set(data["lost"]) and len(data["lost"]) <= len(lost) + 1
    motion = load_motion(out)                                # the reader passes over "lost"
    assert len(motion) == N and np.all(np.isfinite(motion.rotation))
    rows = list(csv.reader(table.open()))
    assert rows[0][:3] == ["frame", "time", "lost"] and rows[0][-52:] == list(ARKIT_NAMES)
    assert len(rows) == N + 1 and all(len(r) == len(rows[0]) for r in rows)
    flagged = [int(r[0]) for r in rows[1:] if r[2] == "1"]
    assert flagged == data["lost"]
    yaw = np.array([float(r[3]) for r in rows[1:]])
    np.testing.assert_allclose(yaw, motion.rotation[:, 0], atol=1e-4)  # the same curves
    assert float(rows[2][1]) == pytest.approx(1 / FPS)
    only_csv = tmp_path / "only.csv"                          # -o NAME.csv: the CSV instead
    assert main(["track", str(video), "-o", str(only_csv)]) == 0
    assert only_csv.read_text().startswith("frame,time,lost,yaw")
    assert main(["track", str(video), "-o", str(out), "--csv", str(out), "--force"]) == 1
    with pytest.raises(MotionError, match="lost"):
        parse_motion('{"fps": 25, "frames": [{"t": 0}], "lost": [-1]}')
