"""facelake_ingest: ingest one crawl drop, then embed the faces of its new images (wiring only)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from jobs.orchestration.assets import FACES_ASSET
from jobs.orchestration.runner import LAKE_POOL, asset_extra, run_job
from jobs.orchestration.subprocess_task import URI_RULES, URI_SCHEMA


@dag(
    dag_id="facelake_ingest",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Manual runs: no automatic retry. The operator who triggered it sees the failure (a bad drop fails
    # the same way again) and re-triggers; the nightly DAG retries with backoff.
    default_args={"owner": "facelake", "retries": 0, "retry_delay": timedelta(minutes=2)},
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
    # Form values are read from the task context and passed to the job as argv elements (runner.run_job:
    # a shell-less child process, the CLI's main in-process, or spark-submit's application args, chosen
    # at run time); no templated operator field ever holds them, so no template engine or shell reads them.
    # Both tasks write the lake: the one-slot pool keeps them apart from the nightly run and erasures.
    @task(pool=LAKE_POOL)
    def ingest(params: dict | None = None) -> None:
        args = ["ingest", "--drop", params["drop"]]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        run_job(args)

    # The faces asset triggers facelake_index (index update outside the nightly run).
    @task(pool=LAKE_POOL, outlets=[FACES_ASSET])
    def embed(params: dict | None = None, outlet_events=None) -> None:
        args = ["embed"]
        if params.get("lake"):
            args += ["--lake", params["lake"]]
        run_job(args)
        outlet_events[FACES_ASSET].extra = asset_extra(params.get("lake"))

    ingest() >> embed()


facelake_ingest()
