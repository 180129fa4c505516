import json
import warnings

import numpy as np
import pytest

from puppetry.drive import idle
from puppetry.drive.frames import Motion
from puppetry.drive.motion import (
    POSE_LIMITS, PRESETS, MotionError, load_motion, motion_to_json, parse_motion, preset,
    resolve_motion,
)
from puppetry.expression.arkit import ARKIT_NAMES, INDEX


def motion_text(*frames, fps=25) -> str:
    return json.dumps({"fps": fps, "frames": list(frames)})


def in_limits(m: Motion) -> bool:
    low, high = np.array([POSE_LIMITS[k] for k in ("yaw", "pitch", "roll")]).T
    return ((m.rotation >= low).all() and (m.rotation <= high).all()
            and m.expression.min() >= 0 and m.expression.max() <= 1
            and np.abs(m.gaze).max() <= 1)


def test_round_trip():
    m = preset("talk-idle", duration=2.0, fps=30, seed=3)
    m.translation[:] = np.linspace(-0.1, 0.2, len(m))[:, None]
    m.scale[:] = np.linspace(0.9, 1.1, len(m))
    back = parse_motion(json.dumps(motion_to_json(m)))
    assert len(back) == len(m) and back.fps == m.fps
    for field in ("expression", "rotation", "translation", "scale", "gaze"):
        np.testing.assert_allclose(getattr(back, field), getattr(m, field), atol=1e-5)


def test_load_motion_from_file(tmp_path):
    path = tmp_path / "walk.json"
    path.write_text(motion_text({"t": 0}, {"t": 1, "yaw": 10}))
    assert len(load_motion(path)) == 26
    assert len(resolve_motion(str(path))) == 26


def test_omitted_fields_hold_previous_values():
    m = parse_motion(motion_text(
        {"t": 0, "yaw": 10, "scale": 1.2, "gaze": [0.5, -0.5], "expression": {"jawOpen": 0.4}},
        {"t": 1, "pitch": 5, "expression": {"mouthSmileLeft": 0.6}},
        {"t": 2},
    ))
    np.testing.assert_allclose(m.rotation[:, 0], 10, atol=1e-6)  # yaw never changes
    np.testing.assert_allclose(m.scale, 1.2, atol=1e-6)
    np.testing.assert_allclose(m.gaze, [[0.5, -0.5]] * len(m), atol=1e-6)
    np.testing.assert_allclose(m.expression[:, INDEX["jawOpen"]], 0.4, atol=1e-6)
    smile = m.expression[:, INDEX["mouthSmileLeft"]]
    assert smile[0] == 0 and smile[25] == pytest.approx(0.6) and smile[50] == pytest.approx(0.6)
    assert m.rotation[50, 1] == pytest.approx(5)  # pitch held after its key


@pytest.mark.parametrize("times, fps, n_frames", [([0.0], 25, 1), ([0, 2.0], 25, 51),
                                                  ([0, 1.0], 30, 31), ([0.5, 1.01], 25, 26)])
def test_duration_rule(times, fps, n_frames):
    assert len(parse_motion(motion_text(*[{"t": t} for t in times], fps=fps))) == n_frames


def test_fps_default_and_unsorted_keys():
    m = parse_motion(json.dumps({"frames": [{"t": 1, "yaw": 20}, {"t": 0, "yaw": 0}]}))
    assert m.fps == 25 and len(m) == 26
    assert m.rotation[0, 0] == 0 and m.rotation[-1, 0] == pytest.approx(20)


def test_interpolation_is_smooth_and_monotone_without_overshoot():
    m = parse_motion(motion_text({"t": 0, "yaw": 0}, {"t": 1, "yaw": 30}, {"t": 1.4, "yaw": 31},
                                 {"t": 2, "yaw": 31}, {"t": 3, "yaw": 0}))
    yaw = m.rotation[:, 0]
    rise, held, fall = np.diff(yaw[:36]), yaw[35:51], np.diff(yaw[50:])
    assert (rise >= -1e-5).all() and (fall <= 1e-5).all()
    assert yaw.min() >= -1e-5 and yaw.max() <= 31 + 1e-5
    np.testing.assert_allclose(held, 31, atol=1e-5)
    assert abs(yaw[1] - yaw[0]) < 0.5  # eases out of the first key rather than jumping


def test_bad_json_names_line_and_column():
    match = r"walk\.json: invalid JSON at line 2, column \d+: Expecting ','"
    with pytest.raises(MotionError, match=match):
        parse_motion('{"fps": 25,\n "frames": [{"t": 0 "yaw": 1}]}', source="walk.json")


def test_unknown_expression_lists_valid_names():
    with pytest.raises(MotionError) as e:
        parse_motion(motion_text({"t": 0}, {"t": 1, "expression": {"jawOpn": 1}}),
                     source="walk.json")
    msg = str(e.value)
    assert msg.startswith("walk.json: frames[1]: ") and "jawOpen" in msg
    assert all(name in msg for name in ARKIT_NAMES)


