"""Suppression list: URL and host hashing agree between Python and Spark, and never store the URL or host."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.ids import host_digest, normalize_url, row_id, url_digest
from jobs.core.runs import RunContext
from jobs.ingest.suppression import load_suppression, without_suppressed_hosts
from jobs.lake.schemas import schema_of
from jobs.lake.tables import host_sha256, host_suffixes, merge_new_rows, read_table, url_sha256

URLS = ["https://www.Example.co.uk/a.jpg", " https://example.com/a.jpg#frag ", "http://x.org/P?q=1"]
# Hosts as ingest stores them (normalised by jobs.core.hosts), plus one in capitals.
HOSTS = ["example.co.uk", "www.example.co.uk", "xn--bcher-kva.example", "uk", "CDN.Example.com"]


def test_normalisation() -> None:
    assert normalize_url(" HTTPS://Example.com/A.jpg#x ") == "https://example.com/a.jpg"
    assert url_digest("https://example.com/a.jpg") == url_digest("HTTPS://EXAMPLE.COM/a.jpg#top")
    assert len(url_digest("https://example.com/a.jpg")) == 64


def test_spark_and_python_digests_agree(spark: SparkSession) -> None:
    df = spark.createDataFrame([(u,) for u in URLS], "url string")
    got = [r["h"] for r in df.select(url_sha256(F.col("url")).alias("h")).collect()]
    assert got == [url_digest(u) for u in URLS]


def test_host_digest_is_the_sha256_of_the_normalised_host() -> None:
    expected = hashlib.sha256(b"example.co.uk").hexdigest()
    for spelling in ("example.co.uk", "EXAMPLE.Co.Uk.", " example.co.uk ", "ｅｘａｍｐｌｅ．co．uk"):
        assert host_digest(spelling) == expected, spelling
    assert host_digest("bücher.example") == hashlib.sha256(b"xn--bcher-kva.example").hexdigest()
    assert host_digest("example.co.uk") != host_digest("www.example.co.uk")
    for not_a_host in ("", "https://example.com/", "exa mple.com", "a..b"):
        with pytest.raises(ValueError, match="not a host name"):
            host_digest(not_a_host)


def test_spark_and_python_host_digests_agree(spark: SparkSession) -> None:
    df = spark.createDataFrame([(h,) for h in HOSTS], "host string")
    got = [r["h"] for r in df.select(host_sha256(F.col("host")).alias("h")).collect()]
    assert got == [host_digest(h) for h in HOSTS]
    # Every suffix ingest derives from a stored host hashes as host_digest hashes that suffix.
    suffixes = df.select(F.explode(host_suffixes(F.col("host"))).alias("s")).select(
        "s", host_sha256(F.col("s")).alias("h")
    )
    assert {(r["s"], r["h"]) for r in suffixes.collect()} >= {
        ("example.co.uk", host_digest("example.co.uk")),
        ("co.uk", host_digest("co.uk")),
        ("Example.com", host_digest("example.com")),
    }


def test_empty_lake_has_nothing_suppressed(spark: SparkSession, lake: str) -> None:
    suppressed = load_suppression(spark, lake)
    assert not suppressed.has_content and not suppressed.has_urls and not suppressed.has_hosts


def test_a_suppressed_host_blocks_itself_and_its_subdomains_only(spark: SparkSession, lake: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [("host", host_digest("example.com")), ("host", host_digest("blocked.co.uk"))]
    merge_new_rows(
        spark,
        lake,
        "suppression",
        spark.createDataFrame(
            [(row_id(kind, value), kind, value, "e1", now) for kind, value in entries],
            schema_of("suppression"),
        ),
        RunContext(job="test"),
    )
    # The table holds digests only: no host, not even a part of one.
    stored = [r["value"] for r in read_table(spark, lake, "suppression").collect()]
    assert sorted(stored) == sorted(v for _, v in entries)
    assert not any("example" in v or "blocked" in v for v in stored)

    suppressed = load_suppression(spark, lake)
    assert suppressed.has_hosts and not suppressed.has_urls and not suppressed.has_content
    lines = spark.createDataFrame(
        [
            (1, "example.com", None),  # the host itself
            (2, "cdn.img.example.com", "www.other.org"),  # a subdomain
            (3, "evil-example.com", None),  # ends with the same letters, another domain
            (4, "notexample.com", "example.com.evil.net"),  # neither is under example.com
            (5, "img.other.org", "www.example.com"),  # the page is on a suppressed host
            (6, "blocked.co.uk", None),
            (7, "unblocked.co.uk", "co.uk"),  # a parent of a suppressed host is not suppressed
            (8, "img.other.org", None),
        ],
        "line_no int, source_host string, page_host string",
    )
    kept = without_suppressed_hosts(lines, suppressed.hosts, ("source_host", "page_host"))
    assert sorted(r["line_no"] for r in kept.collect()) == [3, 4, 7, 8]
    assert kept.columns == lines.columns
