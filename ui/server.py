"""``puppetry serve``: the streaming avatar server (WebSocket + HTTP), thin over
:class:`puppetry.stream.AvatarStream`. The protocol is documented in docs/streaming.md.

Routes
  GET  /                 the browser page (microphone, file, text or webcam in; the talking portrait out)
  GET  /v1/health        sessions, capacity, frame size and rate
  POST /v1/portraits     an image (raw body or multipart field ``image``) -> {"id": ...}
  WS   /v1/stream        one session: start, audio/text/camera frames in; frames and ARKit weights out

Who may connect: a request that carries an ``Origin`` (every browser page does) must come
from the server's own page or an ``allow_origins`` entry; with a ``token`` set, the
WebSocket and ``POST`` need it (``?token=`` or ``Authorization: Bearer``). A connection
holds a session slot only once its ``start`` succeeded.

Each session renders its frames in a shared thread pool (one thread per core, one torch
thread each); text is synthesised in a process of its own (the offline voice never holds
the frames back); the event loop only paces, receives and sends.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from puppetry import limits, provenance
from puppetry.audio import SAMPLE_RATE, from_pcm16, to_pcm16
from puppetry.expression.arkit import ARKIT_NAMES
from puppetry.io import ImageError
from puppetry.portrait import load_portrait
from puppetry.stream import AvatarStream, StreamConfig, StreamFrame

STATIC = Path(__file__).parent / "static"
PROTOCOL = 2                      # bumped on incompatible changes to docs/streaming.md
BUNDLED_ID = "astronaut"          # the bundled portrait, always available
PERSON_ID = "person"              # the learned person of --person
log = logging.getLogger("puppetry.serve")


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
    max_upload_mb: float = limits.SERVICE_MAX_IMAGE_BYTES / 1e6   # portrait uploads, MB
    max_portraits: int = 32       # prepared portraits kept in memory (least recently used go)
    max_ahead_s: float = limits.SERVICE_MAX_SPEECH_S   # speech queued ahead of the frames,
                                  # the incoming message included, s
    max_text_chars: int = limits.SERVICE_MAX_TEXT_CHARS   # characters of one text message
    max_message_mb: float = 32.0  # one WebSocket message, MB (an inline portrait in base64 fits;
                                  # larger: an error message)
    token: str | None = None      # access token for the WebSocket and POST; None: none needed
    allow_origins: tuple[str, ...] = ()   # browser origins allowed besides the server's own page
    start_timeout_s: float = 10.0 # a connection must start a session within this long
    idle_timeout_s: float = 600.0 # a session that sends nothing for this long ends (0: never)
    max_pending: int = 16         # connections waiting to start (they hold no session slot)
    drive_hold_s: float = 0.5     # a camera frame drives the face this long, then it idles
    person: str | None = None     # a .puppet file: that learned person is every session's avatar
                                  # (unless a session asks for a portrait)


CATCH_UP_FRAMES = 5               # a session this many frames behind skips idle frames to catch up
SESSIONS_PER_CORE = 2             # 256² at 25 fps; measured in docs/benchmarks.md §4
DECODE_SIDE = 2048                # long side an uploaded photo is decoded at (JPEG) or reduced to, px
PROTOCOL_SLACK = 1.5              # the WebSocket layer takes messages up to this many times
                                  # max_message_mb, so larger ones still get an error message
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
DRIVE_MAX_PIXELS = 4e6            # a camera frame's pixels (640 x 480 is 0.3 million)


def default_max_sessions() -> int:
    return max(1, SESSIONS_PER_CORE * (os.cpu_count() or 1))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_config(config: ServerConfig) -> None:
    """Refuse a configuration that would let strangers in: a non-loopback address needs
    an access token."""
    if not is_loopback(config.host) and not config.token:
        raise ValueError(f"serving on {config.host} (not loopback) lets anyone on the network "
                         "connect: set an access token with --token or PUPPETRY_TOKEN")
    if config.token is not None and len(config.token) < 8:
        raise ValueError("the access token is shorter than 8 characters: use a long random one, "
                         "e.g. python -c 'import secrets; print(secrets.token_urlsafe())'")


class ProtocolError(ValueError):
    """A malformed client message: answered with an error message, the session lives on."""


def pack_frame(header: dict, jpeg: bytes) -> bytes:
    """A frame message: 4-byte big-endian header length, the JSON header, the JPEG."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return len(head).to_bytes(4, "big") + head + jpeg


