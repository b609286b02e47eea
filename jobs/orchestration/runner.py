"""How an Airflow task runs a `facelake` command: a child process, in the task's own process, or spark-submit."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from jobs.orchestration.subprocess_task import (
    ARG_PATTERN,
    DEFAULT_CLI,
    MAX_ARG_LENGTH,
    CommandFailed,
    run_facelake,
)

# Stdlib only at import time: the DAG files import this module at parse time. The modes are chosen
# when a task RUNS (never at parse time), so one DAG file runs unchanged on a laptop or a cluster.

RUNNER_ENV = "FACELAKE_TASK_RUNNER"
SUBPROCESS = "subprocess"
INPROCESS = "inprocess"
SPARK_SUBMIT = "spark_submit"
MODES = (SUBPROCESS, INPROCESS, SPARK_SUBMIT)
SPARK_CONN_ENV = "FACELAKE_SPARK_CONN_ID"
DEFAULT_SPARK_CONN = "spark_default"

# The Airflow pool of every task that writes the lake (ingest, embed, index, erasure steps): one slot,
# so the nightly run and an erasure never write at the same time; a task waiting for the slot is
# queued, not failed. jobs.orchestration.airflow_local.migrate_db creates it.
LAKE_POOL = "facelake_lake"
LAKE_POOL_SLOTS = 1
LAKE_POOL_DESCRIPTION = "facelake: one lake writer at a time (nightly ingest/embed/index, erasure)"

log = logging.getLogger(__name__)


def runner_mode() -> str:
    """The configured mode, from ``$FACELAKE_TASK_RUNNER`` (default ``subprocess``)."""
    mode = os.environ.get(RUNNER_ENV, "").strip().lower() or SUBPROCESS
    if mode not in MODES:
        raise ValueError(f"{RUNNER_ENV} must be one of {', '.join(MODES)}; it is {mode!r}")
    return mode


def run_job(args: Sequence[str], logger: logging.Logger | None = None) -> None:
    """Run ``facelake ARGS...`` the configured way (``runner_mode``); raise ``CommandFailed`` (its
    ``.returncode`` the exit code) when the command fails.

    ``args`` are passed as data (argv elements) in every mode: no shell, no template rendering.
    """
    # The logger is passed on as given: each mode logs under its own module's name by default.
    mode = runner_mode()
    if mode == INPROCESS:
        run_inprocess(args, logger)
    elif mode == SPARK_SUBMIT:
        run_spark_submit(args, logger)
    else:
        run_facelake(args, logger)


def run_job_json(args: Sequence[str], logger: logging.Logger | None = None) -> Any:
    """``run_job(ARGS + ["--output", FILE])`` for a command that writes its JSON result to ``--output``
    (``facelake drops ...``); returns the parsed result. A file, not stdout: every mode streams stdout
    to the task log, and a spark-submit driver prints Spark's own lines there too."""
    with tempfile.TemporaryDirectory(prefix="facelake-result-") as folder:
        output = os.path.join(folder, "result.json")
        run_job([*args, "--output", output], logger)
        with open(output, encoding="utf-8") as f:
            return json.load(f)


def lake_args(lake: str | None) -> list[str]:
    """``["--lake", LAKE]`` when a lake was named (a form value, an asset event's), else [] (config default)."""
    return ["--lake", lake] if lake else []


def asset_extra(lake: str | None) -> dict[str, Any]:
    """The extra of an asset event a task emits after writing ``lake``: ``{"lake": lake}`` (None: the
    config default). A lake URI holding credentials (``scheme://user:secret@...``) is not stored in the
    metadata DB: the extra then has no "lake" and a consumer refuses it (``lakes_from_events``)."""
    if lake and "@" in urlsplit(lake).netloc:
        return {}
    return {"lake": lake or None}


def lakes_from_events(events: Sequence[Any]) -> list[str | None]:
    """The distinct lakes named by asset events' extras, in order (None: the config default).

    An event's extra is checked like a form value (``ARG_PATTERN``, length) before it becomes an argv
    element; an event without a "lake" (credentials withheld) or with a bad one raises ValueError.
    """
    lakes: list[str | None] = []
    for event in events:
        extra = dict(getattr(event, "extra", None) or {})
        if "lake" not in extra:
            raise ValueError(
                "an asset event names no lake (its lake URI held credentials): run this DAG by hand"
            )
        lake = extra["lake"]
        if lake is not None and (
            not isinstance(lake, str) or len(lake) > MAX_ARG_LENGTH or not re.match(ARG_PATTERN, lake)
        ):
            raise ValueError("an asset event names an invalid lake")
        if lake not in lakes:
            lakes.append(lake)
    return lakes


# -- in-process ----------------------------------------------------------------------------------


def cli_main() -> Callable[[list[str]], int]:
    """The ``facelake`` console script's entry point, resolved from the installed package metadata.

    Through the entry point rather than an import of ``jobs.commands``: orchestration sits below
    commands in the package layout (tests/test_layout.py), and this is exactly what the child process
    of the ``subprocess`` mode runs.
    """
    found = entry_points(group="console_scripts", name=DEFAULT_CLI)
    if not found:
        raise RuntimeError(f"the {DEFAULT_CLI!r} console script is not installed (pip install -e .)")
    return next(iter(found)).load()


def cli_module_file() -> str:
    """Path of the module file that holds the console script's entry point (spark-submit's application)."""
    found = entry_points(group="console_scripts", name=DEFAULT_CLI)
    if not found:
        raise RuntimeError(f"the {DEFAULT_CLI!r} console script is not installed (pip install -e .)")
    spec = importlib.util.find_spec(next(iter(found)).module)
    if spec is None or not spec.origin:
        raise RuntimeError(f"cannot locate the module of the {DEFAULT_CLI!r} console script")
    return spec.origin


