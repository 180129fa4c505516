"""Phonemes to coarticulated ARKit mouth shapes (visemes), for making training targets.

    >>> phones = [("sil", 0.0, 0.2), ("aa", 0.2, 0.35), ("p", 0.35, 0.43), ("aa", 0.43, 0.6)]
    >>> curves = viseme_curves(phones)          # float32[T x 52] at 100 Hz, ARKIT_NAMES order
    >>> curves[39, INDEX["mouthClose"]] > 0.8 * curves[39, INDEX["jawOpen"]]   # lips sealed
    True

1. Inventory: the 39 ARPAbet phonemes of CMUdict, lower case (``"aa"``, ``"p"``), plus
   ``"sil"`` (a pause) and ``"sp"`` (a short pause between words). Each speech engine names
   its phones its own way; ``to_arpabet(engine, phone)`` maps them:

   - ``"espeak"``: espeak-ng's IPA phoneme events (``espeakINITIALIZE_PHONEME_IPA``), as its
     English voices (en, en-us, en-gb, en-gb-scotland, en-gb-x-rp, en-029, ...) print them:
     ``ESPEAK_IPA``. Piper phonemizes with espeak-ng too but splits the IPA into code
     points: ``merge_ipa`` joins them back into espeak's symbols first.
   - ``"festival"`` and ``"flite"``: the CMU/radio phone set of festival's US voices (kal,
     ked, slt) and flite's cmu_us voices (kal, kal16, awb, rms, slt): ``FESTIVAL_PHONES``.
   - ``"sphinx"``: pocketsphinx's en-us acoustic model phones (upper-case ARPAbet, ``SIL``).

2. Targets: ``VISEME_TARGETS[phoneme]`` gives the speech-relevant ARKit weights of the
   phoneme's articulatory target. Bilabials (p, b, m) seal the lips: in ARKit,
   ``mouthClose`` closes the lips *while the jaw is open*, so the lips are sealed when
   ``mouthClose == jawOpen``. Internally a lip-seal amount in [0, 1] is blended like any
   other shape and ``mouthClose = seal * jawOpen`` afterwards, so a blended closure stays a
   closure whatever the jaw does. Diphthongs (ay, aw, ey, ow, oy) glide to a second target
   over their last half.

3. Coarticulation (Cohen & Massaro 1993): a segment exerts a dominance
   ``D(t) = alpha * exp(-theta * |t - centre|)`` on each group of shapes (jaw, lip closure,
   lip shape, tongue) and a shape at time t is the dominance-weighted average of the
   segments' targets. Bilabials and labiodentals dominate their closure strongly but
   briefly (high alpha, high theta), so closures are reached even in fast speech; vowels
   are weaker and wider; velars and /h/ barely constrain the lips, so neighbouring rounding
   spreads across them. Segments longer than ``MAX_PIECE_S`` are split into pieces with
   their own centres, so long vowels hold their target and long silences come to rest.
"""
from __future__ import annotations

import unicodedata

import numpy as np

from puppetry.expression.arkit import ARKIT_NAMES, INDEX, N_EXPRESSIONS, SPEECH_NAMES

RATE = 100.0            # frames per second of the curves by default
MAX_PIECE_S = 0.12      # s: longer segments are split into pieces of at most this length

# 1. Inventory ---------------------------------------------------------------------------

VOWELS = ("aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy",
          "uh", "uw")
CONSONANTS = ("b", "ch", "d", "dh", "f", "g", "hh", "jh", "k", "l", "m", "n", "ng", "p", "r",
              "s", "sh", "t", "th", "v", "w", "y", "z", "zh")
SILENCES = ("sil", "sp")
PHONEMES: tuple[str, ...] = VOWELS + CONSONANTS + SILENCES   # 15 + 24 = 39 phonemes, 2 pauses

