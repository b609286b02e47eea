"""Near duplicates at scale and on real faces (issue #12): figures to size the 20-billion-image case from.

Three stages, each with its reference in the same run:

1. **Candidate stage on synthetic 64-bit hashes** (``--sizes``, default 100k and 1M) at radius 12:
   uniformly random hashes plus a planted fraction of near copies (each a copy of a random base hash
   with ``d`` distinct bits flipped, ``d`` uniform on 1..12). Measured: ``jobs.ingest.dedupe.
   near_duplicate_pairs`` on Spark (a ladder of sizes while the predicted time fits a budget, the rest
   extrapolated from the measured join rows per second) and FAISS's binary multi-index hashing on one
   machine (``IndexBinaryMultiHash`` / ``IndexBinaryHash`` + ``range_search``; all n queries up to
   ``--full-max``, a seeded sample of queries above it, extrapolated per query). Exact truth: numpy
   all pairs up to ``--full-max``, numpy for the sampled queries above. Join key rows are counted
   exactly in numpy from the band plan (checked once against Spark's own count); distinct candidate
   pairs per image are counted for the sampled queries. A random-model table projects the same
   quantities to ``--project-n`` (default 2e10) hashes for radii 4..12.
2. **lfw-dev photos** (all of them): probe hashes per photo, candidate pairs under the ``probe_spaces``
   rule at radius 12 (numpy pairwise popcount, checked against ``candidate_distance`` on a sample),
   the banding join rows of the pHash alone and of the probe rows (as ``dedupe.candidate_pairs`` joins
   them, and with a key on one side), ``verify_pair`` on every candidate pair (or a seeded sample),
   every verified pair listed by file.
3. **Per-transform recall**: ``--recall-photos`` seeded lfw-dev photos, every ``jobs.testdata.copies``
   transform of each; a copy is found when ``candidate_distance <= radius`` and ``verify_pair`` matches.

Stages 2 and 3 run in ``--threads`` spawned worker processes with OpenCV on one thread each, so the
milliseconds per call are single-core figures.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.brute import Pairs, all_pairs, pair_keys, query_pairs, recall_precision
from benchmarks.common import (
    BENCH_DIR,
    PROJECT_ROOT,
    Phase,
    Recorder,
    add_spark_arguments,
    command_line,
    facelake_config,
    machine,
    markdown_table,
    save_result,
    spark_facts,
)
from benchmarks.hashgen import HashSet, shuffled_with_copies
from jobs.testdata.lfw import LFW_DIR

MAX_PIXELS = 50_000_000  # FacelakeConfig.max_image_pixels
STAGES = ("spark", "faiss", "lfw", "recall")
WARMUP_N = 10_000


# --------------------------------------------------------------------------------------------- API


def neardup_api() -> SimpleNamespace:
    """The product's near-duplicate functions the benchmark times (imported when a stage runs)."""
    from jobs.core import imaging, neardup

    return SimpleNamespace(
        probe_hashes=imaging.probe_hashes,
        candidate_distance=imaging.candidate_distance,
        verify_pair=neardup.verify_pair,
        probe_spaces=imaging.probe_spaces,
    )


# ------------------------------------------------------------------------------ synthetic hashes


def planted_hashes(n: int, seed: int, fraction: float, radius: int) -> HashSet:
    """``n`` uniformly random 64-bit hashes, ``fraction`` of them copies of another at distance 1..radius."""
    rng = np.random.default_rng(seed)
    n_copy = round(n * fraction)
    n_base = n - n_copy
    base = rng.integers(0, np.iinfo(np.uint64).max, size=n_base, dtype=np.uint64, endpoint=True)
    parent = rng.integers(0, n_base, size=n_copy)
    dist = rng.integers(1, radius + 1, size=n_copy)
    masks = np.zeros(n_copy, dtype=np.uint64)
    for start in range(0, n_copy, 100_000):
        m = min(100_000, n_copy - start)
        order = np.argsort(rng.random((m, 64)), axis=1)  # a random permutation of the 64 bit positions
        chosen = order < dist[start : start + m, None]  # the first d positions of it
        masks[start : start + m] = np.packbits(chosen, axis=1, bitorder="little").view("<u8").ravel()
    return shuffled_with_copies(
        rng,
        base,
        base[parent] ^ masks,
        parent,
        dist,
        f"{n:,} uniformly random 64-bit hashes, {fraction:.0%} of them copies of a random other at "
        f"d distinct flipped bits, d uniform on 1..{radius}, seed {seed}",
    )


def planted_pairs(hs: HashSet) -> Pairs:
    """Every (copy, base) pair, both orders, with its distance."""
    child = np.nonzero(hs.parent >= 0)[0]
    base = hs.parent[child]
    d = hs.flips[child].astype(np.uint8)
    return np.concatenate([child, base]), np.concatenate([base, child]), np.concatenate([d, d])


def restrict(pairs: Pairs, queries: np.ndarray | None) -> Pairs:
    """The pairs whose first id is a query (all of them when ``queries`` is None)."""
    if queries is None:
        return pairs
    keep = np.isin(pairs[0], queries)
    return pairs[0][keep], pairs[1][keep], pairs[2][keep]


def recall_of(found: Pairs, truth: Pairs) -> float:
    return recall_precision(pair_keys(found[0], found[1]), pair_keys(truth[0], truth[1]))[0]


# ------------------------------------------------------------------------ banding join, counted


def _band_values(h: np.ndarray, offset: int, width: int) -> np.ndarray:
    return ((h >> np.uint64(offset)) & np.uint64((1 << width) - 1)).astype(np.int64)


def _key_counts(hashes: np.ndarray, offset: int, width: int) -> np.ndarray:
    """Per band key: how many hashes emit it (their band value or one of its 1-bit neighbours)."""
    direct = np.bincount(_band_values(hashes, offset, width), minlength=1 << width)
    idx = np.arange(1 << width)
    keys = direct.copy()
    for bit in range(width):
        keys += direct[idx ^ (1 << bit)]
    return keys.astype(np.int64)


