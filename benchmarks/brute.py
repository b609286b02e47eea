"""Exact near-duplicate ground truth by brute force: numpy XOR + np.bitwise_count, blocked, on threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(a ids, b ids, distances) of ordered pairs: both (a, b) and (b, a) are listed."""


def _concat(parts: list[Pairs]) -> Pairs:
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.uint8)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def all_pairs(hashes: np.ndarray, threshold: int, threads: int = 2, block: int = 128) -> Pairs:
    """Every ordered pair (i, j), i != j, with popcount(h[i] ^ h[j]) <= threshold.

    Row blocks of the upper triangle run on ``threads`` threads (numpy drops the GIL in its loops);
    each block holds ``block x n`` uint64 XORs (100 MB at block 128, n 100k).
    """
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = h.shape[0]

    def work(i0: int) -> Pairs:
        i1 = min(i0 + block, n)
        dist = np.bitwise_count(h[i0:i1, None] ^ h[None, i0:])
        rows, cols = np.nonzero(dist <= threshold)
        d = dist[rows, cols]
        keep = cols > rows  # strictly above the diagonal; the block's columns start at i0
        a, b = rows[keep] + i0, cols[keep] + i0
        return a.astype(np.int64), b.astype(np.int64), d[keep]

    with ThreadPoolExecutor(threads) as pool:
        a, b, d = _concat(list(pool.map(work, range(0, n, block))))
    return np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([d, d])


def query_pairs(
    hashes: np.ndarray, queries: np.ndarray, threshold: int, threads: int = 2, block: int = 16
) -> Pairs:
    """Every ordered pair (q, j), q in ``queries``, j != q, within ``threshold`` (queries against all hashes)."""
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    q = np.asarray(queries, dtype=np.int64)

    def work(start: int) -> Pairs:
        ids = q[start : start + block]
        dist = np.bitwise_count(h[ids][:, None] ^ h[None, :])
        rows, cols = np.nonzero(dist <= threshold)
        a = ids[rows]
        keep = cols != a
        return a[keep], cols[keep].astype(np.int64), dist[rows, cols][keep]

    with ThreadPoolExecutor(threads) as pool:
        return _concat(list(pool.map(work, range(0, q.shape[0], block))))


def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 per ordered pair of ids < 2^31 (for set comparisons)."""
    return (a.astype(np.int64) << 32) | b.astype(np.int64)


def recall_precision(found: np.ndarray, truth: np.ndarray) -> tuple[float, float, int]:
    """(recall, precision, true positives) of ``found`` pair keys against ``truth`` pair keys."""
    found, truth = np.unique(found), np.unique(truth)
    hits = int(np.intersect1d(found, truth, assume_unique=True).shape[0])
    recall = hits / truth.shape[0] if truth.shape[0] else 1.0
    precision = hits / found.shape[0] if found.shape[0] else 1.0
    return recall, precision, hits
