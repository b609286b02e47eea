"""The demo's own housekeeping: it wipes only the folders it made, and prints aligned tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.commands.demo import MARKER, _fresh, _table


def test_fresh_wipes_only_a_workdir_the_demo_made(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    with pytest.raises(SystemExit, match="not made by the demo"):
        _fresh(foreign, [foreign / "lake"])
    assert (foreign / "precious.txt").read_text() == "keep" and not (foreign / "lake").exists()

    workdir = tmp_path / "demo"
    _fresh(workdir, [workdir / "lake", workdir / "landing"])
    assert (workdir / MARKER).is_file()
    (workdir / "lake" / "old.parquet").write_text("x")
    _fresh(workdir, [workdir / "lake"])
    assert list((workdir / "lake").iterdir()) == []


def test_table_aligns_columns() -> None:
    assert _table([("a", "bb"), ("ccc", "d")]).splitlines() == ["a    bb", "---  --", "ccc  d"]
