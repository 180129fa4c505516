"""What pipelines/fuzz.py found, each kept fixed, and a few cases of every fuzzed kind run
through the harness itself (so it keeps working): no tracebacks, hangs or lost files."""
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from puppetry import load_portrait
from puppetry.audio import load_audio
from puppetry.face.tracker import FaceNotFoundError
from puppetry.portrait import bundled_portrait

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "pipelines" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("w, h", [(65000, 1), (1, 65000), (3, 2)])
def test_a_photo_too_thin_for_a_face_is_refused_by_name(tmp_path, w, h):
    path = tmp_path / "strip.png"                      # 65000 x 1 crashed in cv2.resize
    Image.new("RGB", (w, h), (128, 128, 128)).save(path)
    with pytest.raises(FaceNotFoundError, match=rf"strip.png is only {w} x {h} px"):
        load_portrait(path)


def test_an_animated_photo_says_its_first_frame_is_used(tmp_path):
    face = Image.fromarray(bundled_portrait())
    path = tmp_path / "moving.gif"
    face.save(path, save_all=True, append_images=[Image.new("RGB", face.size)], duration=100)
    with pytest.warns(UserWarning, match="moving.gif is animated: its first frame is used"):
        p = load_portrait(path, size=256)
    assert p.landmarks[10, 1] < p.landmarks[152, 1]


def test_a_mirrored_upside_down_photo_is_found_and_turned(tmp_path):
    """EXIF orientation 4 (flipped top to bottom): Face Mesh finds only a 'face' in the
    clothes; the upright check finds the real one by turning the photo."""
    im = Image.fromarray(bundled_portrait())
    exif = im.getexif()
    exif[0x0112] = 4
    im.save(tmp_path / "flipped.jpg", exif=exif, quality=90)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = load_portrait(tmp_path / "flipped.jpg", size=256)
    assert any("upside down" in str(w.message) for w in caught)
    assert p.landmarks[[33, 263], 1].max() < p.landmarks[[13, 14], 1].min()   # eyes above mouth
    assert p.iod > 30


def test_float_samples_beyond_full_scale_are_clipped(tmp_path):
    x = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    x[[100, 8000]] = [1e30, -4.0]                       # legal in a float WAV; 1e30 reached the model
    sf.write(tmp_path / "loud.wav", x, 16000, subtype="FLOAT")
    audio = load_audio(tmp_path / "loud.wav")
    assert audio.max() <= 1.0 and audio.min() >= -1.0
    assert np.abs(audio[:90] - x[:90]).max() < 0.05     # the rest is left as it is


def test_the_fuzz_harness_finds_nothing_on_a_few_cases_of_each_kind(fuzz, tmp_path):
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, by_label, bad = fuzz.fuzz_in_process(len(fuzz.KINDS), rng, tmp_path)
    assert set(table) == set(fuzz.KINDS)
    assert not bad, bad
    assert sum(c["success"] for c in table.values()) > 0 and sum(c["error"] for c in table.values()) > 0