def join_rows(hashes: np.ndarray, plan: Any) -> int:
    """Rows of the self-join on (band, band_key) of jobs.ingest.dedupe.band_keys, self matches included.

    Per band the key multiset is each hash's band value and its 1-bit neighbours; rows = sum over keys
    of count^2 (``benchmarks.dedupe_variants.jobs_candidate_count`` counts the same with Spark).
    """
    return sum(int(np.dot(c, c)) for c in (_key_counts(hashes, o, w) for o, w in plan.bands))


def probe_join_rows(probes: list[Any], probe_spaces: Any, plan: Any) -> dict[str, int]:
    """Rows of the banding self-join over ``probe_spaces`` rows, self matches included.

    ``as_joined``: every row of a space meets every row on a shared band key and the key condition is
    applied after the join (as ``jobs.ingest.dedupe.candidate_pairs`` does); ``with_a_key``: only row
    pairs of which at least one is a key (what the rule needs).
    """
    by_space: dict[tuple[str, bool], list[int]] = {}
    for p in probes:
        for space, h, is_key in probe_spaces(p):
            by_space.setdefault((space, is_key), []).append(int(h, 16))
    as_joined = with_a_key = 0
    for space in {s for s, _ in by_space}:
        k = np.array(by_space.get((space, True), []), dtype=np.uint64)
        q = np.array(by_space.get((space, False), []), dtype=np.uint64)
        for offset, width in plan.bands:
            ck, cq = _key_counts(k, offset, width), _key_counts(q, offset, width)
            as_joined += int(np.dot(ck + cq, ck + cq))
            with_a_key += int(np.dot(ck, ck) + 2 * np.dot(ck, cq))
    return {"as_joined": as_joined, "with_a_key": with_a_key}


def candidate_counts(hashes: np.ndarray, plan: Any, queries: np.ndarray, block: int = 8) -> np.ndarray:
    """Per query: the other hashes it meets on some key of the banding join (a band within 2 bits)."""
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    out = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        q = queries[start : start + block]
        x = h[q][:, None] ^ h[None, :]
        meet = np.zeros(x.shape, dtype=bool)
        for offset, width in plan.bands:
            meet |= np.bitwise_count((x >> np.uint64(offset)) & np.uint64((1 << width) - 1)) <= 2
        out[start : start + q.shape[0]] = meet.sum(axis=1) - 1  # not itself
    return out


def random_model(plan: Any, radius: int) -> dict[str, float]:
    """Per ordered pair of independent uniform hashes: P(within radius), P(candidate), expected join rows."""
    p_within = sum(math.comb(64, k) for k in range(radius + 1)) / 2.0**64
    miss, rows = 1.0, 0.0
    for _, w in plan.bands:
        p_band = (1 + w + math.comb(w, 2)) / 2.0**w
        miss *= 1 - p_band
        rows += ((1 + w) + 2 * w + 2 * math.comb(w, 2)) / 2.0**w
    return {"p_within_radius": p_within, "p_candidate": 1 - miss, "rows_per_pair": rows}


def projection_table(radius: int, big: float) -> str:
    """The random model of the banding join at ``big`` hashes, for a few radii (pure arithmetic)."""
    from jobs.ingest.dedupe import band_plan

    rows = []
    for r in sorted({4, 6, 8, 10, 12, radius}):
        p = band_plan(r)
        model = random_model(p, r)
        widths = sorted({w for _, w in p.bands})
        rows.append(
            [
                r,
                f"{len(p.bands)} x {'/'.join(map(str, widths))} bits",
                p.keys_per_hash,
                f"{model['p_within_radius']:.3g}",
                f"{model['p_within_radius'] * big:,.3g}",
                f"{model['p_candidate']:.3g}",
                f"{model['p_candidate'] * big:,.3g}",
                f"{model['rows_per_pair'] * big:,.3g}",
            ]
        )
    head = (
        f"Random model at N = {big:,.0f} (independent uniform 64-bit hashes; per image, against all N):\n\n"
    )
    return head + markdown_table(
        [
            "radius",
            "band plan",
            "keys per hash",
            "P(d <= r) per pair",
            "true neighbours per image",
            "P(banding candidate)",
            "banding candidates per image",
            "join rows per image",
        ],
        rows,
    )


# ----------------------------------------------------------------------------------------- FAISS


def parse_faiss_spec(spec: str) -> dict[str, Any]:
    """``multi:NHASHxB:NFLIP`` or ``hash:B:NFLIP``."""
    kind, shape, nflip = spec.split(":")
    if kind == "multi":
        nhash, b = (int(v) for v in shape.split("x"))
        return {"spec": spec, "kind": kind, "nhash": nhash, "b": b, "nflip": int(nflip)}
    if kind == "hash":
        return {"spec": spec, "kind": kind, "nhash": 1, "b": int(shape), "nflip": int(nflip)}
    raise ValueError(f"unknown FAISS spec {spec!r} (multi:NHASHxB:NFLIP or hash:B:NFLIP)")


def faiss_label(cfg: dict[str, Any], radius: int) -> str:
    if cfg["kind"] == "multi":
        exact = cfg["nhash"] * cfg["b"] <= 64 and cfg["nflip"] >= radius // cfg["nhash"]
        name = f"IndexBinaryMultiHash(64, {cfg['nhash']}, {cfg['b']}), nflip={cfg['nflip']}"
    else:
        exact = cfg["nflip"] >= radius
        name = f"IndexBinaryHash(64, {cfg['b']}), nflip={cfg['nflip']}"
    return name + (" — exact by pigeonhole" if exact else " — approximate")


