"""load_portrait on awkward files: every image mode, EXIF rotation, huge, broken, faceless.

Every file is made in tmp_path from the bundled portrait; a good one must give the same
face, at the same place on the canvas, as the bundled portrait itself.
"""
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from puppetry import load_portrait
from puppetry.face.tracker import FaceNotFoundError
from puppetry.io import ImageError
from puppetry.portrait import bundled_portrait

SAME_PLACE_PX = 6   # mean landmark distance to the bundled portrait's, canvas pixels


@pytest.fixture(scope="module")
def reference():
    return load_portrait("astronaut")


@pytest.fixture(scope="module")
def astronaut():
    return bundled_portrait()


def _gray(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _exif_rotated(path, rgb):
    """Stored on its side with EXIF orientation 6 (turn 90° clockwise to view)."""
    im = Image.fromarray(np.ascontiguousarray(np.rot90(rgb)))     # 90° counter-clockwise
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, quality=95, exif=exif)


def _rgba(path, rgb):
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0                                              # a transparent strip
    Image.fromarray(np.dstack([rgb, alpha])).save(path)


WRITERS = {
    "gray.png": lambda path, rgb: Image.fromarray(_gray(rgb)).save(path),
    "rgba.png": _rgba,
    "gray16.png": lambda path, rgb: Image.fromarray(_gray(rgb).astype(np.uint16) * 257).save(path),
    "rgb48.png": lambda path, rgb: cv2.imwrite(str(path), rgb[..., ::-1].astype(np.uint16) * 257),
    "cmyk.jpg": lambda path, rgb: Image.fromarray(rgb).convert("CMYK").save(path, quality=95),
    "rotated.jpg": _exif_rotated,
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_image_modes_load_and_find_the_face(tmp_path, astronaut, reference, name):
    path = tmp_path / name
    WRITERS[name](path, astronaut)
    p = load_portrait(path)
    assert p.image.shape == (512, 512, 3) and p.image.dtype == np.uint8
    assert p.name == name
    offset = np.linalg.norm(p.landmarks[:468, :2] - reference.landmarks[:468, :2], axis=1)
    assert offset.mean() < SAME_PLACE_PX, f"{name}: face moved {offset.mean():.1f} px"
    assert p.landmarks[10, 1] < p.landmarks[152, 1]               # upright: forehead above chin


@pytest.mark.parametrize("w, h", [(9000, 9000), (65000, 9000)])
def test_a_header_over_the_pixel_limit_names_our_limit(tmp_path, w, h):
    """Only a header is needed: the limit is checked before decoding. 65000 x 9000 meets
    PIL's own bomb guard first, whose message quoted PIL's 179 MP, not our limit."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))
    path = tmp_path / "poster.png"
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)            # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    words = r"poster.png is .*\b64 million pixels.*MAX_IMAGE_PIXELS"
    with pytest.raises(ImageError, match=words) as e:
        load_portrait(path)
    assert "178956970" not in str(e.value) and "179" not in str(e.value)


def test_huge_image(tmp_path, astronaut, reference):
    path = tmp_path / "huge.jpg"
    Image.fromarray(cv2.resize(astronaut, (4000, 4000), interpolation=cv2.INTER_CUBIC)).save(
        path, quality=90)
    p = load_portrait(path, size=384)
    assert p.size == (384, 384) and p.alpha.shape == (384, 384)
    offset = np.linalg.norm(p.landmarks[:468, :2] - reference.landmarks[:468, :2] * 384 / 512, axis=1)
    assert offset.mean() < SAME_PLACE_PX


def test_corrupt_file_is_named(tmp_path, astronaut):
    path = tmp_path / "broken.jpg"
    Image.fromarray(astronaut).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[:600] + bytes(range(256)) * 8 + data[-2:])  # header, then garbage
    with pytest.raises(ImageError, match="broken.jpg"):
        load_portrait(path)


def test_truncated_file_is_named(tmp_path, astronaut):
    path = tmp_path / "half.png"
    Image.fromarray(astronaut).save(path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ImageError, match="half.png"):
        load_portrait(path)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n")
    with pytest.raises(ImageError, match="notes.jpg is not a readable image"):
        load_portrait(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="nowhere.jpg not found"):
        load_portrait(tmp_path / "nowhere.jpg")


def test_image_without_a_face(tmp_path, astronaut):
    path = tmp_path / "wall.png"
    Image.fromarray(cv2.GaussianBlur(astronaut, (0, 0), 40)).save(path)
    with pytest.raises(FaceNotFoundError, match="no face found in wall.png"):
        load_portrait(path)


def test_tiny_face_gives_advice(tmp_path, astronaut):
    path = tmp_path / "thumb.png"
    Image.fromarray(cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)).save(path)
    with pytest.raises(FaceNotFoundError, match=r"thumb.png is only \d+ px wide") as err:
        load_portrait(path)
    assert "at least 80 px" in str(err.value)


def test_face_small_in_a_large_photo(astronaut):
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # face ~184 px
    photo = np.pad(big, ((512, 512), (512, 512), (0, 0)), mode="edge")        # 2048 px
    assert load_portrait(photo).iod > 40


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_face_on_its_side_or_upside_down_animates_upright(astronaut, turns):
    """A photo turned by 90/180/270° is turned back (with a warning): the rendered face is
    upright, re-tracked (roll near 0, eyes above the mouth, forehead above the chin)."""
    from puppetry import DrivingFrame, WarpRenderer
    from puppetry.face.tracker import FaceTracker

    photo = np.ascontiguousarray(np.rot90(astronaut, turns))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = load_portrait(photo, size=256)
    said = [str(w.message) for w in caught if "upright" in str(w.message)]
    assert len(said) == (turns != 0), said
    frame = WarpRenderer(p).render_frame(DrivingFrame.make(expression={"jawOpen": 0.5}))
    tracker = FaceTracker(static=True)
    lm = tracker.track(frame).landmarks
    tracker.close()
    up = lm[10, :2] - lm[152, :2]                                   # chin -> forehead
    roll = np.degrees(np.arctan2(up[0], -up[1]))
    assert abs(roll) < 15, f"turned {turns}: rendered face rolled {roll:.0f}°"
    assert lm[[33, 263], 1].max() < lm[[13, 14], 1].min()          # eyes above the mouth
