"""The streaming server against a careless or hostile client (issue 13): who may connect,
slots and timeouts, bounded input, error messages, and speech that never loses frames."""
from __future__ import annotations

import io
import json
import logging
import socket
import struct
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

from PIL import Image  # noqa: E402
from test_server import FPS, Running, speech_frames, speech_like  # noqa: E402

from puppetry.audio import to_pcm16  # noqa: E402
from puppetry.client import AvatarClient, Frame, ServerError, upload_portrait  # noqa: E402
from puppetry.drive.frames import DrivingFrame  # noqa: E402
from puppetry.portrait import bundled_portrait  # noqa: E402
from puppetry.ui.server import ServerConfig, check_config, decode_upload  # noqa: E402

TOKEN = "correct-horse-battery"


@pytest.fixture(scope="module")
def server():
    running = Running(max_sessions=2, max_ahead_s=5.0)
    yield running
    running.stop()


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def png(w: int, h: int, colour=(128, 128, 128)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


def refused_status(url: str, **kwargs) -> int:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    with pytest.raises(InvalidStatus) as err:
        with connect(url, open_timeout=30, **kwargs):
            pass
    return err.value.response.status_code


# -- who may connect ---------------------------------------------------------------------
def test_a_foreign_origin_is_refused_on_the_websocket_and_on_post(server):
    evil = "http://evil.example"
    assert refused_status(server.url, origin=evil) == 403
    status, body = post(server.http + "/v1/portraits", png(64, 64), {"Origin": evil})
    assert status == 403 and "--allow-origin" in body["error"]
    from websockets.sync.client import connect
    with connect(server.url, origin=f"http://127.0.0.1:{server.port}") as ws:   # its own page
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"


def test_an_allowed_origin_gets_in():
    running = Running(allow_origins=("https://app.example",))
    try:
        from websockets.sync.client import connect
        with connect(running.url, origin="https://app.example") as ws:
            ws.send(json.dumps({"type": "ping"}))
            assert "before start" in json.loads(ws.recv(timeout=30))["message"]
        assert refused_status(running.url, origin="https://app.example.evil.com") == 403
    finally:
        running.stop()


def test_a_token_is_required_when_set(monkeypatch):
    monkeypatch.delenv("PUPPETRY_TOKEN", raising=False)
    running = Running(token=TOKEN)
    try:
        assert refused_status(running.url) == 401
        assert refused_status(running.url + "?token=wrong") == 401
        with pytest.raises(ServerError, match="token"):
            AvatarClient(running.url)
        with AvatarClient(running.url, token=TOKEN) as c:              # header
            assert c.ready["type"] == "ready"
        from websockets.sync.client import connect
        with connect(running.url + f"?token={TOKEN}") as ws:          # query (the page)
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        face = io.BytesIO()
        Image.fromarray(bundled_portrait()).save(face, "JPEG")
        with pytest.raises(ServerError, match="token"):
            upload_portrait(running.http, face.getvalue())
        monkeypatch.setenv("PUPPETRY_TOKEN", TOKEN)                    # read by the client
        assert upload_portrait(running.http, face.getvalue())
        assert running.health()["token"] is True
    finally:
        running.stop()


def test_a_public_address_needs_a_token():
    with pytest.raises(ValueError, match="PUPPETRY_TOKEN"):
        check_config(ServerConfig(host="0.0.0.0"))
    with pytest.raises(ValueError, match="shorter"):
        check_config(ServerConfig(host="0.0.0.0", token="abc"))
    check_config(ServerConfig(host="0.0.0.0", token=TOKEN))
    check_config(ServerConfig(host="::1"))
    from puppetry.cli import main
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 1


# -- slots and timeouts ----------------------------------------------------------------------
def test_connections_that_never_start_hold_no_slot():
    from websockets.sync.client import connect
    running = Running(max_sessions=1, start_timeout_s=2.0)
    try:
        idle = [connect(running.url) for _ in range(3)]              # never send start
        assert running.health()["pending"] == 3
        with AvatarClient(running.url) as c:                         # the one slot is free
            assert c.ready["type"] == "ready"
            assert running.health()["sessions"] == 1
        for ws in idle:                                              # then they time out
            reply = json.loads(ws.recv(timeout=30))
            assert reply["code"] == "timeout" and "start" in reply["message"]
            ws.close()
        deadline = time.time() + 10
        while running.health()["pending"] and time.time() < deadline:
            time.sleep(0.05)
        assert running.health()["pending"] == 0
    finally:
        running.stop()


def test_a_silent_session_times_out_and_a_ping_keeps_it():
    running = Running(idle_timeout_s=4.0)
    try:
        with AvatarClient(running.url) as c:
            until = time.time() + 6
            while time.time() < until:                               # pings keep it open
                c.ping()
                list(c.frames(count=5))
            with pytest.raises(ServerError, match="idle") as err:
                for _ in range(2000):
                    c.receive()
            assert err.value.code == "timeout"
        deadline = time.time() + 10
        while running.health()["sessions"] and time.time() < deadline:
            time.sleep(0.05)
        assert running.health()["sessions"] == 0
    finally:
        running.stop()


# -- messages name the upload; a disconnect is logged once -------------------------------------
def test_errors_name_the_upload_never_a_server_path(server):
    status, body = post(server.http + "/v1/portraits", b"this is not an image")
    assert status == 422 and "uploaded image" in body["error"] and "/tmp" not in body["error"]
    status, body = post(server.http + "/v1/portraits", png(300, 300))
    assert status == 422 and "no face" in body["error"] and "uploaded image" in body["error"]
    assert "/tmp" not in body["error"]


def test_an_abrupt_disconnect_is_logged_once(server, caplog):
    caplog.set_level(logging.INFO)
    for linger in (True, False):                                  # reset, then plain close
        c = AvatarClient(server.url)
        c.send_audio(speech_like(3.0))
        list(c.frames(count=3))
        sock = c.ws.socket
        if linger:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        time.sleep(1.5)
    ended = [r for r in caplog.records if r.name == "puppetry.serve" and "ended" in r.getMessage()]
    assert len(ended) == 2 and all("client" in r.getMessage() for r in ended)
    assert not [r for r in caplog.records if "socket.send() raised" in r.getMessage()]


# -- bounded input -------------------------------------------------------------------------------
def test_audio_ahead_counts_the_incoming_message(server):
    with AvatarClient(server.url) as c:
        c.send_audio(speech_like(6.0))                               # one message over 5 s
        error = next(m for m in iter(c.receive, None) if isinstance(m, dict) and m.get("type") == "error")
        assert "limit" in error["message"] and "6.0 s" in error["message"]
        c.send_audio(speech_like(3.0))
        c.send_audio(speech_like(3.0))                               # 3 + 3 > 5: refused
        error = next(m for m in iter(c.receive, None) if isinstance(m, dict) and m.get("type") == "error")
        assert "already queued" in error["message"]
        c.end()
        assert len(speech_frames(c)) == 75                           # the first 3 s only


def test_a_long_text_is_held_to_the_same_limit(server):
    pytest.importorskip("espeakng_loader")
    with AvatarClient(server.url) as c:
        c.say("This sentence is long enough to take well over five seconds to say aloud. " * 2)
        error = next(m for m in iter(c.receive, None) if isinstance(m, dict) and m.get("type") == "error")
        assert "text" in error["message"] and "limit" in error["message"]
        assert not any(m.get("type") == "speech" for m in c.messages)
        assert len(list(c.frames(count=3))) == 3                     # the session goes on


def test_oversized_messages_get_an_error_message(server):
    """20 MB of audio (625 s) and a 40 MB message: each answered, the session goes on."""
    with AvatarClient(server.url) as c:
        for size, expect in ((20_000_000, "625.0 s"), (40_000_000, "40.0 MB")):
            c.ws.send(b"\x00" * size)
            error = next(m for m in iter(c.receive, None) if isinstance(m, dict) and m.get("type") == "error")
            assert expect in error["message"] and "limit" in error["message"]
            assert len(list(c.frames(count=3))) == 3


def png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (header only: refusing it must not decode it)."""
    import zlib
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_huge_png_is_refused_before_decoding_and_a_huge_jpeg_decodes_small(server):
    status, body = post(server.http + "/v1/portraits", png_header(9000, 9000))
    assert status == 422 and "9000 x 9000" in body["error"] and "downscale" in body["error"]
    status, body = post(server.http + "/v1/portraits", png_header(20000, 20000))
    assert status == 422 and "million pixels" in body["error"] and "downscale" in body["error"]
    big = io.BytesIO()
    Image.fromarray(bundled_portrait()).resize((4096, 4096)).save(big, "JPEG", quality=70)
    rgb = decode_upload(big.getvalue(), "the uploaded image")
    assert rgb.shape == (2048, 2048, 3) and rgb.dtype == np.uint8


# -- streaming faults ---------------------------------------------------------------------------
def test_speech_sent_in_20ms_chunks_as_fast_as_possible_keeps_every_frame(server):
    """The documented client example: a file in 20 ms chunks, as fast as the socket
    takes them. Every frame of the utterance arrives, in order, from audio_t 0."""
    audio = speech_like(3.0, seed=5)
    with AvatarClient(server.url) as c:
        list(c.frames(count=3))
        for i in range(0, len(audio), 320):
            c.send_audio(audio[i:i + 320])
        c.end()
        frames = speech_frames(c)
    assert [f.audio_t for f in frames] == pytest.approx([i / FPS for i in range(75)])
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + 75))
    assert frames[0].latency_ms is not None


def test_text_being_synthesised_never_stalls_a_face():
    """While a text is synthesised (held here for as long as the test likes), the face that
    asked for it and every other session keep getting idle frames; then it is spoken."""
    import threading
    gate = threading.Event()

    class HeldVoice:                    # stands in for the speech process
        def start(self):
            pass

        def close(self):
            gate.set()

        def __call__(self, words):
            assert gate.wait(120)
            return speech_like(1.0)

    running = Running(max_sessions=2)
    shared = running.app.state.server
    voice, shared.speech = shared.speech, HeldVoice()
    try:
        with AvatarClient(running.url) as asking, AvatarClient(running.url) as other:
            asking.say("Words that take a long time to synthesise.")
            for c in (asking, other):
                idle = [c.receive(timeout=20) for _ in range(int(2 * FPS))]
                frames = [f for f in idle if isinstance(f, Frame)]
                assert len(frames) >= 2 * FPS - 2 and all(f.utterance is None for f in frames)
            gate.set()
            assert len(speech_frames(asking)) == round(1.0 * FPS)
    finally:
        gate.set()
        running.stop()
        voice.close()


def test_a_reset_drops_a_text_still_being_synthesised(server):
    pytest.importorskip("espeakng_loader")
    with AvatarClient(server.url) as c:
        c.say("Hello there.")
        c.reset()
        seen = [c.receive() for _ in range(60)]
        assert not [f for f in seen if isinstance(f, Frame) and f.utterance is not None]
        c.say("Hi.")                                                 # the next one speaks
        assert speech_frames(c)


class TurningDriver:
    """A stand-in face driver: every camera frame turns the head 20 degrees."""

    def __call__(self, rgb: np.ndarray) -> DrivingFrame | None:
        if rgb.mean() < 10:                                          # a black frame: no face
            return None
        return DrivingFrame.make(yaw=20.0, expression={"jawOpen": 0.7})


def test_camera_frames_drive_the_face():
    running = Running(driver=TurningDriver)
    try:
        with AvatarClient(running.url) as c:
            assert all(f.drive_seq is None for f in c.frames(count=3))
            c.send_drive(np.full((120, 160, 3), 200, np.uint8), seq=7)
            driven = next(f for f in c.frames() if f.drive_seq is not None)
            assert driven.drive_seq == 7 and driven.drive_ms >= 0
            assert driven.pose[0] == pytest.approx(20.0)
            assert driven.weights[c.names.index("jawOpen")] == pytest.approx(0.7, abs=1e-3)
            c.ws.send(json.dumps({"type": "drive", "image": "!!"}))
            c.send_drive(b"not a jpeg")
            c.send_drive(png_header(20000, 20000))                   # refused from its header
            errors = [m for m in (c.receive() for _ in range(60)) if isinstance(m, dict)
                      and m.get("type") == "error"]
            assert len(errors) == 3 and all("drive" in e["message"] for e in errors)
            assert "million pixels" in errors[2]["message"]
    finally:
        running.stop()


def test_a_real_face_driver_follows_a_camera_frame():
    pytest.importorskip("puppetry.drive.video")
    running = Running()
    try:
        with AvatarClient(running.url) as c:
            c.send_drive(bundled_portrait(), seq=1)                   # the reference face
            driven = next(f for f in c.frames(count=1000) if f.drive_seq is not None)
            assert driven.drive_seq == 1 and max(map(abs, driven.pose)) < 1   # itself: no turn
            c.send_drive(np.zeros((240, 320, 3), np.uint8), seq=2)  # no face: not driven
            c.send({"type": "stats"})
            stats = next(m for m in iter(c.receive, None) if isinstance(m, dict) and m.get("type") == "stats")
            for _ in range(1000):
                if stats["drive_lost"]:
                    break
                c.send({"type": "stats"})
                stats = next(m for m in iter(c.receive, None) if isinstance(m, dict) and m.get("type") == "stats")
            assert stats["drive_lost"] == 1
    finally:
        running.stop()


def test_the_page_keeps_its_session_when_a_portrait_upload_fails(server, page, tmp_path):
    """A photo without a face: the page shows why and the working session goes on."""
    grey = tmp_path / "wall.png"
    grey.write_bytes(png(300, 300))
    page.goto(server.http + "/")
    frames = "Number(document.getElementById('face').dataset.frames || 0)"
    page.wait_for_function(f"{frames} > 10", timeout=60_000)
    page.set_input_files("#portrait", str(grey))
    page.click("#connect")
    page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
    assert "wall.png" in page.locator("#error").inner_text() and "face" in page.locator("#error").inner_text()
    assert page.locator("#status").inner_text().startswith("connected")
    seen = page.evaluate(frames)
    page.wait_for_function(f"{frames} > {seen + 10}", timeout=30_000)   # still streaming
    assert not page.locator("#say").is_disabled()


def test_serve_command_takes_a_token_and_allowed_origins(free_port):
    from puppetry.ui.server import serve_in_subprocess
    proc = serve_in_subprocess(free_port, "--token", TOKEN, "--allow-origin", "https://a.example")
    try:
        url = f"ws://127.0.0.1:{free_port}/v1/stream"
        with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/v1/health", timeout=10) as r:
            assert json.loads(r.read())["token"] is True
        assert refused_status(url) == 401
        assert refused_status(url + f"?token={TOKEN}", origin="https://b.example") == 403
        from websockets.sync.client import connect
        with connect(url + f"?token={TOKEN}", origin="https://a.example") as ws:
            ws.send(json.dumps({"type": "ping"}))
            assert "before start" in json.loads(ws.recv(timeout=30))["message"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_deeply_nested_json_is_answered(server):
    with AvatarClient(server.url) as c:
        c.ws.send("[" * 200_000)
        error = next(m for m in iter(c.receive, None) if isinstance(m, dict) and m.get("type") == "error")
        assert "nested" in error["message"] or "JSON" in error["message"]
        assert len(list(c.frames(count=3))) == 3
