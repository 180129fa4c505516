"""The one-shot warp renderer (DESIGN.md §3).

For each driving frame the portrait's mesh is deformed by the blendshapes, posed
relative to the portrait, and rasterised (with the mouth and eye holes closed by fans)
into a dense backward flow: for every output pixel, where to read the portrait. The flow
is extended smoothly over hair, neck and shoulders, fades to zero on the background, and
the portrait is resampled there (``cv2.remap``: bilinear, weights to 1/32 pixel).
Revealed background comes from the portrait's filled-in background plate; the mouth
interior is drawn where the lips part.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..drive.frames import DrivingFrame, Motion
from ..expression.arkit import INDEX
from ..face import mesh as M
from ..face.blendshapes import GAZE_IOD, gaze_from_expression, jaw_angle, jaw_hinge, jaw_rotation
from ..face.pose import rotation_matrix
from ..portrait import Portrait
from .config import RenderConfig  # noqa: F401  (re-exported: puppetry.render.warp.RenderConfig)
from .fill import pull_push
from .mouth import UPPER_TEETH_BELOW_IOD, MouthPalette, draw_mouth, shown_teeth
from .raster import rasterize

MOUTH_LOOP = M.closed_loop(M.LIP_INNER_UPPER, M.LIP_INNER_LOWER)   # 20 vertices
EYE_LOOPS = (M.closed_loop(M.EYE_RIGHT_UPPER, M.EYE_RIGHT_LOWER),  # 16 each
             M.closed_loop(M.EYE_LEFT_UPPER, M.EYE_LEFT_LOWER))
N_MESH = 468
MIN_FLOW_PX = 0.25        # flow below this (pixels) is not drawn: the region warped is where it is above
FINE_MOVE_PX = 0.25       # a triangle near the eyes or mouth gets the full-resolution flow when an expression moves a corner this far
GAZE_MOVE_PX = 0.05       # ... and an eye's interior when the gaze shifts it this far (pixels)
LASH_OPACITY = 0.8       # of the lash line drawn along a closed lid
LASH_IOD = 0.022         # its width
LIP_SEAM_OPACITY = 0.5   # of the line drawn where closed lips meet (portraits whose lips were apart)
LIP_SEAM_IOD = 0.012     # its width
SILHOUETTE_MARGIN = 0.0   # skull points turned in from behind the silhouette are put back on it
MOUTH_CORNER_FADE = 0.04  # the interior fades out over this last share of the mouth's half-width
PARTED_IOD = 0.04         # a portrait whose lips are further apart than this shows its mouth interior
MOUTH_C, EYE_R_C, EYE_L_C = N_MESH, N_MESH + 1, N_MESH + 2        # fan centre vertices


def _with_centres(points: np.ndarray) -> np.ndarray:
    """float[468 x C] mesh points -> float[471 x C], adding the mouth and eye fan centres."""
    return np.concatenate([points, [points[MOUTH_LOOP].mean(0)], [points[EYE_LOOPS[0]].mean(0)],
                           [points[EYE_LOOPS[1]].mean(0)]])


def _fan(loop: list[int], centre: int) -> list[tuple[int, int, int]]:
    return [(centre, a, b) for a, b in zip(loop, loop[1:] + loop[:1])]


def _index_at(along: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Fractional index into a polyline's points at positions ``along`` float[N] given
    the points' own positions ``knots`` float[K] (made increasing), clamped to its ends."""
    knots = torch.cummax(knots, 0).values
    i = torch.searchsorted(knots, along.contiguous()).clamp(1, len(knots) - 1)
    a, b = knots[i - 1], knots[i]
    return (i - 1).float() + ((along - a) / (b - a).clamp_min(1e-3)).clamp(0, 1)


