"""Benchmark of a learned person (issue 11): learn on the first part of a video, judge on
the rest, which it never saw.

(a) Reconstruction: every unseen frame is rebuilt from its own tracked motion (skull pose
    and the speech expression fitted to the person's face). The renderers never see the
    mouths they rebuild: they get the unseen footage with the lower-face box (lip
    landmarks + 0.35 IOD) replaced, feathered, by the aligned lower face of the person's
    closed-mouth training frame ("masked"), whose own score is the baseline. Scores:
    PSNR and SSIM in the mouth box (lip landmarks + 0.3 IOD), PSNR of the rest of the
    frame, and Pearson r of the re-tracked inner-lip opening with the real one.
(b) Dubbing: ``dub_video`` from the unseen part's own audio over the learned footage;
    r of the re-tracked lip opening with the real unseen mouth, against the loudness
    baseline (``eval.lipsync.loudness_baseline``).

    python pipelines/benchmark_person.py                     # learns (25 min budget) first
    python pipelines/benchmark_person.py --puppet obama15.puppet   # judge a learned person

Prints a table; writes a contact sheet real | neural | warp of the unseen part
(``--sheet``) and full-resolution mouth crops (``--crops``).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from skimage.metrics import structural_similarity

from puppetry.audio import SAMPLE_RATE, load_audio
from puppetry.eval.lipsync import best_lag_correlation, loudness_baseline, track_openings
from puppetry.face import mesh as M
from puppetry.face.tracker import FaceTracker
from puppetry.io import contact_sheet, read_video_frames, write_image
from puppetry.person import LearnConfig, dub_video, learn, load_person
from puppetry.person import crop as C
from puppetry.person.dub import WarpMouth
from puppetry.person.footage import track_footage
from puppetry.person.net import NetDims
from puppetry.person.train import progress_bar

VIDEO = "/work/shared/dev/videos/obama_weekly_address_2010.mp4"
LIPS = sorted(set(M.LIP_OUTER_UPPER + M.LIP_OUTER_LOWER + M.LIP_INNER_UPPER + M.LIP_INNER_LOWER))
MASK_PAD_IOD = 0.35      # the masked box: lip landmarks + this
SCORE_PAD_IOD = 0.3      # the scored mouth box: lip landmarks + this
FEATHER_IOD = 0.08       # Gaussian sigma of the masked box's edge


def lip_box(lm: np.ndarray, pad_iod: float, shape) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the lip landmarks padded by ``pad_iod`` IOD, clipped to the frame."""
    pad = pad_iod * M.interocular(lm)
    x0, y0 = lm[LIPS, :2].min(0) - pad
    x1, y1 = lm[LIPS, :2].max(0) + pad
    h, w = shape[:2]
    return (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))),
            min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))


