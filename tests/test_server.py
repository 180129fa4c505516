"""The streaming server over real WebSockets on loopback: order, timestamps, frame counts,
barge-in, bad input, capacity, disconnects and slow clients."""
from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402

from puppetry.audio import to_pcm16  # noqa: E402
from puppetry.client import AvatarClient, Frame, ServerError, unpack_frame, upload_portrait  # noqa: E402
from puppetry.portrait import bundled_portrait  # noqa: E402
from puppetry.ui.server import ServerConfig, Session, build_app, uvicorn_config  # noqa: E402

FPS = 25.0


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-rate amplitude-modulated harmonics: float32[n] at 16 kHz."""
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(seed)
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700, 1100), 1))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, 1) ** 2
    return (0.3 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


class Running:
    def __init__(self, driver=None, **overrides):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.config = ServerConfig(port=self.port, **overrides)
        self.app = build_app(self.config, driver)
        self.server = uvicorn.Server(uvicorn_config(self.app, self.config, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"ws://127.0.0.1:{self.port}/v1/stream"
        self.http = f"http://127.0.0.1:{self.port}"

    def health(self) -> dict:
        with urllib.request.urlopen(self.http + "/v1/health", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server():
    running = Running(max_sessions=2)
    yield running
    running.stop()


def speech_frames(client: AvatarClient) -> list[Frame]:
    out = []
    for frame in client.frames():
        if frame.utterance is not None:
            out.append(frame)
            if frame.last:
                return out


def test_utterance_frames_in_order_aligned_and_paced(server):
    audio = speech_like(2.0)
    with AvatarClient(server.url, seed=3) as c:
        assert c.ready["fps"] == FPS and len(c.names) == 52
        idle = list(c.frames(count=5))
        assert all(f.utterance is None for f in idle)
        t0 = time.perf_counter()
        c.send_audio(audio)
        c.end()
        frames = speech_frames(c)
        wall = time.perf_counter() - t0
    # duration x fps frames (an overloaded machine may skip a few, never shift them)
    assert 0.9 * 2.0 * FPS <= len(frames) <= round(2.0 * FPS)
    assert frames[0].audio_t == 0 and frames[-1].audio_t == pytest.approx((round(2.0 * FPS) - 1) / FPS)
    assert [f.audio_t for f in frames] == pytest.approx([(f.index - frames[0].index) / FPS for f in frames], abs=1e-3)
    indices = [f.index for f in idle + frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    times = [f.t for f in frames]
    assert np.all(np.diff(times) > 0)
    assert wall >= 0.8 * len(frames) / FPS                          # paced, not a burst
    assert frames[0].latency_ms is not None and frames[0].latency_ms > 0
    jaw = np.array([f.weights[c.names.index("jawOpen")] for f in frames])
    assert jaw.max() > 0.1                                          # the mouth moves
    img = frames[0].image()
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8


def test_odd_pcm_chunks_and_base64_audio(server):
    pcm = to_pcm16(speech_like(1.0, seed=1))
    with AvatarClient(server.url) as c:
        for i in range(0, len(pcm), 333):                          # splits samples in two
            c.send_audio(pcm[i:i + 333])
        c.end()
        assert len(speech_frames(c)) == 25
        import base64
        c.send({"type": "audio", "data": base64.b64encode(pcm[:16000]).decode()})
        c.end()
        assert len(speech_frames(c)) == round(0.5 * FPS)


def test_reset_interrupts_the_utterance(server):
    with AvatarClient(server.url) as c:
        c.send_audio(speech_like(6.0))
        c.end()
        seen = 0
        for frame in c.frames():
            seen += frame.utterance is not None
            if seen == 5:
                break
        c.reset()
        after = []
        for _ in range(60):
            item = c.receive()
            after.append(item)
            if isinstance(item, Frame) and item.utterance is None and any(
                    isinstance(m, dict) and m.get("type") == "reset" for m in after):
                break
        acked = next(i for i, m in enumerate(after) if isinstance(m, dict) and m.get("type") == "reset")
        later = [f for f in after[acked:] if isinstance(f, Frame)]
        assert later and all(f.utterance is None for f in later)     # no speech after the ack
        assert len([f for f in after[:acked] if isinstance(f, Frame)]) <= 3
        # the session goes on: a new utterance speaks
        c.send_audio(speech_like(0.4))
        c.end()
        assert len(speech_frames(c)) == 10


def test_malformed_messages_get_errors_and_the_session_survives(server):
    with AvatarClient(server.url) as c:
        for bad in ("not json", json.dumps([1, 2]), json.dumps({"type": "dance"}),
                    json.dumps({"type": "text", "text": ""}), json.dumps({"type": "start"}),
                    json.dumps({"type": "audio", "data": "***"})):
            c.ws.send(bad)
        errors = []
        while len(errors) < 6:
            item = c.receive()
            if isinstance(item, dict) and item.get("type") == "error":
                errors.append(item["message"])
        assert "not JSON" in errors[0] and "type" in errors[1] and "dance" in errors[2]
        assert "already started" in errors[4] and "base64" in errors[5]
        assert len(list(c.frames(count=3))) == 3                      # still streaming


def test_bad_start_options_and_unknown_portrait(server):
    from websockets.sync.client import connect
    with connect(server.url) as ws:
        ws.send(b"\x00\x01")
        assert "before start" in json.loads(ws.recv(timeout=10))["message"]
        ws.send(json.dumps({"type": "start", "seed": -4}))
        assert "seed" in json.loads(ws.recv(timeout=10))["message"]
        ws.send(json.dumps({"type": "start", "portrait_id": "nobody"}))
        assert "POST /v1/portraits" in json.loads(ws.recv(timeout=10))["message"]
        ws.send(json.dumps({"type": "start"}))                      # then a good one works
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"


def test_capacity_is_stated_and_extra_sessions_refused(server):
    with AvatarClient(server.url), AvatarClient(server.url):
        assert server.health()["sessions"] == 2
        with pytest.raises(ServerError, match="capacity") as err:
            AvatarClient(server.url)
        assert err.value.code == "capacity"
    deadline = time.time() + 5
    while server.health()["sessions"] and time.time() < deadline:
        time.sleep(0.05)
    assert server.health()["sessions"] == 0


def test_disconnect_mid_stream_frees_the_session(server):
    c = AvatarClient(server.url)
    c.send_audio(speech_like(3.0))
    next(c.frames(count=1))
    c.ws.close()                                                   # vanish mid-utterance
    deadline = time.time() + 5
    while server.health()["sessions"] and time.time() < deadline:
        time.sleep(0.05)
    assert server.health()["sessions"] == 0


def test_slow_client_buffer_is_bounded_and_drops_are_counted():
    class Deaf:                                  # never reads: the outbox must not grow
        async def send_json(self, message):
            pass

    async def run():
        from puppetry.ui.server import Server
        session = Session(Server(ServerConfig(send_buffer=4)), Deaf())
        frame = type("F", (), {"index": 0, "utterance": None, "audio_t": None, "last": False,
                               "rotation": (0.0, 0.0, 0.0), "weights": np.zeros(52)})()
        session.post_json({"type": "utterance", "utterance": 1})
        for i in range(50):
            frame.index = i
            session.post(frame, b"jpeg", i / FPS)
        return session

    session = asyncio.run(run())
    frames = [m for m in session.outbox if isinstance(m, bytes)]
    assert len(frames) == 4 and session.dropped == 46
    assert [unpack_frame(m).index for m in frames] == [46, 47, 48, 49]   # the newest kept
    assert isinstance(session.outbox[0], str)                          # control messages kept


def test_portrait_upload(server, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(bundled_portrait()).save(buf, "PNG")
    pid = upload_portrait(server.http, buf.getvalue())
    assert pid == upload_portrait(server.http, buf.getvalue())         # same image, same id
    with AvatarClient(server.url, portrait=pid) as c:
        assert c.ready["portrait_id"] == pid
    with pytest.raises(ServerError, match="not a readable image"):
        upload_portrait(server.http, b"this is not an image")
    grey = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(grey, "PNG")
    with pytest.raises(ServerError, match="[Nn]o face"):
        upload_portrait(server.http, grey.getvalue())
    with pytest.raises(ServerError, match="limit"):
        upload_portrait(server.http, b"\xff" * int(server.config.max_upload_mb * 1e6 + 1000))


def test_text_is_spoken(server):
    pytest.importorskip("espeakng_loader")
    with AvatarClient(server.url) as c:
        c.say("Hello there.")
        frames = speech_frames(c)
        speech = next(m for m in c.messages if m.get("type") == "speech")
    assert abs(len(frames) - speech["duration"] * FPS) <= 1


def test_streaming_page_shows_frames_and_speaks(server, page):
    """The page at / in headless Chromium: idle frames arrive, typed words are spoken."""
    page.goto(server.http + "/")
    frames = "Number(document.getElementById('face').dataset.frames || 0)"
    page.wait_for_function(f"{frames} > 10", timeout=60_000)
    assert page.locator("#status").inner_text().startswith("connected")
    assert page.evaluate("document.getElementById('face').naturalWidth") == 256
    page.fill("#text", "Good morning.")
    page.click("#say")
    page.wait_for_function("document.getElementById('state').textContent.startsWith('speaking')",
                           timeout=60_000)
    page.wait_for_function("document.getElementById('state').textContent === 'idle'", timeout=60_000)
    assert "ms" in page.locator("#latency").inner_text()
    assert page.locator("#error").inner_text() == ""


@pytest.fixture(scope="module")
def astronaut256():
    from puppetry.portrait import load_portrait
    return load_portrait("astronaut", size=256)


def test_skipping_frames_never_drops_speech(astronaut256):
    """An overloaded session skips idle frames only: every frame of an utterance is shown,
    in order, and indices jump by the idle frames skipped."""
    from puppetry.stream import AvatarStream
    live = AvatarStream(astronaut256)
    assert live.skip(3) == 3 and live.index == 3                 # idle: skipped
    live.push_audio(speech_like(1.0))
    live.end_utterance()
    first = live.next_frame()
    assert first.utterance == 1 and first.audio_t == 0 and first.index == 3
    assert live.skip(10) == 0                                    # speech: never skipped
    rest = [live.next_frame() for _ in range(24)]
    assert [f.audio_t for f in rest] == pytest.approx([i / FPS for i in range(1, 25)])
    assert rest[-1].last and live.next_frame().utterance is None


def test_a_burst_of_speech_is_absorbed_a_slice_at_a_time(astronaut256):
    """Minutes of audio pushed at once (a long text, a file sent as fast as the socket
    takes it) cost a tick no more than real-time audio: only the next few frames' audio
    is turned into expressions; the rest waits, counted in ``queued_s``."""
    from puppetry.stream import READY_FRAMES, AvatarStream
    live = AvatarStream(astronaut256)
    audio = speech_like(30.0)
    for i in range(0, len(audio), 320):                        # 20 ms chunks, all at once
        live.push_audio(audio[i:i + 320])
    live.end_utterance()
    assert live.queued_s == pytest.approx(30.0, abs=0.01)
    first = live.next_frame()
    assert first.utterance == 1 and first.audio_t == 0
    assert live.expressions.frames_out <= 2 * READY_FRAMES + 5   # not 750 frames' worth
    assert 29.0 < live.queued_s < 30.0
    live.reset()
    assert live.next_frame().utterance is None and live.queued_s == 0


@pytest.mark.parametrize("chunk", [320, 1, 16000 * 3])
def test_every_utterance_gives_all_its_frames_whatever_the_chunking(astronaut256, chunk):
    """Two utterances sent back to back in 20 ms chunks, single samples or one piece:
    round(duration x fps) frames each, in order, the first at audio_t 0."""
    from puppetry.stream import AvatarStream
    live = AvatarStream(astronaut256)
    for seconds in (1.3, 0.7):
        audio = speech_like(seconds)
        step = chunk if chunk > 1 else 997                      # odd sizes
        for i in range(0, len(audio), step):
            live.push_audio(audio[i:i + step])
        live.end_utterance()
    frames = [live.next_frame() for _ in range(60)]
    for uid, seconds in ((1, 1.3), (2, 0.7)):
        mine = [f for f in frames if f.utterance == uid]
        assert [f.audio_t for f in mine] == pytest.approx([i / FPS for i in range(round(seconds * FPS))])
        assert mine[-1].last
    speech = [f.index for f in frames if f.utterance is not None]
    assert speech == list(range(speech[0], speech[0] + len(speech)))   # back to back


def test_streaming_page_sends_a_file_and_the_microphone(server, chromium_path, tmp_path):
    """The page's other two inputs: an audio file, and a (fake) microphone."""
    import soundfile
    from playwright.sync_api import sync_playwright
    wav = tmp_path / "hello.wav"
    soundfile.write(wav, speech_like(1.5), 16000)
    speaking = "document.getElementById('state').textContent.startsWith('speaking')"
    idle = "document.getElementById('state').textContent === 'idle'"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        page = browser.new_page()
        page.goto(server.http + "/")
        page.wait_for_function("!document.getElementById('audiofile').disabled", timeout=60_000)
        page.set_input_files("#audiofile", str(wav))
        page.wait_for_function(speaking, timeout=60_000)
        page.wait_for_function(idle, timeout=60_000)
        page.click("#mic")                                   # Chromium's fake microphone
        page.wait_for_function(speaking, timeout=60_000)
        assert page.locator("#mic").inner_text() == "Stop microphone"
        page.click("#mic")
        page.wait_for_function(idle, timeout=60_000)
        assert page.locator("#error").inner_text() == ""
        browser.close()


def test_puppetry_serve_command_starts_and_states_its_capacity(free_port):
    import subprocess
    from puppetry.ui.server import serve_in_subprocess
    proc = serve_in_subprocess(free_port, "--max-sessions", "3", stdout=subprocess.PIPE)
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{free_port}/" in banner and "3 sessions" in banner
        with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/v1/health", timeout=5) as r:
            health = json.loads(r.read())
        assert health["max_sessions"] == 3 and health["sessions"] == 0 and health["size"] == 256
        with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/", timeout=5) as r:
            assert b"live avatar" in r.read()
    finally:
        proc.terminate()
        proc.wait(10)


def test_inline_portrait_without_a_face_is_answered_and_start_can_be_retried(server):
    import base64
    from websockets.sync.client import connect
    grey = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(grey, "PNG")
    with connect(server.url) as ws:
        ws.send(json.dumps({"type": "start", "portrait": base64.b64encode(grey.getvalue()).decode()}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "error" and "face" in reply["message"].lower()
        ws.send(json.dumps({"type": "start", "portrait": "not base64 !"}))
        assert "base64" in json.loads(ws.recv(timeout=10))["message"]
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
