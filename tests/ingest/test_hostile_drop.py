"""A hostile crawl drop ingests completely: every line ingested or quarantined with its reason, nothing outside read."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hostile_drop import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    OK,
    SUPPRESSED,
    SUPPRESSED_HOST,
    URL_MARKER,
    HostileDrop,
    build_hostile_drop,
)
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.ids import host_digest
from jobs.core.runs import RunContext
from jobs.ingest.job import ingest_drop
from jobs.lake.schemas import schema_of, table_names
from jobs.lake.tables import merge_new_rows, read_table


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def hostile(
    spark: SparkSession, spark_config: FacelakeConfig, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """The hostile corpus ingested once (with one host on the suppression list), plus the run's log lines."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = build_hostile_drop(root)
    lake = str(root / "lake")
    config = spark_config.replace(
        lake=lake, drop=str(corpus.drop), max_image_bytes=MAX_IMAGE_BYTES, max_image_pixels=MAX_IMAGE_PIXELS
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    merge_new_rows(
        spark,
        lake,
        "suppression",
        spark.createDataFrame(
            [("h1", "host", host_digest(SUPPRESSED_HOST), "e1", now)], schema_of("suppression")
        ),
        RunContext(job="test"),
    )
    handler = _Collect()
    root_logger, facelake_logger = logging.getLogger(), logging.getLogger("facelake")
    level = facelake_logger.level
    root_logger.addHandler(handler)
    facelake_logger.setLevel(logging.DEBUG)  # every line the job can write, debug included
    try:
        report = ingest_drop(spark, config, RunContext(job="ingest"))
    finally:
        root_logger.removeHandler(handler)
        facelake_logger.setLevel(level)
    return {
        "corpus": corpus,
        "lake": lake,
        "report": report,
        "log": handler.lines,
        "root": root,
        "sources": read_table(spark, lake, "image_sources").collect(),
        "manifest": read_table(spark, lake, "crawl_manifest").collect(),
        "quarantine": read_table(spark, lake, "quarantine").collect(),
        "image_ids": {r["image_id"] for r in read_table(spark, lake, "images").select("image_id").collect()},
    }


def test_every_line_is_ingested_or_quarantined_with_its_reason(hostile: dict) -> None:
    corpus: HostileDrop = hostile["corpus"]
    sourced = {r["line_no"] for r in hostile["sources"]}
    quarantined = {r["line_no"]: r["reason"] for r in hostile["quarantine"]}
    got = {}
    for line_no in corpus.expected:
        if line_no in quarantined:
            got[line_no] = quarantined[line_no]
        elif line_no in sourced:
            got[line_no] = OK
        else:
            got[line_no] = SUPPRESSED
    wrong = {
        n: (corpus.classes[n], corpus.expected[n], got[n])
        for n in corpus.expected
        if got[n] != corpus.expected[n]
    }
    assert not wrong
    report = hostile["report"]
    assert report.counts["manifest_lines"] == len(corpus.expected)
    assert report.counts["quarantined"] == sum(
        1 for e in corpus.expected.values() if e not in (OK, SUPPRESSED)
    )
    assert report.counts["suppressed"] == sum(1 for e in corpus.expected.values() if e == SUPPRESSED)


def test_hosts_are_normalised_and_tagged_like_a_browser_resolves_them(hostile: dict) -> None:
    corpus: HostileDrop = hostile["corpus"]
    by_line = {r["line_no"]: r for r in hostile["sources"]}
    for line_no, uk in corpus.uk.items():
        row = by_line[line_no]
        assert (
            row["source_host"]
            and row["source_host"].isascii()
            and row["source_host"] == row["source_host"].lower()
        )
        assert ("uk" in row["jurisdiction_tags"]) is uk, corpus.classes[line_no]


def test_nothing_outside_the_drop_is_read(hostile: dict) -> None:
    corpus: HostileDrop = hostile["corpus"]
    stored = hostile["image_ids"] | {r["file_sha256"] for r in hostile["quarantine"]}
    assert not stored & set(corpus.outside_sha256)
    lake_bytes = b"".join(p.read_bytes() for p in Path(hostile["lake"]).rglob("*") if p.is_file())
    for marker in corpus.outside_markers:
        assert marker not in lake_bytes


def test_no_url_in_delta_logs_run_logs_or_data_docs(hostile: dict) -> None:
    lake = Path(hostile["lake"])
    # The marker is in the data (image_sources keeps its URLs) but nowhere Delta keeps history or stats.
    assert any(URL_MARKER in r["source_url"] for r in hostile["sources"])
    leaks = []
    for table in table_names():
        for path in (lake / "tables" / table / "_delta_log").rglob("*"):
            if path.is_file() and URL_MARKER.encode() in path.read_bytes():
                leaks.append(str(path.relative_to(lake)))
    for path in (lake / "data_docs").rglob("*"):
        if path.is_file() and URL_MARKER.encode() in path.read_bytes():
            leaks.append(str(path.relative_to(lake)))
    assert not leaks
    assert hostile["log"] and not [line for line in hostile["log"] if URL_MARKER in line]
