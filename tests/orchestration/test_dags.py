"""DAGs parse cleanly and cheaply, and run for real with `airflow dags test` on a SQLite metadata DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.lake.tables import latest_version, read_table, table_uri
from jobs.orchestration.airflow_local import PROJECT_ROOT, run_dag


def test_dagbag_imports_every_dag_without_errors_quickly() -> None:
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    assert "facelake_ingest" in bag.dag_ids
    # Parsing must stay cheap: nothing heavy (Spark, models) at import time.
    assert time.monotonic() - started < 10
    for dag in bag.dags.values():
        assert "facelake" in dag.tags
        assert dag.catchup is False


# Parsed in a child whose metadata DB cannot be opened (a SQLite file in a folder that does not exist):
# any DB access at parse time would fail the import. Heavy modules must not be imported either.
PARSE_WITHOUT_DB = """
import json, sqlite3, sqlite3.dbapi2, sys, time
connects = []
def counting_connect(*args, _real=sqlite3.connect, **kwargs):
    connects.append(1)
    return _real(*args, **kwargs)
sqlite3.connect = sqlite3.dbapi2.connect = counting_connect
started = time.monotonic()
from airflow.dag_processing.dagbag import DagBag
before = len(connects)
bag = DagBag(dag_folder=sys.argv[1])
parse_connects = len(connects) - before
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pyspark", "delta", "great_expectations", "onnxruntime",
                                                         "insightface", "faiss", "pandas"})
print(json.dumps({"errors": {k: v[-500:] for k, v in bag.import_errors.items()}, "dags": sorted(bag.dag_ids),
                  "seconds": time.monotonic() - started, "heavy": heavy, "connects": parse_connects}))
