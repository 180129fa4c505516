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
    assert p99 == pytest.approx(0.542, abs=1e-3) and gain == 2.55   # the shipped model's
    with pytest.raises(ValueError):
        cal.open_gain(np.full(10, 0.1), 0.15)            # an untrained model


def test_held_out_voices_are_fixed_a_tenth_and_never_piper(pipeline):
    train = pipeline("train_audio2expression")
    voices = [f"espeak:v{i}" for i in range(40)] + ["piper:joe"]
    held = train.held_out_voices(voices)
    assert held == train.held_out_voices(list(reversed(voices)))
    assert len(held) == 4 and "piper:joe" not in held
