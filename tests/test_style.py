"""Fitting tracked faces (pose + expressions) and a person's speaking style.

The fit is checked on landmarks made from the model itself (known pose and weights), the
style on a short video rendered from the bundled portrait with a known jaw movement, then
tracked like any video of a person.
"""
import json

import numpy as np
import pytest

from puppetry.drive.frames import Motion
from puppetry.expression.arkit import INDEX, N_EXPRESSIONS, to_vector
from puppetry.expression.model import SPEECH_NAMES
from puppetry.expression.style import (Style, StyleError, fit_style, reference_curves,
                                       reference_statistics, track_video)
from puppetry.face.fitting import HEAD_TO_IMAGE, ExpressionFitter, Identity, fit_expressions
from puppetry.face.mesh import face_model
from puppetry.face.pose import rotation_matrix

FPS = 25
POSE = (12.0, -6.0, 4.0)    # yaw, pitch, roll of the synthetic face, degrees


@pytest.fixture(scope="module")
def identity():
    return Identity.from_shape(face_model().canonical)


def posed_landmarks(identity, weights, pose=POSE, iod_px=80.0):
    """Landmarks float[468 x 3] pixels of ``identity`` with ``weights`` at ``pose``."""
    head = identity.shape + np.einsum("k,kvc->vc", weights, identity.basis)
    rot = rotation_matrix(*pose) @ HEAD_TO_IMAGE
    return iod_px * head @ rot.T + np.array([256.0, 240.0, 10.0])


@pytest.mark.parametrize("names", [None, SPEECH_NAMES])
def test_fit_recovers_pose_and_weights(identity, names):
    truth = to_vector({"jawOpen": 0.6, "mouthPucker": 0.3})
    pose, weights = fit_expressions(posed_landmarks(identity, truth), identity, names=names)
    np.testing.assert_allclose(pose, POSE, atol=0.2)
    assert weights.shape == (N_EXPRESSIONS,) and weights.dtype == np.float32
    assert weights.min() >= 0 and weights.max() <= 1
    assert weights[INDEX["jawOpen"]] == pytest.approx(0.6, abs=0.1)
    assert weights[INDEX["mouthPucker"]] == pytest.approx(0.3, abs=0.1)
    others = np.delete(weights, [INDEX["jawOpen"], INDEX["mouthPucker"]])
    assert others.max() < 0.1
    if names is not None:   # names left out stay 0
        assert not np.delete(weights, [INDEX[n] for n in SPEECH_NAMES]).any()


def test_fit_neutral_and_noisy(identity):
    fitter = ExpressionFitter(identity, SPEECH_NAMES)
    pose, weights = fitter(posed_landmarks(identity, np.zeros(N_EXPRESSIONS), pose=(-20, 8, -5)))
    np.testing.assert_allclose(pose, (-20, 8, -5), atol=0.2)
    assert weights.max() < 0.02
    truth = to_vector({"jawOpen": 0.4, "mouthSmileLeft": 0.5, "mouthSmileRight": 0.5})
    lm = posed_landmarks(identity, truth) + np.random.default_rng(0).normal(0, 0.4, (468, 3))
    pose, weights = fitter(lm)                      # 0.4 px noise at 80 px between the eyes
    np.testing.assert_allclose(pose, POSE, atol=1.0)
    for name in ("jawOpen", "mouthSmileLeft", "mouthSmileRight"):
        assert weights[INDEX[name]] == pytest.approx(truth[INDEX[name]], abs=0.1)
    with pytest.raises(ValueError, match="478 x 3"):
        fitter(lm[:, :2])


# ---------------------------------------------------------------------------------------
# Style

DURATION_S = 2.0


def jaw_curve(n):
    t = np.arange(n) / FPS
    return 0.6 * (0.5 - 0.5 * np.cos(2 * np.pi * 1.5 * t))    # 0 .. 0.6, three openings


@pytest.fixture(scope="module")
def person_video(tmp_path_factory):
    """2 s of the bundled portrait opening and closing the jaw, with a buzz as speech."""
    from puppetry import WarpRenderer, load_portrait
    from puppetry.io import write_video

    n = int(DURATION_S * FPS)
    motion = Motion.still(n, FPS)
    motion.expression[:, INDEX["jawOpen"]] = jaw_curve(n)
    renderer = WarpRenderer(load_portrait("astronaut", size=320))
    t = np.arange(int(DURATION_S * 16000)) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 150 * t) * np.repeat(jaw_curve(n), 640)).astype(np.float32)
    path = tmp_path_factory.mktemp("style") / "person.mp4"
    return write_video(path, renderer.render(motion), FPS, audio=(audio, 16000))


@pytest.fixture(scope="module")
def tracked(person_video):
    return track_video(person_video)


def test_tracking_recovers_the_jaw(tracked):
    n = int(DURATION_S * FPS)
    assert tracked.frames == n and tracked.tracked.all() and tracked.fps == FPS
    jaw = tracked.expressions[:, INDEX["jawOpen"]]
    assert np.corrcoef(jaw, jaw_curve(n))[0, 1] > 0.95
    stds = np.nanstd(tracked.expressions, axis=0)
    assert np.argmax(stds) == INDEX["jawOpen"]          # the jaw, not lip shapes, moves
    assert np.ptp(tracked.rotation, axis=0).max() < 5   # the head stays put


