"""The speech shapes' names: one list (arkit.SPEECH_NAMES), and every shipped model's
outputs land on the ARKit names they were trained for."""
from pathlib import Path

import numpy as np
import pytest
import torch

from puppetry.audio import load_audio
from puppetry.expression.arkit import ARKIT_NAMES, INDEX, SPEECH_NAMES
from puppetry.expression.model import Audio2Expression
from puppetry.expression.shipped import FALLBACK_FILE, MODEL_FILE
from puppetry.expression.speech import SpeechToExpression
from puppetry.expression.visemes import VISEME_TARGETS, viseme_curves
ASSETS = Path(__file__).resolve().parents[1] / "puppetry" / "assets"
SHIPPED = (MODEL_FILE, FALLBACK_FILE, "audio2expression_stream.pt")


def test_speech_names_are_arkit_names_once():
    assert len(set(SPEECH_NAMES)) == len(SPEECH_NAMES) == 19
    assert set(SPEECH_NAMES) <= set(ARKIT_NAMES)
    for targets in VISEME_TARGETS.values():                  # the corpus targets use the same list
        assert tuple(targets) == SPEECH_NAMES


def test_corpus_curves_move_only_speech_names():
    c = viseme_curves([("sil", 0, 0.2), ("f", 0.2, 0.3), ("aa", 0.3, 0.5), ("p", 0.5, 0.6)])
    moved = {ARKIT_NAMES[i] for i in np.flatnonzero(c.any(0))}
    assert moved <= set(SPEECH_NAMES) and {"jawOpen", "mouthClose", "mouthRollLower"} <= moved


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_outputs_map_to_their_arkit_names(name):
    model = Audio2Expression.load(ASSETS / name)
    outputs = model.dims.outputs
    assert set(outputs) == set(SPEECH_NAMES) and len(outputs) == len(SPEECH_NAMES)
    one_hot = torch.eye(len(outputs))                          # output k alone
    arkit = model.to_arkit(one_hot).numpy()                    # (K, 52)
    for k, n in enumerate(outputs):
        assert np.flatnonzero(arkit[k]).tolist() == [INDEX[n]]


def test_shipped_mel_model_speaks_with_the_jaw():
    """On the bundled speech, the uncalibrated log-mel model moves the jaw most, and each
    left/right pair together (the corpus targets are symmetric): a model whose outputs
    were read in another order would put its largest curve elsewhere or split a pair."""
    s2e = SpeechToExpression.load(ASSETS / FALLBACK_FILE).with_calibration(None)
    out = s2e(load_audio(ASSETS / "speech_en.ogg"))            # (T, 52)
    speaking = out[:, INDEX["jawOpen"]] > 0.05
    assert speaking.mean() > 0.5
    mean = out[speaking].mean(0)
    assert np.argmax(mean) == INDEX["jawOpen"]
    for n in SPEECH_NAMES:
        if n.endswith("Left"):
            left, right = out[:, INDEX[n]], out[:, INDEX[n[:-4] + "Right"]]
            assert np.abs(left - right).mean() < 0.2 * max(left.mean(), 0.02)
    assert not np.delete(out, [INDEX[n] for n in SPEECH_NAMES], axis=1).any()
