"""Streaming server benchmark: latency, lag over a minute, concurrent sessions, barge-in.

    python pipelines/benchmark_stream.py [--sessions 4] [--out docs/benchmarks_stream.md]

Starts ``puppetry serve`` in its own process on loopback and drives it like an assistant
backend would: speech from ../shared/dev/audio (or the bundled clip) sent in 20 ms PCM
chunks paced at real time, as a microphone or a streaming TTS delivers it.

1. latency: utterances of 1.5-4 s, one session; time from sending an utterance's first
   chunk to receiving its first frame (client side) and the server's own figure.
2. a minute of speech in one utterance: each frame's arrival against its due time
   (first frame + i / fps): lag at the start and the end, frames skipped or dropped.
3. N sessions at once, each speaking for 30 s: frames per second received, lag growth,
   latency under load; then one session more, which must be refused.
4. barge-in: ``reset`` mid-utterance -> the first idle frame.
"""
from __future__ import annotations

import argparse
import datetime
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from puppetry.audio import SAMPLE_RATE, load_audio  # noqa: E402
from puppetry.client import AvatarClient, Frame, ServerError  # noqa: E402
from puppetry.ui.server import serve_in_subprocess  # noqa: E402

DEV_AUDIO = ROOT.parent / "shared" / "dev" / "audio"
CHUNK = 320                     # samples per chunk: 20 ms


def speech_pool() -> np.ndarray:
    files = sorted(DEV_AUDIO.glob("*.wav")) or [ROOT / "puppetry" / "assets" / "speech_en.ogg"]
    return np.concatenate([load_audio(f) for f in files])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, sessions: int, size: int) -> subprocess.Popen:
    return serve_in_subprocess(port, "--size", str(size), "--max-sessions", str(sessions))


