"""The nightly DAG for real (dag.test on a SQLite metadata DB, jobs in-process on the test's Spark session)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.manifest import drop_id_for
from jobs.ingest.drops import current_index_build, ingested_drop_ids
from jobs.lake.tables import latest_version, read_table
from jobs.orchestration.airflow_local import PROJECT_ROOT, migrate_db
from jobs.orchestration.runner import LAKE_POOL, RUNNER_ENV

TABLES = ("images", "image_sources", "crawl_manifest", "quarantine", "faces", "face_status", "index_builds")


@pytest.fixture(scope="module")
def airflow_db() -> None:
    # conftest points AIRFLOW_HOME at this run's throw-away SQLite home; dag.test needs its schema.
    migrated = migrate_db(Path(os.environ["AIRFLOW_HOME"]))
    assert migrated.returncode == 0, (migrated.stdout + migrated.stderr)[-3000:]


@pytest.fixture
def inprocess(spark: SparkSession, spark_config: FacelakeConfig) -> Iterator[None]:
    """Jobs run in this process on the test run's SparkSession, configured like it (not a second JVM)."""
    saved = dict(os.environ)
    os.environ[RUNNER_ENV] = "inprocess"
    os.environ["FACELAKE_SPARK_MASTER"] = spark_config.spark_master
    os.environ["FACELAKE_SHUFFLE_PARTITIONS"] = str(spark_config.shuffle_partitions)
    os.environ["FACELAKE_SPARK_UI"] = "false"
    yield
    # dag.test's task runner exports AIRFLOW_CTX_* into os.environ; jobs read FACELAKE_* from it.
    os.environ.clear()
    os.environ.update(saved)


