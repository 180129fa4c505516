"""The shared expression space: the 52 ARKit blendshape names.

Every driver (audio, pose codes, video, UI) produces weights in [0, 1] keyed by these
names, and every renderer consumes them. ``ARKIT_NAMES`` fixes the order of the
``expressions : Tensor[T x 52]`` arrays used throughout the package.
"""
from __future__ import annotations

import difflib

import numpy as np

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
N_EXPRESSIONS = len(ARKIT_NAMES)  # 52
INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_NAMES)}

# The shapes speech moves (the rest come from idle motion, blinks and the user).
SPEECH_NAMES: tuple[str, ...] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthUpperUpLeft",
    "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthSmileLeft",
    "mouthSmileRight", "mouthPressLeft", "mouthPressRight", "mouthShrugLower",
    "mouthShrugUpper", "tongueOut",
)


def check_name(name: str, where: str = "expression") -> int:
    """Index of an ARKit name, or a ValueError that suggests the closest valid names."""
    if name in INDEX:
        return INDEX[name]
    close = difflib.get_close_matches(name, ARKIT_NAMES, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown {where} name {name!r}.{hint} Valid names (ARKit): {', '.join(ARKIT_NAMES)}"
    )


def to_vector(weights: dict[str, float]) -> np.ndarray:
    """``{"jawOpen": 0.5}`` -> float32[52] (names checked, values as given)."""
    v = np.zeros(N_EXPRESSIONS, np.float32)
    for name, value in weights.items():
        v[check_name(name)] = float(value)
    return v


def to_dict(vector: np.ndarray, *, nonzero: bool = False) -> dict[str, float]:
    """float[52] -> ``{name: weight}``; with ``nonzero`` only weights above 1e-4."""
    return {n: float(w) for n, w in zip(ARKIT_NAMES, vector) if not nonzero or abs(w) > 1e-4}