class Speaker:
    """One session: sends utterances paced at real time, records every frame's arrival."""

    def __init__(self, url: str, seed: int):
        self.client = AvatarClient(url, seed=seed)
        self.fps = self.client.fps
        self.arrivals: list[tuple[float, Frame]] = []
        self.sent_first: dict[int, float] = {}     # utterance -> time its first chunk was sent
        self.reset_at: float | None = None
        self.reset_idle: float | None = None
        self.stop = False
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while not self.stop:
            try:
                item = self.client.receive(timeout=1.0)
            except TimeoutError:
                continue
            except Exception:                          # noqa: BLE001 - closed at the end
                return
            now = time.perf_counter()
            if isinstance(item, Frame):
                self.arrivals.append((now, item))
                if self.reset_at and self.reset_idle is None and item.utterance is None:
                    self.reset_idle = now

    def say(self, audio: np.ndarray, utterance: int, reset_after_s: float | None = None) -> None:
        """Send ``audio`` in 20 ms chunks at real time, then ``end`` (or ``reset``)."""
        t0 = time.perf_counter()
        self.sent_first[utterance] = t0
        for k, i in enumerate(range(0, len(audio), CHUNK)):
            target = t0 + k * CHUNK / SAMPLE_RATE
            time.sleep(max(0.0, target - time.perf_counter()))
            self.client.send_audio(audio[i:i + CHUNK])
            if reset_after_s is not None and k * CHUNK / SAMPLE_RATE >= reset_after_s:
                self.reset_at = time.perf_counter()
                self.client.reset()
                return
        self.client.end()

    def frames_of(self, utterance: int) -> list[tuple[float, Frame]]:
        return [(t, f) for t, f in self.arrivals if f.utterance == utterance]

    def wait_for_end(self, utterance: int, timeout: float = 30.0) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            frames = self.frames_of(utterance)
            if frames and frames[-1][1].last:
                return
            time.sleep(0.02)
        raise TimeoutError(f"utterance {utterance} did not finish")

    def latency(self, utterance: int) -> tuple[float, float]:
        """(client ms, server ms) from the first chunk to the first frame."""
        t, f = self.frames_of(utterance)[0]
        return 1000 * (t - self.sent_first[utterance]), f.latency_ms or float("nan")

    def lag(self, utterance: int) -> np.ndarray:
        """Each frame's arrival minus its due time (first frame's arrival + its audio_t), ms."""
        frames = self.frames_of(utterance)
        t = np.array([a for a, _ in frames])
        audio_t = np.array([f.audio_t for _, f in frames])
        return 1000 * (t - t[0] - (audio_t - audio_t[0]))

    def close(self):
        stats = None
        try:
            self.client.send({"type": "stats"})
            time.sleep(0.3)
            stats = next((m for m in reversed(self.client.messages) if m.get("type") == "stats"), None)
        finally:
            self.stop = True
            self.client.close()
        return stats or {}


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4, help="sessions at once (and the server's capacity)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--utterances", type=int, default=20, help="utterances for the latency figures")
    ap.add_argument("--long-s", type=float, default=60.0, help="seconds of the long utterance")
    ap.add_argument("--concurrent-s", type=float, default=30.0, help="seconds each concurrent session speaks")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_stream.md")
    args = ap.parse_args()
    started = time.perf_counter()
    pool = speech_pool()
    longest = max(args.long_s, 5.0) * SAMPLE_RATE
    pool = np.tile(pool, int(np.ceil(2 * longest / len(pool))))   # the dev speech is ~40 s in all
    rng = np.random.default_rng(0)

    def clip(seconds: float) -> np.ndarray:
        start = rng.integers(0, len(pool) - int(seconds * SAMPLE_RATE))
        return pool[start:start + int(seconds * SAMPLE_RATE)]

    port = free_port()
    server = start_server(port, args.sessions, args.size)
    url = f"ws://127.0.0.1:{port}/v1/stream"
    rows, lines = [], []
    try:
        # 1. latency, one session
        t = time.perf_counter()
        solo = Speaker(url, seed=0)
        while not solo.arrivals:
            time.sleep(0.01)
        first_frame_s = time.perf_counter() - t
        for u in range(1, args.utterances + 1):
            solo.say(clip(rng.uniform(1.5, 4.0)), u)
            solo.wait_for_end(u)
            time.sleep(0.3)
        lat = np.array([solo.latency(u) for u in range(1, args.utterances + 1)])
        counts_ok = all(len(solo.frames_of(u)) > 0 for u in range(1, args.utterances + 1))
        rows.append(("1 session, 20 ms chunks at real time", f"{args.utterances} utterances of 1.5-4 s",
                     f"{pct(lat[:, 0], 50):.0f} / {pct(lat[:, 0], 95):.0f}",
                     f"{pct(lat[:, 1], 50):.0f} / {pct(lat[:, 1], 95):.0f}", "", "", ""))
        # 2. a minute in one utterance
        u = args.utterances + 1
        solo.say(clip(args.long_s), u)
        solo.wait_for_end(u, timeout=args.long_s + 30)
        lag = solo.lag(u)
        long_t = [t for t, _ in solo.frames_of(u)]
        n_long = len(long_t)
        tail = lag[-25:]
        # 4. barge-in
        resets = []
        for k in range(5):
            u += 1
            solo.reset_at = solo.reset_idle = None
            solo.say(clip(4.0), u, reset_after_s=1.5)
            deadline = time.perf_counter() + 5
            while solo.reset_idle is None and time.perf_counter() < deadline:
                time.sleep(0.005)
            resets.append(1000 * ((solo.reset_idle or float("nan")) - solo.reset_at))
            time.sleep(0.3)
        stats = solo.close()
        rows.append((f"1 session, {args.long_s:.0f} s utterance", f"{n_long} frames "
                     f"(expected {round(args.long_s * solo.fps)})", "", "",
                     f"{lag[:25].mean():.0f} → {tail.mean():.0f}", f"{stats.get('late', '?')} / "
                     f"{stats.get('dropped', '?')}", f"{(n_long - 1) / (long_t[-1] - long_t[0]):.1f}"))

        # 3. N sessions at once
        speakers = [Speaker(url, seed=k + 1) for k in range(args.sessions)]
        refused = ""
        try:
            AvatarClient(url).close()
            refused = "NOT refused"
        except ServerError as err:
            refused = f"refused: {err}"
        plans = []
        for sp in speakers:
            plan, total = [], 0.0
            while total < args.concurrent_s:
                d = rng.uniform(2.0, 5.0)
                plan.append(clip(d))
                total += d + 0.5
            plans.append(plan)

        unfinished = []

        def talk(sp, plan):
            for u, audio in enumerate(plan, 1):
                sp.say(audio, u)
                try:
                    sp.wait_for_end(u, timeout=60)
                except TimeoutError as err:
                    unfinished.append(str(err))
                time.sleep(0.5)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=talk, args=(sp, plan)) for sp, plan in zip(speakers, plans)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        for k, (sp, plan) in enumerate(zip(speakers, plans)):
            spoken = [u for u in range(1, len(plan) + 1) if sp.frames_of(u)]
            lats = np.array([sp.latency(u) for u in spoken])
            lags = np.concatenate([sp.lag(u)[-5:] for u in spoken])
            received = [t for t, _ in sp.arrivals if t >= t0]
            st = sp.close()
            rows.append((f"{args.sessions} sessions: #{k + 1}", f"{len(plan)} utterances, {wall:.0f} s",
                         f"{pct(lats[:, 0], 50):.0f} / {pct(lats[:, 0], 95):.0f}",
                         f"{pct(lats[:, 1], 50):.0f} / {pct(lats[:, 1], 95):.0f}",
                         f"end-of-utterance {lags.mean():.0f} (max {lags.max():.0f})",
                         f"{st.get('late', '?')} / {st.get('dropped', '?')}",
                         f"{len(received) / (received[-1] - received[0]):.1f}"))
    finally:
        server.terminate()
        server.wait(10)

    # 5. the report
    head = ("| run | speech | latency client p50 / p95 (ms) | latency server p50 / p95 (ms) | "
            "lag (ms) | skipped late / dropped | frames/s |\n|---|---|---|---|---|---|---|")
    table = "\n".join([head] + ["| " + " | ".join(r) + " |" for r in rows])
    checks = [
        (pct(lat[:, 0], 50) <= 250 and pct(lat[:, 0], 95) <= 400, "latency p50 <= 250 ms and p95 <= 400 ms (1 session)"),
        (abs(tail.mean() - lag[:25].mean()) < 40, f"no growing lag over {args.long_s:.0f} s (end - start < 1 frame)"),
        (all(float(r[6]) >= 24.0 for r in rows[2:]), f"{args.sessions} sessions keep 25 frames/s"),
        ("refused" in refused and "NOT" not in refused, "a session over capacity is refused with a message"),
        (np.nanmax(resets) <= 100, "reset -> idle frame within 100 ms"),
        (counts_ok and not unfinished, "every utterance streamed to its last frame"),
    ]
    lines = [f"`python pipelines/benchmark_stream.py --sessions {args.sessions}`  ",
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
             f"{args.size}², 25 fps, server in its own process, benchmark run time "
             f"{time.perf_counter() - started:.0f} s", "",
             f"Time to the first (idle) frame of a new session: {1000 * first_frame_s:.0f} ms. "
             f"Barge-in (reset → first idle frame received): {', '.join(f'{r:.0f}' for r in resets)} ms. "
             f"Session {args.sessions + 1}: {refused}.", "", table, "", "```"]
    lines += [f"{'PASS' if ok else 'FAIL'}  {what}" for ok, what in checks] + ["```", ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
