"""facelake_nightly: every night, ingest the landing root's new drops, embed, update the index, summarise (wiring only)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from jobs.orchestration.assets import INDEX_ASSET
from jobs.orchestration.runner import LAKE_POOL, asset_extra, lake_args, run_job, run_job_json
from jobs.orchestration.subprocess_task import URI_RULES, URI_SCHEMA

DOC_MD = """
### facelake nightly

Runs at **02:00 UTC** every night (no catch-up of missed nights, one run at a time).

| task | what it does |
|---|---|
| `find_drops` | lists the drop folders (holding `manifest.jsonl`) under the **landing root** whose ingest has not completed (`facelake drops find`); symbolic links and odd folder names are skipped and counted |
| `ingest` | one mapped task per new drop, in the `facelake_lake` pool: `facelake ingest`, then `facelake drops mark` records the drop as done. A drop whose ingest failed is not marked and is found again the next night (ingest is an idempotent MERGE, so the rerun completes it) |
| `embed` | detects and embeds the faces of new images; also runs when there was no new drop (catch-up, a no-op when nothing is pending) |
| `index` | `facelake index update` of the current FAISS build (or a full `index build` when there is none); emits the `facelake_index` asset |
| `summary` | rows and version per table, the current index build (ids and counts only) |

Every job gates its publish with expectations: a failed check fails the task (retried with
exponential backoff) and leaves the previous tables and index current. No new drop: `ingest` is
skipped, the run still succeeds.

**Parameters** (both optional): `landing` (default: `$FACELAKE_LANDING` on the worker) and `lake`
(default: the config's lake). **Runner**: `$FACELAKE_TASK_RUNNER` = `subprocess` (default),
`inprocess` or `spark_submit` (connection `$FACELAKE_SPARK_CONN_ID`, default `spark_default`).
"""


@dag(
    dag_id="facelake_nightly",
    schedule="0 2 * * *",
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
        "landing": Param(
            None,
            type=["null", "string"],
            **URI_SCHEMA,
            title="Landing root",
            description=f"folder under which crawl drops land; empty means $FACELAKE_LANDING ({URI_RULES})",
        ),
        "lake": Param(
            None,
            type=["null", "string"],
            **URI_SCHEMA,
            title="Lake root",
            description=f"lake root URI; empty means the config default ({URI_RULES})",
        ),
    },
    doc_md=DOC_MD,
)
def facelake_nightly():
    # Form values are read from the task context inside the callables and reach the jobs as argv
    # elements (jobs.orchestration.runner); no templated operator field ever holds them.

    @task
    def find_drops(params: dict | None = None, ti=None) -> list[dict]:
        landing = ["--landing", params["landing"]] if params.get("landing") else []
        found = run_job_json(["drops", "find", *landing, *lake_args(params.get("lake"))])
        # The index task updates the build current now, or makes a full one when there is none.
        ti.xcom_push(key="index_build", value=found["index_build"])
        return found["pending"]

    @task(pool=LAKE_POOL)
    def ingest(drop: dict, params: dict | None = None) -> str:
        lake = lake_args(params.get("lake"))
        run_job(["ingest", "--drop", drop["drop"], *lake])
        # Only after ingest exited 0, i.e. after its last commit landed.
        run_job(["drops", "mark", "--drop-id", drop["drop_id"], *lake])
        return drop["drop_id"]

    # none_failed: also after a night without drops (ingest mapped over nothing is skipped).
    @task(pool=LAKE_POOL, trigger_rule="none_failed")
    def embed(params: dict | None = None) -> None:
        run_job(["embed", *lake_args(params.get("lake"))])

    @task(pool=LAKE_POOL, outlets=[INDEX_ASSET])
    def index(params: dict | None = None, ti=None, outlet_events=None) -> None:
        action = "update" if ti.xcom_pull(task_ids="find_drops", key="index_build") else "build"
        run_job(["index", action, *lake_args(params.get("lake"))])
        outlet_events[INDEX_ASSET].extra = asset_extra(params.get("lake"))

    @task
    def summary(params: dict | None = None) -> dict:
        result = run_job_json(["drops", "summary", *lake_args(params.get("lake"))])
        counts = {name: t["rows"] for name, t in result["tables"].items()}
        build = result["index"] or {}
        # Ids and counts only.
        print(f"tables: {counts}; index build {build.get('build_id')} with {build.get('n_vectors')} vectors")
        return result

    ingest.expand(drop=find_drops()) >> embed() >> index() >> summary()


facelake_nightly()
