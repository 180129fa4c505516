"""Fitting the face model to tracked landmarks: rigid pose + bounded expression weights.

The model of one tracked face (DESIGN.md §2), in image pixels::

    landmarks[:468] ≈ s · R · (shape + Σ_k w_k · basis_k) + t,     w_k in [0, 1]

``shape`` is the person's neutral identity in the head frame (``mesh.py``: IOD units, y
up, z toward the camera) and ``basis`` its ARKit blendshapes (``blendshape_basis``).

1. Pose: the similarity (s, R, t) that best maps the identity's ``RIGID_POINTS`` onto the
   landmarks (``mesh.rigid_align``, Umeyama) — points that move with the skull, not with
   expressions.
2. Expressions: bounded least squares (``scipy.optimize.lsq_linear``, weights in [0, 1])
   of the landmarks' offsets from the posed identity over all 468 vertices, jointly with a
   small correction of the pose (rotation, scale, translation: unbounded), linearised and
   repeated ``ITERATIONS`` times (Gauss-Newton), so an expression that drags a "rigid"
   point does not tilt the head, nor a tilt pass for an expression.
3. Depth counts ``Z_WEIGHT`` of the image plane. MediaPipe's z is a learned guess: on
   rendered frames with the jaw opened to 0.6 it reports the head pitching up by 5° and
   the chin not moving back, while x and y follow the render to a pixel. Fitting x, y
   recovers the pose to 0.5° there; fitting x, y, z attributes the opening to lip shapes.
4. A Gaussian prior on the weights (a ridge of ``(NOISE_IOD / prior_std_k)²`` per name)
   keeps apart shapes the landmarks can hardly tell apart: a shape that is rare in speech
   (a small ``prior_std``) must be clearly seen to be used. By default every name has
   ``PRIOR_STD``; the style fitter passes the shared space's own statistics.

The returned angles follow DESIGN.md §1 (``face.pose``): the head's rotation from facing
the camera upright, in degrees.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..expression.arkit import ARKIT_NAMES, N_EXPRESSIONS, check_name
from . import mesh as M
from .blendshapes import blendshape_basis
from .pose import euler_angles

ITERATIONS = 6  # Gauss-Newton steps of the joint pose + expression fit
Z_WEIGHT = 0.0  # weight of the depth residual against x and y (module doc, 3)
NOISE_IOD = 0.02  # landmark noise the prior is weighed against, IOD (~1 px at 55 px IOD)
PRIOR_STD = 0.3  # default prior spread of each weight (0..1 units)
MIN_COLUMN = 1e-6  # blendshapes that move the mesh less than this (IOD², summed) are not fitted
HEAD_TO_IMAGE = np.diag([1.0, -1.0, -1.0])  # head axes (y up, z to camera) in image axes
N_POSE = 7  # pose correction unknowns: rotation (3), scale (1), translation (3)
POSE_DAMPING = 1e-3  # ridge on each pose step (keeps depth translation defined when z is ignored)
QP_STEPS = 60  # active-set steps of the bounded solve before falling back to scipy's BVLS
STEP_TOL = 1e-3  # a Gauss-Newton step below this (weights, radians, relative scale) ends the fit


@dataclass(frozen=True)
class Identity:
    """A person's neutral face and blendshapes in the head frame.

    shape : float32[468 x 3], IOD units
    basis : float32[52 x 468 x 3], IOD units at weight 1, ARKIT_NAMES order
    """

    shape: np.ndarray
    basis: np.ndarray = field(repr=False)

    @classmethod
    def from_shape(cls, shape: np.ndarray) -> "Identity":
        shape = np.asarray(shape, np.float32)
        if shape.shape != (len(M.face_model().canonical), 3):
            raise ValueError(f"identity shape is {shape.shape}: pass float[468 x 3] mesh "
                             "vertices in the head frame (Portrait.shape)")
        return cls(shape, blendshape_basis(shape))

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> "Identity":
        """The identity of a tracked neutral face: its landmarks (float[>=468 x 3], pixels)
        in its own head frame."""
        lm = np.asarray(landmarks, np.float64)[:468]
        return cls.from_shape(M.head_frame(lm).to_head(lm))


def as_identity(identity) -> Identity:
    """An :class:`Identity`, a Portrait (anything with ``shape`` and ``basis``), or a
    float[468 x 3] neutral shape -> Identity."""
    if isinstance(identity, Identity):
        return identity
    if hasattr(identity, "shape") and hasattr(identity, "basis"):
        return Identity(np.asarray(identity.shape, np.float32),
                        np.asarray(identity.basis, np.float32))
    return Identity.from_shape(identity)


def _rodrigues(v: np.ndarray) -> np.ndarray:
    """Rotation vector (radians) -> float64[3 x 3]."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = v / angle
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _pose_columns(posed: np.ndarray, s: float) -> np.ndarray:
    """d(posed points)/d(pose step) for posed float64[V x 3] (IOD, image axes) at scale s:
    float64[7 x V x 3], the rotation steps about x, y, z (``axis x posed``), the relative
    scale step, then the translation steps (pixels / s)."""
    x, y, z = posed.T
    out = np.zeros((N_POSE, len(posed), 3))
    out[0, :, 1], out[0, :, 2] = -z, y                   # e_x x p = (0, -z, y)
    out[1, :, 0], out[1, :, 2] = z, -x                   # e_y x p = (z, 0, -x)
    out[2, :, 0], out[2, :, 1] = -y, x                   # e_z x p = (-y, x, 0)
    out[3] = posed
    out[4, :, 0] = out[5, :, 1] = out[6, :, 2] = 1.0 / s
    return out