def faiss_run(
    hs: HashSet, cfg: dict[str, Any], queries: np.ndarray | None, radius: int, rec: Recorder, tag: str
) -> dict[str, Any]:
    """Build the index on all n hashes, range-search the queries (all n when None); pairs exclude self."""
    import faiss

    codes = np.ascontiguousarray(hs.hashes, dtype=np.uint64).view(np.uint8).reshape(hs.n, 8)
    with rec.phase(f"faiss build {cfg['spec']} n={hs.n:,}") as build:
        if cfg["kind"] == "multi":
            index = faiss.IndexBinaryMultiHash(64, cfg["nhash"], cfg["b"])
        else:
            index = faiss.IndexBinaryHash(64, cfg["b"])
        index.nflip = cfg["nflip"]
        index.add(codes)
    qids = np.arange(hs.n) if queries is None else queries
    stats = faiss.cvar.indexBinaryHash_stats
    stats.reset()
    # FAISS binary range_search keeps distances strictly below the radius it is given.
    with rec.phase(f"faiss range_search {cfg['spec']} {tag}") as search:
        lims, _dist, ids = index.range_search(codes[qids], radius + 1)
    counts = np.diff(lims.astype(np.int64))
    a = np.repeat(qids.astype(np.int64), counts)
    b = ids.astype(np.int64)
    keep = a != b
    a, b = a[keep], b[keep]
    d = np.bitwise_count(hs.hashes[a] ^ hs.hashes[b]).astype(np.uint8)
    per_query = search.seconds / qids.shape[0]
    return {
        **cfg,
        "label": faiss_label(cfg, radius),
        "n": hs.n,
        "queries": int(qids.shape[0]),
        "build": build,
        "search": search,
        "search_seconds_per_query": per_query,
        "self_join_seconds": build.seconds + per_query * hs.n,
        "self_join_measured": queries is None,
        "candidates_per_query": stats.ndis / max(stats.nq, 1),
        "buckets_probed_per_query": (stats.nlist + stats.n0) / max(stats.nq, 1),
        "nonempty_buckets_per_query": stats.nlist / max(stats.nq, 1),
        "pairs": (a, b, d),
    }


# ----------------------------------------------------------------------------------------- Spark


def spark_stage(
    args: argparse.Namespace, data: dict[int, dict[str, Any]], plan: Any, rec: Recorder, info: dict[str, Any]
) -> list[dict[str, Any]]:
    """jobs.ingest.dedupe.near_duplicate_pairs self-join on a ladder of sizes while the prediction fits the budget."""
    from benchmarks.dedupe_variants import jobs_candidate_count
    from benchmarks.neardup import read_pairs, write_input
    from jobs.core.runs import configure_logging
    from jobs.ingest.dedupe import near_duplicate_pairs
    from jobs.lake.session import get_spark

    config = facelake_config(args)
    parts = args.parts or config.shuffle_partitions
    configure_logging("WARNING")
    with rec.phase("spark session start"):
        spark = get_spark(config, "facelake-bench-neardup-scale")
    info["spark"] = spark_facts(spark)
    info["spark"]["input_files"] = parts
    warm = planted_hashes(WARMUP_N, args.seed + 99, args.planted_fraction, args.radius)
    wdf = spark.read.parquet(write_input(warm, f"scale-warm{WARMUP_N}", parts))
    with rec.phase(f"spark warm-up ({WARMUP_N:,} hashes, not counted)"):
        near_duplicate_pairs(wdf, wdf, args.radius).count()
    runs: list[dict[str, Any]] = []
    spent, last = 0.0, None  # last: the largest measured run
    for n in sorted(set(args.spark_ladder) | set(args.sizes)):
        d = data[n]
        if last is not None:
            rate = last["seconds"] / last["join_rows"]
            predicted = d["join_rows"] * rate
            if spent + predicted > args.spark_budget:
                exponent = last.get("exponent", 2.0)
                runs.append(
                    {
                        "n": n,
                        "measured": False,
                        "seconds": predicted,
                        "basis": f"{d['join_rows']:,} join rows x {rate * 1e9:.1f} ns/row measured at "
                        f"n={last['n']:,}",
                        "exponent_seconds": last["seconds"] * (n / last["n"]) ** exponent,
                        "cpu_seconds": d["join_rows"] * last["phase"].cpu_seconds / last["join_rows"],
                        "exponent": exponent,
                        "join_rows": d["join_rows"],
                    }
                )
                continue
        hs = d["hs"]
        tag = f"scale{n}-s{args.seed}-f{args.planted_fraction}"
        df = spark.read.parquet(write_input(hs, tag, parts))
        out = str(BENCH_DIR / "out" / f"pairs-{tag}-r{args.radius}")
        with rec.phase(f"spark near_duplicate_pairs n={n:,}") as ph:
            near_duplicate_pairs(df, df, args.radius).write.mode("overwrite").parquet(out)
        spent += ph.seconds
        run: dict[str, Any] = {"n": n, "measured": True, "seconds": ph.seconds, "phase": ph}
        run["join_rows"] = d["join_rows"]
        if not runs and not args.skip_row_check:
            with rec.phase(f"spark jobs_candidate_count n={n:,} (check of the numpy row count)") as cph:
                spark_rows = jobs_candidate_count(df, df, args.radius)
            run["spark_join_rows"] = spark_rows
            run["count_phase"] = cph
        found = read_pairs(out)
        run["pairs"] = int(found[0].shape[0])
        run["recall_exact"] = recall_of(restrict(found, d["queries"]), d["truth"])
        run["precision_exact"] = recall_precision(
            pair_keys(*restrict(found, d["queries"])[:2]), pair_keys(*d["truth"][:2])
        )[1]
        run["recall_planted"] = recall_of(found, d["planted"])
        if last is not None:
            run["exponent"] = math.log(ph.seconds / last["seconds"]) / math.log(n / last["n"])
        run["ns_per_join_row"] = ph.seconds / d["join_rows"] * 1e9
        run["cpu_ns_per_join_row"] = ph.cpu_seconds / d["join_rows"] * 1e9
        runs.append(run)
        last = run
    spark.stop()
    return runs


# -------------------------------------------------------------------------------------- lfw-dev


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


@functools.lru_cache(maxsize=1500)
def _rgb(path: str) -> np.ndarray:
    from jobs.core.imaging import load_rgb

    return load_rgb(Path(path).read_bytes(), MAX_PIXELS)


def _probe_one(path: str) -> tuple[Any, float, float, float]:
    from PIL import Image

    from jobs.core.imaging import load_rgb

    api = neardup_api()
    t0 = time.perf_counter()
    rgb = load_rgb(Path(path).read_bytes(), MAX_PIXELS)
    t1, c1 = time.perf_counter(), time.process_time()
    probes = api.probe_hashes(Image.fromarray(rgb))
    t2, c2 = time.perf_counter(), time.process_time()
    return probes, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (c2 - c1) * 1e3


