"""Build ``puppetry/assets/face_model.npz``: mesh triangles, canonical face, mirror map.

    python pipelines/make_face_model.py

1. Triangles: the 3-cliques of MediaPipe's FACEMESH_TESSELATION edges, less the two
   cliques that are not faces (every edge of a real face belongs to at most two faces).
2. Canonical neutral shape: scikit-image's astronaut photo (public domain, NASA), tracked
   with Face Mesh, expressed in the head frame, made left-right symmetric.
3. Mirror map: the one-to-one matching of vertices to their mirror images.
"""
import collections
import itertools
from pathlib import Path

import numpy as np
import skimage.data
from scipy.optimize import linear_sum_assignment
from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

from puppetry.face.mesh import head_frame
from puppetry.face.tracker import detect_face

OUT = Path(__file__).resolve().parents[1] / "puppetry" / "assets" / "face_model.npz"


def triangles() -> np.ndarray:
    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    nbr = collections.defaultdict(set)
    for a, b in edges:
        nbr[a].add(b)
        nbr[b].add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in edges for c in nbr[a] & nbr[b]}
    uses = collections.Counter(e for t in tris for e in itertools.combinations(t, 2))
    real = [t for t in tris if not all(uses[e] == 3 for e in itertools.combinations(t, 2))]
    return np.array(sorted(real), np.int32)


def main():
    tris = triangles()
    face = detect_face(skimage.data.astronaut(), "astronaut")
    pts = head_frame(face.landmarks).to_head(face.landmarks[:468].astype(np.float64))
    mirrored = pts * [-1, 1, 1]
    cost = ((pts[:, None] - mirrored[None]) ** 2).sum(-1)
    mirror = linear_sum_assignment(cost)[1]          # one-to-one: an involution
    canonical = (pts + mirrored[mirror]) / 2   # symmetric: average with the mirror image
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, triangles=tris, canonical=canonical.astype(np.float32),
                        mirror=mirror.astype(np.int32))
    print(f"{OUT}: {len(tris)} triangles, mirror fixed points {(mirror == np.arange(468)).sum()}, "
          f"mirror is an involution for {(mirror[mirror] == np.arange(468)).mean():.0%} of vertices")


if __name__ == "__main__":
    main()
