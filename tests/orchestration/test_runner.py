"""run_job's modes: in-process (exit codes, side effects undone), spark-submit (real, through the provider's hook)."""

from __future__ import annotations

import ast
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import SparkSession

import jobs
from jobs.orchestration import runner
from jobs.orchestration.runner import (
    RUNNER_ENV,
    SPARK_CONN_ENV,
    CommandFailed,
    asset_extra,
    lakes_from_events,
    run_job,
    runner_mode,
)


def test_the_mode_is_read_when_a_task_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    assert runner_mode() == "subprocess"
    monkeypatch.setenv(RUNNER_ENV, " InProcess ")
    assert runner_mode() == "inprocess"
    monkeypatch.setenv(RUNNER_ENV, "docker")
    with pytest.raises(ValueError, match="FACELAKE_TASK_RUNNER must be one of"):
        run_job(["init"])


@pytest.fixture
def inprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNNER_ENV, "inprocess")


def test_inprocess_runs_the_real_cli_and_maps_its_exit_codes(inprocess: None, tmp_path: Path) -> None:
    run_job(["--help"])  # argparse's SystemExit(0): success
    with pytest.raises(CommandFailed) as bad_flag:
        run_job(["ingest", "--no-such-flag"])
    assert bad_flag.value.returncode == 2
    # An operator error (FileNotFoundError) is the CLI's exit code 2, as in a child process.
    with pytest.raises(CommandFailed, match="facelake drops exited with code 2") as missing:
        run_job(["drops", "find", "--landing", str(tmp_path / "absent"), "--lake", str(tmp_path / "lake")])
    assert missing.value.returncode == 2
    assert missing.value.argv[:3] == ["facelake", "drops", "find"]


def test_inprocess_undoes_the_jobs_side_effects(
    inprocess: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def main(argv: list[str]) -> int:
        # What a job does: basicConfig(force=True) replaces the root handlers; it may chdir too.
        logging.basicConfig(level=logging.DEBUG, force=True)
        seen["cwd"] = os.getcwd()
        seen["argv"] = argv
        if argv[0] == "boom":
            raise RuntimeError("job crashed")
        return int(argv[0])

    monkeypatch.setattr(runner, "cli_main", lambda: main)
    root = logging.getLogger()
    handlers, level, cwd = list(root.handlers), root.level, os.getcwd()
    for _ in range(3):
        run_job(["0", "--lake", "x y"])
        assert root.handlers == handlers and root.level == level and os.getcwd() == cwd
    # The job ran in a scratch directory (no ./facelake.toml of the worker's), removed afterwards.
    assert Path(str(seen["cwd"])).name.startswith("facelake-task-") and not Path(str(seen["cwd"])).exists()
    assert seen["argv"] == ["0", "--lake", "x y"]
    with pytest.raises(CommandFailed) as failed:
        run_job(["3"])
    assert failed.value.returncode == 3
    with pytest.raises(CommandFailed) as crashed:
        run_job(["boom"])
    # An uncaught exception is exit code 1 (as in a child), its cause chained for the task log.
    assert crashed.value.returncode == 1 and isinstance(crashed.value.__cause__, RuntimeError)
    assert root.handlers == handlers and os.getcwd() == cwd


def test_asset_extras_carry_the_lake_but_never_credentials() -> None:
    assert asset_extra("/lakes/a") == {"lake": "/lakes/a"}
    assert asset_extra(None) == {"lake": None}
    assert asset_extra("s3a://key:secret@bucket/lake") == {}
    event = lambda extra: SimpleNamespace(extra=extra)  # noqa: E731
    assert lakes_from_events([event({"lake": "/a"}), event({"lake": None}), event({"lake": "/a"})]) == [
        "/a",
        None,
    ]
    with pytest.raises(ValueError, match="names no lake"):
        lakes_from_events([event({})])
    for bad in ("--config=/etc/x", "/lake\n", 7, "/l" * 3000):
        with pytest.raises(ValueError, match="invalid lake"):
            lakes_from_events([event({"lake": bad})])


def test_jobs_never_import_airflow() -> None:
    # The job packages run without Airflow (spark-submit, notebooks): only the wiring does import it,
    # jobs/orchestration (assets.py at module level, runner.py inside the spark_submit mode) and the
    # commands that drive Airflow (the demo).
    root = Path(jobs.__file__).parent
    importers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n == "airflow" or n.startswith("airflow.") for n in names):
                importers.add(path.relative_to(root).parts[0])
    assert importers <= {"orchestration", "commands"}
    runner_top = ast.parse((root / "orchestration" / "runner.py").read_text()).body
    assert not any(
        isinstance(n, ast.ImportFrom) and (n.module or "").startswith("airflow") for n in runner_top
    )


@pytest.fixture
def spark_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection (from the environment, as a secrets backend would give it) to local[1]."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_FACELAKE_TEST_SPARK", json.dumps({"conn_type": "spark", "host": "local[1]"})
    )
    monkeypatch.setenv(SPARK_CONN_ENV, "facelake_test_spark")
    return "facelake_test_spark"


def test_spark_submit_command_line_holds_the_args_as_data(spark_conn: str) -> None:
    args = ["ingest", "--drop", "/drops/$(touch x); '{{ var.value.x }}'", "--lake", "/lake"]
    hook = runner.spark_submit_hook(args)
    cli = runner.cli_module_file()
    command = hook._build_spark_submit_command(cli)
    assert command[0] == "spark-submit"
    assert command[command.index("--master") + 1] == "local[1]"
    # The application is the console script's module; every arg one element, byte for byte.
    assert command[-len(args) - 1 :] == [cli, *args]
    assert Path(cli) == Path(jobs.__file__).parent / "commands" / "cli.py"
    assert hook._env_vars["FACELAKE_SPARK_MASTER"] == "local[1]"
    # Delta's jars reach the driver's classpath at launch (too late in the job's session builder).
    jars = command[command.index("--jars") + 1].split(",")
    assert any("delta-spark" in Path(j).name for j in jars) and all(Path(j).is_file() for j in jars)


def test_spark_submit_runs_a_delta_job_for_real(
    spark_conn: str, monkeypatch: pytest.MonkeyPatch, spark: SparkSession, tmp_path: Path
) -> None:
    from jobs.lake.tables import latest_version

    monkeypatch.setenv(RUNNER_ENV, "spark_submit")
    lake = str(tmp_path / "lake")
    # `init` creates every Delta table: it needs Delta's extension and jars in the submitted driver.
    run_job(["init", "--lake", lake])
    assert latest_version(spark, lake, "faces") == 0
    result = runner.run_job_json(["drops", "summary", "--lake", lake])
    assert result["tables"]["faces"] == {"rows": 0, "version": 0} and result["index"] is None
    with pytest.raises(CommandFailed) as failed:
        run_job(["drops", "mark", "--drop-id", "not-an-id", "--lake", lake])
    assert failed.value.returncode != 0
