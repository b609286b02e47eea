"""jobs.lake.api: time travel by version and timestamp, run history, diffs, guarded restore, purged versions."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lakedata import NOW, assert_same_rows, faces, rows
from pyspark.sql import SparkSession

from jobs.core.runs import RunContext
from jobs.lake.api import CHANGE_TYPE, Lake, LakeError, PurgedVersionError, history_records
from jobs.lake.tables import commit_metadata, ensure_table, merge_new_rows, table_uri, upsert_rows

# CLI commands run in-process reuse the test session: keep its settings (getOrCreate applies flags).
SESSION = ["--spark-master", "local[2]", "--shuffle-partitions", "2"]


@pytest.fixture(scope="module")
def built_history(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A faces table with 4 versions: create, insert a/b/c, insert d, update b + insert e-uk."""
    lake = str(tmp_path_factory.mktemp("history") / "lake")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-11-26T12:00:00")
        ensure_table(spark, lake, "faces")  # version 0
        stamps = {}
        first = RunContext(job="embed", inputs={"images_version": 3})
        merge_new_rows(spark, lake, "faces", faces(spark, ["a", "b", "c"]), first)  # 1
        stamps[1] = datetime.now(UTC)
        time.sleep(1.1)  # commit timestamps have millisecond resolution; keep versions apart
        second = RunContext(job="embed", inputs={"images_version": 4})
        merge_new_rows(spark, lake, "faces", faces(spark, ["d"]), second)  # 2
        stamps[2] = datetime.now(UTC)
        time.sleep(1.1)
        third = RunContext(job="retag", inputs={"policy_version": "2"})
        changed = faces(spark, ["b", "e-uk"], score=0.5)
        upsert_rows(spark, lake, "faces", changed, ("det_score",), third)  # 3
    return {"root": lake, "runs": [first, second, third], "stamps": stamps}


@pytest.fixture
def history_lake(spark: SparkSession, built_history: dict[str, Any]) -> dict[str, Any]:
    """The module's history lake, read-only."""
    return {**built_history, "lake": Lake(spark, built_history["root"])}


@pytest.fixture
def own_history_lake(spark: SparkSession, built_history: dict[str, Any], lake: str) -> dict[str, Any]:
    """A private copy of the history lake for tests that write (Delta logs hold relative paths)."""
    shutil.copytree(built_history["root"], lake, dirs_exist_ok=True)
    return {**built_history, "lake": Lake(spark, lake)}


def test_time_travel_by_version_and_timestamp(history_lake: dict) -> None:
    lake: Lake = history_lake["lake"]
    assert lake.latest_version("faces") == 3
    ids = lambda df: sorted(r.face_id for r in df.select("face_id").collect())  # noqa: E731
    assert ids(lake.table("faces", version=0)) == []
    assert ids(lake.table("faces", version=1)) == ["a", "b", "c"]
    assert ids(lake.table("faces", version=2)) == ["a", "b", "c", "d"]
    assert ids(lake.table("faces")) == ["a", "b", "c", "d", "e-uk"]
    scores = {r.face_id: round(r.det_score, 3) for r in lake.table("faces", version=2).collect()}
    assert scores["b"] == 0.9
    assert {r.face_id: round(r.det_score, 3) for r in lake.table("faces").collect()}["b"] == 0.5

    # A timestamp selects the version current at that instant, as Delta's timestampAsOf does.
    assert lake.version_at("faces", history_lake["stamps"][1]) == 1
    # Zone-less times are session-time-zone (UTC) wall times, like the timestamps history shows.
    assert lake.version_at("faces", history_lake["stamps"][2].replace(tzinfo=None)) == 2
    assert lake.version_at("faces", history_lake["stamps"][2].strftime("%Y-%m-%d %H:%M:%S.%f")) == 2
    assert ids(lake.table("faces", timestamp=history_lake["stamps"][2])) == ["a", "b", "c", "d"]
    assert_same_rows(lake.table("faces", timestamp=history_lake["stamps"][1]), lake.table("faces", version=1))
    with pytest.raises(LakeError, match="did not exist yet"):
        lake.table("faces", timestamp="2001-01-01 00:00:00")
    with pytest.raises(LakeError, match="has no version 9"):
        lake.table("faces", version=9)
    with pytest.raises(LakeError, match="not both"):
        lake.table("faces", version=1, timestamp="2026-01-01")
    with pytest.raises(LakeError, match="does not exist"):
        lake.table("images")


