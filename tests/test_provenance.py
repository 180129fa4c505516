"""Provenance: the AI-generated tags and the invisible watermark on every written video,
and ``puppetry verify``."""
import json
import subprocess

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from skimage import data

from puppetry import provenance
from puppetry.cli import VERIFY_NOT_FOUND, main
from puppetry.io import write_video
from puppetry.provenance import Z_FOUND, detect, embed, verify

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _clip(image, n=20, size=(240, 320)):
    """n frames of ``image`` slowly zooming and drifting, uint8[size x 3] each."""
    h, w = image.shape[:2]
    frames = []
    for i in range(n):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.0 + 0.004 * i)
        m[0, 2] += 0.8 * i
        f = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA))
    return frames


def _raw_mp4(path, frames, fps=25):
    """Encode frames with ffmpeg directly: a video that puppetry did not make."""
    h, w = frames[0].shape[:2]
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-crf", "18",
                    "-pix_fmt", "yuv420p", str(path)],
                   input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    return path


def _half_crf28(src, dst):
    """What a sharing site does: re-encode at H.264 CRF 28, half size, tags dropped."""
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-i", str(src), "-vf",
                    "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-map_metadata", "-1", "-c:v", "libx264",
                    "-crf", "28", "-pix_fmt", "yuv420p", str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def coffee():
    return _clip(data.coffee())


def test_embed_is_invisible_and_leaves_its_input(coffee):
    frame = coffee[0]
    before = frame.copy()
    marked = embed(frame)
    assert np.array_equal(frame, before) and marked.shape == frame.shape
    assert cv2.PSNR(frame, marked) >= 38.0      # busy everywhere: the strongest mark
    flat = np.full((120, 160, 3), 128, np.uint8)
    assert cv2.PSNR(flat, embed(flat)) >= 48.0      # flat: the weakest
    d = marked.astype(int) - frame
    inside = (frame > 12).all(axis=2) & (frame < 243).all(axis=2)  # no saturation
    assert (d[inside, 0] == d[inside, 1]).all() and (d[inside, 1] == d[inside, 2]).all()
    assert abs(d.mean()) < 0.1                                        # no brightness shift
    out = frame.copy()
    assert embed(out, out=out) is out and np.array_equal(out, marked)  # in place
    with pytest.raises(ValueError, match="uint8"):
        embed(frame.astype(np.float32))


def test_round_trip_on_frames(coffee):
    found, z, p = detect(embed(f) for f in coffee)
    assert found and z > 2 * Z_FOUND and p < 1e-12
    found, z, p = detect(coffee)
    assert not found and abs(z) < 4 and p > 1e-4
    one = detect([embed(coffee[0])])                  # one frame already tells
    assert one[0]


@pytest.mark.parametrize("image", ["astronaut", "chelsea", "rocket", "camera", "noise"])
def test_unmarked_images_are_not_found(image):
    if image == "noise":
        rgb = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    else:
        rgb = getattr(data, image)()
        rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
    found, z, _ = detect(_clip(rgb, n=5))
    assert not found and abs(z) < 4
    # marked, the same frames stand out (astronaut's busy full frame the least: z ~ 4)
    assert detect(embed(f) for f in _clip(rgb, n=5))[1] > z + 3


def test_key_is_the_same_pattern_at_any_size():
    small, large = provenance.key(64, 96), provenance.key(256, 384)
    shrunk = cv2.resize(large, (96, 64), interpolation=cv2.INTER_AREA)
    assert np.corrcoef(small.ravel(), shrunk.ravel())[0, 1] > 0.9
    assert np.sqrt(np.mean(small ** 2)) == pytest.approx(1.0, abs=1e-3)


def test_survives_crf28_and_half_size(tmp_path):
    coffee = _clip(data.coffee(), size=(384, 512))   # 192 x 256 once shared
    marked = write_video(tmp_path / "ours.mp4", coffee)
    shared = _half_crf28(marked, tmp_path / "shared.mp4")
    report = verify(shared)
    assert report["watermark"] and report["z"] > Z_FOUND and report["frames"] == len(coffee)
    assert report["metadata"] == {}                     # the tags were stripped; the mark is not
    real = _half_crf28(_raw_mp4(tmp_path / "real.mp4", coffee), tmp_path / "real_shared.mp4")
    assert not verify(real)["watermark"]


