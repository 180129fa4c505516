"""Life between the words: seeded idle head sway, blinks, gaze shifts and a mouth babble.

Every generator takes ``n_frames``, ``fps`` and a ``seed`` and returns a float32 array, so
the pose, audio and preset drivers can mix them into a :class:`~puppetry.drive.frames.Motion`.
The same seed gives the same array, and a longer clip starts with the same frames as a
shorter one (each draws its random numbers in time order), so a stream can be cut anywhere.
Each generator salts the seed with its own constant, so one seed drives all of them
without the blinks echoing the sway.

Units follow ``frames.py``: degrees for rotation, [0, 1] for blink and expression weights,
[-1, 1] for gaze.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..expression.arkit import INDEX, N_EXPRESSIONS
from .frames import Motion

# Head sway: low-passed Gaussian noise per axis plus a breathing nod.
HEAD_STD_DEG = (2.5, 1.2, 0.8)  # stationary std of yaw, pitch, roll, degrees
HEAD_CUTOFF_HZ = 0.3  # sway bandwidth (4th-order Butterworth), Hz
HEAD_WARMUP_S = 10.0  # noise filtered before frame 0 so the sway starts in steady state, s
BREATH_HZ = (0.2, 0.3)  # breathing rate range, Hz (~15 breaths a minute)
BREATH_PITCH_DEG = 0.5  # breathing pitch amplitude, degrees

# Blinks: a renewal process with a refractory period; asymmetric lid shape.
BLINK_RATE_PER_MIN = 15.0  # default mean rate (people blink 10-20 times a minute)
BLINK_REFRACTORY_S = 1.2  # shortest time between two blink onsets, s
BLINK_GAMMA_SHAPE = 1.5  # shape of the gamma-distributed wait after the refractory period
BLINK_CLOSE_S = 0.08  # lid closing, s
BLINK_HOLD_S = 0.04  # fully closed, s
BLINK_OPEN_S = 0.17  # lid opening (slower than closing), s
BLINK_S = BLINK_CLOSE_S + BLINK_HOLD_S + BLINK_OPEN_S  # 0.29 s

# Gaze: fixations held 0.5-3 s, joined by 2-frame saccades.
FIXATION_S = (0.5, 3.0)  # fixation duration range, s
SACCADE_FRAMES = 2  # frames a saccade takes
GAZE_AMOUNT = 0.3  # default fixation spread, fraction of the [-1, 1] gaze range

# Babble: syllables at ~4 Hz grouped into phrases, for talking without audio.
SYLLABLE_HZ = 4.0  # mean syllable rate, syllables/s
SYLLABLE_JITTER = 0.3  # syllable durations vary by +-30 %
PHRASE_S = (1.5, 4.0)  # phrase length range, s
PAUSE_S = (0.25, 0.8)  # pause between phrases, s

# Salts that make each generator's random stream independent for one seed.
_SALT_HEAD, _SALT_BLINK, _SALT_GAZE, _SALT_BABBLE = 0x4EAD, 0xB117, 0x6A2E, 0xBABB


def _rng(seed: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), salt])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def butter_lowpass4(cutoff_hz: float, fs: float) -> np.ndarray:
    """4th-order Butterworth low-pass as two biquads (bilinear transform with pre-warping,
    the same filter as ``scipy.signal.butter(4, cutoff_hz, fs=fs, output="sos")``).

    Returns float64[2 x 6] second-order sections (b0, b1, b2, a0=1, a1, a2).
    """
    w0 = 2 * np.pi * cutoff_hz / fs
    sections = []
    for q in (1 / (2 * np.cos(np.pi / 8)), 1 / (2 * np.cos(3 * np.pi / 8))):   # pole-pair Qs
        alpha = np.sin(w0) / (2 * q)
        b = np.array([(1 - np.cos(w0)) / 2, 1 - np.cos(w0), (1 - np.cos(w0)) / 2])
        a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
        sections.append(np.r_[b / a[0], 1.0, a[1:] / a[0]])
    return np.array(sections)


def sosfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Filter float[T x C] along time with second-order sections (direct form II transposed).

    A small loop over time, vectorised over channels: no scipy.signal at start-up (~0.4 s).
    """
    y = np.array(x, np.float64)
    for b0, b1, b2, _, a1, a2 in sos:
        z1 = np.zeros(y.shape[1])
        z2 = np.zeros(y.shape[1])
        for t in range(len(y)):
            xt = y[t].copy()
            y[t] = b0 * xt + z1
            z1 = b1 * xt - a1 * y[t] + z2
            z2 = b2 * xt - a2 * y[t]
    return y