def run_inprocess(args: Sequence[str], logger: logging.Logger | None = None) -> None:
    """Call the CLI's ``main(args)`` in this process: every task run by one process (``dag.test()``,
    the demo) reuses one SparkSession, its JVM and warm imports (GX, onnxruntime, the model pack).

    The job's side effects on the process are undone afterwards: the working directory (a scratch
    directory while it runs, as in the child-process mode: no stray ./facelake.toml is read) and the
    root logger (jobs call ``logging.basicConfig(force=True)``, which would otherwise replace the
    task runner's handlers for good). A non-zero exit, ``SystemExit`` (argparse) or an exception
    becomes ``CommandFailed``; the exception stays chained so the task log shows its traceback.
    """
    logger = logger or log
    argv = [str(a) for a in args]
    command = " ".join([DEFAULT_CLI, *argv[:1]])
    logger.info("Running in-process %r", [DEFAULT_CLI, *argv])
    main = cli_main()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_cwd = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix="facelake-task-") as scratch:
            os.chdir(scratch)
            try:
                returncode = _exit_code(main, argv)
            finally:
                os.chdir(saved_cwd)
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    if returncode != 0:
        raise CommandFailed(command, [DEFAULT_CLI, *argv], returncode)
    logger.info("%s exited with code 0", command)


def _exit_code(main: Callable[[list[str]], int], argv: list[str]) -> int:
    command = " ".join([DEFAULT_CLI, *argv[:1]])
    try:
        return int(main(argv) or 0)
    except SystemExit as exc:
        # argparse (bad or --help arguments) and modules that call sys.exit: the code a child would have.
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:
        # An uncaught exception is exit code 1 in a child process; keep the cause chained for the log.
        raise CommandFailed(command, [DEFAULT_CLI, *argv], 1) from exc


# -- spark-submit --------------------------------------------------------------------------------


def spark_submit_launch_settings() -> tuple[list[str], dict[str, str]]:
    """(jars, conf) that spark-submit must get on its command line: what the JVM needs before the job's
    session builder runs.

    Under spark-submit the driver's JVM is started first; the builder in ``jobs.lake.session.get_spark``
    then still applies every SQL and Hadoop setting (Delta's extension and catalog included), but jars
    and driver JVM options set there come too late (Delta's classes would not load). So the same jars
    and those launch-time settings are computed here from the worker's config, with
    ``jobs.lake.session`` (why orchestration may import lake: tests/test_layout.py). Settings whose
    names look secret are never put on a command line (the builder sets them).
    """
    from jobs.core.config import is_secret_name, load_config
    from jobs.lake.session import resolve_delta_jars, spark_settings

    config = load_config()
    jars = [] if "spark.jars" in config.spark_conf else resolve_delta_jars(config)
    settings = spark_settings(config, jars)
    launch = ("spark.driver.memory", "spark.driver.extraJavaOptions", "spark.driver.extraClassPath")
    return jars, {k: settings[k] for k in launch if k in settings and not is_secret_name(k)}


def spark_submit_hook(args: Sequence[str], conn_id: str | None = None):  # -> SparkSubmitHook
    """A ``SparkSubmitHook`` that runs the CLI module file with ``args`` as its application arguments
    against the cluster of the Airflow connection ``conn_id`` (default ``$FACELAKE_SPARK_CONN_ID``,
    else ``spark_default``).

    Imported here, at run time: the provider is needed only in this mode, and DAG parsing stays
    cheap. The job's ``get_spark`` sets the master from its config, so the connection's master is
    passed to it as ``FACELAKE_SPARK_MASTER``; Delta's jars and the driver's launch settings come from
    ``spark_submit_launch_settings``; the driver runs this interpreter (its packages).
    """
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    conn_id = conn_id or os.environ.get(SPARK_CONN_ENV, "").strip() or DEFAULT_SPARK_CONN
    argv = [str(a) for a in args]
    jars, conf = spark_submit_launch_settings()
    hook = SparkSubmitHook(
        conn_id=conn_id,
        name=f"facelake-{argv[0] if argv else 'job'}",
        application_args=argv,
        jars=",".join(jars) or None,
        conf=conf,
    )
    env = {
        # The connection's master, as resolved by the hook; the job would otherwise pick its config's.
        "FACELAKE_SPARK_MASTER": hook._connection["master"],
        "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }
    if shutil.which("spark-submit") is None:
        # No Spark installation on PATH: pyspark's own spark-submit, next to this interpreter.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    # Set after construction because the master is known only once the hook resolved its connection;
    # the hook turns env_vars into the right form per cluster manager when it builds the command.
    hook._env_vars = env
    return hook


def run_spark_submit(args: Sequence[str], logger: logging.Logger | None = None) -> None:
    """Run ``facelake ARGS...`` with spark-submit (``spark_submit_hook``); raise ``CommandFailed`` on failure."""
    logger = logger or log
    argv = [str(a) for a in args]
    command = " ".join([DEFAULT_CLI, *argv[:1]])
    hook = spark_submit_hook(argv)
    application = cli_module_file()
    logger.info("Running with spark-submit (master %s) %r", hook._connection["master"], [DEFAULT_CLI, *argv])
    with tempfile.TemporaryDirectory(prefix="facelake-task-") as cwd:
        try:
            hook.submit(application=application, cwd=cwd)
        except Exception as exc:
            process = getattr(hook, "_submit_sp", None)
            returncode = process.returncode if process is not None and process.returncode else 1
            raise CommandFailed(command, [DEFAULT_CLI, *argv], returncode) from exc
    logger.info("%s exited with code 0", command)
