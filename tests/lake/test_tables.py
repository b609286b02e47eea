"""Delta tables built from schemas/: creation, idempotent MERGE, commit metadata and time travel."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.core.runs import RunContext
from jobs.lake.schemas import schema_differences, schema_of, table_names
from jobs.lake.tables import init_lake, merge_new_rows, read_table, table_uri


def _manifest_rows(spark: SparkSession, n: int, drop_id: str = "d" * 16):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return spark.createDataFrame(
        [
            (
                drop_id,
                i,
                f"images/{i}.jpg",
                f"https://example.com/{i}.jpg",
                None,
                now,
                "GB" if i % 2 else None,
                ["uk"] if i % 2 else None,
                "forum",
                None,
                now,
                "run-1",
                "/crawls/drop-1",
            )
            for i in range(1, n + 1)
        ],
        schema_of("crawl_manifest"),
    )


def test_init_lake_creates_every_table_with_its_exact_schema(spark: SparkSession, lake: str) -> None:
    created = init_lake(spark, lake)
    assert sorted(created) == table_names()
    for name in table_names():
        table = DeltaTable.forPath(spark, table_uri(lake, name))
        assert schema_differences(table.toDF().schema, schema_of(name)) == [], name
        detail = table.detail().first()
        assert detail["properties"].get("delta.enableDeletionVectors") == "false"
    # Idempotent: creating again adds no version.
    init_lake(spark, lake)
    assert DeltaTable.forPath(spark, table_uri(lake, "images")).history().count() == 1


def test_time_travel_reads_an_older_version_back(spark: SparkSession, lake: str) -> None:
    run = RunContext(job="test")
    assert merge_new_rows(spark, lake, "crawl_manifest", _manifest_rows(spark, 4), run) == 4
    uri = table_uri(lake, "crawl_manifest")
    v_insert = DeltaTable.forPath(spark, uri).history(1).first()["version"]

    DeltaTable.forPath(spark, uri).update("line_no = 2", {"platform": "'news'"})
    latest = {r["line_no"]: r["platform"] for r in read_table(spark, lake, "crawl_manifest").collect()}
    before = {
        r["line_no"]: r["platform"] for r in read_table(spark, lake, "crawl_manifest", v_insert).collect()
    }
    assert latest[2] == "news"
    assert before == {1: "forum", 2: "forum", 3: "forum", 4: "forum"}
    assert (
        schema_differences(
            read_table(spark, lake, "crawl_manifest", v_insert).schema, schema_of("crawl_manifest")
        )
        == []
    )


def test_merge_is_idempotent_and_records_the_run(spark: SparkSession, lake: str) -> None:
    run = RunContext(job="test", inputs={"drop_id": "d" * 16})
    assert merge_new_rows(spark, lake, "crawl_manifest", _manifest_rows(spark, 3), run) == 3
    uri = table_uri(lake, "crawl_manifest")
    versions = DeltaTable.forPath(spark, uri).history().count()
    rerun = RunContext(job="test")
    assert merge_new_rows(spark, lake, "crawl_manifest", _manifest_rows(spark, 3), rerun) == 0
    assert DeltaTable.forPath(spark, uri).history().count() == versions  # not even an empty commit
    # Overlapping input: only the new key lands.
    assert merge_new_rows(spark, lake, "crawl_manifest", _manifest_rows(spark, 5), rerun) == 2
    meta = json.loads(DeltaTable.forPath(spark, uri).history(1).first()["userMetadata"])
    assert meta["run_id"] == rerun.run_id and meta["job"] == "test"
    first = DeltaTable.forPath(spark, uri).history().orderBy("version").collect()[1]
    assert json.loads(first["userMetadata"])["inputs"] == {"drop_id": "d" * 16}
    assert read_table(spark, lake, "crawl_manifest").count() == 5


def test_row_id_col_agrees_with_row_id(spark) -> None:
    from jobs.core.ids import row_id
    from jobs.lake.tables import row_id_col

    rows = [("a", 1, None), ("é\x1f", 22, "x"), ("", None, "")]
    got = [
        r[0]
        for r in spark.createDataFrame(rows, "s string, n int, o string")
        .select(row_id_col("s", "n", "o"))
        .collect()
    ]
    assert got == [row_id(*r) for r in rows]


@pytest.mark.parametrize(
    "name,column",
    [("crawl_manifest", "drop_uri"), ("quarantine", "drop_uri"), ("dq_results", "validation_id")],
)
def test_a_table_created_before_a_column_existed_gets_it(
    spark: SparkSession, lake: str, name: str, column: str
) -> None:
    from pyspark.sql.types import StructType

    from jobs.lake.tables import ensure_table

    old = StructType([f for f in schema_of(name).fields if f.name != column])
    uri = table_uri(lake, name)
    DeltaTable.createIfNotExists(spark).location(uri).addColumns(old).execute()
    assert column not in read_table(spark, lake, name).columns
    ensure_table(spark, lake, name)
    # Added at the end, nullable: the same schema a new lake gets (new columns are last in the file).
    assert schema_differences(read_table(spark, lake, name).schema, schema_of(name)) == []