def test_odd_sizes_padded_by_the_encoder(tmp_path):
    frames = _clip(data.chelsea(), n=10, size=(201, 299))
    out = write_video(tmp_path / "odd.mp4", frames)
    assert verify(out)["watermark"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_metadata_is_written(tmp_path, coffee, suffix):
    out = write_video(tmp_path / f"v{suffix}", coffee[:3])
    with av.open(str(out)) as c:
        tags = {k.lower(): v for k, v in c.metadata.items()}
    assert tags["ai_generated"] == "true"
    assert tags["ai_generator"] == f"puppetry {provenance.version()}"
    assert "AI-generated" in tags["comment"] and tags["digital_source_type"] == provenance.IPTC_AI
    # what ffprobe -show_format prints comes from the same demuxer: ffmpeg -i shows it too
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True,
                         text=True).stderr.lower()
    assert "ai_generated" in log and "ai-generated video" in log
    assert verify(out)["metadata"]["ai_generator"].startswith("puppetry")


def test_a_gif_carries_the_comment_and_the_mark(tmp_path, coffee):
    """GIF has no container tags ffmpeg writes: the AI-generated comment goes into a GIF
    Comment Extension, which ffmpeg (ffprobe) and verify read back."""
    out = write_video(tmp_path / "v.gif", coffee)
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True,
                         text=True).stderr
    assert "comment" in log and "AI-generated video" in log and "Input #0, gif" in log
    report = verify(out)
    assert report["watermark"] and "puppetry" in report["metadata"]["comment"]
    with av.open(str(out)) as c:                      # still a whole, decodable GIF
        assert sum(1 for _ in c.decode(video=0)) == len(coffee)


def test_verify_cli(tmp_path, coffee, capsys):
    ours = write_video(tmp_path / "ours.mp4", coffee)
    assert main(["verify", str(ours)]) == 0
    out = capsys.readouterr().out
    assert "watermark FOUND" in out and "ai_generator=puppetry" in out
    real = _raw_mp4(tmp_path / "real.mp4", coffee)
    assert main(["verify", str(real), "--json"]) == VERIFY_NOT_FOUND
    report = json.loads(capsys.readouterr().out)
    assert report["watermark"] is False and report["metadata"] == {} and report["frames"] == 20
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 1
    assert "not found" in capsys.readouterr().err
    (tmp_path / "text.mp4").write_text("not a video")
    assert main(["verify", str(tmp_path / "text.mp4")]) == 1


def test_server_frames_carry_the_mark(coffee):
    from ui.server import encode_frame
    frames = [cv2.imdecode(np.frombuffer(encode_frame(f, 80), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
              for f in coffee]
    assert detect(frames)[0]
    assert not detect(cv2.imdecode(cv2.imencode(".jpg", f[:, :, ::-1])[1], cv2.IMREAD_COLOR)
                      for f in coffee)[0]


def test_api_and_demo_videos_carry_the_tags_and_the_mark(tmp_path):
    """Issue 13: every video the toolkit writes, not only write_video's own: the API's
    ``render_video`` and the demo's Generate."""
    from puppetry.pipeline import RenderJob, render_video
    out = tmp_path / "api.mp4"
    render_video("astronaut", "talk-idle", out, RenderJob(size=256, duration=1.5))
    report = verify(out)
    assert report["watermark"] and report["metadata"]["ai_generated"] == "true"
    gr = pytest.importorskip("gradio")  # noqa: F841  (the demo needs the 'demo' extra)
    import soundfile as sf

    from puppetry.ui import demo
    t = np.arange(int(1.2 * 16000)) / 16000
    sf.write(tmp_path / "speech.wav", 0.2 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 4 * t) > 0), 16000)
    video, _, _ = demo.generate(demo._example_portrait(), str(tmp_path / "speech.wav"), "", size=256)
    report = verify(video)
    assert report["watermark"] and report["metadata"]["ai_generated"] == "true"
