"""The ``puppetry`` command: parse arguments, call the library, report."""
from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from dataclasses import replace

from .drive.motion import PRESETS
from .runtime import one_blas_thread

GC_THRESHOLD = 50_000   # allocations between collections of the youngest generation
VERIFY_NOT_FOUND = 3    # exit status of 'puppetry verify' without the watermark (errors: 1)
PORTRAIT_ONLY = ("fps", "size", "frame", "still", "motion_scale", "seed", "motion", "motion_mode",
                 "style", "model", "expressions_out")   # animate options a .puppet does not take


def _render(args) -> None:
    from .pipeline import RenderJob, render_video
    job = replace(RenderJob(), size=args.size, frame=args.frame, fps=args.fps,
                  duration=args.duration, seed=args.seed)
    stats = render_video(args.portrait, args.motion, args.output, job, force=args.force)
    print(f"wrote {args.output}: {stats['frames']} frames, {stats['duration_s']:.2f} s of video "
          f"in {stats['total_s']:.2f} s (real-time factor {stats['total_s'] / stats['duration_s']:.2f})")


def _animate(args) -> None:
    from .pipeline import AnimateJob, animate_video
    if (args.audio is None) == (args.text is None):
        raise ValueError("give either an AUDIO file or --text \"words to say\" (not both)")
    if str(args.portrait).lower().endswith(".puppet"):     # a learned person: dub its footage
        return _animate_person(args)
    job = replace(AnimateJob(), size=args.size, frame=args.frame, fps=args.fps, seed=args.seed,
                  still=args.still, motion_scale=args.motion_scale, model=args.model,
                  style=args.style, motion=args.motion, motion_mode=args.motion_mode, voice=args.voice)
    stats = animate_video(args.portrait, args.audio, args.output, job, text=args.text,
                          expressions_out=args.expressions_out, force=args.force)
    print(f"wrote {args.output}: {stats['frames']} frames for {stats['duration_s']:.2f} s of speech "
          f"in {stats['total_s']:.2f} s (real-time factor {stats['total_s'] / max(stats['duration_s'], 1e-9):.2f}, "
          f"first frame after {stats['first_frame_s']:.2f} s)")


def _animate_person(args) -> None:
    from .person import DubJob, dub_video
    from .person.train import progress_bar
    defaults = vars(build_parser().parse_args(["animate", "-", "-o", "-"]))
    portrait_only = [f"--{k.replace('_', '-')}" for k in PORTRAIT_ONLY if getattr(args, k) != defaults[k]]
    if portrait_only:
        raise ValueError(f"{', '.join(portrait_only)}: for a portrait only; a learned person "
                         f"({args.portrait}) keeps its footage's size, framing and head motion "
                         "(see 'puppetry dub --help' for its options)")
    stats = dub_video(args.portrait, args.audio, args.output, replace(DubJob(), voice=args.voice),
                      text=args.text, progress=progress_bar(), force=args.force)
    print(f"wrote {args.output}: {args.portrait} saying {stats['duration_s']:.2f} s of speech "
          f"({stats['frames']} frames) in {stats['total_s']:.2f} s")


def _fit_style(args) -> None:
    from .expression.style import fit_style
    from .io import check_output
    check_output(args.output, [args.video], force=args.force)   # before minutes of tracking
    style = fit_style(args.video)
    style.save(args.output, force=args.force)
    print(f"wrote {args.output}: speaking style of {args.video}")


def _track(args) -> None:
    import json
    from pathlib import Path
    from .drive.video import track_clip
    from .io import check_output, write_text
    outputs = [args.output] + ([args.csv] if args.csv else [])
    if args.csv and Path(args.csv).resolve() == Path(args.output).resolve():
        raise ValueError(f"--csv {args.csv} is also -o: give the CSV its own name")
    for out in outputs:                                          # before tracking
        check_output(out, [args.video], force=args.force)
    clip = track_clip(args.video)
    for k, out in enumerate(outputs):
        as_csv = k == 1 or Path(out).suffix.lower() == ".csv"
        write_text(out, clip.to_csv() if as_csv else json.dumps(clip.to_json()), force=args.force)
    print(f"wrote {' and '.join(outputs)}: {len(clip)} frames at {clip.fps:g} frames/s, face "
          f"lost in {len(clip.lost)} (bridged, listed as \"lost\")")


