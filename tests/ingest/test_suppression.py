"""Suppression list: URL hashing agrees between Python and Spark, and never stores the URL."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.ids import normalize_url, url_digest
from jobs.ingest.suppression import load_suppression
from jobs.lake.tables import url_sha256

URLS = ["https://www.Example.co.uk/a.jpg", " https://example.com/a.jpg#frag ", "http://x.org/P?q=1"]


def test_normalisation() -> None:
    assert normalize_url(" HTTPS://Example.com/A.jpg#x ") == "https://example.com/a.jpg"
    assert url_digest("https://example.com/a.jpg") == url_digest("HTTPS://EXAMPLE.COM/a.jpg#top")
    assert len(url_digest("https://example.com/a.jpg")) == 64


def test_spark_and_python_digests_agree(spark: SparkSession) -> None:
    df = spark.createDataFrame([(u,) for u in URLS], "url string")
    got = [r["h"] for r in df.select(url_sha256(F.col("url")).alias("h")).collect()]
    assert got == [url_digest(u) for u in URLS]


def test_empty_lake_has_nothing_suppressed(spark: SparkSession, lake: str) -> None:
    suppressed = load_suppression(spark, lake)
    assert not suppressed.has_content and not suppressed.has_urls
