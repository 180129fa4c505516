"""ARKit expression curves to JSON and CSV, and back."""
import csv
import json

import numpy as np
import pytest

from puppetry.expression.arkit import ARKIT_NAMES, INDEX, N_EXPRESSIONS
from puppetry.expression.export import DECIMALS, CurvesError, read_curves, write_curves


@pytest.fixture
def curves():
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 1, (12, N_EXPRESSIONS)).astype(np.float32)
    e[:, INDEX["tongueOut"]] = 0
    e[0, 0], e[1, 1] = 1.0, 0.0
    return e


@pytest.mark.parametrize("suffix", [".json", ".csv"])
@pytest.mark.parametrize("fps", [25, 30, 29.97])
def test_round_trip(tmp_path, curves, suffix, fps):
    path = write_curves(tmp_path / f"talk{suffix}", curves, fps)
    back, back_fps = read_curves(path)
    assert back.shape == curves.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, curves, atol=0.5 * 10 ** -DECIMALS + 1e-7)
    assert back_fps == pytest.approx(fps, abs=1e-3)
    assert [p.name for p in tmp_path.iterdir()] == [f"talk{suffix}"]   # no temp files left


def test_json_is_the_arkit_blendshape_format(tmp_path, curves):
    path = write_curves(tmp_path / "talk.json", curves, 25)
    data = json.loads(path.read_text())
    assert data["fps"] == 25 and data["names"] == list(ARKIT_NAMES)
    assert len(data["frames"]) == len(curves)
    frame = data["frames"][3]
    assert frame["t"] == pytest.approx(0.12)
    assert list(frame["weights"]) == list(ARKIT_NAMES)              # all 52, every frame
    assert all(round(w, DECIMALS) == w for w in frame["weights"].values())
    assert frame["weights"]["jawOpen"] == round(float(curves[3, INDEX["jawOpen"]]), DECIMALS)


def test_csv_layout(tmp_path, curves):
    path = write_curves(tmp_path / "talk.csv", curves, 25)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["time", *ARKIT_NAMES]
    assert len(rows) == len(curves) + 1
    assert float(rows[2][0]) == pytest.approx(0.04)
    assert all(len(r) == N_EXPRESSIONS + 1 for r in rows)


def test_subset_of_names(tmp_path, curves):
    names = ("jawOpen", "mouthClose", "mouthFunnel")
    for suffix in (".json", ".csv"):
        back, _ = read_curves(write_curves(tmp_path / f"s{suffix}", curves, 25, names=names))
        columns = [INDEX[n] for n in names]
        np.testing.assert_allclose(back[:, columns], curves[:, columns], atol=1e-4)
        back[:, columns] = 0
        assert not back.any()                                      # the rest read as 0


def test_errors(tmp_path, curves):
    with pytest.raises(CurvesError, match=r"\.json or \.csv"):
        write_curves(tmp_path / "talk.fbx", curves, 25)
    with pytest.raises(CurvesError, match=r"\.json or \.csv"):
        read_curves(tmp_path / "talk.txt")
    with pytest.raises(CurvesError, match="T x 52"):
        write_curves(tmp_path / "a.json", curves[:, :19], 25)
    with pytest.raises(CurvesError, match="clip"):
        write_curves(tmp_path / "a.json", curves * 2, 25)
    with pytest.raises(CurvesError, match="fps"):
        write_curves(tmp_path / "a.json", curves, 0)
    with pytest.raises(ValueError, match="Did you mean jawOpen"):
        write_curves(tmp_path / "a.json", curves, 25, names=("jawOpn",))
    with pytest.raises(CurvesError, match="not found"):
        read_curves(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("time,jawOpen\n0,0.5\n0.04\n")
    with pytest.raises(CurvesError, match="2 numbers"):
        read_curves(tmp_path / "bad.csv")


def test_failed_write_keeps_the_old_file(tmp_path, curves):
    path = write_curves(tmp_path / "talk.json", curves, 25)
    before = path.read_text()
    with pytest.raises(CurvesError):
        write_curves(path, np.full_like(curves, np.nan), 25)
    assert path.read_text() == before
