"""Airflow plugin: when a facelake_erasure run ends, its report task's note becomes the DAG run's note."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

# Why a listener: Airflow 3.3's tasks have no database access and its Execution API has no call that
# sets a DAG run's note (apache/airflow#64890, PR #69403 unreleased). A DAG-run listener runs where the
# run's state changes -- the scheduler (and dag.test(), which drives the run in-process) -- with the
# run's own ORM object and session, so the note is written in the same commit as the run's final state,
# with no credentials and no HTTP call. The tasks only push the text as an XCom (ids and counts).
NOTE_DAGS = ("facelake_erasure",)
NOTE_KEY = "facelake_note"  # jobs.orchestration.erasure_dag.NOTE_KEY (plugins do not import jobs)
NOTE_MAX_CHARS = 1000
log = logging.getLogger(__name__)


def pushed_note(dag_run: DagRun, session) -> str | None:
    """The run's note text: the report task's, else the one a failed step pushed last (None if none)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    rows = session.scalars(
        select(XComModel)
        .where(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id, XComModel.key == NOTE_KEY
        )
        .order_by(XComModel.timestamp)
    ).all()
    if not rows:
        return None
    chosen = next((r for r in rows if r.task_id == "report"), rows[-1])
    value = XComModel.deserialize_value(chosen)
    return value if isinstance(value, str) and value else None


def set_run_note(dag_run: DagRun) -> None:
    """Set the pushed note on ``dag_run`` (after an operator's trigger-time note, if any)."""
    if dag_run.dag_id not in NOTE_DAGS:
        return
    from airflow.models.dagrun import DagRunNote
    from airflow.utils.session import create_session
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is not None:
        # The scheduler: the run is in its session, the note is committed with the run's new state.
        text = pushed_note(dag_run, session)
        existing = dag_run.note
    else:
        # dag.test(): the run object is detached while its state changes; DagRun.update_state merges it
        # (and, by cascade, its note) into the session at the end. Read with a session of our own.
        with create_session() as reader:
            text = pushed_note(dag_run, reader)
            found = reader.get(DagRunNote, dag_run.id)
            existing = found.content if found is not None else None
    if text is None:
        return
    if existing and text not in existing:
        text = f"{existing}\n\n{text}"
    note = DagRunNote(content=text[:NOTE_MAX_CHARS])
    note.dag_run_id = dag_run.id  # the primary key: a merge updates an existing note row
    if session is not None:
        session.merge(note)
        session.flush()
    else:
        dag_run.dag_run_note = note


class RunNoteListener:
    """DAG-run listener: the note at the end of every run, succeeded or failed."""

    @hookimpl
    def on_dag_run_success(self, dag_run: DagRun, msg: str) -> None:
        set_run_note(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run: DagRun, msg: str) -> None:
        set_run_note(dag_run)


LISTENER = RunNoteListener()


class FacelakeRunNotesPlugin(AirflowPlugin):
    """Registers ``RunNoteListener`` (load it with ``[core] plugins_folder`` = the project's plugins/)."""

    name = "facelake_run_notes"
    listeners = [LISTENER]