# espeak-ng's IPA phoneme symbols for its English voices -> ARPAbet. Keys are whole
# espeak phonemes (a diphthong or affricate is one key); stress marks never occur in its
# events. The set was collected from espeak-ng 1.51's events for en, en-us, en-us-nyc,
# en-gb-x-rp, en-gb-scotland, en-gb-x-gbclan, en-gb-x-gbcwmd and en-029 saying the corpus
# texts; a few rarer symbols are added. A value with a space is two phonemes sharing the
# segment (an r-coloured vowel "ɔːɹ" -> "ao r"). Anything else raises.
ESPEAK_IPA: dict[str, str] = {
    # monophthongs
    "ɑː": "aa", "ɑ": "aa", "ɒ": "aa", "ɒː": "aa", "aː": "aa", "a:": "aa", "aa": "aa",
    "a": "ae", "æ": "ae", "ɐ": "ah", "ə": "ah", "ʌ": "ah", "ɵ": "ah",
    "ɜː": "er", "ɜ": "er", "ɚ": "er", "ɝ": "er", "ɚː": "er",
    "ɔː": "ao", "ɔ": "ao", "ɛ": "eh", "e": "eh", "ɛː": "eh", "eː": "ey",
    "ɪ": "ih", "ᵻ": "ih", "ɨ": "ih", "i": "iy", "iː": "iy",
    "ʊ": "uh", "u": "uw", "uː": "uw", "ʉ": "uw", "ʉː": "uw", "o": "ow", "oː": "ow",
    # diphthongs
    "aɪ": "ay", "ɑɪ": "ay", "ʌɪ": "ay", "əɪ": "ay", "aʊ": "aw", "æʊ": "aw", "ʌʊ": "aw",
    "ʌʉ": "aw", "eɪ": "ey", "ei": "ey", "oʊ": "ow", "əʊ": "ow", "əu": "ow", "ɔɪ": "oy",
    "oɪ": "oy", "ɪə": "ih ah", "iə": "iy ah", "eə": "eh ah", "ɛə": "eh ah", "ʊə": "uh ah",
    "oə": "ow ah", "ɔə": "ao ah", "ɑə": "aa ah", "aɪə": "ay ah",
    # r-coloured vowels and syllabic l, one espeak phoneme each
    "ɑːɹ": "aa r", "ɔːɹ": "ao r", "oːɹ": "ow r", "ɛɹ": "eh r", "ɪɹ": "ih r", "ʊɹ": "uh r",
    "ʉɹ": "uw r", "əɹ": "ah r", "ʌɹ": "ah r", "aɪɚ": "ay er", "əl": "ah l",
    # consonants
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "g": "g", "ɡ": "g", "m": "m",
    "n": "n", "ŋ": "ng", "f": "f", "v": "v", "θ": "th", "ð": "dh", "s": "s", "z": "z",
    "ʃ": "sh", "ʒ": "zh", "tʃ": "ch", "dʒ": "jh", "h": "hh", "l": "l", "ɫ": "l", "ɬ": "l",
    "ɹ": "r", "r": "r", "ɾ": "d", "ʔ": "t", "w": "w", "ʍ": "w", "j": "y", "ʲ": "y",
    "x": "hh", "ç": "hh", "n̩": "n", "l̩": "l", "m̩": "m",
    # pauses: espeak's events name a pause with an empty string
    "": "sil",
}

# Festival (US voices with the radio/CMU phone set) and flite (cmu_us voices) phones.
FESTIVAL_PHONES: dict[str, str] = {
    **{p: p for p in VOWELS + CONSONANTS},
    "ax": "ah", "axr": "er", "ix": "ih", "dx": "d", "nx": "n", "hv": "hh",
    "el": "l", "em": "m", "en": "n",
    "pau": "sil", "h#": "sil", "brth": "sil",
}

# pocketsphinx en-us acoustic model phones.
SPHINX_PHONES: dict[str, str] = {
    **{p.upper(): p for p in VOWELS + CONSONANTS}, "SIL": "sil",
}

ENGINE_PHONES: dict[str, dict[str, str]] = {
    "espeak": ESPEAK_IPA, "festival": FESTIVAL_PHONES, "flite": FESTIVAL_PHONES,
    "sphinx": SPHINX_PHONES,
}

