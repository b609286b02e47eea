"""Table maintenance: re-apply declared properties and stats columns, OPTIMIZE (Z-order), VACUUM by retention."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.runs import RunContext, start_run
from jobs.lake.api import Lake
from jobs.lake.fs import hadoop_path
from jobs.lake.schemas import table_names, table_spec
from jobs.lake.tables import commit_metadata

OPTIMIZE_MODES = ("zorder", "compact", "none")
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_INTERVAL = re.compile(
    r"^\s*interval\s+(\d+(?:\.\d+)?)\s+(hour|hours|day|days|week|weeks)\s*$", re.IGNORECASE
)
_HOURS_PER = {"hour": 1, "day": 24, "week": 24 * 7}


def interval_hours(interval: str) -> float:
    """Hours in a Delta retention property such as ``interval 7 days``."""
    match = _INTERVAL.match(interval)
    if not match:
        raise ValueError(f"cannot read retention interval {interval!r} (expected e.g. 'interval 7 days')")
    return float(match.group(1)) * _HOURS_PER[match.group(2).lower().rstrip("s")]


def properties_to_set(declared: dict[str, str], actual: dict[str, str]) -> dict[str, str]:
    """Declared table properties the table lacks or holds with another value."""
    return {k: v for k, v in declared.items() if str(actual.get(k, "")).lower() != v.lower()}


def optimize_plan(mode: str, zorder_by: tuple[str, ...], num_files: int) -> str | None:
    """What OPTIMIZE to run on a table: ``zorder``, ``compact`` or nothing.

    A table held in one file has nothing to compact or order across; skipping it keeps a nightly
    rerun from rewriting it (Z-order rewrites every file it is given).
    """
    if mode not in OPTIMIZE_MODES:
        raise ValueError(f"optimize mode must be one of {', '.join(OPTIMIZE_MODES)}, not {mode!r}")
    if mode == "none" or num_files <= 1:
        return None
    if mode == "zorder" and zorder_by:
        return "zorder"
    return "compact"


def _delta_log(spark: SparkSession, uri: str):  # -> (org.apache.spark.sql.delta.DeltaLog, Snapshot)
    """Delta's own log object and its latest snapshot (JVM; no public Python API reaches file stats)."""
    pair = spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.forTableWithSnapshot(
        spark._jsparkSession, uri
    )
    return pair._1(), pair._2()


def stats_columns_in_use(spark: SparkSession, uri: str) -> set[str]:
    """Top-level columns that any live file of the table carries statistics for in the log."""
    _, snapshot = _delta_log(spark, uri)
    files = DataFrame(snapshot.allFiles().toDF(), spark).where(F.col("stats").isNotNull())
    keys = F.concat(
        *[
            F.coalesce(
                F.json_object_keys(F.get_json_object("stats", f"$.{part}")), F.array().cast("array<string>")
            )
            for part in ("minValues", "maxValues", "nullCount")
        ]
    )
    return {row[0] for row in files.select(F.explode(keys)).distinct().collect()}


def recompute_stats(spark: SparkSession, uri: str) -> None:
    """Rewrite every live file's statistics under the table's current stats columns (one commit).

    Setting ``delta.dataSkippingStatsColumns`` only changes what later writes record: files
    written before keep their old statistics (URL prefixes and all) and every new checkpoint and
    checksum copies them. Delta's COMPUTE STATS replaces them without rewriting data files; open
    source Delta 4.4 has no SQL statement for it, hence the JVM call.
    """
    jvm = spark.sparkContext._jvm
    delta_log, _ = _delta_log(spark, uri)
    stats = getattr(jvm.org.apache.spark.sql.delta.stats, "StatisticsCollection$").__getattr__("MODULE$")
    stats.recompute(
        spark._jsparkSession,
        delta_log,
        jvm.scala.Option.empty(),
        getattr(stats, "recompute$default$4")(),
        getattr(stats, "recompute$default$5")(),
    )


@dataclass
class TableReport:
    table: str
    properties_set: list[str] = field(default_factory=list)
    stats_recomputed: list[str] = field(default_factory=list)
    """Columns whose statistics live files still carried, outside the declared stats columns."""
    optimize: str | None = None
    files_before: int = 0
    files_after: int = 0
    vacuum_retention_hours: float | None = None
    files_vacuumed: int = 0
    version_before: int = 0
    version_after: int = 0


def _data_files(spark: SparkSession, uri: str) -> int:
    """Parquet files under the table folder, live or not (what VACUUM can delete)."""
    fs, path = hadoop_path(spark, uri)
    if not fs.exists(path):
        return 0
    files = fs.listFiles(path, True)
    count = 0
    while files.hasNext():
        status = files.next()
        name = status.getPath().getName()
        if name.endswith(".parquet") and "_delta_log" not in status.getPath().toString():
            count += 1
    return count


