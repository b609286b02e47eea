"""facelake_maintain: weekly OPTIMIZE (Z-order) and VACUUM of every table, within the retention window (wiring only)."""

from __future__ import annotations

import shlex

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    dag_id="facelake_maintain",
    # Sunday 03:00 UTC: away from the nightly ingest; a missed week is not worth catching up.
    schedule="0 3 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["facelake"],
    params={
        "lake": Param("", type="string", description="lake root URI; empty means the config default"),
        "tables": Param("", type="string", description="comma-separated tables; empty means every table"),
        "optimize": Param("zorder", enum=["zorder", "compact", "none"], description="OPTIMIZE mode"),
        "vacuum": Param(True, type="boolean", description="VACUUM files older than the retention"),
        "retention_hours": Param(
            None, type=["null", "number"], minimum=0,
            description="VACUUM retention in hours; empty means each table's deletedFileRetentionDuration (7 days)",
        ),
    },
    doc_md=__doc__,
)
def facelake_maintain():
    @task.bash
    def maintain(params: dict | None = None) -> str:
        args = ["facelake", "maintain", "--optimize", params["optimize"]]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        if params.get("tables"):
            args += ["--tables", params["tables"]]
        if not params.get("vacuum", True):
            args.append("--no-vacuum")
        if params.get("retention_hours") is not None:
            args += ["--retention-hours", str(params["retention_hours"])]
        return shlex.join(args)

    maintain()


facelake_maintain()
