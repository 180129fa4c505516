"""A Python client for ``puppetry serve`` (protocol: docs/streaming.md).

>>> from puppetry.client import AvatarClient
>>> with AvatarClient("ws://127.0.0.1:8000/v1/stream", portrait="me.jpg") as avatar:
...     avatar.send_audio(speech)            # float32[n] at 16 kHz (or PCM s16le bytes)
...     avatar.end()
...     for frame in avatar.frames(until_utterance_end=True):
...         show(frame.image(), frame.weights)

With an access token (``puppetry serve --token``): ``AvatarClient(url, token=...)`` and
``upload_portrait(base_url, image, token=...)``; ``PUPPETRY_TOKEN`` is read when none is given.
Live driving: ``avatar.send_drive(rgb)`` sends a camera frame that moves the face.

Needs the ``websockets`` package (the ``serve`` extra).
"""
from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import to_pcm16

try:
    from websockets.exceptions import ConnectionClosed
except ImportError:                      # the client needs the `serve` extra's websockets
    ConnectionClosed = OSError


@dataclass
class Frame:
    """One received frame.

    index     : frame number in the session
    t         : seconds since the session started, when the server made it
    utterance : utterance number, or None while idling
    audio_t   : seconds into the utterance's audio this frame shows, or None
    last      : the utterance's final frame
    pose      : (yaw, pitch, roll) degrees
    weights   : float32[52] ARKit weights in ``AvatarClient.names`` order
    jpeg      : the image, JPEG bytes
    latency_ms: on an utterance's first frame, the server's time from its first audio
    drive_seq : the ``seq`` of the camera frame that drove this frame, or None
    drive_ms  : the server's time from that camera frame's arrival to this frame, or None
    """

    index: int
    t: float
    utterance: int | None
    audio_t: float | None
    last: bool
    pose: tuple[float, float, float]
    weights: np.ndarray
    jpeg: bytes
    latency_ms: float | None = None
    drive_seq: int | None = None
    drive_ms: float | None = None

    def image(self) -> np.ndarray:
        """The frame as uint8[H x W x 3] RGB."""
        import cv2
        bgr = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        return bgr[:, :, ::-1].copy()


def unpack_frame(message: bytes) -> Frame:
    """A binary frame message (4-byte big-endian header length, JSON header, JPEG)."""
    n = int.from_bytes(message[:4], "big")
    head = json.loads(message[4:4 + n])
    return Frame(head["index"], head["t"], head["utterance"], head["audio_t"], head["last"],
                 tuple(head["pose"]), np.asarray(head["weights"], np.float32), message[4 + n:],
                 head.get("latency_ms"), head.get("drive_seq"), head.get("drive_ms"))


class ServerError(RuntimeError):
    """An error message from the server (``code`` says which kind)."""

    def __init__(self, message: dict):
        super().__init__(message.get("message", "server error"))
        self.code = message.get("code")


def _token(token: str | None) -> str | None:
    return token if token is not None else os.environ.get("PUPPETRY_TOKEN") or None


