"""Embedded Airflow for the laptop default: SQLite metadata DB under .cache/airflow, DAGs from dags/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jobs.core.paths import cache_root
from jobs.orchestration.runner import LAKE_POOL, LAKE_POOL_DESCRIPTION, LAKE_POOL_SLOTS

# The DAG files live in the checkout (a deployment copies dags/ into its own DAG folder).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def airflow_env(home: Path | None = None) -> dict[str, str]:
    """Environment for running the project's DAGs with a local SQLite metadata DB."""
    home = home or cache_root() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            # plugins/facelake_run_notes.py turns an erasure's report into the DAG run's note.
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # Tasks run the `facelake` console script of this interpreter's environment (jobs.orchestration.subprocess_task).
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        }
    )
    return env


def _airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = str(Path(sys.executable).parent / "airflow")
    return subprocess.run([airflow, *args], env=env, capture_output=True, text=True, check=False)


def migrate_db(home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``airflow db migrate`` for the SQLite metadata DB under ``home``, then the lake pool
    (``runner.LAKE_POOL``, one slot) with ``airflow pools set``; both idempotent, in child processes.

    Returns the first failing step's result, else the pool step's with both steps' output.
    """
    env = airflow_env(home)
    migrated = _airflow("db", "migrate", env=env)
    if migrated.returncode != 0:
        return migrated
    pool = _airflow("pools", "set", LAKE_POOL, str(LAKE_POOL_SLOTS), LAKE_POOL_DESCRIPTION, env=env)
    return subprocess.CompletedProcess(
        pool.args, pool.returncode, migrated.stdout + pool.stdout, migrated.stderr + pool.stderr
    )


def run_dag(
    dag_id: str, conf: dict[str, object], home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Migrate the metadata DB (idempotent), then ``airflow dags test DAG -c CONF`` in a child process."""
    env = airflow_env(home)
    migrated = migrate_db(home)
    if migrated.returncode != 0:
        return migrated
    return _airflow("dags", "test", dag_id, "-c", json.dumps(conf), env=env)
