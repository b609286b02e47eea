"""FAISS mechanics, free of Spark: train, fill a shard, search, merge shards' top-k, measure recall@k."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.index.plan import IndexPlan, choose_nprobe, nprobe_grid

K = 10


def _faiss():
    import faiss

    return faiss


def as_matrix(vectors: Any, dim: int) -> np.ndarray:
    """A C-contiguous float32 (n, dim) matrix from arrays, lists or a pandas column of arrays."""
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        matrix = vectors
    else:
        rows = list(vectors)
        matrix = np.stack([np.asarray(r, dtype=np.float32) for r in rows]) if rows else np.empty((0, dim))
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.shape[1:] != (dim,):
        raise ValueError(f"vectors have shape {matrix.shape[1:]}, expected ({dim},)")
    return matrix


def train_template(plan: IndexPlan, sample: np.ndarray, seed: int = 1234) -> Any:
    """An empty, trained index of ``plan``; every shard starts as a copy of it (same centroids)."""
    faiss = _faiss()
    index = faiss.index_factory(plan.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        if len(sample) < plan.nlist:
            raise ValueError(f"{len(sample)} training vectors for {plan.nlist} lists")
        ivf = faiss.extract_index_ivf(index)
        # Fewer k-means iterations than FAISS's 25: centroids settle within ~10 on embeddings,
        # and nprobe is tuned on the result anyway.
        ivf.cp.niter = 10
        ivf.cp.seed = seed
        index.train(as_matrix(sample, plan.dim))
    return index


def to_bytes(index: Any) -> bytes:
    return _faiss().serialize_index(index).tobytes()


def from_bytes(data: bytes) -> Any:
    return _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))


def fill_shard(
    base: Any, add_ids: np.ndarray, add_vectors: np.ndarray, remove_ids: Iterable[int] = ()
) -> Any:
    """``base`` (an empty template or a previous build's shard) minus ``remove_ids`` plus the new vectors."""
    remove = np.fromiter(remove_ids, dtype=np.int64)
    if remove.size:
        base.remove_ids(remove)
    if len(add_ids):
        base.add_with_ids(as_matrix(add_vectors, base.d), np.asarray(add_ids, dtype=np.int64))
    return base


def set_search_params(index: Any, params: dict[str, Any]) -> None:
    if params.get("nprobe"):
        _faiss().extract_index_ivf(index).nprobe = int(params["nprobe"])


def search(index: Any, queries: np.ndarray, k: int, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (len(queries), k); missing neighbours have id -1 and score -inf."""
    n = len(queries)
    if index.ntotal == 0 or n == 0:
        return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
    set_search_params(index, params)
    scores, ids = index.search(as_matrix(queries, index.d), k)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return scores, ids


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-shard (scores, ids) -> the overall top-k per query, best first (ties broken by id)."""
    if not parts:
        raise ValueError("no shard results to merge")
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def exact_topk(
    ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product: the ground truth recall is measured against.

    ``faiss.knn`` scans ``vectors`` where they lie: no index, so no second copy of a shard in memory.
    """
    n = len(queries)
    if not len(ids) or not n:
        return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
    faiss = _faiss()
    matrix = as_matrix(vectors, queries.shape[1])
    scores, rows = faiss.knn(
        as_matrix(queries, matrix.shape[1]), matrix, k, metric=faiss.METRIC_INNER_PRODUCT
    )
    found = np.where(rows < 0, -1, np.asarray(ids, dtype=np.int64)[np.clip(rows, 0, None)])
    return np.where(found < 0, -np.inf, scores).astype(np.float32), found


def drop_self(ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """Each row's neighbours without the query's own id, cut to k (queries are indexed vectors)."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for row, (found, own) in enumerate(zip(ids, query_ids, strict=True)):
        kept = found[found != own][:k]
        out[row, : len(kept)] = kept
    return out


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = K) -> float:
    """Mean share of each query's exact top-k (valid ids only) that the approximate top-k found."""
    hits = total = 0
    for a, e in zip(approx, exact, strict=True):
        truth = set(e[:k][e[:k] >= 0].tolist())
        hits += len(truth & set(a[:k].tolist()))
        total += len(truth)
    return hits / total if total else 1.0


@dataclass
class ShardProbe:
    """One shard's answers to the recall queries: exact, and approximate at each nprobe, with timings."""

    exact: tuple[np.ndarray, np.ndarray]
    approx: dict[int, tuple[np.ndarray, np.ndarray]]
    seconds: dict[int, float]


def probe_shard(
    index: Any, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, grid: Sequence[int], k: int = K
) -> ShardProbe:
    """Answer the recall queries on one shard, exactly and at every nprobe of ``grid`` (k+1: self drops)."""
    exact = exact_topk(ids, vectors, queries, k + 1)
    approx: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    seconds: dict[int, float] = {}
    for nprobe in grid:
        started = time.perf_counter()
        approx[nprobe] = search(index, queries, k + 1, {"nprobe": nprobe} if nprobe else {})
        seconds[nprobe] = time.perf_counter() - started
    return ShardProbe(exact, approx, seconds)


def recall_curve(probes: Sequence[ShardProbe], query_ids: np.ndarray, k: int = K) -> list[dict[str, float]]:
    """Merge every shard's answers: recall@k and ms/query (summed over shards) at each nprobe."""
    if not probes or not len(query_ids):
        return []
    truth = drop_self(merge_topk([p.exact for p in probes], k + 1)[1], query_ids, k)
    curve = []
    for nprobe in probes[0].approx:
        merged = merge_topk([p.approx[nprobe] for p in probes], k + 1)[1]
        recall = recall_at_k(drop_self(merged, query_ids, k), truth, k)
        ms = 1000.0 * sum(p.seconds[nprobe] for p in probes) / len(query_ids)
        curve.append({"nprobe": int(nprobe), "recall_at_10": round(recall, 4), "ms_per_query": round(ms, 4)})
    return curve


def sample_rows(n: int, size: int, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """``size`` distinct row numbers out of ``n`` (sorted), none of ``exclude``: reproducible samples."""
    pool = np.arange(n) if exclude is None else np.setdiff1d(np.arange(n), exclude)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(size, len(pool)), replace=False))


def _rows_of(
    shard: int, shard_of_row: np.ndarray, ids: np.ndarray, vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One shard's ids and vectors; the arrays themselves (no copy) when the shard holds every row."""
    mask = shard_of_row == shard
    if mask.all():
        return ids, vectors
    return ids[mask], vectors[mask]


@dataclass
class LocalBuild:
    """A build made in one process (``build_in_memory``): what the Spark job makes, minus the lake."""

    plan: IndexPlan
    shards: list[Any]
    curve: list[dict[str, float]]
    search_params: dict[str, Any]
    seconds: dict[str, float]


def build_in_memory(
    ids: np.ndarray,
    vectors: np.ndarray,
    plan: IndexPlan,
    shard_of_row: np.ndarray,
    n_shards: int,
    recall_target: float,
    queries: int = 1000,
    seed: int = 7,
) -> LocalBuild:
    """Train, fill every shard, measure recall and pick nprobe: the Spark build's steps in one process.

    Recall queries are ``queries`` indexed vectors held out of the training sample; each query's own
    id is dropped from both answers, so recall is measured on its true neighbours.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    query_rows = sample_rows(len(ids), queries, seed)
    train_rows = sample_rows(len(ids), plan.train_size, seed + 1, exclude=query_rows)
    template = train_template(plan, vectors[train_rows])
    seconds["train"] = time.perf_counter() - started
    started = time.perf_counter()
    blob = to_bytes(template)
    shards = []
    for shard in range(n_shards):
        shard_ids, shard_vectors = _rows_of(shard, shard_of_row, ids, vectors)
        shards.append(fill_shard(from_bytes(blob), shard_ids, shard_vectors))
    seconds["add"] = time.perf_counter() - started
    started = time.perf_counter()
    grid = nprobe_grid(plan.nlist)
    probes = []
    for shard, index in enumerate(shards):
        shard_ids, shard_vectors = _rows_of(shard, shard_of_row, ids, vectors)
        probes.append(probe_shard(index, shard_ids, shard_vectors, vectors[query_rows], grid))
    curve = recall_curve(probes, ids[query_rows])
    chosen = choose_nprobe(curve, recall_target)
    seconds["measure"] = time.perf_counter() - started
    params = {"nprobe": chosen["nprobe"]} if chosen.get("nprobe") else {}
    return LocalBuild(plan, shards, curve, params, seconds)
