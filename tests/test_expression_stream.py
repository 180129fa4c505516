"""ExpressionStream: chunk-size invariance, frame counts, look-ahead, silence, reset,
agreement with the offline SpeechToExpression; and the model's look-ahead options."""
import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from puppetry.audio import SAMPLE_RATE, load_audio
from puppetry.expression.arkit import INDEX
from puppetry.expression.model import Audio2Expression, ModelDims, RunningNorm
from puppetry.expression.speech import SpeechToExpression
from puppetry.expression.stream import ExpressionStream, default_stream_model_path

JAW = INDEX["jawOpen"]
ASSETS = Path(__file__).resolve().parents[1] / "puppetry" / "assets"


def asset_path(name: str) -> Path:
    return ASSETS / name


@pytest.fixture(scope="module")
def speech():
    return load_audio(asset_path("speech_en.ogg"))            # float32[N], 16 kHz


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    """A small random model with running normalisation and a short look-ahead."""
    torch.manual_seed(0)
    dims = replace(ModelDims(), window=12, lookahead=3, filter_size=5, filter_lookahead=1,
                   hidden=16, latent=8, normalize="running",
                   norm_mean=tuple([-0.5] * 80), norm_std=tuple([0.3] * 80))
    path = tmp_path_factory.mktemp("a2e") / "tiny.pt"
    Audio2Expression(dims).save(path)
    return path


def run(stream, audio, sizes):
    """Push ``audio`` in chunks of the given sizes (cycled), then flush: float32[T x 52]."""
    out, i, k = [], 0, 0
    while i < len(audio):
        n = sizes[k % len(sizes)]
        out.append(stream.push(audio[i:i + n]))
        i, k = i + n, k + 1
    out.append(stream.flush())
    return np.concatenate(out)


def test_chunk_size_invariance(tiny_path, speech):
    audio = speech[:int(1.3 * SAMPLE_RATE)]
    whole = run(ExpressionStream.load(tiny_path), audio, [len(audio)])
    assert whole.shape == (round(1.3 * 25), 52) and whole[:, JAW].max() > 0
    sizes = [np.random.default_rng(0).integers(0, 700, 50).tolist(), [320], [1]]
    for s in sizes:
        np.testing.assert_allclose(run(ExpressionStream.load(tiny_path), audio, s), whole, atol=1e-5)


def test_chunk_size_invariance_other_fps(tiny_path, speech):
    audio = speech[:int(0.9 * SAMPLE_RATE)]
    whole = run(ExpressionStream.load(tiny_path, fps=30), audio, [len(audio)])
    assert len(whole) == round(0.9 * 30)
    np.testing.assert_allclose(run(ExpressionStream.load(tiny_path, fps=30), audio, [333, 7]), whole, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 100, 639, 640, 960, 12345])
def test_frame_count_after_flush(tiny_path, n):
    audio = np.random.default_rng(n).uniform(-0.3, 0.3, n).astype(np.float32)
    stream = ExpressionStream.load(tiny_path)
    assert len(run(stream, audio, [320])) == round(n / SAMPLE_RATE * 25)
    assert stream.frames_out == 0                            # ready for the next utterance


def test_frames_come_out_within_lookahead(tiny_path, speech):
    stream = ExpressionStream.load(tiny_path)
    assert 0.05 < stream.lookahead_s < 0.15                  # 3 feature + 1 filter frame + 12.5 ms
    chunk, n = 32, 0
    for i in range(0, SAMPLE_RATE, chunk):
        got = len(stream.push(speech[i:i + chunk]))
        n += chunk
        due = int(np.floor((n / SAMPLE_RATE - stream.lookahead_s) * 25 + 1e-9)) + 1  # frames with time + lookahead <= now
        assert stream.frames_out >= min(due, round(n / SAMPLE_RATE * 25))
        assert got == 0 or stream.frames_out <= n / SAMPLE_RATE * 25   # never ahead of the audio


def test_shipped_stream_model_latency():
    stream = ExpressionStream.load()
    assert stream.lookahead_s < 0.25
    assert default_stream_model_path().stat().st_size < 5e6


def test_silence_rests_the_mouth(speech):
    stream = ExpressionStream.load()
    assert np.abs(run(stream, np.zeros(SAMPLE_RATE, np.float32), [320])).max() == 0
    pause = np.random.default_rng(0).normal(0, 1e-4, SAMPLE_RATE).astype(np.float32)  # -80 dBFS hiss
    out = run(stream, np.concatenate([speech[:2 * SAMPLE_RATE], pause]), [320])
    assert out[:50, JAW].max() > 0.2                         # speaks ...
    assert out[-15:, JAW].max() < 0.02                       # ... and rests in the pause