def _box_qp(hess: np.ndarray, grad: np.ndarray, lower: np.ndarray, upper: np.ndarray,
            guess: np.ndarray | None = None) -> np.ndarray:
    """argmin ½xᵀHx - gᵀx subject to lower <= x <= upper, H positive definite (float[n x n],
    float[n] each): an active-set method (bounds that are hit are held, held bounds whose
    gradient points inward are released, one at a time), a few n x n solves; if it does
    not settle in ``QP_STEPS``, scipy's bounded least squares on the Cholesky factor.
    ``guess``: a nearby solution, whose bounds that are hit are held from the start."""
    n = len(grad)
    if guess is None:
        low, high = np.zeros(n, bool), np.zeros(n, bool)
    else:
        low, high = guess <= lower, guess >= upper
    tol = 1e-9 * max(1.0, float(np.abs(grad).max()))
    for _ in range(QP_STEPS):
        held = low | high
        x = np.where(low, lower, np.where(high, upper, 0.0))
        free = ~held
        rows = hess[free]
        x[free] = np.linalg.solve(rows[:, free], grad[free] - rows[:, held] @ x[held])
        below, above = free & (x < lower), free & (x > upper)
        if below.any() or above.any():
            low |= below
            high |= above
            continue
        slope = hess @ x - grad                                   # >= 0 at lower, <= 0 at upper
        wrong = np.where(low, -slope, 0.0) + np.where(high, slope, 0.0)
        if wrong.max(initial=0.0) <= tol:
            return x
        j = int(np.argmax(wrong))
        low[j] = high[j] = False
    from scipy.optimize import lsq_linear  # slow to import; rarely needed
    chol = np.linalg.cholesky(hess)
    return lsq_linear(chol.T, np.linalg.solve(chol, grad), bounds=(lower, upper), method="bvls").x


