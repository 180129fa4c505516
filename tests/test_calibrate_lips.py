"""pipelines/calibrate_lips.py: the calibration's values (no model, no corpus: fast)."""
import numpy as np
import pytest


def test_fixed_values_come_from_the_corpus_targets(pipeline):
    cal = pipeline("calibrate_lips")
    assert cal.target_values() == dict(dead_zone=0.15, press_full=0.35, roll_full=0.5,
                                       pucker_from=0.35, pucker_full=0.75)
    assert "pucker_full" not in cal.target_values(rounding=False)


def test_open_gain_maps_the_99th_percentile_to_one(pipeline):
    cal = pipeline("calibrate_lips")
    jaw = np.linspace(0, 0.542 / 0.99, 10001)            # 99th percentile 0.542
    gain, p99 = cal.open_gain(jaw, 0.15)
    assert p99 == pytest.approx(0.542, abs=1e-3) and gain == 2.55   # the value before issue 10
    with pytest.raises(ValueError):
        cal.open_gain(np.full(10, 0.1), 0.15)            # an untrained model


def test_held_out_voices_are_fixed_a_tenth_and_never_piper(pipeline):
    train = pipeline("train_audio2expression")
    voices = [f"espeak:v{i}" for i in range(40)] + ["piper:joe"]
    held = train.held_out_voices(voices)
    assert held == train.held_out_voices(list(reversed(voices)))
    assert len(held) == 4 and "piper:joe" not in held


def test_next_gain_finds_the_gain_of_a_power_law_range(pipeline):
    cal = pipeline("calibrate_lips")
    for power in (0.5, 0.8, 1.0):
        target = 1.3                                     # the gain whose range ratio is 1
        ratio = lambda g: (g / target) ** power
        tried = [(3.0, ratio(3.0))]
        tried.append((cal.next_gain(tried), ratio(cal.next_gain(tried))))
        g = cal.next_gain(tried)                         # the secant step is exact on logs
        assert g == pytest.approx(target, rel=1e-6)


def test_next_gain_stays_within_its_limits(pipeline):
    cal = pipeline("calibrate_lips")
    assert cal.next_gain([(1.0, 1e-6)]) == cal.GAIN_LIMITS[1]      # a mouth that never opens
    assert cal.next_gain([(1.0, 1e6)]) == cal.GAIN_LIMITS[0]


def test_every_dev_video_is_in_exactly_one_fold(pipeline):
    cal = pipeline("calibrate_lips")
    import fnmatch
    names = ["grid_brbk7n.mp4", "grid_lbax4n.mp4", "obama_weekly_address_2010.mp4"]
    for name in names:
        assert sum(fnmatch.fnmatch(name, g) for g in cal.FOLDS.values()) == 1


def test_each_clip_is_judged_with_a_fold_that_never_saw_it(pipeline):
    ev = pipeline("evaluate_lipsync")
    from puppetry.expression.speech import CalibrationFold, LipCalibration
    grid = CalibrationFold("grid", ("grid_a", "grid_b"), LipCalibration(open_gain=1.0))
    obama = CalibrationFold("obama", ("obama_x",), LipCalibration(open_gain=2.0))
    assert ev.held_out_fold([grid, obama], "obama_x") is grid
    assert ev.held_out_fold([grid, obama], "grid_b") is obama
    assert ev.held_out_fold([grid, obama], "new_clip") is grid     # unseen by both: the first
    both = CalibrationFold("all", ("grid_a", "obama_x"), LipCalibration())
    assert ev.held_out_fold([both], "obama_x") is None              # no held-out calibration


def test_mouth_range_is_the_5th_to_95th_percentile_span(pipeline):
    ev = pipeline("evaluate_lipsync")
    x = np.linspace(0, 1, 1001)
    assert ev.mouth_range(x) == pytest.approx(0.9)
    assert ev.mouth_range(0.2 + 2 * x) == pytest.approx(1.8)                # offset-free, linear
    speech = np.ones(len(x), bool)
    m = ev.compare(0.1 + 0.5 * x, x, speech)
    assert m["range"] == pytest.approx(0.5) and m["r"] == pytest.approx(1.0)
