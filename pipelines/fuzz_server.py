"""Fuzz ``puppetry serve``: thousands of corrupted and extreme WebSocket messages and POSTs
against a server on 127.0.0.1 (only), each outcome counted.

    python pipelines/fuzz_server.py [--cases 10000] [--seed 0] [--minutes 30]

Starts the server in its own process on a free loopback port (with an access token, so
the refusals are fuzzed too), then, with a seeded generator:

1. ``prestart``: messages before ``start`` (garbage, audio, commands) -> each must be
   answered.
2. ``start``: start messages with mutated knobs and corrupted inline portraits.
3. ``session``: inside a started session, every message type mutated (wrong types,
   NaN, huge numbers, unknown fields, odd binary sizes, extreme samples, corrupted camera
   frames, texts of random Unicode, deep JSON, empty and oversized messages). Each is
   followed by a ``ping``: the ``pong`` must come (the session lives).
4. ``connect``: handshakes with foreign origins, wrong or missing tokens.
5. ``post``: ``POST /v1/portraits`` with corrupted images (truncated, bit-flipped, lying
   headers, odd modes), random bodies, malformed multipart, lying Content-Length.

Outcomes: ``error`` (a clear error message or a 4xx with one), ``success`` (an answer
that is no error: ready, pong, frames, 200), ``traceback`` (a traceback appeared in the
server's log while the case ran), ``hang`` (no answer within ``--timeout`` s), ``crash``
(the server process died; it is restarted). The loop is bounded by ``--cases`` and
``--minutes`` and stops by itself; the table goes to stdout (and ``--out``).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import socket
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from puppetry.portrait import bundled_portrait  # noqa: E402
from puppetry.ui.server import serve_in_subprocess  # noqa: E402

TOKEN = "fuzz-token-0123456789"
OUTCOMES = ("error", "success", "traceback", "hang", "crash")
SHARES = {"prestart": 0.08, "start": 0.04, "session": 0.75, "connect": 0.03, "post": 0.10}


# -- inputs -------------------------------------------------------------------------------
def image_seeds() -> list[bytes]:
    """Valid images of the bundled face in several formats and modes (the material the
    corruptions start from); small, so that the ones that still decode are cheap."""
    face = Image.fromarray(bundled_portrait()).crop((100, 0, 420, 320))   # the face ~90 px wide
    out = []
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("GIF", "P"),
                      ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB"), ("JPEG", "CMYK"), ("PNG", "I;16")):
        buf = io.BytesIO()
        face.convert(mode).save(buf, fmt)
        out.append(buf.getvalue())
    return out


def png_claiming(w: int, h: int) -> bytes:
    """A PNG header that claims w x h pixels, with no pixel data."""
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


class Inputs:
    """Seeded generators of corrupted and extreme inputs."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.images = image_seeds()

    def blob(self) -> bytes:
        r = self.r
        n = r.choice([0, 1, 2, 3, 7, 320, 321, 4096, 65537, 1 << 20])
        kind = r.randrange(4)
        if kind == 0:
            return r.randbytes(n)
        if kind == 1:                                   # extreme PCM
            return np.full(n // 2, r.choice([-32768, 32767, 0]), "<i2").tobytes()
        if kind == 2:
            return b"\x00" * n
        return (b"RIFF" + r.randbytes(40) + b"\xff" * n)[:max(n, 4)]

    def image(self) -> bytes:
        r = self.r
        data = bytearray(r.choice(self.images))
        kind = r.randrange(7)
        if kind == 0:                                   # truncated
            return bytes(data[:r.randrange(len(data))])
        if kind == 1:                                   # bit flips
            for _ in range(r.choice([1, 4, 32, 256])):
                i = r.randrange(len(data))
                data[i] ^= 1 << r.randrange(8)
            return bytes(data)
        if kind == 2:                                   # a header that lies about the size
            return png_claiming(r.choice([1, 9000, 20000, 65535, 2**31 - 1]), r.choice([1, 9000, 65535]))
        if kind == 3:
            return r.randbytes(r.choice([0, 1, 16, 5000]))
        if kind == 4:                                   # a valid but odd image
            buf, fmt = io.BytesIO(), r.choice(["PNG", "JPEG", "GIF"])
            mode = r.choice(["RGB", "L", "1"] + (["RGBA"] if fmt != "JPEG" else []))
            Image.new(mode, (r.choice([1, 2, 7, 300]), r.choice([1, 3, 300]))).save(buf, fmt)
            return buf.getvalue()
        if kind == 5:                                   # a text file named like an image
            return "this is not an image\n".encode() * r.randrange(1, 100)
        return bytes(data)                              # valid

    def junk_value(self):
        r = self.r
        return r.choice([None, True, False, 0, -1, 2**63, -2**63, 1e308, -1e-308, float("nan"),
                         float("inf"), "", "x" * r.choice([1, 100, 5000]), "\u0000\ud7ff\U0001f600",
                         [], [1, 2, 3], {}, {"a": {"b": [None]}}, "astronaut", "../../etc/passwd",
                         "%00", 3.5, 25, 60, 61])

    def unicode(self, n: int) -> str:
        r = self.r
        pools = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x4e00, 0x4fff), (0x1f600, 0x1f64f),
                 (0x0, 0x1f), (0x300, 0x36f)]
        out = []
        for _ in range(n):
            lo, hi = r.choice(pools)
            out.append(chr(r.randint(lo, hi)))
        return "".join(out)

    def command(self) -> dict:
        r = self.r
        kind = r.choice(["start", "audio", "end", "text", "drive", "reset", "stats", "ping", "dance", "",
                         None, 7])
        msg = {"type": kind}
        if kind == "audio":
            msg["data"] = r.choice([base64.b64encode(self.blob()[:4000]).decode(), "***", None, 5, ""])
        elif kind == "text":
            msg["text"] = r.choice([self.unicode(r.choice([1, 20, 200])), "", "   ", ".!?", None, 42,
                                    "a" * r.choice([3001, 5000]), "Hello there."])
        elif kind == "drive":
            msg["image"] = r.choice([base64.b64encode(self.image()).decode(), "!!", None, ""])
            msg["seq"] = r.choice([1, -5, 2**70, "x", None, 1.5, True])
        elif kind == "start":
            for key in r.sample(["seed", "motion_scale", "blink_rate", "intensity", "portrait_id", "portrait"],
                                r.randrange(4)):
                msg[key] = self.junk_value() if key != "portrait" else base64.b64encode(self.image()).decode()
        for _ in range(r.choice([0, 0, 1, 3])):          # unknown or wrongly typed fields
            msg[r.choice(["type", "data", "text", "image", "seq", "extra", "\u2603"])] = self.junk_value()
        return msg

    def start(self) -> str:
        """A start message with mutated knobs and portrait."""
        r = self.r
        msg = {"type": "start"}
        for key in r.sample(["seed", "motion_scale", "blink_rate", "intensity", "portrait_id", "portrait"],
                            r.randrange(1, 4)):
            if key == "portrait":
                msg[key] = r.choice([base64.b64encode(self.image()).decode(), "not base64", None])
            else:
                msg[key] = r.choice([self.junk_value(), r.uniform(-1, 70), r.randrange(-5, 100)])
        return json.dumps(msg, allow_nan=True)

    def message(self) -> str | bytes:
        """One WebSocket message: a mutated command, raw text or binary."""
        r = self.r
        kind = r.randrange(10)
        if kind < 5:
            return json.dumps(self.command(), allow_nan=True)
        if kind == 5:
            return self.blob()
        if kind == 6:                                   # broken JSON
            text = json.dumps(self.command(), allow_nan=True)
            return text[:r.randrange(max(1, len(text)))]
        if kind == 7:                                   # deep nesting
            depth = r.choice([10, 1000, 100_000])
            return "[" * depth + "]" * r.choice([0, depth])
        if kind == 8:
            return self.unicode(r.choice([0, 1, 50, 3000]))
        return r.choice(["null", "1e999", "NaN", "[]", "{}", '{"type": []}', '"start"', ""])


