"""The `facelake` console script: one convention, `facelake <command> --lake URI`, documented by --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobs.commands.cli import COMMANDS, build_parser, main

FACELAKE = str(Path(sys.executable).parent / "facelake")


ACTIONS = {"index": ["build", "update", "prune", "list"], "drops": ["find", "mark", "summary"]}


def test_console_script_lists_every_command() -> None:
    out = subprocess.run([FACELAKE, "--help"], capture_output=True, text=True, check=True).stdout
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "sample-drop"])
def test_every_job_command_takes_lake(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser([command, "--help"]).parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    actions = ACTIONS.get(command, [])
    assert ("--lake" in out) != bool(actions)
    for action in actions:  # a command with actions (index build, …) takes --lake on each
        assert action in out
        with pytest.raises(SystemExit):
            build_parser([command, action, "--help"]).parse_args([command, action, "--help"])
        assert "--lake" in capsys.readouterr().out


def test_operator_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ingest", "--lake", str(tmp_path / "lake"), "--config", str(tmp_path / "absent.toml")])
    assert code == 2
    err = capsys.readouterr().err
    assert "absent.toml does not exist" in err and "Traceback" not in err


def test_sample_drop_command(tmp_path: Path) -> None:
    out = subprocess.run(
        [FACELAKE, "sample-drop", str(tmp_path / "d"), "--n", "60", "--seed", "3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (tmp_path / "d" / "manifest.jsonl").is_file()
    assert (tmp_path / "d" / "answer_key.json").is_file()
    assert "60" in out


def test_top_level_help_is_fast_and_imports_no_engine() -> None:
    # Generous bound for a loaded CI machine; the real figure is tens of milliseconds.
    import time

    started = time.monotonic()
    out = subprocess.run([FACELAKE, "--help"], capture_output=True, text=True, check=True).stdout
    assert time.monotonic() - started < 1.0 and "ingest" in out
    probe = (
        "import sys, contextlib, io\n"
        "from jobs.commands.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "heavy = ('pyspark', 'great_expectations', 'onnxruntime', 'insightface', 'airflow', 'delta', 'pandas')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
