"""ARKit blendshapes as displacement fields on the 468-vertex mesh, adapted to each face.

``blendshape_basis(shape)`` authors one displacement field per ARKit name on the given
identity shape, in the head frame (IOD units; see ``mesh.py``), from that face's own
geometry: the jaw rotates about a hinge placed from the face's proportions, eyelids
close onto that face's own lower lids, lip corners move relative to that mouth. A driven
shape is linear in the weights: ``shape + einsum("k,kvc->vc", weights, basis)``.

The eyeLook* shapes move no skin vertex; the renderer turns them into a gaze shift of
the eye interiors (``gaze_from_expression``). tongueOut is drawn by the mouth synthesiser.
"""
from __future__ import annotations

import numpy as np

from ..eval.metrics import EYE_CORNERS, LIP_GAP_PAIRS
from ..expression.arkit import INDEX, N_EXPRESSIONS
from . import mesh as M

JAW_OPEN_RAD = 0.6           # jaw rotation at jawOpen = 1 (about 34°: a fully open jaw, as ARKit) ...
JAW_GAP_MIN = 0.48           # ... or more on a portrait, so that its lips part at least this far as the
                             # camera sees them (mean of the five inner-lip gaps over the eye-corner
                             # distance 33-263, as metrics.lip_gap) ...
JAW_OPEN_MAX_RAD = 0.8       # ... but never more than this (about 46°)
BLINK_UPPER_SHARE = 1.0      # share of the lid closure done by the upper lid (it closes onto the lower one)
BLINK_LOWER_SHARE = 0.08     # ... and by the lower lid (it barely moves: the tracker reads its skin, not the lid); overlap, no slit
CORNER_IOD = 0.12            # how far along the upper lip a mouth corner's drop with the jaw spreads
BLINK_SPREAD_IOD = 0.1       # the closing lid carries the skin above it this far (sigma; further changes the eye too much: identity)
GAZE_IOD = 0.09              # iris shift at full eyeLook, in IOD


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _blob(shape, centre, sigma):
    """Gaussian weight float[468] of each vertex's distance to ``centre`` (IOD)."""
    d2 = ((shape - centre) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma ** 2))


def _spread(shape, idx, disp, sigma, mask=None):
    """Displacements given at vertices ``idx`` spread to their neighbourhood.

    Each other vertex takes its nearest control vertex's displacement, faded by a
    Gaussian of the distance (sigma, IOD) and by ``mask`` float[468]. -> float[468 x 3]
    """
    d = np.linalg.norm(shape[:, None] - shape[idx][None], axis=-1)   # (468, n)
    near = d.argmin(1)
    w = np.exp(-0.5 * (d[np.arange(len(shape)), near] / sigma) ** 2)
    if mask is not None:
        w = w * mask
    out = disp[near] * w[:, None]
    out[idx] = disp
    return out


def _side(shape, sign, width=0.08):
    """Soft mask for the subject's left (sign=+1, image right) or right (sign=-1) half."""
    return 1 / (1 + np.exp(-sign * shape[:, 0] / width))


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _lip_line(S):
    """The line between the lips, extended from the corners up toward the ears, and which
    side of it each vertex is on: (line float[468] its height under each vertex, beyond
    float[468] distance past the mouth corners, below float[468] 0 above .. 1 below), IOD."""
    iu, il = M.LIP_INNER_UPPER, M.LIP_INNER_LOWER
    xs = S[iu, 0]
    ys = (S[iu, 1] + S[il, 1]) / 2
    x = S[:, 0]
    line = np.interp(x, xs, ys)
    beyond = np.clip(np.abs(x) - np.abs(xs).max(), 0, None)
    line = line + 0.45 * beyond
    below = _smoothstep((line - S[:, 1]) / 0.05 + 0.5)
    below[iu] = 0.0
    below[il] = 1.0
    below[[78, 308]] = 0.5
    return line, beyond, below


def jaw_hinge(shape: np.ndarray) -> np.ndarray:
    """The jaw's hinge, float[3] in the head frame (IOD): near the ears, at the nose's
    height, behind the face. jawOpen = 1 rotates the jaw ``jaw_angle`` about its x axis."""
    S = np.asarray(shape, np.float64)
    return np.array([0.0, S[M.NOSE_TIP, 1] + 0.05, min(S[234, 2], S[454, 2]) - 0.35])


