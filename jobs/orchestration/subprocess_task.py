"""Run a `facelake` command from an Airflow task as a shell-less child process, its arguments as plain data."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

# Stdlib only: the DAG files import this module at parse time and must stay cheap to parse.

CLI_ENV = "FACELAKE_CLI"
DEFAULT_CLI = "facelake"
# How long a child gets to exit after SIGTERM (the task timed out or was interrupted) before SIGKILL.
TERMINATE_GRACE_SECONDS = 30.0

# JSON-schema rules for form values that become argv elements: no control character anywhere (NUL
# cannot be passed at all; newlines forge log lines), and no leading "-" (argparse would read the
# value as an option: a drop of "--help" would print the help and "succeed" without ingesting).
# Lookaheads, not "[...]*$": in Python's re (jsonschema's), "$" also matches before a trailing
# newline. The pattern means the same to the UI's ECMAScript regexes.
ARG_PATTERN = r"^(?!-)(?![\s\S]*[\x00-\x1f\x7f])"
MAX_ARG_LENGTH = 4096
URI_SCHEMA: dict[str, Any] = {"maxLength": MAX_ARG_LENGTH, "pattern": ARG_PATTERN}
URI_RULES = f"at most {MAX_ARG_LENGTH} characters, no control characters, not starting with '-'"

log = logging.getLogger(__name__)


class CommandFailed(RuntimeError):
    """The child process exited non-zero (or was killed by a signal); fails the Airflow task."""

    def __init__(self, command: str, argv: Sequence[str], returncode: int) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        super().__init__(f"{command} {how}")


def facelake_command() -> list[str]:
    """The command that runs the CLI: ``$FACELAKE_CLI`` split like a shell would
    (e.g. ``python -m jobs.commands.cli``), else the ``facelake`` console script on PATH."""
    return shlex.split(os.environ.get(CLI_ENV, "")) or [DEFAULT_CLI]


def run_facelake(args: Sequence[str], logger: logging.Logger | None = None) -> None:
    """Run ``facelake ARGS...`` without a shell, streaming its stdout and stderr line by line to
    ``logger`` (the task log); raise ``CommandFailed`` with its exit code if it fails."""
    logger = logger or log
    argv = [*facelake_command(), *args]
    command = " ".join([DEFAULT_CLI, *args[:1]])
    # repr, not a joined string: every element shows exactly as the child receives it.
    logger.info("Running %r", argv)
    # A fresh working directory, as BashOperator gave: no ./facelake.toml of whatever directory the
    # worker happens to run in, and Spark's scratch files (spark-warehouse, derby.log) vanish after.
    # Same process group as the task (no new session): Airflow's supervisor signals the whole group
    # when it stops a task, so the Spark driver never outlives it.
    with (
        tempfile.TemporaryDirectory(prefix="facelake-task-") as cwd,
        subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        ) as child,
    ):
        try:
            assert child.stdout is not None
            for line in child.stdout:
                logger.info("%s", line.rstrip("\n"))
            returncode = child.wait()
        except BaseException:
            # Timeout or interrupt while the child runs: stop it before the task gives up.
            _stop(child)
            raise
    if returncode != 0:
        raise CommandFailed(command, argv, returncode)
    logger.info("%s exited with code 0", command)


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
