"""The face model, head frame, pose conventions, blendshapes and the tracker's errors."""
import warnings

import cv2
import numpy as np
import pytest

from puppetry import load_portrait
from puppetry.expression.arkit import INDEX
from puppetry.face import mesh as M
from puppetry.face.blendshapes import blendshape_basis
from puppetry.face.pose import euler_angles, rotation_matrix
from puppetry.face.tracker import FaceNotFoundError, detect_face
from puppetry.portrait import bundled_portrait

IN_FRONT = np.array([0.0, 0.0, -1.0])  # image coordinates: z < 0 is toward the camera
ABOVE = np.array([0.0, -1.0, 0.0])     # y < 0 is up


@pytest.fixture(scope="module")
def portrait():
    return load_portrait("astronaut")


@pytest.fixture(scope="module")
def astronaut():
    return bundled_portrait()


# ---- face model ------------------------------------------------------------------------

def test_face_model_topology():
    fm = M.face_model()
    assert fm.triangles.shape == (852, 3) and fm.canonical.shape == (468, 3)
    assert fm.triangles.min() == 0 and fm.triangles.max() == 467
    assert len(np.unique(fm.triangles)) == 468           # every vertex is used
    assert (np.diff(np.sort(fm.triangles, 1), axis=1) > 0).all()  # no degenerate triangle


def test_mirror_is_an_involution_for_most_vertices():
    fm = M.face_model()
    m = fm.mirror
    assert m.shape == (468,) and m.min() >= 0 and m.max() < 468
    involutive = m[m] == np.arange(468)
    assert involutive.mean() > 0.95
    # and it mirrors: x -> -x, y and z kept (IOD units)
    c = fm.canonical[involutive]
    c_m = fm.canonical[m[involutive]]
    assert np.abs(c_m[:, 0] + c[:, 0]).max() < 0.05
    assert np.abs(c_m[:, 1:] - c[:, 1:]).max() < 0.05
    # the pairs that define the head's x axis are mirror images in the canonical face
    pairs = np.array(M.SYMMETRIC_PAIRS)
    right, left = fm.canonical[pairs[:, 0]], fm.canonical[pairs[:, 1]]
    np.testing.assert_allclose(left, right * [-1, 1, 1], atol=0.05)


def test_canonical_is_in_the_head_frame():
    c = M.face_model().canonical
    right, left = M.eye_centres(c)
    np.testing.assert_allclose((right + left) / 2, 0, atol=0.05)   # origin between the eyes
    assert np.linalg.norm(left - right) == pytest.approx(1, abs=0.05)  # IOD units
    assert left[0] > right[0]                                     # x toward the subject's left
    assert c[M.FOREHEAD, 1] > c[M.CHIN, 1]                        # y up
    assert c[M.NOSE_TIP, 2] > c[234, 2]                           # z toward the camera


# ---- head frame ------------------------------------------------------------------------

def test_head_frame_is_orthonormal_and_right_handed(portrait):
    hf = M.head_frame(portrait.landmarks)
    r = hf.rotation
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1, abs=1e-9)
    # a frontal portrait: head x -> image right, head y -> image up, head z -> camera
    assert r[0, 0] > 0.9 and r[1, 1] < -0.9 and r[2, 2] < -0.9
    assert hf.scale == pytest.approx(M.interocular(portrait.landmarks), rel=0.05)
    np.testing.assert_allclose(portrait.frame.rotation, r)