def jaw_angle(shape: np.ndarray, view: np.ndarray | None = None) -> float:
    """The jaw's rotation at jawOpen = 1 for a face, radians.

    ``JAW_OPEN_RAD``; on a portrait (``view`` given) more, up to ``JAW_OPEN_MAX_RAD``, where
    that would part its lips less than ``JAW_GAP_MIN`` as the camera sees them: a face seen
    from above, or tracked with flat depth (its lips nearer the hinge), would otherwise
    open less than others at the same weight, and ARKit's scale is the mouth's opening.

    shape : float[468 x 3], head frame (IOD)
    view  : float[3 x 3], the head axes in the image (``HeadFrame.rotation``), or None
    """
    if view is None:
        return JAW_OPEN_RAD
    S = np.asarray(shape, np.float64)
    hinge, follow = jaw_hinge(S), _jaw_weight(S)[:, None]
    up, lo = (list(i) for i in zip(*LIP_GAP_PAIRS))
    image = np.asarray(view, np.float64)[:2]                  # head frame -> image x, y
    eyes = np.linalg.norm((S[EYE_CORNERS[1]] - S[EYE_CORNERS[0]]) @ image.T)
    angle = JAW_OPEN_RAD
    for _ in range(2):    # the opening is nearly linear in the angle: two steps get within 2 % of it
        opened = S + ((S - hinge) @ _rot_x(angle).T + hinge - S) * follow
        gap = np.linalg.norm((opened[lo] - opened[up]) @ image.T, axis=1).mean() / eyes
        if gap >= JAW_GAP_MIN or gap <= 1e-6:
            break
        angle = min(angle * JAW_GAP_MIN / gap, JAW_OPEN_MAX_RAD)
    return float(angle)


def jaw_rotation(weight: float, angle: float = JAW_OPEN_RAD) -> np.ndarray:
    """float[3 x 3]: the jaw's rotation at jawOpen = ``weight`` (head frame), for a jaw
    that turns ``angle`` at jawOpen = 1 (``jaw_angle``)."""
    return _rot_x(angle * weight)


LIP_SLIDE_IOD = 0.12   # how far a lip's closing motion spreads onto the skin around it (sigma)


def close_lips(shape: np.ndarray) -> np.ndarray:
    """The face with its lips meeting: each inner-lip column moved to the middle of its
    upper and lower points, the lips and the skin around them carried along (fading over
    ``LIP_SLIDE_IOD``), upper lip from above, lower lip from below.

    shape : float[468 x 3], head frame (IOD) -> float64[468 x 3]
    """
    S = np.asarray(shape, np.float64)
    iu, il = np.array(M.LIP_INNER_UPPER), np.array(M.LIP_INNER_LOWER)
    mid = (S[iu] + S[il]) / 2
    _, _, below = _lip_line(S)
    up = _spread(S, iu, mid - S[iu], LIP_SLIDE_IOD, 1 - below)
    lo = _spread(S, il, mid - S[il], LIP_SLIDE_IOD, below)
    up[il], lo[iu] = 0, 0
    up[iu[[0, -1]]] = lo[il[[0, -1]]] = 0
    return S + up + lo


def _jaw_weight(S: np.ndarray, upper_lip_follows: bool = True) -> np.ndarray:
    """How much of the jaw's rotation each vertex follows, float[468] 0..1."""
    line, beyond, below = _lip_line(S)
    below[M.LIP_INNER_LOWER] = 1.0
    mouth_c = (S[13] + S[14]) / 2
    x = S[:, 0]
    lateral = np.exp(-0.5 * (beyond / 0.45) ** 2)
    # lips part in a lens shape: near the corners the lower lip follows the jaw less,
    # while the chin further down follows it fully
    half = 0.5 * np.linalg.norm(S[291] - S[61]) * 1.1
    taper = 0.2 + 0.8 * np.sqrt(np.clip(1 - ((x - mouth_c[0]) / half) ** 2, 0, 1))
    depth_below = np.clip((line - S[:, 1]) / 0.4, 0, 1)
    jaw_w = below * (0.35 + 0.65 * lateral) * (taper + (1 - taper) * depth_below)
    # the mouth's corners go down with the jaw part of the way; the upper lip beside them
    # follows them a little, so the opening ends in a rounded corner, not a hook
    for corner in (78, 308) if upper_lip_follows else ():
        near = np.exp(-0.5 * (np.linalg.norm(S - S[corner], axis=1) / CORNER_IOD) ** 2)
        jaw_w = np.maximum(jaw_w, (1 - below) * jaw_w[corner] * near)
    return jaw_w


