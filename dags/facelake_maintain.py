"""facelake_maintain: weekly OPTIMIZE (Z-order) and VACUUM of every table, within the retention window (wiring only)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from jobs.orchestration.runner import LAKE_POOL, run_job
from jobs.orchestration.subprocess_task import URI_RULES, URI_SCHEMA


@dag(
    dag_id="facelake_maintain",
    # Sunday 03:00 UTC: away from the nightly ingest; a missed week is not worth catching up.
    schedule="0 3 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "facelake", "retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["facelake"],
    params={
        "lake": Param(
            None,
            type=["null", "string"],
            **URI_SCHEMA,
            title="Lake root",
            description=f"lake root URI; empty means the config default ({URI_RULES})",
        ),
        "tables": Param(
            None,
            type=["null", "string"],
            maxLength=1000,
            pattern=r"^(?![\s\S]*[^A-Za-z0-9_, ])",
            title="Tables",
            description="comma-separated table names (letters, digits, _), e.g. faces,images; empty means every table",
        ),
        "optimize": Param("zorder", enum=["zorder", "compact", "none"], description="OPTIMIZE mode"),
        "vacuum": Param(True, type="boolean", description="VACUUM files older than the retention"),
        "retention_hours": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="VACUUM retention in hours; empty means each table's deletedFileRetentionDuration (7 days)",
        ),
    },
    doc_md=__doc__,
)
def facelake_maintain():
    # Form values reach the job as argv elements (runner.run_job), never through a template or shell.
    # OPTIMIZE and VACUUM rewrite the lake's files: never next to an ingest or an erasure.
    @task(pool=LAKE_POOL)
    def maintain(params: dict | None = None) -> None:
        args = ["maintain", "--optimize", params["optimize"]]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        if params.get("tables"):
            args += ["--tables", params["tables"]]
        if not params.get("vacuum", True):
            args.append("--no-vacuum")
        if params.get("retention_hours") is not None:
            args += ["--retention-hours", str(params["retention_hours"])]
        run_job(args)

    maintain()


facelake_maintain()