def _verify_one(job: tuple[str, str]) -> tuple[bool, float, int, str, bool, float, float, float, float]:
    """verify_pair's verdict fields, then its wall and CPU milliseconds (OpenCV on one thread)."""
    api = neardup_api()
    a, b = _rgb(job[0]), _rgb(job[1])
    t0, c0 = time.perf_counter(), time.process_time()
    v = api.verify_pair(a, b)
    ms, cpu_ms = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
    return v.matched, v.score, v.inliers, v.reason, v.mirrored, v.scale, v.rotation_deg, ms, cpu_ms


def _pool(threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(threads, mp_context=get_context("spawn"), initializer=_worker_init)


def probe_matrix(probes: list[Any], probe_spaces: Any) -> dict[str, np.ndarray]:
    """Pairwise minimum distances (uint8, n x n) under the ``probe_spaces`` rule, per pairing kind and overall.

    Within a space, a key of one image meets a key or a query of the other (queries never meet queries),
    which is what ``candidate_distance`` computes; kinds are "<space without its number> key-key|key-query".
    """
    layout = [(space, is_key) for space, _, is_key in probe_spaces(probes[0])]
    table = []
    for p in probes:
        rows = probe_spaces(p)
        if [(space, is_key) for space, _, is_key in rows] != layout:
            raise ValueError("photos differ in their probe_spaces layout")
        table.append([int(h, 16) for _, h, _ in rows])
    h = np.array(table, dtype=np.uint64)
    out: dict[str, np.ndarray] = {}

    def merge(kind: str, d: np.ndarray) -> None:
        if kind in out:
            np.minimum(out[kind], d, out=out[kind])
        else:
            out[kind] = d.astype(np.uint8)

    spaces: dict[str, list[tuple[int, bool]]] = {}
    for col, (space, is_key) in enumerate(layout):
        spaces.setdefault(space, []).append((col, is_key))
    for space, cols in spaces.items():
        kind = space.rstrip("0123456789")
        keys = [c for c, is_key in cols if is_key]
        queries = [c for c, is_key in cols if not is_key]
        for ka in keys:
            for kb in keys:
                merge(f"{kind} key-key", np.bitwise_count(h[:, ka][:, None] ^ h[None, :, kb]))
            for q in queries:
                d = np.bitwise_count(h[:, ka][:, None] ^ h[None, :, q])
                merge(f"{kind} key-query", np.minimum(d, d.T))
    best = None
    for d in out.values():
        best = d.copy() if best is None else np.minimum(best, d)
    out["best"] = best
    return out


def lfw_stage(args: argparse.Namespace, files: list[Path], rec: Recorder) -> dict[str, Any]:
    from jobs.ingest.dedupe import band_plan

    api = neardup_api()
    paths = [str(f) for f in files]
    n = len(paths)
    total0 = time.perf_counter()
    with (
        rec.phase(f"lfw probes ({n:,} photos, {args.threads} processes)") as probe_phase,
        _pool(args.threads) as pool,
    ):
        results = list(pool.map(_probe_one, paths, chunksize=32))
    probes = [r[0] for r in results]
    decode_ms = np.array([r[1] for r in results])
    probe_ms = np.array([r[2] for r in results])
    probe_cpu_ms = np.array([r[3] for r in results])
    with rec.phase("lfw pairwise probe_spaces distances (numpy)") as pair_phase:
        m = probe_matrix(probes, api.probe_spaces)
    iu = np.triu_indices(n, 1)
    best = m["best"][iu]
    cand = np.nonzero(best <= args.radius)[0]
    ca, cb = iu[0][cand], iu[1][cand]
    # The numpy matrix must agree with the reference rule: check it on candidates and random pairs.
    rng = np.random.default_rng(args.seed)
    check = np.concatenate([cand[:500], rng.choice(best.shape[0], size=1500, replace=False)])
    mismatches = sum(
        int(api.candidate_distance(probes[iu[0][k]], probes[iu[1][k]]) != best[k]) for k in check
    )
    by_kind = {kind: int(np.count_nonzero(m[kind][iu] <= args.radius)) for kind in m if kind != "best"}
    hist = np.bincount(best[cand], minlength=args.radius + 1).tolist()
    order = np.arange(cand.shape[0])
    if args.verify_max and cand.shape[0] > args.verify_max:
        order = np.sort(rng.choice(cand.shape[0], size=args.verify_max, replace=False))
    jobs = [(paths[ca[k]], paths[cb[k]]) for k in order]
    with (
        rec.phase(f"lfw verify_pair on {len(jobs):,} candidate pairs ({args.threads} processes)") as vphase,
        _pool(args.threads) as pool,
    ):
        verdicts = list(pool.map(_verify_one, jobs, chunksize=16))
    total = time.perf_counter() - total0
    ms = np.array([v[7] for v in verdicts]) if verdicts else np.zeros(1)
    cpu_ms = np.array([v[8] for v in verdicts]) if verdicts else np.zeros(1)
    reasons: dict[str, int] = {}
    for v in verdicts:
        reasons[v[3]] = reasons.get(v[3], 0) + 1
    root = Path(args.lfw) / "images"
    verified, closest = [], []
    for k, v in zip(order, verdicts, strict=True):
        a, b = Path(paths[ca[k]]), Path(paths[cb[k]])
        row = {
            "a": str(a.relative_to(root)),
            "b": str(b.relative_to(root)),
            "same_name": a.parent.name == b.parent.name,
            "distance": int(best[cand[k]]),
            "matched": v[0],
            "score": v[1],
            "inliers": v[2],
            "reason": v[3],
            "mirrored": v[4],
            "scale": v[5],
            "rotation_deg": v[6],
        }
        if v[0]:
            verified.append(row)
        if row["distance"] <= args.closest:
            closest.append(row)
    return {
        "photos": n,
        "probe_phase": probe_phase,
        "pair_phase": pair_phase,
        "verify_phase": vphase,
        "total_seconds": total,
        "decode_ms_median": float(np.median(decode_ms)),
        "probe_ms_median": float(np.median(probe_ms)),
        "probe_ms_p95": float(np.percentile(probe_ms, 95)),
        "probe_cpu_ms_median": float(np.median(probe_cpu_ms)),
        "probe_cpu_ms_p95": float(np.percentile(probe_cpu_ms, 95)),
        "pairs_total": int(best.shape[0]),
        "candidate_pairs": int(cand.shape[0]),
        "candidates_per_photo": 2 * cand.shape[0] / n,
        "candidate_pairs_by_kind": by_kind,
        "rows_per_photo": len(api.probe_spaces(probes[0])),
        "join_rows": probe_join_rows(probes, api.probe_spaces, band_plan(args.radius)),
        "phash_join_rows": join_rows(
            np.array([int(p.phash, 16) for p in probes], dtype=np.uint64), band_plan(args.radius)
        ),
        "distance_histogram": hist,
        "reference_check": {"pairs": int(check.shape[0]), "mismatches": mismatches},
        "verified_pairs_checked": len(jobs),
        "verify_ms_median": float(np.median(ms)),
        "verify_ms_p95": float(np.percentile(ms, 95)),
        "verify_ms_mean": float(ms.mean()),
        "verify_cpu_ms_median": float(np.median(cpu_ms)),
        "verify_cpu_ms_p95": float(np.percentile(cpu_ms, 95)),
        "verify_cpu_ms_mean": float(cpu_ms.mean()),
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "verified": verified,
        "closest": closest,
    }


def _recall_one(job: tuple[str, int, float]) -> list[dict[str, Any]]:
    from PIL import Image

    from jobs.core.imaging import load_rgb
    from jobs.testdata.copies import TRANSFORMS, make_copy

    path, seed, radius = job
    api = neardup_api()
    orig = load_rgb(Path(path).read_bytes(), MAX_PIXELS)
    orig_probes = api.probe_hashes(Image.fromarray(orig))
    rows = []
    for name in TRANSFORMS:
        copy = make_copy(Image.fromarray(orig), name, random.Random(f"{seed}/{Path(path).name}/{name}"))
        rgb = load_rgb(copy.data, MAX_PIXELS)
        distance = api.candidate_distance(orig_probes, api.probe_hashes(Image.fromarray(rgb)))
        t0, c0 = time.perf_counter(), time.process_time()
        v = api.verify_pair(orig, rgb)
        ms, cpu_ms = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
        rows.append(
            {
                "photo": Path(path).name,
                "transform": name,
                "label": copy.label,
                "distance": distance,
                "candidate": distance <= radius,
                "matched": v.matched,
                "found": distance <= radius and v.matched,
                "score": v.score,
                "inliers": v.inliers,
                "reason": v.reason,
                "verify_ms": ms,
                "verify_cpu_ms": cpu_ms,
            }
        )
    return rows


def recall_stage(args: argparse.Namespace, files: list[Path], rec: Recorder) -> dict[str, Any]:
    from jobs.testdata.copies import RECALL_TARGETS, TRANSFORMS

    chosen = random.Random(args.seed).sample(files, min(args.recall_photos, len(files)))
    jobs = [(str(f), args.seed, args.radius) for f in chosen]
    with (
        rec.phase(f"recall: {len(chosen)} photos x {len(TRANSFORMS)} transforms") as phase,
        _pool(args.threads) as pool,
    ):
        rows = [r for batch in pool.map(_recall_one, jobs, chunksize=4) for r in batch]
    table = []
    for name in TRANSFORMS:
        mine = [r for r in rows if r["transform"] == name]
        found = [r for r in mine if r["found"]]
        misses: dict[str, int] = {}
        for r in mine:
            if not r["found"]:
                why = r["reason"] if r["candidate"] else f"distance {r['distance']} > {args.radius}"
                misses[why] = misses.get(why, 0) + 1
        target = RECALL_TARGETS.get(name, float("nan"))
        verified = len(found) / len(mine)
        table.append(
            {
                "transform": name,
                "copies": len(mine),
                "candidate_recall": sum(r["candidate"] for r in mine) / len(mine),
                "verify_recall": sum(r["matched"] for r in mine) / len(mine),
                "found_recall": verified,
                "target": target,
                "pass": verified >= target,
                "distance_max": max(r["distance"] for r in mine),
                "distance_p95": float(np.percentile([r["distance"] for r in mine], 95)),
                "score_min": min(r["score"] for r in mine),
                "score_min_found": min((r["score"] for r in found), default=float("nan")),
                "inliers_min": min(r["inliers"] for r in mine),
                "inliers_min_found": min((r["inliers"] for r in found), default=0),
                "misses": misses,
            }
        )
    ms = np.array([r["verify_ms"] for r in rows])
    cpu_ms = np.array([r["verify_cpu_ms"] for r in rows])
    return {
        "photos": len(chosen),
        "phase": phase,
        "table": table,
        "verify_ms_median": float(np.median(ms)),
        "verify_ms_p95": float(np.percentile(ms, 95)),
        "verify_cpu_ms_median": float(np.median(cpu_ms)),
        "verify_cpu_ms_p95": float(np.percentile(cpu_ms, 95)),
        "misses": [r for r in rows if not r["found"]],
    }


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str]) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",") if v]

    parser = argparse.ArgumentParser(prog="./dev bench neardup_scale", description=__doc__)
    parser.add_argument("--sizes", type=ints, default=[100_000, 1_000_000], help="synthetic set sizes")
    parser.add_argument("--radius", type=int, default=12, help="Hamming radius (default 12, the product's)")
    parser.add_argument("--planted-fraction", type=float, default=0.1, help="share of planted copies (0.1)")
    parser.add_argument(
        "--full-max",
        type=int,
        default=100_000,
        help="sizes up to this get all-pairs truth and all n FAISS queries; larger ones a sample (100000)",
    )
    parser.add_argument("--sample", type=int, default=1000, help="sampled queries above --full-max (1000)")
    parser.add_argument(
        "--faiss",
        default="multi:4x16:3,multi:3x21:4,hash:16:3,hash:24:4",
        help="FAISS indexes, comma-separated: multi:NHASHxB:NFLIP (IndexBinaryMultiHash) or hash:B:NFLIP",
    )
    parser.add_argument(
        "--spark-ladder", type=ints, default=[25_000, 50_000], help="smaller Spark sizes run first"
    )
    parser.add_argument(
        "--spark-budget",
        type=float,
        default=600.0,
        help="seconds of Spark joins; a size predicted to overrun it is extrapolated, not run (600)",
    )
    parser.add_argument("--skip-row-check", action="store_true", help="skip Spark's own join-row count")
    parser.add_argument(
        "--parts", type=int, default=None, help="input parquet files (default: shuffle partitions)"
    )
    parser.add_argument("--lfw", default=str(LFW_DIR), help=f"lfw-dev folder (default {LFW_DIR})")
    parser.add_argument(
        "--verify-max",
        type=int,
        default=0,
        help="verify a seeded sample of this many lfw candidates (0: all)",
    )
    parser.add_argument(
        "--closest",
        type=int,
        default=4,
        help="list lfw candidate pairs up to this distance with their verdicts (4)",
    )
    parser.add_argument(
        "--recall-photos", type=int, default=300, help="lfw photos copied per transform (300)"
    )
    parser.add_argument(
        "--project-n",
        type=float,
        default=2e10,
        help="collection size the random-model table projects to (default 2e10)",
    )
    parser.add_argument("--threads", type=int, default=2, help="processes / threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip",
        default="",
        help=f"stages to skip, comma-separated: {','.join(STAGES)} (hash truth always runs)",
    )
    add_spark_arguments(parser)
    args = parser.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}
    unknown = args.skip - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(STAGES)}")
    return args


