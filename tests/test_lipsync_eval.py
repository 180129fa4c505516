"""The lip-sync measurements on curves and signals whose answers are known by construction."""
from types import SimpleNamespace

import numpy as np
import pytest

from puppetry.audio import SAMPLE_RATE
from puppetry.eval import lipsync
from puppetry.face import mesh as M

FPS = 25
T = 200                      # frames in the synthetic curves (8 s)


def _smooth_noise(n, seed=0, width=5):
    """float[n]: random, smoothed over ``width`` frames, so neighbours correlate."""
    x = np.random.default_rng(seed).normal(size=n + width)
    return np.convolve(x, np.ones(width) / width, mode="valid")[:n]


def _syllables(n=T, period=8, closed=3):
    """An opening curve: ``closed`` frames shut (0), then open (a sine bump), repeating."""
    t = np.arange(n) % period
    bump = np.sin(np.pi * (t - closed + 1) / (period - closed + 1))
    return np.where(t < closed, 0.0, 0.3 * bump)


# ---- best_lag_correlation ----------------------------------------------------------------

@pytest.mark.parametrize("shift", [-2, -1, 0, 1, 2])
def test_best_lag_finds_a_known_shift(shift):
    real = _smooth_noise(T + 4)
    generated = np.roll(real, shift)[2:-2]       # generated[t + shift] == real[t]: late by shift
    r, lag = lipsync.best_lag_correlation(generated, real[2:-2])
    assert lag == shift
    assert r > 0.99


def test_best_lag_stays_within_max_lag():
    real = _smooth_noise(T + 10)
    r, lag = lipsync.best_lag_correlation(np.roll(real, 5)[5:-5], real[5:-5], max_lag=2)
    assert abs(lag) <= 2 and r < 0.99


def test_best_lag_of_a_frozen_face_is_undefined():
    r, lag = lipsync.best_lag_correlation(np.full(T, 0.1), _smooth_noise(T))
    assert np.isnan(r) and lag == 0


def test_best_lag_refuses_curves_of_different_lengths():
    with pytest.raises(ValueError, match="same T"):
        lipsync.best_lag_correlation(np.zeros(10), np.zeros(11))


# ---- closures ----------------------------------------------------------------------------

def test_closure_recall_all_and_none():
    real = _syllables()
    assert len(lipsync.find_closures(real)) == T // 8
    assert lipsync.closure_recall(real, real) == 1.0
    # one frame late is still within tolerance
    assert lipsync.closure_recall(real, np.roll(real, 1)) == 1.0
    # a mouth that opens and shuts a little but never closes reproduces none
    assert lipsync.closure_recall(real, 0.2 + 0.5 * real) == 0.0


def test_closure_recall_counts_each_closure_once():
    real = _syllables()
    generated = real.copy()
    closures = lipsync.find_closures(real)
    for a, b in closures[::2]:                    # every other closure kept open
        generated[max(0, a - 1):b + 1] = 0.3
    assert lipsync.closure_recall(real, generated) == pytest.approx(0.5, abs=0.03)


def test_closures_wholly_inside_pauses_are_left_out():
    real = _syllables()
    speech = np.ones(T, bool)
    speech[40:80] = False                         # a pause interior
    inside = [c for c in lipsync.find_closures(real) if c[0] >= 40 and c[1] <= 80]
    kept = lipsync.find_closures(real, speech)
    assert inside and not set(inside) & set(kept)
    assert len(kept) == len(lipsync.find_closures(real)) - len(inside)


def test_closure_recall_without_closures_is_undefined():
    assert np.isnan(lipsync.closure_recall(np.full(T, 0.3), np.full(T, 0.3)))


# ---- audio: loudness and pauses ----------------------------------------------------------

def _tone_bursts(on_s=0.2, off_s=0.3, n=8, hz=1000.0):
    """float32 audio: ``n`` bursts of a tone, ``on_s`` long, ``off_s`` apart, starting
    with a gap; and the burst centres in seconds."""
    period = on_s + off_s
    t = np.arange(round(n * period * SAMPLE_RATE)) / SAMPLE_RATE
    on = (t % period) >= off_s
    audio = (0.3 * np.sin(2 * np.pi * hz * t) * on).astype(np.float32)
    return audio, off_s + on_s / 2 + period * np.arange(n)


def test_loudness_baseline_is_high_in_bursts_and_low_in_gaps():
    audio, centres = _tone_bursts()
    n = round(len(audio) / SAMPLE_RATE * FPS)
    opening = lipsync.loudness_baseline(audio, n, FPS)
    assert opening.shape == (n,) and opening.dtype == np.float32
    assert 0 <= opening.min() and opening.max() <= 1
    frame = lambda s: np.round(np.asarray(s) * FPS).astype(int)  # noqa: E731
    gaps = centres - 0.25                                      # middle of each 300 ms gap
    assert opening[frame(centres)].min() > 0.8
    assert opening[frame(gaps)].max() < 0.2


