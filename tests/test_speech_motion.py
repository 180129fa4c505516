"""Head motion, blinks and gaze from speech; combining them with a user's motion file.

The speech is synthetic and its structure known: phrases of syllables with pauses between
them, every third syllable stressed (louder), so the analysis can be checked against it.
"""
import json

import numpy as np
import pytest

from puppetry.audio import SAMPLE_RATE
from puppetry.drive import idle
from puppetry.drive import speech_motion as sm
from puppetry.drive.frames import Motion
from puppetry.drive.motion import parse_motion
from puppetry.expression.arkit import INDEX, N_EXPRESSIONS

FPS = 25


def synth_speech(duration: float, seed: int = 0):
    """Voiced syllables (120 Hz buzz) in 1.5-3 s phrases with 0.4-0.8 s pauses.

    Returns (audio float32[N], phrases [(start, end)] s, stressed syllable centres [s]).
    """
    rng = np.random.default_rng(seed)
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(120 + 15 * np.sin(2 * np.pi * 0.5 * t)) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 30))
    env = np.zeros(n)
    phrases, stresses, s = [], [], 0.3
    while s < duration - 0.5:
        end = min(s + rng.uniform(1.5, 3.0), duration - 0.3)
        phrases.append((s, end))
        k = 0
        while s < end:
            length = rng.uniform(0.15, 0.3)
            a, b = int(s * SAMPLE_RATE), min(int((s + length) * SAMPLE_RATE), n)
            stressed = k % 3 == 0
            env[a:b] = np.sin(np.pi * np.linspace(0, 1, b - a)) ** 2 * (1.0 if stressed else 0.35)
            if stressed:
                stresses.append(s + length / 2)
            s, k = s + length, k + 1
        s += rng.uniform(0.4, 0.8)
    audio = 0.3 * env * voice / np.abs(voice).max() + 0.001 * rng.standard_normal(n)
    return audio.astype(np.float32), phrases, np.array(stresses)


@pytest.fixture(scope="module")
def speech():
    return synth_speech(10.0, seed=0)


@pytest.fixture(scope="module")
def long_speech():
    return synth_speech(60.0, seed=1)


def test_analysis_finds_phrases_and_stresses(speech):
    audio, phrases, stresses = speech
    p = sm.analyse_speech(audio)
    assert len(p.phrases) == len(phrases)
    np.testing.assert_allclose(p.phrases, phrases, atol=0.2)
    # every stressed syllable found, nothing else (the unstressed ones are 9 dB quieter)
    assert len(p.stresses) == len(stresses)
    assert np.abs(p.stresses - stresses).max() < 0.06
    assert np.all(np.diff(p.stresses) >= sm.PEAK_GAP_S - 1e-9)


def test_head_motion_size_and_scale(speech):
    audio, _, _ = speech
    n = 10 * FPS
    for seed in range(5):
        rot = sm.speech_head_motion(audio, n, FPS, seed=seed)
        assert rot.shape == (n, 3) and rot.dtype == np.float32
        assert 2.0 <= rot[:, 0].std() <= 6.0          # yaw: a speaker addressing a room
        assert np.abs(rot[:, 2]).max() < 5.0           # tilts are small
    half = sm.speech_head_motion(audio, n, FPS, seed=0, scale=0.5)
    np.testing.assert_allclose(half, 0.5 * sm.speech_head_motion(audio, n, FPS, seed=0),
                               atol=1e-5)
    still = sm.speech_head_motion(audio, n, FPS, seed=0, scale=0)
    assert still.shape == (n, 3) and not still.any()


def test_head_motion_is_seeded(speech):
    audio, _, _ = speech
    a = sm.speech_head_motion(audio, 250, FPS, seed=3)
    np.testing.assert_array_equal(a, sm.speech_head_motion(audio, 250, FPS, seed=3))
    assert not np.allclose(a, sm.speech_head_motion(audio, 250, FPS, seed=4))


