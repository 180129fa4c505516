"""The lip calibration applied to the speech model's curves (LipCalibration)."""
import numpy as np
import torch

from puppetry.expression.arkit import INDEX, N_EXPRESSIONS
from puppetry.expression.model import Audio2Expression, ModelDims
from puppetry.expression.speech import LipCalibration, SpeechToExpression, calibrate_lips

CAL = LipCalibration(dead_zone=0.15, open_gain=2.55, press_full=0.35, roll_full=0.5)
JAW, CLOSE, PRESS, ROLL = (INDEX[n] for n in ("jawOpen", "mouthClose", "mouthPressLeft",
                                               "mouthRollLower"))


def test_zero_stays_zero_and_default_is_identity():
    zero = np.zeros((5, N_EXPRESSIONS), np.float32)
    assert not calibrate_lips(zero, CAL).any()
    x = np.random.default_rng(0).uniform(0, 1, (20, N_EXPRESSIONS)).astype(np.float32)
    x[:, CLOSE] = np.minimum(x[:, CLOSE], x[:, JAW])
    np.testing.assert_allclose(calibrate_lips(x, LipCalibration()), x)


def test_jaw_map_is_monotonic_closes_small_and_opens_large():
    x = np.zeros((101, N_EXPRESSIONS), np.float32)
    x[:, JAW] = np.linspace(0, 1, 101)
    jaw = calibrate_lips(x, CAL)[:, JAW]
    assert (np.diff(jaw) >= 0).all() and jaw.min() >= 0 and jaw.max() <= 1
    assert (jaw[x[:, JAW] <= CAL.dead_zone] == 0).all()          # lips in contact
    assert jaw[40] > 0.4                                          # a vowel opens wider


def test_press_and_tucked_lip_pull_the_jaw_and_mouth_close_stays_under_it():
    x = np.zeros((3, N_EXPRESSIONS), np.float32)
    x[:, JAW], x[:, CLOSE] = 0.4, 0.3
    x[0, INDEX["mouthPressLeft"]] = CAL.press_full                # a full press: shut
    x[1, ROLL] = CAL.roll_full / 2                                 # half-tucked lower lip
    y = calibrate_lips(x, CAL)
    assert y[0, JAW] == 0 and y[0, CLOSE] == 0
    assert 0 < y[1, JAW] < y[2, JAW]
    assert (y[:, CLOSE] <= y[:, JAW]).all()


def test_silence_stays_closed_with_calibration():
    model = Audio2Expression(ModelDims())                          # tiny, untrained, log-mel
    s2e = SpeechToExpression(model, CAL)
    rng = np.random.default_rng(0)
    audio = np.zeros(16000 * 2, np.float32)
    audio[8000:24000] = 0.1 * rng.standard_normal(16000)           # 0.5-1.5 s: "speech"
    out = s2e(audio)
    assert out.shape == (50, N_EXPRESSIONS)
    assert not out[:8].any() and not out[-8:].any()               # pauses: all zero


def test_shipped_model_carries_its_calibration():
    s2e = SpeechToExpression.load()
    assert s2e.calibration is None or isinstance(s2e.calibration, LipCalibration)


PUCKER = INDEX["mouthPucker"]
ROUND = LipCalibration(dead_zone=0.15, open_gain=2.55, press_full=0.35, roll_full=0.5,
                       pucker_from=0.35, pucker_full=0.75)


def test_rounding_pulls_the_lips_shut_above_its_threshold_only():
    x = np.zeros((4, N_EXPRESSIONS), np.float32)
    x[:, JAW], x[:, INDEX["mouthFunnel"]] = 0.5, 0.3
    x[:, PUCKER] = [0.2, 0.35, 0.55, 0.8]              # er-like, uh, between, w
    y, plain = calibrate_lips(x, ROUND), calibrate_lips(x, CAL)
    np.testing.assert_allclose(y[:2], plain[:2])       # mild rounding: left to the jaw
    assert 0 < y[2, JAW] < plain[2, JAW]               # partly pulled
    assert y[3, JAW] == 0 and y[3, INDEX["mouthFunnel"]] == 0   # w: lips (nearly) shut
    np.testing.assert_allclose(y[:, PUCKER], x[:, PUCKER])       # the rounding itself stays


def test_calibration_without_rounding_ignores_pucker():
    """Checkpoints calibrated before the rounding pull existed load and act as before."""
    old = {"dead_zone": 0.15, "open_gain": 2.55, "press_full": 0.35, "roll_full": 0.5}
    cal = LipCalibration(**old)
    assert cal.pucker_full == 0
    x = np.zeros((2, N_EXPRESSIONS), np.float32)
    x[:, JAW] = 0.4
    x[1, PUCKER] = 1.0
    y = calibrate_lips(x, cal)
    assert y[0, JAW] == y[1, JAW] > 0


def test_with_calibration_shares_the_model_and_changes_only_the_map():
    torch.manual_seed(0)   # an untrained model: unseeded, its output may sit in the dead zone
    model = Audio2Expression(ModelDims())
    s2e = SpeechToExpression(model, None)
    audio = 0.1 * np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    before = s2e(audio)
    other = s2e.with_calibration(CAL)
    assert other.model is model and s2e.calibration is None and other.calibration == CAL
    np.testing.assert_array_equal(other(audio), SpeechToExpression(model, CAL)(audio))
    np.testing.assert_array_equal(s2e(audio), before)                 # the original is untouched
    assert not np.array_equal(other(audio), before)


def test_calibration_folds_round_trip_through_a_checkpoint(tmp_path):
    from puppetry.expression.speech import load_calibration, load_calibration_folds
    model = Audio2Expression(ModelDims())
    path = tmp_path / "a2e.pt"
    model.save(path)
    assert load_calibration_folds(path) == [] and load_calibration(path) is None
    folds = {"grid": {"tuned_on": ["grid_a", "grid_b"], "lip_calibration": vars(CAL)},
             "obama": {"tuned_on": ["obama_x"],
                       "lip_calibration": {**vars(CAL), "open_gain": 1.5}}}
    model.save(path, lip_calibration=vars(CAL), lip_calibration_folds=folds)
    loaded = load_calibration_folds(path)
    assert [f.name for f in loaded] == ["grid", "obama"]
    assert loaded[0].tuned_on == ("grid_a", "grid_b") and loaded[0].calibration == CAL
    assert loaded[1].calibration.open_gain == 1.5