def test_history_names_the_run_that_made_each_version(history_lake: dict) -> None:
    lake: Lake = history_lake["lake"]
    first, second, third = history_lake["runs"]
    records = {r["version"]: r for r in history_records(lake, "faces")}
    assert sorted(records) == [0, 1, 2, 3]
    assert records[1]["operation"] == "MERGE" and records[1]["rows_inserted"] == 3
    assert (records[1]["job"], records[1]["run_id"]) == ("embed", first.run_id)
    assert records[1]["inputs"] == {"images_version": 3}
    assert records[1]["dag_run_id"] == "manual__2026-11-26T12:00:00"
    assert (records[2]["run_id"], records[2]["inputs"], records[2]["rows_inserted"]) == (
        second.run_id,
        {"images_version": 4},
        1,
    )
    assert (records[3]["job"], records[3]["rows_inserted"], records[3]["rows_updated"]) == ("retag", 1, 1)
    assert lake.last_version_by("faces", "embed") == 2
    assert lake.last_version_by("faces", "index") is None
    assert [r.version for r in lake.history("faces", limit=2).collect()] == [3, 2]


@pytest.mark.parametrize("method", ["cdf", "key"])
def test_diff_finds_exactly_the_rows_changed(history_lake: dict, method: str) -> None:
    lake: Lake = history_lake["lake"]
    changes = lake.diff("faces", 1, 3, method=method)
    got = sorted((r.face_id, r[CHANGE_TYPE], round(r.det_score, 3)) for r in changes.collect())
    assert got == [
        ("b", "update_postimage", 0.5),
        ("b", "update_preimage", 0.9),
        ("d", "insert", 0.9),
        ("e-uk", "insert", 0.5),
    ]
    assert lake.diff_counts("faces", 0, 2, method=method) == {"insert": 4, "update": 0, "delete": 0}
    assert lake.diff("faces", 2, 2, method=method).count() == 0
    # Every column comes back with the table's own types.
    types = lambda df: [(f.name, f.dataType) for f in df.schema.fields]  # noqa: E731
    assert types(changes.drop(CHANGE_TYPE)) == types(lake.table("faces"))


def test_diff_methods_agree_across_delete_and_restore(own_history_lake: dict, spark: SparkSession) -> None:
    lake: Lake = own_history_lake["lake"]
    with commit_metadata(spark, RunContext(job="test")):
        lake._delta("faces").delete("face_id = 'a'")  # 4
    lake.restore("faces", 2)  # 5: a back, b's score back, e gone
    for start, end in [(1, 4), (3, 5), (0, 5)]:
        by_cdf, by_key = (
            lake.diff("faces", start, end, method="cdf"),
            lake.diff("faces", start, end, method="key"),
        )
        assert_same_rows(by_cdf, by_key)
    assert lake.diff("faces", 2, 5).count() == 0  # restored exactly: no net change
    assert lake.diff_counts("faces", 3, 4) == {"insert": 0, "update": 0, "delete": 1}


def test_diff_by_key_on_a_table_without_cdf(spark: SparkSession, lake: str) -> None:
    run = RunContext(job="test")
    supp = lambda ids: rows(spark, "suppression", [{"suppression_id": i, "kind": "sha256"} for i in ids])  # noqa: E731
    merge_new_rows(spark, lake, "suppression", supp(["s1", "s2"]), run)
    merge_new_rows(spark, lake, "suppression", supp(["s3"]), RunContext(job="test"))
    handle = Lake(spark, lake)
    assert not handle.change_data_feed("suppression")
    diff = handle.diff("suppression", 1, 2)  # auto -> key
    assert [(r.suppression_id, r[CHANGE_TYPE]) for r in diff.collect()] == [("s3", "insert")]


def test_restore_is_a_new_version_with_run_metadata(own_history_lake: dict) -> None:
    lake: Lake = own_history_lake["lake"]
    new_version = lake.restore("faces", 1)
    assert new_version == 4
    assert_same_rows(lake.table("faces"), lake.table("faces", version=1))
    last = history_records(lake, "faces", limit=1)[0]
    assert last["operation"] == "RESTORE" and last["job"] == "restore"
    assert last["inputs"] == {"table": "faces", "restore_to_version": 1, "from_version": 3}
    assert lake.restore("faces", 4) == 4  # already there: no new commit
    assert lake.latest_version("faces") == 4