def test_nods_on_stressed_syllables(speech):
    audio, _, stresses = speech
    pitch = sm.speech_head_motion(audio, 10 * FPS, FPS, seed=0)[:, 1]
    t = np.arange(len(pitch)) / FPS
    at = lambda x: np.interp(x, t, pitch)
    # the chin dips at each stress relative to 0.2 s either side (nods are 1-3 degrees)
    dips = (at(stresses - 0.2) + at(stresses + 0.2)) / 2 - at(stresses)
    assert dips.mean() > 0.8 and np.median(dips) > 0.5


def test_sway_is_larger_in_pauses():
    # silence is one long pause: the idle sway at full size; speech damps it
    silence = np.zeros(10 * SAMPLE_RATE, np.float32)
    p = sm.analyse_speech(silence)
    assert len(p.phrases) == 0 and len(p.stresses) == 0
    mask = sm._pause_mask(sm.analyse_speech(synth_speech(10.0)[0]), np.arange(250) / FPS)
    assert mask.min() == 0 and mask.max() == 1


def test_blinks_rate_and_phrase_ends(long_speech):
    audio, _, _ = long_speech
    ends = sm.analyse_speech(audio).phrases[:, 1]
    n = 60 * FPS
    near, near_idle = [], []
    for seed in range(5):
        curve = sm.speech_blinks(audio, n, FPS, seed=seed)
        assert curve.shape == (n,) and curve.dtype == np.float32
        assert 0 <= curve.min() and curve.max() <= 1
        onsets = np.flatnonzero(np.diff((curve > 0.5).astype(int)) == 1)
        assert 10 <= len(onsets) <= 20                       # per minute
        snapped = sm._blink_onsets(sm.analyse_speech(audio), 60.0, seed, 15.0)
        plain = idle.blink_onsets(60.0, seed=seed)
        assert len(snapped) == len(plain)                    # moved, never dropped
        assert np.all(np.diff(snapped) >= idle.BLINK_REFRACTORY_S - 1e-9)
        near += [np.abs(ends - o).min() < 0.3 for o in snapped]
        near_idle += [np.abs(ends - o).min() < 0.3 for o in plain]
    assert np.mean(near) > 0.4 and np.mean(near) > 2 * np.mean(near_idle)
    assert not sm.speech_blinks(audio, n, FPS, seed=0, rate_per_min=0).any()


def test_blinks_in_silence_are_idle_blinks():
    silence = np.zeros(8 * SAMPLE_RATE, np.float32)
    np.testing.assert_array_equal(sm.speech_blinks(silence, 200, FPS, seed=2),
                                  idle.blink_curve(200, FPS, seed=2))


def _mouth(n: int) -> np.ndarray:
    e = np.zeros((n, N_EXPRESSIONS), np.float32)
    e[:, INDEX["jawOpen"]] = 0.4 * (1 + np.sin(np.arange(n) / 3)) / 2
    return e


def test_speech_motion(speech):
    audio, _, _ = speech
    mouth = _mouth(250)
    m = sm.speech_motion(audio, mouth, FPS, seed=1)
    assert isinstance(m, Motion) and len(m) == 250 and m.fps == FPS
    np.testing.assert_array_equal(m.expression[:, INDEX["jawOpen"]], mouth[:, INDEX["jawOpen"]])
    blink = m.expression[:, INDEX["eyeBlinkLeft"]]
    np.testing.assert_array_equal(blink, m.expression[:, INDEX["eyeBlinkRight"]])
    assert blink.max() > 0.9
    assert m.rotation[:, 0].std() > 1 and np.abs(m.gaze).max() > 0
    assert not m.translation.any() and np.all(m.scale == 1)

    still = sm.speech_motion(audio, mouth, FPS, seed=1, still=True)
    assert not still.rotation.any() and not still.gaze.any()
    np.testing.assert_array_equal(still.expression, m.expression)    # blinks stay
    assert not sm.speech_motion(audio, mouth, FPS, seed=1, gaze=False).gaze.any()
    assert not sm.speech_motion(audio, mouth, FPS, seed=1, motion_scale=0).rotation.any()
    quiet = sm.speech_motion(audio, mouth, FPS, seed=1, blink_rate=0)
    assert not quiet.expression[:, INDEX["eyeBlinkLeft"]].any()
    with pytest.raises(ValueError, match="T x 52"):
        sm.speech_motion(audio, mouth[:, :19], FPS)


