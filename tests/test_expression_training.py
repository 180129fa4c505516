"""The training script's feature cache: utterances packed into encoder windows, cut out
again on the right frames, and kept on disk (pipelines/train_audio2expression.py)."""
import numpy as np

from puppetry.audio import SAMPLE_RATE


class FrameFeatures:
    """A frame-wise stand-in for an encoder: per 20 ms frame centred on sample 320 k, the
    mean and peak of the samples around it (so a packed utterance's frames equal its own)."""

    name, rate, dim = "frames", 50.0, 2

    def __init__(self):
        self.calls = 0

    def __call__(self, audio):
        self.calls += 1
        n = -(-len(audio) // 320)
        padded = np.pad(audio, (160, 320 * n + 160 - len(audio)))
        frames = padded[:320 * n].reshape(n, 320)
        return np.stack([frames.mean(1), np.abs(frames).max(1)], 1).astype(np.float32)


def _items(rng, n=9):
    lengths = rng.integers(SAMPLE_RATE // 2, SAMPLE_RATE * 9, n)
    return [(rng.standard_normal(k).astype(np.float32) * 0.1, None, f"v{i % 2}")
            for i, k in enumerate(lengths)]


def test_packs_hold_one_voice_aligned_and_apart(pipeline):
    pack = pipeline("train_audio2expression").pack_utterances
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(SAMPLE_RATE, SAMPLE_RATE * 8, 40)] + [SAMPLE_RATE * 35]
    voices = [f"v{i % 3}" for i in range(41)]
    packs = pack(lengths, voices, 320)
    assert sorted(i for p in packs for i, _ in p) == list(range(41))
    for p in packs:
        assert len({voices[i] for i, _ in p}) == 1
        assert all(s % 320 == 0 for _, s in p)
        spans = sorted((s, s + lengths[i]) for i, s in p)
        assert all(b[0] - a[1] >= 0.4 * SAMPLE_RATE - 1 for a, b in zip(spans, spans[1:]))
        assert spans[-1][1] <= 30 * SAMPLE_RATE or len(p) == 1
    assert len(packs) < 41 / 3                                  # several utterances per call


def test_feature_cache_cuts_each_utterance_and_reloads(pipeline, tmp_path):
    train = pipeline("train_audio2expression")
    from puppetry.features import n_feature_frames

    items = _items(np.random.default_rng(1))
    features = FrameFeatures()
    cached = train.feature_cache(items, features, tmp_path)
    assert features.calls < len(items)                          # packed
    for (audio, _, _), f in zip(items, cached):
        assert f.shape == (n_feature_frames(len(audio), 50.0), 2)
        np.testing.assert_allclose(f, FrameFeatures()(audio), atol=1e-6)
    again = FrameFeatures()
    reloaded = train.feature_cache(items, again, tmp_path)
    assert again.calls == 0                                     # read from disk
    for a, b in zip(cached, reloaded):
        np.testing.assert_array_equal(a, b)
    changed = train.feature_cache(items[:-1], again, tmp_path)  # another corpus: recomputed
    assert again.calls > 0 and len(changed) == len(items) - 1


def _tiny_corpus(folder, rng, voices=10, per_voice=2):
    """A corpus in make_speech_corpus.py's shard format: noise 'speech', random targets."""
    audio, targets, names = [], [], []
    for v in range(voices):
        for _ in range(per_voice):
            n = int(rng.integers(SAMPLE_RATE, 2 * SAMPLE_RATE))
            audio.append((rng.standard_normal(n) * 3000).astype(np.int16))
            targets.append(rng.uniform(0, 1, (n * 100 // SAMPLE_RATE, 52)).astype(np.float16))
            names.append(f"espeak:v{v}@1.0")
    folder.mkdir()
    np.savez(folder / "shard_000.npz", audio=np.concatenate(audio),
             audio_offsets=np.cumsum([0] + [len(a) for a in audio]),
             targets=np.concatenate(targets), target_offsets=np.cumsum([0] + [len(t) for t in targets]),
             voice=np.array(names))
    (folder / "recipe.json").write_text('{"command": "test"}')


def _trained(pipeline, tmp_path, seed: int, steps: int):
    """A tiny corpus and a model trained on it for ``steps`` as ``tmp_path/a.pt``:
    (the training module, the arguments every run of these tests shares)."""
    train = pipeline("train_audio2expression")
    _tiny_corpus(tmp_path / "speech", np.random.default_rng(seed))
    common = ["--data", str(tmp_path / "speech"), "--features", "mel", "--batch", "2",
              "--frames", "8", "--threads", "1", "--window-ms", "160"]
    train.main(common + ["--steps", str(steps), "--out", str(tmp_path / "a.pt")])
    return train, common


def test_init_starts_from_a_checkpoint_and_refuses_another_model(pipeline, tmp_path):
    import pytest
    import torch

    train, common = _trained(pipeline, tmp_path, seed=3, steps=3)
    train.main(common + ["--steps", "2", "--lr", "0", "--init", str(tmp_path / "a.pt"),
                         "--out", str(tmp_path / "b.pt")])
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("a.pt", "b.pt"))
    for k in a["state"]:                                       # lr 0: the weights it started from
        assert torch.equal(a["state"][k], b["state"][k])
    assert b["meta"]["init"]["path"] == str(tmp_path / "a.pt")
    with pytest.raises(SystemExit, match="window"):
        train.main(common[:-1] + ["240", "--steps", "1", "--init", str(tmp_path / "a.pt"),
                                  "--out", str(tmp_path / "c.pt")])


def test_frozen_encoder_keeps_it_and_trains_the_rest(pipeline, tmp_path):
    import torch

    train, common = _trained(pipeline, tmp_path, seed=4, steps=2)
    train.main(common + ["--steps", "4", "--lr", "0.01", "--init", str(tmp_path / "a.pt"),
                         "--freeze-encoder", "--out", str(tmp_path / "b.pt")])
    a, b = (torch.load(tmp_path / f, weights_only=True)["state"] for f in ("a.pt", "b.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith(("to_latent.", "filter.")))


def test_encoder_table_gives_the_windows_encoding(pipeline):
    """A crop looked up in the frozen encoder's table equals the encoder run on the same
    crop's windows (same random crop)."""
    import torch
    from dataclasses import replace

    from puppetry.expression.model import Audio2Expression, ModelDims
    from puppetry.features import load_features

    train = pipeline("train_audio2expression")
    rng = np.random.default_rng(5)
    items = [(rng.standard_normal(int(n)).astype(np.float32) * 0.1,
              rng.uniform(0, 1, (int(n) * 100 // SAMPLE_RATE, 19)).astype(np.float32), "v")
             for n in (SAMPLE_RATE * 2, SAMPLE_RATE * 3)]
    dims = replace(ModelDims(), window=16)
    model = Audio2Expression(dims).eval()
    plain = train.Batches(items, load_features("mel"), dims, 10, np.random.default_rng(7))
    table = train.Batches(items, load_features("mel"), dims, 10, np.random.default_rng(7))
    table.encode_with(model)
    for _ in range(3):
        (win, tgt), (enc, tgt2) = plain.crop(augment=False), table.crop(augment=False)
        np.testing.assert_array_equal(tgt, tgt2)
        with torch.no_grad():
            direct = model.encode(torch.from_numpy(win)[None])[0].numpy()
        np.testing.assert_allclose(enc, direct, atol=2e-3 * np.abs(direct).max())
