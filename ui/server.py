"""``puppetry serve``: the streaming avatar server (WebSocket + HTTP), thin over
:class:`puppetry.stream.AvatarStream`. The protocol is documented in docs/streaming.md.

Routes
  GET  /                 the browser page (microphone or file in, the talking portrait out)
  GET  /v1/health        sessions, capacity, frame size and rate
  POST /v1/portraits     an image (raw body or multipart field ``image``) -> {"id": ...}
  WS   /v1/stream        one session: start, audio/text in; frames and ARKit weights out

Each session renders its frames in a shared thread pool (one thread per core, one torch
thread each); the event loop only paces, receives and sends.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2

from puppetry.audio import SAMPLE_RATE, from_pcm16
from puppetry.expression.arkit import ARKIT_NAMES
from puppetry.portrait import load_portrait
from puppetry.stream import AvatarStream, StreamConfig, StreamFrame

STATIC = Path(__file__).parent / "static"
PROTOCOL = 1                      # bumped on incompatible changes to docs/streaming.md
BUNDLED_ID = "astronaut"          # the bundled portrait, always available


@dataclass(frozen=True)
class ServerConfig:
    """Knobs of ``puppetry serve`` (override with ``dataclasses.replace``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    size: int = 256               # frame side, pixels
    fps: float = 25.0             # frames per second
    max_sessions: int | None = None   # None: SESSIONS_PER_CORE per CPU core
    jpeg_quality: int = 80
    model: str | None = None      # streaming Audio2Expression checkpoint; None = the shipped one
    send_buffer: int = 8          # frames queued for a slow client before the oldest is dropped
    max_upload_mb: float = 10.0   # portrait uploads, MB
    max_portraits: int = 32       # prepared portraits kept in memory (least recently used go)
    max_ahead_s: float = 600.0    # speech a client may send ahead of the frames, s
    max_text_chars: int = 2000    # characters of one text message
    start_timeout_s: float = 30.0 # a session must send "start" within this long


CATCH_UP_FRAMES = 5               # a session this many frames behind skips frames to catch up
SESSIONS_PER_CORE = 2             # 256² at 25 fps; measured in docs/benchmarks.md §4


def default_max_sessions() -> int:
    return max(1, SESSIONS_PER_CORE * (os.cpu_count() or 1))


class ProtocolError(ValueError):
    """A malformed client message: answered with an error message, the session lives on."""


def pack_frame(header: dict, jpeg: bytes) -> bytes:
    """A frame message: 4-byte big-endian header length, the JSON header, the JPEG."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return len(head).to_bytes(4, "big") + head + jpeg


class Server:
    """Shared state: prepared portraits, the session count, the render pool."""

    def __init__(self, config: ServerConfig = ServerConfig()):
        self.config = config
        self.max_sessions = config.max_sessions or default_max_sessions()
        self.sessions = 0
        self.portraits: OrderedDict[str, object] = OrderedDict()
        self.lock = threading.Lock()                   # guards ``portraits``
        self.pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="render")
        self.stats: deque[dict] = deque(maxlen=1000)   # per finished utterance

    # -- portraits ----------------------------------------------------------------------
    def portrait(self, pid: str):
        """A prepared portrait by id (the bundled one is prepared on first use)."""
        with self.lock:
            found = self.portraits.get(pid)
            if found is not None:
                self.portraits.move_to_end(pid)
                return found
        if pid != BUNDLED_ID:
            raise ProtocolError(f"unknown portrait id {pid!r}: upload it with POST /v1/portraits "
                                f"first, or use {BUNDLED_ID!r}")
        portrait = load_portrait(BUNDLED_ID, size=self.config.size)
        self._keep(pid, portrait)
        return portrait

    def add_portrait(self, data: bytes) -> str:
        """Prepare an uploaded image; returns its id (the same image gives the same id)."""
        limit = int(self.config.max_upload_mb * 1e6)
        if len(data) > limit:
            raise ValueError(f"portrait upload of {len(data) / 1e6:.1f} MB is over the "
                             f"{self.config.max_upload_mb:g} MB limit: send a smaller JPEG or PNG")
        if not data:
            raise ValueError("portrait upload is empty: send the image bytes")
        pid = hashlib.sha1(data).hexdigest()[:16]
        with self.lock:
            known = pid in self.portraits
        if not known:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "portrait"
                path.write_bytes(data)
                self._keep(pid, load_portrait(path, size=self.config.size))
        return pid

    def _keep(self, pid: str, portrait) -> None:
        with self.lock:                                # called from the render threads
            self.portraits[pid] = portrait
            while len(self.portraits) > self.config.max_portraits:
                self.portraits.popitem(last=False)


class Session:
    """One WebSocket session: receive, pace, render (in the pool), send."""

    def __init__(self, server: Server, ws):
        self.server, self.ws, self.config = server, ws, server.config
        self.loop = asyncio.get_running_loop()
        self.avatar: AvatarStream | None = None
        self.outbox: deque[bytes | str] = deque()          # frames (bytes) and JSON (str), in order
        self.mail = asyncio.Event()                        # the outbox is not empty
        self.wake = asyncio.Event()                        # audio arrived
        self.carry = b""                                   # an odd byte between PCM chunks
        self.dropped = 0                                   # frames dropped for a slow client
        self.late = 0                                      # frames skipped to keep real time
        self.audio_s = 0.0                                 # speech received, s
        self.first_audio: dict[int, float] = {}            # utterance -> first chunk's arrival
        self.last_uid = 0                                  # the newest utterance announced
        self.resets = 0                                    # reset messages handled

    async def error(self, message: str, code: str = "bad_message") -> None:
        await self.ws.send_json({"type": "error", "code": code, "message": message})

    # -- 1. start -------------------------------------------------------------------------
    async def start(self, msg: dict) -> None:
        cfg = StreamConfig(size=self.config.size, fps=self.config.fps, model=self.config.model)
        knobs = {}
        for key, kind, lo, hi in (("seed", int, 0, 2**31 - 1), ("motion_scale", float, 0, 3),
                                  ("blink_rate", float, 0, 60), ("intensity", float, 0, 3)):
            if key in msg:
                value = msg[key]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
                    raise ProtocolError(f"start: {key} must be a number in {lo}..{hi}, got {value!r}")
                knobs[key] = kind(value)
        cfg = replace(cfg, **knobs)
        if "portrait" in msg:
            try:
                data = base64.b64decode(msg["portrait"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ProtocolError("start: portrait must be a base64-encoded JPEG or PNG") from None
            pid = await self.loop.run_in_executor(self.server.pool, self.server.add_portrait, data)
        else:
            pid = msg.get("portrait_id", BUNDLED_ID)
            if not isinstance(pid, str):
                raise ProtocolError("start: portrait_id must be a string")
        portrait = await self.loop.run_in_executor(self.server.pool, self.server.portrait, pid)
        self.avatar = await self.loop.run_in_executor(self.server.pool, AvatarStream, portrait, cfg)
        await self.ws.send_json({
            "type": "ready", "protocol": PROTOCOL, "portrait_id": pid, "fps": cfg.fps,
            "size": cfg.size, "sample_rate": SAMPLE_RATE, "names": list(ARKIT_NAMES),
            "lookahead_ms": round(self.avatar.lookahead_s * 1000), "send_buffer": self.config.send_buffer})

    # -- 2. receive -------------------------------------------------------------------------
    async def receive(self) -> None:
        while await self.handle(await self.ws.receive()):
            pass

    async def handle(self, msg: dict) -> bool:
        """One client message: binary is audio, text a JSON command; a bad one is answered
        with an error message. False when the client has gone."""
        if msg["type"] == "websocket.disconnect":
            return False
        try:
            if msg.get("bytes") is not None:
                self.audio(msg["bytes"])
            else:
                await self.command(msg.get("text") or "")
        except (ValueError, OSError) as err:         # ProtocolError and AudioError included
            await self.error(str(err))
        return True

    def audio(self, data: bytes) -> int | None:
        """Binary PCM s16le -> the avatar; returns the utterance it joined."""
        if self.avatar is None:
            raise ProtocolError("audio before start: send {\"type\": \"start\"} first")
        data = self.carry + data
        cut = len(data) - len(data) % 2
        self.carry = data[cut:]
        samples = from_pcm16(data[:cut])
        if not len(samples):
            return None
        ahead = self.audio_s - self.avatar.index / self.config.fps
        if ahead > self.config.max_ahead_s:
            raise ProtocolError(f"audio is {ahead:.0f} s ahead of the frames (limit "
                                f"{self.config.max_ahead_s:.0f} s): send speech closer to real time")
        received = time.perf_counter()
        self.audio_s += len(samples) / SAMPLE_RATE
        uid = self.avatar.push_audio(samples)
        if uid > self.last_uid:                                     # a new utterance opens
            self.first_audio[uid] = received
            self.last_uid = uid
            self.post_json({"type": "utterance", "utterance": uid})
        self.wake.set()
        return uid

    async def command(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as err:
            raise ProtocolError(f"message is not JSON ({err.msg} at character {err.pos}): send "
                                "JSON text messages or binary PCM audio") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ProtocolError('message needs a "type": start, audio, end, text, reset or stats')
        kind = msg["type"]
        if kind == "start":
            if self.avatar is not None:
                raise ProtocolError("start: this session has already started; open a new one "
                                    "for another portrait")
            await self.start(msg)
            return
        if self.avatar is None:
            raise ProtocolError(f"{kind} before start: send {{\"type\": \"start\"}} first")
        if kind == "audio":
            try:
                self.audio(base64.b64decode(msg.get("data", ""), validate=True))
            except (binascii.Error, TypeError):
                raise ProtocolError("audio: data must be base64 PCM s16le, 16 kHz mono") from None
        elif kind == "end":
            self.carry = b""
            self.avatar.end_utterance()
            self.wake.set()
        elif kind == "reset":
            self.carry = b""
            self.resets += 1                                # a frame being made now is stale
            self.avatar.reset()
            self.first_audio.clear()
            self.audio_s = self.avatar.index / self.config.fps
            kept = [m for m in self.outbox if isinstance(m, str)]   # queued frames go too
            self.outbox.clear()
            self.outbox.extend(kept)
            self.wake.set()
            self.post_json({"type": "reset", "index": self.avatar.index})
        elif kind == "text":
            words = msg.get("text")
            if not isinstance(words, str) or not words.strip():
                raise ProtocolError("text: give the words to say as a non-empty string")
            if len(words) > self.config.max_text_chars:
                raise ProtocolError(f"text: {len(words)} characters is over the limit of "
                                    f"{self.config.max_text_chars}: split it into several messages")
            from puppetry.tts import synthesize
            speech = await self.loop.run_in_executor(self.server.pool, synthesize, words)
            from puppetry.audio import to_pcm16
            self.avatar.end_utterance()                      # text is an utterance of its own
            pcm = to_pcm16(speech)
            self.post_json({"type": "speech", "utterance": self.avatar.next_utterance,
                            "duration": len(speech) / SAMPLE_RATE,
                            "audio": base64.b64encode(pcm).decode()})   # before its frames
            self.audio(pcm)
            self.avatar.end_utterance()
        elif kind == "stats":
            await self.ws.send_json(self.stats())
        else:
            raise ProtocolError(f"unknown message type {kind!r}: use start, audio, end, text, "
                                "reset or stats")

    def stats(self) -> dict:
        return {"type": "stats", "frames": self.avatar.index if self.avatar else 0,
                "dropped": self.dropped, "late": self.late, "audio_s": round(self.audio_s, 3),
                "sessions": self.server.sessions, "max_sessions": self.server.max_sessions}

    # -- 3. pace and render -------------------------------------------------------------------
    def make(self) -> tuple[StreamFrame, bytes]:
        frame = self.avatar.next_frame()
        ok, jpeg = cv2.imencode(".jpg", frame.image[:, :, ::-1],
                                [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        return frame, jpeg.tobytes()

    async def pump(self, t0: float) -> None:
        period = 1.0 / self.config.fps
        due = self.loop.time()
        while True:
            # wait for the next tick; audio that completes an utterance's first frame
            # starts it at once (lower latency) and re-phases the clock
            wait = due - self.loop.time()
            if wait > 0:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                else:
                    ready = await self.loop.run_in_executor(self.server.pool, self.avatar.first_frame_ready)
                    if not ready:
                        continue
                    due = self.loop.time()
            resets = self.resets
            frame, jpeg = await self.loop.run_in_executor(self.server.pool, self.make)
            if frame.utterance is None or resets == self.resets:   # not speech made before a reset
                self.post(frame, jpeg, time.perf_counter() - t0)
            due += period
            behind = self.loop.time() - due
            if behind > CATCH_UP_FRAMES * period:   # overloaded: skip frames, never drift
                skip = await self.loop.run_in_executor(self.server.pool, self.avatar.skip, int(behind / period))
                self.late += skip
                due += skip * period

    def post(self, frame: StreamFrame, jpeg: bytes, t: float) -> None:
        header = {"type": "frame", "index": frame.index, "t": round(t, 4),
                  "utterance": frame.utterance,
                  "audio_t": None if frame.audio_t is None else round(frame.audio_t, 4),
                  "last": frame.last, "pose": [round(r, 2) for r in frame.rotation],
                  "weights": [round(float(w), 3) for w in frame.weights]}
        if frame.utterance in self.first_audio:          # first audio -> first frame sent
            header["latency_ms"] = round(1000 * (time.perf_counter() - self.first_audio.pop(frame.utterance)), 1)
        if sum(isinstance(m, bytes) for m in self.outbox) >= self.config.send_buffer:
            oldest = next(i for i, m in enumerate(self.outbox) if isinstance(m, bytes))
            del self.outbox[oldest]                   # a slow client: drop, count, never grow
            self.dropped += 1
        self.outbox.append(pack_frame(header, jpeg))
        self.mail.set()

    def post_json(self, message: dict) -> None:
        """A JSON message in order with the frames (never dropped)."""
        self.outbox.append(json.dumps(message))
        self.mail.set()

    async def send(self) -> None:
        while True:
            while not self.outbox:
                self.mail.clear()
                await self.mail.wait()
            item = self.outbox.popleft()
            await (self.ws.send_bytes(item) if isinstance(item, bytes) else self.ws.send_text(item))

    # -- the whole session ---------------------------------------------------------------
    async def run(self) -> None:
        try:
            deadline = self.loop.time() + self.config.start_timeout_s
            while self.avatar is None:                  # 1. wait for a good "start"
                left = deadline - self.loop.time()
                if left <= 0:
                    await self.error("no start message within "
                                     f"{self.config.start_timeout_s:g} s: closing", "timeout")
                    return
                if not await self.handle(await asyncio.wait_for(self.ws.receive(), left)):
                    return
            t0 = time.perf_counter()                    # 2. receive, pace and send until either side ends
            tasks = [asyncio.create_task(c) for c in (self.receive(), self.pump(t0), self.send())]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() and not _disconnected(task.exception()):
                    raise task.exception()
        except asyncio.TimeoutError:
            await self.error("no start message in time: closing", "timeout")
        except Exception as err:                        # noqa: BLE001 - the session ends, the server lives
            if not _disconnected(err):
                raise


def _disconnected(err: BaseException) -> bool:
    from starlette.websockets import WebSocketDisconnect
    return isinstance(err, (WebSocketDisconnect, ConnectionError, RuntimeError))


def build_app(config: ServerConfig = ServerConfig()):
    """The Starlette application (``app.state.server`` holds the shared :class:`Server`)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket

    server = Server(config)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def health(request: Request):
        return JSONResponse({"sessions": server.sessions, "max_sessions": server.max_sessions,
                             "size": config.size, "fps": config.fps, "protocol": PROTOCOL,
                             "max_upload_mb": config.max_upload_mb})

    async def portraits(request: Request):
        limit = int(config.max_upload_mb * 1e6)
        if int(request.headers.get("content-length") or 0) > limit:
            return JSONResponse({"error": f"upload over the {config.max_upload_mb:g} MB limit: "
                                          "send a smaller JPEG or PNG"}, 413)
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > limit:
                return JSONResponse({"error": f"upload over the {config.max_upload_mb:g} MB limit: "
                                              "send a smaller JPEG or PNG"}, 413)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            body = await _multipart_image(request, body)
            if body is None:
                return JSONResponse({"error": 'multipart upload needs a file field named "image"'}, 400)
        try:
            pid = await asyncio.get_running_loop().run_in_executor(server.pool, server.add_portrait, body)
        except (ValueError, OSError) as err:
            return JSONResponse({"error": str(err)}, 422)
        return JSONResponse({"id": pid, "size": config.size})

    async def stream(ws: WebSocket):
        await ws.accept()
        if server.sessions >= server.max_sessions:
            await ws.send_json({"type": "error", "code": "capacity", "message":
                                f"server at capacity: {server.sessions} of {server.max_sessions} "
                                f"sessions at {config.size}px, {config.fps:g} fps keep real time "
                                "on this machine; try again later or start another server"})
            await ws.close(1013)
            return
        server.sessions += 1
        try:
            await Session(server, ws).run()
        finally:
            server.sessions -= 1
        try:
            await ws.close()
        except Exception as err:                        # noqa: BLE001
            if not _disconnected(err):                  # already closed by the client
                raise

    app = Starlette(routes=[
        Route("/", index), Route("/v1/health", health),
        Route("/v1/portraits", portraits, methods=["POST"]),
        WebSocketRoute("/v1/stream", stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
    app.state.server = server
    return app


async def _multipart_image(request, body: bytes) -> bytes | None:
    """The ``image`` file field of a multipart body already read into ``body``."""
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    async def replay():
        yield body
        yield b""

    form = await MultiPartParser(Headers(raw=request.headers.raw), replay()).parse()
    item = form.get("image")
    return await item.read() if hasattr(item, "read") else None


def serve_in_subprocess(port: int, *args: str, stdout=subprocess.DEVNULL,
                        timeout_s: float = 60.0) -> subprocess.Popen:
    """``puppetry serve --port PORT ARGS`` in its own process, returned once ``/v1/health``
    answers (benchmarks, screenshots, tests). The caller terminates it."""
    proc = subprocess.Popen([sys.executable, "-m", "puppetry.cli", "serve", "--port", str(port), *args],
                            stdout=stdout, stderr=subprocess.DEVNULL, text=True)
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"puppetry serve --port {port} did not answer within {timeout_s:g} s "
                       f"(exit code {proc.poll()}): is the port free? run it by hand to see why")


def serve(config: ServerConfig = ServerConfig()) -> None:
    """Run the server until interrupted (``puppetry serve``)."""
    import torch
    import uvicorn
    torch.set_num_threads(1)          # one torch thread per render thread: no spin-wait collapse
    app = build_app(config)
    print(f"puppetry serve: http://{config.host}:{config.port}/ (WebSocket /v1/stream, "
          f"{app.state.server.max_sessions} sessions at {config.size}px, {config.fps:g} fps)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", ws_max_size=16 * 2**20)
