"""Synthetic clustered unit vectors shaped like face embeddings: many identities, each a noisy cloud."""

from __future__ import annotations

import numpy as np


def clustered_vectors(
    n: int, dim: int, *, clusters: int | None = None, spread: float = 0.9, seed: int = 0
) -> np.ndarray:
    """``n`` L2-normalised float32 vectors of ``dim`` around ``clusters`` random centres.

    ``spread`` is the noise scale relative to a centre (both drawn per coordinate from N(0, 1)): at
    0.9 a vector's nearest neighbours are mostly, not only, its own cluster's, which is what makes
    approximate search have to work (tight clusters make any IVF look perfect). Built in blocks so a
    million 512-d vectors need no more than the result's memory.
    """
    rng = np.random.default_rng(seed)
    clusters = clusters or max(1, n // 20)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    block = 65_536
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = centres[rng.integers(0, clusters, stop - start)]
        rows += spread * rng.standard_normal((stop - start, dim), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        out[start:stop] = rows
    return out
