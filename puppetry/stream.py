"""A live avatar: speech arrives in chunks, frames leave at the video rate.

:class:`AvatarStream` is one session of the streaming server without any networking: push
16 kHz audio as it arrives, call :meth:`AvatarStream.next_frame` once per tick, and get the
face saying it, or idling (breathing sway, blinks, gaze) between utterances.

>>> live = AvatarStream(puppetry.load_portrait("astronaut", size=256))
>>> live.push_audio(chunk)              # float32[n], 16 kHz, any n, as it arrives
>>> frame = live.next_frame()           # StreamFrame, once per 1/fps seconds
>>> live.end_utterance()                # the speaker is done: finish the last frames
>>> live.reset()                        # barge-in: drop the utterance at once

An utterance's frame ``i`` shows the face at ``i / fps`` seconds into its audio; it is
ready once ``lookahead_s`` seconds of audio after that time have arrived (or the utterance
has ended). Until its first frame is ready the face keeps idling, so the stream never
stalls; an utterance gives exactly ``round(duration * fps)`` frames, in order, whatever
the chunk sizes and however far ahead of real time the audio arrives.

Queued audio is turned into expressions a slice at a time, only as far as the next few
frames need (``READY_FRAMES``): a tick never pays for a burst of speech sent faster than
real time (minutes of synthesised text cost each tick no more than real-time audio does).

>>> frame = live.next_frame(drive=driving_frame)   # a driving face (webcam) moves the head
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE
from .drive import idle
from .drive.frames import FPS, DrivingFrame
from .expression.arkit import ARKIT_NAMES, INDEX, N_EXPRESSIONS
from .expression.stream import ExpressionStream, check_stream_audio
from .portrait import Portrait
from .render.warp import RenderConfig, WarpRenderer

IDLE_BLOCK_S = 120.0      # idle motion is generated this many seconds at a time, ...
IDLE_FADE_S = 1.0         # ... and consecutive blocks cross-fade over this long
NOD_DEG = 2.5             # pitch of a nod on a stressed syllable at full jaw emphasis, degrees
NOD_FAST_S, NOD_SLOW_S = 0.08, 0.5   # time constants of the jaw envelopes whose difference nods
SPEAKING_SWAY = 1.4       # idle sway is this much larger while speaking
READY_FRAMES = 4          # queued audio is absorbed until this many speech frames are ready, ...
ABSORB_SLICE_S = 0.2      # ... this many seconds of it at a time
MOUTH_PREFIXES = ("jaw", "mouth", "cheek", "tongue")   # speech's share of a driven face


@dataclass(frozen=True)
class StreamConfig:
    """Knobs of one streaming session (override with ``dataclasses.replace``)."""

    size: int = 256               # frame side, pixels
    fps: float = FPS              # frames per second
    seed: int = 0                 # idle sway, blinks and gaze
    motion_scale: float = 1.0     # head motion amount (0 = still head; blinks stay)
    blink_rate: float = idle.BLINK_RATE_PER_MIN   # blinks per minute
    intensity: float = 1.0        # mouth strength (1 = as predicted)
    model: str | None = None      # streaming Audio2Expression checkpoint; None = the shipped one
    renderer: RenderConfig = RenderConfig()


@dataclass
class StreamFrame:
    """One frame of a session, in sending order.

    index     : frame number in the session, from 0
    utterance : utterance number (from 1) this frame speaks, or None when idling
    audio_t   : seconds into that utterance's audio this frame shows (``i / fps``), or None
    weights   : float32[52] ARKit weights, 0..1, as rendered (mouth, blinks)
    rotation  : (yaw, pitch, roll) degrees, as rendered
    image     : uint8[H x W x 3] RGB
    last      : True on an utterance's final frame
    """

    index: int
    utterance: int | None
    audio_t: float | None
    weights: np.ndarray
    rotation: tuple[float, float, float]
    image: np.ndarray
    last: bool = False


class IdleTrack:
    """Endless seeded idle motion: frame ``k`` -> (rotation degrees [3], blink 0..1, gaze [2]).

    Generated ``IDLE_BLOCK_S`` at a time with a fresh seed per block and a cross-fade
    between blocks, so an hour costs no more than two minutes.
    """

    def __init__(self, fps: float, seed: int, motion_scale: float, blink_rate: float):
        self.fps, self.seed, self.scale, self.blink_rate = fps, seed, motion_scale, blink_rate
        self.block = max(1, round(IDLE_BLOCK_S * fps))
        self.fade = max(1, round(IDLE_FADE_S * fps))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _make(self, k: int):
        if k not in self._cache:
            n, seed = self.block + self.fade, self.seed * 7919 + k
            self._cache = {j: v for j, v in self._cache.items() if j >= k - 1}    # bounded
            self._cache[k] = (idle.idle_head_motion(n, self.fps, seed=seed, scale=self.scale),
                              idle.blink_curve(n, self.fps, seed=seed, rate_per_min=self.blink_rate),
                              idle.gaze_saccades(n, self.fps, seed=seed))
        return self._cache[k]

    def __call__(self, index: int) -> tuple[np.ndarray, float, np.ndarray]:
        k, i = divmod(index, self.block)
        rotation, blink, gaze = (a[i] for a in self._make(k))
        if i < self.fade and k > 0:                      # fade in from the previous block's tail
            prev = self._make(k - 1)
            w = (i + 1) / (self.fade + 1)
            rotation = (1 - w) * prev[0][self.block + i] + w * rotation
            gaze = (1 - w) * prev[2][self.block + i] + w * gaze
            blink = max(blink, prev[1][self.block + i])
        return rotation, float(blink), gaze


@dataclass
class _Utterance:
    id: int
    frames: deque = field(default_factory=deque)    # float32[52] each, computed, not yet shown
    shown: int = 0
    total: int | None = None                          # known once the utterance has ended

    @property
    def done(self) -> bool:
        return self.total is not None and self.shown >= self.total


class AvatarStream:
    """One live session: a prepared portrait, a streaming Audio2Expression and idle motion.

    Thread-safe in one way: :meth:`push_audio`, :meth:`end_utterance` and :meth:`reset`
    may be called from any thread while another calls :meth:`next_frame`; they only queue
    work, which :meth:`next_frame` does.
    """

    def __init__(self, portrait: Portrait | None, config: StreamConfig = StreamConfig(),
                 expressions=None, renderer=None):
        """renderer : anything with ``render_frame(DrivingFrame) -> uint8[size x size x 3]``
        in place of the portrait's warp renderer (``person.live.LivePerson.session()``)."""
        if portrait is None and renderer is None:
            raise ValueError("an avatar stream needs a portrait (or a renderer)")
        if not 0.0 <= config.intensity <= 3.0:
            raise ValueError(f"intensity {config.intensity}: use 0 (closed) to 3")
        if not 1.0 <= config.fps <= 60.0:
            raise ValueError(f"fps {config.fps}: use 1 to 60 frames per second")
        self.config = config
        self.renderer = renderer or WarpRenderer(portrait, config.renderer)
        self.expressions = expressions or ExpressionStream.load(config.model, fps=config.fps)
        self.idle = IdleTrack(config.fps, config.seed, config.motion_scale, config.blink_rate)
        self.lookahead_s = float(self.expressions.lookahead_s)  # audio a frame waits for, s
        self.index = 0                 # frames made in this session
        self._lock = threading.Lock()
        self._events: deque[tuple[int, np.ndarray | None]] = deque()  # (utterance, audio or None = end)
        self._pending = 0              # samples in _events, not yet absorbed
        self._receiving = 0            # utterance taking audio now (0: none)
        self._last_id = 0              # utterances numbered from 1
        self._queue: deque[_Utterance] = deque()   # utterances with frames still to show
        self._fast = self._slow = 0.0  # jaw envelopes for nods

    # -- called by the receiving side ---------------------------------------------------
    def push_audio(self, audio: np.ndarray) -> int:
        """Queue speech: float32[n] at 16 kHz, -1..1. Opens an utterance if none is open;
        returns the utterance's number."""
        audio = check_stream_audio(audio)       # here, so bad input fails in the caller's thread
        with self._lock:
            if not self._receiving:
                self._last_id += 1
                self._receiving = self._last_id
            self._events.append((self._receiving, audio))
            self._pending += len(audio)
            return self._receiving

    def end_utterance(self) -> None:
        """The speaker is done: the utterance's last frames follow without more audio."""
        with self._lock:
            if self._receiving:
                self._events.append((self._receiving, None))
                self._receiving = 0

    def reset(self) -> None:
        """Barge-in: drop every utterance not yet shown and its queued audio; the next
        frame idles."""
        with self._lock:
            self._events.clear()
            self._pending = 0
            self._receiving = 0
            self._events.append((0, None))             # handled by the frame side

    @property
    def next_utterance(self) -> int:
        """The number the next :meth:`push_audio` gets if no utterance is open."""
        return self._receiving or self._last_id + 1

    @property
    def queued_s(self) -> float:
        """Speech received and not yet shown, seconds (queued audio and ready frames)."""
        with self._lock:
            pending = self._pending
        ready = sum(len(u.frames) for u in list(self._queue))
        return pending / SAMPLE_RATE + ready / self.config.fps

    def first_frame_ready(self) -> bool:
        """True if the next frame would be an utterance's first frame (for low-latency sends)."""
        self._absorb()
        u = self._front()
        return u is not None and u.shown == 0

    # -- called once per tick ---------------------------------------------------------
    def next_frame(self, drive: DrivingFrame | None = None) -> StreamFrame:
        """The next frame: the first queued utterance's next frame if it is ready, else an
        idle one. ``drive``: a driving face's frame (relative pose, ARKit weights, gaze;
        e.g. from a webcam) that replaces the idle motion; while an utterance speaks, its
        mouth (jaw, mouth, cheek, tongue weights) comes from the speech."""
        self._absorb()
        idle_rot, blink, gaze = self.idle(self.index)
        weights = np.zeros(N_EXPRESSIONS, np.float32)
        utterance = audio_t = None
        last = False
        u = self._front()
        if u is not None:
            utterance, audio_t = u.id, u.shown / self.config.fps
            weights = np.clip(self._take(u) * self.config.intensity, 0.0, 1.0)
            last = u.done
        rotation = self._nod(weights, idle_rot, utterance is not None)
        if drive is not None:
            driven = np.clip(np.asarray(drive.expression, np.float32), 0.0, 1.0)
            if utterance is not None:
                driven = np.where(_MOUTH, weights, driven)
            weights = driven
            frame = DrivingFrame(weights, tuple(float(r) for r in drive.rotation),
                                 tuple(drive.translation), float(drive.scale), tuple(drive.gaze))
        else:
            for name in ("eyeBlinkLeft", "eyeBlinkRight"):
                weights[INDEX[name]] = max(weights[INDEX[name]], blink)
            frame = DrivingFrame(weights, tuple(float(r) for r in rotation), (0.0, 0.0), 1.0,
                                 (float(gaze[0]), float(gaze[1])))
        image = self.renderer.render_frame(frame)
        out = StreamFrame(self.index, utterance, audio_t, weights, frame.rotation, image, last)
        self.index += 1
        return out

    def skip(self, n: int) -> int:
        """Drop up to ``n`` idle frames unrendered (an overloaded server catching up with
        real time). Speech frames are never skipped: it stops before an utterance's next
        frame, so every utterance keeps all its frames. Returns how many were skipped;
        frame indices jump by as many."""
        self._absorb()
        for k in range(n):
            if self._front() is not None:
                return k
            self.index += 1
        return n

    def _front(self) -> _Utterance | None:
        """The utterance whose frame is next, if that frame is ready (finished utterances,
        e.g. ones with no frames at all, are dropped first)."""
        while self._queue and self._queue[0].done:
            self._queue.popleft()
        return self._queue[0] if self._queue and self._queue[0].frames else None

    def _take(self, u: _Utterance) -> np.ndarray:
        """Pop ``u``'s next frame, float32[52]; ``u`` leaves the queue after its last."""
        weights = u.frames.popleft()
        u.shown += 1
        if u.done:
            self._queue.popleft()
        return weights

    def _absorb(self) -> None:
        """Hand queued audio to the expression stream, in order, ``ABSORB_SLICE_S`` at a
        time until ``READY_FRAMES`` speech frames are ready (resets and ends at once);
        collect the frames it completes into their utterances."""
        slice_n = round(ABSORB_SLICE_S * SAMPLE_RATE)
        while True:
            with self._lock:
                if not self._events:
                    return
                uid, audio = self._events[0]
                if audio is None:                          # a reset (uid 0) or an end
                    self._events.popleft()
                else:
                    if sum(len(q.frames) for q in self._queue) >= READY_FRAMES:
                        return                             # enough ready: the rest waits
                    parts, n = [], 0                       # up to a slice of this utterance
                    while n < slice_n and self._events and self._events[0][0] == uid \
                            and self._events[0][1] is not None:
                        chunk = self._events[0][1]
                        take = chunk[:slice_n - n]
                        parts.append(take)
                        n += len(take)
                        if len(take) == len(chunk):
                            self._events.popleft()
                        else:
                            self._events[0] = (uid, chunk[len(take):])
                    self._pending -= n
                    audio = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if uid == 0:                                   # reset
                self.expressions.reset()
                self._queue.clear()
                continue
            if not self._queue or self._queue[-1].id != uid:
                self._queue.append(_Utterance(uid))
            u = self._queue[-1]
            if audio is None:
                u.frames.extend(self.expressions.flush())
                u.total = u.shown + len(u.frames)
            else:
                u.frames.extend(self.expressions.push(audio))

    def _nod(self, weights: np.ndarray, idle_rot: np.ndarray, speaking: bool) -> np.ndarray:
        """Idle sway (larger while speaking) plus a nod where the jaw opens more than its
        recent average: a causal stand-in for stress."""
        dt = 1.0 / self.config.fps
        jaw = float(weights[INDEX["jawOpen"]])
        self._fast += (jaw - self._fast) * min(1.0, dt / NOD_FAST_S)
        self._slow += (jaw - self._slow) * min(1.0, dt / NOD_SLOW_S)
        rotation = np.array(idle_rot, np.float64) * (SPEAKING_SWAY if speaking else 1.0)
        rotation[1] += self.config.motion_scale * NOD_DEG * max(0.0, self._fast - self._slow) * 4.0
        return rotation


_MOUTH = np.array([name.startswith(MOUTH_PREFIXES) for name in ARKIT_NAMES])   # bool[52]
