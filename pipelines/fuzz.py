"""Fuzz the CLI and the Python API with corrupted and extreme inputs; count the outcomes.

    python pipelines/fuzz.py --cases 10000 --seed 0 [--cli 11] [--cli-files 30] [--timeout 20]

In-process cases go through the library's entry points: the cheap kinds through the
readers alone (``parse_motion``, ``load_image``, ``load_audio``, ``check_video_path``), the
end-to-end kinds through the API a user calls:

- ``portrait file``: a photo made from the bundled portrait (truncated JPEG/PNG/WebP, 1x1,
  65000x1, CMYK, 16-bit, palette, animated GIF/WebP, EXIF orientations, huge metadata,
  PNG headers claiming huge sizes, text renamed .jpg, flipped bytes, faces on their side)
  -> ``load_portrait`` -> a rendered frame;
- ``speech file``: WAV/FLAC/OGG/Opus/MP3 speech (truncated, flipped bytes, header fields,
  NaN, odd rates and channel counts, tags, wrong extensions, garbage) -> ``load_audio``
  -> ``animate`` -> every frame;
- ``motion file``: motion JSON (broken, extreme values, long) -> ``load_motion`` ->
  ``render`` of its first, middle and last frame.

A sample of the same generated files, and odd sizes/fps/outputs, run through the real
``puppetry`` command in a subprocess. Each case has a timeout (SIGALRM in-process). A
success must give frames of the right shape (else it counts as a traceback). Outcomes:

- ``error``: a ValueError/OSError/ImportError with a message (what ``cli.main`` reports),
- ``success``: accepted (a valid-enough input),
- ``traceback``: any other exception (a bug),
- ``hang``: over the timeout,
- ``lost``: an input file changed, or an existing output was overwritten by a failed run.

Prints a table per input kind and the first few tracebacks/hangs.
"""
from __future__ import annotations