# -- the server under test ------------------------------------------------------------------
class Target:
    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.read_at = 0
        self.start()

    def start(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = serve_in_subprocess(self.port, "--host", "127.0.0.1", "--token", TOKEN,
                                        "--max-sessions", "4", "--idle-timeout", "60",
                                        stdout=self.log, stderr=self.log)
        self.url = f"ws://127.0.0.1:{self.port}/v1/stream?token={TOKEN}"
        self.http = f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def new_tracebacks(self) -> list[str]:
        """Tracebacks written to the server's log since the last call."""
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            f.seek(self.read_at)
            text = f.read()
            self.read_at = f.tell()
        return [block[:800] for block in text.split("Traceback (most recent call last)")[1:]]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:                               # noqa: BLE001
            self.proc.kill()


class Session:
    """A client connection that sends one case at a time and reads until an answer."""

    def __init__(self, target: Target, timeout: float):
        from websockets.sync.client import connect
        self.ws = connect(target.url, max_size=64 * 2**20, open_timeout=timeout)
        self.timeout = timeout
        self.started = False

    def until(self, done, timeout: float) -> list[dict] | None:
        """JSON messages (frames skipped) until ``done(message)``; None on a timeout."""
        seen, deadline = [], time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            try:
                raw = self.ws.recv(timeout=left)
            except TimeoutError:
                return None
            if isinstance(raw, bytes):
                continue
            msg = json.loads(raw)
            seen.append(msg)
            if done(msg):
                return seen

    def start(self) -> bool:
        self.ws.send(json.dumps({"type": "start"}))
        got = self.until(lambda m: m.get("type") in ("ready", "error"), 120)
        self.started = bool(got) and got[-1].get("type") == "ready"
        return self.started

    def close(self):
        try:
            self.ws.close()
        except Exception:                               # noqa: BLE001
            pass


# -- the cases ---------------------------------------------------------------------------------
def ws_case(target, session, message, timeout, started: bool) -> str:
    """Send one message; started sessions follow it with a ping. -> outcome."""
    session.ws.send(message)
    if not started:                                   # every pre-start message is answered
        got = session.until(lambda m: m.get("type") in ("error", "ready"), timeout)
        if got is None:
            return "hang"
        if got[-1].get("type") == "ready":
            session.started = True
            return "success"
        return "error"
    session.ws.send(json.dumps({"type": "ping"}))
    got = session.until(lambda m: m.get("type") == "pong", timeout)
    if got is None:
        return "hang"
    return "error" if any(m.get("type") == "error" for m in got) else "success"


def connect_case(target, inputs, timeout) -> str:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    r = inputs.r
    url = f"ws://127.0.0.1:{target.port}/v1/stream"
    choice = r.randrange(4)
    kwargs = {}
    if choice == 0:
        kwargs["origin"] = r.choice(["http://evil.example", "null", f"http://127.0.0.1:{target.port}.evil",
                                     "https://localhost:1"])
        url += f"?token={TOKEN}"
    elif choice == 1:
        url += "?token=" + r.choice(["", "wrong", TOKEN[:-1], TOKEN + "x", "%00"])
    elif choice == 2:
        kwargs["additional_headers"] = {"Authorization": r.choice(["Bearer", "Bearer wrong", "Basic abc",
                                                                   "bearer " + TOKEN[:5]])}
    else:
        pass                                           # no token at all
    try:
        with connect(url, open_timeout=timeout, **kwargs):
            return "success"                           # should not happen: counted as such
    except InvalidStatus as err:
        return "error" if err.response.status_code in (401, 403) else "traceback"
    except TimeoutError:
        return "hang"


def post_case(target, inputs, timeout) -> str:
    r = inputs.r
    kind = r.randrange(6)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if kind <= 2:
        body = inputs.image()
    elif kind == 3:
        body = inputs.blob()
    elif kind == 4:                                    # malformed multipart
        boundary = "----fuzz"
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{r.choice(['image', 'file', ''])}\"; "
                 f"filename=\"{inputs.unicode(8)}\"\r\n\r\n".encode(errors="replace") + inputs.image(),
                 f"\r\n--{boundary}--\r\n".encode()]
        body = b"".join(parts[:r.choice([1, 2])])
    else:                                              # a foreign origin or no token
        body = inputs.image()
        headers = r.choice([{"Origin": "http://evil.example", **headers}, {}])
    request = urllib.request.Request(target.http + "/v1/portraits", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return "success" if response.status == 200 else "error"
    except urllib.error.HTTPError as err:
        detail = err.read()
        ok = 400 <= err.code < 500 and b"error" in detail
        return "error" if ok else "traceback"
    except (TimeoutError, socket.timeout):
        return "hang"
    except urllib.error.URLError:
        return "error" if target.alive() else "crash"


def run_case(category, target, inputs, timeout, session):
    """One case -> outcome, or (outcome, the session to go on with, the message sent)."""
    if category == "connect":
        return connect_case(target, inputs, timeout)
    if category == "post":
        return post_case(target, inputs, timeout)
    if category in ("prestart", "start"):            # a fresh connection per case
        probe = Session(target, timeout)
        message = inputs.message() if category == "prestart" else inputs.start()
        try:
            return ws_case(target, probe, message, timeout, started=False), session, message
        finally:
            probe.close()
    if session is None or not session.started or inputs.r.random() < 0.005:
        if session is not None:                      # a new session now and then
            session.close()
        session = Session(target, timeout)
        if not session.start():
            return "hang", None, None
    message = inputs.message()
    outcome = ws_case(target, session, message, timeout, started=True)
    if inputs.r.random() < 0.02:                     # drain queued speech now and then
        session.ws.send(json.dumps({"type": "reset"}))
    return outcome, session, message


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=30.0, help="stop after this long in any case")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds before a case counts as a hang")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    inputs = Inputs(args.seed)
    log_path = Path(tempfile.mkdtemp(prefix="fuzz_server_")) / "server.log"
    target = Target(log_path)
    counts: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list[str]] = defaultdict(list)
    plan = [k for k, share in SHARES.items() for _ in range(round(share * args.cases))]
    inputs.r.shuffle(plan)
    t0 = time.perf_counter()
    session = None
    done = 0
    try:
        for category in plan:
            if time.perf_counter() - t0 > 60 * args.minutes:
                break
            message = None
            try:
                outcome = run_case(category, target, inputs, args.timeout, session)
                if isinstance(outcome, tuple):
                    outcome, session, message = outcome
            except Exception as err:                   # noqa: BLE001 - the connection broke
                outcome = "crash" if not target.alive() else "hang"
                examples[f"{category}/{outcome}"].append(f"{type(err).__name__}: {err}"[:200])
                if session is not None:
                    session.close()
                session = None
            tracebacks = target.new_tracebacks()
            if tracebacks:
                outcome = "traceback"
                examples[f"{category}/traceback"].append(tracebacks[0])
            if not target.alive():
                outcome = "crash"
                target.start()
                session = None
            if outcome in ("hang", "crash", "traceback") and message is not None:
                examples[f"{category}/{outcome}"].append(repr(message)[:200])
            counts[category][outcome] += 1
            done += 1
            if done % 500 == 0:
                print(f"{done} cases, {time.perf_counter() - t0:.0f} s: "
                      + ", ".join(f"{o} {sum(c[o] for c in counts.values())}" for o in OUTCOMES), flush=True)
    finally:
        if session is not None:
            session.close()
        target.stop()

    wall = time.perf_counter() - t0
    head = "| inputs | cases | " + " | ".join(OUTCOMES) + " |\n|---|---|" + "---|" * len(OUTCOMES)
    rows = [f"| {k} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |"
            for k, c in counts.items()]
    total = Counter()
    for c in counts.values():
        total.update(c)
    rows.append(f"| **all** | **{sum(total.values())}** | " + " | ".join(f"**{total[o]}**" for o in OUTCOMES) + " |")
    text = "\n".join([f"`python pipelines/fuzz_server.py --cases {args.cases} --seed {args.seed}`: "
                      f"{sum(total.values())} cases in {wall:.0f} s, {os.cpu_count()} CPUs, server log {log_path}",
                      "", head, *rows, ""])
    if examples:
        text += "\nExamples of bad outcomes:\n\n" + "\n".join(
            f"- {k}: {v[0]!r}" for k, v in examples.items()) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
