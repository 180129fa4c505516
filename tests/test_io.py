"""Tests for puppetry.io: every image mode, every error, atomic video writing."""
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from puppetry import io
from puppetry.io import (ImageError, contact_sheet, load_image, read_video_frames,
                         video_info, write_image, write_video)

H, W = 24, 32  # px, size of the generated test images


def _save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def _gradient16():
    return np.tile(np.linspace(0, 65535, W).round().astype(np.uint16), (H, 1))


def _clip(n, h=48, w=64):
    """n frames whose brightness ramps, uint8[h x w x 3]."""
    return (np.full((h, w, 3), 10 + 8 * i, np.uint8) for i in range(n))


# ---- load_image: modes -----------------------------------------------------------------

@pytest.mark.parametrize("mode, value, expected", [
    ("RGB", (200, 100, 50), (200, 100, 50)),
    ("L", 128, (128, 128, 128)),
    ("1", 1, (255, 255, 255)),
    ("LA", (0, 0), (255, 255, 255)),             # fully transparent -> white
    ("RGBA", (255, 0, 0, 128), (255, 127, 127)),  # half red over white
    ("RGBA", (0, 0, 255, 255), (0, 0, 255)),
])
def test_modes_round_trip(tmp_path, mode, value, expected):
    rgb = load_image(_save(tmp_path, "x.png", Image.new(mode, (W, H), value)))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[0, 0], expected, atol=1)


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.new("P", (W, H), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    np.testing.assert_array_equal(load_image(_save(tmp_path, "p.png", im))[0, 0], (10, 200, 30))
    im.info["transparency"] = 1
    np.testing.assert_array_equal(load_image(_save(tmp_path, "pt.png", im))[0, 0], (255,) * 3)
    gif = load_image(_save(tmp_path, "p.gif", im))
    assert gif.shape == (H, W, 3) and (gif == 255).all()


@pytest.mark.parametrize("name", ["g16.png", "g16.tif"])
def test_16bit_gradient_keeps_its_range(tmp_path, name):
    rgb = load_image(_save(tmp_path, name, Image.fromarray(_gradient16())))
    assert rgb.shape == (H, W, 3)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255
    assert (np.diff(rgb[0, :, 0].astype(int)) > 0).all()  # still a strict ramp


def test_32bit_int_and_float_tiff(tmp_path):
    i32 = Image.fromarray(_gradient16().astype(np.int32))
    assert i32.mode == "I"
    assert load_image(_save(tmp_path, "i.tif", i32))[0, [0, -1], 0].tolist() == [0, 255]
    f01 = Image.fromarray((_gradient16() / 65535).astype(np.float32))
    assert f01.mode == "F"
    assert load_image(_save(tmp_path, "f.tif", f01))[0, [0, -1], 0].tolist() == [0, 255]


def test_cmyk_jpeg(tmp_path):
    rgb = load_image(_save(tmp_path, "c.jpg", Image.new("CMYK", (W, H), (0, 255, 255, 0))))
    assert rgb.shape == (H, W, 3)
    np.testing.assert_allclose(rgb[H // 2, W // 2], (255, 0, 0), atol=8)


def test_exif_orientation_rotates(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    im = Image.new("RGB", (W, H), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 4, 4))  # white top-left corner
    rgb = load_image(_save(tmp_path, "o.jpg", im, exif=exif, quality=95))
    assert rgb.shape == (W, H, 3)
    assert rgb[1, -2].mean() > 200 and rgb[1, 1].mean() < 50  # corner moved to top-right


# ---- load_image: errors ----------------------------------------------------------------

def _bomb_png(path, w=20_000, h=20_000):
    """A PNG claiming w x h px, without the pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"")
                     + chunk(b"IEND", b""))
    return path


def _truncated_jpeg(tmp_path):
    path = _save(tmp_path, "cut.jpg", Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    path.write_bytes(path.read_bytes()[:800])
    return path


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.jpg", "not found"),
    (lambda d: (d / "folder.jpg").mkdir() or d / "folder.jpg", "folder"),
    (lambda d: (d / "empty.jpg").write_bytes(b"") or d / "empty.jpg", "empty"),
    (lambda d: (d / "notes.jpg").write_text("hello") and d / "notes.jpg",
     "cannot identify image file"),
    (_truncated_jpeg, "not a readable image"),
    (_bomb_png, "MAX_IMAGE_PIXELS"),
])
def test_errors_name_the_file(tmp_path, make, words):
    path = make(tmp_path / "bomb.png" if make is _bomb_png else tmp_path)
    with pytest.raises(ImageError, match=words) as err:
        load_image(path)
    assert path.name in str(err.value) and ": " in str(err.value)  # names file and fix


def test_max_pixels_guard(tmp_path, monkeypatch):
    path = _save(tmp_path, "big.png", Image.new("RGB", (W, H)))
    from puppetry import limits
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", W * H - 1)
    with pytest.raises(ImageError, match="big.png.*MAX_IMAGE_PIXELS"):
        load_image(path)


# ---- write_image -----------------------------------------------------------------------

def test_write_image_round_trip(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (H, W, 3), np.uint8)
    np.testing.assert_array_equal(load_image(write_image(tmp_path / "a/b.png", rgb)), rgb)
    smooth = np.dstack([_gradient16() // 257] * 3).astype(np.uint8)
    assert np.abs(load_image(write_image(tmp_path / "c.jpg", smooth)).astype(int) - smooth).max() < 8
    with pytest.raises(ValueError, match=".png or .jpg"):
        write_image(tmp_path / "x.bmp", rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.jpg"]


# ---- write_video -----------------------------------------------------------------------

def test_write_video_info_and_frames(tmp_path):
    out = write_video(tmp_path / "new/dir/v.mp4", _clip(10), fps=25)
    info = video_info(out)
    assert (info["n_frames"], info["width"], info["height"]) == (10, 64, 48)
    assert info["fps"] == 25 and info["duration"] == pytest.approx(0.4)
    assert not info["has_audio"] and info["audio_duration"] is None
    means = [f.mean() for f in read_video_frames(out)]
    np.testing.assert_allclose(means, [10 + 8 * i for i in range(10)], atol=2)


def test_odd_size_is_padded(tmp_path):
    info = video_info(write_video(tmp_path / "odd.mp4", _clip(3, 47, 63)))
    assert (info["width"], info["height"], info["n_frames"]) == (64, 48, 3)


@pytest.mark.parametrize("as_file", [False, True])
def test_audio_duration_matches(tmp_path, as_file):
    sr, fps, n = 16_000, 25, 25
    t = np.arange(sr) / sr  # 1 s
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    audio = (samples, sr)
    if as_file:
        sf.write(tmp_path / "a.wav", samples, sr)
        audio = tmp_path / "a.wav"
    info = video_info(write_video(tmp_path / "av.mp4", _clip(n), fps=fps, audio=audio))
    assert info["has_audio"] and info["n_frames"] == n
    assert info["audio_duration"] == pytest.approx(1.0, abs=1 / fps)


def _failing(n_ok):
    yield from _clip(n_ok)
    raise RuntimeError("renderer crashed")


@pytest.mark.parametrize("frames, kw, error, words", [
    (lambda: _failing(5), {}, RuntimeError, "renderer crashed"),
    (lambda: _clip(5), {"audio": "notes.wav"}, RuntimeError,  # ffmpeg fails, log quoted
     "(?s)ffmpeg could not write.*Error opening input.*notes.wav"),
    (lambda: iter([np.zeros((48, 64, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)]), {},
     ValueError, "same size"),
    (lambda: iter([np.zeros((48, 64), np.float32)]), {}, ValueError, "uint8"),
])
def test_failure_leaves_target_untouched(tmp_path, frames, kw, error, words):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous video")
    (tmp_path / "notes.wav").write_text("not audio")
    kw = {k: tmp_path / v for k, v in kw.items()}
    with pytest.raises(error, match=words):
        write_video(target, frames(), **kw)
    assert target.read_bytes() == b"previous video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.wav", "out.mp4"]  # no temp


def test_refuses_to_overwrite_an_input(tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"source")
    with pytest.raises(ValueError, match="in.mp4"):
        write_video(tmp_path / "." / "in.mp4", _clip(2), inputs=[src])
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16_000)
    with pytest.raises(ValueError, match="a.wav"):
        write_video(tmp_path / "a.wav", _clip(2), audio=tmp_path / "a.wav")
    assert src.read_bytes() == b"source"
    with pytest.raises(ValueError, match="crf"):
        write_video(tmp_path / "v.mp4", _clip(2), crf=99)
    with pytest.raises(ValueError, match="mono"):
        write_video(tmp_path / "v.mp4", _clip(2), audio=(np.zeros((100, 2)), 16_000))


# ---- video formats: the file is what its name says ---------------------------------------

@pytest.mark.parametrize("name, container, video_codec, audio_codec", [
    ("v.mp4", "mp4", "h264", "aac"),
    ("v.MOV", "mov", "h264", "aac"),
    ("v.mkv", "matroska", "h264", "aac"),
    ("v.webm", "matroska", "vp9", "opus"),          # WebM is Matroska to FFmpeg's demuxer
    ("noext", "mp4", "h264", "aac"),                # no suffix: MP4, the default
])
def test_each_format_is_written_as_named(tmp_path, name, container, video_codec, audio_codec):
    import av
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)).astype(np.float32)
    out = write_video(tmp_path / name, _clip(25), fps=25, audio=(tone, 16_000))
    with av.open(str(out)) as f:
        assert container in f.format.name.split(",")
        assert f.streams.video[0].codec_context.name == video_codec
        assert f.streams.audio[0].codec_context.name == audio_codec
        means = [frame.to_ndarray(format="rgb24").mean() for frame in f.decode(video=0)]
    np.testing.assert_allclose(means, [10 + 8 * i for i in range(25)], atol=3)
    info = video_info(out)
    assert info["n_frames"] == 25 and info["has_audio"]


def test_gif_has_the_frames_and_says_the_sound_is_left_out(tmp_path):
    import av
    tone = np.full(16_000, 0.1, np.float32)
    with pytest.warns(UserWarning, match="v.gif: animated GIF, no sound: the speech is left out"):
        out = write_video(tmp_path / "v.gif", _clip(10), fps=25, audio=(tone, 16_000))
    assert out.read_bytes()[:6] == b"GIF89a"
    with av.open(str(out)) as f:
        assert not f.streams.audio
        means = [frame.to_ndarray(format="rgb24").mean() for frame in f.decode(video=0)]
    np.testing.assert_allclose(means, [10 + 8 * i for i in range(10)], atol=3)


@pytest.mark.parametrize("name", ["x.avi", "x.txt", "x.png", "x.mp3", "x.wav", "x.json"])
def test_other_names_are_refused_with_the_formats(tmp_path, name):
    with pytest.raises(io.OutputError, match=rf"cannot write .*{name}.*\.mp4.*\.webm.*\.gif"):
        io.check_video_path(tmp_path / name)
    with pytest.raises(io.OutputError, match="not a video format"):
        write_video(tmp_path / name, _clip(2))
    assert list(tmp_path.iterdir()) == []                  # nothing written, no temp left


# ---- contact_sheet ---------------------------------------------------------------------

def test_contact_sheet_layout_and_labels():
    frames = [np.full((48, 64, 3), i, np.uint8) for i in range(40)]
    sheet = contact_sheet(frames, cols=4, rows=2, tile=64)
    assert sheet.shape == (2 * 48 + 2, 4 * 64 + 6, 3) and sheet.dtype == np.uint8
    assert sheet[0, 0, 0] == 0 and sheet[-1, -1, 0] == 39  # first and last frame
    assert (sheet[:, 64:66] == io.GAP_GRAY).all()  # gap column
    labelled = contact_sheet(frames, cols=4, rows=2, tile=64,
                             labels=[f"t={i / 25:.2f}s" for i in range(40)])
    assert labelled.shape == sheet.shape and (labelled != sheet).any()
    assert contact_sheet(frames[:3], cols=4, rows=4, tile=64).shape == (48, 4 * 64 + 6, 3)


@pytest.mark.parametrize("command", [["render", "astronaut", "--motion", "nod"],
                                     ["animate", "astronaut", "--text", "Hello"]])
def test_the_cli_refuses_an_unknown_video_format_before_any_work(tmp_path, capsys, command):
    from puppetry.cli import main
    assert main([*command, "-o", str(tmp_path / "out.avi")]) == 1
    assert "out.avi: .avi is not a video format puppetry writes" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_9000_px_square_photo_is_refused_from_its_header(tmp_path):
    path = _save(tmp_path, "huge.png", Image.new("1", (9000, 9000)))   # 81 MP, a few kB
    with pytest.raises(ImageError, match="huge.png is 9000 x 9000 px.*MAX_IMAGE_PIXELS"):
        load_image(path)