def code_state() -> dict[str, Any]:
    """verify_pair's thresholds and a digest of the files the figures depend on (they are still being tuned)."""
    import hashlib
    from dataclasses import asdict

    from jobs.core import neardup

    files = (
        "jobs/core/neardup.py",
        "jobs/core/imaging.py",
        "jobs/testdata/copies.py",
        "jobs/ingest/dedupe.py",
    )
    digests = {f: hashlib.sha256((PROJECT_ROOT / f).read_bytes()).hexdigest()[:12] for f in files}
    params = asdict(neardup.VerifyParams()) if hasattr(neardup, "VerifyParams") else {}
    return {"verify_params": params, "sha256_12": digests}


def lfw_files(root: str) -> list[Path] | None:
    images = Path(root) / "images"
    if not images.is_dir():
        return None
    return sorted(images.glob("*/*.jpg"))


def hash_data(args: argparse.Namespace, plan: Any, rec: Recorder) -> dict[int, dict[str, Any]]:
    """Per size: the hash set, its truth (all pairs or sampled queries), planted pairs, join rows, candidates."""
    sizes = sorted(set(args.sizes) | (set() if "spark" in args.skip else set(args.spark_ladder)))
    data: dict[int, dict[str, Any]] = {}
    for n in sizes:
        with rec.phase(f"hashes n={n:,}"):
            hs = planted_hashes(n, args.seed + n, args.planted_fraction, args.radius)
        full = n <= args.full_max
        rng = np.random.default_rng(args.seed + 1)
        queries = None if full else np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
        sample = (
            queries
            if queries is not None
            else np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
        )
        name = f"numpy brute force n={n:,} " + ("all pairs" if full else f"{queries.shape[0]:,} queries")
        with rec.phase(name) as brute:
            truth = (
                all_pairs(hs.hashes, args.radius, args.threads)
                if full
                else query_pairs(hs.hashes, queries, args.radius, args.threads)
            )
        with rec.phase(f"join rows + candidates of {sample.shape[0]:,} queries n={n:,} (numpy)"):
            rows = join_rows(hs.hashes, plan)
            cands = candidate_counts(hs.hashes, plan, sample)
        planted = planted_pairs(hs)
        data[n] = {
            "hs": hs,
            "queries": queries,
            "truth": truth,
            "brute": brute,
            "planted": planted,
            "planted_in_scope": restrict(planted, queries),
            "join_rows": rows,
            "candidates_per_image": float(cands.mean()),
            "candidates_sampled": int(sample.shape[0]),
            "truth_hist": np.bincount(truth[2], minlength=args.radius + 1).tolist(),
        }
    return data


