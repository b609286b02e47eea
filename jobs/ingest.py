"""Ingest stage: read a crawl drop's manifest, validate every line, land it in Delta, quarantine the rest."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.config import FacelakeConfig, add_config_arguments, config_from_args, log_config
from jobs.manifest import ManifestRecord, Rejection, drop_id_for, parse_line
from jobs.runs import RunContext, configure_logging
from jobs.tables import init_lake, merge_new_rows

log = logging.getLogger("facelake.ingest")

MANIFEST_NAME = "manifest.jsonl"

# One row per manifest line, valid or not, before it is split into crawl_manifest and quarantine.
_PARSED = T.StructType(
    [
        T.StructField("line_no", T.IntegerType(), False),
        T.StructField("ok", T.BooleanType(), False),
        T.StructField("image_path", T.StringType()),
        T.StructField("source_url", T.StringType()),
        T.StructField("page_url", T.StringType()),
        T.StructField("crawled_at", T.TimestampType()),
        T.StructField("country", T.StringType()),
        T.StructField("tags", T.ArrayType(T.StringType(), False)),
        T.StructField("platform", T.StringType()),
        T.StructField("extra", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("detail", T.StringType()),
        T.StructField("raw_line", T.StringType()),
    ]
)


def _parsed_row(line: str, line_no: int) -> tuple[Any, ...]:
    parsed = parse_line(line, line_no)
    if isinstance(parsed, ManifestRecord):
        return (line_no, True, parsed.image_path, parsed.source_url, parsed.page_url, parsed.crawled_at,
                parsed.country, parsed.tags, parsed.platform, parsed.extra, None, None, None)
    assert isinstance(parsed, Rejection)
    return (line_no, False, parsed.image_path, parsed.source_url, None, None, None, None, None, None,
            parsed.reason.value, parsed.detail, parsed.raw_line)


def manifest_uri(drop: str) -> str:
    return drop.rstrip("/") + "/" + MANIFEST_NAME


def read_drop_id(spark: SparkSession, drop: str) -> str:
    """The drop's deterministic id, from the manifest bytes (works for local paths and object stores)."""
    from pyspark.errors import AnalysisException

    try:
        row = spark.read.format("binaryFile").load(manifest_uri(drop)).select("content").first()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" not in str(exc):
            raise
        row = None
    if row is None:
        raise FileNotFoundError(f"no {MANIFEST_NAME} in drop {drop}")
    return drop_id_for(bytes(row["content"]))


def parse_manifest(spark: SparkSession, drop: str) -> DataFrame:
    """Every non-blank manifest line parsed on the executors, with its 1-based line number."""
    lines = spark.sparkContext.textFile(manifest_uri(drop)).zipWithIndex()
    rows = lines.filter(lambda li: li[0].strip() != "").map(lambda li: _parsed_row(li[0], li[1] + 1))
    return spark.createDataFrame(rows, _PARSED)


def ingest_manifest(spark: SparkSession, config: FacelakeConfig, run: RunContext) -> dict[str, int]:
    """Land a drop's valid manifest lines in ``crawl_manifest`` and its bad lines in ``quarantine``.

    Idempotent: the drop id comes from the manifest bytes and rows are MERGEd on their keys,
    so ingesting the same drop again inserts nothing.
    """
    from pyspark.sql import functions as F

    if not config.drop:
        raise ValueError("no drop given: pass --drop DIR (or set FACELAKE_DROP)")
    drop_id = read_drop_id(spark, config.drop)
    run.inputs.update({"drop_id": drop_id})
    run.progress("drop %s: parsing %s", drop_id, MANIFEST_NAME)
    init_lake(spark, config.lake)
    parsed = parse_manifest(spark, config.drop).cache()
    now = F.lit(datetime.now(UTC)).cast("timestamp")
    stamp = {"drop_id": F.lit(drop_id), "run_id": F.lit(run.run_id)}

    good = parsed.where("ok").withColumns({**stamp, "ingested_at": now})
    bad = parsed.where("NOT ok").withColumns(
        {
            **stamp,
            "quarantined_at": now,
            "file_sha256": F.lit(None).cast("string"),
            "byte_size": F.lit(None).cast("long"),
            "quarantine_id": F.sha2(
                F.concat_ws("\x1f", F.lit(drop_id), F.col("line_no").cast("string"), F.col("reason")), 256
            ),
        }
    )
    lines = parsed.count()
    reasons = Counter({r["reason"]: r["count"] for r in bad.groupBy("reason").count().collect()})
    run.count("manifest_lines", lines)
    run.count("valid_lines", lines - sum(reasons.values()))
    run.count("quarantined_lines", sum(reasons.values()))
    run.count("manifest_rows_inserted", merge_new_rows(spark, config.lake, "crawl_manifest", good, run))
    run.count("quarantine_rows_inserted", merge_new_rows(spark, config.lake, "quarantine", bad, run))
    parsed.unpersist()
    for reason, n in sorted(reasons.items()):
        run.progress("quarantined %d line(s): %s", n, reason)
    return {**run.counts, **{f"quarantine.{k}": v for k, v in reasons.items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake ingest`` flags."""
    parser.add_argument("--drop", help="crawl drop folder or URI holding manifest.jsonl")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the ingest job for parsed CLI arguments; prints a summary, returns the exit code."""
    from jobs.spark import get_spark

    config = config_from_args(args)
    configure_logging(config.log_level)
    run_ctx = RunContext(job="ingest")
    log_config(config, "ingest")
    spark = get_spark(config, "facelake-ingest")
    counts = ingest_manifest(spark, config, run_ctx)
    log.debug("counts %s", counts)
    print(run_ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.ingest --drop DIR --lake URI``."""
    parser = argparse.ArgumentParser(prog="facelake ingest", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
