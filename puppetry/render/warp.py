"""The one-shot warp renderer (DESIGN.md §3).

For each driving frame the portrait's mesh is deformed by the blendshapes, posed
relative to the portrait, and rasterised (with the mouth and eye holes closed by fans)
into a dense backward flow: for every output pixel, where to read the portrait. The flow
is extended smoothly over hair, neck and shoulders, fades to zero on the background, and
the portrait is resampled with ``grid_sample``. Revealed background comes from the
portrait's filled-in background plate; the mouth interior is drawn where the lips part.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..drive.frames import DrivingFrame, Motion
from ..expression.arkit import INDEX
from ..face import mesh as M
from ..face.blendshapes import GAZE_IOD, gaze_from_expression
from ..face.pose import rotation_matrix
from ..portrait import Portrait
from .fill import pull_push
from .mouth import MouthPalette, draw_mouth
from .raster import rasterize

MOUTH_LOOP = M.closed_loop(M.LIP_INNER_UPPER, M.LIP_INNER_LOWER)   # 20 vertices
EYE_LOOPS = (M.closed_loop(M.EYE_RIGHT_UPPER, M.EYE_RIGHT_LOWER),  # 16 each
             M.closed_loop(M.EYE_LEFT_UPPER, M.EYE_LEFT_LOWER))
N_MESH = 468
MOUTH_C, EYE_R_C, EYE_L_C = N_MESH, N_MESH + 1, N_MESH + 2        # fan centre vertices


@dataclass(frozen=True)
class RenderConfig:
    """Inference knobs of the warp renderer (override with ``dataclasses.replace``)."""

    raster_scale: float = 0.5        # flow is rasterised at this fraction of the canvas
    pivot: tuple[float, float, float] = (0.0, -1.0, -1.5)  # rotation centre, head frame (IOD)
    hair_reach: float = 1.0          # flow reach above the chin, face widths
    neck_reach: float = 0.3          # flow reach below the chin, face widths
    mouth_ramp_iod: float = 0.06     # extra opening over which the drawn interior fades in
    threads: int = 2                 # torch intra-op threads


def _fan(loop: list[int], centre: int) -> list[tuple[int, int, int]]:
    return [(centre, a, b) for a, b in zip(loop, loop[1:] + loop[:1])]


class WarpRenderer:
    """Renders a :class:`Portrait` under driving frames.

    >>> r = WarpRenderer(load_portrait("me.jpg"))
    >>> rgb = r.render_frame(DrivingFrame.make(yaw=10, expression={"jawOpen": 0.5}))
    """

    def __init__(self, portrait: Portrait, config: RenderConfig = RenderConfig()):
        torch.set_num_threads(config.threads)
        self.portrait, self.config = portrait, config
        p = portrait
        h, w = p.size
        self.size = (h, w)
        self.raster_size = (round(h * config.raster_scale), round(w * config.raster_scale))
        # 1. topology: skin + the three holes closed by fans around added centre vertices
        fans = _fan(MOUTH_LOOP, MOUTH_C) + _fan(EYE_LOOPS[0], EYE_R_C) + _fan(EYE_LOOPS[1], EYE_L_C)
        self.n_skin = len(M.face_model().triangles)
        self.n_mouth = len(MOUTH_LOOP)
        self.faces = torch.tensor(np.concatenate([M.face_model().triangles, fans]), dtype=torch.long)
        # 2. per-vertex attributes: source position (pixels) and hole coordinates
        src = p.landmarks[:N_MESH, :2]
        centres = [src[MOUTH_LOOP].mean(0), src[EYE_LOOPS[0]].mean(0), src[EYE_LOOPS[1]].mean(0)]
        attr = np.zeros((N_MESH + 3, 6), np.float32)   # src x, src y, eye R, eye L, mouth u, v
        attr[:, :2] = np.concatenate([src, centres])
        attr[EYE_R_C, 2] = attr[EYE_L_C, 3] = 1.0
        xs = p.shape[:, 0]
        u = (xs - xs[78]) / (xs[308] - xs[78])
        attr[:N_MESH, 4] = np.clip(u, 0, 1)
        attr[M.LIP_INNER_LOWER, 5] = 1.0
        attr[[78, 308], 5] = 0.5
        attr[MOUTH_C, 4:] = 0.5
        self.attr = torch.from_numpy(attr)
        self.shape = torch.from_numpy(p.shape)
        self.basis = torch.from_numpy(p.basis).reshape(len(p.basis), -1)
        # 3. images as tensors: portrait (rgb + alpha) and the background plate
        self.source = torch.from_numpy(np.concatenate(
            [p.image / 255.0, p.alpha[..., None]], -1).astype(np.float32)).permute(2, 0, 1)[None]
        self.background = torch.from_numpy(p.background / np.float32(255)).permute(2, 0, 1)
        self.reach = torch.from_numpy(self._reach())[None]
        ys, xs_ = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        self.base = torch.stack([xs_, ys], -1)                         # (H, W, 2) pixels
        rh, rw = self.raster_size
        ys, xs_ = torch.meshgrid((torch.arange(rh) + 0.5) / config.raster_scale,
                                 (torch.arange(rw) + 0.5) / config.raster_scale, indexing="ij")
        self.raster_base = torch.stack([xs_, ys])                      # (2, h, w) pixels
        self.palette = MouthPalette.from_portrait(p.image, p.landmarks)
        self.rest_open = self._opening(p.landmarks[:N_MESH])
        self.pivot = p.frame.to_image(np.array([config.pivot]))[0]

    def _reach(self) -> np.ndarray:
        """How far the face's flow extends, float32[h x w] at raster scale: 1 on the face,
        fading over the hair (long reach) and the neck (short reach), 0 far away."""
        p, s = self.portrait, self.config.raster_scale
        hull = np.zeros(self.raster_size, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull((p.landmarks[:N_MESH, :2] * s).astype(np.int32)), 1)
        dist = cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5)
        face_w = (p.landmarks[:, 0].max() - p.landmarks[:, 0].min()) * s
        chin_y = p.landmarks[M.CHIN, 1] * s
        rows = np.arange(self.raster_size[0])[:, None] + 0.5
        below = np.clip((rows - chin_y) / (0.3 * face_w), 0, 1)
        reach = face_w * (self.config.hair_reach * (1 - below) + self.config.neck_reach * below)
        return np.exp(-0.5 * (dist / reach) ** 2).astype(np.float32)

    @staticmethod
    def _opening(pts) -> float:
        return float(np.linalg.norm(pts[M.LIP_LOWER_MID, :2] - pts[M.LIP_UPPER_MID, :2]))

    def posed_vertices(self, frame: DrivingFrame) -> np.ndarray:
        """The driven mesh on the canvas: float32[468 x 3], pixels (z: depth, pixels)."""
        p = self.portrait
        w = torch.from_numpy(np.asarray(frame.expression, np.float32))
        head = (self.shape.reshape(-1) + w @ self.basis).reshape(-1, 3).double().numpy()
        pts = p.frame.to_image(head)
        rot = rotation_matrix(*frame.rotation)
        face_w = float(np.ptp(p.landmarks[:, 0]))
        shift = np.array([frame.translation[0] * face_w, frame.translation[1] * face_w, 0.0])
        return ((pts - self.pivot) @ rot.T * frame.scale + self.pivot + shift).astype(np.float32)

    @torch.no_grad()
    def render_frame(self, frame: DrivingFrame) -> np.ndarray:
        """One driving frame -> uint8[H x W x 3]."""
        return self.render_tensor(frame).mul(255).add(0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()

    @torch.no_grad()
    def render_tensor(self, frame: DrivingFrame) -> torch.Tensor:
        """One driving frame -> float32[3 x H x W], 0..1."""
        p, cfg = self.portrait, self.config
        h, w = self.size
        s = cfg.raster_scale
        # 1. driven, posed mesh with the three fan centres
        pts = self.posed_vertices(frame)
        verts = np.concatenate([pts, [pts[MOUTH_LOOP].mean(0)], [pts[EYE_LOOPS[0]].mean(0)],
                                [pts[EYE_LOOPS[1]].mean(0)]])
        verts_t = torch.from_numpy(verts * np.float32([s, s, 1]))
        # 2. gaze moves the eye interiors (iris and sclera) inside the lids
        gaze = gaze_from_expression(np.asarray(frame.expression))          # (2 eyes, 2)
        gaze = gaze + np.float32(GAZE_IOD) * np.asarray(frame.gaze, np.float32)
        axes = (p.frame.rotation @ rotation_matrix(*frame.rotation).T.T)  # head axes in image
        shift = np.stack([(axes[:2, 0] * g[0] + axes[:2, 1] * g[1]) * p.frame.scale for g in gaze]).astype(np.float32)
        attr = self.attr.clone()
        # 3. rasterise: source position and hole coordinates for every covered pixel
        frags = rasterize(verts_t, self.faces, self.raster_size)
        vals = frags.interpolate(self.faces, attr)                           # (N, 6)
        src = vals[:, :2] - vals[:, 2:3] * torch.from_numpy(shift[0]) - vals[:, 3:4] * torch.from_numpy(shift[1])
        known = frags.to_image(torch.ones(len(vals), 1))[..., 0][None]       # (1, h, w)
        disp = frags.to_image(src).permute(2, 0, 1) - self.raster_base       # (2, h, w)
        # 4. extend the flow beyond the face: smooth, fading to zero on the background
        filled = pull_push(disp * known, known)
        disp = known * disp + (1 - known) * filled * self.reach
        flow = F.interpolate(disp[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        # 5. resample the portrait (rgb + alpha) and composite over the background plate
        pos = self.base + flow.permute(1, 2, 0)
        grid = torch.stack([pos[..., 0] / w, pos[..., 1] / h], -1) * 2 - 1
        warped = F.grid_sample(self.source, grid[None], mode="bilinear", padding_mode="border",
                               align_corners=False)[0]
        alpha = warped[3:4]
        out = warped[:3] * alpha + self.background * (1 - alpha)
        # 6. the mouth interior where the lips part further than in the portrait
        opening = self._opening(pts)
        fade = (opening - self.rest_open) / (cfg.mouth_ramp_iod * p.frame.scale)
        if fade > 0:
            in_mouth = (frags.face >= self.n_skin) & (frags.face < self.n_skin + self.n_mouth)
            self._draw_mouth(out, frags, vals, in_mouth, opening, min(1.0, fade), frame)
        return out

    def _draw_mouth(self, out, frags, vals, in_mouth, opening, fade, frame):
        """Paint the interior in place on ``out`` float[3 x H x W], in the mouth's box only."""
        s = self.config.raster_scale
        h, w = self.size
        mask_lo = frags.to_image(in_mouth.float()[:, None])[..., 0]
        uv_lo = frags.to_image(vals[:, 4:6] * in_mouth.float()[:, None])
        ys, xs = torch.nonzero(mask_lo, as_tuple=True)
        if len(ys) == 0:
            return
        pad = 2
        y0, y1 = max(0, int(ys.min()) - pad), min(mask_lo.shape[0], int(ys.max()) + pad + 1)
        x0, x1 = max(0, int(xs.min()) - pad), min(mask_lo.shape[1], int(xs.max()) + pad + 1)
        Y0, Y1, X0, X1 = round(y0 / s), min(h, round(y1 / s)), round(x0 / s), min(w, round(x1 / s))
        box = torch.cat([mask_lo[y0:y1, x0:x1, None], uv_lo[y0:y1, x0:x1]], -1).permute(2, 0, 1)[None]
        up = F.interpolate(box, size=(Y1 - Y0, X1 - X0), mode="bilinear", align_corners=False)[0]
        m = up[0].clamp(0, 1)
        u = up[1] / m.clamp_min(1e-3)
        v = up[2] / m.clamp_min(1e-3)
        interior = draw_mouth(u, v, opening, self.portrait.frame.scale, self.palette,
                              float(frame.expression[INDEX["tongueOut"]]))
        a = (m * fade)[None]
        out[:, Y0:Y1, X0:X1] = out[:, Y0:Y1, X0:X1] * (1 - a) + interior * a

    def render(self, motion: Motion) -> Iterator[np.ndarray]:
        """Frames of a motion, one uint8[H x W x 3] at a time."""
        for frame in motion:
            yield self.render_frame(frame)
