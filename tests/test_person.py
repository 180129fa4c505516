"""A person learned from video: crops, a tiny learn run, the .puppet round trip, dubbing."""
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from puppetry.audio import SAMPLE_RATE
from puppetry.cli import main
from puppetry.drive.frames import Motion
from puppetry.expression.arkit import INDEX
from puppetry.io import OutputError, read_video_frames, video_info, write_video
from puppetry.person import LearnConfig, PersonError, dub_video, learn, load_person
from puppetry.person import crop as C
from puppetry.person.dub import DubJob, nearest_valid, ping_pong
from puppetry.person.footage import FootageError
from puppetry.person.net import MouthNet, NetDims
from puppetry.person.train import TrainConfig

FPS = 25
N_FRAMES = 40
TINY = LearnConfig(minutes=0.05, crop=C.CropConfig(size=64), dims=NetDims(channels=(8, 16)),
                   train=TrainConfig(max_steps=3, batch=2))


def speech(seconds: float) -> np.ndarray:
    """A vowel-like buzz switched on and off at 4 Hz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    buzz = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1100), 1))
    return (0.2 * buzz * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32)


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """A 1.6 s video of the bundled portrait opening and closing its mouth, with speech."""
    import puppetry
    folder = tmp_path_factory.mktemp("person")
    motion = Motion.still(N_FRAMES, FPS)
    motion.expression[:, INDEX["jawOpen"]] = 0.25 * (1 - np.cos(np.arange(N_FRAMES) * 0.6))
    portrait = puppetry.load_portrait("astronaut", size=256)
    video = folder / "talking.mp4"
    write_video(video, puppetry.render(portrait, motion, workers=1), fps=FPS,
                audio=(speech(N_FRAMES / FPS), SAMPLE_RATE))
    puppet = folder / "astronaut.puppet"
    meta = learn(video, puppet, TINY, device="cpu")
    return video, puppet, meta


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (30, 2))
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a = C.similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(a[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(a[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(C.invert(a)[:, :2], np.linalg.inv(rot), atol=1e-9)


def test_region_mask_and_paste_touch_only_the_region():
    cfg = C.CropConfig(size=64)
    hard, soft = C.region_mask(cfg)
    assert hard.shape == soft.shape == (64, 64)
    assert hard[32, 32] == 1 and hard[0, 0] == 0 and soft[0, 0] == 0
    assert np.all(soft <= hard) and soft.max() == pytest.approx(1.0, abs=1e-3)
    frame = np.random.default_rng(1).integers(0, 255, (120, 160, 3), np.uint8)
    affine = C.similarity(np.array([[40.0, 30], [120, 30], [80, 100]]), np.array([[0.0, 0], [64, 0], [32, 56]]))
    white = np.full((64, 64, 3), 255, np.uint8)
    out = C.paste(frame, white, affine, cfg)
    changed = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(changed)
    inside = C.to_crop(affine, np.stack([xs, ys], 1).astype(float))
    assert changed.sum() > 500
    assert np.all((inside > -1) & (inside < 65))                   # only within the crop


def test_geometry_draws_lips_and_an_open_mouth(talking):
    _, puppet, _ = talking
    person = load_person(puppet)
    from puppetry.person.footage import driven_points
    pose = np.asarray(person.footage["pose"][0])
    affine = np.asarray(person.footage["affine"][0], np.float64)
    closed = C.draw_geometry(C.to_crop(affine, driven_points(person.identity, np.zeros(52), pose)), 64)
    e = np.zeros(52, np.float32)
    e[INDEX["jawOpen"]] = 0.6
    opened = C.draw_geometry(C.to_crop(affine, driven_points(person.identity, e, pose)), 64)
    assert closed.shape == (3, 64, 64) and closed[0].sum() > 5      # lips drawn
    assert opened[1].sum() > closed[1].sum() + 5                    # the mouth opens


def test_ping_pong_and_nearest_valid():
    assert ping_pong(9, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert ping_pong(3, 1).tolist() == [0, 0, 0]
    assert nearest_valid(np.array([False, True, False, False, True])).tolist() == [1, 1, 1, 4, 4]
    with pytest.raises(FootageError):
        nearest_valid(np.zeros(3, bool))


def test_the_style_keeps_the_persons_spread():
    """A least-squares style map shrinks the mouth's movement by the correlation it finds
    (the dubbed mouth hardly moved: issue 11); ``match_spread`` gives it the person's."""
    from puppetry.expression.style import SPEECH_NAMES, Style, _fit_ridge
    from puppetry.expression.style import match_spread
    rng = np.random.default_rng(0)
    t = np.arange(200)
    person = np.zeros((200, 52))
    person[:, INDEX["jawOpen"]] = 0.2 * (1 - np.cos(t * 0.5))
    shared = np.zeros((200, 52))
    shared[:, INDEX["jawOpen"]] = 0.5 * person[:, INDEX["jawOpen"]] + rng.normal(0, 0.07, 200)
    cols = [INDEX[n] for n in SPEECH_NAMES]
    style = Style(SPEECH_NAMES, *_fit_ridge(shared[:, cols], person[:, cols]))
    jaw = person[:, INDEX["jawOpen"]]
    shrunk = style.apply(shared)[:, INDEX["jawOpen"]]
    assert shrunk.std() < 0.8 * jaw.std()                           # the plain fit: shrunk
    wide = match_spread(style, shared, person).apply(shared)[:, INDEX["jawOpen"]]
    assert wide.std() == pytest.approx(jaw.std(), rel=0.1)           # the person's spread
    assert wide.mean() == pytest.approx(jaw.mean(), abs=0.02)
    assert np.corrcoef(wide, shrunk)[0, 1] > 0.99                    # the same timing
    assert wide.min() >= 0 and wide.max() <= 1


