"""Near-duplicate pHash join: jobs.ingest.dedupe.near_duplicate_pairs on Spark vs numpy brute force and imagededup."""

from __future__ import annotations

import argparse
import math
import shutil
import time
from typing import Any

import numpy as np

from benchmarks.brute import Pairs, all_pairs, pair_keys, query_pairs, recall_precision
from benchmarks.common import (
    BENCH_DIR,
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
from benchmarks.hashgen import HashSet, clustered_hashes, drop_hashes

IMAGEDEDUP_SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000)
WARMUP_N = 20_000


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./dev bench neardup", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="synthetic hashes (default 100000)")
    parser.add_argument(
        "--sample",
        type=int,
        default=0,
        help="brute-force only this many random query hashes against all (0: all pairs)",
    )
    parser.add_argument(
        "--incremental",
        type=int,
        default=0,
        metavar="K",
        help="join the first K hashes (a new batch) against all n, as ingest does (0: self-join)",
    )
    parser.add_argument("--threshold", type=int, default=8, help="max Hamming distance (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variant-fraction", type=float, default=0.3, help="share of near-dup variants (0.3)"
    )
    parser.add_argument("--zipf", type=float, default=0.0, help="skew of variants over bases (0: uniform)")
    parser.add_argument(
        "--source",
        choices=("synthetic", "drop"),
        default="synthetic",
        help="synthetic hashes, or the real pHashes of the sample drop of --drop-n lines",
    )
    parser.add_argument("--drop-n", type=int, default=20_000, help="sample drop size for --source drop")
    parser.add_argument(
        "--imagededup",
        default="bktree:600,brute_force_cython:2400",
        help="imagededup search methods to compare as METHOD[:BUDGET_SECONDS], comma-separated, "
        "or 'none' (default bktree:600,brute_force_cython:2400)",
    )
    parser.add_argument(
        "--imagededup-budget",
        type=float,
        default=900.0,
        help="seconds per imagededup method without its own budget; sizes predicted (n^2) to "
        "exceed it are extrapolated, not run (default 900)",
    )
    parser.add_argument("--threads", type=int, default=2, help="brute-force threads and imagededup workers")
    parser.add_argument(
        "--skip-candidates", action="store_true", help="skip counting the join's candidate rows"
    )
    parser.add_argument(
        "--impl",
        choices=("jobs", "hinted", "proposed"),
        default="jobs",
        help="jobs.ingest.dedupe (default), or a variant in benchmarks/dedupe_variants.py",
    )
    parser.add_argument(
        "--join-hint",
        default="merge",
        help="join hint of the variants: merge, shuffle_hash or broadcast_left",
    )
    parser.add_argument(
        "--parts", type=int, default=None, help="input parquet files (default: shuffle partitions)"
    )
    add_spark_arguments(parser)
    return parser.parse_args(argv)


def load_hashes(args: argparse.Namespace) -> HashSet:
    if args.source == "drop":
        return drop_hashes(args.drop_n, args.seed, processes=args.threads)
    return clustered_hashes(args.n, args.seed, args.variant_fraction, args.zipf)


def dataset_tag(args: argparse.Namespace, hs: HashSet) -> str:
    if args.source == "drop":
        return f"drop{args.drop_n}-s{args.seed}"
    return f"syn{hs.n}-s{args.seed}-f{args.variant_fraction}-z{args.zipf}"


