"""Perceptual hashes of sample pictures and the registry that keeps distinct contents far apart."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn

from jobs.core.imaging import phash as phash64

# Distances are measured with two pHashes: ingest's own 64-bit one (jobs.core.imaging.phash, DC
# included) and the 63-bit variant without the DC term that readers such as the tests use.
# Distinct contents are kept at least 14 apart, leaving slack for a reader whose pHash differs a
# little (resize filter, DC bit) to still see them > 10 apart; near-dups stay well inside 10.
DISTINCT_MIN_DISTANCE = 14
NEAR_DUP_MAX_DISTANCE = 6

Hashes = tuple[int, int]


def _phash63(img: Image.Image) -> int:
    # Not in jobs.core.imaging: ingest never drops the DC term, but the generator's accept/retry
    # decisions (and so the bytes of a drop) are defined over both variants.
    grey = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    ac = dctn(grey, type=2, norm="ortho")[:8, :8].ravel()[1:]
    return int.from_bytes(np.packbits(ac > np.median(ac)).tobytes(), "big")


def phash_pair(img: Image.Image) -> Hashes:
    """(63-bit pHash without DC, jobs.core.imaging's 64-bit pHash) of ``img`` as integers."""
    return _phash63(img), int(phash64(img), 16)


def hamming(x: Hashes, y: Hashes) -> int:
    """The larger of the two hashes' Hamming distances."""
    return max((x[0] ^ y[0]).bit_count(), (x[1] ^ y[1]).bit_count())


class HashRegistry:
    """Every distinct ingestible content's pHashes, to keep new content far from all of it."""

    def __init__(self) -> None:
        self._a = np.zeros(1024, dtype=np.uint64)
        self._b = np.zeros(1024, dtype=np.uint64)
        self._group = np.zeros(1024, dtype=np.int64)
        self._size = 0

    def min_distance(self, hashes: Hashes, exclude_group: int | None = None) -> int:
        """Closest registered content to ``hashes`` by either hash, ignoring ``exclude_group``."""
        if self._size == 0:
            return 64
        a = np.bitwise_count(self._a[: self._size] ^ np.uint64(hashes[0]))
        b = np.bitwise_count(self._b[: self._size] ^ np.uint64(hashes[1]))
        d = np.minimum(a, b).astype(np.int64)
        if exclude_group is not None:
            d[self._group[: self._size] == exclude_group] = 64
        return int(d.min())

    def add(self, hashes: Hashes, group: int) -> None:
        if self._size == len(self._a):
            self._a = np.concatenate([self._a, np.zeros_like(self._a)])
            self._b = np.concatenate([self._b, np.zeros_like(self._b)])
            self._group = np.concatenate([self._group, np.zeros_like(self._group)])
        self._a[self._size] = hashes[0]
        self._b[self._size] = hashes[1]
        self._group[self._size] = group
        self._size += 1
