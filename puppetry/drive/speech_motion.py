"""Head motion and blinks from the speech itself (DESIGN.md §4).

Neural Voice Puppetry drives only the face and leaves the head where the target video
has it; a one-shot portrait has no such video, so we derive the pose from the audio:

1. Prosody: the speech-band (``BAND_HZ``) energy of the audio, in dB at ``ENVELOPE_HZ``,
   smoothed (``SMOOTH_S``). Frames above a level set between the noise floor and the
   speech level are voiced; voiced runs joined across gaps shorter than ``MIN_PAUSE_S``
   are phrases, and the gaps between them pauses.
2. Stressed syllables: peaks of the envelope at least ``PEAK_MIN_DB`` above the mean of
   the voiced envelope around them (``LOCAL_S``), at least ``PEAK_GAP_S`` apart (the
   most prominent wins). Each one nods the head (pitch dips ``NOD_DEG``, a raised-cosine
   bump of ``NOD_S``, deeper the more prominent the peak) and now and then
   (``TILT_P``) tilts it (roll ``TILT_DEG``, ``TILT_S``).
3. Phrases: each phrase (and every ``DRIFT_EVERY_S`` of a long one) turns the head to a
   new yaw (``DRIFT_DEG``, usually to the other side, ``DRIFT_SWITCH_P``), easing over
   ``DRIFT_RAMP_S`` around the phrase onset, as a speaker addresses one side of the room,
   then the other.
4. Idle sway (:func:`puppetry.drive.idle.idle_head_motion`) everywhere, ``SWAY_SPEECH``
   of its size while speaking and ``SWAY_PAUSE`` in pauses.
5. Spread: over a short clip drift and sway may cancel or pile up, so the yaw is scaled
   (gain within ``YAW_GAIN``) until its standard deviation over the clip lies in
   ``YAW_STD_DEG``: 2.5-5 degrees, what a speaker addressing a room shows.

Blinks (:func:`speech_blinks`) follow idle's renewal process, but a blink whose onset is
within ``BLINK_SNAP_S`` of a phrase end is moved there: people blink at the ends of
phrases and in pauses more than mid-word.

Everything is seeded (salted per component like ``idle.py``) and scaled by ``scale``;
``scale=0`` is exactly still.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLE_RATE
from ..expression.arkit import INDEX, N_EXPRESSIONS
from . import idle
from .frames import FPS, Motion

# 1. Prosody envelope and phrasing.
ENVELOPE_HZ = 100.0  # envelope frames per second
HOP = int(SAMPLE_RATE / ENVELOPE_HZ)  # 160 samples per envelope frame
N_FFT = 512  # analysis window, samples (32 ms)
BAND_HZ = (300.0, 3400.0)  # speech band whose energy marks syllables, Hz
SMOOTH_S = 0.04  # Gaussian smoothing of the dB envelope (sigma), s
DYNAMIC_DB = 60.0  # envelope floored this far below its 99th percentile (digital silence), dB
VOICE_LEVEL = 0.4  # voiced above floor + this fraction of (speech level - floor)
MIN_VOICE_DB = 6.0  # ... and at least this many dB above the floor
MIN_PAUSE_S = 0.2  # shorter gaps do not split a phrase, s
MIN_PHRASE_S = 0.1  # shorter voiced bursts (clicks) are not speech, s

# 2. Stressed syllables: nods and tilts.
LOCAL_S = 1.0  # window of the local voiced mean a peak must stand above, s
PEAK_MIN_DB = 6.0  # a stressed syllable stands this far above the local mean, dB
PEAK_FULL_DB = 14.0  # ... and nods fully at this prominence, dB
PEAK_GAP_S = 0.25  # stressed syllables at least this far apart, s
NOD_DEG = (1.0, 3.0)  # pitch dip at the least / most prominent stress, degrees
NOD_S = 0.3  # nod duration (raised cosine), s
TILT_P = 0.25  # chance that a stressed syllable also tilts the head
TILT_DEG = (1.0, 2.0)  # roll of a tilt, degrees (random side)
TILT_S = 0.6  # tilt duration (raised cosine), s

# 3. Phrase-level yaw drift.
DRIFT_DEG = (2.5, 5.0)  # yaw of each phrase's direction, degrees (random size)
DRIFT_SWITCH_P = 0.85  # chance that a new phrase turns to the other side
DRIFT_RAMP_S = 0.8  # time to turn to a new direction, s (centred on the phrase onset)
DRIFT_EVERY_S = 4.0  # a phrase longer than this changes direction again every so often, s

# 4. Idle sway.
SWAY_SPEECH = 0.6  # idle sway while speaking, fraction of idle.HEAD_STD_DEG
SWAY_PAUSE = 1.0  # ... and in pauses
SWAY_RAMP_S = 0.4  # fade between the two, s

# 5. Spread: drift and sway can cancel (or pile up) over a short clip, so the clip's yaw
# is scaled into this band of standard deviations (measured over the clip, before
# ``scale``); gains are limited to YAW_GAIN. A long clip sits inside the band by itself.
YAW_STD_DEG = (2.5, 5.0)  # degrees
YAW_GAIN = (0.5, 3.0)

# Blinks.
BLINK_SNAP_S = 1.0  # a blink this close to a phrase end moves there, s
BLINK_AFTER_S = (0.05, 0.2)  # where in the pause it lands: this long after the phrase end, s

_SALT_NOD, _SALT_DRIFT, _SALT_SNAP = 0x90D5, 0xD21F, 0x5A9B


@dataclass(frozen=True)
class Prosody:
    """What the head follows in the speech.

    envelope : float32[E], speech-band energy in dB at ``ENVELOPE_HZ``, smoothed
    voiced   : bool[E], inside a phrase
    phrases  : float64[P x 2], (start, end) of each phrase, s
    stresses : float64[S], times of the stressed syllables, s
    prominence: float64[S], their height above the local voiced mean, dB
    """

    envelope: np.ndarray
    voiced: np.ndarray
    phrases: np.ndarray
    stresses: np.ndarray
    prominence: np.ndarray


def speech_envelope(audio: np.ndarray) -> np.ndarray:
    """Speech-band energy of ``audio : float32[N]`` at 16 kHz -> float32[ceil(N / HOP)] dB,
    frame ``k`` centred on sample ``k * HOP``, smoothed with a ``SMOOTH_S`` Gaussian.

    The spectrum is taken 30 s at a time, so its memory stays flat for long audio.
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio has shape {audio.shape}: pass mono float32[N] samples at "
                         f"{SAMPLE_RATE} Hz (puppetry.audio.load_audio)")
    n = -(-len(audio) // HOP)  # envelope frames
    if n == 0:
        return np.zeros(0, np.float32)
    freqs = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    window = np.hanning(N_FFT).astype(np.float32)
    power = np.empty(n)
    step = 3000  # envelope frames per chunk (30 s)
    half = N_FFT // 2
    for s in range(0, n, step):
        e = min(n, s + step)
        lo = s * HOP - half                           # the chunk's samples, zero-padded at
        chunk = audio[max(lo, 0):max(0, (e - 1) * HOP + half + 1)]   # the ends (no copy of all)
        chunk = np.pad(chunk, (max(0, -lo), 0))
        chunk = np.pad(chunk, (0, max(0, (e - s - 1) * HOP + N_FFT - len(chunk))))
        idx = (np.arange(e - s) * HOP)[:, None] + np.arange(N_FFT)[None]  # (e - s, N_FFT)
        spec = np.fft.rfft(chunk[idx] * window, axis=1)[:, band]
        power[s:e] = (np.abs(spec) ** 2).mean(1)
    db = 10 * np.log10(power + 1e-12)
    db = np.maximum(db, np.percentile(db, 99) - DYNAMIC_DB)
    return _gaussian_smooth(db, SMOOTH_S * ENVELOPE_HZ).astype(np.float32)


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along the only axis, ``sigma`` in samples, edges held."""
    radius = int(np.ceil(3 * sigma))
    if radius == 0 or len(x) == 0:
        return np.asarray(x, np.float64)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.convolve(np.pad(x, radius, mode="edge"), k / k.sum(), "valid")


def _runs(mask: np.ndarray) -> np.ndarray:
    """(start, stop) index pairs of the True runs of ``mask`` -> int[R x 2]."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], 1)


def analyse_speech(audio: np.ndarray) -> Prosody:
    """Phrases and stressed syllables of ``audio : float32[N]`` at 16 kHz (module doc, 1-2)."""
    env = speech_envelope(audio)
    if len(env) == 0:
        empty = np.zeros(0)
        return Prosody(env, np.zeros(0, bool), np.zeros((0, 2)), empty, empty)

    # 1. Voiced frames: between the noise floor and the speech level.
    floor, level = np.percentile(env, 10), np.percentile(env, 95)
    threshold = floor + max(VOICE_LEVEL * (level - floor), MIN_VOICE_DB)
    voiced = env > threshold
    min_pause, min_phrase = round(MIN_PAUSE_S * ENVELOPE_HZ), round(MIN_PHRASE_S * ENVELOPE_HZ)
    for a, b in _runs(~voiced):  # bridge short gaps inside phrases
        if b - a < min_pause and a > 0 and b < len(env):
            voiced[a:b] = True
    for a, b in _runs(voiced):  # drop clicks
        if b - a < min_phrase:
            voiced[a:b] = False
    phrases = _runs(voiced) / ENVELOPE_HZ

    # 2. Stressed syllables: local maxima well above the voiced mean around them.
    width = min(int(LOCAL_S * ENVELOPE_HZ), max(len(env) - 1, 0)) | 1   # "same" keeps len(env)
    box = np.ones(width)
    w = voiced.astype(np.float64)
    local = np.convolve(env * w, box, "same") / np.maximum(np.convolve(w, box, "same"), 1e-9)
    prominence = env - local
    peak = np.zeros(len(env), bool)
    peak[1:-1] = (env[1:-1] >= env[:-2]) & (env[1:-1] > env[2:])
    candidates = np.flatnonzero(peak & voiced & (prominence >= PEAK_MIN_DB))
    gap = PEAK_GAP_S * ENVELOPE_HZ
    kept: list[int] = []
    for i in candidates[np.argsort(-prominence[candidates], kind="stable")]:
        if all(abs(i - j) >= gap for j in kept):
            kept.append(int(i))
    kept.sort()
    return Prosody(env, voiced, phrases, np.asarray(kept, np.float64) / ENVELOPE_HZ,
                   prominence[kept].astype(np.float64))


def _bump(t: np.ndarray, centre: float, duration: float) -> np.ndarray:
    """Raised cosine of ``duration`` s centred on ``centre``: 1 at the centre, 0 outside."""
    u = np.clip((t - centre) / duration, -0.5, 0.5)
    return 0.5 * (1 + np.cos(2 * np.pi * u))


def _pause_mask(prosody: Prosody, t: np.ndarray) -> np.ndarray:
    """1 in pauses, 0 inside phrases, at times ``t`` s, eased over ``SWAY_RAMP_S``."""
    speaking = np.zeros(len(t))
    for start, end in prosody.phrases:
        rise = idle._smoothstep((t - start + SWAY_RAMP_S / 2) / SWAY_RAMP_S)
        fall = 1 - idle._smoothstep((t - end + SWAY_RAMP_S / 2) / SWAY_RAMP_S)
        speaking = np.maximum(speaking, np.minimum(rise, fall))
    return 1 - speaking


def _head_motion(prosody: Prosody, n_frames: int, fps: float, seed: int,
                 scale: float) -> np.ndarray:
    t = np.arange(n_frames) / fps
    rot = np.zeros((n_frames, 3))

    # 1. Nods and tilts on stressed syllables (the deepest nod wins where two overlap).
    rng = idle._rng(seed, _SALT_NOD)
    for time, prom in zip(prosody.stresses, prosody.prominence):
        strength = np.clip((prom - PEAK_MIN_DB) / (PEAK_FULL_DB - PEAK_MIN_DB), 0, 1)
        depth = NOD_DEG[0] + strength * (NOD_DEG[1] - NOD_DEG[0])
        rot[:, 1] = np.minimum(rot[:, 1], -depth * _bump(t, time, NOD_S))
        tilt, side, size = rng.random(), rng.choice([-1.0, 1.0]), rng.uniform(*TILT_DEG)
        if tilt < TILT_P:
            rot[:, 2] += side * size * _bump(t, time, TILT_S)
    rot[:, 2] = np.clip(rot[:, 2], -TILT_DEG[1], TILT_DEG[1])

    # 2. A new yaw direction at each phrase onset (and within long phrases).
    rng = idle._rng(seed, _SALT_DRIFT)
    onsets = []
    for start, end in prosody.phrases:
        onsets.extend(np.arange(start, end - DRIFT_EVERY_S / 2, DRIFT_EVERY_S))
    side, yaw = rng.choice([-1.0, 1.0]), 0.0
    for onset in onsets:
        side = -side if rng.random() < DRIFT_SWITCH_P else side
        target = side * rng.uniform(*DRIFT_DEG)
        ease = idle._smoothstep((t - onset + DRIFT_RAMP_S / 2) / DRIFT_RAMP_S)
        rot[:, 0] += (target - yaw) * ease
        yaw = target

    # 3. Idle sway, larger in pauses.
    pause = _pause_mask(prosody, t)
    sway = idle.idle_head_motion(n_frames, fps, seed=seed)
    rot += sway * (SWAY_SPEECH + (SWAY_PAUSE - SWAY_SPEECH) * pause)[:, None]

    # 4. Keep the clip's yaw spread in YAW_STD_DEG.
    spread = rot[:, 0].std()
    if spread > 0:
        target = np.clip(spread, *YAW_STD_DEG)
        rot[:, 0] *= np.clip(target / spread, *YAW_GAIN)
    return (scale * rot).astype(np.float32)


def speech_head_motion(audio: np.ndarray, n_frames: int, fps: float = FPS, *, seed: int,
                       scale: float = 1.0) -> np.ndarray:
    """Head rotation that follows the speech (module doc).

    audio : float32[N] at 16 kHz; frame i is at ``i / fps`` seconds into it.
    Returns rotation : float32[T x 3], degrees (yaw, pitch, roll); ``scale=0`` gives zeros.
    """
    if scale == 0 or n_frames == 0:
        return np.zeros((n_frames, 3), np.float32)
    return _head_motion(analyse_speech(audio), n_frames, fps, seed, scale)


def _blink_onsets(prosody: Prosody, duration_s: float, seed: int,
                  rate_per_min: float) -> np.ndarray:
    """idle's blink onsets, each moved to a phrase end within ``BLINK_SNAP_S`` when that
    keeps ``idle.BLINK_REFRACTORY_S`` to its neighbours (so the rate is unchanged)."""
    onsets = idle.blink_onsets(duration_s, seed=seed, rate_per_min=rate_per_min)
    ends = prosody.phrases[:, 1] if len(prosody.phrases) else np.zeros(0)
    if len(onsets) == 0 or len(ends) == 0:
        return onsets
    rng = idle._rng(seed, _SALT_SNAP)
    out = onsets.copy()
    for k in range(len(out)):
        nearest = ends[np.argmin(np.abs(ends - out[k]))]
        moved = nearest + rng.uniform(*BLINK_AFTER_S)
        if abs(nearest - out[k]) > BLINK_SNAP_S or moved >= duration_s:
            continue
        before = out[k - 1] if k > 0 else -np.inf
        after = out[k + 1] if k + 1 < len(out) else np.inf
        if moved - before >= idle.BLINK_REFRACTORY_S and after - moved >= idle.BLINK_REFRACTORY_S:
            out[k] = moved
    return out


def speech_blinks(audio: np.ndarray, n_frames: int, fps: float = FPS, *, seed: int,
                  rate_per_min: float = idle.BLINK_RATE_PER_MIN) -> np.ndarray:
    """Blinks that favour phrase ends and pauses -> float32[T] in [0, 1] (1 = closed).

    The same onsets as :func:`puppetry.drive.idle.blink_curve` (``rate_per_min`` on
    average; silence gives exactly that curve), each moved to the end of a phrase within
    ``BLINK_SNAP_S`` when it can be. ``rate_per_min=0``: none.
    """
    onsets = _blink_onsets(analyse_speech(audio), n_frames / fps, seed, rate_per_min)
    return idle.blinks_at(onsets, n_frames, fps)


def speech_motion(audio: np.ndarray, expressions: np.ndarray, fps: float = FPS, *,
                  seed: int = 0, motion_scale: float = 1.0, still: bool = False,
                  blink_rate: float = idle.BLINK_RATE_PER_MIN, gaze: bool = True) -> Motion:
    """A talking clip: speech expressions with head motion, blinks and gaze from the audio.

    audio       : float32[N] at 16 kHz
    expressions : float32[T x 52], 0..1, the mouth from Audio2Expression at ``fps``
    motion_scale: size of the head motion (0 = none); ``still=True`` also stops gaze
    blink_rate  : blinks per minute (0 = none); blinks are merged (max) into
                  ``eyeBlinkLeft``/``eyeBlinkRight``
    gaze        : add idle's saccades (``idle.GAZE_AMOUNT``)
    Returns a :class:`Motion` of T frames; translation 0, scale 1.
    """
    expressions = np.asarray(expressions, np.float32)
    if expressions.ndim != 2 or expressions.shape[1] != N_EXPRESSIONS:
        raise ValueError(f"expressions have shape {expressions.shape}: pass float32[T x "
                         f"{N_EXPRESSIONS}] ARKit weights (SpeechToExpression output)")
    n = len(expressions)
    prosody = analyse_speech(audio)
    scale = 0.0 if still else motion_scale
    rotation = (_head_motion(prosody, n, fps, seed, scale) if scale != 0 and n
                else np.zeros((n, 3), np.float32))
    blink = idle.blinks_at(_blink_onsets(prosody, n / fps, seed, blink_rate), n, fps)
    expression = np.clip(expressions, 0.0, 1.0)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        expression[:, INDEX[name]] = np.maximum(expression[:, INDEX[name]], blink)
    amount = idle.GAZE_AMOUNT if gaze and not still else 0.0
    return Motion(expression=expression, rotation=rotation, translation=np.zeros((n, 2)),
                  scale=np.ones(n), gaze=idle.gaze_saccades(n, fps, seed=seed, amount=amount),
                  fps=fps)


# ---------------------------------------------------------------------------------------
# Combining with a user's motion file

COMBINE_MODES = ("add", "replace")
USER_FADE_S = 0.2  # a user's expression takes over / hands back over this long, s


def resample_motion(motion: Motion, n_frames: int, fps: float) -> Motion:
    """``motion`` sampled at ``n_frames`` frames of ``fps``: linear between its frames,
    holding its last frame past its end (and dropping what lies beyond ``n_frames``)."""
    src = np.arange(len(motion)) / motion.fps
    t = np.arange(n_frames) / fps

    def at(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        out = np.stack([np.interp(t, src, c) for c in flat.T], 1)
        return out.reshape((n_frames,) + x.shape[1:])

    return Motion(expression=at(motion.expression), rotation=at(motion.rotation),
                  translation=at(motion.translation), scale=at(motion.scale),
                  gaze=at(motion.gaze), fps=fps)


def combine_motion(base: Motion, user: Motion, mode: str = "add") -> Motion:
    """The generated ``base`` motion with a user's ``user`` motion (a MOTION.json) on top.

    ``user`` is first resampled to ``base``'s fps and length (linear, its last frame held).
    Pose (rotation, translation, scale):

    - ``"add"``: the user's pose is relative to the generated one: rotation and
      translation add, scale multiplies. Keyframe a turn and the head still nods.
    - ``"replace"``: the user's pose is used as it is; the generated pose is dropped.

    Expressions and gaze, in both modes: a channel (one ARKit weight, or the gaze pair)
    belongs to the user in the frames where the user's value is non-zero, and to the
    generated motion elsewhere, with a ``USER_FADE_S`` crossfade at each hand-over so no
    weight jumps. A keyed smile thus replaces the speech's smile while it lasts, and the
    speech's jaw keeps moving in every frame the user leaves ``jawOpen`` at 0.
    Values are clipped to their ranges ([0, 1] expressions, [-1, 1] gaze).
    """
    if mode not in COMBINE_MODES:
        raise ValueError(f"unknown combine mode {mode!r}: use one of {', '.join(COMBINE_MODES)}")
    if len(user) == 0:
        raise ValueError("the user motion has no frames: give at least one keyframe")
    n, fps = len(base), base.fps
    user = resample_motion(user, n, fps)
    if mode == "add":
        rotation = base.rotation + user.rotation
        translation, scale = base.translation + user.translation, base.scale * user.scale
    else:
        rotation, translation, scale = user.rotation, user.translation, user.scale
    own = _ownership(user.expression != 0, fps)  # (T, 52)
    expression = own * user.expression + (1 - own) * base.expression
    own_gaze = _ownership(np.any(user.gaze != 0, axis=1, keepdims=True), fps)  # (T, 1)
    gaze = own_gaze * user.gaze + (1 - own_gaze) * base.gaze
    return dataclasses.replace(base, expression=np.clip(expression, 0, 1), rotation=rotation,
                               translation=translation, scale=scale,
                               gaze=np.clip(gaze, -1, 1))


def _ownership(set_: np.ndarray, fps: float) -> np.ndarray:
    """bool[T x C] (the user set this value) -> float[T x C] in [0, 1]: 1 where set,
    falling to 0 over ``USER_FADE_S`` after the last set frame and before the next one."""
    n = max(int(round(USER_FADE_S * fps)), 1)
    own = set_.astype(np.float64)
    t = np.arange(len(own))
    for c in range(own.shape[1]):
        idx = np.flatnonzero(set_[:, c])
        if len(idx) == 0 or len(idx) == len(own):
            continue
        # frames to the nearest set frame (before or after)
        pos = np.searchsorted(idx, t)
        prev = idx[np.clip(pos - 1, 0, len(idx) - 1)]
        nxt = idx[np.clip(pos, 0, len(idx) - 1)]
        dist = np.minimum(np.abs(t - prev), np.abs(nxt - t))
        own[:, c] = 1 - idle._smoothstep(dist / (n + 1))
    return own