def test_unet_shapes():
    net = MouthNet(NetDims(channels=(8, 16, 24)))
    y = net(torch.rand(2, 7, 64, 64))
    assert y.shape == (2, 3, 64, 64) and float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    moving = MouthNet(NetDims(channels=(8, 16, 24), texture=True, flow=True))
    x = torch.rand(2, 7, 64, 64)
    y = moving(x).detach()
    assert y.shape == (2, 3, 64, 64)
    # untrained, it shows the lower face it was given, not moved (blend weight ~0.88)
    assert float((y - x[:, :3]).abs().max()) < 0.13
    assert float(torch.corrcoef(torch.stack([y.flatten(), x[:, :3].flatten()]))[0, 1]) > 0.95
    with pytest.raises(ValueError, match="texture"):
        MouthNet(NetDims(texture=False, flow=True))


def test_learn_writes_a_self_describing_file(talking):
    video, puppet, meta = talking
    assert puppet.stat().st_size < 50 * 2**20
    person = load_person(puppet)
    assert person.meta["frames_used"] == meta["frames_used"] > 30
    assert person.meta["frames_dropped"] == {"lost": 0, "blurred": meta["frames_dropped"]["blurred"]}
    assert person.meta["training"]["steps"] == 3 and person.meta["training"]["curve"]
    assert person.meta["source"]["name"] == "talking.mp4"
    assert person.net.dims == TINY.dims and person.crop == TINY.crop
    assert person.style is not None
    assert len(person.footage["valid"]) == N_FRAMES
    assert person.reference.shape == (256, 256, 3)
    # the weights survive the round trip: the same crops out of the same input
    again = load_person(puppet)
    frame = next(iter(read_video_frames(video)))
    e = np.zeros(52, np.float32)
    e[INDEX["jawOpen"]] = 0.5
    args = (frame, person.footage["pose"][5], person.footage["affine"][5], e)
    a, b = person.render_frame(*args), again.render_frame(*args)
    np.testing.assert_array_equal(a, b)
    # only the lower face changes
    assert a.shape == frame.shape
    changed = np.any(a != frame, axis=2)
    assert changed.any() and not changed[:100].any()               # the top of the head is kept


def test_learning_goes_on_from_a_person(talking, tmp_path):
    video, puppet, _ = talking
    more = tmp_path / "more.puppet"
    meta = learn(video, more, replace(TINY, start=str(puppet)), device="cpu")
    assert meta["training"]["before_s"] > 0 and meta["training"]["started_from"] == str(puppet)
    a, b = load_person(puppet).net.state_dict(), load_person(more).net.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


def test_dub_follows_the_speech_length_with_its_audio(talking, tmp_path):
    video, puppet, _ = talking
    wav = tmp_path / "new.wav"
    sf.write(wav, speech(2.4), SAMPLE_RATE)                         # longer than the footage
    out = tmp_path / "dub.mp4"
    stats = dub_video(puppet, wav, out, DubJob(workers=1))
    info = video_info(out)
    assert stats["frames"] == info["n_frames"] == 60
    assert info["has_audio"] and info["audio_duration"] == pytest.approx(2.4, abs=0.1)
    assert (info["width"], info["height"]) == (256, 256)
    warp = tmp_path / "warp.mp4"
    assert main(["dub", str(puppet), str(wav), "-o", str(warp), "--renderer", "warp"]) == 0
    assert video_info(warp)["n_frames"] == 60
    other = tmp_path / "other.mp4"                                  # footage given: tracked now
    assert dub_video(puppet, wav, other, DubJob(workers=1), video=video)["frames"] == 60