class ExpressionFitter:
    """:func:`fit_expressions` for many frames of one identity (the matrices made once).

    names     : the ARKit names to fit (default all that move the mesh); the rest stay 0
    prior_std : float[52], the prior spread of each weight (default ``PRIOR_STD`` each)
    """

    def __init__(self, identity, names: tuple[str, ...] | None = None,
                 prior_std: np.ndarray | None = None):
        self.identity = as_identity(identity)
        basis = self.identity.basis.astype(np.float64)
        wanted = ARKIT_NAMES if names is None else tuple(names)
        columns = [check_name(n) for n in wanted]
        moving = (basis ** 2).sum((1, 2)) > MIN_COLUMN
        self.columns = np.array([c for c in columns if moving[c]], np.int64)  # (K,)
        self.names = tuple(ARKIT_NAMES[c] for c in self.columns)
        self.shape = self.identity.shape.astype(np.float64)             # (468, 3)
        self.basis = basis[self.columns]                                # (K, 468, 3)
        std = np.full(N_EXPRESSIONS, PRIOR_STD) if prior_std is None else np.asarray(prior_std)
        if std.shape != (N_EXPRESSIONS,) or not np.all(std > 0):
            raise ValueError(f"prior_std must be float[{N_EXPRESSIONS}] > 0, got {std.shape}")
        self.prior = NOISE_IOD / std[self.columns]                      # (K,) ridge rows
        self.weight = np.array([1.0, 1.0, Z_WEIGHT])                    # x, y, z

    def __call__(self, landmarks: np.ndarray) -> tuple[tuple[float, float, float], np.ndarray]:
        """landmarks : float[>=468 x 3] pixels
        -> ((yaw, pitch, roll) degrees, weights float32[52] in [0, 1])."""
        fit = self.fit(landmarks)
        return fit.angles, fit.weights

    def fit(self, landmarks: np.ndarray, *, start: "Fit | None" = None,
            iterations: int = ITERATIONS, tol: float | None = None) -> "Fit":
        """landmarks : float[>=468 x 3] pixels -> the full :class:`Fit` (pose, weights,
        residual). ``start``: the previous frame's fit, to begin from (a video: a couple
        of ``iterations`` then suffice). ``tol``: stop before ``iterations`` once a step
        changes no weight, no rotation (radians) and not the scale by more than this
        (``STEP_TOL``: from the frame before, one step usually settles it)."""
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] != 3 or not np.all(np.isfinite(lm)):
            raise ValueError(f"landmarks have shape {lm.shape}: pass finite float[478 x 3] "
                             "(or [468 x 3]) pixels from FaceTracker")
        lm = lm[:468]
        k = len(self.columns)
        # 1. Pose from the skull points (or the previous frame's fit).
        if start is None:
            rot, s, t = M.rigid_align(self.shape[M.RIGID_POINTS], lm[M.RIGID_POINTS])
            w = np.zeros(k)
        else:
            rot, s, t = start.rotation, start.scale, start.translation
            w = start.weights[self.columns].astype(np.float64)
        lower = np.r_[np.zeros(k), np.full(N_POSE, -np.inf)]
        upper = np.r_[np.ones(k), np.full(N_POSE, np.inf)]
        ridge = np.diag(np.r_[self.prior, np.full(N_POSE, POSE_DAMPING)] ** 2)     # (K+7, K+7)
        axes = self.weight > 0                        # image axes that count (x, y; z if weighted)
        weight = self.weight[axes]
        flat_basis = self.basis.reshape(-1, 3)                                    # (K·468, 3)
        x = np.r_[w, np.zeros(N_POSE)]
        for _ in range(iterations):
            # 2. Linearise around (rot, s, t, w); unknowns: w (absolute) and pose steps.
            posed = (self.shape + (w @ flat_basis.reshape(k, -1)).reshape(-1, 3)) @ rot.T  # (468, 3)
            columns = np.empty((k + N_POSE, len(posed), len(weight)))           # (K+7, 468, A)
            columns[:k] = (flat_basis @ rot[axes].T).reshape(k, -1, len(weight))
            columns[k:] = _pose_columns(posed, s)[..., axes]
            target = ((lm - t) / s - self.shape @ rot.T)[:, axes]                   # IOD
            a = (columns * weight).reshape(k + N_POSE, -1)                          # (K+7, 468·A)
            b = (target * weight).reshape(-1)
            # the normal equations of |aᵀx - b|² + |prior x|², bounded (_box_qp)
            x = _box_qp(a @ a.T + ridge, a @ b, lower, upper, guess=x)
            change = max(float(np.abs(x[:k] - w).max(initial=0.0)), float(np.abs(x[k:k + 4]).max()))
            w = x[:k]
            rot = _rodrigues(x[k:k + 3]) @ rot
            s *= 1 + x[k + 3]
            t = t + x[k + 4:]
            if tol is not None and change < tol:
                break
        weights = np.zeros(N_EXPRESSIONS, np.float32)
        weights[self.columns] = np.clip(w, 0.0, 1.0)
        model = s * (self.shape + (w @ flat_basis.reshape(k, -1)).reshape(-1, 3)) @ rot.T + t
        residual = float(np.sqrt(((model - lm)[:, :2] ** 2).sum(1).mean()) / s)
        return Fit(rot, float(s), t, weights, residual)


@dataclass(frozen=True)
class Fit:
    """One face fitted (module doc): ``landmarks ≈ scale · rotation · (shape + Σ w·basis)
    + translation``.

    rotation    : float64[3 x 3], head frame -> image axes (x right, y down, z away)
    scale       : pixels per IOD
    translation : float64[3], pixels
    weights     : float32[52], 0..1
    residual    : RMS image-plane distance of the landmarks from the model, IOD
    """

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    weights: np.ndarray
    residual: float

    @property
    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) degrees from facing the camera upright (``face.pose``)."""
        return euler_angles(self.rotation @ HEAD_TO_IMAGE)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """float[N x 3] head-frame points (IOD) -> image pixels under this pose."""
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def to_head(self, points: np.ndarray) -> np.ndarray:
        """float[N x 3] image pixels -> the head frame (IOD) under this pose."""
        return (np.asarray(points, np.float64) - self.translation) @ self.rotation / self.scale


def fit_expressions(landmarks: np.ndarray, identity, *, names: tuple[str, ...] | None = None,
                    prior_std: np.ndarray | None = None
                    ) -> tuple[tuple[float, float, float], np.ndarray]:
    """Fit one tracked face to pose and bounded expression weights (module doc).

    landmarks : float[478 x 3], pixels (FaceTracker)
    identity  : the person's neutral face: a Portrait, an :class:`Identity`, or its
                float[468 x 3] shape in the head frame
    names     : fit only these ARKit names (e.g. ``model.SPEECH_NAMES``); default all
    prior_std : float[52] prior spread per weight (module doc, 4)
    Returns ((yaw, pitch, roll) degrees, weights float32[52] in [0, 1]).
    For many frames of one person, build an :class:`ExpressionFitter` once instead.
    """
    return ExpressionFitter(identity, names, prior_std)(landmarks)
