"""Tests for puppetry.audio: every format, rate and layout to mono 16 kHz; every error."""
import subprocess
import tracemalloc

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from puppetry.audio import (SAMPLE_RATE, SAMPLES_PER_FRAME, AudioError, audio_duration,
                            from_pcm16, iter_audio, load_audio, to_pcm16)
from puppetry.drive import frames

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
TONE_HZ = 440.0  # test tone frequency
AMPLITUDE = 0.5  # test tone peak, in every channel
SECONDS = 2.0  # length of the generated clips
FRAME_S = 1 / frames.FPS  # one video frame, the tolerance on durations


def _tone(rate, channels=1, seconds=SECONDS, hz=TONE_HZ):
    """float32[n x channels]: the same sine in every channel."""
    t = np.arange(round(rate * seconds)) / rate
    return np.repeat((AMPLITUDE * np.sin(2 * np.pi * hz * t))[:, None], channels, 1) \
        .astype(np.float32)


def _ffmpeg(*args):
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", *map(str, args)], check=True)


def _peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * SAMPLE_RATE / len(x)


# ---- formats, rates and channel layouts --------------------------------------------------

# (file name, sample rate Hz, channels, ffmpeg audio codec or None for soundfile)
AUDIO_CASES = [
    ("mono8k.wav", 8000, 1, None),
    ("stereo44k.flac", 44100, 2, None),
    ("surround96k.wav", 96000, 6, None),  # 5.1
    ("stereo44k.mp3", 44100, 2, "libmp3lame"),
    ("mono48k.ogg", 48000, 1, "libvorbis"),
    ("stereo48k.opus", 48000, 2, "libopus"),
    ("stereo44k.m4a", 44100, 2, "aac"),
]


@pytest.mark.parametrize("name, rate, channels, codec", AUDIO_CASES)
def test_formats_rates_layouts(tmp_path, name, rate, channels, codec):
    path = tmp_path / name
    if codec is None:
        sf.write(path, _tone(rate, channels), rate)
    else:
        wav = tmp_path / "source.wav"
        sf.write(wav, _tone(rate, channels), rate)
        _ffmpeg("-i", wav, "-c:a", codec, path)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SECONDS * SAMPLE_RATE) <= SAMPLES_PER_FRAME
    assert abs(audio_duration(path) - SECONDS) <= FRAME_S
    assert abs(_peak_hz(audio) - TONE_HZ) < 1.0  # still 440 Hz after resampling
    # Identical channels downmix to the same tone, never louder (5.1 would clip otherwise).
    assert 0.8 * AMPLITUDE < np.abs(audio[4000:-4000]).max() < 1.2 * AMPLITUDE


@pytest.mark.parametrize("name, video, audio", [
    ("clip.mp4", ["-c:v", "libx264"], ["-c:a", "aac"]),
    ("clip.webm", ["-c:v", "libvpx"], ["-c:a", "libopus"]),
    ("clip.mov", ["-c:v", "libx264"], ["-c:a", "pcm_s16le"]),
])
def test_video_audio_track(tmp_path, name, video, audio):
    path = tmp_path / name
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate=25:duration={SECONDS}",
            "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate=48000:duration={SECONDS}",
            *video, *audio, "-shortest", path)
    x = load_audio(path)
    assert abs(len(x) - SECONDS * SAMPLE_RATE) <= SAMPLES_PER_FRAME
    assert abs(audio_duration(path) - SECONDS) <= FRAME_S
    assert abs(_peak_hz(x) - TONE_HZ) < 1.0


def test_click_keeps_its_time(tmp_path):
    rate = 44100
    x = np.zeros(2 * rate, np.float32)
    x[rate: rate + 20] = 0.9  # a click at 1.000 s
    sf.write(tmp_path / "click.wav", x, rate)
    _ffmpeg("-i", tmp_path / "click.wav", "-c:a", "aac", tmp_path / "click.m4a")
    for name in ["click.wav", "click.m4a"]:  # AAC's encoder delay is removed
        y = load_audio(tmp_path / name)
        assert abs(np.argmax(np.abs(y)) / SAMPLE_RATE - 1.0) < 0.002