def main(argv: list[str]) -> int:  # noqa: PLR0915 - a linear script
    args = parse_args(argv)
    started = time.perf_counter()
    from jobs.ingest.dedupe import band_plan

    files: list[Path] = []
    if not {"lfw", "recall"} <= args.skip:
        found_files = lfw_files(args.lfw)
        if not found_files:
            print(
                f"neardup_scale: no lfw-dev photos under {args.lfw}/images (see its README; the folder is not "
                "part of the repository). Pass --lfw DIR, or --skip lfw,recall for the hash stages only.",
                file=sys.stderr,
            )
            return 2
        files = found_files
    info: dict[str, Any] = {
        "command": command_line("neardup_scale", argv),
        "machine": machine(),
        "args": dict(vars(args)),
    }
    info["args"]["skip"] = sorted(args.skip)
    info["code"] = code_state()
    rec = Recorder()
    plan = band_plan(args.radius)
    info["band_plan"] = {"bands": plan.bands, "keys_per_hash": plan.keys_per_hash}
    info["random_model"] = random_model(plan, args.radius)

    # Stages 2 and 3 first: their worker processes are spawned before the JVM and FAISS's threads exist.
    if "lfw" not in args.skip:
        info["lfw"] = lfw_stage(args, files, rec)
    if "recall" not in args.skip:
        info["recall"] = recall_stage(args, files, rec)

    data = hash_data(args, plan, rec)
    info["hash_sets"] = {
        n: {k: v for k, v in d.items() if k not in ("hs", "queries", "truth", "planted", "planted_in_scope")}
        | {"description": d["hs"].description, "truth_pairs": int(d["truth"][0].shape[0])}
        for n, d in data.items()
    }
    faiss_runs: list[dict[str, Any]] = []
    if "faiss" not in args.skip:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        info["faiss_version"] = faiss.__version__
        for n in sorted(args.sizes):
            d = data[n]
            tag = "all queries" if d["queries"] is None else f"{d['queries'].shape[0]:,} queries"
            for spec in args.faiss.split(","):
                run = faiss_run(
                    d["hs"], parse_faiss_spec(spec), d["queries"], args.radius, rec, f"n={n:,} {tag}"
                )
                pairs = run.pop("pairs")
                run["recall_exact"] = recall_of(pairs, d["truth"])
                run["precision_exact"] = recall_precision(pair_keys(*pairs[:2]), pair_keys(*d["truth"][:2]))[
                    1
                ]
                run["recall_planted"] = recall_of(pairs, d["planted_in_scope"])
                far = d["planted_in_scope"][2] >= 9
                run["recall_planted_9_12"] = recall_of(
                    pairs,
                    tuple(x[far] for x in d["planted_in_scope"]),  # type: ignore[arg-type]
                )
                faiss_runs.append(run)
    info["faiss"] = faiss_runs
    spark_runs = spark_stage(args, data, plan, rec, info) if "spark" not in args.skip else []
    info["spark_runs"] = spark_runs
    info["phases"] = rec.phases
    info["total_seconds"] = time.perf_counter() - started
    report(args, info, data, faiss_runs, spark_runs)
    print(f"\nWhole run: {info['total_seconds']:.0f} s")
    print(f"\nfigures saved to {save_result('neardup_scale', info)}")
    return 0