def test_head_frame_round_trip(portrait):
    hf = portrait.frame
    pts = np.random.default_rng(0).uniform(-300, 800, (50, 3))
    np.testing.assert_allclose(hf.to_image(hf.to_head(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(hf.to_head(hf.to_image(pts)), pts, atol=1e-9)
    right, left = M.eye_centres(hf.to_head(portrait.landmarks.astype(np.float64)))
    np.testing.assert_allclose(left - right, [1, 0, 0], atol=0.02)


# ---- pose ------------------------------------------------------------------------------

def test_rotation_matrix_euler_round_trip():
    rng = np.random.default_rng(1)
    for yaw, pitch, roll in rng.uniform(-40, 40, (200, 3)):
        rot = rotation_matrix(yaw, pitch, roll)
        np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1)
        np.testing.assert_allclose(euler_angles(rot), (yaw, pitch, roll), atol=1e-9)


@pytest.mark.parametrize("angles, point, axis, sign", [
    ((20, 0, 0), IN_FRONT, 0, +1),   # yaw +: the nose turns toward the image's right
    ((-20, 0, 0), IN_FRONT, 0, -1),
    ((0, 20, 0), IN_FRONT, 1, -1),   # pitch +: the chin lifts, the nose goes up (-y)
    ((0, -20, 0), IN_FRONT, 1, +1),
    ((0, 0, 20), ABOVE, 0, +1),      # roll +: clockwise in the image, the top goes right
    ((0, 0, -20), ABOVE, 0, -1),
])
def test_rotation_sign_conventions(angles, point, axis, sign):
    moved = rotation_matrix(*angles) @ point
    assert sign * moved[axis] > 0.3


def test_rigid_align_recovers_a_similarity():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(40, 3))
    rot, scale, shift = rotation_matrix(25, -12, 33), 2.7, np.array([10.0, -4.0, 3.0])
    dst = scale * src @ rot.T + shift
    r, s, t = M.rigid_align(src, dst)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    assert s == pytest.approx(scale)
    np.testing.assert_allclose(t, shift, atol=1e-9)
    # and with noise, still close
    r, s, t = M.rigid_align(src, dst + rng.normal(scale=0.01, size=dst.shape))
    np.testing.assert_allclose(euler_angles(r), (25, -12, 33), atol=0.5)
    assert s == pytest.approx(scale, rel=0.01)


# ---- blendshapes -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def basis(portrait):
    return blendshape_basis(portrait.shape, portrait.frame.rotation)   # a portrait's jaw opens as the camera sees it


def test_blendshape_basis_shape(portrait, basis):
    assert basis.shape == (52, 468, 3) and basis.dtype == np.float32
    assert np.isfinite(basis).all()
    np.testing.assert_allclose(portrait.basis, basis, atol=1e-6)
    assert not basis[INDEX["eyeLookUpLeft"]].any()   # gaze moves no skin vertex


def test_jaw_open_moves_the_lower_lip_down(basis):
    jaw = basis[INDEX["jawOpen"]]
    lower, upper = jaw[M.LIP_LOWER_MID], jaw[M.LIP_UPPER_MID]
    assert lower[1] < -0.2                                  # IOD units, head y is up
    assert np.linalg.norm(upper) < 0.1 * np.linalg.norm(lower)
    assert jaw[M.CHIN, 1] < -0.2                            # the chin comes along
    assert np.abs(jaw[M.FOREHEAD]).max() < 1e-3


def test_eye_blink_left_closes_the_left_eye_only(portrait, basis):
    shape = portrait.shape
    blink = basis[INDEX["eyeBlinkLeft"]]
    assert blink[386, 1] < 0                                # upper lid goes down
    gap_before = shape[386, 1] - shape[374, 1]              # upper above lower (y up)
    gap_after = (shape[386, 1] + blink[386, 1]) - (shape[374, 1] + blink[374, 1])
    assert -0.15 * gap_before <= gap_after <= 0.02 * gap_before   # lids meet, overlap a little
    right_eye = M.EYE_RIGHT_UPPER + M.EYE_RIGHT_LOWER
    assert np.abs(blink[right_eye]).max() < 1e-3
    assert np.abs(basis[INDEX["eyeBlinkRight"]][[386, 374]]).max() < 1e-3


# ---- tracker errors --------------------------------------------------------------------

def test_blank_image_has_no_face():
    with pytest.raises(FaceNotFoundError, match="blank.png"):
        detect_face(np.full((256, 256, 3), 128, np.uint8), "blank.png")


def test_two_faces_warn_and_the_largest_is_used(astronaut):
    # Head crops, not the whole photo: MediaPipe's short-range detector misses faces
    # narrower than about a tenth of the image, as each face in two whole photos is.
    head = astronaut[10:290, 100:360]                        # (280, 260)
    small = cv2.resize(head, (195, 210), interpolation=cv2.INTER_AREA)
    small = np.pad(small, ((35, 35), (0, 0), (0, 0)), mode="edge")
    pair = np.ascontiguousarray(np.concatenate([small, head], 1))  # the larger on the right
    with pytest.warns(UserWarning, match="2 faces found in pair.png"):
        face = detect_face(pair, "pair.png")
    assert face.box[0] > small.shape[1]
    assert face.width == pytest.approx(detect_face(head).width, rel=0.1)


def test_one_face_does_not_warn(astronaut):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detect_face(astronaut).width > 80


def test_tiny_face_is_refused_with_advice(astronaut):
    tiny = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceNotFoundError, match=r"tiny.png is only \d+ px wide") as err:
        detect_face(tiny, "tiny.png")
    assert "at least 80 px" in str(err.value) and "crop closer" in str(err.value)
