"""Soak ``puppetry serve``: 4 streaming sessions for 10 minutes (speech, text, resets,
abrupt disconnects), the server's memory sampled each minute.

    python pipelines/soak_server.py [--sessions 4] [--minutes 10] [--out soak.md]

The server runs in its own process on 127.0.0.1. Each session loops over a seeded mix:
an utterance of dev speech (2-6 s) in 20 ms chunks at real time, a short text, an
utterance cut by ``reset``, an idle pause, and now and then an abrupt disconnect (the
socket closed without a close frame, mid-utterance) after which it reconnects. Each
minute: the server's RSS (and its speech process's), the sessions it counts, frames
received per second, errors seen. Target: RSS grows less than 50 MB after the first minute.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import socket
import struct
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from puppetry.audio import SAMPLE_RATE, load_audio  # noqa: E402
from puppetry.client import AvatarClient, Frame  # noqa: E402
from puppetry.ui.server import serve_in_subprocess  # noqa: E402

DEV_AUDIO = Path(os.environ.get("PUPPETRY_DEV", ROOT.parent / "shared" / "dev")) / "audio"
CHUNK = 320                                   # 20 ms
TEXTS = ("Hello there, how are you today?", "The weather is fine.", "Let me think about that for a moment.",
         "One, two, three, four, five.", "Thank you, goodbye!")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc/*/stat)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class Worker(threading.Thread):
    """One session's life: speech, text, resets, pauses and abrupt disconnects."""

    def __init__(self, url: str, speech: np.ndarray, seed: int, until: float):
        super().__init__(daemon=True)
        self.url, self.speech, self.r, self.until = url, speech, random.Random(seed), until
        self.frames = 0
        self.errors: list[str] = []
        self.actions: dict[str, int] = {}
        self.client: AvatarClient | None = None
        self.lock = threading.Lock()

    def connect(self):
        self.client = AvatarClient(self.url, seed=self.r.randrange(1000))
        threading.Thread(target=self.drain, args=(self.client,), daemon=True).start()

    def drain(self, client: AvatarClient):
        while True:
            try:
                item = client.receive(timeout=5.0)
            except TimeoutError:
                continue
            except Exception:                          # noqa: BLE001 - closed
                return
            if isinstance(item, Frame):
                with self.lock:
                    self.frames += 1
            elif item.get("type") == "error":
                self.errors.append(item.get("message", "")[:120])

    def clip(self) -> np.ndarray:
        n = int(self.r.uniform(2.0, 6.0) * SAMPLE_RATE)
        start = self.r.randrange(0, len(self.speech) - n)
        return self.speech[start:start + n]

    def send_paced(self, audio: np.ndarray, stop_after_s: float | None = None) -> None:
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(audio), CHUNK)):
            time.sleep(max(0.0, t0 + k * CHUNK / SAMPLE_RATE - time.perf_counter()))
            self.client.send_audio(audio[i:i + CHUNK])
            if stop_after_s is not None and k * CHUNK / SAMPLE_RATE >= stop_after_s:
                return

    def run(self):
        self.connect()
        while time.perf_counter() < self.until:
            action = self.r.choices(["speech", "text", "reset", "pause", "vanish"], [5, 2, 2, 2, 1])[0]
            self.actions[action] = self.actions.get(action, 0) + 1
            try:
                if action == "speech":
                    audio = self.clip()
                    self.send_paced(audio)
                    self.client.end()
                    time.sleep(0.5)
                elif action == "text":
                    self.client.say(self.r.choice(TEXTS))
                    time.sleep(self.r.uniform(1.0, 3.0))
                elif action == "reset":
                    self.send_paced(self.clip(), stop_after_s=self.r.uniform(0.3, 1.5))
                    self.client.reset()
                    time.sleep(0.5)
                elif action == "pause":
                    time.sleep(self.r.uniform(1.0, 4.0))
                else:                                  # mid-utterance, no close frame
                    self.send_paced(self.clip(), stop_after_s=self.r.uniform(0.2, 1.0))
                    sock = self.client.ws.socket
                    if self.r.random() < 0.5:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    time.sleep(0.5)
                    self.connect()
            except Exception as err:                   # noqa: BLE001 - note it, reconnect
                self.errors.append(f"{action}: {type(err).__name__}: {err}"[:120])
                time.sleep(1.0)
                try:
                    self.connect()
                except Exception as again:             # noqa: BLE001
                    self.errors.append(f"reconnect: {again}"[:120])
        try:
            self.client.close()
        except Exception:                              # noqa: BLE001
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    files = sorted(DEV_AUDIO.glob("*.wav")) or [ROOT / "puppetry" / "assets" / "speech_en.ogg"]
    speech = np.concatenate([load_audio(f) for f in files])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve_in_subprocess(port, "--max-sessions", str(args.sessions))
    url = f"ws://127.0.0.1:{port}/v1/stream"
    samples = []
    try:
        t0 = time.perf_counter()
        until = t0 + 60 * args.minutes
        workers = [Worker(url, speech, args.seed * 100 + k, until) for k in range(args.sessions)]
        for w in workers:
            w.start()
        last_frames = 0
        for minute in range(int(np.ceil(args.minutes)) + 1):
            time.sleep(max(0.0, t0 + 60 * minute - time.perf_counter()))
            frames = sum(w.frames for w in workers)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=10) as r:
                health = json.loads(r.read())
            kids = children(server.pid)
            samples.append((minute, rss_mb(server.pid), sum(rss_mb(k) for k in kids), health["sessions"],
                            (frames - last_frames) / 60 if minute else float("nan"),
                            sum(len(w.errors) for w in workers)))
            last_frames = frames
            print(f"minute {minute}: server RSS {samples[-1][1]:.0f} MB (+ speech {samples[-1][2]:.0f} MB), "
                  f"sessions {health['sessions']}, frames/s {samples[-1][4]:.1f}", flush=True)
        for w in workers:
            w.join(30)
    finally:
        server.terminate()
        server.wait(10)
    growth = samples[-1][1] - samples[1][1]
    actions: dict[str, int] = {}
    for w in workers:
        for k, v in w.actions.items():
            actions[k] = actions.get(k, 0) + v
    errors = [e for w in workers for e in w.errors]
    lines = [f"`python pipelines/soak_server.py --sessions {args.sessions} --minutes {args.minutes:g}`  ",
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
             f"256², 25 fps; actions: " + ", ".join(f"{k} {v}" for k, v in sorted(actions.items())), "",
             "| minute | server RSS (MB) | speech process RSS (MB) | sessions | frames/s received (all) | errors seen |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {a:.0f} | {b:.0f} | {s} | {f:.1f} | {e} |" for m, a, b, s, f, e in samples]
    lines += ["", "```", f"{'PASS' if growth < 50 else 'FAIL'}  server RSS grows < 50 MB after the first "
              f"minute ({growth:+.0f} MB)", "```"]
    if errors:
        lines += ["", "Errors seen (first 5): " + "; ".join(sorted(set(errors))[:5])]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
