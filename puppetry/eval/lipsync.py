"""Lip-sync measurements: mouth openings over time, read back by the face tracker.

Every curve here is one value per video frame, frame ``i`` at ``i / fps`` seconds, and
openings are inner-lip gaps in inter-ocular distances (``metrics.lip_opening``). The
audio side works on the speech band (300-3400 Hz), the part of the spectrum that carries
syllables and is least touched by hum and hiss.

- :func:`track_openings`: the tracker's lip opening for every frame of a video.
- :func:`loudness_baseline`: the mouth opening a loudness meter would give (the baseline
  every lip-sync model must beat); :func:`baseline_expressions` drives a face with it.
- :func:`best_lag_correlation`: Pearson r at the best small time shift.
- :func:`find_closures` / :func:`closure_recall`: does the mouth close where the real
  speaker's did (p, b, m)?
- :func:`find_pauses` / :func:`pause_behaviour`: does it rest closed in pauses, neither
  frozen open nor chattering?
- :func:`syllable_following`: does it open and close with the syllables at all?

>>> from puppetry.eval.lipsync import best_lag_correlation, track_openings
>>> real = track_openings(read_video_frames("real.mp4"), FaceTracker(static=False))
>>> fake = track_openings(read_video_frames("fake.mp4"), FaceTracker(static=False))
>>> r, lag = best_lag_correlation(fake, real)    # lag > 0: the generated mouth is late
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import signal

from ..audio import SAMPLE_RATE
from ..drive.frames import FPS
from ..expression.arkit import INDEX, N_EXPRESSIONS
from .metrics import lip_opening

# Loudness envelope (speech band energy in dB, ENVELOPE_RATE values per second).
SPEECH_BAND = (300.0, 3400.0)   # Hz, telephone band: syllable nuclei, not hum or hiss
BAND_ORDER = 4                  # Butterworth order, applied forward and back (zero phase)
ENVELOPE_RATE = 100             # envelope values per second (10 ms hop)
ENERGY_WINDOW_S = 0.025         # s, Hann window of one energy value (25 ms)
SMOOTH_S = 0.08                 # s, moving average over the dB envelope: about a syllable's rise
DB_FLOOR = -100.0               # dB, energy of digital silence (keeps log finite)
LOUD_PERCENTILES = (10, 90)     # dB percentiles mapped to opening 0 and 1
BASELINE_JAW = 0.5              # jawOpen at full loudness (jawOpen 1 gapes: ~0.5 IOD)

# Closures and pauses.
OPEN_PERCENTILE = 90            # a curve's "open level": this percentile of its values
CLOSED_FRACTION = 0.15          # closed = below this fraction of the open level
CLOSURE_TOLERANCE = 1           # frames: a generated closure may be this early or late
SPEECH_PERCENTILE = 95          # the speech level: this percentile of the envelope, dB
PAUSE_DB = 30.0                 # dB below the speech level: silence
MIN_PAUSE_S = 0.3               # s, shorter silences (stop closures, breaths) are speech
PAUSE_EDGE_S = 0.08             # s trimmed at both ends of a pause: time to close and reopen
REST_FRACTION = 0.2             # at rest in a pause: mean opening below this x open level
FLOOR_PERCENTILE = 2            # a generated curve's most-closed level (robust to glitches)
MAX_LAG = 2                     # frames searched either way by best_lag_correlation


def track_openings(frames: Iterable[np.ndarray], tracker) -> np.ndarray:
    """Inner-lip opening of every frame, in inter-ocular distances.

    frames  : iterable of uint8[H x W x 3] RGB, consumed one at a time
    tracker : a ``FaceTracker`` (``static=False`` for a video: one tracker per video)
    returns : float32[T]. Frames without a face are filled by linear interpolation
              between their neighbours (held at the ends); ValueError if no frame has one.
    """
    values = []
    for rgb in frames:
        face = tracker.track(rgb)
        values.append(np.nan if face is None else lip_opening(face.landmarks))
    openings = np.asarray(values, np.float64)
    found = np.isfinite(openings)
    if not found.any():
        raise ValueError(f"no face found in any of the {len(openings)} frames: use a video "
                         f"where the face is visible and at least 80 px wide")
    t = np.arange(len(openings))
    return np.interp(t, t[found], openings[found]).astype(np.float32)


def speech_envelope(audio: np.ndarray) -> np.ndarray:
    """Speech-band loudness: float32[ceil(N / 160)] in dB (re full scale), ENVELOPE_RATE
    values per second, value ``j`` centred on ``j / ENVELOPE_RATE`` s, smoothed over
    ``SMOOTH_S``.

    audio : float32[N] at 16 kHz.
    """
    audio = np.asarray(audio, np.float64)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"audio has shape {audio.shape}: pass mono float32[N] at "
                         f"{SAMPLE_RATE} Hz (puppetry.audio.load_audio), N > 0")
    sos = signal.butter(BAND_ORDER, SPEECH_BAND, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    band = signal.sosfiltfilt(sos, audio) if audio.size > 64 else audio
    hop = SAMPLE_RATE // ENVELOPE_RATE                            # 160 samples
    win = np.hanning(round(ENERGY_WINDOW_S * SAMPLE_RATE))         # 400 samples
    n = -(-audio.size // hop)
    padded = np.pad(band, (len(win) // 2, len(win) // 2 + hop * n - audio.size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, len(win))[::hop][:n]  # (n, 400)
    power = (frames ** 2 * win).sum(1) / win.sum()
    db = 10 * np.log10(np.maximum(power, 10 ** (DB_FLOOR / 10)))
    k = max(1, round(SMOOTH_S * ENVELOPE_RATE)) | 1                # 9 values, odd: centred
    db = np.convolve(np.pad(db, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    return db.astype(np.float32)


def _at_frames(envelope: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Envelope values (ENVELOPE_RATE Hz) at video frame times ``i / fps``."""
    idx = np.floor(np.arange(n_frames) * ENVELOPE_RATE / fps + 0.5).astype(np.int64)
    return envelope[np.clip(idx, 0, len(envelope) - 1)]