def test_short_audio_is_fine(tmp_path):
    sf.write(tmp_path / "short.wav", np.zeros(4410, np.float32), 44100)  # 0.1 s
    assert len(load_audio(tmp_path / "short.wav")) == 1600


# ---- chunks ----------------------------------------------------------------------------

def test_chunks_match_whole_and_memory_stays_flat(tmp_path):
    rate, seconds, chunk_s = 22050, 300, 7.3  # a 5-minute stereo file, resampled in chunks
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (rate * seconds, 2))
    sf.write(tmp_path / "long.flac", noise.astype(np.float32), rate)
    whole = load_audio(tmp_path / "long.flac")
    assert abs(len(whole) - seconds * SAMPLE_RATE) <= SAMPLES_PER_FRAME

    chunks = list(iter_audio(tmp_path / "long.flac", chunk_s=chunk_s))
    assert {len(c) for c in chunks[:-1]} == {round(chunk_s * SAMPLE_RATE)}
    np.testing.assert_array_equal(np.concatenate(chunks), whole)

    del chunks
    tracemalloc.start()
    total = sum(len(c) for c in iter_audio(tmp_path / "long.flac", chunk_s=chunk_s))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == len(whole)
    assert peak < 4 * chunk_s * SAMPLE_RATE * 4  # a few 0.47 MB chunks, not the 19 MB file


# ---- errors ----------------------------------------------------------------------------