def nightly(conf: dict, retries: int | None = None):
    """A freshly parsed nightly DAG run with dag.test (resolving params mutates a DAG's Param objects)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "facelake_nightly.py"))
    assert bag.import_errors == {}
    dag = bag.dags["facelake_nightly"]
    if retries is not None:
        # dag.test waits out a retry's backoff (minutes): a deterministic failure needs no retry here.
        for task in dag.tasks:
            task.retries = retries
    return dag.test(run_conf=conf)


def states(run) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for ti in sorted(run.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
        found.setdefault(ti.task_id, []).append(str(ti.state))
    return found


def task_seconds(run) -> dict[str, float]:
    return {
        f"{ti.task_id}{'' if ti.map_index < 0 else f'[{ti.map_index}]'}": round(
            (ti.end_date - ti.start_date).total_seconds(), 1
        )
        for ti in run.get_task_instances()
        if ti.start_date and ti.end_date
    }


def versions(spark: SparkSession, lake: str) -> dict[str, int]:
    return {name: latest_version(spark, lake, name) for name in TABLES}


def land(drop: Path, landing: Path, name: str) -> Path:
    target = landing / name
    shutil.copytree(drop, target, symlinks=True)  # the sample drop holds hostile links: keep them links
    return target


def test_migrate_db_creates_the_lake_pool_idempotently(airflow_db: None) -> None:
    from airflow.models.pool import Pool

    again = migrate_db(Path(os.environ["AIRFLOW_HOME"]))
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    pool = Pool.get_pool(LAKE_POOL)
    assert pool is not None and pool.slots == 1


def test_nightly_ingests_a_new_drop_then_finds_nothing_new(
    airflow_db: None,
    inprocess: None,
    spark: SparkSession,
    config: FacelakeConfig,
    sample_drop: Path,
    tmp_path: Path,
) -> None:
    landing = tmp_path / "landing"
    drop = land(sample_drop, landing / "2026-12-01", "crawl-a")
    drop_id = drop_id_for((drop / "manifest.jsonl").read_bytes())
    # Nothing outside the landing root is read: a link to another drop is skipped, not ingested.
    (landing / "elsewhere").symlink_to(sample_drop.parent, target_is_directory=True)
    conf = {"landing": str(landing), "lake": config.lake}

    first = nightly(conf)
    print("nightly #1 seconds per task (in-process):", task_seconds(first))
    assert str(first.state) == "success", states(first)
    assert states(first) == {
        "find_drops": ["success"],
        "ingest": ["success"],
        "embed": ["success"],
        "index": ["success"],
        "summary": ["success"],
    }
    assert first.get_task_instance("ingest", map_index=0).pool == LAKE_POOL
    key = json.loads((sample_drop / "answer_key.json").read_text())
    manifest = read_table(spark, config.lake, "crawl_manifest")
    assert manifest.select("drop_id").distinct().collect()[0]["drop_id"] == drop_id
    assert manifest.count() + read_table(spark, config.lake, "quarantine").where(
        "reason IN ('malformed_json', 'invalid_encoding', 'line_too_long', 'missing_field', 'invalid_field', "
        "'path_escape')"
    ).count() == len(key["lines"])
    faces = read_table(spark, config.lake, "faces").count()
    assert faces > 0
    build = current_index_build(spark, config.lake)
    assert build is not None and build["n_vectors"] == faces
    assert build["faces_version"] == latest_version(spark, config.lake, "faces")
    assert ingested_drop_ids(spark, config.lake) == {drop_id}
    # The summary task returns ids and counts: the same counts the lake holds.
    summary = first.get_task_instance("summary").xcom_pull(task_ids="summary")
    assert summary["tables"]["faces"]["rows"] == faces
    assert summary["index"]["build_id"] == build["build_id"]
    before = versions(spark, config.lake)

    second = nightly(conf)
    print("nightly #2 seconds per task (in-process, nothing new):", task_seconds(second))
    assert str(second.state) == "success", states(second)
    # No new drop: the mapped ingest is skipped; embed and index run and find nothing to do.
    assert states(second)["ingest"] == ["skipped"]
    assert {t: s for t, s in states(second).items() if t != "ingest"} == {
        "find_drops": ["success"],
        "embed": ["success"],
        "index": ["success"],
        "summary": ["success"],
    }
    assert second.get_task_instance("find_drops").xcom_pull(task_ids="find_drops") == []
    assert versions(spark, config.lake) == before
    assert current_index_build(spark, config.lake) == build


def test_a_failed_expectation_fails_the_night_and_leaves_the_index_current(
    airflow_db: None,
    inprocess: None,
    spark: SparkSession,
    config: FacelakeConfig,
    sample_drop: Path,
    tmp_path: Path,
) -> None:
    from jobs.testdata.sample_drop import generate_sample_drop

    landing = tmp_path / "landing"
    land(sample_drop, landing, "crawl-a")
    conf = {"landing": str(landing), "lake": config.lake}
    assert str(nightly(conf).state) == "success"
    good = current_index_build(spark, config.lake)
    assert good is not None

    # A second drop lands; tonight the index's recall expectation cannot be met (target above 1).
    generate_sample_drop(landing / "crawl-b", n=24, seed=11)
    os.environ["FACELAKE_INDEX_RECALL_TARGET"] = "1.5"
    failed = nightly(conf, retries=0)
    assert str(failed.state) == "failed"
    assert states(failed) == {
        "find_drops": ["success"],
        "ingest": ["success"],
        "embed": ["success"],
        "index": ["failed"],
        "summary": ["upstream_failed"],
    }
    # The gate refused the build before its publish: the previous build stays current.
    assert current_index_build(spark, config.lake) == good
    results = read_table(spark, config.lake, "dq_results").where("suite = 'index_builds' AND NOT success")
    assert results.count() >= 1

    # The next night (gate satisfiable again) catches the index up without a new drop.
    del os.environ["FACELAKE_INDEX_RECALL_TARGET"]
    healed = nightly(conf, retries=0)
    assert str(healed.state) == "success", states(healed)
    assert states(healed)["ingest"] == ["skipped"]
    now = current_index_build(spark, config.lake)
    assert now["build_id"] != good["build_id"]
    assert now["n_vectors"] == read_table(spark, config.lake, "faces").count() > good["n_vectors"]


# -- drop discovery, pure (no Spark) ---------------------------------------------------------------


def make_drop(folder: Path, manifest: bytes = b'{"image_path": "a.jpg"}\n') -> str:
    folder.mkdir(parents=True)
    (folder / "manifest.jsonl").write_bytes(manifest)
    return drop_id_for(manifest)


def test_scan_finds_drops_without_following_links_or_choking_on_names(tmp_path: Path) -> None:
    from jobs.ingest.drops import scan_landing

    root = tmp_path / "landing"
    a = make_drop(root / "2026-12-01" / "crawl-a", b"a\n")
    b = make_drop(root / "crawl b (copy) é", b"b\n")
    # A drop's own subfolders are its files, not drops.
    make_drop(root / "crawl b (copy) é" / "nested", b"nested\n")
    outside = tmp_path / "outside"
    make_drop(outside / "secret", b"outside\n")
    (root / "link-to-outside").symlink_to(outside, target_is_directory=True)
    (root / "manifest-link").mkdir()
    (root / "manifest-link" / "manifest.jsonl").symlink_to(outside / "secret" / "manifest.jsonl")
    make_drop(root / ".uploading", b"partial\n")
    make_drop(root / "bad\nname", b"forged\n")
    (root / "manifest-dir" / "manifest.jsonl").mkdir(parents=True)
    os.mkdir(root / os.fsdecode(b"latin1-\xe9"))
    (root / "loose-file.txt").write_text("not a drop")
    make_drop(root / "d1" / "d2" / "d3" / "d4" / "d5", b"deep\n")

    scan = scan_landing(str(root))
    assert [(Path(d.drop).relative_to(root).as_posix(), d.drop_id) for d in scan.drops] == [
        ("2026-12-01/crawl-a", a),
        ("crawl b (copy) é", b),
    ]
    assert dict(scan.skipped) == {
        "symlink": 2,
        "unsafe_name": 3,
        "manifest_not_a_file": 1,
        "too_deep": 1,
    }
    # The landing root may be given as a file: URI, and holding a manifest itself it is one drop.
    assert [d.drop_id for d in scan_landing((root / "2026-12-01" / "crawl-a").as_uri()).drops] == [a]
    with pytest.raises(FileNotFoundError):
        scan_landing(str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="local folder"):
        scan_landing("s3a://bucket/landing")


def test_a_half_ingested_drop_is_pending_again_and_each_drop_id_once(tmp_path: Path) -> None:
    from jobs.ingest.drops import DropFolder, marker_ids, pending_drops

    done, half, copy = (
        DropFolder(f"/l/{n}", i) for n, i in (("a", "a" * 16), ("b", "b" * 16), ("c", "b" * 16))
    )
    # Only a completed ingest leaves a marker (drops mark runs after ingest exited 0): "b" failed
    # half-way last night, so it has none and is ingested again; its copy "c" is the same drop.
    markers = marker_ids(["a" * 16, "README", "x" * 16, "a" * 15, ".part-" + "b" * 16])
    assert markers == {"a" * 16}
    assert pending_drops([copy, done, half], markers) == [half]
    assert pending_drops([done], markers) == []
