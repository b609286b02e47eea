"""DAG form values reach jobs as argv data, never as shell or template text (issue #10), on a real SQLite Airflow DB."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobs.orchestration.airflow_local import PROJECT_ROOT, migrate_db
from jobs.orchestration.subprocess_task import CLI_ENV

# Records what it was run with, says something on stdout and stderr, and exits with $RECORDER_EXIT.
RECORDER = """\
import json, os, sys
with open({out!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                         "dag_run_id": os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")}}) + "\\n")
print("recorder says hello on stdout", flush=True)
print("recorder says hello on stderr", file=sys.stderr, flush=True)
sys.exit(int(os.environ.get("RECORDER_EXIT", "0")))
"""


@pytest.fixture(scope="module")
def airflow_db() -> None:
    # conftest points AIRFLOW_HOME at this run's throw-away SQLite home; dag.test needs its schema.
    migrated = migrate_db(Path(os.environ["AIRFLOW_HOME"]))
    assert migrated.returncode == 0, (migrated.stdout + migrated.stderr)[-3000:]


def load_dag(dag_id: str):
    """A freshly parsed DAG: dag.test runs tasks in this process and resolving params mutates the
    DAG's Param objects, so a reused DAG would carry one run's form values into the next."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def trigger(dag_id: str, conf: dict):
    """Run the DAG for real (dag.test: a DagRun in the SQLite DB, tasks through the task runner)."""
    return load_dag(dag_id).test(run_conf=conf)


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict]]]:
    """Point the DAGs' command at the recorder; yields a reader of what each run of it received."""
    out = tmp_path / "recorded.jsonl"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER.format(out=str(out)))
    monkeypatch.setenv(CLI_ENV, shlex.join([sys.executable, str(script)]))
    # dag.test runs tasks in this process, and the task runner exports AIRFLOW_CTX_* into os.environ.
    saved = dict(os.environ)
    yield lambda: [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    os.environ.clear()
    os.environ.update(saved)


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_no_templated_field_of_any_task_holds_form_values() -> None:
    # Params are read from the task context inside the callable; op_args/op_kwargs (templated) stay empty.
    for dag_id in ("facelake_ingest", "facelake_maintain"):
        for task in load_dag(dag_id).tasks:
            assert task.template_fields, task.task_id
            for field in task.template_fields:
                assert not getattr(task, field), (dag_id, task.task_id, field)


QUOTE = '{{ "%c"|format(39) }}'  # renders to a single quote: closes shlex.join's quoting


@pytest.mark.parametrize(
    ("drop", "lake"),
    [
        pytest.param(f"{QUOTE};touch CANARY;echo {QUOTE}", None, id="jinja-quote-breakout"),
        pytest.param("$(touch CANARY)", None, id="command-substitution"),
        pytest.param("`touch CANARY`", None, id="backticks"),
        pytest.param("'; touch CANARY #", None, id="literal-quote"),
        pytest.param('{{ var.value.get("facelake_secret") }}', None, id="jinja-variable"),
        pytest.param("{{ conn.facelake_db.password }}", None, id="jinja-connection"),
        pytest.param("/drops/d1", f"/lake{QUOTE} $(touch CANARY) {QUOTE}", id="lake-jinja-quote-breakout"),
    ],
)
def test_malicious_form_values_reach_the_job_as_exact_argv_elements(
    airflow_db: None,
    recorded: Callable[[], list[dict]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    drop: str,
    lake: str | None,
) -> None:
    # Secrets a rendered template could read: neither may appear anywhere the job receives.
    monkeypatch.setenv("AIRFLOW_VAR_FACELAKE_SECRET", "variable-secret-value")
    monkeypatch.setenv("AIRFLOW_CONN_FACELAKE_DB", "postgresql://user:conn-secret-value@db:5432/x")
    # CANARY stands for an absolute path in this test's own directory.
    canary = tmp_path / "CANARY"
    drop = drop.replace("CANARY", str(canary))
    lake = lake.replace("CANARY", str(canary)) if lake else None

    run = trigger("facelake_ingest", {"drop": drop, **({"lake": lake} if lake else {})})

    assert not canary.exists(), "a form value ran as shell code"
    assert states(run) == {"ingest": "success", "embed": "success"}
    calls = recorded()
    lake_args = ["--lake", lake] if lake else []
    # Each value arrives byte for byte as one argv element: not split, not quoted, not rendered.
    assert [c["argv"] for c in calls] == [["ingest", "--drop", drop, *lake_args], ["embed", *lake_args]]
    received = json.dumps(calls)
    assert "variable-secret-value" not in received and "conn-secret-value" not in received
    # The job still learns which DAG run it belongs to (commit metadata), through the environment.
    assert [c["dag_run_id"] for c in calls] == [run.run_id] * 2
    # Each job runs in its own scratch directory, removed afterwards (as BashOperator's was).
    assert all(
        Path(c["cwd"]).name.startswith("facelake-task-") and not Path(c["cwd"]).exists() for c in calls
    )


def test_failing_job_fails_the_task_with_its_exit_code_and_its_output_in_the_log(
    airflow_db: None,
    recorded: Callable[[], list[dict]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RECORDER_EXIT", "3")
    with caplog.at_level(logging.INFO, logger="jobs.orchestration.subprocess_task"):
        run = trigger("facelake_ingest", {"drop": "/drops/d1"})
    assert states(run) == {"ingest": "failed", "embed": "upstream_failed"}
    assert str(run.state) == "failed"
    assert [c["argv"] for c in recorded()] == [["ingest", "--drop", "/drops/d1"]]
    logged = [r.getMessage() for r in caplog.records if r.name == "jobs.orchestration.subprocess_task"]
    # The child's stdout and stderr are streamed line by line into the task log.
    assert "recorder says hello on stdout" in logged
    assert "recorder says hello on stderr" in logged
    # The task runner logs the failure (through structlog, to the console here) with the exit code.
    captured = capfd.readouterr()
    assert "CommandFailed: facelake ingest exited with code 3" in captured.out + captured.err


@pytest.mark.parametrize(
    ("conf", "param"),
    [
        pytest.param({}, "drop", id="drop-missing"),
        pytest.param({"drop": ""}, "drop", id="drop-empty"),
        pytest.param({"drop": "/drops/a\nb"}, "drop", id="drop-newline"),
        pytest.param({"drop": "/drops/a\n"}, "drop", id="drop-trailing-newline"),
        pytest.param({"drop": "/drops/a\rb"}, "drop", id="drop-carriage-return"),
        pytest.param({"drop": "/drops/a\x00b"}, "drop", id="drop-NUL"),
        pytest.param({"drop": "/drops/a\x1b[2J"}, "drop", id="drop-terminal-escape"),
        pytest.param({"drop": "--help"}, "drop", id="drop-read-as-an-option"),
        pytest.param({"drop": "/d" * 3000}, "drop", id="drop-too-long"),
        pytest.param({"drop": "/drops/d1", "lake": "-x"}, "lake", id="lake-read-as-an-option"),
        pytest.param({"drop": "/drops/d1", "lake": "/lake\n"}, "lake", id="lake-newline"),
    ],
)
def test_ingest_form_rejects_values_that_cannot_be_plain_argv(
    airflow_db: None, recorded: Callable[[], list[dict]], conf: dict, param: str
) -> None:
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=f"param {param}"):
        trigger("facelake_ingest", conf)
    assert recorded() == []


def test_maintain_form_values_become_the_maintain_command(
    airflow_db: None, recorded: Callable[[], list[dict]]
) -> None:
    for conf in (
        {
            "optimize": "compact",
            "lake": "/l",
            "tables": "faces,images",
            "vacuum": False,
            "retention_hours": 0,
        },
        {},
    ):
        run = trigger("facelake_maintain", conf)
        assert states(run) == {"maintain": "success"}, conf
    assert [c["argv"] for c in recorded()] == [
        [
            "maintain",
            "--optimize",
            "compact",
            "--lake",
            "/l",
            "--tables",
            "faces,images",
            "--no-vacuum",
            "--retention-hours",
            "0",
        ],
        ["maintain", "--optimize", "zorder"],
    ]
    from airflow.exceptions import ParamValidationError

    for bad in (
        {"tables": "faces;id"},
        {"tables": "faces\n"},
        {"optimize": "zorder; id"},
        {"lake": "--config=/etc/x"},
        {"retention_hours": -1},
    ):
        with pytest.raises(ParamValidationError, match=f"param {next(iter(bad))}"):
            trigger("facelake_maintain", bad)
    assert len(recorded()) == 2