def test_errors_name_the_input(talking, tmp_path):
    video, puppet, _ = talking
    bad = tmp_path / "not.puppet"
    bad.write_bytes(b"nothing")
    with pytest.raises(PersonError, match="not.puppet"):
        load_person(bad)
    with pytest.raises(PersonError, match="not found"):
        load_person(tmp_path / "missing.puppet")
    with pytest.raises(OutputError):
        dub_video(puppet, video, video)                             # the output is an input
    with pytest.raises(ValueError, match="renderer"):
        dub_video(puppet, video, tmp_path / "x.mp4", replace(DubJob(), renderer="magic"))
    blank = tmp_path / "blank.mp4"
    write_video(blank, [np.full((128, 128, 3), 90, np.uint8)] * 30, fps=FPS)
    with pytest.raises(FootageError, match="blank.mp4"):
        learn(blank, tmp_path / "blank.puppet", TINY, device="cpu")
    assert main(["learn", str(blank), "-o", str(tmp_path / "b.puppet"), "--minutes", "1"]) == 1
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            learn(video, tmp_path / "c.puppet", TINY, device="cuda")


def test_a_person_learned_before_the_texture_option_still_blanks_its_region(talking, tmp_path):
    _, puppet, _ = talking
    assert load_person(puppet).net.dims.texture                      # the default now
    data = torch.load(puppet, map_location="cpu", weights_only=False)
    data["dims"] = {k: v for k, v in data["dims"].items() if k not in ("texture", "flow")}
    torch.save(data, tmp_path / "old.puppet")
    assert not load_person(tmp_path / "old.puppet").net.dims.texture


def test_a_moved_person_finds_its_video_beside_it(talking, tmp_path):
    """A .puppet and its video copied elsewhere (another machine): the absolute path is
    gone, the path relative to the .puppet is used; with no video there, --video is named."""
    import shutil

    from puppetry.person.live import LivePerson
    video, puppet, _ = talking
    person = load_person(puppet)
    assert person.meta["source"]["relative"] == "talking.mp4" and person.video() == video.resolve()
    gone = str(tmp_path / "gone" / "talking.mp4")
    person.meta["source"]["path"] = person.footage["source"] = gone
    moved = tmp_path / "elsewhere"
    person.save(moved / "astronaut.puppet")
    shutil.copy(video, moved / "talking.mp4")
    again = load_person(moved / "astronaut.puppet")
    assert again.video() == moved / "talking.mp4"
    wav = tmp_path / "new.wav"
    sf.write(wav, speech(0.4), SAMPLE_RATE)
    assert dub_video(moved / "astronaut.puppet", wav, tmp_path / "dub.mp4", DubJob(workers=1))["frames"] == 10
    (moved / "talking.mp4").write_bytes(b"another file")             # not the video it learned from
    assert load_person(moved / "astronaut.puppet").video() is None
    (moved / "talking.mp4").unlink()
    with pytest.raises(FootageError, match="--video"):
        dub_video(moved / "astronaut.puppet", wav, tmp_path / "dub2.mp4")
    with pytest.raises(PersonError, match="talking.mp4"):
        LivePerson(load_person(moved / "astronaut.puppet"), 128)
    assert main(["dub", str(moved / "astronaut.puppet"), str(wav), "-o", str(tmp_path / "d3.mp4")]) == 1


def test_training_stops_on_its_budget_and_keeps_the_best_weights():
    from puppetry.person.train import WINDOW, train_renderer
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (6, 64, 64, 3), np.uint8)
    geometry = rng.integers(0, 255, (6, 3, 64, 64), np.uint8)
    net = MouthNet(NetDims(channels=(8, 16)))
    cfg = TrainConfig(minutes=1e-6, max_steps=1000, batch=2)
    assert train_renderer(net, crops, geometry, C.CropConfig(size=64), cfg)["steps"] == 1   # the budget ends it
    cfg = replace(cfg, minutes=10.0, max_steps=3 * WINDOW, lr=0.05)                       # a rough ride
    summary = train_renderer(net, crops, geometry, C.CropConfig(size=64), cfg)
    assert summary["steps"] == 3 * WINDOW and len(summary["curve"]) == 3
    assert summary["best_loss"] == min(loss for _, loss in summary["curve"])
    assert summary["best_step"] in [s for s, _ in summary["curve"]]


