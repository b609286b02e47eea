"""facelake_index: update the FAISS index when faces change outside the nightly run (data-aware, wiring only)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from jobs.orchestration.assets import FACES_ASSET, INDEX_ASSET
from jobs.orchestration.runner import (
    LAKE_POOL,
    asset_extra,
    lake_args,
    lakes_from_events,
    run_job,
    run_job_json,
)
from jobs.orchestration.subprocess_task import URI_RULES, URI_SCHEMA

DOC_MD = """
### facelake index

Scheduled on the **`facelake_faces` asset**: runs when a task outside the nightly run updated the
`faces` table (the `embed` task of `facelake_ingest`). For each lake named by the triggering asset
events (or the `lake` parameter when triggered by hand) it runs `facelake index update` of the
current build (a full `facelake index build` when there is none), in the `facelake_lake` pool, and
emits the **`facelake_index` asset**.

Idempotent: build ids are deterministic, so a run over a `faces` version the current build already
holds publishes nothing ("unchanged"). The nightly DAG builds its own index and does not emit
`facelake_faces`, so it never triggers this DAG.
"""


@dag(
    dag_id="facelake_index",
    schedule=FACES_ASSET,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "facelake",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "execution_timeout": timedelta(hours=6),
    },
    tags=["facelake"],
    params={
        "lake": Param(
            None,
            type=["null", "string"],
            **URI_SCHEMA,
            title="Lake root",
            description=f"lake root URI for a manual run; empty means the config default ({URI_RULES})",
        ),
    },
    doc_md=DOC_MD,
)
def facelake_index():
    @task(pool=LAKE_POOL, outlets=[INDEX_ASSET])
    def index(params: dict | None = None, triggering_asset_events=None, outlet_events=None) -> None:
        events = list(triggering_asset_events[FACES_ASSET]) if triggering_asset_events else []
        # Asset events' extras are checked like form values before they become argv elements.
        lakes = lakes_from_events(events) if events else [params.get("lake")]
        for lake in lakes:
            current = run_job_json(["drops", "summary", "--index-only", *lake_args(lake)])["index"]
            run_job(["index", "update" if current else "build", *lake_args(lake)])
        outlet_events[INDEX_ASSET].extra = asset_extra(lakes[0]) if len(lakes) == 1 else {}

    index()


facelake_index()