def test_loudness_baseline_ignores_rumble_below_the_speech_band():
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    hum = 0.3 * np.sin(2 * np.pi * 50 * t)
    speech_band = 0.3 * np.sin(2 * np.pi * 1000 * t)
    db = lambda x: lipsync.speech_envelope(x.astype(np.float32)).mean()  # noqa: E731
    assert db(speech_band) - db(hum) > 40


def _speech_with_pause(pause=(1.0, 1.5), seconds=3.0, seed=0):
    """Noise 'syllables' (100 ms on, 100 ms off, the first at 0.1 s) and one silence
    ``pause`` (s), which should start and stop on a syllable boundary."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = (t % 0.2) >= 0.1
    voiced &= ~((t >= pause[0]) & (t < pause[1]))
    return (0.2 * rng.normal(size=t.size) * voiced).astype(np.float32)


def test_find_pauses_finds_a_500_ms_silence_and_only_it():
    audio = _speech_with_pause()
    n = 3 * FPS
    pauses = lipsync.find_pauses(audio, n, FPS)
    assert len(pauses) == 1                               # the 100 ms gaps are speech
    start, stop = pauses[0]
    assert abs(start - 1.0 * FPS) <= 1 and abs(stop - 1.5 * FPS) <= 1
    speech = lipsync.speech_mask(audio, n, FPS)
    assert not speech[round(1.25 * FPS)] and speech[round(0.5 * FPS)]


def test_pause_behaviour_tells_resting_from_frozen_open():
    audio = _speech_with_pause()
    n = 3 * FPS
    t = np.arange(n) / FPS
    talking = 0.15 + 0.15 * np.sin(2 * np.pi * 2.5 * t) ** 2   # 5 syllables/s
    in_pause = (t >= 1.0) & (t < 1.5)
    rests = lipsync.pause_behaviour(audio, np.where(in_pause, 0.0, talking), FPS)
    assert rests["rests_closed"] and rests["pause_level"] < 0.05 and rests["chatter"] < 0.05
    frozen = lipsync.pause_behaviour(audio, np.where(in_pause, 0.25, talking), FPS)
    assert not frozen["rests_closed"]
    chatter = lipsync.pause_behaviour(audio, talking, FPS)
    assert chatter["chatter"] > 0.1
    # a face photographed with parted lips: its rest opening is subtracted
    parted = lipsync.pause_behaviour(audio, 0.1 + np.where(in_pause, 0.0, talking), FPS, rest=0.1)
    assert parted["rests_closed"]
    # ... unless it closes them below that rest: then it is measured from shut
    shut = lipsync.pause_behaviour(audio, np.where(in_pause, 0.0, 0.1 + talking), FPS, rest=0.1)
    assert shut["floor"] == pytest.approx(0.0) and shut["rests_closed"]


def test_syllable_following():
    audio, _ = _tone_bursts()
    n = round(len(audio) / SAMPLE_RATE * FPS)
    follows = lipsync.loudness_baseline(audio, n, FPS)
    assert lipsync.syllable_following(audio, follows, FPS)[0] > 0.9
    deaf = _smooth_noise(n, seed=3)
    assert abs(lipsync.syllable_following(audio, deaf, FPS)[0]) < 0.4


def test_baseline_expressions_drive_only_the_jaw():
    audio, _ = _tone_bursts()
    e = lipsync.baseline_expressions(audio, 50, FPS)
    jaw = lipsync.INDEX["jawOpen"]
    assert e.shape == (50, 52) and np.all(np.delete(e, jaw, axis=1) == 0)
    assert e[:, jaw].max() == pytest.approx(lipsync.BASELINE_JAW)


# ---- tracking ----------------------------------------------------------------------------

class _StubTracker:
    """Returns a face whose lips are ``gap`` IOD apart, or None where ``gap`` is NaN."""

    def track(self, gap):
        if np.isnan(gap):
            return None
        lm = np.zeros((478, 3), np.float32)
        lm[[33, 133], 0] = 0.0                     # right eye corners: centre x = 0
        lm[[263, 362], 0] = 100.0                  # left eye corners: centre x = 100 (IOD)
        lm[M.LIP_UPPER_MID, 1], lm[M.LIP_LOWER_MID, 1] = 200.0, 200.0 + 100.0 * gap
        return SimpleNamespace(landmarks=lm)


def test_track_openings_interpolates_frames_without_a_face():
    openings = lipsync.track_openings([0.1, np.nan, np.nan, 0.4, np.nan], _StubTracker())
    assert openings.dtype == np.float32
    np.testing.assert_allclose(openings, [0.1, 0.2, 0.3, 0.4, 0.4], atol=1e-6)


def test_track_openings_without_any_face_says_so():
    with pytest.raises(ValueError, match="no face found"):
        lipsync.track_openings([np.nan, np.nan], _StubTracker())
