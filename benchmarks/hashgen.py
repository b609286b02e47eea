"""Benchmark pHash sets: synthetic clustered 64-bit hashes shaped like real pHashes, and real ones from a sample drop.

Synthetic generator (``clustered_hashes``), documented in RESULTS.md:

* A DCT pHash sets a bit where a coefficient exceeds the median of the 64, so exactly 32 of the
  64 bits are set and distances between two hashes are always even. The generator keeps that:
  every base is a uniformly random 64-bit value with popcount 32.
* ``variant_fraction`` of the hashes are near-duplicate variants of a base (the rest are bases).
  A variant turns ``d/2`` set bits off and ``d/2`` clear bits on (popcount stays 32), ``d`` drawn
  uniformly from ``VARIANT_DISTANCES`` = 2, 4, …, 12: at threshold 8 two thirds of the variants are
  true near duplicates of their base and one third are near misses the exact filter must reject.
  Variants of one base are also near one another (distance up to 24).
* Each variant's base is drawn uniformly (cluster sizes ~ 1 + Poisson(f / (1 - f))), or with
  ``zipf > 0`` with probability proportional to rank^-zipf (a few heavily re-posted images).
* Ids are positions after a random shuffle, so clusters are not contiguous and any prefix of the
  set is a uniform subsample with the same shape.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks.common import BENCH_DIR

VARIANT_DISTANCES = (2, 4, 6, 8, 10, 12)
_CHUNK = 100_000


@dataclass(frozen=True)
class HashSet:
    """Hashes indexed by id (uint64), with each variant's base id (-1 for a base) and its flip distance."""

    hashes: np.ndarray
    parent: np.ndarray
    flips: np.ndarray
    description: str

    @property
    def n(self) -> int:
        return int(self.hashes.shape[0])


def pack(bits: np.ndarray) -> np.ndarray:
    """(m, 64) bools, column i = bit i -> m uint64."""
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel().astype(np.uint64)