@pytest.mark.parametrize("data, match", [
    ({"fps": 25, "frames": [{"t": 0}], "loop": True},
     r"unknown top-level key 'loop'; allowed keys: fps, frames"),
    ({"frames": [{"t": 0, "jaw": 1}]}, r"frames\[0\]: unknown key 'jaw'; allowed keys: t, yaw"),
    ({"frames": [{"t": -1}]}, r"frames\[0\]: 't' must be >= 0"),
    ({"frames": [{"t": 0}, {"t": "1s"}]}, r"frames\[1\]: 't' must be a finite number, got '1s'"),
    ({"frames": [{"yaw": 1}]}, r"frames\[0\]: missing 't'"),
    ({"frames": [{"t": 1}, {"t": 0}, {"t": 1}]}, r"frames\[0\] and frames\[2\] both have t=1"),
    ({"frames": [{"t": 0, "yaw": "left"}]}, r"frames\[0\]: 'yaw' must be a finite number"),
    ({"frames": [{"t": 0, "pitch": True}]}, r"'pitch' must be a finite number"),
    ({"frames": [{"t": 0, "gaze": 0.5}]}, r"'gaze' must be \[h, v\]"),
    ({"frames": [{"t": 0, "expression": [0.5]}]}, r"'expression' must be an object"),
    ({"frames": [{"t": 0, "expression": {"jawOpen": None}}]},
     r"expression 'jawOpen' must be a finite number"),
    ({"fps": 0, "frames": [{"t": 0}]}, r"'fps' must be in \(0, 120\]"),
    ({"fps": 240, "frames": [{"t": 0}]}, r"'fps' must be in \(0, 120\]"),
    ({"frames": []}, r"'frames' must be a non-empty list"),
    ([{"t": 0}], r"expected an object"),
])
def test_errors_name_the_file_and_the_fix(data, match):
    with pytest.raises(MotionError, match=r"^walk\.json: .*" + match):
        parse_motion(json.dumps(data), source="walk.json")


def test_motion_error_is_a_value_error():
    assert issubclass(MotionError, ValueError)


def test_out_of_range_values_are_clipped_with_one_warning_per_field():
    text = motion_text({"t": 0, "yaw": 60, "scale": 0.1, "expression": {"jawOpen": 1.5}},
                       {"t": 1, "yaw": -50, "gaze": [2, 0], "expression": {"jawOpen": 0.5}})
    with pytest.warns(UserWarning) as record:
        m = parse_motion(text, source="walk.json")
    messages = [str(w.message) for w in record]
    assert len(messages) == 4  # yaw (twice out of range, warned once), scale, gaze, jawOpen
    yaw = next(msg for msg in messages if "yaw" in msg)
    assert yaw.startswith("walk.json: yaw = 60") and "[-45, 45]" in yaw and "clipped" in yaw
    assert any("jawOpen = 1.5" in msg and "[0, 1]" in msg for msg in messages)
    assert m.rotation[0, 0] == 45 and m.rotation[-1, 0] == -45
    assert m.scale[0] == 0.5 and m.gaze[-1, 0] == 1 and m.expression[0, INDEX["jawOpen"]] == 1


def test_in_range_values_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_motion(motion_text({"t": 0, "yaw": 45, "scale": 2, "expression": {"jawOpen": 1}}))


@pytest.mark.parametrize("name", PRESETS)
def test_presets_build_with_length_and_range(name):
    m = preset(name, duration=4.0, fps=25)
    assert len(m) == 100 and m.fps == 25 and in_limits(m)
    assert len(preset(name, duration=2.0, fps=30)) == 60


def test_presets_do_what_they_say():
    nod, shake = preset("nod"), preset("shake")
    assert np.ptp(nod.rotation[:, 1]) > 18 and np.abs(nod.rotation[:, [0, 2]]).max() == 0
    assert np.ptp(shake.rotation[:, 0]) > 28 and np.abs(shake.rotation[:, 1:]).max() == 0
    smile = preset("smile").expression
    for name in ("mouthSmileLeft", "mouthSmileRight"):
        assert smile[:, INDEX[name]].max() == pytest.approx(0.8, abs=1e-3)
        assert smile[0, INDEX[name]] == 0 and smile[-1, INDEX[name]] == 0
    assert smile[:, INDEX["cheekSquintLeft"]].max() > 0
    assert smile[:, INDEX["eyeSquintRight"]].max() > 0
    blink = preset("blink").expression[:, INDEX["eyeBlinkLeft"]]
    closures = np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 2 <= closures <= 3 and blink.max() == pytest.approx(1)
    talk = preset("talk-idle", duration=8.0)
    jaw = talk.expression[:, INDEX["jawOpen"]]
    assert jaw.max() > 0.2 and np.ptp(talk.rotation[:, 0]) > 0.5
    assert talk.expression[:, INDEX["eyeBlinkLeft"]].max() > 0.5


def test_talk_idle_babbles_at_syllable_rate():
    jaw = preset("talk-idle", duration=60.0, seed=1).expression[:, INDEX["jawOpen"]]
    openings = np.sum((jaw[1:] > 0.1) & (jaw[:-1] <= 0.1)) / 60.0  # per second
    assert 1.5 < openings < 5.0  # ~4 Hz inside phrases, less with pauses


