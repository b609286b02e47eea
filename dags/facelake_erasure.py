"""facelake_erasure: erase a jurisdiction's or a subject's records everywhere, from a trigger form (wiring only)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from jobs.orchestration.assets import INDEX_ASSET
from jobs.orchestration.erasure_dag import (
    EXECUTE_ONLY,
    NOTE_KEY,
    SUMMARY_KEY,
    form_schema,
    log_lines,
    note_text,
    run_step,
)
from jobs.orchestration.runner import LAKE_POOL, asset_extra

log = logging.getLogger(__name__)

DOC_MD = """
### facelake erasure

Erases every record of a **jurisdiction** (default `uk`), a **source domain**, a list of **image
hashes** or a **subject photo**: every table at every version (time travel included), every retained
FAISS build, landing and quarantine files; adds the content to the suppression list; verifies
independently; writes an audit row and an HTML report (ids, hashes and counts only).

**Use:** *Trigger* → fill the form → **Dry run** first (plan + report: what would go), then the same
request in **Execute** mode. Ticket reference and requester are required.

**Steps** (one task each, each `facelake erase ... --until STEP`): `plan` → *(execute only)*
`erase` → `purge` → `index` → `verify` → `report`. In a dry run the execute-only tasks show as
*skipped*. The request's id is derived from the selector and the ticket, so every task (and every
retry) resumes the same erasure: a failed task is safe to clear and rerun.

**Result:** the `report` task's log has the report's path and the headline figures; when the run
ends, they become the run's **note** (top of the run's page).

**Never at the same time as the nightly run:** every task that writes the lake, here and in
`facelake_nightly` / `facelake_index`, runs in the one-slot pool `facelake_lake`, so an erasure
triggered while the nightly run is writing *waits* (its task is queued for the slot) rather than
fails; `max_active_runs=1` queues a second erasure run behind the first. Between two nightly tasks an
erasure step may take the slot: that is safe (ingest and embed re-check the suppression list before
they publish, and the erasure fences every table).
"""


@dag(
    dag_id="facelake_erasure",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # A second request waits for the first: two erasures interleaving step by step would each
    # fence and rewrite the tables under the other.
    max_active_runs=1,
    default_args={
        "owner": "facelake",
        # Steps are idempotent and resume from the stored plan: a retry finishes the same erasure.
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
    },
    tags=["facelake", "erasure"],
    params={name: Param(**spec) for name, spec in form_schema().items()},
    doc_md=DOC_MD,
)
def facelake_erasure():
    # Form values are read from the task context and reach `facelake erase` only as argv elements
    # (jobs.orchestration.erasure_dag.erase_argv): no templated field holds them, no shell reads them.

    def step(name: str, params: dict, ti) -> dict:
        try:
            return run_step(name, params, ti.xcom_push)
        except Exception as exc:
            # A bad request (2) or a missing index build (4) fails the same way every time: no retry.
            if getattr(exc, "returncode", None) in (2, 4):
                raise AirflowFailException(str(exc)) from exc
            raise

    # Higher priority than the nightly tasks: an operator's erasure is not starved of the pool slot.
    lake_task = {"pool": LAKE_POOL, "priority_weight": 10, "weight_rule": "absolute"}

    @task.branch(task_id="plan", **lake_task)
    def plan(params: dict | None = None, ti=None) -> str:
        """Plan (dry run: plan and report); choose the next task: erase (execute) or report (dry run)."""
        step("plan", params, ti)
        return "erase" if params["mode"] == "execute" else "report"

    def execute_step(name: str):
        # The index step republishes the builds without the erased vectors: the index asset's
        # consumers (searches, caches) are told, with the lake it wrote (as the nightly DAG does).
        outlets = [INDEX_ASSET] if name == "index" else []

        @task(task_id=name, outlets=outlets, **lake_task)
        def run(params: dict | None = None, ti=None, outlet_events=None) -> None:
            step(name, params, ti)
            if outlets:
                outlet_events[INDEX_ASSET].extra = asset_extra(params.get("lake"))

        return run()

    @task(task_id="report", trigger_rule="none_failed_min_one_success", **lake_task)
    def report(params: dict | None = None, ti=None) -> dict:
        """Audit and report (execute), or reuse the dry run's plan; log and return the note."""
        if params["mode"] == "execute":
            summary = step("report", params, ti)
        else:
            # The dry run's plan call already wrote its report and audit row: no second selection.
            summary = ti.xcom_pull(task_ids="plan", key=SUMMARY_KEY)
            for line in log_lines(summary):
                log.info("%s", line)
        note = note_text(summary)
        ti.xcom_push(NOTE_KEY, note)
        return {"note": note, "report_path": summary.get("report_path")}

    steps = [execute_step(name) for name in EXECUTE_ONLY]
    chosen = plan()
    chosen >> steps[0]
    for before, after in zip(steps, steps[1:], strict=False):
        before >> after
    [chosen, steps[-1]] >> report()


facelake_erasure()
