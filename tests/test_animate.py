"""`puppetry animate` end to end on generated audio: sync, duration, bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from puppetry.audio import SAMPLE_RATE
from puppetry.cli import main
from puppetry.expression.arkit import INDEX
from puppetry.io import video_info, write_video
from puppetry.pipeline import AnimateJob, speech_to_motion


def syllables(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A vowel-like buzz switched on and off at 4 Hz: speech-shaped energy."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1100), 1))
    gate = (np.sin(2 * np.pi * 4 * t) > 0).astype(float)
    return (0.2 * buzz * gate).astype(np.float32)


def test_video_has_the_speech_in_sync(tmp_path):
    wav = tmp_path / "speech.wav"
    sf.write(wav, syllables(1.2, 44100), 44100)                      # any rate in
    out, curves = tmp_path / "out.mp4", tmp_path / "curves.json"
    assert main(["animate", "astronaut", str(wav), "-o", str(out), "--size", "256",
                 "--expressions-out", str(curves)]) == 0
    info = video_info(out)
    assert info["has_audio"] and info["n_frames"] == 30 and info["width"] == 256
    assert abs(info["audio_duration"] - 1.2) < 1 / 25
    data = json.loads(curves.read_text())
    assert data["fps"] == 25 and len(data["frames"]) == 30 and len(data["names"]) == 52


def test_silence_gives_an_idle_face_and_short_audio_works():
    silent = speech_to_motion(np.zeros(2 * SAMPLE_RATE, np.float32))
    assert len(silent) == 50
    assert silent.expression[:, INDEX["jawOpen"]].max() < 0.1           # mouth at rest
    assert len(speech_to_motion(syllables(0.1))) in (2, 3)              # 0.1 s: a few frames


def test_still_keeps_the_head_still_and_the_mouth_moving():
    audio = syllables(3.0)
    moving = speech_to_motion(audio)
    still = speech_to_motion(audio, AnimateJob(still=True))
    assert still.rotation.std() == 0 and moving.rotation[:, 0].std() > 0.5
    jaw = still.expression[:, INDEX["jawOpen"]]
    assert jaw.max() - jaw.min() > 0.05                                  # speech still drives it


def test_audio_track_of_a_video(tmp_path):
    clip = tmp_path / "clip.mp4"
    frames = (np.full((64, 64, 3), 128, np.uint8) for _ in range(20))
    write_video(clip, frames, fps=25, audio=(syllables(0.8), SAMPLE_RATE))
    out = tmp_path / "out.mp4"
    assert main(["animate", "astronaut", str(clip), "-o", str(out), "--size", "256", "--still"]) == 0
    assert abs(video_info(out)["n_frames"] - 20) <= 1          # AAC pads its track by ~20 ms


@pytest.mark.parametrize("content", [b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVEjunk"])
def test_unreadable_audio_is_refused_with_the_formats(tmp_path, capsys, content):
    bad = tmp_path / "speech.wav"
    bad.write_bytes(content)
    out = tmp_path / "out.mp4"
    assert main(["animate", "astronaut", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "speech.wav" in err and not out.exists()


def test_text_must_not_be_empty_and_audio_or_text_is_required(tmp_path, capsys):
    out = str(tmp_path / "out.mp4")
    assert main(["animate", "astronaut", "--text", "   ", "-o", out]) == 1
    assert "--text is empty" in capsys.readouterr().err
    assert main(["animate", "astronaut", "-o", out]) == 1
    assert "AUDIO file or --text" in capsys.readouterr().err


def test_output_onto_the_audio_is_refused(tmp_path, capsys):
    wav = tmp_path / "speech.wav"
    sf.write(wav, syllables(0.5), SAMPLE_RATE)
    before = wav.read_bytes()
    assert main(["animate", "astronaut", str(wav), "-o", str(wav)]) == 1
    assert "one of the inputs" in capsys.readouterr().err and wav.read_bytes() == before


def test_speech_activity_is_zero_in_silence_and_past_the_end():
    from puppetry.expression.speech import speech_activity
    audio = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), syllables(1.0)])
    gate = speech_activity(audio, n_frames=60)                    # 10 frames past the end
    assert gate.shape == (60,) and gate[:20].max() == 0 and gate[30:45].max() == 1
    assert gate[-5:].max() == 0


def _python(*args, timeout=240):
    """``python ARGS`` in a fresh process: nothing loaded yet, as when ``puppetry animate``
    starts (the path that reads the portrait and features in a forked process)."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _run_cli(*args):
    return _python("-m", "puppetry.cli", *args)


