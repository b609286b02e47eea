"""End-to-end demo on the embedded default: sample drop -> lake (local Spark, Delta on local disk)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.core.config import add_config_arguments, config_from_args, log_config
from jobs.core.runs import RunContext, configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", default="demo", help="folder for the drop and, unless --lake is given, the lake"
    )
    parser.add_argument("--n", type=int, default=200, help="manifest lines in the sample drop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--direct", action="store_true", help="call the jobs in-process instead of through the Airflow DAG"
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Generate the sample drop, create the lake, ingest the drop, print what landed where."""
    from jobs.faces.embed import embed
    from jobs.ingest.job import ingest_drop, record_counts
    from jobs.lake.api import Lake
    from jobs.lake.session import get_spark
    from jobs.lake.tables import read_table, table_uri
    from jobs.orchestration.airflow_local import run_dag
    from jobs.testdata.sample_drop import generate_sample_drop

    workdir = Path(args.workdir).resolve()
    if args.lake is None:
        args.lake = str(workdir / "lake")
    drop = workdir / "drop"
    config = config_from_args(args).replace(drop=str(drop))
    configure_logging(config.log_level)
    log_config(config, "demo")
    ctx = RunContext(job="demo")

    summary = generate_sample_drop(drop, n=args.n, seed=args.seed, overwrite=True)
    ctx.progress("sample drop: %d manifest lines, %d files in %s", summary.lines, summary.files, drop)
    ctx.count("drop_lines", summary.lines)
    if args.direct:
        ingest = RunContext(job="ingest")
        record_counts(ingest_drop(get_spark(config, "facelake-demo"), config, ingest), ingest)
        print(ingest.summary())
        embedding = RunContext(job="embed")
        embed(get_spark(config, "facelake-demo"), config, embedding)
        print(embedding.summary())
    else:
        ctx.progress("running DAG facelake_ingest with Airflow (SQLite metadata DB under .cache/airflow)")
        done = run_dag("facelake_ingest", {"drop": str(drop), "lake": config.lake})
        summaries = [
            ln
            for ln in done.stdout.splitlines() + done.stderr.splitlines()
            if " run " in ln and " done in " in ln
        ]
        if done.returncode != 0:
            print((done.stdout + done.stderr)[-4000:], file=sys.stderr)
            print("facelake demo: the Airflow DAG run failed (output above)", file=sys.stderr)
            return 1
        print("Airflow DAG facelake_ingest: success")
        for line in summaries:
            start = min(line.find(f"{job} run") for job in ("ingest", "embed") if f"{job} run" in line)
            print("  " + line[start:].split(" [airflow", 1)[0])
    spark = get_spark(config, "facelake-demo")
    print(f"\nlake: {config.lake}")
    for name in ("crawl_manifest", "image_sources", "images", "quarantine", "faces", "face_status"):
        df = read_table(spark, config.lake, name)
        print(f"  {name:15s} {df.count():6d} rows  {table_uri(config.lake, name)}")
    images = read_table(spark, config.lake, "images")
    canonical = images.where("canonical_id = image_id").count()
    uk = images.where("array_contains(jurisdiction_tags, 'uk')").count()
    print(
        f"\nimages: {canonical} canonical, {images.count() - canonical} near-duplicate aliases, {uk} tagged uk"
    )
    statuses = (
        read_table(spark, config.lake, "face_status").groupBy("status").count().orderBy("status").collect()
    )
    print(
        f"face status (pack {config.model_pack}): "
        + ", ".join(f"{r['status']} {r['count']}" for r in statuses)
    )
    print("quarantine reasons:")
    for row in (
        read_table(spark, config.lake, "quarantine").groupBy("reason").count().orderBy("reason").collect()
    ):
        print(f"  {row['reason']:18s} {row['count']}")
    print("\nlatest versions of images (which run made them, from what):")
    for row in Lake(spark, config.lake).history("images", limit=3).collect():
        print(
            f"  v{row['version']:<3d} {row['operation']:12s} +{row['rows_inserted']} ~{row['rows_updated']} "
            f"job={row['job'] or '-'} run={(row['run_id'] or '-')[:12]} dag_run={row['dag_run_id'] or '-'} inputs={row['inputs']}"
        )
    print(f"\n{ctx.summary()}")
    print("Rerun it: the drop id is the same and nothing new is inserted (idempotent MERGE).")
    print(
        f'Explore: facelake sql "SELECT reason, count(*) FROM quarantine GROUP BY reason" --lake {config.lake}'
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facelake demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
