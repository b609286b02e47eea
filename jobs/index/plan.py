"""Which FAISS index a build gets, how faces map to shards and FAISS ids: pure functions, no Spark, no FAISS."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

METRIC = "inner_product"
"""Embeddings are L2-normalised, so inner product is cosine similarity and the score users see."""

DEFAULT_MEMORY_BUDGET = 4 * 1024**3
DEFAULT_EXACT_BELOW = 50_000
"""Below this many vectors an exact (Flat) index is both fast enough and trivially at recall 1."""
DEFAULT_RECALL_TARGET = 0.95
DEFAULT_VECTORS_PER_SHARD = 2_000_000
"""With ``--shards auto``: one shard per this many vectors (a shard must fit one worker's memory)."""
ID_BYTES = 8
FAISS_ID_HEX = 15
"""FAISS ids are the first 60 bits of sha256(face_id): positive int64, the same in every build, so an
erasure can compute the ids to remove from face ids alone."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(text: str | int) -> int:
    """``"4G"``, ``"512m"``, ``"1.5GiB"`` or a plain number of bytes -> bytes (binary units)."""
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise ValueError(f"memory size {str(text)[:20]!r} is not like 4G, 512M or 1073741824")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise ValueError("memory size must be positive")
    return value


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def faiss_id(face_id: str) -> int:
    """The FAISS id of a face: 60 bits of sha256(face_id), equal to ``faiss_id_col`` in Spark."""
    return int(hashlib.sha256(face_id.encode("utf-8")).hexdigest()[:FAISS_ID_HEX], 16)


def shard_of(face_id: str, n_shards: int) -> int:
    """The shard a face belongs to in an ``n_shards`` build (stable across builds of that size)."""
    return faiss_id(face_id) % n_shards


def shard_count(n_vectors: int, configured: int | str, per_shard: int = DEFAULT_VECTORS_PER_SHARD) -> int:
    """``configured`` shards, or with ``"auto"`` one per ``per_shard`` vectors (at least 1)."""
    if str(configured).strip().lower() == "auto":
        return max(1, math.ceil(n_vectors / per_shard))
    count = int(configured)
    if count < 1:
        raise ValueError(f"shard count must be >= 1 or 'auto', got {count}")
    return count


@dataclass(frozen=True)
class IndexPlan:
    """The index every shard of a build gets: one factory string, trained once, shared by all shards."""

    factory: str
    dim: int
    nlist: int
    """Inverted lists (0 for an exact index)."""
    codes: str
    """Flat, SQfp16, SQ8 or PQ<m>: how each vector is stored."""
    bytes_per_vector: int
    train_size: int
    """Vectors sampled to train the quantizer (0 for an exact index)."""
    estimated_bytes: int
    """Memory to hold every shard for search (codes + ids + centroids)."""
    memory_budget: int

    @property
    def exact(self) -> bool:
        return self.nlist == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def code_options(dim: int) -> list[tuple[str, int]]:
    """(codes, bytes per vector) from most to least accurate; PQ sub-quantizers must divide ``dim``."""
    options = [("Flat", 4 * dim), ("SQfp16", 2 * dim), ("SQ8", dim)]
    options += [(f"PQ{m}", m) for m in (64, 48, 32, 16, 8) if m < dim and dim % m == 0]
    return options


def nlist_for(vectors_per_shard: int) -> int:
    """A power of two near 4·sqrt(n): ~n/nlist vectors per list keeps both k-means and scans cheap."""
    target = 4.0 * math.sqrt(max(1, vectors_per_shard))
    return int(min(65536, max(16, 2 ** round(math.log2(target)))))


def plan_index(
    n_vectors: int,
    dim: int,
    n_shards: int,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    exact_below: int = DEFAULT_EXACT_BELOW,
) -> IndexPlan:
    """Pick the index for ``n_vectors`` of ``dim`` in ``n_shards`` shards within ``memory_budget`` bytes.

    Exact ``IDMap2,Flat`` below ``exact_below`` vectors (if it fits); otherwise IVF with the most
    accurate codes that fit: Flat, then SQfp16, SQ8, PQ. Never HNSW: FAISS's HNSW cannot ``remove_ids``,
    and an erasure must remove vectors from every retained build. Raises when even the smallest codes
    do not fit, naming the budget that would.
    """
    if dim < 1:
        raise ValueError(f"embedding dimension must be positive, got {dim}")
    per_vector_flat = 4 * dim + ID_BYTES
    # IVF needs ~39 training points per list and at least 16 lists: fewer vectors are searched exactly.
    too_few_to_train = n_vectors < 39 * 16
    if (n_vectors < exact_below or too_few_to_train) and n_vectors * per_vector_flat <= memory_budget:
        return IndexPlan(
            "IDMap2,Flat", dim, 0, "Flat", 4 * dim, 0, n_vectors * per_vector_flat, memory_budget
        )
    nlist = nlist_for(math.ceil(n_vectors / max(1, n_shards)))
    while nlist > 16 and 39 * nlist > n_vectors:
        nlist //= 2
    centroids = nlist * dim * 4
    smallest = None
    for codes, code_bytes in code_options(dim):
        estimated = n_vectors * (code_bytes + ID_BYTES) + centroids * max(1, n_shards)
        smallest = estimated
        if estimated <= memory_budget:
            # k-means wants >= 39 points per centroid; PQ's 256 codewords per sub-quantizer want 39*256.
            floor = 39 * nlist if not codes.startswith("PQ") else max(39 * nlist, 39 * 256)
            train = min(n_vectors, max(floor, min(64 * nlist, 131_072)))
            return IndexPlan(
                f"IVF{nlist},{codes}", dim, nlist, codes, code_bytes, train, estimated, memory_budget
            )
    raise ValueError(
        f"{n_vectors} vectors of dim {dim} do not fit a memory budget of {human_bytes(memory_budget)}: "
        f"the smallest codes need {human_bytes(smallest or 0)}; raise --memory-budget or add shards"
    )


def nprobe_grid(nlist: int) -> list[int]:
    """nprobe values to measure recall and latency at: powers of two up to nlist/2.

    Beyond half the lists an IVF scan costs as much as the exact index would; a build that needs more
    is recorded below its recall target (and its gate fails) rather than silently exhaustive.
    """
    if not nlist:
        return [0]
    grid, p = [], 1
    while p <= max(1, nlist // 2):
        grid.append(p)
        p *= 2
    return grid


def choose_nprobe(curve: list[dict[str, float]], target: float) -> dict[str, Any]:
    """The cheapest curve point (by nprobe) whose recall@10 reaches ``target``, else the best one."""
    if not curve:
        return {}
    reaching = [p for p in curve if p["recall_at_10"] >= target]
    best = (
        min(reaching, key=lambda p: p["nprobe"]) if reaching else max(curve, key=lambda p: p["recall_at_10"])
    )
    return dict(best)