def _reenact(args) -> None:
    from .pipeline import ReenactJob, reenact_video
    overrides = []
    for item in args.expression or []:
        name, sep, value = item.partition("=")
        try:
            overrides.append((name, float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--expression {item!r}: use NAME=VALUE, e.g. mouthSmileLeft=0.6")
    job = replace(ReenactJob(), size=args.size, frame=args.frame, mode=args.mode, only=args.only,
                  expression=tuple(overrides), audio=args.audio)
    stats = reenact_video(args.source, args.driver, args.output, job, force=args.force)
    print(f"wrote {args.output}: {stats['frames']} frames, {stats['duration_s']:.2f} s of video in "
          f"{stats['total_s']:.2f} s (real-time factor {stats['total_s'] / stats['duration_s']:.2f}); "
          f"face lost in {stats['lost']} driver frames (bridged)")


def _learn(args) -> None:
    from .person import LearnConfig, learn
    from .person.train import progress_bar
    config = replace(LearnConfig(), minutes=args.minutes, start=args.start)
    if args.start:       # training goes on: a lower learning rate than from scratch
        config = replace(config, train=replace(config.train, lr=5e-4))
    meta = learn(args.video, args.output, config,
                 device=args.device, progress=progress_bar(), force=args.force)
    dropped = meta["frames_dropped"]
    print(f"wrote {args.output}: learned from {meta['frames_used']} frames ({dropped['lost']} "
          f"without a face and {dropped['blurred']} blurred left out), "
          f"{meta['training']['steps']} training steps in {meta['seconds'] / 60:.1f} min")


def _dub(args) -> None:
    from .person import DubJob, dub_video
    from .person.train import progress_bar
    stats = dub_video(args.person, args.audio, args.output, replace(DubJob(), renderer=args.renderer),
                      video=args.video, motion=args.motion, text=args.text, progress=progress_bar(),
                      force=args.force)
    print(f"wrote {args.output}: {stats['frames']} frames for {stats['duration_s']:.2f} s of speech "
          f"in {stats['total_s']:.2f} s")


def _demo(args) -> None:
    from .ui.demo import launch
    launch(host=args.host, port=args.port)


def _serve(args) -> None:
    from .ui.server import ServerConfig, serve
    serve(ServerConfig(host=args.host, port=args.port, size=args.size, fps=args.fps,
                       max_sessions=args.max_sessions,
                       token=args.token or os.environ.get("PUPPETRY_TOKEN") or None,
                       allow_origins=tuple(args.allow_origin), idle_timeout_s=args.idle_timeout,
                       person=args.person))


def _verify(args) -> int:
    import json
    from .provenance import verify
    report = verify(args.video)
    if args.json:
        print(json.dumps(report))
    else:
        verdict = "FOUND" if report["watermark"] else "not found"
        print(f"{args.video}: puppetry watermark {verdict} (z = {report['z']:.1f}, "
              f"p = {report['p_value']:.2g}, {report['frames']} frames)")
        meta = report["metadata"]   # the long comment only where it is the one tag (a GIF)
        tags = ", ".join(f"{k}={v}" for k, v in meta.items() if k != "comment" or len(meta) == 1)
        print(f"AI-generated metadata: {tags or 'none (never written, or stripped)'}")
    return 0 if report["watermark"] else VERIFY_NOT_FOUND


def add_output(parser: argparse.ArgumentParser, what: str) -> None:
    """``-o/--output`` and ``--force``, the same for every command that writes a file."""
    parser.add_argument("-o", "--output", required=True, help=what)
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing read-only output (never an input or a device)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="puppetry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="animate a portrait with pose and expression codes")
    r.add_argument("portrait", help="photo of one face (JPEG, PNG, ...), or 'astronaut' for the bundled one")
    r.add_argument("--motion", required=True,
                   help=f"a motion JSON file, or a preset: {', '.join(PRESETS)}")
    add_output(r, "output video: .mp4 (default), .mov, .mkv, .webm or .gif")
    r.add_argument("--fps", type=float, default=25.0, help="frame rate of presets (default 25)")
    r.add_argument("--size", type=int, default=512, help="output size in pixels (default 512)")
    r.add_argument("--frame", choices=("crop", "full"), default="crop",
                   help="a square crop around the head (default) or the full photo")
    r.add_argument("--duration", type=float, default=4.0, help="seconds, for presets (default 4)")
    r.add_argument("--seed", type=int, default=0, help="seed of the idle motion in presets")
    r.set_defaults(run=_render)

    a = sub.add_parser("animate", help="a talking video from a portrait and speech")
    a.add_argument("portrait", help="photo of one face, 'astronaut' for the bundled one, or a "
                   "PERSON.puppet from 'puppetry learn' (the same as 'puppetry dub')")
    a.add_argument("audio", nargs="?", help="speech: wav, flac, mp3, ogg/opus, m4a/aac, or a video's audio track")
    a.add_argument("--text", help="say these words with the built-in offline voice instead of AUDIO")
    a.add_argument("--voice", default="espeak", help="TTS voice for --text: espeak (default), "
                   "espeak:NAME, or joe (the 'piper' extra)")
    add_output(a, "output video: .mp4 (H.264 + AAC, default), .mov, .mkv, .webm (VP9 + Opus) or .gif (no sound)")
    a.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    a.add_argument("--size", type=int, default=512, help="output size in pixels (default 512)")
    a.add_argument("--frame", choices=("crop", "full"), default="crop",
                   help="a square crop around the head (default) or the full photo")
    a.add_argument("--still", action="store_true", help="no head motion (blinks stay)")
    a.add_argument("--motion-scale", type=float, default=1.0, help="head motion amount (default 1)")
    a.add_argument("--seed", type=int, default=0, help="seed of head motion, blinks and gaze")
    a.add_argument("--motion", help="MOTION.json pose codes to combine with the generated motion")
    a.add_argument("--motion-mode", choices=("add", "replace"), default="add",
                   help="add --motion to the generated head motion (default) or replace it")
    a.add_argument("--style", help="a person's speaking style from 'puppetry fit-style'")
    a.add_argument("--model", help="an Audio2Expression checkpoint (default: the shipped one)")
    a.add_argument("--expressions-out", help="also write the ARKit curves: .json or .csv")
    a.set_defaults(run=_animate)

    f = sub.add_parser("fit-style", help="fit a person's speaking style from a video of them")
    f.add_argument("video", help="a video of the person talking, face visible")
    add_output(f, "style file, .json")
    f.set_defaults(run=_fit_style)

    t = sub.add_parser("track", help="facial motion capture: a video -> a motion file for render --motion")
    t.add_argument("video", help="a video of one face")
    add_output(t, "motion file, .json (pose, gaze and the 52 ARKit weights per frame); "
                  "a name ending in .csv writes the CSV instead")
    t.add_argument("--csv", metavar="CSV", help="also write the curves as CSV: frame, time, lost, "
                   "yaw, pitch, roll, tx, ty, scale, gaze_h, gaze_v, the 52 ARKit names")
    t.set_defaults(run=_track)

    e = sub.add_parser("reenact", help="a photo driven by a video of anyone (head and expression)")
    e.add_argument("source", help="photo of one face, or 'astronaut' for the bundled one")
    e.add_argument("driver", help="the driving video (one face); its fps, length and audio are kept")
    add_output(e, "output video, .mp4")
    e.add_argument("--size", type=int, default=512, help="output size in pixels (default 512)")
    e.add_argument("--frame", choices=("crop", "full"), default="crop",
                   help="a square crop around the head (default) or the full photo")
    e.add_argument("--relative", dest="mode", action="store_const", const="relative", default="relative",
                   help="the driver's head motion from its first frame moves the source from its "
                        "own pose (default); the expression is the driver's either way")
    e.add_argument("--absolute", dest="mode", action="store_const", const="absolute",
                   help="the source takes the driver's head orientation as it is")
    e.add_argument("--only", choices=("pose", "expression"), help="transfer only the head pose or the expression")
    e.add_argument("--expression", action="append", metavar="NAME=VALUE",
                   help="set an ARKit weight in every frame, e.g. mouthSmileLeft=0.6 (repeatable)")
    e.add_argument("--audio", choices=("keep", "none"), default="keep", help="the driver's audio (default keep)")
    e.set_defaults(run=_reenact)

    le = sub.add_parser("learn", help="learn a person from a video of them talking (a .puppet file)")
    le.add_argument("video", help="15 s to 10 min of one person talking, face visible (with its audio)")
    add_output(le, "person file, .puppet")
    le.add_argument("--minutes", type=float, default=25.0,
                    help="time budget of the whole job, minutes (default 25; more trains longer)")
    le.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where to train (default auto: a CUDA GPU if there is one)")
    le.add_argument("--start", help="a .puppet learned from this video: train it on (more minutes, "
                    "sharper mouths) instead of from scratch")
    le.set_defaults(run=_learn)

    du = sub.add_parser("dub", help="new speech over a learned person's footage")
    du.add_argument("person", help="a .puppet file from 'puppetry learn'")
    du.add_argument("audio", nargs="?", help="the new speech (any audio file or a video's audio)")
    add_output(du, "output video: .mp4 (H.264 + AAC, default), .mov, .mkv, .webm (VP9 + Opus) or .gif (no sound)")
    du.add_argument("--video", help="other footage of the same person (default: the video it learned from)")
    du.add_argument("--motion", help="MOTION.json whose expressions replace those from the speech")
    du.add_argument("--renderer", choices=("neural", "warp"), default="neural",
                    help="the learned renderer (default) or the one-shot warp renderer")
    du.add_argument("--text", help="say these words with the built-in offline voice instead of AUDIO")
    du.set_defaults(run=_dub)

    d = sub.add_parser("demo", help="the browser demo (Gradio): upload a portrait and speech")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    d.set_defaults(run=_demo)

    s = sub.add_parser("serve", help="the streaming avatar server (WebSocket) and its browser page")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--size", type=int, default=256, help="frame size in pixels (default 256)")
    s.add_argument("--fps", type=float, default=25.0, help="frames per second (default 25)")
    s.add_argument("--max-sessions", type=int, default=None,
                   help="sessions served at once; more are refused (default: what this machine "
                        "keeps real-time, docs/streaming.md)")
    s.add_argument("--token", help="access token the WebSocket and uploads must carry (default: "
                   "$PUPPETRY_TOKEN; required with a --host other than loopback)")
    s.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web page origin (https://app.example) allowed besides the server's own "
                        "page; repeat for more")
    s.add_argument("--idle-timeout", type=float, default=600.0,
                   help="seconds a session may send nothing before it ends (default 600; 0: never)")
    s.add_argument("--person", help="a PERSON.puppet from 'puppetry learn': the avatar of every "
                   "session (its footage, the lower face re-rendered; one session by default)")
    s.set_defaults(run=_serve)

    v = sub.add_parser("verify", help="does a video carry puppetry's AI-generated watermark?")
    v.add_argument("video", help="a video file (any format ffmpeg reads; re-encoded or resized is fine)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(run=_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads (torch's, CTranslate2's) sleep when idle instead of spinning: the
    # render workers, the speech encoder and ffmpeg share few cores, and a spinning thread
    # takes one from them. Read when torch loads, which is after this line.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        code = args.run(args)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        print(f"puppetry {args.command}: error: {err}", file=sys.stderr)
        return 1
    return code or 0


def entry() -> None:
    """Console-script entry point: tune the process, run, then leave without interpreter
    teardown.

    Every output is written and closed by then (files are renamed into place only when
    complete); tearing down torch's native libraries would only add ~0.7 s to each run.
    """
    # settings of the whole process, so here and not in main() (which tests call in theirs):
    # numpy's (and OpenCV's) OpenBLAS threads spin after each call: one thread here, and in
    # every process forked from here (runtime.one_blas_thread); and young objects are
    # collected every 50 000 allocations, not every 700 (torch's import alone ran ~0.1 s of
    # collections; the peak memory of an hour-long job does not move)
    one_blas_thread()
    gc.set_threshold(GC_THRESHOLD)
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
