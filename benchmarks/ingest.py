"""Ingest throughput: ``jobs.ingest.job.ingest_drop`` on local Spark vs a plain Python loop doing the same per-file work."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.actions import profile_actions
from benchmarks.common import (
    BENCH_DIR,
    Recorder,
    add_spark_arguments,
    command_line,
    facelake_config,
    machine,
    markdown_table,
    save_result,
    spark_facts,
)

WARMUP_N = 200


@dataclass
class ReferenceCounts:
    """What the reference pass saw: lines, distinct referenced files, decode outcomes."""

    lines: int = 0
    bad_lines: int = 0
    files: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def ensure_drop(n: int, seed: int) -> Path:
    """The sample drop of ``n`` lines under .cache/bench/, generated once and reused."""
    from jobs.testdata.sample_drop import ANSWER_KEY_NAME, generate_sample_drop

    drop = BENCH_DIR / f"drop-n{n}-seed{seed}"
    if not (drop / ANSWER_KEY_NAME).is_file():  # the answer key is renamed into place last
        print(f"[bench] generating sample drop {drop} (n={n}, seed={seed})", file=sys.stderr, flush=True)
        generate_sample_drop(drop, n, seed, overwrite=True)
    return drop


def answer_key_summary(drop: Path) -> dict[str, Any]:
    from jobs.testdata.sample_drop import ANSWER_KEY_NAME

    key = json.loads((drop / ANSWER_KEY_NAME).read_text())
    return {"summary": key["summary"], "limits": key["limits"]}


def referenced_paths(drop: Path, counts: ReferenceCounts) -> list[str]:
    """Parse every manifest line (as the job does) and return the distinct image paths of valid lines."""
    from jobs.core.manifest import ManifestRecord, parse_line

    data = (drop / "manifest.jsonl").read_bytes()
    paths: set[str] = set()
    for index, line in enumerate(data.split(b"\n")):  # the job splits raw bytes on newlines only
        if not line.strip():
            continue
        counts.lines += 1
        parsed = parse_line(line, index + 1)
        if isinstance(parsed, ManifestRecord):
            paths.add(parsed.image_path)
        else:
            counts.bad_lines += 1
    return sorted(paths)


def _decode_one(job: tuple[str, str, int, int]) -> str:
    """Read and decode one file; returns 'ok' or the quarantine reason."""
    from jobs.core.dropfiles import read_local
    from jobs.core.imaging import decode_image

    root, rel, max_bytes, max_pixels = job
    file = read_local(root, rel, max_bytes)  # the job's reader: no link followed, size checked first
    if file.content is None:
        return file.reason.value if file.reason else "missing_file"
    decoded = decode_image(file.content, max_bytes, max_pixels)
    return "ok" if decoded.reason is None else decoded.reason.value


def reference_pass(drop: Path, max_bytes: int, max_pixels: int, processes: int) -> ReferenceCounts:
    """The raw work: parse_line on every line, decode_image on every distinct referenced file."""
    counts = ReferenceCounts()
    paths = referenced_paths(drop, counts)
    counts.files = len(paths)
    jobs = [(str(drop), p, max_bytes, max_pixels) for p in paths]
    if processes <= 1:
        counts.outcomes.update(_decode_one(j) for j in jobs)
    else:
        with get_context("fork").Pool(processes) as pool:
            counts.outcomes.update(pool.imap_unordered(_decode_one, jobs, chunksize=64))
    return counts


def warm_page_cache(drop: Path) -> int:
    """Read every file once so no timed phase pays for cold disk reads."""
    total = 0
    for path in drop.rglob("*"):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./dev bench ingest", description=__doc__)
    parser.add_argument(
        "--n", type=int, default=20_000, help="manifest lines in the sample drop (default 20000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-parallel-reference",
        action="store_true",
        help="skip the 2-process reference (the 1-process one always runs)",
    )
    add_spark_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import jobs.ingest.job
    from jobs.core.runs import RunContext, configure_logging
    from jobs.ingest.job import ingest_drop
    from jobs.lake.session import get_spark

    info: dict[str, Any] = {"command": command_line("ingest", argv), "machine": machine()}
    rec = Recorder()
    with rec.phase("generate or reuse drops"):
        drop = ensure_drop(args.n, args.seed)
        warm_drop = ensure_drop(WARMUP_N, args.seed)
    key = answer_key_summary(drop)
    # The answer key is written for these limits (e.g. its one oversized file is > 2 MiB, < the 20 MiB default).
    max_bytes, max_pixels = key["limits"]["byte_limit_for_tests"], key["limits"]["pixel_limit_for_tests"]
    info["drop"] = {
        "path": str(drop),
        "n": args.n,
        "seed": args.seed,
        "files": key["summary"]["files"],
        "bytes": key["summary"]["total_bytes"],
        "max_image_bytes": max_bytes,
        "max_image_pixels": max_pixels,
    }
    warm_page_cache(drop)

    # Reference first, before the JVM exists: same per-file work, no Spark, no Delta.
    with rec.phase("reference: 1 Python process"):
        ref1 = reference_pass(drop, max_bytes, max_pixels, processes=1)
    ref2 = None
    if not args.no_parallel_reference:
        with rec.phase("reference: 2 Python processes"):
            ref2 = reference_pass(drop, max_bytes, max_pixels, processes=2)

    lakes = BENCH_DIR / "lakes"
    lake, warm_lake = lakes / f"ingest-n{args.n}-seed{args.seed}", lakes / "ingest-warmup"
    for path in (lake, warm_lake):
        shutil.rmtree(path, ignore_errors=True)
    config = facelake_config(args, max_image_bytes=max_bytes, max_image_pixels=max_pixels)
    configure_logging("WARNING")
    with rec.phase("spark session start"):
        spark = get_spark(config, "facelake-bench-ingest")
    info["spark"] = spark_facts(spark)
    hooks = tuple(
        h
        for h in ("init_lake", "load_suppression", "merge_new_rows", "upsert_rows", "_assign_canonicals")
        if hasattr(jobs.ingest.job, h)
    )
    gates = ("publish_gate",) if hasattr(jobs.ingest.job, "publish_gate") else ()
    # The first ingest in a process pays one-off costs (JIT, Delta/GX initialisation, table creation);
    # under Airflow every task is a new process and pays them again.
    with (
        profile_actions(jobs.ingest.job, hooks, gates) as prof0,
        rec.phase(f"warm-up ingest ({WARMUP_N} lines, fresh process and lake, not counted)"),
    ):
        ingest_drop(
            spark, config.replace(lake=str(warm_lake), drop=str(warm_drop)), RunContext(job="bench-warmup")
        )

    run_config = config.replace(lake=str(lake), drop=str(drop))
    with profile_actions(jobs.ingest.job, hooks, gates) as prof1, rec.phase("ingest #1 (fresh lake)"):
        first = ingest_drop(spark, run_config, RunContext(job="bench-ingest"))
    with profile_actions(jobs.ingest.job, hooks, gates) as prof2, rec.phase("ingest #2 (same drop: no-op)"):
        second = ingest_drop(spark, run_config, RunContext(job="bench-ingest"))
    spark.stop()
    # The reference again, after Spark: the load on this shared machine drifts; this brackets it.
    with rec.phase("reference: 1 Python process (again, after Spark)"):
        reference_pass(drop, max_bytes, max_pixels, processes=1)

    files = ref1.files
    ref = rec.get("reference: 1 Python process")
    rows = []
    for phase in rec.phases:
        if phase.name.startswith(("reference", "ingest #")):
            rows.append(
                [
                    phase.name,
                    phase.seconds,
                    args.n / phase.seconds,
                    files / phase.seconds,
                    f"{ref.seconds / phase.seconds:.2f}x",
                    phase.cpu_seconds,
                    f"{phase.cpu_seconds / ref.cpu_seconds:.2f}x",
                    phase.load(),
                    f"{phase.other_cores:.2f}",
                ]
            )
    print("\n## Ingest throughput\n")
    print(
        f"Command: `{info['command']}`  \nDrop: {args.n:,} lines, {files:,} distinct referenced files "
        f"({key['summary']['files']:,} files, {key['summary']['total_bytes'] / 1e6:.0f} MB), seed {args.seed}; "
        f"cores: {info['machine']['usable_cores']}; Spark {info['spark']}\n"
    )
    print(
        markdown_table(
            [
                "phase",
                "wall s",
                "lines/s",
                "images/s",
                "wall speed vs 1-process ref",
                "CPU s (this run)",
                "CPU vs 1-process ref",
                "load 1-min (start→end)",
                "other procs' cores",
            ],
            rows,
        )
    )
    expected = key["summary"]
    counts = [
        ["manifest lines", first.counts.get("manifest_lines"), expected["lines"]],
        ["quarantined lines", first.counts.get("quarantined"), expected["quarantined_lines"]],
        ["ingestible lines", first.counts.get("ingestible_lines"), expected["ok_lines"]],
        ["new images (distinct sha256)", first.counts.get("new_images"), "-"],
        ["near-dup aliases", first.counts.get("near_dup_aliases"), "-"],
        [
            "canonical images (new - aliases)",
            first.counts.get("new_images", 0) - first.counts.get("near_dup_aliases", 0),
            expected["distinct_contents"],
        ],
        ["rows inserted by ingest #2", sum(second.inserted.values()), 0],
    ]
    print("\n" + markdown_table(["count", "ingest #1", "answer key"], counts))
    warm = next(p for p in rec.phases if p.name.startswith("warm-up"))
    for title, prof, phase in (
        ("warm-up ingest", prof0, warm),
        ("ingest #1", prof1, rec.get("ingest #1 (fresh lake)")),
        ("ingest #2", prof2, rec.get("ingest #2 (same drop: no-op)")),
    ):
        print(
            f"\n{title}: wall time by the jobs/ingest/job.py line that triggered it (outermost Spark action or MERGE)\n"
        )
        print(markdown_table(["site", "calls", "seconds", "share"], prof.rows(phase.seconds)))
    print(
        f"\nreference outcomes (1 process): {dict(sorted(ref1.outcomes.items()))}, bad lines {ref1.bad_lines}"
    )
    print(
        f"ingest #1 quarantine: {first.quarantine}\ninserted #1: {first.inserted}\ninserted #2: {second.inserted}"
    )
    info.update(
        {
            "profile_0": prof0.rows(warm.seconds),
            "profile_1": prof1.rows(rec.get("ingest #1 (fresh lake)").seconds),
            "profile_2": prof2.rows(rec.get("ingest #2 (same drop: no-op)").seconds),
        }
    )
    info.update(
        {
            "phases": rec.phases,
            "ingest_1": vars(first),
            "ingest_2": vars(second),
            "reference_1": vars(ref1),
            "reference_2": vars(ref2) if ref2 else None,
            "answer_key": expected,
        }
    )
    print(f"\nfigures saved to {save_result(f'ingest-n{args.n}', info)}")
    return 0
