"""Identity metric (eval extra): dlib embeddings on scikit-image's sample photos."""
import numpy as np
import pytest

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")
from skimage.transform import rescale  # noqa: E402

from puppetry.eval import identity  # noqa: E402

try:
    identity._models_dir()
    _have_models = True
except ImportError:
    _have_models = False
pytestmark = pytest.mark.skipif(not _have_models, reason="face_recognition_models not installed")


@pytest.fixture(scope="module")
def enc():
    return identity.IdentityEncoder()


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


@pytest.fixture(scope="module")
def ref(enc, astronaut):
    e = enc.embed(astronaut)
    assert e is not None, "no face found on the astronaut"
    return e


def _shift(img, dy, dx):
    """Translate by (dy, dx) px, filling the uncovered border with edge pixels (no wrap-around)."""
    h, w = img.shape[:2]
    p = max(abs(dy), abs(dx))
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded[p - dy:p - dy + h, p - dx:p - dx + w])


def test_embedding_shape_and_self_distance(enc, astronaut, ref):
    assert ref.shape == (128,) and ref.dtype == np.float64
    assert np.isfinite(ref).all()
    assert enc.distance(ref, enc.embed(astronaut)) < 1e-6
    assert enc.distance(ref, ref) == 0.0


@pytest.mark.parametrize("scale,dy,dx", [(1.0, 7, -5), (1.0, -6, 9), (0.8, 0, 0), (0.85, 5, 4), (1.2, -3, 6)])
def test_shifted_rescaled_copy_is_same_person(enc, astronaut, ref, scale, dy, dx):
    img = astronaut
    if scale != 1.0:
        img = (rescale(img, scale, channel_axis=-1, anti_aliasing=True) * 255).round().astype(np.uint8)
    img = _shift(img, dy, dx)
    e = enc.embed(img)
    assert e is not None
    assert enc.distance(ref, e) < 0.35


def test_flipped_copy_close_but_not_identical(enc, astronaut, ref):
    e = enc.embed(np.ascontiguousarray(astronaut[:, ::-1]))
    assert e is not None
    d = enc.distance(ref, e)
    assert 0.0 < d < 0.35


def test_box_bypasses_detector(enc, astronaut, ref):
    faces = enc._detector(astronaut, 0)
    r = max(faces, key=lambda r: r.area())
    e = enc.embed(astronaut, box=(r.left(), r.top(), r.right(), r.bottom()))
    assert enc.distance(ref, e) < 1e-6
    # a box on a blank image still yields a descriptor (caller's responsibility)
    assert enc.embed(np.zeros((64, 64, 3), np.uint8), box=(8, 8, 56, 56)).shape == (128,)


def test_other_person_is_far(enc, ref):
    cam = np.repeat(skdata.camera()[..., None], 3, axis=-1)
    e = enc.embed(cam)
    if e is not None:  # dlib may not find the cameraman's (small, profile) face
        assert enc.distance(ref, e) > identity.SAME_PERSON


@pytest.mark.parametrize("shape,value", [((256, 256, 3), 0), ((512, 384, 3), 128), ((100, 100, 3), 255)])
def test_blank_image_has_no_face(enc, shape, value):
    assert enc.embed(np.full(shape, value, np.uint8)) is None


def test_rejects_non_rgb(enc):
    with pytest.raises(ValueError):
        enc.embed(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError):
        enc.embed(np.zeros((32, 32, 3), np.float32))


def test_missing_models_raise_helpful_import_error(monkeypatch):
    monkeypatch.setattr(identity.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[eval\]"):
        identity.IdentityEncoder().embed(np.zeros((8, 8, 3), np.uint8))


def test_tied_boxes_pick_most_confident(enc, astronaut, ref):
    # Wrapped shift: the detector also fires (weakly) on the suit with a box of
    # the same size as the face; the real face must still win.
    img = np.roll(astronaut, (7, -5), axis=(0, 1))
    assert len(enc._detector(img, 0)) == 2
    assert enc.distance(ref, enc.embed(img)) < 0.35


def test_missing_dlib_raises_helpful_import_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "dlib", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[eval\]"):
        identity.IdentityEncoder().embed(np.zeros((8, 8, 3), np.uint8))