def idle_head_motion(n_frames: int, fps: float, *, seed: int, scale: float = 1.0) -> np.ndarray:
    """Slow head sway of someone listening or thinking.

    Each axis is Gaussian noise through a 4th-order low-pass at ``HEAD_CUTOFF_HZ``, scaled to
    the stationary std ``HEAD_STD_DEG``; pitch also carries a breathing sinusoid. Zero mean
    over long clips (a short clip may sit a degree or two off centre).

    Returns rotation : float32[T x 3], degrees (yaw, pitch, roll); ``scale=0`` gives zeros.
    """
    if scale == 0 or n_frames == 0:
        return np.zeros((n_frames, 3), np.float32)
    rng = _rng(seed, _SALT_HEAD)
    breath_hz = rng.uniform(*BREATH_HZ)
    breath_phase = rng.uniform(0.0, 2 * np.pi)

    # 1. Low-passed noise, normalised by the filter's noise gain so the std is as stated.
    sos = butter_lowpass4(min(HEAD_CUTOFF_HZ, 0.4 * fps), fps)
    impulse = np.zeros(int(20 * fps / HEAD_CUTOFF_HZ) + 1)
    impulse[0] = 1.0
    gain = np.sqrt(np.sum(sosfilt(sos, impulse[:, None]) ** 2))
    warmup = int(round(HEAD_WARMUP_S * fps))
    noise = rng.standard_normal((warmup + n_frames, 3))  # drawn in time order
    sway = sosfilt(sos, noise)[warmup:] / gain  # (T, 3), unit std
    sway *= np.asarray(HEAD_STD_DEG)

    # 2. Breathing: the chin rises a little on each breath.
    t = np.arange(n_frames) / fps
    sway[:, 1] += BREATH_PITCH_DEG * np.sin(2 * np.pi * breath_hz * t + breath_phase)
    return (scale * sway).astype(np.float32)


def blink_shape(t: np.ndarray) -> np.ndarray:
    """Lid closure in [0, 1] at ``t`` seconds after a blink's onset (0 outside the blink).

    Eases closed in ``BLINK_CLOSE_S``, holds ``BLINK_HOLD_S``, eases open in ``BLINK_OPEN_S``.
    """
    t = np.asarray(t, np.float64)
    closing = _smoothstep(t / BLINK_CLOSE_S)
    opening = 1.0 - _smoothstep((t - BLINK_CLOSE_S - BLINK_HOLD_S) / BLINK_OPEN_S)
    return np.where(t < 0, 0.0, np.where(t < BLINK_CLOSE_S, closing, opening))


def blinks_at(onsets_s, n_frames: int, fps: float) -> np.ndarray:
    """Blinks starting at ``onsets_s`` (seconds) -> float32[T] in [0, 1]; overlaps take the max."""
    curve = np.zeros(n_frames)
    for onset in onsets_s:
        first = max(int(np.floor(onset * fps)), 0)
        last = min(int(np.ceil((onset + BLINK_S) * fps)) + 1, n_frames)
        if first < last:
            t = np.arange(first, last) / fps - onset
            curve[first:last] = np.maximum(curve[first:last], blink_shape(t))
    return curve.astype(np.float32)


def blink_onsets(duration_s: float, *, seed: int,
                 rate_per_min: float = BLINK_RATE_PER_MIN) -> np.ndarray:
    """Blink onset times in seconds over ``[0, duration_s)``.

    Intervals are ``BLINK_REFRACTORY_S`` plus a gamma-distributed wait whose mean makes the
    mean interval ``60 / rate_per_min`` (at least the refractory period plus 0.1 s).
    """
    if rate_per_min <= 0:
        return np.zeros(0)
    rng = _rng(seed, _SALT_BLINK)
    mean_wait = max(60.0 / rate_per_min - BLINK_REFRACTORY_S, 0.1)
    onsets = []
    t = rng.uniform(0.0, BLINK_REFRACTORY_S + mean_wait)  # first blink anywhere in one interval
    while t < duration_s:
        onsets.append(t)
        t += BLINK_REFRACTORY_S + rng.gamma(BLINK_GAMMA_SHAPE, mean_wait / BLINK_GAMMA_SHAPE)
    return np.asarray(onsets)


def blink_curve(n_frames: int, fps: float, *, seed: int,
                rate_per_min: float = BLINK_RATE_PER_MIN) -> np.ndarray:
    """Spontaneous blinks -> float32[T] in [0, 1] (1 = eyes closed); ``rate_per_min=0``: none."""
    onsets = blink_onsets(n_frames / fps, seed=seed, rate_per_min=rate_per_min)
    return blinks_at(onsets, n_frames, fps)