class AvatarClient:
    """One streaming session. ``portrait``: a path or bytes of an image (uploaded in the
    start message), an id from :func:`upload_portrait`, or None for the bundled face.
    ``token``: the server's access token (default: ``PUPPETRY_TOKEN`` if set)."""

    def __init__(self, url: str = "ws://127.0.0.1:8000/v1/stream", *, portrait=None,
                 timeout: float = 60.0, token: str | None = None, **options):
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect
        self.timeout = timeout
        token = _token(token)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            self.ws = connect(url, max_size=16 * 2**20, open_timeout=timeout,
                              additional_headers=headers).__enter__()
        except InvalidStatus as refused:           # 401 token, 403 origin, 503 busy
            response = refused.response
            try:
                detail = json.loads(response.body or b"{}").get("error")
            except (ValueError, AttributeError):
                detail = None
            raise ServerError({"code": str(response.status_code), "message": detail or
                               f"server refused the connection (HTTP {response.status_code})"}) from None
        self.messages: list[dict] = []       # JSON messages received (other than frames)
        start = {"type": "start", **options}
        if isinstance(portrait, (bytes, bytearray)):
            start["portrait"] = base64.b64encode(portrait).decode()
        elif isinstance(portrait, Path) or (isinstance(portrait, str) and Path(portrait).is_file()):
            start["portrait"] = base64.b64encode(Path(portrait).read_bytes()).decode()
        elif portrait is not None:
            start["portrait_id"] = str(portrait)
        try:
            self.ws.send(json.dumps(start))
        except ConnectionClosed:
            pass                    # refused (e.g. at capacity): its error message is waiting
        self.ready = self._until("ready")
        self.names: list[str] = self.ready["names"]
        self.fps: float = self.ready["fps"]

    # -- sending ----------------------------------------------------------------------
    def send_audio(self, audio) -> None:
        """Speech: float32[n] in -1..1 at 16 kHz, or PCM s16le bytes. Any chunk size."""
        self.ws.send(audio if isinstance(audio, (bytes, bytearray)) else to_pcm16(audio))

    def end(self) -> None:
        """The utterance is complete."""
        self.send({"type": "end"})

    def say(self, text: str) -> None:
        """Words for the server's offline voice: an utterance of their own."""
        self.send({"type": "text", "text": text})

    def reset(self) -> None:
        """Barge-in: stop the current utterance now."""
        self.send({"type": "reset"})

    def send_drive(self, image, seq: int | None = None, quality: int = 80) -> None:
        """A camera frame that drives the face live: uint8[H x W x 3] RGB (encoded as JPEG
        here) or JPEG/PNG bytes. ``seq`` comes back as ``Frame.drive_seq`` on the frames it
        drove. Send at the camera's rate; the server tracks the newest and drops older ones."""
        if not isinstance(image, (bytes, bytearray)):
            import cv2
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(np.asarray(image)[:, :, ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
            image = buf.tobytes()
        message = {"type": "drive", "image": base64.b64encode(image).decode()}
        if seq is not None:
            message["seq"] = int(seq)
        self.send(message)

    def ping(self) -> None:
        """Keeps a silent session from its idle timeout (answered with ``pong``)."""
        self.send({"type": "ping"})

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    # -- receiving --------------------------------------------------------------------
    def receive(self, timeout: float | None = None) -> Frame | dict:
        """The next frame, or JSON message (dict). Raises ServerError on an error message
        with a code other than ``bad_message`` and TimeoutError when nothing comes."""
        raw = self.ws.recv(timeout=self.timeout if timeout is None else timeout)
        if isinstance(raw, bytes):
            return unpack_frame(raw)
        message = json.loads(raw)
        self.messages.append(message)
        if message.get("type") == "error" and message.get("code") != "bad_message":
            raise ServerError(message)
        return message

    def frames(self, *, until_utterance_end: bool = False, count: int | None = None) -> Iterator[Frame]:
        """Received frames in order; stops after the next utterance's last frame, or
        after ``count`` frames, or never."""
        n = 0
        while count is None or n < count:
            item = self.receive()
            if isinstance(item, Frame):
                n += 1
                yield item
                if until_utterance_end and item.last:
                    return

    def _until(self, kind: str) -> dict:
        while True:
            try:
                item = self.receive()
            except ConnectionClosed as closed:
                error = next((m for m in self.messages if m.get("type") == "error"), None)
                raise ServerError(error or {"code": "closed", "message": f"server closed the "
                                            f"session before {kind!r}: {closed}"}) from None
            if isinstance(item, dict) and item.get("type") == kind:
                return item
            if isinstance(item, dict) and item.get("type") == "error":
                raise ServerError(item)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "AvatarClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def upload_portrait(base_url: str, image, timeout: float = 60.0, token: str | None = None) -> str:
    """POST an image (path or bytes) to ``base_url``/v1/portraits; returns its id.
    ``token``: the server's access token (default: ``PUPPETRY_TOKEN`` if set)."""
    data = Path(image).read_bytes() if isinstance(image, (str, Path)) else bytes(image)
    headers = {"Content-Type": "application/octet-stream"}
    token = _token(token)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url.rstrip("/") + "/v1/portraits", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["id"]
    except urllib.error.HTTPError as err:
        detail = json.loads(err.read() or b"{}").get("error", err.reason)
        raise ServerError({"code": str(err.code), "message": f"portrait upload refused: {detail}"}) from None
    except urllib.error.URLError as err:        # refused before the body was read: too big
        raise ServerError({"code": "upload", "message": f"portrait upload of {len(data) / 1e6:.1f} MB "
                           f"cut off ({err.reason}): it may be over the server's upload limit "
                           "(max_upload_mb in /v1/health)"}) from None