def erase(spark: SparkSession, lake: Lake, predicate: str, erasure_id: str) -> dict[str, int]:
    """What an erasure does to one table: delete, purge the removed files, write the audit row."""
    from delta.tables import DeltaTable

    uri = lake.uri("faces")
    before = lake.latest_version("faces")
    before_files = lake._files("faces", before)
    run = RunContext(job="erasure", inputs={"erasure_id": erasure_id})
    with commit_metadata(spark, run):
        DeltaTable.forPath(spark, uri).delete(predicate)
    after = lake.latest_version("faces")
    # Every file that held an erased row leaves the snapshot in the delete; purge exactly those.
    for gone in before_files - lake._files("faces", after):
        os.remove(gone.removeprefix("file:"))
    audit = rows(
        spark,
        "erasure_audit",
        [
            {
                "erasure_id": erasure_id,
                "mode": "execute",
                "status": "completed",
                "ticket_ref": "DPA-1",
                "selector_kind": "jurisdiction",
                "table_versions": {"faces": after},
                "first_readable_versions": {"faces": after},
                "finished_at": NOW,
                "counts": {"faces": 1},
            }
        ],
    )
    merge_new_rows(spark, lake.root, "erasure_audit", audit, run)
    return {"before": before, "after": after}


def test_purged_versions_fail_clearly_and_cannot_be_restored(
    own_history_lake: dict, spark: SparkSession
) -> None:
    lake: Lake = own_history_lake["lake"]
    versions = erase(spark, lake, "array_contains(jurisdiction_tags, 'uk')", "erasure-0001")
    assert versions == {"before": 3, "after": 4}
    # Version 3 held the erased face: unreadable, with a message naming the erasure and the way out.
    with pytest.raises(
        PurgedVersionError, match=r"erasure erasure-0001 \(ticket DPA-1\).*first readable version is 4"
    ) as err:
        lake.table("faces", version=3)
    assert (err.value.erasure_id, err.value.first_readable) == ("erasure-0001", 4)
    assert "e-uk" not in str(err.value)
    # Versions without erased rows keep their time travel (invariant 6) ...
    assert lake.table("faces", version=2).count() == 4
    assert lake.table("faces", version=4).count() == 4
    # ... but no restore may cross the erasure, purged version or not.
    with pytest.raises(PurgedVersionError):
        lake.restore("faces", 3)
    with pytest.raises(LakeError, match="would undo that erasure"):
        lake.restore("faces", 2)
    assert lake.latest_version("faces") == 4
    assert lake.first_readable_version("faces", after=2) == 4


def test_vacuumed_versions_fail_clearly_without_an_erasure(spark: SparkSession, lake: str) -> None:
    run = RunContext(job="test")
    merge_new_rows(spark, lake, "faces", faces(spark, ["a"]), run)
    upsert_rows(spark, lake, "faces", faces(spark, ["a"], score=0.1), ("det_score",), RunContext(job="test"))
    handle = Lake(spark, lake)
    for gone in handle._files("faces", 1) - handle._files("faces", 2):
        Path(gone.removeprefix("file:")).unlink()
    with pytest.raises(PurgedVersionError, match="no erasure recorded it.*first readable version is 2"):
        handle.table("faces", version=1)
    assert table_uri(lake, "faces").endswith("/tables/faces")


def test_history_and_restore_commands(
    own_history_lake: dict, spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from jobs.commands.cli import main

    lake: Lake = own_history_lake["lake"]
    assert main(["history", "faces", "--lake", lake.root, "--json", "--limit", "2", *SESSION]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["version"], r["job"], r["inputs"]) for r in printed] == [
        (3, "retag", {"policy_version": "2"}),
        (2, "embed", {"images_version": 4}),
    ]
    assert main(["restore", "faces", "2", "--lake", lake.root, *SESSION]) == 0
    assert "faces: version 3 -> 4 (restored to 2)" in capsys.readouterr().out
    erase(spark, lake, "face_id = 'a'", "erasure-0002")
    assert main(["restore", "faces", "1", "--lake", lake.root, *SESSION]) == 2
    err = capsys.readouterr().err
    assert "is no longer readable: erasure erasure-0002" in err and "Traceback" not in err