def test_combine_add_and_replace(speech):
    audio, _, _ = speech
    base = sm.speech_motion(audio, _mouth(100), FPS, seed=0)
    # the user's file: 2 s at 10 fps, a turn to 20 degrees, zoom 1.2; shorter than base
    user = parse_motion(json.dumps({"fps": 10, "frames": [
        {"t": 0, "yaw": 0, "scale": 1.2}, {"t": 2, "yaw": 20}]}))
    added = sm.combine_motion(base, user, "add")
    assert len(added) == len(base) and added.fps == base.fps
    user_yaw = sm.resample_motion(user, len(base), base.fps).rotation[:, 0]
    assert user_yaw[-1] == pytest.approx(20) and user_yaw[60] == pytest.approx(20)  # held
    np.testing.assert_allclose(added.rotation[:, 0], base.rotation[:, 0] + user_yaw, atol=1e-4)
    np.testing.assert_allclose(added.rotation[:, 1:], base.rotation[:, 1:], atol=1e-5)
    np.testing.assert_allclose(added.scale, 1.2 * base.scale, atol=1e-5)
    replaced = sm.combine_motion(base, user, "replace")
    np.testing.assert_allclose(replaced.rotation[:, 0], user_yaw, atol=1e-4)
    assert not replaced.rotation[:, 1:].any()
    # nothing of the user's expressions or gaze is set: the generated ones show through
    np.testing.assert_array_equal(added.expression, base.expression)
    np.testing.assert_array_equal(added.gaze, base.gaze)
    with pytest.raises(ValueError, match="add, replace"):
        sm.combine_motion(base, user, "mix")


def test_combine_user_expressions_take_over_smoothly(speech):
    audio, _, _ = speech
    base = sm.speech_motion(audio, _mouth(100), FPS, seed=0, blink_rate=0)
    # a smile from 1 s to 3 s, and the jaw keyed open from 1.8 s to 3.4 s
    user = parse_motion(json.dumps({"fps": 25, "frames": [
        {"t": 0}, {"t": 1, "expression": {"mouthSmileLeft": 0}},
        {"t": 2, "expression": {"mouthSmileLeft": 0.8}},
        {"t": 3, "expression": {"mouthSmileLeft": 0}},
        {"t": 1.8, "expression": {"jawOpen": 0}}, {"t": 2.4, "expression": {"jawOpen": 0.9}},
        {"t": 2.8, "expression": {"jawOpen": 0.9}}, {"t": 3.4, "expression": {"jawOpen": 0}},
        {"t": 3.96}]}))
    out = sm.combine_motion(base, user)
    jaw = INDEX["jawOpen"]
    assert out.expression[50, INDEX["mouthSmileLeft"]] == pytest.approx(0.8, abs=1e-4)
    np.testing.assert_allclose(out.expression[60:71, jaw], 0.9, atol=1e-4)  # the user's jaw
    np.testing.assert_array_equal(out.expression[:40, jaw], base.expression[:40, jaw])
    np.testing.assert_array_equal(out.expression[92:, jaw], base.expression[92:, jaw])
    # hand-overs fade: no weight jumps (the base jaw moves up to 0.07 a frame by itself)
    assert np.abs(np.diff(out.expression[:, jaw])).max() < 0.15
    hard = np.where(user.expression[:100, jaw] > 0, user.expression[:100, jaw],
                    base.expression[:, jaw])
    assert np.abs(np.diff(hard)).max() > 0.15    # what the fade avoids
