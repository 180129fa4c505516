"""Streaming server benchmark: latency, lag over a minute, concurrent sessions, barge-in;
bursts of speech, text beside other sessions, live driving by camera frames.

    python pipelines/benchmark_stream.py [--sessions 4] [--out docs/benchmarks_stream.md]
    python pipelines/benchmark_stream.py --parts burst,text,drive --out docs/benchmarks_stream_live.md

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

``--parts burst,text,drive`` (issues 12 and 13), each on a fresh server:

5. burst: utterances of 2-4 s sent in 20 ms chunks as fast as the socket takes them (what
   a client does with a file): frames per utterance against round(duration x fps), in
   order from audio_t 0, and the time from the first chunk to the first frame.
6. text: on a fresh server (the first text loads the voice), one session idles while
   another says a long text (~1500 characters) and then a short one: the largest gap
   between consecutive frames of each session, from the server's own frame times (``t``)
   and from arrival at the client.
7. drive: camera frames from a dev video (320 x 240 JPEG, at 25 frames/s) drive one
   session: the time from sending a camera frame to receiving the first avatar frame it
   drove (p50 / p95), and the server's own share (``drive_ms``).
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

DEV = Path(os.environ.get("PUPPETRY_DEV", ROOT.parent / "shared" / "dev"))   # read, never copied
DEV_AUDIO = DEV / "audio"
DEV_VIDEOS = DEV / "videos"
LONG_TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs back again to see "
             "whether the dog has noticed anything at all. ") * 12        # ~1500 characters
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
        self.speech_at: float | None = None        # when a text's speech message arrived
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
            elif item.get("type") == "speech" and self.speech_at is None:
                self.speech_at = now

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


def burst(url: str, clip, n: int = 10) -> tuple[list[str], list[tuple[bool, str]]]:
    """5. Utterances sent in 20 ms chunks as fast as the socket takes them."""
    sp = Speaker(url, seed=0)
    while not sp.arrivals:
        time.sleep(0.01)
    expected, complete, lat = [], [], []
    for u in range(1, n + 1):
        audio = clip(float(np.random.default_rng(u).uniform(2.0, 4.0)))
        sp.sent_first[u] = time.perf_counter()
        for i in range(0, len(audio), CHUNK):
            sp.client.send_audio(audio[i:i + CHUNK])
        sp.client.end()
        sp.wait_for_end(u)
        frames = [f for _, f in sp.frames_of(u)]
        want = round(len(audio) / SAMPLE_RATE * sp.fps)
        expected.append(want)
        complete.append(len(frames) == want and [f.audio_t for f in frames] ==
                        [round(i / sp.fps, 4) for i in range(want)]
                        and [f.index for f in frames] == list(range(frames[0].index, frames[0].index + want)))
        lat.append(sp.latency(u))
        time.sleep(0.3)
    st = sp.close()
    lat = np.array(lat)
    row = [f"| burst: {n} utterances of 2-4 s, 20 ms chunks as fast as possible | "
           f"{sum(complete)} of {n} complete and in order ({sum(expected)} frames expected) | "
           f"{pct(lat[:, 0], 50):.0f} / {pct(lat[:, 0], 95):.0f} / {np.max(lat[:, 0]):.0f} | "
           f"{pct(lat[:, 1], 50):.0f} / {pct(lat[:, 1], 95):.0f} | {st.get('late', '?')} / {st.get('dropped', '?')} |"]
    return row, [(all(complete), "burst: every utterance gives round(duration x fps) frames, in order"),
                 (np.max(lat[:, 0]) <= 250, "burst: first frame <= 250 ms after the first chunk (every utterance)")]


def text_beside(url: str) -> tuple[list[str], list[tuple[bool, str]]]:
    """6. One session idles while another says a long text, then a short one. Largest
    frame gaps in three windows: 10 s before the text (the machine's own noise), while
    the text is synthesised (text sent -> its speech message), and while it is spoken."""
    quiet, talker = Speaker(url, seed=1), Speaker(url, seed=2)
    while not (quiet.arrivals and talker.arrivals):
        time.sleep(0.01)
    time.sleep(10.0)
    t0 = time.perf_counter()
    talker.client.say(LONG_TEXT)
    talker.wait_for_end(1, timeout=600)
    talker.client.say("And that is all.")
    talker.wait_for_end(2, timeout=60)
    t1 = time.perf_counter()
    synth_end = (talker.speech_at or t0) + 0.2

    def gaps(sp, lo, hi):
        got = [(a, f) for a, f in sp.arrivals if lo <= a <= hi]
        return (1000 * np.max(np.diff([f.t for _, f in got])) if len(got) > 1 else float("nan"),
                1000 * np.max(np.diff([a for a, _ in got])) if len(got) > 1 else float("nan"))

    rows, checks = [], []
    for name, sp in (("the idle session", quiet), ("the speaking session", talker)):
        before, during, spoken = gaps(sp, t0 - 10, t0), gaps(sp, t0, synth_end), gaps(sp, synth_end, t1)
        st = sp.close()
        rows.append(f"| text on a fresh server: {name} | largest gap server / client (ms): 10 s before "
                    f"{before[0]:.0f} / {before[1]:.0f}; during synthesis ({1000 * (synth_end - t0):.0f} ms) "
                    f"{during[0]:.0f} / {during[1]:.0f}; while spoken ({t1 - synth_end:.0f} s) "
                    f"{spoken[0]:.0f} / {spoken[1]:.0f} | | | {st.get('late', '?')} / {st.get('dropped', '?')} |")
        checks.append((max(during[0], spoken[0]) <= 120,
                       f"text: {name}'s frames never stall (largest server-side gap <= 120 ms)"))
    speech = next((m for m in talker.client.messages if m.get("type") == "speech"), {})
    rows[-1] = rows[-1].replace("| text on", f"| text (~{len(LONG_TEXT)} characters, "
                                f"{speech.get('duration', 0):.0f} s of speech, then a short one) on")
    return rows, checks


def drive(url: str, seconds: float = 20.0, size=(320, 240)) -> tuple[list[str], list[tuple[bool, str]]]:
    """7. Camera frames from a dev video drive one session, paced at 25 frames/s."""
    import cv2

    from puppetry.io import read_video_frames
    video = sorted(DEV_VIDEOS.glob("*.mp4"))[-1]
    frames = []
    for rgb in read_video_frames(video):
        frames.append(cv2.imencode(".jpg", cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)[:, :, ::-1],
                                   [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
        if len(frames) >= seconds * 25:
            break
    sp = Speaker(url, seed=3)
    while not sp.arrivals:
        time.sleep(0.01)
    sent = {}
    t0 = time.perf_counter()
    for seq, jpeg in enumerate(frames):
        time.sleep(max(0.0, t0 + seq / 25 - time.perf_counter()))
        sent[seq] = time.perf_counter()
        sp.client.send_drive(jpeg, seq=seq)
    time.sleep(1.0)
    first = {}
    for a, f in sp.arrivals:
        if f.drive_seq is not None and f.drive_seq not in first:
            first[f.drive_seq] = (a, f.drive_ms)
    warm = {q: v for q, v in first.items() if q >= 25}             # after the tracker loaded
    lat = np.array([1000 * (a - sent[q]) for q, (a, _) in warm.items()])
    server_ms = np.array([ms for _, ms in warm.values()])
    driven = [f for a, f in sp.arrivals if a >= sent[25] and f.drive_seq is not None]
    span = driven[-1].t - driven[0].t if len(driven) > 1 else float("nan")
    st = sp.close()
    row = [f"| drive: {len(frames)} camera frames of {video.name} ({size[0]} x {size[1]} JPEG, 25 /s) | "
           f"{len(warm)} of {len(frames) - 25} shown; {len(driven) / span:.1f} driven frames/s | "
           f"{pct(lat, 50):.0f} / {pct(lat, 95):.0f} / {np.max(lat):.0f} | "
           f"{pct(server_ms, 50):.0f} / {pct(server_ms, 95):.0f} | "
           f"{st.get('late', '?')} / {st.get('dropped', '?')} (camera frames replaced: {st.get('drive_dropped', '?')}, "
           f"no face: {st.get('drive_lost', '?')}) |"]
    return row, [(pct(lat, 50) <= 150, "drive: camera frame -> avatar frame p50 <= 150 ms")]


def live_parts(parts: set[str], size: int, clip) -> str:
    """Parts 5-7, each on a fresh server; a markdown table and PASS/FAIL lines."""
    rows, checks = [], []
    for part, run in (("burst", lambda url: burst(url, clip)), ("text", text_beside), ("drive", drive)):
        if part not in parts:
            continue
        port = free_port()
        server = start_server(port, 4, size)
        try:
            r, c = run(f"ws://127.0.0.1:{port}/v1/stream")
        finally:
            server.terminate()
            server.wait(10)
        rows += r
        checks += c
    head = ("| run | result | client ms p50 / p95 / max (burst, drive: latency; text: largest gap, "
            "server / client) | server ms p50 / p95 | skipped late / dropped |\n|---|---|---|---|---|")
    text = head + "\n" + "\n".join(rows)
    return "\n".join([text, "", "```"] + [f"{'PASS' if ok else 'FAIL'}  {what}" for ok, what in checks] + ["```"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4, help="sessions at once (and the server's capacity)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--utterances", type=int, default=20, help="utterances for the latency figures")
    ap.add_argument("--long-s", type=float, default=60.0, help="seconds of the long utterance")
    ap.add_argument("--concurrent-s", type=float, default=30.0, help="seconds each concurrent session speaks")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_stream.md")
    ap.add_argument("--parts", default="core", help="core (1-4) and/or burst, text, drive (5-7), "
                    "comma-separated, or all")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    parts = {"core", "burst", "text", "drive"} if "all" in parts else parts
    started = time.perf_counter()
    pool = speech_pool()
    longest = max(args.long_s, 5.0) * SAMPLE_RATE
    pool = np.tile(pool, int(np.ceil(2 * longest / len(pool))))   # the dev speech is ~40 s in all
    rng = np.random.default_rng(0)

    def clip(seconds: float) -> np.ndarray:
        start = rng.integers(0, len(pool) - int(seconds * SAMPLE_RATE))
        return pool[start:start + int(seconds * SAMPLE_RATE)]

    if "core" not in parts:
        text = (f"`python pipelines/benchmark_stream.py --parts {args.parts}`  \n"
                f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
                f"{args.size}², 25 fps, each part on a fresh server in its own process\n\n"
                + live_parts(parts, args.size, clip) + "\n")
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        return
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
    if parts - {"core"}:
        text += "\n" + live_parts(parts, args.size, clip) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
