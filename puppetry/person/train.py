"""The one training loop of the neural renderer.

Each sample is one footage frame's lower-face crop (``crop.py``). The network gets the
crop, the region mask and the geometry of the frame's own fitted expression, and must
rebuild the region; inside the region the crop shows another frame's lower face
(``NetDims.texture``; blanked for networks without it). Two augmentations make it behave
at dubbing time, when expression and footage frame differ:

- a random small similarity (shift, scale, rotation) of crop and geometry together, so a
  tracking wobble does not move the mouth;
- with probability ``swap``, the context outside the region comes from that other frame
  too (as in a dub, where the whole crop is a footage frame with its own mouth): the
  mouth must then follow the drawn geometry, not the cheeks around it.

Loss over the region: L1 + ``grad_weight`` x L1 of the image gradients (sharp edges of
lips and teeth). Adam, with a cosine learning-rate decay over the wall-clock budget (the
schedule follows the clock, not a step count, so a machine that slows down mid-run still
anneals and stops on time); at the end the weights with the lowest mean loss over
``WINDOW`` steps are kept.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .crop import CropConfig, region_mask
from .net import MouthNet

WINDOW = 25         # steps whose mean loss is one point of the curve (and the best-weights test)


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the renderer's training (override with ``dataclasses.replace``)."""

    minutes: float = 20.0      # training time budget, wall clock, minutes
    max_steps: int = 20000     # steps at most, however fast the machine
    batch: int = 8             # crops per step
    lr: float = 2e-3           # Adam learning rate at the start (cosine decay to lr / 20)
    grad_weight: float = 1.0   # weight of the image-gradient L1 against the pixel L1
    swap: float = 0.5          # share of samples whose context comes from another frame
    jitter_px: float = 3.0     # random shift, crop pixels (and 3 % scale, 3° rotation)
    seed: int = 0
    threads: int = 2           # torch threads on the CPU


def network_input(context: torch.Tensor, geometry: torch.Tensor, hard: torch.Tensor,
                  texture: bool = False) -> torch.Tensor:
    """context : Tensor[B x 3 x S x S] footage crops (0..1); geometry : Tensor[B x 3 x S x S];
    hard : Tensor[S x S] region mask -> Tensor[B x 7 x S x S], the region blanked unless
    ``texture`` (``NetDims.texture``)."""
    if not texture:
        context = context * (1 - hard)[None, None]
    return torch.cat([context, hard.expand(len(context), 1, *hard.shape), geometry], 1)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def region_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                grad_weight: float) -> torch.Tensor:
    """L1 + grad_weight x gradient L1, both averaged over ``weight`` (Tensor[S x S])."""
    w = weight[None, None]
    l1 = ((pred - target).abs() * w).sum() / (w.sum() * pred.shape[0] * 3)
    (px, py), (tx, ty) = _gradients(pred), _gradients(target)
    wx, wy = w[..., :, 1:], w[..., 1:, :]
    g = (((px - tx).abs() * wx).sum() / (wx.sum() * pred.shape[0] * 3)
         + ((py - ty).abs() * wy).sum() / (wy.sum() * pred.shape[0] * 3))
    return l1 + grad_weight * g


