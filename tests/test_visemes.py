"""Phoneme inventories, viseme targets and coarticulated curves (numpy only, fast)."""
import numpy as np
import pytest

from puppetry.expression.arkit import ARKIT_NAMES, INDEX, SPEECH_NAMES
from puppetry.expression.visemes import (
    ESPEAK_IPA, FESTIVAL_PHONES, PHONEMES, SPHINX_PHONES, VISEME_TARGETS,
    convert, lip_gap, merge_ipa, to_arpabet, viseme_curves)

# festival's radio_phones.scm (the US voices kal, ked, slt) and flite's cmu_us phone set
RADIO_PHONES = ("aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k "
                "l m n nx ng ow oy p r s sh t th uh uw v w y z zh pau h# brth").split()
# what espeak-ng 1.51 printed for the English voices on the corpus texts
ESPEAK_SEEN = ("n t ɪ ə d s m p l ð b ɹ ɛ f aɪ z k a v w ɒ ʌ iː eɪ uː j ɔː θ i ɐ ʊ eː æ əl "
               "ɡ ŋ ɜː r h ɑː oʊ ɔɪ dʒ tʃ ʃ oː əʊ aʊ ɚ e ɾ iə ɜ ɛə ei ᵻ ɔ əu ʌʊ t̪ ʒ eə ʉː "
               "a: æʊ aa oə ʉ əɪ o oːɹ aɪə əɹ ʌʉ ɔːɹ ɔə ɑːɹ aː ɑə ʍ ʊə ʲ ʌɹ ɛɹ oɪ ɪɹ ʔ n̩ "
               "ʊɹ ʉɹ aɪɚ").split() + [""]
SPHINX_SET = [p.upper() for p in PHONEMES if p not in ("sil", "sp")] + ["SIL"]

P = INDEX["mouthPressLeft"]
JAW, CLOSE = INDEX["jawOpen"], INDEX["mouthClose"]


def frame(t: float) -> int:
    return int(round(t * 100))


def test_inventory_is_arpabet_39_plus_pauses():
    assert len(PHONEMES) == 41 and len(set(PHONEMES)) == 41
    assert set(VISEME_TARGETS) == set(PHONEMES)


@pytest.mark.parametrize("engine, phone_set", [
    ("festival", RADIO_PHONES), ("flite", RADIO_PHONES), ("espeak", ESPEAK_SEEN),
    ("sphinx", SPHINX_SET)])
def test_engine_mapping_covers_its_phone_set(engine, phone_set):
    for phone in phone_set:
        arpa = to_arpabet(engine, phone)
        assert 1 <= len(arpa) <= 2 and all(p in PHONEMES for p in arpa), (engine, phone, arpa)


def test_tables_map_into_the_inventory():
    for table in (ESPEAK_IPA, FESTIVAL_PHONES, SPHINX_PHONES):
        for value in table.values():
            assert all(p in PHONEMES for p in value.split()), value


def test_to_arpabet_details():
    assert to_arpabet("espeak", "ɔːɹ") == ("ao", "r")
    assert to_arpabet("espeak", "t̪") == ("t",)          # a diacritic falls back to the base
    assert to_arpabet("festival", "pau") == ("sil",)
    with pytest.raises(ValueError, match="no ARPAbet mapping"):
        to_arpabet("espeak", "ʘ")
    with pytest.raises(ValueError, match="unknown speech engine"):
        to_arpabet("mbrola", "a")
    assert convert("espeak", [("ɑːɹ", 1.0, 1.2)]) == [("aa", 1.0, 1.1), ("r", 1.1, 1.2)]


def test_merge_ipa_joins_piper_code_points_across_blanks():
    tokens = ["^", "_", "tʃ"[0], "_", "tʃ"[1], "_", "ˈ", "_", "e", "_", "ɪ", "_", " ", "_",
              "k", "_", "æ", "_", "t", "_", "s", "_", ".", "_", "$"]
    merged = [s for s, _ in merge_ipa(tokens) if s not in ("_", "ˈ", " ")]
    assert merged == ["^", "tʃ", "eɪ", "k", "æ", "t", "s", ".", "$"]
    # indices cover every token exactly once, in order
    assert [i for _, idx in merge_ipa(tokens) for i in idx] == list(range(len(tokens)))


def test_targets_are_phonetically_sensible():
    for p in ("p", "b", "m"):   # lips sealed: mouthClose cancels the small jaw opening
        t = VISEME_TARGETS[p]
        assert 0.05 <= t["jawOpen"] <= 0.1 and t["mouthClose"] == pytest.approx(t["jawOpen"])
        assert t["mouthPressLeft"] > 0.3
    for p in ("f", "v"):
        assert VISEME_TARGETS[p]["mouthRollLower"] > 0.3
        assert VISEME_TARGETS[p]["mouthUpperUpLeft"] > 0.1
    for p in ("aa", "ae", "ah"):
        assert VISEME_TARGETS[p]["jawOpen"] >= 0.44
    for p in ("iy", "ih", "ey"):
        assert VISEME_TARGETS[p]["mouthStretchLeft"] >= 0.3 and VISEME_TARGETS[p]["jawOpen"] <= 0.4
    for p in ("uw", "ow", "w"):
        assert VISEME_TARGETS[p]["mouthPucker"] + VISEME_TARGETS[p]["mouthFunnel"] >= 0.6
    assert VISEME_TARGETS["th"]["tongueOut"] > 0.3
    assert not any(VISEME_TARGETS["sil"].values())
    assert set(SPEECH_NAMES) <= set(ARKIT_NAMES)