def write_input(hs: HashSet, tag: str, parts: int) -> str:
    """The hashes as ``parts`` parquet files (image_id long, phash_long long) for Spark to read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = BENCH_DIR / "hashes" / tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ids = np.arange(hs.n, dtype=np.int64)
    longs = hs.hashes.view(np.int64)
    bounds = np.linspace(0, hs.n, parts + 1).astype(int)
    for i in range(parts):
        lo, hi = bounds[i], bounds[i + 1]
        pq.write_table(
            pa.table({"image_id": ids[lo:hi], "phash_long": longs[lo:hi]}), out / f"part-{i:04d}.parquet"
        )
    return str(out)


def read_pairs(path: str) -> Pairs:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return (
        table["a_id"].to_numpy().astype(np.int64),
        table["b_id"].to_numpy().astype(np.int64),
        table["distance"].to_numpy().astype(np.uint8),
    )


def distance_mismatches(found: Pairs, truth: Pairs) -> int:
    """Pairs present in both whose distances differ."""
    fk, tk = pair_keys(found[0], found[1]), pair_keys(truth[0], truth[1])
    _, fi, ti = np.intersect1d(fk, tk, assume_unique=False, return_indices=True)
    return int(np.count_nonzero(found[2][fi] != truth[2][ti]))


def imagededup_ladder(
    hs: HashSet, truth: Pairs, args: argparse.Namespace, method: str, budget: float, rec: Recorder
) -> list[dict[str, Any]]:
    """imagededup on growing prefixes of the set while the predicted next run fits the budget, then extrapolate."""
    from benchmarks.imagededup_ref import find_duplicates

    sizes = [s for s in IMAGEDEDUP_SIZES if s < hs.n] + [hs.n]
    rows: list[dict[str, Any]] = []
    spent = 0.0
    for size in sizes:
        if rows:
            last = rows[-1]
            predicted = last["seconds"] * (size / last["n"]) ** 2
            if spent + predicted > budget:
                break
        with rec.phase(f"imagededup {method} n={size}") as phase:
            run = find_duplicates(hs.hashes[:size], args.threshold, method, args.threads)
        spent += phase.seconds
        t0 = time.perf_counter()
        all_pairs(hs.hashes[:size], args.threshold, args.threads)  # same-size brute force, for the ratio
        brute_seconds = time.perf_counter() - t0
        inside = (truth[0] < size) & (truth[1] < size)
        recall, precision, _ = recall_precision(
            pair_keys(*run.pairs[:2]), pair_keys(truth[0][inside], truth[1][inside])
        )
        rows.append(
            {
                "method": method,
                "n": size,
                "seconds": phase.seconds,
                "phase": phase,
                "pairs": int(run.pairs[0].shape[0]),
                "truth_pairs": int(np.count_nonzero(inside)),
                "recall": recall,
                "precision": precision,
                "measured": True,
                "brute_seconds": brute_seconds,
            }
        )
    if rows and rows[-1]["n"] < hs.n:
        (n1, t1), (n2, t2) = (
            ((rows[-2]["n"], rows[-2]["seconds"]) if len(rows) > 1 else (0, 0.0)),
            (rows[-1]["n"], rows[-1]["seconds"]),
        )
        exponent = math.log(t2 / t1) / math.log(n2 / n1) if n1 and t1 > 0 and t2 > t1 else 2.0
        rows.append(
            {
                "method": method,
                "n": hs.n,
                "seconds": t2 * (hs.n / n2) ** exponent,
                "measured": False,
                "exponent": exponent,
                "from_n": n2,
            }
        )
    return rows


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from jobs.ingest.dedupe import band_plan

    info: dict[str, Any] = {"command": command_line("neardup", argv), "machine": machine()}
    rec = Recorder()
    with rec.phase("hash generation"):
        hs = load_hashes(args)
    tag = dataset_tag(args, hs)
    info["data"] = {"description": hs.description, "n": hs.n, "threshold": args.threshold, "tag": tag}
    plan = band_plan(args.threshold)
    info["band_plan"] = {"bands": plan.bands, "keys_per_hash": plan.keys_per_hash}

    # 1. Ground truth.
    rng = np.random.default_rng(args.seed + 1)
    if args.incremental:
        queries: np.ndarray | None = np.arange(args.incremental)
        brute_name = f"numpy brute force, batch of {args.incremental:,} x {hs.n:,}"
    elif args.sample:
        queries = np.sort(rng.choice(hs.n, size=args.sample, replace=False))
        brute_name = f"numpy brute force, {args.sample:,} queries x {hs.n:,}"
    else:
        queries = None
        brute_name = f"numpy brute force, all {hs.n * (hs.n - 1) // 2:,} pairs"
    with rec.phase(brute_name):
        truth = (
            query_pairs(hs.hashes, queries, args.threshold, args.threads)
            if queries is not None
            else all_pairs(hs.hashes, args.threshold, args.threads)
        )
    truth_keys = pair_keys(truth[0], truth[1])
    info["truth_pairs"] = int(truth_keys.shape[0])
    hist = np.bincount(truth[2], minlength=args.threshold + 1).tolist()
    info["truth_distance_histogram"] = hist

    # 2. imagededup on the same hashes (all-pairs mode only), before the JVM starts (it forks workers).
    ided: list[dict[str, Any]] = []
    methods = [] if args.imagededup == "none" or queries is not None else args.imagededup.split(",")
    if methods:
        from benchmarks.imagededup_ref import ensure_imagededup

        version, note = ensure_imagededup()
        info["imagededup"] = {"version": version, "note": note}
        if version:
            for item in methods:
                method, _, budget = item.partition(":")
                ided += imagededup_ladder(
                    hs, truth, args, method, float(budget or args.imagededup_budget), rec
                )

    # 3. Spark.
    if args.impl == "hinted":
        from benchmarks.dedupe_variants import jobs_candidate_count as candidate_count
        from benchmarks.dedupe_variants import near_duplicate_pairs_hinted

        def near_duplicate_pairs(left: Any, right: Any, threshold: int) -> Any:
            return near_duplicate_pairs_hinted(left, right, threshold, hint=args.join_hint)
    elif args.impl == "proposed":
        from benchmarks import dedupe_variants

        def near_duplicate_pairs(left: Any, right: Any, threshold: int) -> Any:
            return dedupe_variants.near_duplicate_pairs(left, right, threshold, hint=args.join_hint)

        def candidate_count(left: Any, right: Any, threshold: int) -> int:
            return dedupe_variants.candidate_count(left, right, threshold, hint=args.join_hint)
    else:
        from benchmarks.dedupe_variants import jobs_candidate_count as candidate_count
        from jobs.ingest.dedupe import near_duplicate_pairs
    from jobs.core.runs import configure_logging
    from jobs.lake.session import get_spark

    label = "jobs.ingest.dedupe" if args.impl == "jobs" else f"{args.impl}, {args.join_hint}"
    config = facelake_config(args)
    parts = args.parts or config.shuffle_partitions
    src = write_input(hs, tag, parts)
    out = str(BENCH_DIR / "out" / f"pairs-{tag}")
    configure_logging("WARNING")
    with rec.phase("spark session start"):
        spark = get_spark(config, "facelake-bench-neardup")
    info["spark"] = spark_facts(spark)
    info["spark"]["input_files"] = parts
    df = spark.read.parquet(src)
    with rec.phase(f"spark warm-up ({min(WARMUP_N, hs.n):,} hashes, not counted)"):
        small = df.where(f"image_id < {WARMUP_N}")
        near_duplicate_pairs(small, small, args.threshold).count()
    left = df.where(f"image_id < {args.incremental}") if args.incremental else df
    with rec.phase(f"spark near_duplicate_pairs ({label})") as spark_phase:
        near_duplicate_pairs(left, df, args.threshold).write.mode("overwrite").parquet(out)
    candidates = None
    if not args.skip_candidates:
        with rec.phase(f"spark candidate_count ({label})") as cand_phase:
            candidates = candidate_count(left, df, args.threshold)
        cand_phase.extra["candidates"] = candidates
    spark.stop()
    found = read_pairs(out)
    if queries is not None:
        found = tuple(x[np.isin(found[0], queries)] for x in found)  # type: ignore[assignment]
    recall, precision, _ = recall_precision(pair_keys(found[0], found[1]), truth_keys)
    mismatched = distance_mismatches(found, truth)
    total_found = int(read_pairs(out)[0].shape[0]) if queries is not None else int(found[0].shape[0])

    # 4. Report.
    brute = rec.get(brute_name)
    scope = (
        "all"
        if queries is None
        else f"from the batch of {args.incremental:,}"
        if args.incremental
        else f"restricted to the {args.sample:,} queries"
    )

    sampled = bool(args.sample) and not args.incremental
    # The reference for the speed column: the brute force doing the same job (all pairs, or the batch
    # against all); with --sample, the all-pairs time extrapolated from the sampled queries.
    reference = brute.seconds * (hs.n - 1) / 2 / args.sample if sampled else brute.seconds

    def row(
        name: str,
        n: int,
        phase: Phase | None,
        seconds: float,
        pairs: Any,
        rec_: Any,
        prec: Any,
        ratio: bool = True,
        ref: float | None = None,
    ) -> list[Any]:
        cpu = f"{phase.cpu_seconds:.1f}" if phase else "-"
        load = phase.load() if phase else "-"
        others = f"{phase.other_cores:.2f}" if phase else "-"
        speed = f"{(ref or reference) / seconds:.3g}x" if ratio else "-"
        return [name, n, seconds, cpu, pairs, rec_, prec, speed, load, others]

    table = [
        row(
            brute_name,
            hs.n,
            brute,
            brute.seconds,
            int(truth_keys.shape[0]),
            "1 (truth)",
            "1 (truth)",
            ratio=not sampled,
        )
    ]
    if sampled:
        table.append(
            row(
                f"numpy brute force, all pairs (extrapolated from the {args.sample:,} queries)",
                hs.n,
                None,
                reference,
                "-",
                "-",
                "-",
            )
        )
    table.append(
        row(
            f"Spark near_duplicate_pairs ({label})",
            hs.n,
            spark_phase,
            spark_phase.seconds,
            f"{total_found:,} ({found[0].shape[0]:,} {scope})",
            f"{recall:.6f}",
            f"{precision:.6f}",
        )
    )
    if candidates is not None:
        table.append(
            row(
                f"Spark candidate_count ({label}, join only)",
                hs.n,
                cand_phase,
                cand_phase.seconds,
                f"{candidates:,} candidate rows",
                "-",
                "-",
            )
        )
    for r in ided:
        if r["measured"]:
            table.append(
                row(
                    f"imagededup {r['method']}",
                    r["n"],
                    r["phase"],
                    r["seconds"],
                    f"{r['pairs']:,} (truth {r['truth_pairs']:,})",
                    f"{r['recall']:.6f}",
                    f"{r['precision']:.6f}",
                    ref=r["brute_seconds"],
                )
            )
        else:
            table.append(
                row(
                    f"imagededup {r['method']} (extrapolated, n^{r['exponent']:.2f} from {r['from_n']:,})",
                    r["n"],
                    None,
                    r["seconds"],
                    "-",
                    "-",
                    "-",
                )
            )
    mode = f"a batch of {args.incremental:,} against all" if args.incremental else "self-join"
    print(f"\n## Near-duplicate join ({mode}), n = {hs.n:,}\n")
    print(
        f"Command: `{info['command']}`  \nData: {hs.description}; threshold {args.threshold}; "
        f"cores {info['machine']['usable_cores']}; Spark {info['spark']}\n"
    )
    print(
        markdown_table(
            [
                "method",
                "n",
                "wall s",
                "CPU s",
                "ordered pairs (a,b)",
                "recall",
                "precision",
                "speed vs brute force (same job, same n)",
                "load 1-min (start→end)",
                "other procs' cores",
            ],
            table,
        )
    )
    self_matches = (args.incremental or hs.n) * plan.keys_per_hash
    detail = [
        ["bands (offset, width)", str(plan.bands)],
        ["keys per hash", plan.keys_per_hash],
        ["truth distance histogram 0..k", str(hist)],
        ["distance mismatches vs truth", mismatched],
    ]
    if candidates is not None and args.impl == "proposed":
        detail += [
            [
                "candidate rows to the exact filter (no self matches, one flip combination per band)",
                candidates,
            ],
            ["candidate rows per result pair", f"{candidates / max(total_found, 1):.1f}"],
        ]
    elif candidates is not None:
        cross = candidates - self_matches
        detail += [
            ["candidate rows (candidate_count)", candidates],
            ["  of which self matches (n x keys per hash)", self_matches],
            ["  of which cross rows", cross],
            ["cross candidate rows per result pair", f"{cross / max(total_found, 1):.1f}"],
        ]
    print("\n" + markdown_table(["detail", "value"], detail))
    info.update(
        {
            "phases": rec.phases,
            "spark_pairs": total_found,
            "spark_pairs_in_scope": int(found[0].shape[0]),
            "recall": recall,
            "precision": precision,
            "distance_mismatches": mismatched,
            "candidates": candidates,
            "self_matches": self_matches,
            "imagededup_runs": ided,
        }
    )
    name = (
        f"neardup-{args.impl}{'' if args.impl == 'jobs' else '-' + args.join_hint}-{tag}"
        + (f"-q{args.sample}" if args.sample else "")
        + (f"-inc{args.incremental}" if args.incremental else "")
    )
    print(f"\nfigures saved to {save_result(name, info)}")
    return 0
