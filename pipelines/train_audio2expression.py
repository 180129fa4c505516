"""Train Audio2Expression on the synthetic speech corpus.

    bash pipelines/setup_training.sh                                   # speech engines
    python pipelines/make_speech_corpus.py --out data/speech --minutes 40 --seed 0
    python pipelines/train_audio2expression.py --out /tmp/a2e.pt      # the shipped recipe
    python pipelines/calibrate_lips.py --model /tmp/a2e.pt --out puppetry/assets/audio2expression.pt

The defaults are the shipped model's recipe (Whisper tiny.en features, 400 ms window,
lip-aperture loss, 4000 steps on one thread; its corpus: the command in its meta's
``recipe``, made before the corpus's flite pitches, colouring and ``--augment 1``); the
streaming model's is
``--features mel --normalize running --window-ms 400 --lookahead-ms 80 --filter-lookahead 1``.

1. Corpus: every utterance of the shards (clean ones and their stored noisy, reverberant,
   pitch-, tempo- and codec-augmented variants) with its 100 Hz ARKit targets. With
   ``--normalize running``, the per-band mean and std of the training voices' speech
   frames, stored in the model's dims as the prior of the causal normalisation.
2. Split by voice (engine + voice, any rate and pitch): a tenth of the voices never seen
   in training, for validation (never Piper's, which has only one).
3. Batches: random crops of ``--frames`` video frames. The utterance's audio gets a random
   gain (-12..+6 dB) and, half the time, white or pink noise (10..35 dB SNR); features of
   the whole utterance are normalised per band as at inference (``--normalize``:
   ``utterance`` = CMVN over it, offline only; ``running`` = causal CMVN from the corpus
   prior and the speech frames so far, :class:`~puppetry.expression.model.RunningNorm`,
   what a stream computes), half the time with a band and a time span masked
   (SpecAugment); windows per video frame (``--lookahead-ms`` of them after the frame's
   time; centred by default), targets sampled at the frame times.
4. Loss: L1 on the speech expressions + L1 on their frame-to-frame change (so the
   temporal filter learns timing, not only level) + extra weight on lip closures
   (scaled by ``--closure-weight``; + with ``--aperture``, L1 on the lip aperture
   jawOpen - mouthClose, up-weighted on closures likewise; on by default). The temporal
   filter blends ``--filter-lookahead`` frames after each frame (centred by default).
5. One training loop (AdamW, cosine schedule); validation on the held-out voices.
   ``--init CKPT`` starts from a trained checkpoint's weights instead (fine-tuning on a
   new corpus or loss in fewer steps, where the CPU is too busy for a run from scratch);
   ``--freeze-encoder`` keeps its window encoder and trains the layers after it on the
   encoder's outputs, computed once per feature frame. ``--device cuda`` trains on a GPU
   (not yet run on one: no GPU was lent when it was added).
6. Save: weights, ModelDims, the corpus recipe, this command, the commit and the
   validation losses, in one self-describing file.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from puppetry.audio import SAMPLE_RATE  # noqa: E402
from puppetry.expression.arkit import INDEX  # noqa: E402
from puppetry.expression.model import (NORM_LEVEL_FLOOR, NORM_LEVEL_RANGE, Audio2Expression,  # noqa: E402
                                       ModelDims, normalize_features)
from puppetry.features import load_features  # noqa: E402

FPS = 25.0
TARGET_RATE = 100          # corpus targets, frames/s
CLOSURE_NAMES = ("mouthClose", "mouthPressLeft", "mouthPressRight")
APERTURE_WEIGHT = 2.0      # weight of the lip-aperture term (jawOpen - mouthClose)


def load_corpus(folder: Path, outputs: tuple[str, ...]):
    """Utterances as (audio float32[N], targets float32[T x K] at 100 Hz, voice)."""
    cols = [INDEX[n] for n in outputs]
    items = []
    for shard in sorted(folder.glob("shard_*.npz")):
        z = np.load(shard)
        for i in range(len(z["voice"])):
            a = z["audio"][z["audio_offsets"][i]:z["audio_offsets"][i + 1]].astype(np.float32) / 32768
            t = z["targets"][z["target_offsets"][i]:z["target_offsets"][i + 1]][:, cols].astype(np.float32)
            if len(a) > SAMPLE_RATE // 2:                    # voice without rate and pitch
                items.append((a, t, str(z["voice"][i]).split("@")[0]))
    return items


PACK_S = 30.0              # s of audio per encoder call when packing (Whisper's window)
PACK_GAP_S = 0.4           # s of silence between packed utterances


def pack_utterances(lengths: list[int], voices: list[str], hop: int,
                    window: int = round(PACK_S * SAMPLE_RATE),
                    gap: int = round(PACK_GAP_S * SAMPLE_RATE)) -> list[list[tuple[int, int]]]:
    """Utterances packed into encoder windows: lists of (item index, start sample), one
    voice per window, starts on multiples of ``hop`` (so feature frames line up exactly),
    ``gap`` samples of silence between them, each window at most ``window`` samples (an
    utterance longer than that gets a window of its own)."""
    packs, by_voice = [], {}
    for i, v in enumerate(voices):
        by_voice.setdefault(v, []).append(i)
    for idx in by_voice.values():
        cur, pos = [], 0
        for i in idx:
            start = -(-pos // hop) * hop
            if cur and start + lengths[i] > window:
                packs.append(cur)
                cur, start = [], 0
            cur.append((i, start))
            pos = start + lengths[i] + gap
        packs.append(cur)
    return packs


def feature_cache(items, features, folder: Path) -> list[np.ndarray]:
    """Raw features of every utterance in ``items`` (float32[T_i x D] each), computed once
    and kept beside the corpus in ``folder/features_<name>.npy`` (+ ``.json``: the
    utterances' lengths, the extractor and the packing, so a changed corpus or extractor
    recomputes).

    A whole-utterance encoder (Whisper) costs one 30 s window per call whatever the audio's
    length: on this 2-core machine ~3 s each under load, over an hour for the corpus one
    utterance at a time. So one voice's utterances are packed into each window
    (:func:`pack_utterances`, 0.4 s of silence between them), as long audio is encoded at
    inference (30 s windows holding many sentences of one speaker), and each utterance's
    frames are cut out of it: ~7x fewer encoder calls. Extractors of frame-wise features
    (no packing needed) are run per utterance."""
    from puppetry.features import n_feature_frames

    stem, key = _cache_key(items, features, folder)
    hop = SAMPLE_RATE / features.rate
    if (found := cached_features(items, features, folder)) is not None:
        return found
    lengths = [len(a) for a, _, _ in items]
    packs = (pack_utterances(lengths, [v for *_, v in items], int(hop)) if key["packed"]
             else [[(i, 0)] for i in range(len(items))])
    out, t0 = [None] * len(items), time.time()
    for k, pack in enumerate(packs):
        audio = np.zeros(max(s + lengths[i] for i, s in pack), np.float32)
        for i, s in pack:
            audio[s:s + lengths[i]] = items[i][0]
        feats = np.asarray(features(audio), np.float32)
        for i, s in pack:
            a = round(s / hop)
            out[i] = feats[a:a + n_feature_frames(lengths[i], features.rate)].copy()
        if (k + 1) % 20 == 0:
            print(f"features: {k + 1}/{len(packs)} encoder calls ({time.time() - t0:.0f} s)", flush=True)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in out])]).tolist()
    tmp = stem.with_name(stem.name + ".tmp.npy")
    np.save(tmp, np.concatenate(out) if out else np.zeros((0, features.dim), np.float32))
    tmp.replace(stem.with_suffix(".npy"))
    stem.with_suffix(".json").write_text(json.dumps({"key": key, "offsets": offsets}))
    return out


def _cache_key(items, features, folder: Path) -> tuple[Path, dict]:
    stem = folder / f"features_{features.name.replace(':', '_').replace('/', '_')}"
    hop = SAMPLE_RATE / features.rate
    packed = features.name != "mel" and hop == int(hop)
    return stem, {"features": features.name, "dim": int(features.dim), "rate": float(features.rate),
                  "packed": [PACK_S, PACK_GAP_S] if packed else None,
                  "samples": [int(len(a)) for a, _, _ in items]}


def cached_features(items, features, folder: Path) -> list[np.ndarray] | None:
    """:func:`feature_cache`'s features of ``items`` if it has them on disk, else None
    (nothing is computed)."""
    stem, key = _cache_key(items, features, folder)
    index = stem.with_suffix(".json")
    if not index.exists() or json.loads(index.read_text()).get("key") != key:
        return None
    flat = np.load(stem.with_suffix(".npy"), mmap_mode="r")
    offsets = json.loads(index.read_text())["offsets"]
    return [np.asarray(flat[offsets[i]:offsets[i + 1]]) for i in range(len(items))]


class Batches:
    """Random crops -> (windows [B x T x W x D], targets [B x T x K]).

    ``cache``: the utterances' raw features, aligned with ``items`` (:func:`feature_cache`),
    or None to compute them on first use."""

    def __init__(self, items, features, dims: ModelDims, frames: int, rng: np.random.Generator,
                 cache: list[np.ndarray] | None = None):
        self.items, self.features, self.dims, self.frames, self.rng = items, features, dims, frames, rng
        self.cache = dict(enumerate(cache)) if cache is not None else {}  # un-augmented features
        self.table = None                    # encoder outputs per feature frame (encode_with)
        # gain and noise need features recomputed per crop: only for fast extractors (mel);
        # slow encoders (whisper) train on cached features and the corpus's stored variants
        self.audio_augment = features.name == "mel"

    def raw_features(self, i: int) -> np.ndarray:
        if i not in self.cache:
            self.cache[i] = self.features(self.items[i][0])
        return self.cache[i]

    @torch.no_grad()
    def encode_with(self, model: Audio2Expression, chunk: int = 2048) -> None:
        """With a frozen encoder: its output for the window around every feature frame of
        every utterance, computed once (float16[T_f x F] each); crops are then looked up
        in it and come out as [T x F] (augmentation of the encoder's input is off)."""
        w, before = self.dims.window, self.dims.window - 1 - self.dims.window_after
        self.table = []
        for i in range(len(self.items)):
            feats = normalize_features(np.array(self.raw_features(i)), self.dims)
            rows = []
            for a in range(0, len(feats), chunk):
                j = np.arange(a, min(len(feats), a + chunk))
                win = feats[np.clip(j[:, None] + np.arange(w)[None] - before, 0, len(feats) - 1)]
                device = next(model.parameters()).device
                rows.append(model.encode(torch.from_numpy(win)[None].to(device))[0].half().cpu().numpy())
            self.table.append(np.concatenate(rows))

    def crop(self, augment: bool):
        i = self.rng.integers(len(self.items))
        audio, targets, _ = self.items[i]
        if self.table is not None:                  # frozen encoder: its outputs, looked up
            dur = len(audio) / SAMPLE_RATE
            t0 = self.rng.uniform(0, max(0.0, dur - self.frames / FPS))
            times = t0 + np.arange(self.frames) / FPS
            idx = np.floor(times * self.dims.feature_rate + 0.5).astype(int)
            enc = self.table[i][np.clip(idx, 0, len(self.table[i]) - 1)].astype(np.float32)
            tgt = targets[np.clip(np.round(times * TARGET_RATE).astype(int), 0, len(targets) - 1)]
            return enc, tgt
        # features of the whole (augmented) utterance, normalised over it as at inference
        if augment and self.audio_augment:
            audio = audio * np.float32(10 ** (self.rng.uniform(-12, 6) / 20))
            if self.rng.random() < 0.5:
                noise = self.rng.standard_normal(len(audio)).astype(np.float32)
                if self.rng.random() < 0.5:                          # pink-ish: integrate a little
                    noise = np.convolve(noise, np.ones(8, np.float32) / 8, mode="same")
                snr = self.rng.uniform(10, 35)
                p_sig = float(np.mean(audio ** 2)) + 1e-9
                noise *= math.sqrt(p_sig / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr / 10))
                audio = audio + noise
            audio = np.clip(audio, -1, 1)
            feats = self.features(audio)
        else:
            feats = self.raw_features(i)
        feats = normalize_features(np.array(feats), self.dims)      # a copy: the cache stays raw
        if augment and self.rng.random() < 0.5:                      # SpecAugment-style masks
            feats = feats.copy()
            b = self.rng.integers(0, feats.shape[1] - 8)
            feats[:, b:b + self.rng.integers(1, 8)] = 0.0
            t = self.rng.integers(0, len(feats))
            feats[t:t + self.rng.integers(1, 6)] = 0.0
        # a crop of video frames at t0 + i / FPS
        dur = len(audio) / SAMPLE_RATE
        t0 = self.rng.uniform(0, max(0.0, dur - self.frames / FPS))
        times = t0 + np.arange(self.frames) / FPS
        w = self.dims.window
        idx = np.floor(times * self.dims.feature_rate + 0.5).astype(int)
        win = feats[np.clip(idx[:, None] + np.arange(w)[None] - (w - 1 - self.dims.window_after),
                            0, len(feats) - 1)]
        tgt = targets[np.clip(np.round(times * TARGET_RATE).astype(int), 0, len(targets) - 1)]
        return win, tgt

    def __call__(self, batch: int, augment: bool = True):
        xs, ys = zip(*(self.crop(augment) for _ in range(batch)))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def loss_fn(pred, target, closure_cols, aperture=None, closure_weight=1.0):
    """L1 + velocity L1 + closure-weighted L1 (+ lip-aperture L1 when ``aperture`` gives
    (jawOpen column, mouthClose column): what a viewer sees is how far the lips part).

    Frames whose *target* is a lip closure get extra weight ``closed`` (the target's
    largest of mouthClose / mouthPress, 0 on open frames). ``closure_weight`` scales it:
    the closure term is ``closure_weight * mean(|error| * closed)`` and the aperture term
    is weighted ``1 + (closure_weight - 1) * closed`` per frame. 1.0 is the original loss."""
    err = (pred - target).abs()
    l1 = err.mean()
    vel = ((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs().mean()
    closed = target[..., closure_cols].amax(-1, keepdim=True)               # (B, T, 1)
    closure = (err * closed).mean()
    loss = l1 + 0.5 * vel + closure_weight * closure
    if aperture is not None:
        jaw, close = aperture
        gap = lambda x: x[..., jaw] - x[..., close]
        frame_w = 1.0 + (closure_weight - 1.0) * closed[..., 0]              # (B, T)
        loss = loss + APERTURE_WEIGHT * ((gap(pred) - gap(target)).abs() * frame_w).mean()
    return loss


def held_out_voices(voices) -> set[str]:
    """The validation voices: a tenth of the corpus's voices (at least one), drawn with a
    fixed seed whatever ``--seed`` is, never Piper's (it has only one). The same split
    every time for the same corpus, so other pipelines (``calibrate_lips.py``) can find
    the voices a model never heard."""
    voices = sorted(set(voices))
    candidates = [v for v in voices if not v.startswith("piper:")]   # Piper has one voice: keep it
    return set(np.random.default_rng(1).choice(candidates, max(1, len(voices) // 10), replace=False).tolist())


def corpus_prior(items, features) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std of the speech frames of ``items``' clean features (the frames
    RunningNorm counts: loud enough, and within range of the utterance's loudest)."""
    total, total2, count = 0.0, 0.0, 0
    for audio, _, _ in items:
        f = features(audio).astype(np.float64)                       # (T, D)
        level = f.mean(1)
        f = f[(level > NORM_LEVEL_FLOOR) & (level > np.maximum.accumulate(level) - NORM_LEVEL_RANGE)]
        total, total2, count = total + f.sum(0), total2 + (f * f).sum(0), count + len(f)
    mean = total / count
    std = np.sqrt(np.maximum(total2 / count - mean ** 2, 1e-8))
    return tuple(round(float(x), 5) for x in mean), tuple(round(float(x), 5) for x in std)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/speech"))
    ap.add_argument("--out", type=Path, default=Path("puppetry/assets/audio2expression.pt"))
    ap.add_argument("--features", default="whisper",
                    help="feature extractor (puppetry.features.load_features): whisper, mel, ...")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--frames", type=int, default=40, help="video frames per crop")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--normalize", choices=("utterance", "running", "none"), default="utterance",
                    help="feature normalisation: CMVN over the utterance (offline only), causal "
                         "CMVN with a corpus prior (streamable), or none")
    ap.add_argument("--aperture", action=argparse.BooleanOptionalAction, default=True,
                    help="the lip-aperture loss term (jawOpen - mouthClose)")
    ap.add_argument("--window-ms", type=float, default=400.0, help="feature window per video frame")
    ap.add_argument("--lookahead-ms", type=float, default=None,
                    help="window after the frame's time (default: half the window, centred)")
    ap.add_argument("--filter-lookahead", type=int, default=None,
                    help="temporal-filter frames after each frame (default: half, centred)")
    ap.add_argument("--closure-weight", type=float, default=1.0,
                    help="scale of the extra loss weight on frames whose target is a lip "
                         "closure (mouthClose / mouthPress; 1 = the shipped models' loss)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this checkpoint's weights (fine-tuning: its features, "
                         "window, look-ahead and outputs must be the ones asked for)")
    ap.add_argument("--device", default="cpu",
                    help="torch device to train on (cpu, cuda): the features stay on the CPU")
    ap.add_argument("--freeze-encoder", action="store_true",
                    help="with --init: keep its window encoder and train only the latent, "
                         "expression and temporal-filter layers (the encoder's outputs are "
                         "computed once: steps cost milliseconds)")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    # 1. corpus and features
    features = load_features(args.features)
    dims = replace(ModelDims(), features=features.name, feature_dim=features.dim,
                   feature_rate=float(features.rate),
                   window=max(1, round(args.window_ms / 1000 * features.rate)),
                   lookahead=None if args.lookahead_ms is None else round(args.lookahead_ms / 1000 * features.rate),
                   filter_lookahead=args.filter_lookahead,
                   normalize={"utterance": True, "running": "running", "none": False}[args.normalize])
    items = load_corpus(args.data, dims.outputs)
    recipe = json.loads((args.data / "recipe.json").read_text())
    # 2. split by voice
    voices = sorted({v for *_, v in items})
    held = held_out_voices(voices)
    train = [it for it in items if it[2] not in held]
    val = [it for it in items if it[2] in held]
    print(f"{len(items)} utterances ({len(train)} train, {len(val)} val), {len(voices)} voices, "
          f"features {features.name} ({features.dim} x {features.rate:g} Hz)", flush=True)
    if dims.normalize == "running":
        mean, std = corpus_prior(train, features)
        dims = replace(dims, norm_mean=mean, norm_std=std)
    print(f"look-ahead {dims.window_after} feature frames + {dims.filter_after} filter frames "
          f"= {dims.lookahead_s * 1000:.0f} ms (+ the features' own)", flush=True)
    # slow encoders train on cached features of the stored utterances (Batches.audio_augment)
    cache = None if features.name == "mel" else feature_cache(items, features, args.data)
    split = lambda keep: None if cache is None else [f for f, it in zip(cache, items) if keep(it[2])]
    train_b = Batches(train, features, dims, args.frames, rng, split(lambda v: v not in held))
    val_b = Batches(val, features, dims, args.frames, np.random.default_rng(2), split(lambda v: v in held))
    val_set = [val_b(args.batch, augment=False) for _ in range(8)]
    closure_cols = [dims.outputs.index(n) for n in CLOSURE_NAMES]
    aperture = (dims.outputs.index("jawOpen"), dims.outputs.index("mouthClose")) if args.aperture else None

    # 3.-5. train
    model, init = Audio2Expression(dims), None
    if args.init is not None:
        start = Audio2Expression.load(args.init)
        mismatch = {k for k in ("features", "feature_dim", "window", "window_after", "filter_size",
                                "filter_after", "outputs", "hidden", "latent", "normalize")
                    if getattr(start.dims, k) != getattr(dims, k)}
        if mismatch:
            raise SystemExit(f"--init {args.init} differs from the model asked for in "
                             f"{', '.join(sorted(mismatch))}: pass the options it was trained with")
        model.load_state_dict(start.state_dict())
        init = {"path": str(args.init), "command": start.meta.get("command"),
                "train_args": start.meta.get("train_args"), "recipe": start.meta.get("recipe"),
                "commit": start.meta.get("commit")}
        print(f"starting from {args.init}", flush=True)
    model.to(args.device)
    if args.freeze_encoder:
        if args.init is None:
            raise SystemExit("--freeze-encoder needs --init (a trained encoder to keep)")
        model.encoder.requires_grad_(False)
        t1 = time.time()
        train_b.encode_with(model)
        val_b.encode_with(model)
        val_set = [val_b(args.batch, augment=False) for _ in range(8)]
        print(f"encoder outputs of every feature frame: {time.time() - t1:.0f} s", flush=True)
    predict = (lambda x: model.blend(*model.head(x))) if args.freeze_encoder else model
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                            weight_decay=1e-4)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / args.steps))))
    history, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        model.train()
        x, y = (t.to(args.device) for t in train_b(args.batch))
        loss = loss_fn(predict(x), y, closure_cols, aperture, args.closure_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                val_dev = [(vx.to(args.device), vy.to(args.device)) for vx, vy in val_set]
                vl = float(np.mean([loss_fn(predict(vx), vy, closure_cols, aperture, args.closure_weight).item()
                                    for vx, vy in val_dev]))
                mae = float(np.mean([(predict(vx) - vy).abs().mean().item() for vx, vy in val_dev]))
            history.append({"step": step, "train_loss": round(loss.item(), 4), "val_loss": round(vl, 4),
                            "val_mae": round(mae, 4)})
            print(f"step {step}: train {loss.item():.4f}  val {vl:.4f}  val MAE {mae:.4f}  "
                  f"({time.time() - t0:.0f} s)", flush=True)

    # 6. save, self-describing
    model.cpu()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    model.save(tmp, recipe=recipe, command=" ".join(sys.argv), commit=git_commit(), init=init,
               train_args={k: str(v) for k, v in vars(args).items()}, history=history,
               voices={"train": len(voices) - len(held), "validation": len(held)})
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
