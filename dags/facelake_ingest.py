"""facelake_ingest: ingest one crawl drop, then embed the faces of its new images (wiring only)."""

from __future__ import annotations

import shlex

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    dag_id="facelake_ingest",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["facelake"],
    params={
        "drop": Param("", type="string", description="crawl drop folder or URI holding manifest.jsonl"),
        "lake": Param("", type="string", description="lake root URI; empty means the config default"),
    },
    doc_md=__doc__,
)
def facelake_ingest():
    @task.bash
    def ingest(params: dict | None = None) -> str:
        # A child process per job: the Spark driver's JVM never lives inside an Airflow worker.
        args = ["facelake", "ingest", "--drop", params["drop"]]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        return shlex.join(args)

    @task.bash
    def embed(params: dict | None = None) -> str:
        args = ["facelake", "embed"]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        return shlex.join(args)

    ingest() >> embed()


facelake_ingest()