def gaze_saccades(n_frames: int, fps: float, *, seed: int,
                  amount: float = GAZE_AMOUNT) -> np.ndarray:
    """Fixations held ``FIXATION_S`` seconds, joined by ``SACCADE_FRAMES``-frame jumps.

    Starts looking straight ahead (0, 0); each new fixation is uniform in
    ``[-amount, amount]`` horizontally and half that vertically (people look around more
    than up and down).

    Returns gaze : float32[T x 2] in [-1, 1] (h, v); ``amount=0`` gives zeros.
    """
    if amount == 0 or n_frames == 0:
        return np.zeros((n_frames, 2), np.float32)
    rng = _rng(seed, _SALT_GAZE)
    target = np.zeros((n_frames, 2))
    t = rng.uniform(*FIXATION_S)
    while (start := int(round(t * fps))) < n_frames:
        target[start:] = rng.uniform(-1, 1, 2) * (amount, 0.5 * amount)
        t += rng.uniform(*FIXATION_S)
    # A running mean over SACCADE_FRAMES turns each step into a linear jump of that many frames.
    padded = np.concatenate([np.repeat(target[:1], SACCADE_FRAMES - 1, 0), target])
    kernel = np.ones(SACCADE_FRAMES) / SACCADE_FRAMES
    gaze = np.stack([np.convolve(padded[:, i], kernel, "valid") for i in range(2)], 1)
    return np.clip(gaze, -1.0, 1.0).astype(np.float32)


def babble_mouth(n_frames: int, fps: float, *, seed: int,
                 rate_hz: float = SYLLABLE_HZ) -> np.ndarray:
    """A speech-like mouth without audio: syllables at ``rate_hz`` in phrases with pauses.

    Each syllable opens the jaw once (a half-sine of random height); about a quarter are
    rounded (``mouthFunnel``, ``mouthPucker``) and a quarter start on a lip closure as in
    p/b/m (``mouthClose``, ``mouthPress*``). The mouth rests closed in the pauses.

    Returns expression : float32[T x 52], 0..1 (only mouth and jaw channels set).
    """
    rng = _rng(seed, _SALT_BABBLE)
    out = np.zeros((n_frames, N_EXPRESSIONS))
    duration = n_frames / fps
    t = rng.uniform(*PAUSE_S)  # start of the first phrase
    while t < duration:
        phrase_end = t + rng.uniform(*PHRASE_S)
        while t < min(phrase_end, duration):
            length = rng.uniform(1 - SYLLABLE_JITTER, 1 + SYLLABLE_JITTER) / rate_hz
            kind = rng.choice(["open", "rounded", "bilabial"], p=[0.5, 0.25, 0.25])
            jaw, rounding, lip = rng.uniform(0.2, 0.6), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4)
            first, last = int(np.ceil(t * fps)), min(int(np.ceil((t + length) * fps)), n_frames)
            u = (np.arange(first, last) / fps - t) / length  # 0..1 through the syllable
            bump = np.sin(np.pi * u)
            if kind == "rounded":
                jaw *= 0.5
                out[first:last, INDEX["mouthFunnel"]] = rounding * bump
                out[first:last, INDEX["mouthPucker"]] = 0.7 * rounding * bump
            out[first:last, INDEX["jawOpen"]] = jaw * bump
            out[first:last, INDEX["mouthLowerDownLeft"]] = 0.3 * jaw * bump
            out[first:last, INDEX["mouthLowerDownRight"]] = 0.3 * jaw * bump
            if kind == "bilabial":  # lips sealed while the jaw starts to open, then release
                seal = 1.0 - _smoothstep((u - 0.2) / 0.2)
                out[first:last, INDEX["mouthClose"]] = jaw * bump * seal
                out[first:last, INDEX["mouthPressLeft"]] = lip * seal
                out[first:last, INDEX["mouthPressRight"]] = lip * seal
            t += length
        t += rng.uniform(*PAUSE_S)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def add_idle(motion: Motion, *, seed: int, head_scale: float = 1.0,
             blink_rate: float = BLINK_RATE_PER_MIN, gaze_amount: float = GAZE_AMOUNT) -> Motion:
    """``motion`` with idle sway added to its rotation, blinks merged (max) into
    ``eyeBlinkLeft``/``eyeBlinkRight`` and saccades added to its gaze (clipped to [-1, 1]).

    Returns a new Motion; ``head_scale=0``, ``blink_rate=0``, ``gaze_amount=0`` switch each off.
    """
    n, fps = len(motion), motion.fps
    expression = motion.expression.copy()
    blink = blink_curve(n, fps, seed=seed, rate_per_min=blink_rate)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        expression[:, INDEX[name]] = np.maximum(expression[:, INDEX[name]], blink)
    return dataclasses.replace(
        motion,
        expression=expression,
        rotation=motion.rotation + idle_head_motion(n, fps, seed=seed, scale=head_scale),
        gaze=np.clip(motion.gaze + gaze_saccades(n, fps, seed=seed, amount=gaze_amount), -1, 1),
    )