def maintain_table(
    spark: SparkSession,
    lake: Lake,
    name: str,
    run: RunContext,
    *,
    optimize: str = "zorder",
    vacuum: bool = True,
    retention_hours: float | None = None,
) -> TableReport:
    """Maintain one table; every commit it makes carries the run's identity."""
    spec = table_spec(name)
    delta = lake._delta(name)
    report = TableReport(name, version_before=lake.latest_version(name))
    detail = delta.detail().select("numFiles", "properties").first()
    with commit_metadata(spark, run):
        missing = properties_to_set(spec.properties, detail["properties"] or {})
        if missing:
            assignments = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(missing.items()))
            spark.sql(f"ALTER TABLE delta.`{lake.uri(name)}` SET TBLPROPERTIES ({assignments})")
            report.properties_set = sorted(missing)
        # Checked on every run, not only when the property changes, so a run that died between
        # the ALTER and the recompute is finished by the next one.
        if spec.stats_columns is not None and int(detail["numFiles"]):
            extra = stats_columns_in_use(spark, lake.uri(name)) - {c.lower() for c in spec.stats_columns}
            if extra:
                recompute_stats(spark, lake.uri(name))
                report.stats_recomputed = sorted(extra)
        report.files_before = int(detail["numFiles"])
        report.optimize = optimize_plan(optimize, spec.zorder_by, report.files_before)
        if report.optimize == "zorder":
            delta.optimize().executeZOrderBy(*spec.zorder_by)
        elif report.optimize == "compact":
            delta.optimize().executeCompaction()
        report.files_after = int(delta.detail().select("numFiles").first()[0])
        if vacuum:
            declared = interval_hours(
                spec.properties.get("delta.deletedFileRetentionDuration", "interval 7 days")
            )
            hours = declared if retention_hours is None else float(retention_hours)
            report.vacuum_retention_hours = hours
            on_disk = _data_files(spark, lake.uri(name))
            # Delta refuses a retention shorter than the table's own unless told; an operator who
            # configures one has chosen to give up time travel that far back.
            previous = spark.conf.get(RETENTION_CHECK, "true")
            if hours < declared:
                spark.conf.set(RETENTION_CHECK, "false")
            try:
                delta.vacuum(hours)
            finally:
                spark.conf.set(RETENTION_CHECK, previous)
            report.files_vacuumed = on_disk - _data_files(spark, lake.uri(name))
    report.version_after = lake.latest_version(name)
    return report


def maintain(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    *,
    tables: list[str] | None = None,
    optimize: str = "zorder",
    vacuum: bool = True,
) -> list[TableReport]:
    """Maintain every existing facelake table (or ``tables``); returns one report per table.

    VACUUM keeps files younger than ``config.vacuum_retention_hours`` (default: each table's
    ``delta.deletedFileRetentionDuration``), so time travel inside that window keeps working.
    """
    lake = Lake(spark, config.lake)
    names = tables or lake.tables()
    unknown = sorted(set(names) - set(table_names()))
    if unknown:
        raise ValueError(f"unknown table(s) {', '.join(unknown)}; known: {', '.join(table_names())}")
    run.inputs.update(
        {
            "tables": names,
            "optimize": optimize,
            "vacuum": vacuum,
            "retention_hours": config.vacuum_retention_hours,
        }
    )
    reports = []
    for name in names:
        report = maintain_table(
            spark,
            lake,
            name,
            run,
            optimize=optimize,
            vacuum=vacuum,
            retention_hours=config.vacuum_retention_hours,
        )
        run.progress(
            "%s: optimize=%s files %d -> %d, vacuumed %d file(s) (retention %s h), properties set %s, "
            "stats dropped from the log for %d column(s)",
            name,
            report.optimize or "skipped",
            report.files_before,
            report.files_after,
            report.files_vacuumed,
            report.vacuum_retention_hours,
            report.properties_set or "none",
            len(report.stats_recomputed),
        )
        run.count("files_compacted", max(report.files_before - report.files_after, 0))
        run.count("files_vacuumed", report.files_vacuumed)
        reports.append(report)
    return reports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables", help="comma-separated tables (default: every table in the lake)")
    parser.add_argument(
        "--optimize",
        choices=OPTIMIZE_MODES,
        default="zorder",
        help="zorder (default: Z-order by each table's zorder_by columns), compact, or none",
    )
    parser.add_argument("--no-vacuum", dest="vacuum", action="store_false", help="skip VACUUM")
    parser.add_argument(
        "--retention-hours",
        dest="vacuum_retention_hours",
        type=float,
        help="VACUUM retention in hours (default: each table's deletedFileRetentionDuration)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Maintain the lake's tables and print one line per table."""
    from jobs.lake.session import get_spark

    config, ctx = start_run(args, "maintain")
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    reports = maintain(
        get_spark(config, "facelake-maintain"),
        config,
        ctx,
        tables=tables,
        optimize=args.optimize,
        vacuum=args.vacuum,
    )
    for r in reports:
        print(
            f"{r.table}: version {r.version_before} -> {r.version_after}, optimize {r.optimize or 'skipped'} "
            f"(files {r.files_before} -> {r.files_after}), vacuumed {r.files_vacuumed} file(s)"
        )
    print(ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``facelake maintain`` as a program: ``python -m jobs.lake.maintain --help``."""
    return command_main("maintain", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
