"""facelake_ingest: ingest one crawl drop, then embed the faces of its new images (wiring only)."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from jobs.orchestration.subprocess_task import URI_RULES, URI_SCHEMA, run_facelake


@dag(
    dag_id="facelake_ingest",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["facelake"],
    params={
        # No default: the trigger form requires a drop.
        "drop": Param(
            type="string",
            minLength=1,
            **URI_SCHEMA,
            title="Crawl drop",
            description=f"crawl drop folder or URI holding manifest.jsonl; required ({URI_RULES})",
        ),
        "lake": Param(
            None,
            type=["null", "string"],
            **URI_SCHEMA,
            title="Lake root",
            description=f"lake root URI; empty means the config default ({URI_RULES})",
        ),
    },
    doc_md=__doc__,
)
def facelake_ingest():
    # Form values are read from the task context and passed to a shell-less child process as argv
    # elements; no templated operator field ever holds them, so no template engine or shell reads them.
    # A child process per job: the Spark driver's JVM never lives inside an Airflow worker.
    @task
    def ingest(params: dict | None = None) -> None:
        args = ["ingest", "--drop", params["drop"]]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        run_facelake(args)

    @task
    def embed(params: dict | None = None) -> None:
        args = ["embed"]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        run_facelake(args)

    ingest() >> embed()


facelake_ingest()