def jaw_open(shape: np.ndarray, upper_lip_follows: bool = True, view: np.ndarray | None = None) -> np.ndarray:
    """The jawOpen displacement field of a face, float64[468 x 3] (IOD at weight 1).

    ``upper_lip_follows=False`` leaves the upper lip beside the corners out: undoing a
    photo's open jaw (``portrait.neutral_shape``) then keeps its upper lip where the
    photo shows it. ``view``: a portrait's head axes in the image (``jaw_angle``)."""
    S = np.asarray(shape, np.float64)
    hinge = jaw_hinge(S)
    rotated = (S - hinge) @ _rot_x(jaw_angle(S, view)).T + hinge
    return (rotated - S) * _jaw_weight(S, upper_lip_follows)[:, None]


def blendshape_basis(shape: np.ndarray, view: np.ndarray | None = None) -> np.ndarray:
    """Displacement fields for one identity.

    shape : float[468 x 3], neutral face in the head frame (IOD units)
    view  : float[3 x 3], a portrait's head axes in the image (``HeadFrame.rotation``): its
            jaw opens as far as every portrait's as the camera sees it (``jaw_angle``)
    returns float32[52 x 468 x 3], ordered as ARKIT_NAMES (IOD units at weight 1)
    """
    S = shape.astype(np.float64)
    B = np.zeros((N_EXPRESSIONS, len(S), 3))

    def put(name, disp):
        B[INDEX[name]] = disp

    # --- mouth geometry of this face
    iu, il = M.LIP_INNER_UPPER, M.LIP_INNER_LOWER
    ou, ol = M.LIP_OUTER_UPPER, M.LIP_OUTER_LOWER
    corner_r, corner_l = S[61], S[291]
    mouth_c = (S[13] + S[14]) / 2
    mouth_w = np.linalg.norm(corner_l - corner_r)
    x = S[:, 0]
    _, _, below = _lip_line(S)
    below[il] = 1.0
    jaw_w = _jaw_weight(S)
    lower_lip = below * _blob(S, mouth_c, 0.35)          # lips and skin just below them
    upper_lip = (1 - below) * _blob(S, mouth_c + [0, 0.08, 0], 0.3)
    mouth = _blob(S, mouth_c, 0.4)
    lips = np.zeros(len(S))
    lips[iu + il + ou + ol] = 1.0
    lips = np.maximum(lips, _blob(S, mouth_c, 0.18))

    # --- jaw: rotation about a hinge near the ears, at the nose's height, behind the face
    jaw = jaw_open(S, view=view)
    put("jawOpen", jaw)
    put("jawForward", np.outer(jaw_w, [0, 0, 0.08]))
    put("jawLeft", np.outer(jaw_w, [0.10, 0, 0]))
    put("jawRight", np.outer(jaw_w, [-0.10, 0, 0]))
    # mouthClose: lips closed while the jaw is open (ARKit), i.e. the lips undo the jaw
    put("mouthClose", -jaw * (lips * below)[:, None] - np.outer(upper_lip * lips, jaw[14] * 0.0))

    # --- lip shapes
    to_centre = np.zeros_like(S)
    to_centre[:, 0] = -np.sign(x) * np.clip(np.abs(x - mouth_c[0]) / (mouth_w / 2), 0, 1)
    mh = mouth * lips
    put("mouthFunnel", (to_centre * 0.10 + [0, 0, 0.10]) * mh[:, None]
        + np.outer(lower_lip * lips, [0, -0.05, 0]) + np.outer(upper_lip * lips, [0, 0.04, 0]))
    put("mouthPucker", (to_centre * 0.18 + [0, 0, 0.12]) * mouth[:, None] * _blob(S, mouth_c, 0.3)[:, None])
    put("mouthLeft", np.outer(mouth * _blob(S, mouth_c, 0.35), [0.12, 0, 0]))
    put("mouthRight", np.outer(mouth * _blob(S, mouth_c, 0.35), [-0.12, 0, 0]))
    put("mouthRollLower", np.outer(lower_lip * lips, [0, 0.04, -0.06]))
    put("mouthRollUpper", np.outer(upper_lip * lips, [0, -0.04, -0.06]))
    put("mouthShrugLower", np.outer(lower_lip, [0, 0.05, 0.03]))
    put("mouthShrugUpper", np.outer(upper_lip, [0, 0.04, 0.02]))
    put("cheekPuff", _cheeks(S, mouth_c, 0, 0.0, [0.07, 0, 0.05]) + _cheeks(S, mouth_c, 1, 0.0, [0.07, 0, 0.05]))
    for side, sign in (("Left", 1), ("Right", -1)):
        half = _side(S, sign)
        corner = S[291] if sign > 0 else S[61]
        near = _blob(S, corner, 0.22) * half
        put(f"mouthSmile{side}", np.outer(near, [0.06 * sign, 0.07, -0.02]))
        put(f"mouthFrown{side}", np.outer(near, [0.01 * sign, -0.07, 0]))
        put(f"mouthStretch{side}", np.outer(near, [0.08 * sign, -0.03, -0.01]))
        put(f"mouthDimple{side}", np.outer(near, [0.04 * sign, 0.0, -0.04]))
        put(f"mouthPress{side}", np.outer(lower_lip * lips * half, [0, 0.025, 0])
            + np.outer(upper_lip * lips * half, [0, -0.025, 0]))
        put(f"mouthLowerDown{side}", np.outer(lower_lip * lips * half * _blob(S, mouth_c, 0.3), [0, -0.12, 0]))
        put(f"mouthUpperUp{side}", np.outer(upper_lip * lips * half * _blob(S, mouth_c, 0.3), [0, 0.09, 0]))
        put(f"cheekSquint{side}", _cheeks(S, mouth_c, int(sign > 0), 0.25, [0, 0.04, 0]))
        nostril = S[358] if sign > 0 else S[129]
        put(f"noseSneer{side}", np.outer(_blob(S, nostril, 0.1), [0, 0.04, 0]))

    # --- eyes: lids close onto this face's own lower lid
    for side, upper, lower in (("Left", M.EYE_LEFT_UPPER, M.EYE_LEFT_LOWER),
                               ("Right", M.EYE_RIGHT_UPPER, M.EYE_RIGHT_LOWER)):
        up, lo = np.array(upper[1:-1]), np.array(lower[1:-1])
        gap = S[lo] - S[up]                                   # upper -> lower, per column
        eye_c = S[upper + lower].mean(0)
        above = _smoothstep((S[:, 1] - eye_c[1]) / 0.06 + 0.5)
        blink_up = _spread(S, up, gap * BLINK_UPPER_SHARE, BLINK_SPREAD_IOD, above)
        blink_lo = _spread(S, lo, -gap * BLINK_LOWER_SHARE, 0.06, 1 - above)
        blink_up[lo], blink_lo[up] = 0, 0
        put(f"eyeBlink{side}", blink_up + blink_lo)
        height = float(np.abs(gap[:, 1]).mean())
        put(f"eyeWide{side}", _spread(S, up, np.tile([0, 0.45 * height, 0], (len(up), 1)), 0.12, above))
        put(f"eyeSquint{side}", _spread(S, lo, np.tile([0, 0.35 * height, 0], (len(lo), 1)), 0.1, 1 - above)
            + _spread(S, up, np.tile([0, -0.15 * height, 0], (len(up), 1)), 0.08, above))

    # --- brows
    for side, brow, sign in (("Left", M.BROW_LEFT, 1), ("Right", M.BROW_RIGHT, -1)):
        b = np.array(brow)
        inner = S[b[[4, 9]]].mean(0)
        outer = S[b[[0, 5]]].mean(0)
        half = _side(S, sign)
        put(f"browDown{side}", np.outer(_blob(S, (inner + outer) / 2, 0.22) * half, [-0.03 * sign, -0.07, 0]))
        put(f"browOuterUp{side}", np.outer(_blob(S, outer, 0.2) * half, [0, 0.09, 0]))
        B[INDEX["browInnerUp"]] += np.outer(_blob(S, inner, 0.18) * half, [0, 0.09, 0])
    return B.astype(np.float32)


def _cheeks(S, mouth_c, left: int, lift: float, disp) -> np.ndarray:
    sign = 1 if left else -1
    centre = mouth_c + [sign * 0.62, 0.25 + lift, -0.15]
    d = np.array(disp, float) * [sign, 1, 1]
    return np.outer(_blob(S, centre, 0.22), d)


def gaze_from_expression(expression: np.ndarray) -> np.ndarray:
    """Per-eye gaze from the eyeLook* weights.

    expression : float[... x 52]  ->  float[... x 2 x 2]: (right eye, left eye) x (x, y)
    in the head frame, IOD units (x toward the subject's left, y up).
    """
    e = lambda n: expression[..., INDEX[n]]
    right = np.stack([e("eyeLookInRight") - e("eyeLookOutRight"),
                      e("eyeLookUpRight") - e("eyeLookDownRight")], -1)
    left = np.stack([e("eyeLookOutLeft") - e("eyeLookInLeft"),
                     e("eyeLookUpLeft") - e("eyeLookDownLeft")], -1)
    return np.stack([right, left], -2) * GAZE_IOD