def test_preset_and_resolve_errors():
    with pytest.raises(MotionError, match="presets: nod, shake, smile, blink, talk-idle"):
        preset("wave")
    match = r"^'foo' is neither a motion preset \(nod, shake, .*\) nor an existing file"
    with pytest.raises(MotionError, match=match):
        resolve_motion("foo")
    assert len(resolve_motion("nod", duration=1.0)) == 25


GENERATORS = [
    lambda seed: idle.idle_head_motion(500, 25, seed=seed),
    lambda seed: idle.blink_curve(500, 25, seed=seed),
    lambda seed: idle.gaze_saccades(500, 25, seed=seed),
    lambda seed: idle.babble_mouth(500, 25, seed=seed),
]


@pytest.mark.parametrize("make", GENERATORS)
def test_generators_are_deterministic_per_seed(make):
    a, b, c = make(0), make(0), make(1)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generators_extend_without_changing_earlier_frames():
    for make in (idle.idle_head_motion, idle.blink_curve, idle.gaze_saccades, idle.babble_mouth):
        np.testing.assert_array_equal(make(100, 25, seed=4), make(300, 25, seed=4)[:100])


def test_idle_head_motion_statistics():
    head = idle.idle_head_motion(25 * 600, 25, seed=2)
    assert head.shape == (15000, 3)
    std = head.std(axis=0)
    assert 1.5 < std[0] < 3.5 and std[1] < std[0] and std[2] < std[0]
    assert np.abs(head.mean(axis=0)).max() < 1.0
    velocity = np.diff(head, axis=0)  # degrees per frame
    assert np.abs(velocity).max() < 1.0 and np.abs(np.diff(velocity, axis=0)).max() < 0.05  # smooth


@pytest.mark.parametrize("rate", [10.0, 15.0, 25.0])
def test_blink_rate_over_ten_minutes(rate):
    blink = idle.blink_curve(25 * 600, 25, seed=5, rate_per_min=rate)
    assert blink.min() >= 0 and blink.max() <= 1
    onsets = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 0.7 * rate < len(onsets) / 10 < 1.3 * rate
    assert np.diff(onsets).min() >= idle.BLINK_REFRACTORY_S * 25 - 1


def test_blink_shape_is_asymmetric():
    curve = idle.blinks_at([0.5], 100, 100.0)  # 100 fps to resolve the shape
    closed = np.flatnonzero(curve > 0.99)
    rising = np.flatnonzero((curve > 0.01) & (np.arange(100) < closed[0]))
    falling = np.flatnonzero((curve > 0.01) & (np.arange(100) > closed[-1]))
    assert len(falling) > 1.5 * len(rising)


def test_gaze_saccades_are_fixations_with_quick_jumps():
    gaze = idle.gaze_saccades(25 * 60, 25, seed=0, amount=0.3)
    assert np.abs(gaze).max() <= 0.3 + 1e-6 and np.ptp(gaze[:, 0]) > 0.1
    moving = np.any(np.abs(np.diff(gaze, axis=0)) > 1e-7, axis=1)
    assert moving.mean() < 0.2  # mostly still
    edges = np.flatnonzero(np.diff(np.concatenate([[0], moving.astype(int), [0]])))
    assert (edges[1::2] - edges[::2]).max() <= idle.SACCADE_FRAMES  # frames per jump


def test_still_settings_give_zeros():
    assert not idle.idle_head_motion(50, 25, seed=0, scale=0).any()
    assert not idle.gaze_saccades(50, 25, seed=0, amount=0).any()
    assert not idle.blink_curve(50, 25, seed=0, rate_per_min=0).any()
    m = idle.add_idle(Motion.still(50), seed=0, head_scale=0, blink_rate=0, gaze_amount=0)
    np.testing.assert_array_equal(m.rotation, 0)
    np.testing.assert_array_equal(m.expression, 0)


def test_add_idle_merges_blinks_and_adds_pose():
    base = preset("nod", duration=20.0)
    base.expression[:, INDEX["eyeBlinkLeft"]] = 0.3
    m = idle.add_idle(base, seed=0)
    assert len(m) == len(base) and m is not base
    assert (m.expression[:, INDEX["eyeBlinkLeft"]] >= 0.3).all()
    assert m.expression[:, INDEX["eyeBlinkRight"]].max() > 0.9
    diff = m.rotation - base.rotation
    np.testing.assert_allclose(diff, idle.idle_head_motion(len(base), 25, seed=0), atol=1e-5)
    assert base.expression[:, INDEX["eyeBlinkRight"]].max() == 0  # input untouched


def test_own_butterworth_matches_scipy():
    from scipy import signal

    from puppetry.drive.idle import butter_lowpass4, sosfilt
    x = np.random.default_rng(0).standard_normal((400, 3))
    ref = signal.sosfilt(signal.butter(4, 0.3, fs=25, output="sos"), x, axis=0)
    np.testing.assert_allclose(sosfilt(butter_lowpass4(0.3, 25), x), ref, atol=1e-9)