# ---------------------------------------------------------------------------------------- report


def _load(p: Phase | None) -> str:
    return p.load() if p else "-"


def _others(p: Phase | None) -> str:
    return f"{p.other_cores:.2f}" if p else "-"


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    data: dict[int, dict[str, Any]],
    faiss_runs: list[dict[str, Any]],
    spark_runs: list[dict[str, Any]],
) -> None:
    m = info["machine"]
    print("\n## Near duplicates at scale and on real faces (`./dev bench neardup_scale`)\n")
    print(
        f"Command: `{info['command']}`  \nCores: {m['usable_cores']}; load at start {m['load_at_start']}; "
        f"radius {args.radius}; band plan {info['band_plan']['bands']} "
        f"({info['band_plan']['keys_per_hash']} keys per hash)  \n"
        f"verify_pair thresholds (`VerifyParams()`): {info['code']['verify_params']}  \n"
        f"Files (sha256, first 12 hex): {info['code']['sha256_12']}\n"
    )
    rm = info["random_model"]
    print(
        f"Random model (independent uniform 64-bit hashes): P(distance <= {args.radius}) = "
        f"{rm['p_within_radius']:.3g} per pair; P(banding candidate) = {rm['p_candidate']:.4g}; "
        f"expected join rows per ordered pair = {rm['rows_per_pair']:.4g}\n"
    )
    print(projection_table(args.radius, args.project_n))
    print()
    rows = []
    for n, d in sorted(data.items()):
        rows.append(
            [
                n,
                f"{np.count_nonzero(d['hs'].parent >= 0):,} copies at d 1..{args.radius}",
                f"{int(d['truth'][0].shape[0]):,}"
                + ("" if d["queries"] is None else f" ({args.sample:,} queries)"),
                str(d["truth_hist"]),
                f"{d['brute'].seconds:.1f}",
                f"{d['join_rows']:,}",
                f"{d['join_rows'] / n:,.0f}",
                f"{d['candidates_per_image']:,.0f}",
                f"{d['candidates_per_image'] / max(n - 1, 1):.4f}",
            ]
        )
    print(
        markdown_table(
            [
                "n",
                "planted",
                "truth ordered pairs",
                "truth distances 0..r",
                "numpy truth s",
                "join key rows (self-join)",
                "join rows per image",
                "banding candidates per image",
                "share of n",
            ],
            rows,
        )
    )
    if faiss_runs:
        print("\nFAISS " + info.get("faiss_version", "?") + f" ({args.threads} OpenMP threads):\n")
        frows = []
        for r in faiss_runs:
            frows.append(
                [
                    r["label"],
                    r["n"],
                    r["queries"],
                    f"{r['build'].seconds:.2f}",
                    f"{r['search'].seconds:.1f}",
                    f"{r['search_seconds_per_query'] * 1e3:.3f}",
                    f"{r['self_join_seconds']:,.0f}" + ("" if r["self_join_measured"] else " (extrapolated)"),
                    f"{r['candidates_per_query']:,.0f}",
                    f"{r['buckets_probed_per_query']:,.0f}",
                    f"{r['recall_exact']:.4f}",
                    f"{r['recall_planted']:.4f}",
                    f"{r['recall_planted_9_12']:.4f}",
                    f"{r['precision_exact']:.4f}",
                    _load(r["search"]),
                    _others(r["search"]),
                ]
            )
        print(
            markdown_table(
                [
                    "index",
                    "n",
                    "queries",
                    "build s",
                    "search s",
                    "ms/query",
                    "self-join s (build + n queries)",
                    "candidates/query",
                    "buckets probed/query",
                    "recall (exact)",
                    "recall (planted)",
                    "recall (planted d 9-12)",
                    "precision",
                    "load",
                    "others' cores",
                ],
                frows,
            )
        )
    if spark_runs:
        print(f"\nSpark `jobs.ingest.dedupe.near_duplicate_pairs` self-join, {info['spark']}:\n")
        srows = []
        for r in spark_runs:
            if r["measured"]:
                ph = r["phase"]
                srows.append(
                    [
                        r["n"],
                        f"{r['seconds']:.1f}",
                        f"{ph.cpu_seconds:.0f}",
                        f"{r['join_rows']:,}",
                        f"{r['ns_per_join_row']:.1f} / {r['cpu_ns_per_join_row']:.1f}",
                        f"{r['pairs']:,}",
                        f"{r['recall_exact']:.6f}",
                        f"{r['precision_exact']:.6f}",
                        f"{r['recall_planted']:.6f}",
                        f"{r['exponent']:.2f}" if "exponent" in r else "-",
                        _load(ph),
                        _others(ph),
                    ]
                )
            else:
                srows.append(
                    [
                        r["n"],
                        f"≈ {r['seconds']:,.0f} (not run: {r['basis']}; "
                        f"n^{r['exponent']:.2f} from the last measured time: ≈ {r['exponent_seconds']:,.0f})",
                        f"≈ {r['cpu_seconds']:,.0f}",
                        f"{r['join_rows']:,}",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                    ]
                )
        print(
            markdown_table(
                [
                    "n",
                    "wall s",
                    "CPU s",
                    "join key rows",
                    "ns per join row (wall / CPU)",
                    "ordered pairs",
                    "recall (exact)",
                    "precision",
                    "recall (planted)",
                    "time exponent vs previous n",
                    "load",
                    "others' cores",
                ],
                srows,
            )
        )
        checked = [r for r in spark_runs if "spark_join_rows" in r]
        for r in checked:
            print(
                f"\nJoin-row check at n={r['n']:,}: Spark `jobs_candidate_count` {r['spark_join_rows']:,} vs "
                f"numpy {r['join_rows']:,} ({r['count_phase'].seconds:.1f} s)"
            )
    if "lfw" in info:
        lf = info["lfw"]
        print(f"\n### lfw-dev, all {lf['photos']:,} photos, radius {args.radius}\n")
        print(
            markdown_table(
                ["figure", "value"],
                [
                    ["decode ms/photo (median)", f"{lf['decode_ms_median']:.2f}"],
                    [
                        "probe_hashes ms/photo, wall (median / p95)",
                        f"{lf['probe_ms_median']:.2f} / {lf['probe_ms_p95']:.2f}",
                    ],
                    [
                        "probe_hashes ms/photo, CPU (median / p95)",
                        f"{lf['probe_cpu_ms_median']:.2f} / {lf['probe_cpu_ms_p95']:.2f}",
                    ],
                    ["probe stage wall s", f"{lf['probe_phase'].seconds:.1f} ({args.threads} processes)"],
                    ["pairs", f"{lf['pairs_total']:,}"],
                    ["candidate pairs (probe_spaces rule)", f"{lf['candidate_pairs']:,}"],
                    ["candidates per photo", f"{lf['candidates_per_photo']:.2f}"],
                    [
                        "pairs within radius, by pairing (space: key-key / key-query)",
                        ", ".join(f"{k} {v:,}" for k, v in lf["candidate_pairs_by_kind"].items()),
                    ],
                    ["hashes per photo (probe_spaces rows)", lf["rows_per_photo"]],
                    [
                        "banding join rows: pHash alone / probe rows as candidate_pairs joins them / "
                        "probe rows with a key on one side",
                        f"{lf['phash_join_rows']:,} / {lf['join_rows']['as_joined']:,} / "
                        f"{lf['join_rows']['with_a_key']:,}",
                    ],
                    ["candidate distances 0..r", str(lf["distance_histogram"])],
                    [
                        "numpy vs candidate_distance mismatches",
                        f"{lf['reference_check']['mismatches']} of {lf['reference_check']['pairs']:,}",
                    ],
                    ["pairs verified", f"{lf['verified_pairs_checked']:,}"],
                    [
                        "verify_pair ms per pair, wall (median / p95 / mean)",
                        f"{lf['verify_ms_median']:.1f} / {lf['verify_ms_p95']:.1f} / {lf['verify_ms_mean']:.1f}",
                    ],
                    [
                        "verify_pair ms per pair, CPU (median / p95 / mean)",
                        f"{lf['verify_cpu_ms_median']:.1f} / {lf['verify_cpu_ms_p95']:.1f} / "
                        f"{lf['verify_cpu_ms_mean']:.1f}",
                    ],
                    ["verify stage wall s", f"{lf['verify_phase'].seconds:.1f} ({args.threads} processes)"],
                    ["verdicts", ", ".join(f"{k} {v:,}" for k, v in lf["reasons"].items())],
                    ["verified pairs", len(lf["verified"])],
                    ["total s", f"{lf['total_seconds']:.1f}"],
                    [
                        "load / others' cores (verify)",
                        f"{_load(lf['verify_phase'])} / {_others(lf['verify_phase'])}",
                    ],
                ],
            )
        )
        print(f"\nEvery verified pair, then the unverified candidate pairs at distance <= {args.closest}:\n")
        print(
            markdown_table(
                [
                    "photo a",
                    "photo b",
                    "same name",
                    "distance",
                    "verdict",
                    "score",
                    "inliers",
                    "mirrored",
                    "scale",
                    "rotation",
                ],
                [
                    [
                        v["a"],
                        v["b"],
                        "yes" if v["same_name"] else "no",
                        v["distance"],
                        v["reason"],
                        f"{v['score']:.3f}",
                        v["inliers"],
                        v["mirrored"],
                        f"{v['scale']:.3f}",
                        f"{v['rotation_deg']:.2f}",
                    ]
                    for v in lf["verified"] + [c for c in lf["closest"] if not c["matched"]]
                ],
            )
        )
    if "recall" in info:
        rc = info["recall"]
        print(
            f"\n### Per-transform recall: {rc['photos']} lfw-dev photos (seed {args.seed}), radius {args.radius}\n"
            f"verify_pair on copies: median {rc['verify_ms_median']:.1f} ms, p95 {rc['verify_ms_p95']:.1f} ms "
            f"wall; CPU median {rc['verify_cpu_ms_median']:.1f} ms, p95 {rc['verify_cpu_ms_p95']:.1f} ms; "
            f"{rc['phase'].seconds:.1f} s wall, load {_load(rc['phase'])}, others {_others(rc['phase'])}\n"
        )
        print(
            markdown_table(
                [
                    "transform",
                    "copies",
                    "candidate recall",
                    "verify recall (alone)",
                    "found recall (both)",
                    "target",
                    "pass",
                    "distance p95 / max",
                    "score min (all / found)",
                    "inliers min (all / found)",
                    "misses",
                ],
                [
                    [
                        t["transform"],
                        t["copies"],
                        f"{t['candidate_recall']:.3f}",
                        f"{t['verify_recall']:.3f}",
                        f"**{t['found_recall']:.3f}**",
                        f"{t['target']:.2f}",
                        "pass" if t["pass"] else "**FAIL**",
                        f"{t['distance_p95']:.0f} / {t['distance_max']}",
                        f"{t['score_min']:.3f} / {t['score_min_found']:.3f}",
                        f"{t['inliers_min']} / {t['inliers_min_found']}",
                        ", ".join(f"{k} {v}" for k, v in t["misses"].items()) or "-",
                    ]
                    for t in rc["table"]
                ],
            )
        )