import argparse
import hashlib
import io as _io
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from puppetry.audio import load_audio
from puppetry.drive.motion import parse_motion
from puppetry.io import check_video_path, load_image


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_case(fn, timeout: float) -> tuple[str, str]:
    """Run ``fn()``; return (outcome, detail)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fn()
        return "success", ""
    except Hang:
        return "hang", ""
    except (ValueError, OSError, ImportError) as e:
        return ("error", "") if str(e) else ("traceback", f"{type(e).__name__} without message")
    except Exception as e:  # noqa: BLE001 - anything else is a bug
        return "traceback", f"{type(e).__name__}: {str(e)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# -- generators: each returns a callable that runs one case -------------------------------

def motion_case(rng: np.random.Generator, work: Path):
    text = _motion_text(rng)
    return lambda: parse_motion(text, source="fuzz.json")


def _motion_text(rng: np.random.Generator) -> str:
    kind = rng.integers(12)
    t = float(rng.choice([0, 1, 1e7, 1e300, -1, 7000, 0.5]))
    frames = [{"t": 0}, {"t": t}]
    if kind == 0:
        text = json.dumps({"fps": 25, "frames": frames})
    elif kind == 1:
        text = json.dumps({"fps": 25, "frames": [{"t": i / 100} for i in range(int(rng.integers(1, 3)) * 60_000)]})
    elif kind == 2:
        text = '{"fps": 25, "frames": [{"t": 0, "yaw": NaN}]}'
    elif kind == 3:
        text = json.dumps({"fps": rng.choice([0, -1, 1e9, "25", None]), "frames": frames})
    elif kind == 4:
        depth = int(rng.integers(10, 50_000))
        text = "[" * depth + "]" * depth
    elif kind == 5:
        text = json.dumps({"fps": 25, "frames": [{"t": 0, "expression": rng.choice(["x", 1, None]).__repr__()}]})
    elif kind == 6:
        text = json.dumps({"fps": 25, "frames": [{"t": 0, "gaze": [1, 2, 3]}]})
    elif kind == 7:
        text = json.dumps({"fps": 25, "frames": [{"t": 0, "yaw": 1e308}, {"t": 1, "yaw": -1e308}]})
    elif kind == 8:
        good = json.dumps({"fps": 25, "frames": [{"t": 0, "yaw": 5}, {"t": 1, "expression": {"jawOpen": 0.5}}]})
        cut = int(rng.integers(0, len(good)))
        text = good[:cut]
    elif kind == 9:
        text = bytes(rng.integers(0, 256, int(rng.integers(0, 200)), np.uint8)).decode("latin-1")
    elif kind == 10:
        text = json.dumps({"fps": 25, "frames": [{"t": 0, "expression": {"jawOpen": float(rng.normal() * 1e6)}}]})
    else:
        text = json.dumps([{"t": 0}] if rng.random() < 0.5 else {"frames": [], "extra": 1})
    return text


def _png(w: int, h: int, body: bytes = b"") -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def image_case(rng: np.random.Generator, work: Path):
    kind = rng.integers(8)
    path = work / f"img{rng.integers(1 << 30)}.{rng.choice(['png', 'jpg', 'webp', 'tif'])}"
    base = np.asarray(rng.integers(0, 256, (48, 64, 3), np.uint8))
    buf = _io.BytesIO()
    fmt = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF"}[path.suffix[1:]]
    if kind == 0:   # truncated
        Image.fromarray(base).save(buf, format=fmt)
        data = buf.getvalue()[:int(rng.integers(0, len(buf.getvalue())))]
    elif kind == 1:   # huge dims in the header
        data = _png(int(rng.choice([10**5, 2**31 - 1, 9000, 65535])), int(rng.choice([10**5, 9000, 1])))
    elif kind == 2:
        data = b""
    elif kind == 3:   # wrong magic
        data = bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), np.uint8))
    elif kind == 4:   # odd modes
        mode = str(rng.choice(["1", "L", "LA", "P", "I", "F", "RGBA", "CMYK", "I;16"]))
        im = Image.fromarray(base).convert("RGBA" if mode == "LA" else "RGB").convert(mode) \
            if mode not in ("I;16",) else Image.new("I;16", (64, 48))
        try:
            im.save(buf, format="TIFF")
        except OSError:
            im.save(buf, format="PNG")
        data = buf.getvalue()
    elif kind == 5:   # rotations and tiny sizes
        im = Image.fromarray(base).rotate(int(rng.choice([90, 180, 270])), expand=True)
        im = im.resize((int(rng.integers(1, 4)), int(rng.integers(1, 4))))
        im.save(buf, format="PNG")
        data = buf.getvalue()
    elif kind == 6:   # flipped bytes
        Image.fromarray(base).save(buf, format=fmt)
        data = bytearray(buf.getvalue())
        for i in rng.integers(0, len(data), 10):
            data[i] ^= 0xFF
        data = bytes(data)
    else:
        data = b"not an image at all\n" * int(rng.integers(1, 50))
    path.write_bytes(data)
    return lambda: load_image(path)


def audio_case(rng: np.random.Generator, work: Path):
    kind = rng.integers(7)
    path = work / f"snd{rng.integers(1 << 30)}.{rng.choice(['wav', 'flac', 'ogg'])}"
    x = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    buf = _io.BytesIO()
    fmt = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[path.suffix[1:]]
    if kind == 0:   # truncated
        sf.write(buf, x, 16000, format=fmt)
        data = buf.getvalue()[:int(rng.integers(0, len(buf.getvalue())))]
    elif kind == 1:   # NaN / huge samples
        y = x.copy()
        y[int(rng.integers(0, len(y)))] = rng.choice([np.nan, np.inf, 1e30])
        sf.write(buf, y, 16000, format="WAV", subtype="FLOAT")
        data = buf.getvalue()
    elif kind == 2:   # huge duration in the header
        sf.write(buf, x, 16000, format="WAV")
        data = bytearray(buf.getvalue())
        data[40:44] = struct.pack("<I", int(rng.choice([0x7FFFFFFF, 0xFFFFFFFE, 10**9])))
        data = bytes(data)
    elif kind == 3:   # silence
        sf.write(buf, np.zeros(int(rng.integers(1, 16000)), np.float32), 16000, format=fmt)
        data = buf.getvalue()
    elif kind == 4:   # wrong header fields
        sf.write(buf, x, 16000, format="WAV")
        data = bytearray(buf.getvalue())
        data[int(rng.integers(0, 44))] = int(rng.integers(256))
        data = bytes(data)
    elif kind == 5:
        data = bytes(rng.integers(0, 256, int(rng.integers(1, 4000)), np.uint8))
    else:
        data = b""
    path.write_bytes(data)
    return lambda: load_audio(path)


def name_case(rng: np.random.Generator, work: Path):
    name = str(rng.choice(["x.avi", "x.txt", "x.mp4", "x.GIF", "x", "x.webm", "x.mkv.", ".mp4",
                           "x.mp3", "dir/", "x.mov", "x.\u00e9"]))
    return lambda: check_video_path(work / name)


# -- end-to-end kinds: files a user might hand to the API -----------------------------------

WHISPER_EVERY = 20     # speech cases run through the default (Whisper) model: one in this many
FACE_PX = 256          # canvas side the fuzzed photos are loaded at (the face ~95 px wide)
_cache: dict = {}


def _face() -> np.ndarray:
    """The bundled portrait: uint8[512 x 512 x 3]."""
    if "face" not in _cache:
        from puppetry.portrait import bundled_portrait
        _cache["face"] = bundled_portrait()
    return _cache["face"]


def _portrait():
    """The bundled portrait loaded once at ``FACE_PX``, for the speech and motion kinds."""
    if "portrait" not in _cache:
        from puppetry import load_portrait
        _cache["portrait"] = load_portrait("astronaut", size=FACE_PX)
    return _cache["portrait"]


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = _io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PHOTO_KINDS = ("truncated", "degenerate size", "colour mode", "animated", "EXIF orientation",
               "huge metadata", "huge header size", "text named .jpg", "flipped bytes",
               "turned face", "no face", "good (control)")
SPEECH_KINDS = ("truncated", "flipped bytes", "header byte", "NaN/inf", "channels/length",
                "silence/clipped", "wrong extension", "junk around", "not audio", "good (control)")


def _photo_bytes(rng: np.random.Generator, kind: int) -> tuple[bytes, str]:
    """(file bytes, file extension) of one awkward photo made from the bundled portrait;
    ``kind`` indexes ``PHOTO_KINDS``."""
    face = _face()
    ext = str(rng.choice(["jpg", "png", "webp"]))
    fmt = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext]
    im = Image.fromarray(face)
    if kind == 0:      # truncated anywhere
        data = _encode(im, fmt)
        return data[:int(rng.integers(0, len(data)))], ext
    if kind == 1:      # degenerate sizes: 1x1, 65000x1, 1x65000, 3x2
        w, h = [(1, 1), (65000, 1), (1, 65000), (3, 2), (16384, 4)][int(rng.integers(5))]
        return _encode(Image.fromarray(np.full((h, w, 3), 128, np.uint8)), "PNG"), str(rng.choice(["png", "jpg"]))
    if kind == 2:      # colour modes and bit depths
        mode = str(rng.choice(["CMYK", "I;16", "P", "PA", "LA", "1", "L", "RGBA", "I", "F", "YCbCr"]))
        if mode == "I;16":
            conv = Image.fromarray(np.asarray(im.convert("L"), np.uint16) * 257)
        elif mode == "PA":
            conv = im.convert("RGBA").convert("PA") if hasattr(Image, "PA") else im.convert("P")
        else:
            conv = im.convert(mode)
        for out_fmt, out_ext in (("TIFF", "tif"), ("PNG", "png"), ("JPEG", "jpg")):
            try:
                return _encode(conv, out_fmt), out_ext
            except (OSError, ValueError, KeyError):
                continue
        return _encode(im, "PNG"), "png"
    if kind == 3:      # animated GIF / WebP: the face first, or a blank frame first
        frames = [im, Image.new("RGB", im.size, (20, 20, 20))]
        if rng.random() < 0.5:
            frames.reverse()
        fmt_a, ext_a = ("GIF", "gif") if rng.random() < 0.5 else ("WEBP", "webp")
        return _encode(frames[0], fmt_a, save_all=True, append_images=frames[1:], duration=100, loop=0), ext_a
    if kind == 4:      # EXIF orientation: every value, valid or not
        exif = im.getexif()
        exif[0x0112] = int(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65535]))
        return _encode(im, "JPEG", exif=exif), "jpg"
    if kind == 5:      # huge metadata: PNG text chunk, JPEG comment, ICC profile that is junk
        size = int(rng.choice([1 << 16, 1 << 20, 8 << 20]))
        if rng.random() < 0.5:
            data = _encode(im, "PNG")
            junk = _png_chunk(b"tEXt", b"Comment\0" + b"x" * size)
            return data[:33] + junk + data[33:], "png"
        return _encode(im, "JPEG", icc_profile=bytes(rng.integers(0, 256, min(size, 1 << 20), np.uint8))), "jpg"
    if kind == 6:      # a PNG header claiming a huge or absurd size over real pixel data
        data = bytearray(_encode(im, "PNG"))
        data[16:24] = struct.pack(">II", int(rng.choice([65000, 2**31 - 1, 0, 9000])),
                                  int(rng.choice([65000, 1, 0, 9000])))
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        return bytes(data), "png"
    if kind == 7:      # not an image, named like one
        text = str(rng.choice(["hello\n" * 20, "<html><body>photo</body></html>", '{"photo": 1}',
                               "%PDF-1.4\n%%EOF", "PK\x03\x04" + "z" * 100]))
        return text.encode(), str(rng.choice(["jpg", "png", "webp"]))
    if kind == 8:      # flipped bytes in the compressed stream
        data = bytearray(_encode(im, fmt, quality=90) if fmt != "PNG" else _encode(im, fmt))
        for i in rng.integers(len(data) // 4, len(data), int(rng.integers(1, 20))):
            data[i] ^= int(rng.integers(1, 256))
        return bytes(data), ext
    if kind == 9:      # the face on its side or upside down, maybe small in a larger photo
        turned = np.rot90(face, int(rng.integers(1, 4)))
        pad = int(rng.choice([0, 64, 256]))
        turned = np.pad(turned, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        return _encode(Image.fromarray(np.ascontiguousarray(turned)), fmt), ext
    if kind == 10:     # no face: noise, flat, a blurred face
        arr = [np.full_like(face, 200), rng.integers(0, 256, face.shape, np.uint8),
               np.asarray(im.resize((8, 8)).resize(im.size))][int(rng.integers(3))]
        return _encode(Image.fromarray(np.asarray(arr, np.uint8)), fmt), ext
    # a good photo, re-encoded at a random quality and scale (the control: it must succeed)
    k = float(rng.uniform(0.9, 2.0))
    big = im.resize((int(im.width * k), int(im.height * k)))
    return _encode(big, "JPEG", quality=int(rng.integers(30, 100))), "jpg"


def portrait_case(rng: np.random.Generator, work: Path):
    kind = int(rng.integers(len(PHOTO_KINDS)))
    data, ext = _photo_bytes(rng, kind)
    path = work / f"photo{rng.integers(1 << 30)}.{ext}"
    path.write_bytes(data)

    def run():
        from puppetry import DrivingFrame, load_portrait, render
        p = load_portrait(path, size=FACE_PX)
        frames = list(render(p, [DrivingFrame.make(yaw=10, expression={"jawOpen": 0.5})], workers=1))
        assert len(frames) == 1 and frames[0].dtype == np.uint8 and frames[0].shape == (*p.size, 3)
    run.label = PHOTO_KINDS[kind]
    return run


def _speech_bytes(rng: np.random.Generator, kind: int) -> tuple[bytes, str]:
    """(file bytes, extension) of one awkward speech file, ~0.6 s of a voiced sound;
    ``kind`` indexes ``SPEECH_KINDS``."""
    ext = str(rng.choice(["wav", "flac", "ogg", "opus", "mp3"]))
    fmt, subtype = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
                    "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}[ext]
    rate = int(rng.choice([16000, 48000])) if ext == "opus" else int(rng.choice([8000, 16000, 22050, 44100, 48000]))
    t = np.arange(int(0.6 * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)

    def enc(y, r=rate, fmt=fmt, subtype=subtype):
        buf = _io.BytesIO()
        try:
            sf.write(buf, y, r, format=fmt, subtype=subtype)
        except sf.LibsndfileError:      # a layout the format cannot hold: a float WAV instead
            buf = _io.BytesIO()
            sf.write(buf, y, r, format="WAV", subtype="FLOAT")
        return buf.getvalue()
    if kind == 0:      # truncated anywhere
        data = enc(x)
        return data[:int(rng.integers(0, len(data)))], ext
    if kind == 1:      # flipped bytes
        data = bytearray(enc(x))
        for i in rng.integers(0, len(data), int(rng.integers(1, 20))):
            data[i] ^= int(rng.integers(1, 256))
        return bytes(data), ext
    if kind == 2:      # a header byte changed
        data = bytearray(enc(x))
        data[int(rng.integers(0, min(64, len(data))))] = int(rng.integers(256))
        return bytes(data), ext
    if kind == 3:      # NaN / inf / huge samples in a float WAV
        y = x.copy()
        y[rng.integers(0, len(y), 3)] = rng.choice([np.nan, np.inf, -np.inf, 1e30])
        return enc(y, fmt="WAV", subtype="FLOAT"), "wav"
    if kind == 4:      # channel counts and lengths
        ch = int(rng.choice([2, 6, 8]))
        n = int(rng.choice([1, 10, len(x)]))
        return enc(np.repeat(x[:n, None], ch, axis=1)), ext
    if kind == 5:      # silence, or clipped full scale
        y = np.zeros_like(x) if rng.random() < 0.5 else np.sign(x).astype(np.float32)
        return enc(y), ext
    if kind == 6:      # the right bytes under the wrong extension
        other = str(rng.choice(["wav", "flac", "ogg", "mp3"]))
        return enc(x), other
    if kind == 7:      # junk before or after the stream (a huge tag, a second file appended)
        data = enc(x)
        junk = b"ID3\x04\x00\x00" + bytes(rng.integers(0, 256, int(rng.choice([10, 5000, 200_000])), np.uint8))
        return (junk + data if rng.random() < 0.5 else data + junk), ext
    if kind == 8:      # not audio at all
        return [b"", b"hello\n" * 100, bytes(rng.integers(0, 256, 3000, np.uint8))][int(rng.integers(3))], ext
    return enc(x), ext  # the control: it must succeed


def speech_case(rng: np.random.Generator, work: Path):
    """Most cases use the shipped log-mel model (0.1 s of features, not Whisper's ~3 s on
    2 cores: the decoding is what is fuzzed); one in ``WHISPER_EVERY`` the default model."""
    kind = int(rng.integers(len(SPEECH_KINDS)))
    data, ext = _speech_bytes(rng, kind)
    path = work / f"speech{rng.integers(1 << 30)}.{ext}"
    path.write_bytes(data)
    from importlib import resources

    from puppetry.expression.shipped import FALLBACK_FILE
    from puppetry.pipeline import AnimateJob
    mel = str(resources.files("puppetry.assets").joinpath(FALLBACK_FILE))
    job = AnimateJob() if rng.integers(WHISPER_EVERY) == 0 else AnimateJob(model=mel)

    def run():
        from puppetry import animate
        audio = load_audio(path)
        frames, motion = animate(_portrait(), audio, job)
        n = sum(1 for f in frames if f.shape == (*_portrait().size, 3))
        assert n == len(motion), f"{n} frames of {len(motion)}"
    run.label = f"{SPEECH_KINDS[kind]} {ext}"
    return run


def _motion_file_text(rng: np.random.Generator) -> str:
    """Half the broken texts of ``motion JSON``, half random keyframes with extreme values."""
    return _motion_text(rng) if rng.random() < 0.5 else _extreme_keyframes(rng)


def _extreme_keyframes(rng: np.random.Generator) -> str:
    """1-5 keyframes within 4 s, with values far out of range, unknown ARKit names, odd fps."""
    frames = []
    for t in np.sort(rng.choice(np.arange(0, 40), int(rng.integers(1, 6)), replace=False)) / 10:
        frame = {"t": float(t)}
        for key in ("yaw", "pitch", "roll", "tx", "ty", "scale"):
            if rng.random() < 0.4:
                frame[key] = float(rng.choice([0, 1, -1, 30, -90, 720, 1e6, -1e12, 1e-300]))
        if rng.random() < 0.3:
            frame["gaze"] = [float(rng.uniform(-5, 5)), float(rng.uniform(-5, 5))]
        if rng.random() < 0.6:
            names = ["jawOpen", "mouthClose", "eyeBlinkLeft", "mouthSmileRight", "browInnerUp", "tongueOut"]
            frame["expression"] = {str(n): float(rng.choice([0, 0.5, 1, 2, -3, 1e9]))
                                   for n in rng.choice(names, int(rng.integers(1, 4)), replace=False)}
        frames.append(frame)
    return json.dumps({"fps": float(rng.choice([1, 25, 30, 60, 0.5])), "frames": frames})


def motion_file_case(rng: np.random.Generator, work: Path):
    path = work / f"motion{rng.integers(1 << 30)}.json"
    text = _motion_file_text(rng)
    path.write_bytes(text.encode("utf-8", "surrogatepass") if rng.random() < 0.9 else text.encode("utf-16"))

    def run():
        from puppetry import render
        from puppetry.drive.motion import load_motion
        motion = load_motion(path)
        picks = sorted({0, len(motion) // 2, len(motion) - 1})
        frames = list(render(_portrait(), [motion[i] for i in picks], workers=1))
        assert all(f.shape == (*_portrait().size, 3) for f in frames)
    return run


KINDS = {"motion JSON": motion_case, "image": image_case, "audio": audio_case,
         "output name": name_case, "portrait file": portrait_case, "speech file": speech_case,
         "motion file": motion_file_case}
CLI_CASES = [
    ["render", "astronaut", "--motion", "nod", "--fps", "0"],
    ["render", "astronaut", "--motion", "nod", "--fps", "1e9"],
    ["render", "astronaut", "--motion", "nod", "--size", "-5"],
    ["render", "astronaut", "--motion", "nod", "--size", "99999"],
    ["render", "astronaut", "--motion", "nod", "--duration", "1e7"],
    ["render", "astronaut", "--motion", "nod", "--duration", "nan"],
    ["animate", "astronaut", "--text", "word " * 4000],      # 20 000 characters (an argument holds 128 KB)
    ["animate", "astronaut", "--text", "Hi", "--fps", "inf"],
    ["render", "astronaut", "--motion", "nod", "-o", "OUT.avi"],
    ["render", "astronaut", "--motion", "nod", "-o", "OUT.txt"],
    ["render", "INPUT", "--motion", "nod", "-o", "INPUT"],
]


def cli_cases(n: int, n_files: int, rng: np.random.Generator, work: Path, timeout: float) -> Counter:
    """``CLI_CASES[:n]``, then ``n_files`` generated photos, speech and motion files through
    ``puppetry render`` / ``animate`` (in turn)."""
    counts, details = Counter(), []
    photo = work / "photo.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(photo)
    runs = list(CLI_CASES[:n])
    for i in range(n_files):
        if i % 3 == 0:
            data, ext = _photo_bytes(rng, int(rng.integers(len(PHOTO_KINDS))))
            path = work / f"cli{i}.{ext}"
            runs.append(["render", str(path), "--motion", "nod", "--duration", "0.4", "--size", str(FACE_PX)])
        elif i % 3 == 1:
            data, ext = _speech_bytes(rng, int(rng.integers(len(SPEECH_KINDS))))
            path = work / f"cli{i}.{ext}"
            runs.append(["animate", "astronaut", str(path), "--size", str(FACE_PX)])
        else:
            data, path = _extreme_keyframes(rng).encode(), work / f"cli{i}.json"
            runs.append(["render", "astronaut", "--motion", str(path), "--size", str(FACE_PX)])
        path.write_bytes(data)
    for args in runs:
        out = work / "out.mp4"
        out.write_bytes(b"previous")
        before = {p: p.read_bytes() for p in work.iterdir() if p.is_file()}
        args = [a.replace("INPUT", str(photo)) for a in args]
        if "-o" not in args:
            args += ["-o", str(out)]
        args = [a.replace("OUT", str(work / "out")) for a in args]
        try:
            proc = subprocess.run([sys.executable, "-m", "puppetry.cli", *args], capture_output=True,
                                  text=True, timeout=timeout)
            outcome = "traceback" if "Traceback" in proc.stderr else \
                "error" if proc.returncode else "success"
        except subprocess.TimeoutExpired:
            outcome = "hang"
        changed = {p for p, b in before.items() if not p.exists() or p.read_bytes() != b}
        if changed - {out} or (out in changed and outcome != "success"):
            outcome = "lost"                 # an input changed, or a failed run touched the output
        counts[outcome] += 1
        if outcome in ("traceback", "hang", "lost"):
            details.append((outcome, " ".join(a[:30] for a in args)))
    for d in details[:5]:
        print("  CLI", *d)
    return counts


def fuzz_in_process(cases: int, rng: np.random.Generator, work: Path, timeout: float = 20.0,
                    kinds: dict = KINDS):
    """``cases`` in-process cases, the kinds in turn, files made in ``work`` (emptied after
    each case). Returns (outcomes per kind, outcomes per (kind, case label), the bad ones
    as (kind, outcome, detail))."""
    table: dict[str, Counter] = defaultdict(Counter)
    by_label: dict[tuple[str, str], Counter] = defaultdict(Counter)
    bad: list[tuple[str, str, str]] = []
    names = list(kinds)
    for i in range(cases):
        kind = names[i % len(names)]
        fn = kinds[kind](rng, work)
        snapshot = {p: hashlib.sha1(p.read_bytes()).digest() for p in work.iterdir() if p.is_file()}
        outcome, detail = run_case(fn, timeout)
        if any(p.exists() and hashlib.sha1(p.read_bytes()).digest() != h for p, h in snapshot.items()):
            outcome = "lost"
        table[kind][outcome] += 1
        label = getattr(fn, "label", None)
        if label:
            by_label[kind, label.rsplit(" ", 1)[0] if kind == "speech file" else label][outcome] += 1
            detail = f"[{label}] {detail}"
        if outcome in ("traceback", "hang", "lost"):
            bad.append((kind, outcome, detail))
        for p in work.iterdir():
            if p.is_file():
                p.unlink()
    return table, by_label, bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000, help="in-process cases (default 10000)")
    ap.add_argument("--cli", type=int, default=len(CLI_CASES), help="odd-argument CLI subprocess cases")
    ap.add_argument("--cli-files", type=int, default=30,
                    help="generated photos, speech and motion files through the CLI (default 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    args = ap.parse_args()
    import warnings
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="puppetry-fuzz-") as tmp:
        work = Path(tmp)
        table, by_label, bad = fuzz_in_process(args.cases, rng, work, args.timeout)
        table["CLI (subprocess)"] = cli_cases(args.cli, args.cli_files, rng, work, max(args.timeout, 60))
    cols = ("error", "success", "traceback", "hang", "lost")
    print(f"\n{'input':<18}" + "".join(f"{c:>11}" for c in cols) + f"{'total':>8}")
    for kind, c in table.items():
        print(f"{kind:<18}" + "".join(f"{c[k]:>11}" for k in cols) + f"{sum(c.values()):>8}")
    total = sum(table.values(), Counter())
    print(f"{'all':<18}" + "".join(f"{total[k]:>11}" for k in cols) + f"{sum(total.values()):>8}")
    print(f"\n{'end-to-end case':<34}" + "".join(f"{c:>10}" for c in cols))
    for (kind, label), c in sorted(by_label.items()):
        print(f"{kind + ': ' + label:<34}" + "".join(f"{c[k]:>10}" for k in cols))
    print(f"\n{time.perf_counter() - t0:.0f} s, seed {args.seed}")
    for kind, outcome, detail in bad[:15]:
        print(f"  {kind}: {outcome} {detail}")


if __name__ == "__main__":
    main()