def encode_frame(rgb: np.ndarray, quality: int) -> bytes:
    """The one place a streamed frame becomes bytes: uint8[H x W x 3] RGB -> JPEG, with
    the invisible AI-generated watermark (``puppetry.provenance``; the frame is not changed)."""
    ok, jpeg = cv2.imencode(".jpg", provenance.embed(rgb)[:, :, ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpeg.tobytes()


def decode_upload(data: bytes, what: str) -> np.ndarray:
    """An uploaded image -> uint8[H x W x 3] RGB with its long side at most DECODE_SIDE.

    JPEGs up to ``limits.MAX_IMAGE_PIXELS`` are decoded downscaled (libjpeg's DCT scaling:
    a 7000² photo costs what a 1750² one does); other formats over
    ``limits.SERVICE_MAX_IMAGE_PIXELS`` are refused from their header, before decoding.
    Freed memory goes back to the system."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from puppetry.io import _to_rgb
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if im.format == "JPEG":
                limits.check_pixels(w, h, what)
                im.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
            else:
                limits.check_pixels(w, h, what, service=True)
            im.load()
            rgb = _to_rgb(ImageOps.exif_transpose(im))
    except limits.LimitError:
        raise
    except Image.DecompressionBombError:
        raise limits.LimitError(f"{what} has more than {limits.MAX_IMAGE_PIXELS / 1e6:.0f} million "
                                "pixels (puppetry.limits.MAX_IMAGE_PIXELS): downscale it before "
                                "uploading") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not a readable image (cannot identify image file): use a "
                         "JPEG or PNG photo") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{what} is not a readable image ({err or type(err).__name__}): use a "
                         "JPEG or PNG photo") from None
    k = DECODE_SIDE / max(rgb.shape[:2])
    if k < 1:
        rgb = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    _give_back_memory()
    return rgb


def _give_back_memory() -> None:
    """Return freed heap pages to the system (glibc keeps a decoded photo's otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class SpeechProcess:
    """The offline voice in a process of its own (``python -c ...speech_worker()``): text
    in, float32 audio at 16 kHz out, over its stdin/stdout. Synthesis then never holds the
    GIL, the event loop or a render thread. Blocking: call it from a thread of its own."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        """Start the process (it loads the voice at once) if it is not running."""
        with self.lock:
            self._start()

    def _start(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from puppetry.ui.server import speech_worker; speech_worker()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def __call__(self, words: str) -> np.ndarray:
        with self.lock:
            self._start()
            data = words.encode()
            try:
                self.proc.stdin.write(len(data).to_bytes(4, "big") + data)
                self.proc.stdin.flush()
                n = int.from_bytes(_read_exactly(self.proc.stdout, 4), "big")
                reply = _read_exactly(self.proc.stdout, n)
            except (OSError, EOFError):
                self.close()
                raise RuntimeError("text: the speech process ended unexpectedly; try again") from None
        if reply[:1] == b"\0":
            return np.frombuffer(reply[1:], np.float32)
        raise ValueError(f"text: {reply[1:].decode(errors='replace')}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("speech process closed its output")
    return data


def speech_worker() -> None:
    """The speech process's loop: 4-byte length + UTF-8 text in; 4-byte length + status
    byte (0: float32 samples follow, 1: an error message) out."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                                  # the voice's own prints never reach the pipe
    os.nice(2)                                     # the sessions' frames come first (a little:
                                                   # more starves it on a busy machine)
    from puppetry.tts import synthesize
    stdin = sys.stdin.buffer
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        words = stdin.read(int.from_bytes(head, "big")).decode(errors="replace")
        try:
            reply = b"\0" + synthesize(words).astype(np.float32).tobytes()
        except (ValueError, ImportError, OSError, RuntimeError) as err:
            reply = b"\1" + str(err).encode()
        out.write(len(reply).to_bytes(4, "big") + reply)
        out.flush()


class Server:
    """Shared state: prepared portraits, session counts, the render pool and the speech process."""

    def __init__(self, config: ServerConfig = ServerConfig(), driver=None):
        self.config = config
        self.max_sessions = config.max_sessions or default_max_sessions()
        self.sessions = 0                              # started sessions (hold a slot)
        self.pending = 0                               # connections not started yet
        self.opened = 0                                # connections so far (names in the log)
        self.portraits: OrderedDict[str, object] = OrderedDict()
        self.lock = threading.Lock()                   # guards ``portraits``
        self.pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="render")
        self.speech = SpeechProcess()
        self.speech_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speech")
        self.driver = driver                           # FaceDriver factory (None: the default)
        self.stats: deque[dict] = deque(maxlen=1000)   # per finished utterance
        self.own_origins = {f"{scheme}://{name}:{config.port}" for scheme in ("http", "https")
                            for name in {*LOOPBACK_NAMES, config.host}}
        self.allowed_origins = self.own_origins | {o.rstrip("/") for o in config.allow_origins}
        self.person = None                             # LivePerson of --person, footage decoded once
        if config.person:
            from puppetry.person import load_person
            from puppetry.person.live import LivePerson
            self.person = LivePerson(load_person(config.person), config.size)
            self.max_sessions = config.max_sessions or 1   # a neural frame costs ~a core's 40 ms

    # -- who may connect ----------------------------------------------------------------
    def refusal(self, headers, query) -> tuple[int, str] | None:
        """(HTTP status, reason) if a request may not use the server, else None."""
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.allowed_origins:
            wildcard = self.config.host in ("0.0.0.0", "::")
            if not (wildcard and origin.split("://", 1)[-1] == headers.get("host")):
                return 403, (f"origin {origin} may not use this server: open its own page, or "
                             "start it with --allow-origin " + origin)
        if self.config.token:
            given = query.get("token") or ""
            auth = headers.get("authorization") or ""
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.config.token.encode()):
                return 401, ("missing or wrong access token: pass it as ?token=... or an "
                             "'Authorization: Bearer ...' header (the page: open /#token=...)")
        return None

    # -- speech -------------------------------------------------------------------------
    def start_speech(self) -> None:
        """The speech process, started (and its voice loaded) in the background."""
        self.speech_thread.submit(self.speech.start)

    async def synthesize(self, words: str) -> np.ndarray:
        """Text -> float32[n] at 16 kHz, made in the speech process."""
        return await asyncio.get_running_loop().run_in_executor(self.speech_thread, self.speech, words)

    def close(self) -> None:
        self.speech.close()
        self.speech_thread.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- portraits ----------------------------------------------------------------------
    def portrait(self, pid: str):
        """A prepared portrait by id (the bundled one is prepared on first use)."""
        with self.lock:
            found = self.portraits.get(pid)
            if found is not None:
                self.portraits.move_to_end(pid)
                return found
        if pid != BUNDLED_ID:
            raise ProtocolError(f"unknown portrait id {pid[:40]!r}: upload it with POST /v1/portraits "
                                f"first, or use {BUNDLED_ID!r}")
        portrait = load_portrait(BUNDLED_ID, size=self.config.size)
        self._keep(pid, portrait)
        return portrait

    def add_portrait(self, data: bytes, name: str | None = None) -> str:
        """Prepare an uploaded image; returns its id (the same image gives the same id).
        ``name``: the upload's file name, for messages (never a server path)."""
        limit = int(self.config.max_upload_mb * 1e6)
        what = f"the uploaded image{f' {name!r}' if name else ''} ({len(data) / 1e3:.0f} kB)"
        if len(data) > limit:
            raise ValueError(f"portrait upload of {len(data) / 1e6:.1f} MB is over the "
                             f"{self.config.max_upload_mb:g} MB limit: send a smaller JPEG or PNG")
        if not data:
            raise ValueError("portrait upload is empty: send the image bytes")
        pid = hashlib.sha1(data).hexdigest()[:16]
        with self.lock:
            known = pid in self.portraits
        if not known:
            rgb = decode_upload(data, what)
            try:
                portrait = load_portrait(rgb, size=self.config.size)
            except ValueError as err:                  # "... in portrait: ..." -> the upload
                text = str(err)
                raise type(err)(text.replace(" in portrait", f" in {what}", 1) if " in portrait"
                                in text else f"{what}: {text}") from None
            finally:
                del rgb
                _give_back_memory()
            self._keep(pid, portrait)
        return pid

    def _keep(self, pid: str, portrait) -> None:
        with self.lock:                                # called from the render threads
            self.portraits[pid] = portrait
            while len(self.portraits) > self.config.max_portraits:
                self.portraits.popitem(last=False)

    def make_driver(self):
        """A face-driving adapter for one session: rgb -> DrivingFrame or None."""
        if self.driver is not None:
            return self.driver()
        from puppetry.drive.video import FaceDriver
        return FaceDriver(fps=self.config.fps)


class Refused(Exception):
    """The session cannot go on: (code, message), sent before the connection closes."""


class Session:
    """One WebSocket session: receive, pace, render (in the pool), send."""

    def __init__(self, server: Server, ws):
        self.server, self.ws, self.config = server, ws, server.config
        self.loop = asyncio.get_running_loop()
        server.opened += 1
        self.name = f"session {server.opened}"
        self.avatar: AvatarStream | None = None
        self.slot = False                                  # holds a session slot (started)
        self.running = False                               # frames flow through the outbox
        self.gone: str | None = None                       # why the client went, once known
        self.outbox: deque[bytes | str] = deque()          # frames (bytes) and JSON (str), in order
        self.mail = asyncio.Event()                        # the outbox is not empty
        self.wake = asyncio.Event()                        # audio arrived
        self.carry = b""                                   # an odd byte between PCM chunks
        self.dropped = 0                                   # frames dropped for a slow client
        self.late = 0                                      # idle frames skipped to keep real time
        self.audio_s = 0.0                                 # speech received, s
        self.first_audio: dict[int, float] = {}            # utterance -> first chunk's arrival
        self.last_uid = 0                                  # the newest utterance announced
        self.resets = 0                                    # reset messages handled
        self.text_task: asyncio.Task | None = None         # text being synthesised
        self.driver = None                                 # FaceDriver, made on the first camera frame
        self.drive: tuple | None = None                    # (DrivingFrame, seq, arrival, tracked) newest
        self.drive_next: tuple | None = None               # (jpeg, seq, arrival) waiting to be tracked
        self.drive_task: asyncio.Task | None = None
        self.drive_dropped = 0                             # camera frames replaced before tracking
        self.drive_lost = 0                                # camera frames without a face

    async def error(self, message: str, code: str = "bad_message") -> None:
        reply = {"type": "error", "code": code, "message": message}
        if self.running:
            self.post_json(reply)                          # in order with the frames
        else:
            await self.ws.send_json(reply)

    # -- 1. start -------------------------------------------------------------------------
    async def start(self, msg: dict) -> None:
        cfg = StreamConfig(size=self.config.size, fps=self.config.fps, model=self.config.model)
        knobs = {}
        for key, kind, lo, hi in (("seed", int, 0, 2**31 - 1), ("motion_scale", float, 0, 3),
                                  ("blink_rate", float, 0, 60), ("intensity", float, 0, 3)):
            if key in msg:
                value = msg[key]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
                    raise ProtocolError(f"start: {key} must be a number in {lo}..{hi}, got {str(value)[:40]!r}")
                knobs[key] = kind(value)
        cfg = replace(cfg, **knobs)
        server = self.server
        if server.sessions >= server.max_sessions:
            raise Refused("capacity", f"server at capacity: {server.sessions} of {server.max_sessions} "
                          f"sessions at {self.config.size}px, {self.config.fps:g} fps keep real time "
                          "on this machine; try again later or start another server")
        server.sessions += 1                               # reserved now: starts do not race
        server.pending -= 1
        self.slot = True
        try:
            if "portrait" in msg:
                try:
                    data = base64.b64decode(msg["portrait"], validate=True)
                except (binascii.Error, TypeError, ValueError):
                    raise ProtocolError("start: portrait must be a base64-encoded JPEG or PNG") from None
                pid = await self.loop.run_in_executor(server.pool, server.add_portrait, data)
            else:
                pid = msg.get("portrait_id", PERSON_ID if server.person else BUNDLED_ID)
                if not isinstance(pid, str):
                    raise ProtocolError("start: portrait_id must be a string")
            if pid == PERSON_ID and server.person is not None:     # the learned person
                self.avatar = await self.loop.run_in_executor(
                    server.pool, partial(AvatarStream, None, cfg, renderer=server.person.session()))
            else:
                portrait = await self.loop.run_in_executor(server.pool, server.portrait, pid)
                self.avatar = await self.loop.run_in_executor(server.pool, AvatarStream, portrait, cfg)
        except BaseException:
            server.sessions -= 1
            server.pending += 1
            self.slot = False
            raise
        await self.ws.send_json({
            "type": "ready", "protocol": PROTOCOL, "portrait_id": pid, "fps": cfg.fps,
            "size": cfg.size, "sample_rate": SAMPLE_RATE, "names": list(ARKIT_NAMES),
            "lookahead_ms": round(self.avatar.lookahead_s * 1000), "send_buffer": self.config.send_buffer,
            "max_ahead_s": self.config.max_ahead_s, "idle_timeout_s": self.config.idle_timeout_s})

    # -- 2. receive -------------------------------------------------------------------------
    async def receive(self) -> None:
        """Client messages until the client goes or stays silent for ``idle_timeout_s``."""
        limit = self.config.idle_timeout_s or None
        while True:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), limit)
            except asyncio.TimeoutError:
                raise Refused("timeout", f"no message for {limit:g} s: the idle session ends "
                              '(send {"type": "ping"} now and then to keep one open)') from None
            if not await self.handle(msg):
                return

    async def handle(self, msg: dict) -> bool:
        """One client message: binary is audio, text a JSON command; a bad one is answered
        with an error message. False when the client has gone."""
        if msg["type"] == "websocket.disconnect":
            self.gone = self.gone or f"client closed the connection (code {msg.get('code', 1005)})"
            return False
        data, text = msg.get("bytes"), msg.get("text")
        size = len(data) if data is not None else len(text or "")
        try:
            if size > self.config.max_message_mb * 1e6:
                raise ProtocolError(f"a message of {size / 1e6:.1f} MB is over the "
                                    f"{self.config.max_message_mb:g} MB limit: send speech in "
                                    "chunks (20-200 ms each) and portraits by POST /v1/portraits")
            if data is not None:
                await self.after_text()
                self.audio(data)
            else:
                await self.command(text or "")
        except (ValueError, OSError, ImportError) as err:   # ProtocolError and AudioError included
            await self.error(str(err))
        return True

    def check_ahead(self, incoming_s: float, what: str) -> None:
        """Refuse speech that would queue more than ``max_ahead_s`` ahead of the frames."""
        queued = self.avatar.queued_s
        if queued + incoming_s > self.config.max_ahead_s:
            raise ProtocolError(f"{what}: {incoming_s:.1f} s of speech with {queued:.1f} s already "
                                f"queued is over the {self.config.max_ahead_s:g} s limit: send "
                                "speech closer to real time, or in shorter pieces")

    def audio(self, data: bytes) -> int | None:
        """Binary PCM s16le -> the avatar; returns the utterance it joined."""
        if self.avatar is None:
            raise ProtocolError("audio before start: send {\"type\": \"start\"} first")
        data = self.carry + data
        cut = len(data) - len(data) % 2
        self.check_ahead(cut / 2 / SAMPLE_RATE, "audio")
        self.carry = data[cut:]
        samples = from_pcm16(data[:cut])
        if not len(samples):
            return None
        received = time.perf_counter()
        self.audio_s += len(samples) / SAMPLE_RATE
        uid = self.avatar.push_audio(samples)
        if uid > self.last_uid:                                     # a new utterance opens
            self.first_audio[uid] = received
            self.last_uid = uid
            self.post_json({"type": "utterance", "utterance": uid})
        self.wake.set()
        return uid

    async def after_text(self) -> None:
        """Speech messages keep their order: wait for a text still being synthesised."""
        if self.text_task is not None and not self.text_task.done():
            await asyncio.shield(self.text_task)

    async def command(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as err:
            raise ProtocolError(f"message is not JSON ({err.msg} at character {err.pos}): send "
                                "JSON text messages or binary PCM audio") from None
        except RecursionError:
            raise ProtocolError("message is JSON nested too deeply: send flat JSON objects") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ProtocolError('message needs a "type": start, audio, end, text, drive, reset, '
                                'stats or ping')
        kind = msg["type"]
        if kind == "start":
            if self.avatar is not None:
                raise ProtocolError("start: this session has already started; open a new one "
                                    "for another portrait")
            await self.start(msg)
            return
        if self.avatar is None:
            raise ProtocolError(f"{kind[:40]} before start: send {{\"type\": \"start\"}} first")
        if kind == "audio":
            await self.after_text()
            try:
                self.audio(base64.b64decode(msg.get("data", ""), validate=True))
            except (binascii.Error, TypeError):
                raise ProtocolError("audio: data must be base64 PCM s16le, 16 kHz mono") from None
        elif kind == "end":
            await self.after_text()
            self.carry = b""
            self.avatar.end_utterance()
            self.wake.set()
        elif kind == "reset":
            self.carry = b""
            self.resets += 1                                # a frame or text being made now is stale
            self.avatar.reset()
            self.first_audio.clear()
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
            await self.after_text()
            self.check_ahead(0.0, "text")
            self.text_task = asyncio.create_task(self.say(words, self.resets))
        elif kind == "drive":
            self.drive_in(msg)
        elif kind == "stats":
            self.post_json(self.stats())
        elif kind == "ping":
            self.post_json({"type": "pong"})
        else:
            raise ProtocolError(f"unknown message type {kind[:40]!r}: use start, audio, end, text, "
                                "drive, reset, stats or ping")

    async def say(self, words: str, resets: int) -> None:
        """Synthesise ``words`` in the speech process, then queue them as an utterance of
        their own (dropped if a reset came meanwhile)."""
        try:
            speech = await self.server.synthesize(words)
            if resets != self.resets:
                return
            self.check_ahead(len(speech) / SAMPLE_RATE, "text")
        except (ValueError, OSError, ImportError, RuntimeError) as err:
            self.post_json({"type": "error", "code": "bad_message", "message": str(err)})
            return
        self.avatar.end_utterance()                      # text is an utterance of its own
        pcm = to_pcm16(speech)
        self.post_json({"type": "speech", "utterance": self.avatar.next_utterance,
                        "duration": len(speech) / SAMPLE_RATE,
                        "audio": base64.b64encode(pcm).decode()})   # before its frames
        self.audio(pcm)
        self.avatar.end_utterance()

    # -- live driving -------------------------------------------------------------------------
    def drive_in(self, msg: dict) -> None:
        """A camera frame: tracked in the pool, newest first (an untracked older one is
        replaced); it drives the face from the next tick on."""
        try:
            jpeg = base64.b64decode(msg.get("image", ""), validate=True)
        except (binascii.Error, TypeError):
            raise ProtocolError("drive: image must be a base64-encoded JPEG or PNG camera frame") from None
        seq = msg.get("seq")
        if not jpeg or (seq is not None and (not isinstance(seq, int) or isinstance(seq, bool))):
            raise ProtocolError("drive: give a non-empty image and an integer seq (or none)")
        if self.drive_next is not None:
            self.drive_dropped += 1
        self.drive_next = (jpeg, seq, time.perf_counter())
        if self.drive_task is None or self.drive_task.done():
            self.drive_task = asyncio.create_task(self.track())

    async def track(self) -> None:
        while self.drive_next is not None:
            (jpeg, seq, arrived), self.drive_next = self.drive_next, None
            try:
                frame = await self.loop.run_in_executor(self.server.pool, self.track_one, jpeg)
            except (ValueError, OSError, ImportError) as err:
                self.post_json({"type": "error", "code": "bad_message", "message": str(err)})
                continue
            if frame is None:
                self.drive_lost += 1
            else:
                self.drive = (frame, seq, arrived, time.perf_counter())

    def track_one(self, jpeg: bytes):
        """Camera frame bytes -> DrivingFrame (relative to the first face seen) or None."""
        from PIL import Image
        try:                                           # the header's size, before decoding
            with Image.open(io.BytesIO(jpeg)) as im:
                w, h = im.size
        except Image.DecompressionBombError:           # PIL's own limit, far above ours
            w = h = int(DRIVE_MAX_PIXELS)
        except Exception:                              # noqa: BLE001 - PIL's many ways to refuse
            raise ProtocolError("drive: image is not a readable JPEG or PNG") from None
        if w * h > DRIVE_MAX_PIXELS:
            raise ProtocolError(f"drive: a {w} x {h} camera frame is over {DRIVE_MAX_PIXELS / 1e6:g} "
                                "million pixels: send 640 x 480 or smaller")
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ProtocolError("drive: image is not a readable JPEG or PNG")
        if self.driver is None:
            self.driver = self.server.make_driver()
        return self.driver(np.ascontiguousarray(bgr[:, :, ::-1]))

    def driving(self) -> tuple | None:
        """The newest tracked camera frame, if it is recent enough to drive the face."""
        if self.drive is not None and time.perf_counter() - self.drive[3] <= self.config.drive_hold_s:
            return self.drive
        return None

    def stats(self) -> dict:
        return {"type": "stats", "frames": self.avatar.index if self.avatar else 0,
                "dropped": self.dropped, "late": self.late, "audio_s": round(self.audio_s, 3),
                "queued_s": round(self.avatar.queued_s, 3) if self.avatar else 0.0,
                "drive_dropped": self.drive_dropped, "drive_lost": self.drive_lost,
                "sessions": self.server.sessions, "max_sessions": self.server.max_sessions}

    # -- 3. pace and render -------------------------------------------------------------------
    def make(self) -> tuple[StreamFrame, bytes, tuple | None]:
        drive = self.driving()
        frame = self.avatar.next_frame(drive=None if drive is None else drive[0])
        return frame, encode_frame(frame.image, self.config.jpeg_quality), drive

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
            frame, jpeg, drive = await self.loop.run_in_executor(self.server.pool, self.make)
            if frame.utterance is None or resets == self.resets:   # not speech made before a reset
                self.post(frame, jpeg, time.perf_counter() - t0, drive)
            due += period
            behind = self.loop.time() - due
            if behind > CATCH_UP_FRAMES * period:   # overloaded: skip idle frames, never drift
                skip = await self.loop.run_in_executor(self.server.pool, self.avatar.skip, int(behind / period))
                self.late += skip
                due += skip * period
                if self.loop.time() - due > CATCH_UP_FRAMES * period:
                    due = self.loop.time()          # speech is never skipped: it runs late instead

    def post(self, frame: StreamFrame, jpeg: bytes, t: float, drive: tuple | None = None) -> None:
        header = {"type": "frame", "index": frame.index, "t": round(t, 4),
                  "utterance": frame.utterance,
                  "audio_t": None if frame.audio_t is None else round(frame.audio_t, 4),
                  "last": frame.last, "pose": [round(r, 2) for r in frame.rotation],
                  "weights": [round(float(w), 3) for w in frame.weights]}
        if frame.utterance in self.first_audio:          # first audio -> first frame sent
            header["latency_ms"] = round(1000 * (time.perf_counter() - self.first_audio.pop(frame.utterance)), 1)
        if drive is not None:                            # camera frame -> this frame
            header["drive_seq"] = drive[1]
            header["drive_ms"] = round(1000 * (time.perf_counter() - drive[2]), 1)
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
        """The outbox to the client until it goes (noted once, never retried)."""
        while True:
            while not self.outbox:
                self.mail.clear()
                await self.mail.wait()
            item = self.outbox.popleft()
            try:
                await (self.ws.send_bytes(item) if isinstance(item, bytes) else self.ws.send_text(item))
            except Exception as err:                    # noqa: BLE001 - any failure: the client is gone
                self.gone = self.gone or f"client went ({type(err).__name__}: {err})".strip()
                return

    # -- the whole session ---------------------------------------------------------------
    async def run(self) -> None:
        """Wait for a good ``start`` (no slot held meanwhile), then stream until either side
        ends. Logs one line when it ends."""
        why = "ended"
        try:
            why = await self._run()
        except Refused as refused:
            code, message = refused.args
            why = f"{code}: {message}"
            await self._last_word(code, message)
        except Exception as err:                        # noqa: BLE001 - the session ends, the server lives
            if not _disconnected(err):
                log.exception("%s failed", self.name)
                why = f"failed: {err}"
        finally:
            for task in (self.text_task, self.drive_task):
                if task is not None:
                    task.cancel()
            log.info("%s ended: %s", self.name, self.gone or why)

    async def _run(self) -> str:
        deadline = self.loop.time() + self.config.start_timeout_s
        while self.avatar is None:                      # 1. wait for a good "start"
            left = deadline - self.loop.time()
            if left <= 0:
                raise Refused("timeout", f"no start message within {self.config.start_timeout_s:g} s: closing")
            try:
                msg = await asyncio.wait_for(self.ws.receive(), left)
            except asyncio.TimeoutError:
                raise Refused("timeout", f"no start message within {self.config.start_timeout_s:g} s: "
                              "closing") from None
            if not await self.handle(msg):
                return "left before starting"
        self.running = True
        t0 = time.perf_counter()                        # 2. receive, pace and send until either side ends
        tasks = [asyncio.create_task(c) for c in (self.receive(), self.pump(t0), self.send())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
        return "ended"

    async def _last_word(self, code: str, message: str) -> None:
        """An error message just before closing (if the client is still there)."""
        if self.gone:
            return
        try:
            await self.ws.send_json({"type": "error", "code": code, "message": message})
            await self.ws.close(1013 if code == "capacity" else 1008 if code == "forbidden" else 1000)
        except Exception as err:                        # noqa: BLE001
            self.gone = f"client went ({type(err).__name__})"


def _disconnected(err: BaseException) -> bool:
    from starlette.websockets import WebSocketDisconnect
    return isinstance(err, (WebSocketDisconnect, ConnectionError, RuntimeError))


def build_app(config: ServerConfig = ServerConfig(), driver=None):
    """The Starlette application (``app.state.server`` holds the shared :class:`Server`).
    ``driver``: a factory of face-driving adapters (default ``puppetry.drive.video.FaceDriver``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket

    server = Server(config, driver)

    @asynccontextmanager
    async def lifespan(app):
        server.start_speech()                           # warm while nobody waits
        yield
        server.close()

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def health(request: Request):
        return JSONResponse({"sessions": server.sessions, "max_sessions": server.max_sessions,
                             "pending": server.pending, "size": config.size, "fps": config.fps,
                             "protocol": PROTOCOL, "max_upload_mb": config.max_upload_mb,
                             "token": bool(config.token),
                             "person": Path(config.person).name if config.person else None})

    async def portraits(request: Request):
        refused = server.refusal(request.headers, request.query_params)
        if refused:
            return JSONResponse({"error": refused[1]}, refused[0])
        limit = int(config.max_upload_mb * 1e6)
        too_big = JSONResponse({"error": f"upload over the {config.max_upload_mb:g} MB limit: "
                                         "send a smaller JPEG or PNG"}, 413)
        try:
            if int(request.headers.get("content-length") or 0) > limit:
                return too_big
        except ValueError:
            return JSONResponse({"error": "Content-Length is not a number"}, 400)
        chunks, n = [], 0
        async for part in request.stream():
            chunks.append(part)
            n += len(part)
            if n > limit:
                return too_big
        body, name = b"".join(chunks), None
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            try:
                found = await _multipart_image(request, body)
            except Exception:                           # noqa: BLE001 - any parse failure
                found = None
            if found is None:
                return JSONResponse({"error": 'multipart upload needs a file field named "image"'}, 400)
            body, name = found
        try:
            pid = await asyncio.get_running_loop().run_in_executor(server.pool, server.add_portrait, body, name)
        except (ValueError, OSError) as err:
            return JSONResponse({"error": str(err)}, 422)
        return JSONResponse({"id": pid, "size": config.size})

    async def stream(ws: WebSocket):
        refused = server.refusal(ws.headers, ws.query_params)
        if refused is None and server.pending >= config.max_pending:
            refused = 503, (f"{server.pending} connections are waiting to start a session: "
                            "try again in a few seconds")
        if refused:
            status, reason = refused
            log.info("refused a connection: %s", reason)
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(JSONResponse({"error": reason}, status))
            else:
                await ws.close(1008, reason[:120])
            return
        server.pending += 1
        session = None
        try:
            await ws.accept()
            session = Session(server, ws)
            await session.run()
        finally:
            if session is not None and session.slot:
                server.sessions -= 1
            else:
                server.pending -= 1
        if session is not None and session.gone is None:
            try:
                await ws.close()
            except Exception:                           # noqa: BLE001 - already closed
                pass

    app = Starlette(routes=[
        Route("/", index), Route("/v1/health", health),
        Route("/v1/portraits", portraits, methods=["POST"]),
        WebSocketRoute("/v1/stream", stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan)
    app.state.server = server
    return app


async def _multipart_image(request, body: bytes) -> tuple[bytes, str | None] | None:
    """The ``image`` file field (bytes, file name) of a multipart body already read."""
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    async def replay():
        yield body
        yield b""

    form = await MultiPartParser(Headers(raw=request.headers.raw), replay()).parse()
    item = form.get("image")
    if not hasattr(item, "read"):
        return None
    return await item.read(), Path(item.filename or "").name[:80] or None


def uvicorn_config(app, config: ServerConfig, **overrides):
    """The uvicorn settings the server runs with: the WebSocket layer takes messages up to
    PROTOCOL_SLACK x max_message_mb (so the session answers an oversized one itself), and
    compresses nothing (JPEG frames do not compress; deflating a text's 3 MB speech message
    held the event loop, and every session's frames, for ~0.4 s)."""
    import uvicorn
    settings = dict(host=config.host, port=config.port, log_level="warning",
                    ws_max_size=int(PROTOCOL_SLACK * config.max_message_mb * 1e6),
                    ws_per_message_deflate=False)
    return uvicorn.Config(app, **{**settings, **overrides})


def serve_in_subprocess(port: int, *args: str, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        timeout_s: float = 60.0, env: dict | None = None) -> subprocess.Popen:
    """``puppetry serve --port PORT ARGS`` in its own process, returned once ``/v1/health``
    answers (benchmarks, screenshots, tests). The caller terminates it."""
    proc = subprocess.Popen([sys.executable, "-m", "puppetry.cli", "serve", "--port", str(port), *args],
                            stdout=stdout, stderr=stderr, text=True, env=env)
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


class _DenialNoise(logging.Filter):
    """uvicorn 0.54's sans-I/O WebSocket protocol logs an error after a refused handshake
    (an HTTP 401/403/503 answer) that it otherwise handles correctly; the refusal is
    logged once by this server instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


def serve(config: ServerConfig = ServerConfig()) -> None:
    """Run the server until interrupted (``puppetry serve``)."""
    import torch
    import uvicorn
    check_config(config)
    torch.set_num_threads(1)          # one torch thread per render thread: no spin-wait collapse
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("puppetry serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    logging.getLogger("uvicorn.error").addFilter(_DenialNoise())
    app = build_app(config)
    page = f"http://{config.host}:{config.port}/" + (f"#token={config.token}" if config.token else "")
    print(f"puppetry serve: {page} (WebSocket /v1/stream, {app.state.server.max_sessions} sessions "
          f"at {config.size}px, {config.fps:g} fps)", flush=True)
    uvicorn.Server(uvicorn_config(app, config)).run()