class HalfJaw:
    """A stand-in speech model: the shared space opens the jaw half as far as the video."""

    def __call__(self, audio, n_frames, fps):
        out = np.zeros((n_frames, N_EXPRESSIONS), np.float32)
        out[:, INDEX["jawOpen"]] = 0.5 * jaw_curve(n_frames)
        return out


def test_style_from_statistics_is_jaw_dominant(person_video, tracked, tmp_path):
    style = fit_style(person_video, tracked=tracked)
    assert style.method == "statistics" and style.names == SPEECH_NAMES
    assert style.source == "person.mp4" and style.frames == 50 and style.fps == FPS
    scale = np.diag(style.matrix)
    assert np.argmax(scale) == SPEECH_NAMES.index("jawOpen")
    # on the shared space's reference speech, the person's output moves the jaw most
    out = style.apply(reference_curves(FPS))
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == np.float32
    spread = out[:, style.columns].std(0)
    jaw = spread[SPEECH_NAMES.index("jawOpen")]
    assert jaw > 1.3 * np.delete(spread, SPEECH_NAMES.index("jawOpen")).max()
    assert np.all(out[:, INDEX["mouthClose"]] <= out[:, INDEX["jawOpen"]])
    np.testing.assert_array_equal(out[:, INDEX["eyeBlinkLeft"]], 0)   # others pass through


def test_style_with_a_speech_model(person_video, tracked):
    style = fit_style(person_video, shared=HalfJaw(), tracked=tracked)
    assert style.method == "ridge"
    j = SPEECH_NAMES.index("jawOpen")
    # the person opens the jaw twice as wide as the shared space: the tracked slope / 0.5
    n = tracked.frames
    slope = np.polyfit(jaw_curve(n), tracked.expressions[:, INDEX["jawOpen"]], 1)[0]
    assert style.matrix[j, j] == pytest.approx(slope / 0.5, rel=0.15)
    mapped = style.apply(HalfJaw()(None, n, FPS))
    err = mapped[:, INDEX["jawOpen"]] - tracked.expressions[:, INDEX["jawOpen"]]
    assert np.sqrt(np.mean(err ** 2)) < 0.05


class NoisyHalfJaw(HalfJaw):
    """A speech model that follows the jaw only in part (r ~0.7 with it), as real ones do."""

    def __call__(self, audio, n_frames, fps):
        out = super().__call__(audio, n_frames, fps)
        noise = np.random.default_rng(0).normal(0, out[:, INDEX["jawOpen"]].std(), n_frames)
        out[:, INDEX["jawOpen"]] += noise.astype(np.float32)
        return out


def test_a_style_from_speech_keeps_the_persons_spread(person_video, tracked):
    """Least squares alone shrinks the mapped jaw by its correlation with the person's
    (a dubbed mouth then hardly moves); fit_style gives it the person's own spread."""
    style = fit_style(person_video, shared=NoisyHalfJaw(), tracked=tracked)
    mapped = style.apply(NoisyHalfJaw()(None, tracked.frames, FPS))[:, INDEX["jawOpen"]]
    jaw = tracked.expressions[:, INDEX["jawOpen"]]
    assert mapped.std() == pytest.approx(jaw.std(), rel=0.15)
    assert mapped.mean() == pytest.approx(jaw.mean(), abs=0.03)


def test_fit_style_tracks_the_video_itself(person_video):
    style = fit_style(person_video)
    assert np.argmax(np.diag(style.matrix)) == SPEECH_NAMES.index("jawOpen")


def test_style_json_round_trip(tmp_path):
    k = len(SPEECH_NAMES)
    rng = np.random.default_rng(1)
    style = Style(SPEECH_NAMES, np.eye(k) + 0.01 * rng.standard_normal((k, k)),
                  0.01 * rng.standard_normal(k), fps=30, source="me.mp4", frames=321,
                  method="statistics")
    path = style.save(tmp_path / "me.style.json")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["names"] == list(SPEECH_NAMES)
    assert {"matrix", "bias", "fps", "source", "frames", "method"} <= set(data)
    back = Style.load(path)
    assert (back.names, back.fps, back.source, back.frames, back.method) == \
        (style.names, 30, "me.mp4", 321, "statistics")
    np.testing.assert_allclose(back.matrix, style.matrix, atol=1e-6)
    np.testing.assert_allclose(back.bias, style.bias, atol=1e-6)
    e = np.random.default_rng(2).uniform(0, 1, (5, N_EXPRESSIONS)).astype(np.float32)
    np.testing.assert_allclose(back.apply(e), style.apply(e), atol=1e-5)
    neutral = Style.neutral().apply(e)
    np.testing.assert_allclose(np.delete(neutral, INDEX["mouthClose"], 1),
                               np.delete(e, INDEX["mouthClose"], 1))

    (tmp_path / "old.json").write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(StyleError, match="version"):
        Style.load(tmp_path / "old.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(StyleError, match="not a puppetry style"):
        Style.load(tmp_path / "other.json")
    with pytest.raises(StyleError, match="not found"):
        Style.load(tmp_path / "missing.json")


def test_reference_statistics():
    mean, std = reference_statistics()
    assert mean.shape == std.shape == (N_EXPRESSIONS,)
    speech = [INDEX[n] for n in SPEECH_NAMES]
    assert std[INDEX["jawOpen"]] > 0.1 and np.all(mean[speech] >= 0)
    assert not np.delete(std, speech).any()          # only speech shapes move
