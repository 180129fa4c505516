"""No command loses the user's work: outputs are checked before any work is done (never an
input, never a device node, never a read-only file unless --force), and written atomically."""
import os
import stat

import numpy as np
import pytest

from puppetry.cli import main
from puppetry.expression.export import write_curves
from puppetry.io import OutputError, check_output, write_image, write_video

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="making a device node needs root")


@pytest.fixture
def clip(tmp_path):
    """A 4-frame video with no face: enough to be an input that must survive."""
    path = tmp_path / "talk.mp4"
    write_video(path, (np.full((64, 64, 3), 40 * i, np.uint8) for i in range(4)), fps=25)
    return path


def test_fit_style_refuses_to_write_over_its_input_video(clip, capsys):
    before = clip.read_bytes()
    assert main(["fit-style", str(clip), "-o", str(clip)]) == 1
    assert "one of the inputs" in capsys.readouterr().err
    assert clip.read_bytes() == before


def test_fit_style_refuses_its_input_through_a_link(clip, tmp_path, capsys):
    link = tmp_path / "style.json"
    link.symlink_to(clip)
    before = clip.read_bytes()
    assert main(["fit-style", str(clip), "-o", str(link)]) == 1
    assert clip.read_bytes() == before and link.is_symlink()


@needs_root
def test_a_device_node_is_never_replaced(tmp_path, capsys):
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))      # a copy of /dev/null
    assert main(["render", "astronaut", "--motion", "nod", "--duration", "0.2", "-o", str(node)]) == 1
    assert "character device" in capsys.readouterr().err
    assert stat.S_ISCHR(os.stat(node).st_mode)
    curves = tmp_path / "curves.json"
    os.mknod(curves, stat.S_IFCHR | 0o666, os.makedev(1, 7))    # a copy of /dev/full
    with pytest.raises(OutputError, match="not a regular file"):
        write_curves(curves, np.zeros((2, 52)), 25)
    assert stat.S_ISCHR(os.stat(node).st_mode) and stat.S_ISCHR(os.stat(curves).st_mode)


def test_a_link_to_the_system_null_device_is_refused(tmp_path):
    link = tmp_path / "out.png"
    link.symlink_to("/dev/null")
    with pytest.raises(OutputError, match="character device"):
        write_image(link, np.zeros((8, 8, 3), np.uint8))
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_read_only_output_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    out.chmod(0o444)
    args = ["render", "astronaut", "--motion", "nod", "--duration", "0.2", "--size", "256", "-o", str(out)]
    assert main(args) == 1
    assert "read-only" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main(args + ["--force"]) == 0
    assert out.read_bytes()[4:8] == b"ftyp"                   # an mp4 now


def test_check_output_accepts_new_paths_and_writable_files_and_refuses_folders(tmp_path):
    assert check_output(tmp_path / "new.mp4") == tmp_path / "new.mp4"
    (tmp_path / "old.mp4").write_bytes(b"x")
    check_output(tmp_path / "old.mp4")
    with pytest.raises(OutputError, match="folder"):
        check_output(tmp_path)


def test_failed_write_leaves_no_temp_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "curves.json"
    out.write_text("old")
    with pytest.raises(ValueError):
        write_curves(out, np.full((2, 52), np.nan), 25)
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.json"]