_IPA_MARKS = "ˈˌ"                      # stress marks: no phone of their own
_IPA_JOINERS = "ː" + "ˑ"               # length marks: part of the previous phone


def to_arpabet(engine: str, phone: str) -> tuple[str, ...]:
    """One engine phone -> its ARPAbet phonemes, usually one (``"espeak"``, ``"ɑː"`` ->
    ``("aa",)``; ``"ɔːɹ"`` -> ``("ao", "r")``)."""
    if engine not in ENGINE_PHONES:
        raise ValueError(f"unknown speech engine {engine!r}: use one of {', '.join(ENGINE_PHONES)}")
    table = ENGINE_PHONES[engine]
    if phone in table:
        return tuple(table[phone].split())
    if engine == "espeak":   # a symbol with an extra diacritic (dental t̪): try it without
        bare = "".join(c for c in unicodedata.normalize("NFD", phone)
                       if not unicodedata.combining(c) and c not in _IPA_MARKS)
        for key in (unicodedata.normalize("NFC", bare), bare.rstrip("ː")):
            if key in table:
                return tuple(table[key].split())
    table_name = {"espeak": "ESPEAK_IPA", "sphinx": "SPHINX_PHONES"}.get(engine, "FESTIVAL_PHONES")
    raise ValueError(f"{engine} phone {phone!r} has no ARPAbet mapping: add it to "
                     f"puppetry.expression.visemes.{table_name}")


