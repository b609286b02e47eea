"""DAGs parse cleanly and cheaply, and run for real with `airflow dags test` on a SQLite metadata DB."""

from __future__ import annotations

import json
import time
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.lake.tables import read_table, table_uri
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


def test_ingest_dag_param_form() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["facelake_ingest"]
    assert set(dag.params.keys()) == {"drop", "lake"}
    assert sorted(t.task_id for t in dag.tasks) == ["embed", "ingest"]
    assert dag.task_dict["ingest"].downstream_task_ids == {"embed"}


def test_ingest_dag_runs_end_to_end(
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


def test_maintain_dag_form() -> None:
    # The command it builds from the form is checked by running it: tests/orchestration/test_dags_params.py.
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["facelake_maintain"]
    assert set(dag.params.keys()) == {"lake", "tables", "optimize", "vacuum", "retention_hours"}
    assert dag.params["optimize"] == "zorder" and dag.params["retention_hours"] is None
    assert [t.task_id for t in dag.tasks] == ["maintain"]
    assert dag.max_active_runs == 1