def test_animate_takes_a_person_like_dub(talking, tmp_path):
    _, puppet, _ = talking
    wav = tmp_path / "new.wav"
    sf.write(wav, speech(1.0), SAMPLE_RATE)
    out = tmp_path / "animated.mp4"
    assert main(["animate", str(puppet), str(wav), "-o", str(out)]) == 0
    info = video_info(out)
    assert info["n_frames"] == 25 and (info["width"], info["height"]) == (256, 256) and info["has_audio"]
    assert main(["animate", str(puppet), str(wav), "-o", str(tmp_path / "x.mp4"), "--size", "384"]) == 1


class _Mkdir:
    """Unpickling this would run code (make a folder)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os
        return os.mkdir, (str(self.path),)


def test_a_puppet_file_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.puppet"
    torch.save({"kind": "puppetry.person", "version": 1, "style": _Mkdir(marker)}, evil)
    with pytest.raises(PersonError, match="evil.puppet"):
        load_person(evil)
    assert not marker.exists()
    broken = tmp_path / "broken.puppet"
    torch.save({"kind": "puppetry.person", "version": 1, "dims": {}}, broken)
    with pytest.raises(PersonError, match="damaged"):
        load_person(broken)


def test_demo_tab_dubs_an_uploaded_person(talking, tmp_path):
    gr = pytest.importorskip("gradio")
    from puppetry.ui import demo, tab_person
    _, puppet, _ = talking
    assert tab_person in demo.TABS
    wav = tmp_path / "new.wav"
    sf.write(wav, speech(0.8), SAMPLE_RATE)
    video = tab_person.generate(str(puppet), str(wav), None)
    assert video_info(video)["n_frames"] == 20
    with pytest.raises(gr.Error, match="not both"):
        tab_person.generate(str(puppet), str(wav), "hello")
    with pytest.raises(gr.Error, match=".puppet"):
        tab_person.generate(None, str(wav), None)
    bad = tmp_path / "me.puppet"
    bad.write_bytes(b"nothing")
    with pytest.raises(gr.Error, match="me.puppet") as err:
        tab_person.generate(str(bad), str(wav), None)
    assert str(tmp_path) not in str(err.value)                     # no server paths on the page


def test_a_live_stream_shows_the_person(talking):
    from puppetry.person.live import LivePerson
    from puppetry.stream import AvatarStream, StreamConfig
    _, puppet, _ = talking
    shared = LivePerson(load_person(puppet), 128)                    # footage 256² -> 128²
    assert shared.frames.shape == (N_FRAMES, 128, 128, 3)
    live = AvatarStream(None, StreamConfig(size=128), renderer=shared.session())
    live.push_audio(speech(1.0))
    live.end_utterance()
    frames = [live.next_frame() for _ in range(30)]
    spoken = [f for f in frames if f.utterance is not None]
    assert len(spoken) == 25
    for t, f in enumerate(frames):
        footage = shared.frames[shared.order[t]]
        assert f.image.shape == (128, 128, 3)
        np.testing.assert_array_equal(f.image[:40], footage[:40])  # above the mouth: the footage
    assert any(np.abs(f.image.astype(int) - shared.frames[shared.order[f.index]]).max() > 10 for f in spoken)


def test_serve_streams_the_person(talking):
    pytest.importorskip("uvicorn")
    pytest.importorskip("websockets")
    import socket
    import threading
    import time

    import uvicorn

    from puppetry.client import AvatarClient
    from puppetry.ui.server import ServerConfig, build_app, uvicorn_config
    _, puppet, _ = talking
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServerConfig(port=port, size=128, person=str(puppet))
    app = build_app(config)
    assert app.state.server.max_sessions == 1
    server = uvicorn.Server(uvicorn_config(app, config, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        with AvatarClient(f"ws://127.0.0.1:{port}/v1/stream") as c:
            assert c.ready["portrait_id"] == "person" and c.ready["size"] == 128
            c.send_audio(speech(0.4))
            c.end()
            frames = list(c.frames(until_utterance_end=True))
        assert sum(f.utterance is not None for f in frames) == 10
        assert frames[-1].image().shape == (128, 128, 3)
    finally:
        server.should_exit = True
        thread.join(10)