def test_fresh_process_animates_with_the_forked_reader(tmp_path):
    wav, out = tmp_path / "speech.wav", tmp_path / "out.mp4"
    sf.write(wav, syllables(2.5), SAMPLE_RATE)
    done = _run_cli("animate", "astronaut", wav, "-o", out, "--size", "256")
    assert done.returncode == 0, done.stderr[-2000:]
    info = video_info(out)
    assert info["n_frames"] == round(2.5 * 25) and info["has_audio"]


def test_fresh_process_reports_a_portrait_without_a_face(tmp_path):
    wav, out, blank = tmp_path / "speech.wav", tmp_path / "out.mp4", tmp_path / "wall.png"
    sf.write(wav, syllables(1.0), SAMPLE_RATE)
    from puppetry.io import write_image
    write_image(blank, np.full((256, 256, 3), 200, np.uint8))
    done = _run_cli("animate", blank, wav, "-o", out)
    assert done.returncode == 1 and not out.exists()
    assert "face" in done.stderr and "Traceback" not in done.stderr


def test_precomputed_features_give_the_same_curves():
    from puppetry.expression.speech import SpeechToExpression
    from puppetry.features import load_features
    s2e = SpeechToExpression.load()
    audio = syllables(1.5)
    feats = load_features(s2e.dims.features)(audio)
    assert np.array_equal(s2e(audio, features=feats), s2e(audio))
    with pytest.raises(ValueError, match="do not fit"):
        s2e(audio, features=feats[:-3])


def test_shipped_models_name_their_features_without_torch():
    from puppetry.expression.model import Audio2Expression
    from puppetry.expression.shipped import FEATURES, default_features, default_model_path
    assert Audio2Expression.load(default_model_path()).dims.features == default_features()
    for name, spec in FEATURES.items():
        assert Audio2Expression.load(default_model_path().with_name(name)).dims.features == spec


def test_import_puppetry_loads_neither_torch_nor_mediapipe():
    code = ("import sys, puppetry, puppetry.features.whisper, puppetry.features.mel; "
            "print(sorted({'torch', 'mediapipe', 'matplotlib'} & set(sys.modules)))")
    done = _python("-c", code, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_mediapipe_import_leaves_matplotlib_unloaded_and_usable():
    code = ("import sys; from puppetry.face.tracker import _import_solutions; s = _import_solutions(); "
            "assert 'matplotlib' not in sys.modules and s.face_mesh.FaceMesh; "
            "import matplotlib.pyplot as plt; print(callable(plt.plot))")
    done = _python("-c", code, timeout=60)
    assert done.stdout.strip() == "True", done.stderr[-2000:]


def test_fork_is_not_used_once_mediapipe_runs():
    from puppetry.face.tracker import _import_solutions
    from puppetry.runtime import beside, fork_is_safe
    _import_solutions()
    assert not fork_is_safe()
    with beside() as pool:
        assert type(pool).__name__ == "ThreadPoolExecutor"


def test_one_blas_thread_sets_every_loaded_openblas_and_forked_workers_inherit_it():
    code = """
import json, multiprocessing as mp, numpy, cv2
from puppetry.runtime import one_blas_thread, openblas_libraries

def counts(_=None):
    out = []
    for lib in openblas_libraries():
        get = getattr(lib, 'openblas_get_num_threads64_', None) or lib.openblas_get_num_threads
        out.append(get())
    return out

one_blas_thread()
with mp.get_context('fork').Pool(1) as pool:
    print(json.dumps([counts(), pool.map(counts, [0])[0]]))
"""
    done = _python("-c", code, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    here, forked = json.loads(done.stdout)
    assert here and set(here) == {1} and set(forked) == {1}, done.stdout   # numpy's and OpenCV's
