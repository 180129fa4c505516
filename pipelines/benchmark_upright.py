"""Benchmark the upright check of ``load_portrait`` (issue 13): photos turned by 0/90/180/270
degrees, and mirrored, must come back upright.

    python pipelines/benchmark_upright.py [--held-out-only]

Two photo sets, read in place (never copied into the repository):

- tuning: the 15 hard photos of ``benchmark_photos.photo_set`` (the detector scores of
  these, in four turns, chose ``UPRIGHT_MARGIN`` and ``UPRIGHT_SURE``);
- held out: frames of the dev videos at 20/50/80 % of their length, never looked at while
  tuning, and each of them and of the tuning photos mirrored (EXIF orientations 2, 4, 5
  and 7 turn a mirrored photo).

For each photo and turn: ``detect_upright_face`` must return the turn that undoes it, and
the face it returns must be upright (re-tracked: chin-to-forehead line within 30 degrees of
vertical). Prints one row per set and the misses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_photos import DEV, photo_set  # noqa: E402

from puppetry.face.tracker import FaceNotFoundError, detect_upright_face  # noqa: E402

WORK_PX = 1280     # as load_portrait searches a large photo


def video_frames() -> dict[str, np.ndarray]:
    """name -> RGB frame at 20/50/80 % of each dev video."""
    out = {}
    for video in sorted((DEV / "videos").glob("*.mp4")):
        cap = cv2.VideoCapture(str(video))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for share in (0.2, 0.5, 0.8):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(share * n))
            ok, bgr = cap.read()
            if ok:
                out[f"{video.stem[:12]}@{int(share * 100)}%"] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        cap.release()
    return out


def roll(face) -> float:
    """Degrees between the chin-to-forehead line and the image's up."""
    up = face.landmarks[10, :2] - face.landmarks[152, :2]
    return float(np.degrees(np.arctan2(up[0], -up[1])))


def run(photos: dict[str, np.ndarray]) -> tuple[int, int, list[str], float]:
    right = total = 0
    misses, t0 = [], time.perf_counter()
    for name, rgb in photos.items():
        k = min(1.0, WORK_PX / max(rgb.shape[:2]))
        if k < 1:
            rgb = cv2.resize(rgb, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        for turn in range(4):
            total += 1
            try:
                turns, face = detect_upright_face(np.ascontiguousarray(np.rot90(rgb, turn)), name)
            except FaceNotFoundError:
                misses.append(f"{name} turned {90 * turn}: no face")
                continue
            ok = (turn + turns) % 4 == 0 and abs(roll(face)) < 30
            right += ok
            if not ok:
                misses.append(f"{name} turned {90 * turn}: undone by {90 * turns}, roll {roll(face):.0f}")
    return right, total, misses, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out-only", action="store_true")
    args = ap.parse_args()
    import warnings
    warnings.simplefilter("ignore")
    tuning = {} if args.held_out_only else photo_set()
    held = video_frames()
    held.update({f"{n} mirrored": np.ascontiguousarray(rgb[:, ::-1]) for n, rgb in list(held.items())})
    held.update({f"{n} mirrored": np.ascontiguousarray(rgb[:, ::-1]) for n, rgb in tuning.items()})
    print(f"{'set':<10}{'photos':>8}{'cases':>8}{'upright':>9}{'ms/case':>9}")
    all_misses = []
    for label, photos in (("tuning", tuning), ("held out", held)):
        if not photos:
            continue
        right, total, misses, seconds = run(photos)
        print(f"{label:<10}{len(photos):>8}{total:>8}{right:>9}{1000 * seconds / total:>9.0f}")
        all_misses += misses
    for m in all_misses:
        print("  miss:", m)


if __name__ == "__main__":
    main()