def test_missing_folder_empty(tmp_path):
    with pytest.raises(AudioError, match="nope.wav not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)
    (tmp_path / "empty.wav").touch()
    with pytest.raises(AudioError, match=r"empty.wav is empty \(0 bytes\)"):
        load_audio(tmp_path / "empty.wav")


def test_not_audio(tmp_path):
    (tmp_path / "x.txt").write_text("hello, this is not a sound\n")
    with pytest.raises(AudioError, match="x.txt is not a readable audio file.*supported are wav"):
        load_audio(tmp_path / "x.txt")
    with pytest.raises(AudioError, match="x.txt is not a readable audio file"):
        audio_duration(tmp_path / "x.txt")


def test_corrupt(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "noise.mp3").write_bytes(rng.integers(0, 256, 20000, np.uint8).tobytes())
    sf.write(tmp_path / "tone.flac", _tone(44100), 44100)
    data = bytearray((tmp_path / "tone.flac").read_bytes())
    data[200:] = rng.integers(0, 256, len(data) - 200, np.uint8).tobytes()  # header kept
    (tmp_path / "broken.flac").write_bytes(bytes(data))
    (tmp_path / "cut.flac").write_bytes(bytes(data[:60]))
    for name in ["noise.mp3", "broken.flac", "cut.flac"]:
        with pytest.raises(AudioError, match=f"{name} is not a readable audio file"):
            load_audio(tmp_path / name)


@pytest.mark.parametrize("name, codec, keep", [
    ("cut.ogg", "libvorbis", 0.7),      # accepted as 70 % of the clip before
    ("cut.opus", "libopus", 0.9),
    ("cut.webm", "libopus", 0.6),
    ("cut.mka", "libvorbis", 0.8),
    ("cut.mp3", "libmp3lame", 0.7),     # refused only below half before
    ("cut.wav", "pcm_s16le", 0.6),      # its header says how long it should be
    ("cut.m4a", "aac", 0.9),
])
def test_truncated_files_are_refused_in_every_format(tmp_path, name, codec, keep):
    wav = tmp_path / "source.wav"
    sf.write(wav, _tone(48000, seconds=6.0), 48000)
    whole = tmp_path / f"whole{name[3:]}"
    _ffmpeg("-i", wav, "-c:a", codec, whole)
    assert abs(len(load_audio(whole)) / SAMPLE_RATE - 6.0) < 0.1      # the whole file is fine
    data = whole.read_bytes()
    (tmp_path / name).write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(AudioError, match=f"{name} is not a readable audio file"):
        load_audio(tmp_path / name)


def test_truncated_video_track_is_refused_but_short_audio_in_a_video_is_fine(tmp_path):
    clip = tmp_path / "clip.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=6", "-f", "lavfi",
            "-i", f"sine=frequency={TONE_HZ}:sample_rate=48000:duration=3", "-c:v", "libx264",
            "-c:a", "libvorbis", clip)                           # 3 s of sound in a 6 s video
    assert abs(len(load_audio(clip)) / SAMPLE_RATE - 3.0) < 0.1
    data = clip.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[:len(data) // 3])
    with pytest.raises(AudioError, match="cut.mkv is not a readable audio file: it is truncated"):
        load_audio(tmp_path / "cut.mkv")


def test_nan_samples_are_refused(tmp_path):
    x = _tone(16000)
    x[20000:20010] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav is corrupt: NaN or infinite samples from 1\.2"):
        load_audio(tmp_path / "nan.wav")


def test_speech_over_the_limit_is_refused(tmp_path, monkeypatch):
    from puppetry import audio, limits
    sf.write(tmp_path / "long.wav", _tone(16000, seconds=3.0), 16000)
    monkeypatch.setattr(limits, "MAX_SPEECH_S", 2.0)
    with pytest.raises(limits.LimitError, match="long.wav .*over the limit of 2 s.*MAX_SPEECH_S"):
        iter_audio(tmp_path / "long.wav")                         # from the header, at once
    monkeypatch.setattr(audio, "_stated_duration", lambda *a: (None, False))  # no header
    with pytest.raises(limits.LimitError, match="long.wav \\(decoded so far\\).*MAX_SPEECH_S"):
        load_audio(tmp_path / "long.wav")
    monkeypatch.setattr(limits, "MAX_SPEECH_S", 3600.0)
    with pytest.raises(limits.LimitError, match="SERVICE_MAX_SPEECH_S"):
        sf.write(tmp_path / "long.wav", np.zeros(16000 * 301, np.int16), 16000)
        load_audio(tmp_path / "long.wav", service=True)


def test_video_without_audio(tmp_path):
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-c:v", "libx264",
            tmp_path / "clip.mp4")
    with pytest.raises(AudioError, match="clip.mp4 has no audio track"):
        load_audio(tmp_path / "clip.mp4")
    with pytest.raises(AudioError, match="clip.mp4 has no audio track"):
        iter_audio(tmp_path / "clip.mp4")  # raised on the call, not at the first next()


def test_zero_length(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="zero.wav contains no audio samples"):
        load_audio(tmp_path / "zero.wav")


# ---- constants and PCM -----------------------------------------------------------------

def test_constants():
    from puppetry import audio
    assert audio.FPS is frames.FPS
    assert SAMPLE_RATE == 16000 and SAMPLES_PER_FRAME == 640


def test_pcm16_round_trip():
    x = np.random.default_rng(2).uniform(-1, 1, 1000).astype(np.float32)
    data = to_pcm16(x)
    assert isinstance(data, bytes) and len(data) == 2000
    y = from_pcm16(data)
    assert y.dtype == np.float32 and np.abs(y - x).max() <= 1 / 32768
    assert list(from_pcm16(to_pcm16(np.array([2.0, -2.0, 0.0], np.float32)))) == \
        [32767 / 32768, -1.0, 0.0]  # clipped, not wrapped
    with pytest.raises(AudioError, match="odd length"):
        from_pcm16(b"\x00\x01\x02")
    with pytest.raises(AudioError, match="mono"):
        to_pcm16(np.zeros((10, 2), np.float32))