def masked_frame(frame, lm, reference, ref_affine, affine) -> np.ndarray:
    """The frame with its lower-face box replaced (feathered) by the reference frame's
    lower face, aligned by the two frames' skull-point crop placements."""
    h, w = frame.shape[:2]
    ref_to_frame = np.vstack([C.invert(affine), [0, 0, 1]]) @ np.vstack([ref_affine, [0, 0, 1]])
    aligned = cv2.warpAffine(reference, ref_to_frame[:2], (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    x0, y0, x1, y1 = lip_box(lm, MASK_PAD_IOD, frame.shape)
    box = np.zeros((h, w), np.float32)
    box[y0:y1, x0:x1] = 1
    sigma = FEATHER_IOD * M.interocular(lm)
    alpha = cv2.GaussianBlur(box, (0, 0), sigma)[..., None]        # 0.5 on the box's edge
    return np.clip(frame * (1 - alpha) + aligned * alpha + 0.5, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def scores(made: list[np.ndarray], real: list[np.ndarray], lms: list[np.ndarray],
           real_open: np.ndarray) -> dict:
    """Mouth-box PSNR/SSIM, rest-of-frame PSNR (means over frames), re-tracked lip r."""
    mouth_p, mouth_s, rest = [], [], []
    for m, r, lm in zip(made, real, lms):
        x0, y0, x1, y1 = lip_box(lm, SCORE_PAD_IOD, r.shape)
        mouth_p.append(psnr(m[y0:y1, x0:x1], r[y0:y1, x0:x1]))
        mouth_s.append(structural_similarity(m[y0:y1, x0:x1], r[y0:y1, x0:x1], channel_axis=2,
                                             data_range=255))
        out = np.ones(r.shape[:2], bool)
        out[y0:y1, x0:x1] = False
        rest.append(psnr(m[out], r[out]))
    opening = track_openings(made, FaceTracker(static=False))
    r, lag = best_lag_correlation(opening, real_open)
    return {"mouth_psnr": np.mean(mouth_p), "mouth_ssim": np.mean(mouth_s),
            "rest_psnr": np.mean(rest), "lip_r": r, "lip_lag": lag}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=VIDEO)
    ap.add_argument("--learn-s", type=float, default=15.0, help="seconds learned from (the rest is judged)")
    ap.add_argument("--minutes", type=float, default=25.0, help="learn's time budget, minutes")
    ap.add_argument("--puppet", help="judge this .puppet (learned on the first --learn-s seconds) "
                    "instead of learning; with --more: where the one learned now is written")
    ap.add_argument("--more", help="learn on from this .puppet (same video and part) instead of from scratch")
    ap.add_argument("--lr", type=float, default=None, help="learning rate of the training (with --more: 5e-4)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--channels", help="network widths per level, e.g. 32,64,96 (default: NetDims')")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the training (default 2)")
    ap.add_argument("--texture", choices=("on", "off"), default=None,
                    help="the network sees the lower face it re-renders (default NetDims')")
    ap.add_argument("--flow", choices=("on", "off"), default=None,
                    help="the network moves the lower face it sees by a predicted flow (default NetDims')")
    ap.add_argument("--swap", type=float, default=None,
                    help="share of training samples whose context is another frame (default TrainConfig's)")
    ap.add_argument("--sheet", default="/tmp/puppetry_person_sheet.png")
    ap.add_argument("--crops", default="/tmp/person_mouths.png")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="benchmark_person_"))

    # 1. learn on the first part (or take a learned person)
    learn_min = float("nan")
    if args.puppet is None or args.more:
        args.puppet = args.puppet or str(scratch / "person.puppet")
        config = LearnConfig(minutes=args.minutes, until_s=args.learn_s, start=args.more)
        if args.more or args.lr:
            config = replace(config, train=replace(config.train, lr=args.lr or 5e-4))
        if args.channels:
            config = replace(config, dims=replace(config.dims, channels=tuple(int(c) for c in args.channels.split(","))))
        if args.texture is not None:
            config = replace(config, dims=replace(config.dims, texture=args.texture == "on"))
        if args.flow is not None:
            config = replace(config, dims=replace(config.dims, flow=args.flow == "on"))
        if args.threads:
            config = replace(config, train=replace(config.train, threads=args.threads))
        if args.swap is not None:
            config = replace(config, train=replace(config.train, swap=args.swap))
        meta = learn(args.video, args.puppet, config, device=args.device, progress=progress_bar())
        print(f"learned in {meta['seconds'] / 60:.1f} min ({meta['training']['before_s'] / 60:.1f} min "
              f"of training before); kept in {args.puppet}")
        learn_min = meta["seconds"] / 60
    person = load_person(args.puppet)
    if np.isnan(learn_min):
        learn_min = person.meta.get("seconds", float("nan")) / 60
    # 2. the unseen part: frames, landmarks, tracked motion fitted to the person's face
    all_frames = list(read_video_frames(args.video))
    fps = float(person.footage["fps"])
    first = int(round(args.learn_s * fps))
    real = all_frames[first:]
    unseen = track_footage(real, fps, person.crop, identity=person.identity)
    keep = np.flatnonzero(unseen.valid)
    real = [real[i] for i in keep]
    lms = [unseen.landmarks[i] for i in keep]
    real_open = unseen.opening[keep]
    # 3. masked footage, neural and warp reconstructions
    ref_affine = np.asarray(person.footage["affine"][person.reference_index], np.float64)
    masked = [masked_frame(real[k], lms[k], person.reference, ref_affine,
                           unseen.affine[i].astype(np.float64)) for k, i in enumerate(keep)]
    warp = WarpMouth(person)
    made = {"masked": masked}
    timing = {}
    for name, renderer in (("neural", person), ("warp", warp)):
        t = time.perf_counter()
        made[name] = [renderer.render_frame(masked[k], unseen.pose[i], unseen.affine[i],
                                            unseen.expression[i]) for k, i in enumerate(keep)]
        timing[name] = len(keep) / (time.perf_counter() - t)
    rows = {name: scores(frames, real, lms, real_open) for name, frames in made.items()}
    # 4. dub from the unseen part's own audio, over the learned footage
    audio = load_audio(args.video)[int(args.learn_s * SAMPLE_RATE):]
    wav = scratch / "unseen.wav"
    sf.write(wav, audio, SAMPLE_RATE)
    dubbed = scratch / "dub.mp4"
    stats = dub_video(args.puppet, wav, dubbed)
    dub_open = track_openings(read_video_frames(dubbed), FaceTracker(static=False))
    all_open = np.full(len(all_frames) - first, np.nan, np.float32)
    all_open[keep] = real_open
    all_open = np.interp(np.arange(len(all_open)), keep, real_open).astype(np.float32)
    n = min(len(dub_open), len(all_open))
    dub_r, dub_lag = best_lag_correlation(dub_open[:n], all_open[:n])
    loud_r, _ = best_lag_correlation(loudness_baseline(audio, n, fps), all_open[:n])
    # 5. the table
    print(f"\nperson benchmark: learned on {args.learn_s:.0f} s of {Path(args.video).name} "
          f"({person.meta['frames_used']} frames, network {person.net.dims.channels} "
          f"({person.net.n_params / 1e6:.2f} M parameters), {person.meta['training']['steps']} steps, "
          f"{learn_min:.1f} min to learn on {person.meta['training']['device']}, after "
          f"{person.meta['training'].get('before_s', 0) / 60:.1f} min of training before); judged on the "
          f"{len(keep)} unseen frames")
    print(f"| renderer | mouth PSNR (dB) | mouth SSIM | rest PSNR (dB) | lip-opening r (lag) | frames/s |")
    print(f"|---|---|---|---|---|---|")
    for name, s in rows.items():
        f = f"{timing[name]:.1f}" if name in timing else "-"
        print(f"| {name} | {s['mouth_psnr']:.2f} | {s['mouth_ssim']:.3f} | {s['rest_psnr']:.2f} | "
              f"{s['lip_r']:.3f} ({s['lip_lag']:+d}) | {f} |")
    print(f"\ndub from the unseen audio ({stats['duration_s']:.1f} s): lip-opening r {dub_r:.3f} "
          f"(lag {dub_lag:+d}); loudness baseline r {loud_r:.3f}; dub job {stats['total_s']:.1f} s "
          f"({stats['frames'] / stats['render_encode_s']:.1f} frames/s rendered and encoded, "
          f"{stats['total_s'] / stats['duration_s']:.2f} x real time)")
    # 6. look at it: contact sheet and full-resolution mouth crops
    picks = np.linspace(0, len(keep) - 1, 4).round().astype(int)
    tiles = [made_frames[k] for k in picks for made_frames in (real, made["neural"], made["warp"])]
    write_image(args.sheet, contact_sheet(tiles, cols=3, rows=4, tile=160,
                                          labels=["real", "neural", "warp"] * 4))
    crops = []
    for k in picks:
        x0, y0, x1, y1 = lip_box(lms[k], SCORE_PAD_IOD, real[k].shape)
        crops.append(np.concatenate([f[y0:y1, x0:x1] for f in (real[k], masked[k], made["neural"][k],
                                                               made["warp"][k])], 1))
    wmax = max(c.shape[1] for c in crops)
    write_image(args.crops, np.concatenate([np.pad(c, ((0, 2), (0, wmax - c.shape[1]), (0, 0)))
                                            for c in crops]))
    print(f"wrote {args.sheet} and {args.crops} (real | masked | neural | warp)")


if __name__ == "__main__":
    main()
