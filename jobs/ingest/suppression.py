"""Suppression list: content hashes, URL hashes and host hashes that must never be ingested again."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.lake.tables import ensure_table, host_sha256, host_suffixes, read_table, url_sha256


@dataclass
class Suppressed:
    """The suppression table split by kind, as small DataFrames (column ``value``)."""

    sha256s: DataFrame
    phashes: DataFrame
    url_hashes: DataFrame  # column url_sha256
    hosts: DataFrame  # column host_sha256: jobs.core.ids.host_digest of a host suffix
    has_content: bool
    has_urls: bool
    has_hosts: bool


def load_suppression(spark: SparkSession, lake: str, version: int | None = None) -> Suppressed:
    """Read the suppression table once per run (it is small: one row per erased item)."""
    ensure_table(spark, lake, "suppression")
    table = read_table(spark, lake, "suppression", version=version).select("kind", "value").cache()
    kinds = {r["kind"] for r in table.select("kind").distinct().collect()}
    return Suppressed(
        sha256s=table.where("kind = 'sha256'").select("value"),
        phashes=table.where("kind = 'phash'").select("value"),
        url_hashes=table.where("kind = 'url_sha256'").select(F.col("value").alias("url_sha256")),
        hosts=table.where("kind = 'host'").select(F.col("value").alias("host_sha256")),
        has_content=bool(kinds & {"sha256", "phash"}),
        has_urls="url_sha256" in kinds,
        has_hosts="host" in kinds,
    )


def without_suppressed_hosts(lines: DataFrame, hosts: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """``lines`` minus those whose host in any of ``columns`` is a suppressed host or under one.

    ``hosts`` holds digests (column ``host_sha256``): each whole-label suffix of a line's hosts is
    hashed and equi-joined against them, so ``evil-example.com`` is not under ``example.com``.
    """
    suffixes = lines.select(
        "line_no",
        F.explode(
            F.flatten(F.array(*[F.coalesce(host_suffixes(F.col(c)), F.array()) for c in columns]))
        ).alias("host_suffix"),
    )
    digests = suffixes.select("line_no", host_sha256(F.col("host_suffix")).alias("host_sha256"))
    hit = digests.join(hosts, "host_sha256", "left_semi").select("line_no").distinct()
    return lines.join(hit, "line_no", "left_anti")


def not_suppressed_now(
    spark: SparkSession, lake: str, rows: DataFrame, version: int | None = None
) -> DataFrame:
    """``rows`` minus those the suppression list names at its **latest** version (content, URL).

    A run filters with the list as it was when the run started; an erasure that ran meanwhile added
    entries since. Checked again just before each write, so a run that started before an erasure cannot
    write erased content back (the erasure's fence and settle step close what is left of the window).
    ``version``: the list at that version instead of the latest.
    """
    table = read_table(spark, lake, "suppression", version=version).select("kind", "value")
    content = table.where(F.col("kind") == "sha256").select("value")
    for column in ("image_id", "other_image_id", "file_sha256"):
        if column in rows.columns:
            rows = rows.join(content.withColumnRenamed("value", column), column, "left_anti")
    if "source_url" in rows.columns:
        urls = table.where(F.col("kind") == "url_sha256").select(F.col("value").alias("_url_sha256"))
        rows = (
            rows.withColumn("_url_sha256", url_sha256(F.col("source_url")))
            .join(urls, "_url_sha256", "left_anti")
            .drop("_url_sha256")
        )
    return rows
