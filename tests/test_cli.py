"""The ``puppetry`` command end to end: presets, motion files and its error messages."""
import json

import pytest
from PIL import Image

from puppetry.cli import main
from puppetry.expression.arkit import ARKIT_NAMES
from puppetry.io import video_info
from puppetry.portrait import bundled_portrait


def render(*args):
    return main(["render", *map(str, args)])


@pytest.fixture(scope="module")
def portrait_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("portrait") / "collins.png"
    Image.fromarray(bundled_portrait()).save(path)
    return path


def test_render_a_preset(tmp_path, capsys):
    out = tmp_path / "x.mp4"
    assert render("astronaut", "--motion", "nod", "--duration", 0.4, "-o", out) == 0
    info = video_info(out)
    assert (info["n_frames"], info["width"], info["height"]) == (10, 512, 512)
    assert info["fps"] == pytest.approx(25)
    assert f"wrote {out}: 10 frames" in capsys.readouterr().out


def test_render_a_motion_file(tmp_path, portrait_file):
    motion = tmp_path / "turn.json"
    motion.write_text(json.dumps({"fps": 20, "frames": [
        {"t": 0.0},
        {"t": 0.25, "yaw": 12, "expression": {"jawOpen": 0.6, "eyeBlinkLeft": 1}}]}))
    out = tmp_path / "turn.mp4"
    assert render(portrait_file, "--motion", motion, "--size", 256, "-o", out) == 0
    info = video_info(out)
    assert (info["n_frames"], info["width"], info["height"]) == (6, 256, 256)
    assert info["fps"] == pytest.approx(20)


def test_unknown_expression_lists_the_valid_names(tmp_path, capsys):
    motion = tmp_path / "bad.json"
    motion.write_text(json.dumps({"frames": [{"t": 0, "expression": {"jawOpn": 1}}]}))
    out = tmp_path / "bad.mp4"
    assert render("astronaut", "--motion", motion, "-o", out) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "'jawOpn'" in err and "jawOpen" in err
    assert all(name in err for name in ARKIT_NAMES)
    assert not out.exists()


def test_malformed_json_gives_line_and_column(tmp_path, capsys):
    motion = tmp_path / "broken.json"
    motion.write_text('{"fps": 25,\n "frames": [{"t": 0,}]}\n')
    assert render("astronaut", "--motion", motion, "-o", tmp_path / "o.mp4") == 1
    err = capsys.readouterr().err
    assert "broken.json" in err and "line 2, column 21" in err


def test_unknown_preset_names_the_presets(tmp_path, capsys):
    assert render("astronaut", "--motion", "dance", "-o", tmp_path / "o.mp4") == 1
    err = capsys.readouterr().err
    assert "'dance'" in err and "nod" in err and "talk-idle" in err


def test_output_onto_the_portrait_is_refused(portrait_file, capsys):
    before = portrait_file.read_bytes()
    assert render(portrait_file, "--motion", "blink", "--duration", 0.2, "-o", portrait_file) == 1
    assert "refusing to write" in capsys.readouterr().err
    assert portrait_file.read_bytes() == before
    assert list(portrait_file.parent.iterdir()) == [portrait_file]   # no temp file left


def test_missing_portrait_is_named(tmp_path, capsys):
    missing = tmp_path / "no_such_photo.jpg"
    assert render(missing, "--motion", "nod", "-o", tmp_path / "o.mp4") == 1
    err = capsys.readouterr().err
    assert str(missing) in err and err.startswith("puppetry render: error:")
    assert not (tmp_path / "o.mp4").exists()


def test_portrait_without_a_face(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (120, 130, 140)).save(blank)
    assert render(blank, "--motion", "nod", "-o", tmp_path / "o.mp4") == 1
    assert "no face found in blank.png" in capsys.readouterr().err