def loudness_baseline(audio: np.ndarray, n_frames: int, fps: float = FPS) -> np.ndarray:
    """The loudness baseline's mouth opening: float32[n_frames], 0 (shut) .. 1 (open).

    Speech-band energy in dB (:func:`speech_envelope`) at each frame's time, mapped
    linearly so that its ``LOUD_PERCENTILES`` (10th, 90th) over the clip become 0 and 1,
    and clipped. Frames past the end of the audio hold its last value.
    """
    db = _at_frames(speech_envelope(audio), n_frames, fps)
    lo, hi = np.percentile(db, LOUD_PERCENTILES) if n_frames else (0.0, 1.0)
    return np.clip((db - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def baseline_expressions(audio: np.ndarray, n_frames: int, fps: float = FPS,
                         jaw: float = BASELINE_JAW) -> np.ndarray:
    """The loudness baseline as a predictor: expressions float32[n_frames x 52], 0..1,
    all zero but ``jawOpen = jaw * loudness_baseline(...)``."""
    out = np.zeros((n_frames, N_EXPRESSIONS), np.float32)
    out[:, INDEX["jawOpen"]] = jaw * loudness_baseline(audio, n_frames, fps)
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if ok.sum() > 2 and denom > 1e-12 else float("nan")


def best_lag_correlation(generated: np.ndarray, real: np.ndarray,
                         max_lag: int = MAX_LAG) -> tuple[float, int]:
    """Pearson r of two curves at the integer shift that maximises it.

    generated, real : float[T] (the same T), one value per video frame
    returns : (r, lag). ``lag > 0``: the generated curve is late, ``generated[t + lag]``
              lines up with ``real[t]``; ``lag < 0``: it is early. Lags run over
              ``-max_lag .. max_lag``; ties go to the smaller shift. r is NaN when a curve
              is constant (a frozen face) or too short; then lag is 0.
    """
    generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    if generated.shape != real.shape or generated.ndim != 1:
        raise ValueError(f"curves have shapes {generated.shape} and {real.shape}: pass two "
                         f"float[T] with the same T (one value per frame)")
    t = len(real)
    best = (float("nan"), 0)
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        if t - abs(lag) < 3:
            continue
        g = generated[lag:] if lag >= 0 else generated[:t + lag]
        r = _pearson(g, real[:t - lag] if lag >= 0 else real[-lag:])
        if np.isfinite(r) and not r <= best[0]:      # first finite r, or a strictly better one
            best = (r, lag)
    return best


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a boolean[T], stop exclusive."""
    edges = np.diff(np.r_[0, np.asarray(mask, np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def closed_mask(opening: np.ndarray, fraction: float = CLOSED_FRACTION) -> np.ndarray:
    """boolean[T]: frames whose opening is below ``fraction`` of the curve's open level
    (its ``OPEN_PERCENTILE``-th percentile)."""
    opening = np.asarray(opening, np.float64)
    return opening < fraction * np.percentile(opening, OPEN_PERCENTILE)


def find_closures(real: np.ndarray, speech: np.ndarray | None = None) -> list[tuple[int, int]]:
    """The real speaker's lip closures: frame ranges (start, stop), stop exclusive.

    A closure is a run of one or more frames below ``CLOSED_FRACTION`` of the open level
    (each such run holds a local minimum of the opening). With ``speech`` (boolean[T],
    False inside long pauses, :func:`speech_mask`), runs wholly inside a pause are left
    out: lips resting shut between phrases are the pause test's business, not the p, b
    and m measured here. A closure that starts or ends a phrase still counts.
    """
    runs = _runs(closed_mask(real))
    if speech is None:
        return runs
    speech = np.asarray(speech, bool)
    return [(a, b) for a, b in runs if speech[a:b].any()]


def closure_recall(real: np.ndarray, generated: np.ndarray, speech: np.ndarray | None = None,
                   tolerance: int = CLOSURE_TOLERANCE) -> float:
    """Share of the real speaker's closures (:func:`find_closures`) that the generated
    mouth reproduces: it is below ``CLOSED_FRACTION`` of *its own* open level on some
    frame within ``tolerance`` frames of the closure.

    real, generated : float[T] openings; speech : optional boolean[T] (False in pauses).
    returns : fraction 0..1, NaN when the real speaker never closes during speech.
    """
    real, generated = np.asarray(real), np.asarray(generated)
    if real.shape != generated.shape:
        raise ValueError(f"curves have shapes {real.shape} and {generated.shape}: pass two "
                         f"float[T] with the same T")
    closures = find_closures(real, speech)
    if not closures:
        return float("nan")
    shut = closed_mask(generated)
    hits = [shut[max(0, a - tolerance):b + tolerance].any() for a, b in closures]
    return float(np.mean(hits))


def find_pauses(audio: np.ndarray, n_frames: int, fps: float = FPS,
                min_pause_s: float = MIN_PAUSE_S) -> list[tuple[int, int]]:
    """Silences of at least ``min_pause_s`` as frame ranges (start, stop), stop exclusive.

    Silence: the speech-band envelope more than ``PAUSE_DB`` below the speech level (its
    ``SPEECH_PERCENTILE``-th percentile), found at the envelope's 10 ms resolution.
    A frame belongs to a pause when its time ``i / fps`` falls inside one.
    """
    env = speech_envelope(audio)
    silent = env < np.percentile(env, SPEECH_PERCENTILE) - PAUSE_DB
    pauses = []
    for a, b in _runs(silent):
        if (b - a) / ENVELOPE_RATE < min_pause_s:
            continue
        first = int(np.ceil(a / ENVELOPE_RATE * fps))                 # first frame at or after a
        stop = min(n_frames, int(np.ceil(b / ENVELOPE_RATE * fps)))   # frames before b
        if stop > first:
            pauses.append((first, stop))
    return pauses


def speech_mask(audio: np.ndarray, n_frames: int, fps: float = FPS,
                edge_s: float = PAUSE_EDGE_S) -> np.ndarray:
    """boolean[n_frames]: False inside the pauses of :func:`find_pauses`, True elsewhere.

    ``edge_s`` seconds at both ends of each pause count as speech: the lips need that
    long to close after the last syllable and to open for the next.
    """
    mask = np.ones(n_frames, bool)
    edge = round(edge_s * fps)
    for a, b in find_pauses(audio, n_frames, fps):
        mask[a + edge:max(a + edge, b - edge)] = False
    return mask


def pause_behaviour(audio: np.ndarray, generated: np.ndarray, fps: float = FPS,
                    rest: float = 0.0) -> dict:
    """How the generated mouth behaves in the pauses of ``audio``.

    audio : float32[N] at 16 kHz; generated : float[T] openings (IOD), frame i at i / fps
    rest  : the opening the face shows with no expression (IOD): a portrait photographed
            with parted lips shows them parted at rest. Openings are measured above the
            face's floor, the lower of ``rest`` and the curve's ``FLOOR_PERCENTILE``-th
            percentile (a face that can close its lips is measured from shut).
    returns dict:
      pauses      : [(start_s, stop_s)] pauses over ``MIN_PAUSE_S``
      floor       : the floor (IOD)
      open_level  : ``OPEN_PERCENTILE``-th percentile of the opening in speech, above the
                    floor (IOD)
      pause_mean  : mean opening in the pauses' interiors (``PAUSE_EDGE_S`` trimmed at
                    each end), IOD, not above the floor
      pause_level : that mean above the floor, as a fraction of ``open_level``
      chatter     : std of the opening in those interiors, fraction of ``open_level``
      rests_closed: ``pause_level < REST_FRACTION`` (None without pauses)
    """
    generated = np.asarray(generated, np.float64)
    pauses = find_pauses(audio, len(generated), fps)
    speech = np.ones(len(generated), bool)
    for a, b in pauses:
        speech[a:b] = False
    inside = ~speech_mask(audio, len(generated), fps)                # pause interiors
    floor = min(rest, float(np.percentile(generated, FLOOR_PERCENTILE)))
    above = generated - floor
    open_level = float(np.percentile(above[speech], OPEN_PERCENTILE)) if speech.any() else np.nan
    result = {"pauses": [(a / fps, b / fps) for a, b in pauses], "floor": floor,
              "open_level": open_level, "pause_mean": np.nan, "pause_level": np.nan,
              "chatter": np.nan, "rests_closed": None}
    if inside.any():
        result["pause_mean"] = float(generated[inside].mean())
        if open_level > 0:
            level = float(above[inside].mean() / open_level)
            result.update(pause_level=level, chatter=float(above[inside].std() / open_level),
                          rests_closed=bool(level < REST_FRACTION))
    return result


def syllable_following(audio: np.ndarray, generated: np.ndarray, fps: float = FPS,
                       max_lag: int = MAX_LAG) -> tuple[float, int]:
    """(r, lag) of the generated opening against the speech-band envelope (dB) at each
    frame: a weak check, for audio with no video, that the mouth opens on syllables."""
    env = _at_frames(speech_envelope(audio), len(generated), fps)
    return best_lag_correlation(np.asarray(generated, np.float64), env.astype(np.float64), max_lag)