def convert(engine: str, phones: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Timed engine phones -> timed ARPAbet phonemes; a two-phoneme symbol splits its time."""
    out = []
    for phone, start, end in phones:
        arpa = to_arpabet(engine, phone)
        step = (end - start) / len(arpa)
        out += [(p, start + k * step, start + (k + 1) * step) for k, p in enumerate(arpa)]
    return out


def merge_ipa(symbols: list[str], pad: str = "_") -> list[tuple[str, list[int]]]:
    """IPA code points (Piper's phoneme tokens) -> whole espeak phonemes with their indices.

    Two code points that form one espeak phoneme (a diphthong, an affricate, a vowel and
    its length mark or diacritic) join, also across ``pad`` tokens between them (Piper puts
    a blank between all tokens). Pads, stress marks, spaces and punctuation come back as
    entries of their own, and a stress mark keeps the phones around it apart:

    >>> merge_ipa(["p", "_", "ˈ", "_", "a", "_", "ɪ", "_", "ː"])
    [('p', [0]), ('_', [1]), ('ˈ', [2]), ('_', [3]), ('aɪː', [4, 5, 6, 7, 8])]
    """
    out: list[tuple[str, list[int]]] = []
    last = -1   # index in out of the last phone
    for i, s in enumerate(symbols):
        if s != pad and s not in _IPA_MARKS and last >= 0:
            prev = out[last][0]
            only_pads = all(g[0] == pad for g in out[last + 1:])
            if prev and prev in ESPEAK_IPA and only_pads and (
                    s in _IPA_JOINERS or unicodedata.combining(s[0]) or prev + s in ESPEAK_IPA):
                out[last:] = [(prev + s, [k for g in out[last:] for k in g[1]] + [i])]
                continue
        out.append((s, [i]))
        if s != pad and s not in _IPA_MARKS:
            last = len(out) - 1
    return out


# 2. Targets -----------------------------------------------------------------------------

# Shapes given once for both sides.
_SIDED = {"stretch": "mouthStretch", "upperUp": "mouthUpperUp", "lowerDown": "mouthLowerDown",
          "smile": "mouthSmile", "press": "mouthPress"}
_PLAIN = {"jaw": "jawOpen", "funnel": "mouthFunnel", "pucker": "mouthPucker",
          "rollLower": "mouthRollLower", "rollUpper": "mouthRollUpper",
          "shrugUpper": "mouthShrugUpper", "shrugLower": "mouthShrugLower",
          "tongue": "tongueOut"}

_T = {  # phoneme: articulatory target; "seal" is the lip seal in [0, 1] (see module doc)
    # vowels
    "aa": dict(jaw=0.65, lowerDown=0.2),
    "ae": dict(jaw=0.55, stretch=0.25, upperUp=0.15, lowerDown=0.25, smile=0.1),
    "ah": dict(jaw=0.45, lowerDown=0.1),
    "ao": dict(jaw=0.55, funnel=0.35, pucker=0.1),
    "aw": dict(jaw=0.6, lowerDown=0.15),                      # glides to uh
    "ay": dict(jaw=0.6, lowerDown=0.15),                      # glides to ih
    "eh": dict(jaw=0.4, stretch=0.3, upperUp=0.1, lowerDown=0.15),
    "er": dict(jaw=0.3, funnel=0.25, pucker=0.15, shrugUpper=0.1),
    "ey": dict(jaw=0.4, stretch=0.3, upperUp=0.1, lowerDown=0.1),   # glides to iy
    "ih": dict(jaw=0.25, stretch=0.35, smile=0.1),
    "iy": dict(jaw=0.15, stretch=0.5, smile=0.25),
    "ow": dict(jaw=0.4, funnel=0.5, pucker=0.3),              # glides to uw
    "oy": dict(jaw=0.5, funnel=0.4, pucker=0.15),             # glides to iy
    "uh": dict(jaw=0.25, funnel=0.3, pucker=0.35),
    "uw": dict(jaw=0.15, funnel=0.35, pucker=0.75),
    # bilabials: lips sealed, pressed
    "p": dict(jaw=0.06, seal=1.0, press=0.6, rollLower=0.15, rollUpper=0.1, shrugLower=0.1),
    "b": dict(jaw=0.06, seal=1.0, press=0.45, rollLower=0.12, rollUpper=0.08, shrugLower=0.1),
    "m": dict(jaw=0.06, seal=1.0, press=0.35, rollLower=0.1, rollUpper=0.05, shrugLower=0.05),
    # labiodentals: lower lip tucked under the upper teeth
    "f": dict(jaw=0.1, rollLower=0.55, upperUp=0.3, shrugUpper=0.1),
    "v": dict(jaw=0.1, rollLower=0.5, upperUp=0.25, shrugUpper=0.1),
    # dentals: tongue tip between the teeth
    "th": dict(jaw=0.15, tongue=0.45, stretch=0.1, upperUp=0.1),
    "dh": dict(jaw=0.15, tongue=0.35, stretch=0.1, upperUp=0.1),
    # alveolars: jaw fairly closed; sibilants show the teeth
    "t": dict(jaw=0.15, stretch=0.1),
    "d": dict(jaw=0.15, stretch=0.1),
    "n": dict(jaw=0.15, stretch=0.1),
    "l": dict(jaw=0.25, stretch=0.05),
    "s": dict(jaw=0.08, stretch=0.3, smile=0.1, upperUp=0.1, lowerDown=0.1),
    "z": dict(jaw=0.08, stretch=0.3, smile=0.1, upperUp=0.1, lowerDown=0.1),
    # postalveolars: lips protruded, teeth shown
    "sh": dict(jaw=0.12, funnel=0.55, pucker=0.3, upperUp=0.2, lowerDown=0.2, shrugUpper=0.15),
    "zh": dict(jaw=0.12, funnel=0.5, pucker=0.3, upperUp=0.2, lowerDown=0.2, shrugUpper=0.15),
    "ch": dict(jaw=0.12, funnel=0.5, pucker=0.3, upperUp=0.15, lowerDown=0.15, shrugUpper=0.1),
    "jh": dict(jaw=0.12, funnel=0.5, pucker=0.3, upperUp=0.15, lowerDown=0.15, shrugUpper=0.1),
    # approximants
    "r": dict(jaw=0.2, funnel=0.2, pucker=0.3),
    "w": dict(jaw=0.08, funnel=0.3, pucker=0.85),
    "y": dict(jaw=0.15, stretch=0.35, smile=0.1),
    # velars and glottal: the jaw, nothing of the lips
    "k": dict(jaw=0.22), "g": dict(jaw=0.22), "ng": dict(jaw=0.2), "hh": dict(jaw=0.3),
    # pauses: mouth at rest, closed
    "sil": dict(), "sp": dict(),
}
DIPHTHONG_GLIDES: dict[str, str] = {"aw": "uh", "ay": "ih", "ey": "iy", "ow": "uw", "oy": "iy"}


def _target(spec: dict[str, float]) -> np.ndarray:
    v = np.zeros(N_EXPRESSIONS + 1, np.float32)   # the extra last entry is the lip seal
    for key, w in spec.items():
        if key == "seal":
            v[-1] = w
        elif key in _SIDED:
            v[INDEX[_SIDED[key] + "Left"]] = v[INDEX[_SIDED[key] + "Right"]] = w
        else:
            v[INDEX[_PLAIN[key]]] = w
    return v


_TARGETS = {p: _target(spec) for p, spec in _T.items()}   # float32[53], seal last
_SEAL = N_EXPRESSIONS

# The ARKit weights of each target; mouthClose shown for the target's own jaw.
VISEME_TARGETS: dict[str, dict[str, float]] = {
    p: {name: round(float(t[INDEX[name]] if name != "mouthClose"
                          else t[_SEAL] * t[INDEX["jawOpen"]]), 4)
        for name in SPEECH_NAMES}
    for p, t in _TARGETS.items()
}

# 3. Coarticulation ----------------------------------------------------------------------

GROUPS = ("jaw", "closure", "shape", "tongue")
_GROUP_OF = {"jawOpen": "jaw",
             "mouthRollLower": "closure", "mouthRollUpper": "closure",
             "mouthPressLeft": "closure", "mouthPressRight": "closure",
             "mouthUpperUpLeft": "closure", "mouthUpperUpRight": "closure",
             "tongueOut": "tongue"}
_GROUP_INDEX = np.array([GROUPS.index(_GROUP_OF.get(n, "shape")) for n in ARKIT_NAMES]
                        + [GROUPS.index("closure")])   # (53,): the group of each shape, seal last

# phoneme class: (alpha per group (jaw, closure, shape, tongue), theta in 1/s)
_DOMINANCE_CLASSES = {
    "vowel":        ((1.0, 1.0, 1.0, 1.0), 15.0),
    "bilabial":     ((3.0, 14.0, 0.5, 1.0), 60.0),
    "labiodental":  ((2.0, 10.0, 0.5, 1.0), 55.0),
    "dental":       ((1.5, 0.3, 0.5, 8.0), 45.0),
    "alveolar":     ((1.0, 0.3, 0.3, 1.0), 30.0),
    "sibilant":     ((2.5, 0.5, 1.5, 1.0), 35.0),
    "postalveolar": ((2.0, 0.5, 4.0, 1.0), 35.0),
    "rounded":      ((1.5, 0.5, 5.0, 1.0), 30.0),
    "approximant":  ((1.0, 0.3, 2.0, 1.0), 30.0),
    "back":         ((0.4, 0.2, 0.2, 1.0), 25.0),
    "pause":        ((1.5, 1.5, 1.5, 1.5), 15.0),
    "short_pause":  ((0.5, 0.5, 0.5, 0.5), 15.0),
}
_CLASS_OF = {
    **{v: "vowel" for v in VOWELS},
    "p": "bilabial", "b": "bilabial", "m": "bilabial",
    "f": "labiodental", "v": "labiodental", "th": "dental", "dh": "dental",
    "t": "alveolar", "d": "alveolar", "n": "alveolar", "l": "alveolar",
    "s": "sibilant", "z": "sibilant",
    "sh": "postalveolar", "zh": "postalveolar", "ch": "postalveolar", "jh": "postalveolar",
    "w": "rounded", "r": "approximant", "y": "approximant",
    "k": "back", "g": "back", "ng": "back", "hh": "back",
    "sil": "pause", "sp": "short_pause",
}
DOMINANCE: dict[str, tuple[tuple[float, float, float, float], float]] = {
    p: _DOMINANCE_CLASSES[c] for p, c in _CLASS_OF.items()}


def _pieces(phones: list[tuple[str, float, float]]):
    """Segments -> (centres s, targets float[N x 53], log alpha float[N x 53], theta float[N])."""
    centres, targets, log_alpha, theta = [], [], [], []
    for phone, start, end in phones:
        if phone not in _TARGETS:
            raise ValueError(f"unknown phoneme {phone!r}: use ARPAbet ({', '.join(PHONEMES)}); "
                             "map engine phones with to_arpabet()")
        if not end >= start:
            raise ValueError(f"phoneme {phone!r} ends ({end:.3f} s) before it starts "
                             f"({start:.3f} s)")
        alpha, th = DOMINANCE[phone]
        n = max(1, int(np.ceil((end - start) / MAX_PIECE_S - 1e-9)))
        glide = DIPHTHONG_GLIDES.get(phone)
        for k in range(n):
            centres.append(start + (k + 0.5) * (end - start) / n)
            late = glide is not None and (k + 0.5) / n > 0.5
            targets.append(_TARGETS[glide] if late else _TARGETS[phone])
            log_alpha.append(np.log(np.asarray(alpha))[_GROUP_INDEX])
            theta.append(th)
        if glide is not None and n == 1:   # a short diphthong: glide in a second piece
            centres[-1] = start + 0.3 * (end - start)
            centres.append(start + 0.8 * (end - start))
            targets.append(_TARGETS[glide])
            log_alpha.append(log_alpha[-1])
            theta.append(th)
    return (np.asarray(centres, np.float64), np.asarray(targets, np.float32),
            np.asarray(log_alpha, np.float32), np.asarray(theta, np.float32))


def viseme_curves(phones: list[tuple[str, float, float]], rate: float = RATE,
                  n_frames: int | None = None) -> np.ndarray:
    """Timed phonemes -> coarticulated ARKit expressions.

    phones : list of (phoneme, start_s, end_s), ARPAbet (``PHONEMES``), in time order.
        Time before the first and after the last segment counts as silence.
    rate : frames per second; frame i samples time ``i / rate``.
    n_frames : length of the result; by default up to the end of the last segment.
    Returns expressions : float32[T x 52], 0..1, in ``ARKIT_NAMES`` order; only the
    ``SPEECH_NAMES`` (``puppetry.expression.arkit``) are non-zero.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    end = max((e for _, _, e in phones), default=0.0)
    if n_frames is None:
        n_frames = int(np.ceil(end * rate - 1e-9)) + 1
    t = np.arange(n_frames) / rate                                   # (T,) s
    # Silence beyond both ends, so the mouth rests before and after speech.
    pad = 4 * MAX_PIECE_S
    start = min((s for _, s, _ in phones), default=0.0)
    bounded = [("sil", min(start, 0.0) - pad, start), *phones,
               ("sil", end, max(end, t[-1] if n_frames else 0.0) + pad)]
    centres, targets, log_alpha, theta = _pieces(bounded)
    out = np.zeros((n_frames, N_EXPRESSIONS), np.float32)
    for i in range(0, n_frames, 2048):   # chunks keep memory flat for long inputs
        tt = t[i:i + 2048]
        dist = np.abs(tt[:, None] - centres[None, :])                 # (t, N) s
        near = dist.min(axis=0) < 1.5                                 # pieces that matter here
        logd = log_alpha[None, near, :] - (theta[near] * dist[:, near])[:, :, None]  # (t, N, 53)
        w = np.exp(logd - logd.max(axis=1, keepdims=True))
        blend = (w * targets[None, near, :]).sum(1) / w.sum(1)        # (t, 53)
        blend[:, INDEX["mouthClose"]] = blend[:, _SEAL] * blend[:, INDEX["jawOpen"]]
        out[i:i + 2048] = blend[:, :N_EXPRESSIONS]
    return np.clip(out, 0.0, 1.0)


def lip_gap(expressions: np.ndarray) -> np.ndarray:
    """How far apart the lips are, ``jawOpen - mouthClose``: float[T], 0 = sealed."""
    return expressions[..., INDEX["jawOpen"]] - expressions[..., INDEX["mouthClose"]]
