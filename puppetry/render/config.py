"""The warp renderer's knobs, apart from the renderer so that jobs can name them without
importing torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderConfig:
    """Inference knobs of the warp renderer (override with ``dataclasses.replace``)."""

    raster_scale: float = 0.25       # flow is rasterised at this fraction of the canvas
    pivot: tuple[float, float, float] = (0.0, -0.5, -1.4)  # rotation centre, head frame (IOD)
    head_centre: tuple[float, float, float] = (0.0, -0.15, -1.4)  # skull proxy, head frame (IOD)
    head_axes: tuple[float, float, float] = (1.5, 1.9, 1.6)       # its semi-axes (IOD), ears and hair included
    hair_reach: float = 0.7          # flow reach above the chin, face widths
    neck_reach: float = 0.4          # flow reach below the chin, face widths (the neck twists)
    seam_reach: float = 0.3          # mesh-to-skull blend beyond the face, face widths
    mouth_ramp_iod: float = 0.06     # extra opening over which the drawn interior fades in
    fine_iod: float = 0.5            # full-resolution flow within this distance of eyes and mouth (IOD), where the expression moves the face
    threads: int = 1                 # torch threads per renderer (2 spin-wait badly beside the encoder)
