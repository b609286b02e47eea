"""`facelake sql`: every table as a view, latest or as of a version, printed as a table or JSON lines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lakedata import faces, rows
from pyspark.sql import SparkSession

from jobs.commands.sql import format_table, jsonable, parse_versions, run_sql
from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.lake.api import LakeError
from jobs.lake.tables import merge_new_rows

FACELAKE = str(Path(sys.executable).parent / "facelake")


def test_parse_versions() -> None:
    assert parse_versions(None) is None
    assert parse_versions(["3"]) == 3
    assert parse_versions(["faces=2", "images=0"]) == {"faces": 2, "images": 0}
    with pytest.raises(ValueError, match="not a version number"):
        parse_versions(["latest"])
    with pytest.raises(ValueError, match="TABLE=N"):
        parse_versions(["1", "2"])
    with pytest.raises(ValueError, match="start at 0"):
        parse_versions(["-1"])


def test_format_table_and_json_values() -> None:
    text = format_table(["id", "content", "tags"], [("a", b"\x89PNG" * 100, ["uk"]), ("bb", None, [])])
    lines = text.splitlines()
    assert lines[0].split(" | ") == ["id", "content    ", "tags"]
    assert "<400 bytes>" in lines[2] and "PNG" not in text  # image bytes never reach the terminal
    assert lines[3].startswith("bb | NULL")
    assert format_table(["x"], [("y" * 100,)], width=10).splitlines()[2] == "y" * 9 + "…"
    assert jsonable({"t": datetime(2026, 1, 2, tzinfo=UTC), "b": b"\x00\x01"}) == {
        "t": "2026-01-02T00:00:00+00:00",
        "b": "AAE=",
    }


@pytest.fixture
def two_version_lake(spark: SparkSession, config: FacelakeConfig) -> FacelakeConfig:
    merge_new_rows(spark, config.lake, "faces", faces(spark, ["a", "b-uk"]), RunContext(job="embed"))  # 1
    merge_new_rows(spark, config.lake, "faces", faces(spark, ["c"]), RunContext(job="embed"))  # 2
    supp = rows(spark, "suppression", [{"suppression_id": "s1", "kind": "sha256"}])
    merge_new_rows(spark, config.lake, "suppression", supp, RunContext(job="erasure"))  # 1
    return config


def test_query_latest_and_as_of_versions(spark: SparkSession, two_version_lake: FacelakeConfig) -> None:
    query = "SELECT face_id, size(jurisdiction_tags) AS tags FROM faces ORDER BY face_id"
    out = io.StringIO()
    assert run_sql(two_version_lake, query, as_json=True, limit=None, out=out, spark=spark) == 3
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"face_id": "a", "tags": 0},
        {"face_id": "b-uk", "tags": 1},
        {"face_id": "c", "tags": 0},
    ]

    out = io.StringIO()
    run_sql(two_version_lake, query, version=1, as_json=True, limit=None, out=out, spark=spark)
    assert [json.loads(line)["face_id"] for line in out.getvalue().splitlines()] == ["a", "b-uk"]

    # Per-table versions: faces as of 1 joined with the latest suppression.
    out = io.StringIO()
    count_query = "SELECT (SELECT count(*) FROM faces) AS f, (SELECT count(*) FROM suppression) AS s"
    run_sql(
        two_version_lake, count_query, version={"faces": 1}, as_json=True, limit=None, out=out, spark=spark
    )
    assert json.loads(out.getvalue()) == {"f": 2, "s": 1}

    out = io.StringIO()
    assert run_sql(two_version_lake, query, limit=2, out=out, spark=spark) == 2
    text = out.getvalue().splitlines()
    assert text[0].split() == ["face_id", "|", "tags"] and text[2].startswith("a ")
    assert text[-1] == "(2 rows) (more rows not shown: raise --limit)"


def test_unreadable_version_and_bad_query_are_clear(
    spark: SparkSession, two_version_lake: FacelakeConfig
) -> None:
    with pytest.raises(LakeError, match=r"not registered at this version: suppression"):
        # suppression has no version 2: it is left out, and the error says so
        run_sql(two_version_lake, "SELECT * FROM suppression", version=2, out=io.StringIO(), spark=spark)
    with pytest.raises(LakeError, match="query failed"):
        run_sql(two_version_lake, "SELEC nonsense", out=io.StringIO(), spark=spark)


def test_console_command_prints_clean_json_lines(two_version_lake: FacelakeConfig) -> None:
    env = {
        **os.environ,
        "FACELAKE_SPARK_MASTER": "local[1]",
        "FACELAKE_DRIVER_MEMORY": "1g",
        "FACELAKE_SHUFFLE_PARTITIONS": "2",
    }
    done = subprocess.run(
        [
            FACELAKE,
            "sql",
            "SELECT face_id FROM faces ORDER BY face_id",
            "--lake",
            two_version_lake.lake,
            "--version",
            "faces=1",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # stdout holds only the result, one JSON object per line (logs and Spark go to stderr).
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"face_id": "a"}, {"face_id": "b-uk"}]