def _height_at(along: torch.Tensor, line: torch.Tensor, axis: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """The height (along ``down``, pixels) of a polyline float[K x 2] at positions
    ``along`` float[N] on ``axis`` -> float[N] (the end heights beyond its ends)."""
    f = _index_at(along, line @ axis)
    i = f.floor().long().clamp(0, len(line) - 2)
    h = line @ down
    return torch.lerp(h[i], h[i + 1], f - i)


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
        self.raster_size = (math.ceil(h * config.raster_scale), math.ceil(w * config.raster_scale))  # covers the canvas
        # 1. topology: skin + the three holes closed by fans around added centre vertices
        fans = _fan(MOUTH_LOOP, MOUTH_C) + _fan(EYE_LOOPS[0], EYE_R_C) + _fan(EYE_LOOPS[1], EYE_L_C)
        self.n_skin = len(M.face_model().triangles)
        self.n_mouth = len(MOUTH_LOOP)
        self.faces = torch.tensor(np.concatenate([M.face_model().triangles, fans]), dtype=torch.long)
        # triangles around the eyes and the mouth get an exact, full-resolution flow
        # (eyelids and lip edges move by a few pixels; a coarse flow would blur that)
        shape = _with_centres(p.shape)
        centres = shape[[MOUTH_C, EYE_R_C, EYE_L_C]]
        near = (np.linalg.norm(shape[:, None] - centres[None], axis=-1) < config.fine_iod).any(1)
        mouth_fan = torch.zeros(len(self.faces), dtype=torch.bool)
        mouth_fan[self.n_skin:self.n_skin + self.n_mouth] = True
        # (every fan too: a wide smile's corners lie further than ``fine_iod`` from its centre)
        fine = torch.from_numpy(near[self.faces.numpy()].all(1))
        fine[self.n_skin:] = True
        self.fine = fine
        self.mouth_fan = mouth_fan
        # (per frame only those an expression moves: elsewhere the flow is the head's
        # smooth motion, which the coarse flow carries as well; ``_fine_faces``)
        # 2. per-vertex attributes: source position (pixels) and hole coordinates
        attr = np.zeros((N_MESH + 3, 4), np.float32)   # source x, y; eye R, eye L weights
        attr[:, :2] = _with_centres(p.landmarks[:N_MESH, :2])
        attr[EYE_R_C, 2] = attr[EYE_L_C, 3] = 1.0
        self.attr = torch.from_numpy(attr)
        self.shape = torch.from_numpy(p.shape)
        # how far the neutral mesh lies from the photo's own face (a photo's parted lips are closed in it)
        self.from_photo = self.shape - torch.from_numpy(p.frame.to_head(p.landmarks[:N_MESH].astype(np.float64)).astype(np.float32))
        self.basis = torch.from_numpy(p.basis).reshape(len(p.basis), -1)
        # 3. images, channels last: the canvas unmixed against the background plate
        #    (premultiplied person + alpha, float32[H x W x 4]), the canvas, the plate
        rgb, bg = p.image / np.float32(255), p.background / np.float32(255)
        # where the portrait shows its own mouth interior (inside the inner lips): the
        # rigid upper teeth may take it from the photo (a pixel in from the lips); the skin
        # never does: a photo with parted lips has its interior filled from the lips
        # around it, so closing them leaves no dark fringe at the corners
        hole = np.zeros((h, w), np.uint8)
        cv2.fillPoly(hole, [np.round(p.landmarks[MOUTH_LOOP, :2] * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
        # (and the teeth it shows above them: the tracker often puts the inner upper lip on
        # the teeth, and the lip's skin must not carry a pale smear of them when it closes)
        skin = rgb
        self.parted = self._opening(p.landmarks) > PARTED_IOD * p.frame.scale
        if self.parted:
            hole = cv2.erode(hole, np.ones((3, 3), np.uint8)) | shown_teeth(p.image, p.landmarks).astype(np.uint8)
            inside = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
            skin = cv2.inpaint(p.image, inside, 5, cv2.INPAINT_TELEA) / np.float32(255)
        else:
            hole = cv2.erode(hole, np.ones((3, 3), np.uint8))
        hole = hole.astype(np.float32)
        premul = skin - (1 - p.alpha[..., None]) * bg
        self.source = np.ascontiguousarray(np.concatenate([premul, p.alpha[..., None]], -1), np.float32)
        self.image = torch.from_numpy(np.concatenate([rgb, hole[..., None]], -1)).permute(2, 0, 1)[None].contiguous()
        self.background = torch.from_numpy(np.ascontiguousarray(bg, np.float32))
        self.reach = torch.from_numpy(self._reach(config.hair_reach, config.neck_reach))[None]
        self.seam = torch.from_numpy(self._reach(config.seam_reach, config.seam_reach))[None]
        fr = p.frame
        self.skull_axes = fr.scale * fr.rotation @ np.diag(config.head_axes)   # (3, 3) pixels
        self.skull_inv = np.linalg.inv(self.skull_axes)
        self.skull_centre = fr.to_image(np.array([config.head_centre]))[0]
        view = self.skull_inv @ np.array([0.0, 0.0, -1.0])                   # toward the camera
        self.view = torch.from_numpy((view / np.linalg.norm(view)).astype(np.float32))
        self.to_grid = torch.tensor([2.0 / w, 2.0 / h])                 # pixels -> grid_sample units (_sample)
        self.base_grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)),
                                  -1)                           # (H, W, 2) pixels' centres (x, y), remap's units
        rh, rw = self.raster_size
        ys, xs_ = torch.meshgrid((torch.arange(rh) + 0.5) / config.raster_scale,
                                 (torch.arange(rw) + 0.5) / config.raster_scale, indexing="ij")
        self.raster_base = torch.stack([xs_, ys])                      # (2, h, w) pixels
        self.canvas = p.image
        self.palette = MouthPalette.from_portrait(p.image, p.landmarks, hole > 0)
        lid = p.image[p.landmarks[M.EYE_RIGHT_UPPER + M.EYE_LEFT_UPPER, 1].astype(int).clip(0, h - 1),
                      p.landmarks[M.EYE_RIGHT_UPPER + M.EYE_LEFT_UPPER, 0].astype(int).clip(0, w - 1)]
        darkest = lid[np.argsort(lid.sum(1))[:4]].mean(0) / 255.0        # the lash line's colour
        self.lash = torch.from_numpy((darkest * 0.8).astype(np.float32))
        # teeth (rigid): the line where the neutral lips meet, in the head frame; the
        # upper row hangs from it with the skull, the lower row stands on it moved by the jaw
        self.meet = (p.shape[M.LIP_INNER_UPPER] + p.shape[M.LIP_INNER_LOWER]).astype(np.float64) / 2   # (11, 3)
        self.meet_jaw = (self.meet - jaw_hinge(p.shape)) @ (jaw_rotation(1.0, jaw_angle(p.shape, p.frame.rotation)) - np.eye(3)).T  # per jawOpen
        self.src_meet = torch.from_numpy(p.frame.to_image(self.meet)[:, :2].astype(np.float32))  # in the photo
        self.src_down = torch.from_numpy(-p.frame.rotation[:2, 1].astype(np.float32))
        self.rest_open = self._opening(p.frame.to_image(p.shape.astype(np.float64)))
        self.pivot = p.frame.to_image(np.array([config.pivot]))[0]

    def _reach(self, hair: float, neck: float) -> np.ndarray:
        """How far the face's flow extends, float32[h x w] at raster scale: 1 on the face,
        fading over the hair (reach ``hair``) and the neck (``neck``, face widths), 0 far away."""
        p, s = self.portrait, self.config.raster_scale
        hull = np.zeros(self.raster_size, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull((p.landmarks[:N_MESH, :2] * s).astype(np.int32)), 1)
        dist = cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5)
        face_w = (p.landmarks[:, 0].max() - p.landmarks[:, 0].min()) * s
        chin_y = p.landmarks[M.CHIN, 1] * s
        rows = np.arange(self.raster_size[0])[:, None] + 0.5
        below = np.clip((rows - chin_y) / (0.3 * face_w), 0, 1)
        reach = face_w * (hair * (1 - below) + neck * below)
        # only where the person is (or could move to): background far from them stays put
        person = cv2.resize(p.alpha, self.raster_size[::-1], interpolation=cv2.INTER_AREA) > 0.02
        near = cv2.dilate(person.astype(np.uint8), np.ones((5, 5), np.uint8))
        near = cv2.GaussianBlur(near.astype(np.float32), (0, 0), 2.0)
        return (np.exp(-0.5 * (dist / reach) ** 2) * np.maximum(near, hull)).astype(np.float32)

    @staticmethod
    def _opening(pts) -> float:
        return float(np.linalg.norm(pts[M.LIP_LOWER_MID, :2] - pts[M.LIP_UPPER_MID, :2]))

    def _pose(self, frame: DrivingFrame):
        """The frame's rigid motion on the canvas: ``p -> rot @ (p - pivot) * k + pivot + shift``."""
        face_w = float(np.ptp(self.portrait.landmarks[:, 0]))
        shift = np.array([frame.translation[0] * face_w, frame.translation[1] * face_w, 0.0])
        return rotation_matrix(*frame.rotation), float(frame.scale), shift

    def posed_vertices(self, frame: DrivingFrame) -> np.ndarray:
        """The driven mesh on the canvas: float32[468 x 3], pixels (z: depth, pixels)."""
        return self._place(self._driven(frame)[0], frame)

    def _driven(self, frame: DrivingFrame) -> tuple[np.ndarray, torch.Tensor]:
        """The driven mesh in the head frame, float64[468 x 3] (IOD), and how far each
        vertex lies from where the photo shows it, float32[468] (IOD)."""
        w = torch.from_numpy(np.asarray(frame.expression, np.float32))
        delta = (w @ self.basis).reshape(-1, 3)
        return (self.shape + delta).double().numpy(), (self.from_photo + delta).norm(dim=1)

    def _fine_faces(self, moved: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Indices of the triangles to rasterise at full resolution this frame: those near
        the eyes and mouth with a corner that the expression moved (``moved`` bool[468]),
        and an eye's whole fan when the gaze shifts its interior (``shift`` float[2 x 2],
        pixels), int64[F']."""
        active = torch.zeros(N_MESH + 3, dtype=torch.bool)
        active[:N_MESH] = moved
        for centre, loop, eye in ((MOUTH_C, MOUTH_LOOP, None), (EYE_R_C, EYE_LOOPS[0], 0), (EYE_L_C, EYE_LOOPS[1], 1)):
            active[centre] = bool(active[loop].any()) or (eye is not None and float(shift[eye].abs().max()) > GAZE_MOVE_PX)
        return (self.fine & active[self.faces].any(1)).nonzero().squeeze(1)

    def _place(self, head: np.ndarray, frame: DrivingFrame) -> np.ndarray:
        """Head-frame points float[N x 3] (IOD) -> canvas pixels float32[N x 3] under the
        frame's pose."""
        pts = self.portrait.frame.to_image(head)
        rot, k, shift = self._pose(frame)
        return ((pts - self.pivot) @ rot.T * k + self.pivot + shift).astype(np.float32)

    def _skull_flow(self, frame: DrivingFrame) -> torch.Tensor:
        """Backward flow of the rigid skull proxy (an ellipsoid), float32[2 x h x w], pixels.

        Each raster pixel is cast (orthographically) onto the front of the posed ellipsoid,
        taken back to the rest pose and projected: hair and the head's outline turn with
        the head instead of sliding with the face. What turns into view from behind the
        photo's silhouette is taken from the silhouette itself (stretched hair), never from
        the background beyond it. Outside the posed silhouette the flow is continued
        smoothly from inside (pull-push).
        """
        rot, k, shift = self._pose(frame)
        centre = rot @ (self.skull_centre - self.pivot) * k + self.pivot + shift
        # the posed ellipsoid's axes are k * rot @ skull_axes: their inverse
        inv = torch.from_numpy((self.skull_inv @ rot.T / k).astype(np.float32))
        q = self.raster_base - torch.from_numpy(centre[:2].astype(np.float32))[:, None, None]
        a = torch.einsum("ij,jhw->ihw", inv[:, :2], q) - (inv[:, 2] * float(centre[2]))[:, None, None]
        b = inv[:, 2][:, None, None]                                          # (3, 1, 1)
        bb, ab = (b * b).sum(0), (a * b).sum(0)
        disc = ab ** 2 - bb * ((a * a).sum(0) - 1)
        t = (-ab - disc.clamp_min(0).sqrt()) / bb                             # front surface
        local = a + b * t               # (3, h, w) on the unit sphere: the same point at rest
        toward = (local * self.view[:, None, None]).sum(0)                   # > 0: seen in the photo
        local = local + self.view[:, None, None] * (SILHOUETTE_MARGIN - toward).clamp_min(0)
        src = torch.einsum("ij,jhw->ihw", torch.from_numpy(self.skull_axes[:2].astype(np.float32)), local)
        flow = src + torch.from_numpy(self.skull_centre[:2].astype(np.float32))[:, None, None] - self.raster_base
        inside = (disc > 0).float()[None]
        return pull_push(flow * inside, inside)

    @torch.inference_mode()
    def render_frame(self, frame: DrivingFrame, out: np.ndarray | None = None) -> np.ndarray:
        """One driving frame -> uint8[H x W x 3] (written into ``out`` if given)."""
        if out is None:
            out = self.canvas.copy()
        else:
            out[...] = self.canvas
        (y0, y1, x0, x1), patch = self._render_region(frame)
        # to 0..255, rounded (the uint8 copy truncates), in place and straight into ``out``
        patch.mul_(255).add_(0.5).clamp_(0, 255)
        torch.from_numpy(out)[y0:y1, x0:x1].copy_(patch.permute(1, 2, 0))
        return out

    @torch.inference_mode()
    def _render_region(self, frame: DrivingFrame):
        """Render the part of the canvas that moves: ((y0, y1, x0, x1), float32[3 x h x w])."""
        p, cfg = self.portrait, self.config
        h, w = self.size
        s = cfg.raster_scale
        # 1. driven, posed mesh with the three fan centres
        head, moved = self._driven(frame)
        pts = self._place(head, frame)
        verts = _with_centres(pts).astype(np.float32)
        # 2. gaze moves the eye interiors (iris and sclera) inside the lids
        gaze = gaze_from_expression(np.asarray(frame.expression))          # (2 eyes, 2)
        gaze = gaze + np.float32(GAZE_IOD) * np.asarray(frame.gaze, np.float32)
        axes = rotation_matrix(*frame.rotation) @ p.frame.rotation          # head axes in image
        shift = torch.from_numpy(np.stack(
            [(axes[:2, 0] * g[0] + axes[:2, 1] * g[1]) * p.frame.scale for g in gaze]).astype(np.float32))
        # 3. rasterise (coarse: the flow is continuous across the fans): source positions
        frags = rasterize(torch.from_numpy(verts * np.float32([s, s, 1])), self.faces, self.raster_size)
        vals = frags.interpolate(self.faces, self.attr)              # (N, 4)
        src = vals[:, :2] - vals[:, 2:3] * shift[0] - vals[:, 3:4] * shift[1]
        known = frags.to_image(torch.ones(len(vals), 1))[..., 0][None]       # (1, h, w)
        disp = frags.to_image(src).permute(2, 0, 1) - self.raster_base       # (2, h, w)
        # 4. beyond the face the skull proxy turns hair and outline; the mesh's own
        #    deviation from it (jaw, expressions) is extended smoothly over a short seam;
        #    everything fades out down the neck and away from the head
        skull = self._skull_flow(frame)
        seam = pull_push((disp - skull) * known, known) * self.seam
        disp = known * disp + (1 - known) * (skull + seam) * self.reach
        # 5. only where something moves: resample the portrait (rgb + alpha) there and
        #    composite over the background plate
        moving = (disp.abs().amax(0) > MIN_FLOW_PX).nonzero()
        if len(moving) == 0:
            return (0, 0, 0, 0), torch.zeros(3, 0, 0)
        y0, x0 = ((moving.amin(0) - 1).clamp_min(0).float() / s).floor().long().tolist()
        y1, x1 = ((moving.amax(0) + 2).float() / s).ceil().long().tolist()
        y1, x1 = min(y1, h), min(x1, w)
        flow = self._upsample(disp, y0, y1, x0, x1)                     # (h, w, 2)
        # where each output pixel reads the portrait, in remap's units (pixel centres at
        # integers: pixel position - 0.5)
        grid = torch.from_numpy(self.base_grid[y0:y1, x0:x1] + flow)          # (h, w, 2)
        # exact flow around the eyes and mouth, rasterised at full resolution
        local = verts - np.float32([x0, y0, 0])
        chosen = self._fine_faces(moved * np.float32(p.frame.scale * frame.scale) > FINE_MOVE_PX, shift)
        fine_faces = self.faces[chosen]
        fine = rasterize(torch.from_numpy(local), fine_faces, (y1 - y0, x1 - x0))
        if len(fine.pix):
            vals = fine.interpolate(fine_faces, self.attr)
            src = vals[:, :2] - vals[:, 2:3] * shift[0] - vals[:, 3:4] * shift[1]
            grid.view(-1, 2)[fine.pix] = src - 0.5
        # channels last throughout (remap's layout; the frame's too: no transposing copy)
        warped = torch.from_numpy(cv2.remap(self.source, grid.numpy(), None, cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_CONSTANT))    # (h, w, 4)
        # (beyond the canvas: alpha 0, so the background plate shows, never a mirror)
        bg = self.background[y0:y1, x0:x1]
        out = torch.addcmul(warped[..., :3], bg, warped[..., 3:], value=-1).add_(bg)  # premul + (1 - a) bg
        out = out.permute(2, 0, 1)                                   # float[3 x h x w], a view
        # 6. a closing eye shows its lash line along the lid
        self._draw_lashes(out, (y0, x0), pts, frame)
        # 7. the mouth interior where the lips part further than in the portrait; where
        #    the portrait's own lips were apart, closed lips show the line where they meet
        opening = self._opening(pts)
        fade = (opening - self.rest_open) / (cfg.mouth_ramp_iod * p.frame.scale)
        if self.parted and fade < 1:
            meet = (pts[M.LIP_INNER_UPPER, :2] + pts[M.LIP_INNER_LOWER, :2]) / 2
            self._draw_line(out, (y0, x0), meet, LIP_SEAM_IOD, self.palette.seam,
                            LIP_SEAM_OPACITY * (1 - max(0.0, fade)))
        if fade > 0:
            self._draw_mouth(out, fine, self.mouth_fan[chosen], local, min(1.0, fade), frame, (x0, y0))
        return (y0, y1, x0, x1), out

    def _upsample(self, disp: torch.Tensor, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The coarse flow float[2 x h x w] bilinearly upsampled to canvas pixels (pixel
        centres aligned, as ``F.interpolate(align_corners=False)``), for the region
        [y0:y1, x0:x1] only -> float32[(y1-y0) x (x1-x0) x 2], a view."""
        s = self.config.raster_scale
        cy0, cx0 = max(0, int(y0 * s) - 1), max(0, int(x0 * s) - 1)
        cy1 = min(disp.shape[1], int(np.ceil(y1 * s)) + 2)
        cx1 = min(disp.shape[2], int(np.ceil(x1 * s)) + 2)
        coarse = disp[:, cy0:cy1, cx0:cx1].permute(1, 2, 0).contiguous().numpy()
        up = cv2.resize(coarse, None, fx=1 / s, fy=1 / s, interpolation=cv2.INTER_LINEAR)
        oy, ox = round(cy0 / s), round(cx0 / s)
        return up[y0 - oy:y1 - oy, x0 - ox:x1 - ox]

    def _draw_lashes(self, out, origin, pts, frame):
        """Darken a thin curve along each closing upper lid (in place on ``out``)."""
        for name, upper in (("eyeBlinkRight", M.EYE_RIGHT_UPPER), ("eyeBlinkLeft", M.EYE_LEFT_UPPER)):
            amount = float(np.clip((frame.expression[INDEX[name]] - 0.5) / 0.4, 0, 1))
            if amount > 0:
                self._draw_line(out, origin, pts[upper, :2], LASH_IOD, self.lash, LASH_OPACITY * amount)

    def _draw_line(self, out, origin, curve, width_iod, colour, opacity):
        """Blend a thin antialiased polyline (canvas pixels float[K x 2], ``width_iod``
        wide) of ``colour`` float[3] into ``out`` float[3 x h x w] (region at ``origin``
        (y0, x0)), in place."""
        width = max(1, round(width_iod * self.portrait.frame.scale))
        h, w = out.shape[1:]
        # only the curve's own box (plus the line's width) is touched
        x0, y0 = (np.floor(curve.min(0)) - np.float32([origin[1], origin[0]]) - width - 2).astype(int).clip(0)
        x1, y1 = (np.ceil(curve.max(0)) - np.float32([origin[1], origin[0]]) + width + 3).astype(int)
        x1, y1 = min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return
        curve = curve - np.float32([origin[1] + x0, origin[0] + y0])
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.polylines(mask, [np.round(curve * 4).astype(np.int32)], False, 1.0, width, cv2.LINE_AA, shift=2)
        a = torch.from_numpy(mask)[None] * opacity
        box = out[:, y0:y1, x0:x1]
        box.mul_(1 - a).add_(colour[:, None, None] * a)

    def _draw_mouth(self, out, fine, is_mouth, local, fade, frame, origin):
        """Paint the mouth interior in place on ``out`` float[3 x h x w]: rigid teeth (the
        upper row with the skull, the lower row with the jaw, never scaled), tongue and
        cavity. The upper row shows the portrait's own teeth where the portrait shows its
        mouth interior there. ``fine`` are the full-resolution fragments of the region,
        ``is_mouth`` which of their triangles are the mouth's fan (bool[F']), ``local`` the
        mesh in the region's pixels, ``origin`` the region's (x0, y0)."""
        p = self.portrait
        hit = is_mouth[fine.face]
        if not hit.any():
            return
        pix = fine.pix[hit]
        # each pixel's place along the mouth (its projection on the lips' axis, not the
        # fan's interpolation: the fan's centre would bend the columns) and, at that place,
        # the lips and the teeth lines
        o = np.float32([origin[0], origin[1]])
        down = torch.from_numpy((rotation_matrix(*frame.rotation) @ -p.frame.rotation[:, 1])[:2].astype(np.float32))
        axis = torch.stack([down[1], -down[0]])                        # along the mouth, image x-ish
        width = out.shape[2]
        y, x = pix // width, pix % width
        xy = torch.stack([x, y], 1).float() + 0.5
        along, height = xy @ axis, xy @ down
        jaw = float(frame.expression[INDEX["jawOpen"]])
        place = self._place(self.meet, frame)[:, :2] - o                 # the teeth's line, posed
        lines = [local[M.LIP_INNER_UPPER, :2], local[M.LIP_INNER_LOWER, :2], place,
                 self._place(self.meet + jaw * self.meet_jaw, frame)[:, :2] - o]
        # (the lines are read at half-pixel steps along the mouth, then per pixel)
        start = float(along.min().floor())
        steps = start + 0.5 * torch.arange(int((float(along.max()) - start) * 2) + 2)
        table = torch.stack([_height_at(steps, torch.from_numpy(np.ascontiguousarray(q)), axis, down) for q in lines]
                            + [_index_at(steps, torch.from_numpy(np.ascontiguousarray(place)) @ axis)])   # (5, T)
        f = (along - start) * 2
        i = f.floor().long().clamp(0, table.shape[1] - 2)
        upper, lower, meet_up, meet_lo, col = torch.lerp(table[:, i], table[:, i + 1], f - i)
        d_up = (height - upper).clamp_min(0)          # below the upper lip, pixels
        d_lo = (lower - height).clamp_min(0)          # above the lower lip
        t_up = height - meet_up                       # below the upper teeth's root line
        t_lo = height - meet_lo                       # below the lower teeth's root line
        ends = torch.from_numpy(local[[M.LIP_INNER_UPPER[0], M.LIP_INNER_UPPER[-1]], :2]) @ axis
        across = ((along - ends.mean()) / (0.5 * (ends[1] - ends[0]).abs() + 1e-3)).abs().clamp(0, 1)
        k = float(frame.scale)
        iod = p.frame.scale * k
        drawn = draw_mouth(across, d_up, d_lo, t_up, t_lo, iod, self.palette,
                           float(frame.expression[INDEX["tongueOut"]]))
        # the portrait's own upper teeth: the same skull point in the photo
        c0 = col.floor().long().clamp(0, len(place) - 2)
        src = torch.lerp(self.src_meet[c0], self.src_meet[c0 + 1], (col - c0)[:, None]) \
            + self.src_down * (t_up / k)[:, None]
        real = self._sample(src)                                     # (N, 4): rgb, shown
        # ... where the photo shows its interior there and it is lit like teeth, not cavity
        lit = ((real[:, :3].sum(1) / self.palette.teeth.sum() - 0.45) / 0.2).clamp(0, 1)
        own = (real[:, 3] * lit * (t_up < UPPER_TEETH_BELOW_IOD * iod).float())[:, None]
        interior = torch.lerp(drawn, real[:, :3], own)
        # composite, antialiased at the lip edge by a 3x3 box over the coverage
        by0, bx0 = int(y.min()), int(x.min())
        mask = torch.zeros(int(y.max()) - by0 + 1, int(x.max()) - bx0 + 1)
        mask[y - by0, x - bx0] = 1.0
        soft = F.avg_pool2d(mask[None, None], 3, 1, 1)[0, 0][y - by0, x - bx0]
        # the lips meet at the corners: there the hole shows lip, not the photo's warped slit
        corner = ((1 - across) / MOUTH_CORNER_FADE).clamp(0, 1)[:, None]
        interior = torch.lerp(self.palette.lips[None] * 0.8, interior, corner)
        a = (soft * fade)[None]
        out[:, y, x] = out[:, y, x] * (1 - a) + interior.T * a

    def _sample(self, pts: torch.Tensor) -> torch.Tensor:
        """Portrait colours and its mouth-interior mask at canvas points float[N x 2]
        (pixels) -> float[N x 4]."""
        grid = (pts * self.to_grid - 1)[None, None]
        return F.grid_sample(self.image, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)[0, :, 0].T

    def render(self, motion: Motion) -> Iterator[np.ndarray]:
        """Frames of a motion, one uint8[H x W x 3] at a time."""
        for frame in motion:
            yield self.render_frame(frame)
