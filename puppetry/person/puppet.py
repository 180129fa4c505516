"""A learned person and its ``.puppet`` file.

A :class:`Person` holds what rendering and dubbing need: the neural renderer
(``MouthNet`` + its ``CropConfig``), the person's neutral face (identity), their speaking
style, the tracked footage it learned from (per-frame skull pose and crop placement, a
few bytes a frame, and where the video is) and one closed-mouth reference frame (for the
warp renderer and as a fallback texture).

The file is one ``torch.save`` of a plain dict, self-describing like a Whisper checkpoint::

    {"kind": "puppetry.person", "version": 1, "dims": {...}, "crop": {...},
     "recipe": {...}, "commit": "...", "created": "...", "source": {...},
     "frames_used": N, "frames_dropped": {...}, "training": {...},
     "identity": float32[468 x 3], "style": {...} | None, "footage": {...},
     "reference": {"png": bytes, "index": i}, "weights": state_dict}

>>> person = load_person("obama.puppet")
>>> frame = person.render_frame(footage_rgb, pose, affine, expression)
"""
from __future__ import annotations

import io
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..face.fitting import Identity
from . import crop as C
from .footage import driven_points
from .net import MouthNet, NetDims
from .train import network_input

PUPPET_KIND = "puppetry.person"
PUPPET_VERSION = 1
MAX_PUPPET_BYTES = 50 * 1024 * 1024   # a .puppet file is meant to be shared: at most 50 MB
# what torch.load may rebuild besides tensors (weights_only): numpy arrays of these dtypes
SAFE_NUMPY = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.BoolDType,
              np.dtypes.UInt8DType, np.dtypes.Int64DType, np.dtypes.Float32DType,
              np.dtypes.Float64DType]


class PersonError(ValueError):
    """A ``.puppet`` file that cannot be read; the message names the file and the fix."""


