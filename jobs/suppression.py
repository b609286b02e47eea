"""Suppression list: content hashes and URL hashes that must never be ingested again."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.tables import ensure_table, read_table

KINDS = ("sha256", "phash", "url_sha256")


def normalize_url(url: str) -> str:
    """The form a URL is hashed in: trimmed, fragment dropped, lower-cased (over-matching is the safe side)."""
    return re.sub(r"#.*$", "", url.strip()).lower()


def url_digest(url: str) -> str:
    """sha256 of the normalised URL: what the suppression list stores instead of the URL."""
    return hashlib.sha256(normalize_url(url).encode("utf-8")).hexdigest()


def url_sha256(url: Column) -> Column:
    """Spark twin of ``url_digest`` (tested to agree)."""
    return F.sha2(F.lower(F.regexp_replace(F.trim(url), "#.*$", "")), 256)


@dataclass
class Suppressed:
    """The suppression table split by kind, as small DataFrames (column ``value``)."""

    sha256s: DataFrame
    phashes: DataFrame
    url_hashes: DataFrame  # column url_sha256
    has_content: bool
    has_urls: bool


def load_suppression(spark: SparkSession, lake: str, version: int | None = None) -> Suppressed:
    """Read the suppression table once per run (it is small: one row per erased item)."""
    ensure_table(spark, lake, "suppression")
    table = read_table(spark, lake, "suppression", version=version).select("kind", "value").cache()
    kinds = {r["kind"] for r in table.select("kind").distinct().collect()}
    return Suppressed(
        sha256s=table.where("kind = 'sha256'").select("value"),
        phashes=table.where("kind = 'phash'").select("value"),
        url_hashes=table.where("kind = 'url_sha256'").select(F.col("value").alias("url_sha256")),
        has_content=bool(kinds & {"sha256", "phash"}),
        has_urls="url_sha256" in kinds,
    )