def test_curves_shape_range_and_silence_elsewhere():
    phones = [("sil", 0.0, 0.3), ("hh", 0.3, 0.37), ("ah", 0.37, 0.5), ("l", 0.5, 0.56),
              ("ow", 0.56, 0.8), ("sil", 0.8, 1.0)]
    c = viseme_curves(phones)
    assert c.shape == (101, 52) and c.dtype == np.float32
    assert c.min() >= 0 and c.max() <= 1
    other = [i for i, n in enumerate(ARKIT_NAMES) if n not in SPEECH_NAMES]
    assert not c[:, other].any()
    assert viseme_curves(phones, rate=30.0).shape == (31, 52)
    assert viseme_curves(phones, n_frames=250).shape == (250, 52)
    assert viseme_curves([], n_frames=5).shape == (5, 52)


def test_p_closes_the_lips_and_vowels_open():
    phones = [("sil", 0.0, 0.2), ("aa", 0.2, 0.4), ("p", 0.4, 0.48), ("aa", 0.48, 0.7),
              ("sil", 0.7, 1.0)]
    c = viseme_curves(phones)
    at_p = c[frame(0.44)]
    assert at_p[CLOSE] >= 0.8 * at_p[JAW]                 # >= 0.8 of the closure: sealed
    assert lip_gap(at_p) < 0.05
    assert at_p[P] >= 0.8 * VISEME_TARGETS["p"]["mouthPressLeft"]
    for t in (0.3, 0.6):                                  # vowels: open, lips apart
        assert c[frame(t), JAW] > 0.45 and lip_gap(c[frame(t)]) > 0.4


def test_bilabials_close_in_fast_speech():
    # ~220 wpm: 45 ms closures between 60 ms vowels
    phones, t = [("sil", 0.0, 0.2)], 0.2
    for p in ("ae", "b", "ah", "m", "iy", "p", "aa"):
        d = 0.045 if p in ("b", "m", "p") else 0.06
        phones.append((p, t, t + d))
        t += d
    phones.append(("sil", t, t + 0.4))
    c = viseme_curves(phones)
    for p, s, e in phones:
        if p in ("b", "m", "p"):
            centre = viseme_curves(phones, rate=1000)[int(round((s + e) / 2 * 1000))]
            assert centre[CLOSE] >= 0.8 * centre[JAW], p
    assert np.abs(np.diff(c, axis=0)).max() < 0.3


def test_long_silence_comes_to_rest():
    phones = [("aa", 0.0, 0.15), ("sil", 0.15, 0.5), ("aa", 0.5, 0.65),
              ("sil", 0.65, 2.0), ("iy", 2.0, 2.1)]
    c = viseme_curves(phones)
    assert c[frame(0.325), JAW] < 0.05                    # middle of a 350 ms pause
    assert np.abs(c[frame(1.0):frame(1.7)]).max() < 0.01   # deep in a long pause: at rest


def test_curves_are_smooth_and_deterministic():
    rng = np.random.default_rng(0)
    speech = [p for p in PHONEMES if p not in ("sil", "sp")]
    phones, t = [], 0.0
    for _ in range(200):
        p = str(rng.choice(speech))
        d = float(rng.uniform(0.04, 0.18))
        phones.append((p, t, t + d))
        t += d
    a, b = viseme_curves(phones), viseme_curves(phones)
    assert np.array_equal(a, b)
    assert np.abs(np.diff(a, axis=0)).max() < 0.3         # per 10 ms frame
    assert np.abs(np.diff(a, axis=0)).mean() < 0.01


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown phoneme 'AA'"):
        viseme_curves([("AA", 0.0, 0.1)])
    with pytest.raises(ValueError, match="ends"):
        viseme_curves([("aa", 0.2, 0.1)])


def _corpus_module():
    import importlib.util
    import sys
    from pathlib import Path
    pytest.importorskip("av")
    path = Path(__file__).resolve().parents[1] / "pipelines" / "make_speech_corpus.py"
    spec = importlib.util.spec_from_file_location("make_speech_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_corpus_tempo_and_codecs_keep_the_timing():
    """Augmentation must not shift the audio against its targets (codec and filter delays)."""
    m = _corpus_module()
    sr = m.SAMPLE_RATE
    x = np.zeros(3 * sr, np.float32)
    clicks = [0.5, 1.0, 2.0, 2.8]
    for c in clicks:
        x[int(c * sr):int(c * sr) + 800] = np.sin(np.arange(800) * 0.3) * np.hanning(800)

    def onsets(y):
        env = np.convolve(np.abs(y), np.ones(400) / 400, "same")
        loud = env > 0.5 * env.max()
        return np.flatnonzero(loud[1:] & ~loud[:-1]) / sr

    ref = onsets(x)
    for factor in (0.8, 1.2):
        y = m._tempo(x, factor)
        assert len(y) == pytest.approx(len(x) / factor, abs=2)
        np.testing.assert_allclose(onsets(y), ref / factor, atol=0.01)   # a target frame
    for args in [("libmp3lame", 32000, sr, "mp3"), ("libopus", 16000, 48000, "ogg"),
                 ("pcm_mulaw", 0, 8000, "wav")]:
        np.testing.assert_allclose(onsets(m._codec(x, *args)), ref, atol=0.003)
