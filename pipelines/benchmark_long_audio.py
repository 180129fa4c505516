"""Memory and time of the speech stage on one hour of audio.

    /usr/bin/time -f "peak RSS %M KB, %e s" python pipelines/benchmark_long_audio.py

Writes an hour of speech-like audio (a vowel buzz gated at 4 Hz) to a FLAC file, then
decodes it with the project's loader and runs everything `puppetry animate` does before
rendering (features, Audio2Expression, activity gate, head motion, blinks). Rendering
streams frame by frame and adds nothing that grows with the length.
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from puppetry.audio import SAMPLE_RATE, load_audio  # noqa: E402
from puppetry.pipeline import speech_to_motion  # noqa: E402

MINUTES = 60


def speech_like(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    buzz = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1100), 1))
    return (0.2 * buzz * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hour.flac"
        minute = speech_like(60.0)
        with sf.SoundFile(path, "w", SAMPLE_RATE, 1) as f:
            for _ in range(MINUTES):
                f.write(minute)
        t0 = time.time()
        motion = speech_to_motion(load_audio(path))
        print(f"{MINUTES} min of audio -> {len(motion)} frames of motion in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