def unpack(values: np.ndarray) -> np.ndarray:
    """m uint64 -> (m, 64) bools, column i = bit i."""
    as_bytes = values.astype("<u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1, bitorder="little").astype(bool)


def balanced_random(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uniformly random 64-bit values with exactly 32 bits set."""
    out = np.empty(count, dtype=np.uint64)
    for start in range(0, count, _CHUNK):
        m = min(_CHUNK, count - start)
        chosen = np.argsort(rng.random((m, 64)), axis=1)[:, :32]
        bits = np.zeros((m, 64), dtype=bool)
        np.put_along_axis(bits, chosen, True, axis=1)
        out[start : start + m] = pack(bits)
    return out


def flip_balanced(rng: np.random.Generator, values: np.ndarray, distance: int) -> np.ndarray:
    """Each value with ``distance/2`` random set bits cleared and as many clear bits set."""
    k = distance // 2
    out = np.empty_like(values)
    for start in range(0, values.shape[0], _CHUNK):
        bits = unpack(values[start : start + _CHUNK])
        keys = rng.random(bits.shape)
        ones = np.argsort(np.where(bits, keys, 2.0), axis=1)[:, :k]
        zeros = np.argsort(np.where(bits, 2.0, keys), axis=1)[:, :k]
        np.put_along_axis(bits, ones, False, axis=1)
        np.put_along_axis(bits, zeros, True, axis=1)
        out[start : start + bits.shape[0]] = pack(bits)
    return out


def clustered_hashes(n: int, seed: int = 0, variant_fraction: float = 0.3, zipf: float = 0.0) -> HashSet:
    """``n`` synthetic pHashes: balanced random bases plus near-duplicate variants (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_var = round(n * variant_fraction)
    n_base = n - n_var
    base = balanced_random(rng, n_base)
    if zipf > 0:
        weights = 1.0 / np.arange(1, n_base + 1, dtype=np.float64) ** zipf
        parent = rng.choice(n_base, size=n_var, p=weights / weights.sum())
    else:
        parent = rng.integers(0, n_base, size=n_var)
    dist = rng.choice(np.array(VARIANT_DISTANCES), size=n_var)
    variants = np.empty(n_var, dtype=np.uint64)
    for d in VARIANT_DISTANCES:
        idx = np.nonzero(dist == d)[0]
        variants[idx] = flip_balanced(rng, base[parent[idx]], d)
    shape = "uniform bases" if zipf <= 0 else f"bases drawn with Zipf exponent {zipf}"
    return shuffled_with_copies(
        rng,
        base,
        variants,
        parent,
        dist,
        f"synthetic: {n:,} hashes, popcount 32, {variant_fraction:.0%} variants at even distance "
        f"{VARIANT_DISTANCES[0]}–{VARIANT_DISTANCES[-1]} from their base ({shape}), seed {seed}",
    )


def shuffled_with_copies(
    rng: np.random.Generator,
    base: np.ndarray,
    copies: np.ndarray,
    parent: np.ndarray,
    dist: np.ndarray,
    description: str,
) -> HashSet:
    """Bases then copies (``copies[i]`` is ``base[parent[i]]`` at ``dist[i]`` flips), in one random order."""
    n_base, n = base.shape[0], base.shape[0] + copies.shape[0]
    values = np.concatenate([base, copies])
    parents = np.concatenate([np.full(n_base, -1, dtype=np.int64), parent.astype(np.int64)])
    flips = np.concatenate([np.zeros(n_base, dtype=np.int8), dist.astype(np.int8)])
    perm = rng.permutation(n)
    new_id = np.empty(n, dtype=np.int64)
    new_id[perm] = np.arange(n)
    old_parent = parents[perm]
    return HashSet(
        hashes=values[perm],
        parent=np.where(old_parent >= 0, new_id[np.maximum(old_parent, 0)], -1),
        flips=flips[perm],
        description=description,
    )


def _phash_of(job: tuple[str, str, int, int]) -> tuple[str, str] | None:
    from jobs.core.imaging import decode_image

    root, rel, max_bytes, max_pixels = job
    try:
        data = Path(root, rel).read_bytes()
    except OSError:
        return None
    decoded = decode_image(data, max_bytes, max_pixels)
    return (decoded.sha256, decoded.phash) if decoded.ok and decoded.sha256 and decoded.phash else None


def drop_hashes(n: int, seed: int = 0, processes: int = 2) -> HashSet:
    """The pHash (jobs.core.imaging) of every distinct decodable image of the sample drop of ``n`` lines (cached)."""
    from benchmarks.ingest import answer_key_summary, ensure_drop

    cache = BENCH_DIR / f"phash-drop-n{n}-seed{seed}.json"
    if not cache.is_file():
        drop = ensure_drop(n, seed)
        limits = answer_key_summary(drop)["limits"]
        files = sorted(str(p.relative_to(drop)) for p in (drop / "images").rglob("*") if p.is_file())
        print(f"[bench] hashing {len(files):,} files of {drop}", file=sys.stderr, flush=True)
        jobs = [
            (str(drop), f, limits["byte_limit_for_tests"], limits["pixel_limit_for_tests"]) for f in files
        ]
        with get_context("fork").Pool(processes) as pool:
            found = dict(r for r in pool.imap_unordered(_phash_of, jobs, chunksize=64) if r)
        cache.write_text(json.dumps(dict(sorted(found.items()))))
    by_sha = json.loads(cache.read_text())
    values = np.array([int(h, 16) for h in by_sha.values()], dtype=np.uint64)
    return HashSet(
        hashes=values,
        parent=np.full(values.shape[0], -1, dtype=np.int64),
        flips=np.zeros(values.shape[0], dtype=np.int8),
        description=(
            f"real: jobs.core.imaging pHash of the {values.shape[0]:,} distinct decodable images of the "
            f"sample drop n={n} seed={seed}"
        ),
    )