"""


def test_dags_parse_without_a_database_or_heavy_imports_within_budget(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp_path / 'no-such-dir' / 'airflow.db'}"
    env["AIRFLOW_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-c", PARSE_WITHOUT_DB, str(PROJECT_ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert {
        "facelake_nightly",
        "facelake_erasure",
        "facelake_index",
        "facelake_ingest",
        "facelake_maintain",
    } <= set(parsed["dags"])
    assert parsed["heavy"] == []
    assert parsed["connects"] == 0  # no DB (Variable, Connection, metadata) access while parsing
    # Airflow's own import is most of it; the DAG files add little (budget with room for a loaded box).
    assert parsed["seconds"] < 30
    assert not (tmp_path / "no-such-dir").exists()


def test_every_dag_has_an_owner_retries_and_a_doc() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    for dag in bag.dags.values():
        assert dag.tags and "facelake" in dag.tags, dag.dag_id
        assert dag.doc_md and len(dag.doc_md.strip()) > 40, dag.dag_id
        assert dag.owner not in ("", "airflow"), dag.dag_id
        for task in dag.tasks:
            # A retry policy is stated on every task (0 for manual DAGs: the operator re-triggers).
            assert "retries" in (dag.default_args or {}) or task.retries, (dag.dag_id, task.task_id)


def test_nightly_dag_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from jobs.orchestration.assets import FACES_ASSET, INDEX_ASSET
    from jobs.orchestration.runner import LAKE_POOL

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    dag = bag.dags["facelake_nightly"]
    assert dag.timetable.expression == "0 2 * * *" and str(dag.timetable.timezone) == "UTC"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert set(dag.params.keys()) == {"landing", "lake"}
    assert dag.params["landing"] is None and dag.params["lake"] is None
    tasks = dag.task_dict
    assert {t: tasks[t].downstream_task_ids for t in tasks} == {
        "find_drops": {"ingest"},
        "ingest": {"embed"},
        "embed": {"index"},
        "index": {"summary"},
        "summary": set(),
    }
    # Every task that writes the lake takes the one-slot pool; reading ones do not wait for it.
    assert {t for t in tasks if tasks[t].pool == LAKE_POOL} == {"ingest", "embed", "index"}
    assert tasks["embed"].trigger_rule == "none_failed"  # also after a night without drops
    for task in dag.tasks:
        assert task.retries == 2 and task.retry_exponential_backoff
        assert task.retry_delay == timedelta(minutes=5) and task.max_retry_delay == timedelta(hours=1)
    assert tasks["index"].outlets == [INDEX_ASSET]
    # The nightly builds its own index: its embed does not emit the faces asset (no second index run).
    assert not any(FACES_ASSET in t.outlets for t in dag.tasks)


def test_index_dag_runs_on_faces_updates_and_emits_the_index_asset() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from jobs.orchestration.assets import FACES_ASSET, INDEX_ASSET
    from jobs.orchestration.runner import LAKE_POOL

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    index = bag.dags["facelake_index"]
    assert index.timetable.asset_condition == FACES_ASSET
    assert index.max_active_runs == 1
    assert [(t.task_id, t.pool, t.outlets) for t in index.tasks] == [("index", LAKE_POOL, [INDEX_ASSET])]
    ingest = bag.dags["facelake_ingest"]
    assert ingest.task_dict["embed"].outlets == [FACES_ASSET]
    assert {t.pool for t in ingest.tasks} == {LAKE_POOL}
    assert bag.dags["facelake_maintain"].task_dict["maintain"].pool == LAKE_POOL


def test_ingest_dag_param_form() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["facelake_ingest"]
    assert set(dag.params.keys()) == {"drop", "lake"}
    assert sorted(t.task_id for t in dag.tasks) == ["embed", "ingest"]
    assert dag.task_dict["ingest"].downstream_task_ids == {"embed"}


def test_ingest_then_index_dags_run_end_to_end(
    spark: SparkSession, config: FacelakeConfig, sample_drop: Path, tmp_path: Path
) -> None:
    done = run_dag(
        "facelake_ingest", {"drop": str(sample_drop), "lake": config.lake}, home=tmp_path / "airflow"
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    key = json.loads((sample_drop / "answer_key.json").read_text())
    assert read_table(spark, config.lake, "crawl_manifest").count() + read_table(
        spark, config.lake, "quarantine"
    ).where(
        "reason IN ('malformed_json', 'invalid_encoding', 'line_too_long', 'missing_field', 'invalid_field', "
        "'path_escape')"
    ).count() == len(key["lines"])
    # The commit records which DAG run made it.
    meta = json.loads(
        DeltaTable.forPath(spark, table_uri(config.lake, "crawl_manifest")).history(1).first()["userMetadata"]
    )
    assert meta["job"] == "ingest"
    assert meta["dag_run_id"].startswith("manual__")
    # The embed task ran after ingest: every canonical image has a face status for the pack.
    canonical = read_table(spark, config.lake, "images").where("canonical_id = image_id").count()
    assert read_table(spark, config.lake, "face_status").count() == canonical > 0

    # The index DAG (data-aware on faces; by hand here, with the lake as a form value) builds the
    # first FAISS build over exactly the faces the ingest DAG's embed wrote, and makes it current.
    from jobs.index.registry import current_build

    indexed = run_dag("facelake_index", {"lake": config.lake}, home=tmp_path / "airflow")
    assert indexed.returncode == 0, (indexed.stdout + indexed.stderr)[-3000:]
    faces = read_table(spark, config.lake, "faces")
    build = current_build(spark, config.lake)
    assert build.n_vectors == faces.count() > 0
    assert build.faces_version == latest_version(spark, config.lake, "faces")


def test_maintain_dag_form() -> None:
    # The command it builds from the form is checked by running it: tests/orchestration/test_dags_params.py.
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["facelake_maintain"]
    assert set(dag.params.keys()) == {"lake", "tables", "optimize", "vacuum", "retention_hours"}
    assert dag.params["optimize"] == "zorder" and dag.params["retention_hours"] is None
    assert [t.task_id for t in dag.tasks] == ["maintain"]
    assert dag.max_active_runs == 1