@dataclass
class Person:
    """A person learned from a video (module doc).

    net       : the neural renderer (eval mode, CPU unless moved)
    crop      : where its crop sits (``crop.CropConfig``)
    identity  : the neutral face (``Identity``: shape and blendshapes, head frame)
    style     : the speaking style (``expression.style.Style``) or None
    footage   : the learned video's per-frame data (``Footage.arrays()``)
    reference : uint8[H x W x 3], a closed-mouth frame of the footage; ``reference_index``
    meta      : everything else in the file (recipe, commit, training summary, ...)
    """

    net: MouthNet
    crop: C.CropConfig
    identity: Identity
    style: object | None
    footage: dict
    reference: np.ndarray
    reference_index: int
    meta: dict = field(default_factory=dict)
    file: Path | None = None     # the .puppet it was read from (``load_person``)

    def video(self) -> Path | None:
        """The video it learned from, if it is here: where it was when the person was
        learned, else at the same place relative to the ``.puppet`` file (a folder moved
        or copied to another machine as a whole), else beside the ``.puppet`` under its
        own name (a file of the size it had); None when none of them is here."""
        source = self.meta.get("source", {})
        for p in (source.get("path"), self.footage.get("source")):
            if p and Path(p).is_file():
                return Path(p)
        if self.file is None:
            return None
        folder = Path(self.file).parent
        for p in (source.get("relative"), source.get("name")):   # the same file: its size too
            if p and (folder / p).is_file() and (folder / p).stat().st_size == source.get("bytes"):
                return folder / p
        return None

    # -- rendering ------------------------------------------------------------------------
    @torch.inference_mode()
    def render_crops(self, contexts: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Synthesise lower-face crops.

        contexts : uint8[B x S x S x 3], the footage crops the mouths go into
        points   : float[B x 468 x 2], the driven meshes in crop pixels
        Returns uint8[B x S x S x 3]: the network's region over the context (the region's
        pixels are the network's; outside, the context's).
        """
        s = self.crop.size
        device = next(self.net.parameters()).device
        hard, _ = C.region_mask(self.crop)
        geo = np.stack([C.draw_geometry(p, s) for p in points])
        ctx = torch.from_numpy(np.ascontiguousarray(contexts)).to(device).permute(0, 3, 1, 2).float() / 255
        hard_t = torch.from_numpy(np.array(hard)).to(device)
        pred = self.net(network_input(ctx, torch.from_numpy(geo).to(device), hard_t, self.net.dims.texture))
        mix = pred * hard_t + ctx * (1 - hard_t)
        return (mix * 255 + 0.5).clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()

    def render_frame(self, frame: np.ndarray, pose: np.ndarray, affine: np.ndarray,
                     expression: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One footage frame with its lower face re-rendered for ``expression``.

        frame      : uint8[H x W x 3]
        pose       : float[3 x 4], the frame's skull pose (``Footage.pose``)
        affine     : float[2 x 3], the frame's crop placement (``Footage.affine``)
        expression : float[52], ARKit weights 0..1
        Returns uint8[H x W x 3] (``out`` if given).
        """
        affine = np.asarray(affine, np.float64)
        ctx = C.crop(frame, affine, self.crop.size)
        pts = C.to_crop(affine, driven_points(self.identity, expression, np.asarray(pose, np.float32)))
        synth = self.render_crops(ctx[None], pts[None])[0]
        return C.paste(frame, synth, affine, self.crop, out=out)

    # -- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        ok, png = cv2.imencode(".png", cv2.cvtColor(self.reference, cv2.COLOR_RGB2BGR))
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        return {**self.meta, "kind": PUPPET_KIND, "version": PUPPET_VERSION,
                "dims": asdict(self.net.dims), "crop": asdict(self.crop),
                "identity": np.asarray(self.identity.shape, np.float32),
                "style": self.style.to_json() if self.style is not None else None,
                "footage": {k: (np.asarray(v) if isinstance(v, np.ndarray) else v)
                            for k, v in self.footage.items()},
                "reference": {"png": png.tobytes(), "index": int(self.reference_index)},
                "weights": state}

    def save(self, path) -> Path:
        """Write the ``.puppet`` file atomically (temp file beside it, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(self.to_dict(), buf)
        if buf.tell() > MAX_PUPPET_BYTES:
            raise PersonError(f"{path.name} would be {buf.tell() / 2**20:.0f} MB, over "
                              f"{MAX_PUPPET_BYTES / 2**20:.0f} MB: learn with a smaller network")
        tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
        try:
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def load_person(path) -> Person:
    """Read a ``.puppet`` file written by ``puppetry learn`` (module doc)."""
    from ..expression.style import Style

    path = Path(path)
    if not path.is_file():
        raise PersonError(f"person file {path} not found: make one with "
                          "`puppetry learn VIDEO -o PERSON.puppet`")
    if path.stat().st_size > MAX_PUPPET_BYTES:
        raise PersonError(f"{path.name} is {path.stat().st_size / 2**20:.0f} MB: a .puppet file "
                          f"is at most {MAX_PUPPET_BYTES / 2**20:.0f} MB; learn the person again")
    try:   # tensors, numbers, strings and numpy arrays only: a .puppet from anyone runs no code
        with torch.serialization.safe_globals(SAFE_NUMPY):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds on a file that is not its own
        raise PersonError(f"{path.name} is not a readable .puppet file ({type(e).__name__}): "
                          "make one with `puppetry learn VIDEO -o PERSON.puppet`") from None
    if not isinstance(data, dict) or data.get("kind") != PUPPET_KIND:
        raise PersonError(f"{path.name} is not a puppetry person file: make one with "
                          "`puppetry learn VIDEO -o PERSON.puppet`")
    if data.get("version") != PUPPET_VERSION:
        raise PersonError(f"{path.name} is person version {data.get('version')!r}; this puppetry "
                          f"reads version {PUPPET_VERSION}: learn the person again")
    try:   # a file of the right kind whose parts are missing or malformed
        dims = data["dims"]
        # files from before the texture/flow options drew the whole region from a blank
        net = MouthNet(NetDims(**{"texture": False, "flow": False, **dims,
                                  "channels": tuple(dims["channels"])}))
        net.load_state_dict(data["weights"])
        net.eval()
        crop = data["crop"]
        crop = C.CropConfig(**{**crop, "region": tuple(crop["region"])})
        style = None
        if data.get("style"):
            s = data["style"]
            style = Style(tuple(s["names"]), s["matrix"], s["bias"], fps=float(s["fps"]),
                          source=str(s.get("source", "")), frames=int(s.get("frames", 0)),
                          method=s.get("method", "ridge"))
        png = np.frombuffer(data["reference"]["png"], np.uint8)
        reference = cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        meta = {k: v for k, v in data.items() if k not in (
            "kind", "version", "dims", "crop", "identity", "style", "footage", "reference", "weights")}
        return Person(net, crop, Identity.from_shape(data["identity"]), style, data["footage"],
                      reference, int(data["reference"]["index"]), meta, path)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, cv2.error) as e:
        raise PersonError(f"{path.name} is a damaged .puppet file ({type(e).__name__}: "
                          f"{str(e)[:80]}): learn the person again") from None
