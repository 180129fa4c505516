"""Fuzz the CLI and the Python API with corrupted and extreme inputs; count the outcomes.

    python pipelines/fuzz.py --cases 10000 --seed 0 [--cli 20] [--timeout 20]

Cheap cases run in this process through the library's entry points (``parse_motion``,
``load_image``, ``load_audio``, ``check_video_path``, ``synthesize`` limits); a few run
through the real ``puppetry`` command in a subprocess. Each case has a timeout (SIGALRM
in-process). Outcomes:

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
    return lambda: parse_motion(text, source="fuzz.json")


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


KINDS = {"motion JSON": motion_case, "image": image_case, "audio": audio_case,
         "output name": name_case}
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


def cli_cases(n: int, work: Path, timeout: float) -> Counter:
    counts, details = Counter(), []
    photo = work / "photo.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(photo)
    for args in CLI_CASES[:n]:
        out = work / "out.mp4"
        out.write_bytes(b"previous")
        before = {p: p.read_bytes() for p in (photo, out)}
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
        if any(p.read_bytes() != b for p, b in before.items()) and outcome != "success":
            outcome = "lost"
        counts[outcome] += 1
        if outcome in ("traceback", "hang", "lost"):
            details.append((outcome, " ".join(a[:30] for a in args)))
    for d in details[:5]:
        print("  CLI", *d)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000, help="in-process cases (default 10000)")
    ap.add_argument("--cli", type=int, default=len(CLI_CASES), help="CLI subprocess cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    args = ap.parse_args()
    import warnings
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    table: dict[str, Counter] = defaultdict(Counter)
    bad: list[tuple[str, str, str]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="puppetry-fuzz-") as tmp:
        work = Path(tmp)
        names = list(KINDS)
        for i in range(args.cases):
            kind = names[i % len(names)]
            fn = KINDS[kind](rng, work)
            snapshot = {p: hashlib.sha1(p.read_bytes()).digest() for p in work.iterdir() if p.is_file()}
            outcome, detail = run_case(fn, args.timeout)
            if any(p.exists() and hashlib.sha1(p.read_bytes()).digest() != h for p, h in snapshot.items()):
                outcome = "lost"
            table[kind][outcome] += 1
            if outcome in ("traceback", "hang", "lost"):
                bad.append((kind, outcome, detail))
            for p in work.iterdir():
                if p.is_file():
                    p.unlink()
        table["CLI (subprocess)"] = cli_cases(args.cli, work, max(args.timeout, 60))
    cols = ("error", "success", "traceback", "hang", "lost")
    print(f"\n{'input':<18}" + "".join(f"{c:>11}" for c in cols) + f"{'total':>8}")
    for kind, c in table.items():
        print(f"{kind:<18}" + "".join(f"{c[k]:>11}" for k in cols) + f"{sum(c.values()):>8}")
    total = sum(table.values(), Counter())
    print(f"{'all':<18}" + "".join(f"{total[k]:>11}" for k in cols) + f"{sum(total.values()):>8}")
    print(f"\n{time.perf_counter() - t0:.0f} s, seed {args.seed}")
    for kind, outcome, detail in bad[:15]:
        print(f"  {kind}: {outcome} {detail}")


if __name__ == "__main__":
    main()