def test_reset_keeps_only_the_session_statistics(tiny_path, speech):
    a, b = speech[:SAMPLE_RATE], speech[SAMPLE_RATE:2 * SAMPLE_RATE]
    stream = ExpressionStream.load(tiny_path)
    stream.push(a[:9000])                                    # an utterance cut off (barge-in)
    stream.reset()
    assert stream.frames_out == 0 and stream.norm.count > 0  # statistics learned are kept
    fresh = ExpressionStream.load(tiny_path)                 # a stream that knows the same
    fresh.norm, fresh.gate_peak_db = copy.deepcopy(stream.norm), stream.gate_peak_db
    np.testing.assert_allclose(run(stream, b, [320]), run(fresh, b, [320]), atol=1e-6)
    # without normalisation nothing carries over: the same as a brand-new stream
    model = Audio2Expression.load(tiny_path)
    model.dims = replace(model.dims, normalize=False)
    s1, s2 = ExpressionStream(model), ExpressionStream(model)
    s1.push(a)
    s1.reset()
    s1.gate_peak_db = s2.gate_peak_db = 0.0                  # the gate's level is session state
    np.testing.assert_allclose(run(s1, b, [320]), run(s2, b, [320]), atol=1e-6)


def test_stream_matches_offline(speech):
    stream = run(ExpressionStream.load(), speech, [320])
    offline = SpeechToExpression.load(default_stream_model_path())(speech)
    assert stream.shape == offline.shape
    assert np.abs(stream - offline).mean() < 2e-3            # only the gate's floor differs
    assert np.corrcoef(stream[:, JAW], offline[:, JAW])[0, 1] > 0.99


def test_running_norm_is_causal_and_chunk_free(tiny_path, speech):
    dims = Audio2Expression.load(tiny_path).dims
    from puppetry.features import MelFeatures

    f = MelFeatures()(speech)
    whole = RunningNorm(dims)(f)
    norm = RunningNorm(dims)
    parts = np.concatenate([norm(f[i:i + 13]) for i in range(0, len(f), 13)])
    np.testing.assert_allclose(parts, whole, atol=1e-5)
    np.testing.assert_allclose(RunningNorm(dims)(f[:200]), whole[:200], atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros((320, 2), np.float32),
                                 np.array([0.0, np.nan, 0.1], np.float32),
                                 np.zeros(320, np.int16)])
def test_bad_input(tiny_path, bad):
    with pytest.raises(ValueError, match="audio"):
        ExpressionStream.load(tiny_path).push(bad)


def test_not_streamable_models_are_refused():
    with pytest.raises(ValueError, match="stream"):
        ExpressionStream.load(asset_path("audio2expression_mel.pt"))   # utterance CMVN


# ---- the model's look-ahead -----------------------------------------------------------

def old_forward(model, windows):
    """Audio2Expression.forward before look-ahead options: centred filter, Conv1d padding."""
    z, e = model.per_frame(windows)
    k = model.dims.filter_size
    conv, act, proj = model.filter
    logits = proj(act(F.conv1d(z.transpose(1, 2), conv.weight, conv.bias, padding=k // 2)))
    weights = logits.transpose(1, 2).softmax(-1)
    neighbours = F.pad(e.transpose(1, 2), (k // 2, k // 2), mode="replicate").unfold(2, k, 1)
    return (neighbours * weights[:, None]).sum(-1).transpose(1, 2).clamp(0, 1)


def test_shipped_mel_model_unchanged():
    model = Audio2Expression.load(asset_path("audio2expression_mel.pt"))
    assert model.dims.lookahead is None and model.dims.window_after == 11
    assert model.dims.filter_after == 4
    x = torch.randn(2, 30, model.dims.window, model.dims.feature_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), old_forward(model, x).numpy(), atol=1e-6)


def test_filter_lookahead_is_causal_beyond_it():
    torch.manual_seed(0)
    dims = replace(ModelDims(), window=8, lookahead=2, filter_size=5, filter_lookahead=1, hidden=8, latent=4)
    model = Audio2Expression(dims).eval()
    x = torch.randn(1, 20, 8, 80)
    y = x.clone()
    y[:, 12:] += 1.0                                         # change the windows from frame 12 on
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :11], b[:, :11]) and not torch.equal(a[:, 11], b[:, 11])
    with pytest.raises(ValueError, match="lookahead"):
        Audio2Expression(replace(dims, filter_lookahead=5))