def _jitter(b: int, px: float, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random similarities as affine_grid matrices: Tensor[B x 2 x 3]."""
    r = torch.rand(b, 4, generator=gen) * 2 - 1
    angle, scale = r[:, 0] * math.radians(3), 1 + 0.03 * r[:, 1]
    shift = r[:, 2:] * (2 * px / size)
    c, s = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([torch.stack([c, -s, shift[:, 0]], 1), torch.stack([s, c, shift[:, 1]], 1)], 1)


def train_renderer(net: MouthNet, crops: np.ndarray, geometry: np.ndarray, crop: CropConfig,
                   config: TrainConfig = TrainConfig(), device: str = "cpu",
                   progress=None) -> dict:
    """Train ``net`` in place on a person's frames; returns the training summary.

    crops    : uint8[N x S x S x 3], the frames' lower-face crops (targets and context)
    geometry : uint8[N x 3 x S x S], their own expressions drawn (``crop.draw_geometry`` x 255)
    progress : ``progress(done, total, stage, info)``, called every few steps
    Returns dict(steps, seconds, curve [(step, mean loss)], final_loss, best_loss,
    best_step, device).
    """
    if config.threads and device == "cpu":
        torch.set_num_threads(config.threads)
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    n = len(crops)
    hard, soft = (torch.from_numpy(np.array(m)).to(device) for m in region_mask(crop))
    weight = F.max_pool2d(hard[None, None], 5, 1, 2)[0, 0]             # the region and its rim
    images = torch.from_numpy(crops).permute(0, 3, 1, 2)               # uint8, (N, 3, S, S)
    drawn = torch.from_numpy(geometry)                                 # uint8, (N, 3, S, S)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.99))
    report = progress or (lambda *a: None)
    budget = config.minutes * 60.0
    curve, window = [], []
    best, best_step, best_state = float("inf"), 0, None
    t0 = time.perf_counter()
    step, done = 0, 0.0
    while done < 1.0:
        # 1. a batch: targets, their geometry, context from the same (or another) frame;
        #    with texture, the region's lower face always from another frame
        idx = torch.randint(n, (config.batch,), generator=gen)
        source = torch.randint(n, (config.batch,), generator=gen)
        source = torch.where(source == idx, (source + 1) % n, source) if n > 1 else source
        other = torch.where(torch.rand(config.batch, generator=gen) < config.swap, source, idx)
        target = images[idx].to(device).float() / 255
        context = images[other].to(device).float() / 255
        geo = drawn[idx].to(device).float() / 255
        # 2. the same random similarity for all of them
        grid = F.affine_grid(_jitter(config.batch, config.jitter_px, crop.size, gen).to(device),
                             list(target.shape), align_corners=False)
        warp = lambda x: F.grid_sample(x, grid, padding_mode="border", align_corners=False)  # noqa: E731
        target, geo = warp(target), warp(geo)
        context = torch.where((idx == other)[:, None, None, None].to(device), target, warp(context))
        if net.dims.texture:
            face = warp(images[source].to(device).float() / 255)
            context = context * (1 - hard) + face * hard
        # 3. a step, with the learning rate on its cosine over the budget's time
        lr = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done)))
        for group in opt.param_groups:
            group["lr"] = lr
        pred = net(network_input(context, geo, hard, net.dims.texture))
        loss = region_loss(pred, target, weight, config.grad_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        window.append(loss.item())
        # 4. where we are: the larger of the time and the step share of the budget
        done = max((time.perf_counter() - t0) / budget if budget > 0 else 1.0,
                   step / config.max_steps)
        if len(window) == WINDOW:
            curve.append((step, float(np.mean(window))))
            window = []
            if curve[-1][1] < best:       # the best weights so far (a copy: ~1 M numbers)
                best, best_step = curve[-1][1], step
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if step % 5 == 0 or done >= 1.0:
            estimate = step if done >= 1.0 else max(step + 1, int(step / done))
            report(step, estimate, "training", f"loss {curve[-1][1] if curve else loss.item():.4f}")
    if window:
        curve.append((step, float(np.mean(window))))
    if best_state is not None and best_step != step:
        net.load_state_dict(best_state)   # the last full window's weights were not the best
    net.eval()
    final = curve[-1][1] if curve else float("nan")
    return {"steps": step, "seconds": time.perf_counter() - t0, "curve": curve,
            "final_loss": final, "best_loss": best if best_state is not None else final,
            "best_step": best_step if best_state is not None else step, "device": device,
            "batch": config.batch, "frames": n}


def progress_bar(stream=sys.stderr):
    """A ``progress(done, total, stage, info="")`` that draws one line with an ETA per stage."""
    starts = {}

    def report(done, total, stage, info=""):
        now = time.perf_counter()
        t0 = starts.setdefault(stage, now)
        frac = done / total if total else 1.0
        eta = (now - t0) / frac * (1 - frac) if frac > 0 else float("nan")
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        eta_s = f"{int(eta // 60)}:{int(eta % 60):02d}" if math.isfinite(eta) else "?"
        stream.write(f"\r{stage:>10} [{bar}] {done}/{total} ETA {eta_s} {info}   ")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return report
