"""The package layout's dependency rule, checked from the source: core is pure, nothing imports commands."""

from __future__ import annotations

import ast
from pathlib import Path

import jobs

ROOT = Path(jobs.__file__).parent
# Which subpackages each subpackage may import (besides itself), as the README states it.
ALLOWED = {
    "core": set(),
    "lake": {"core"},
    "ingest": {"core", "lake", "quality"},
    "faces": {"core", "lake", "quality"},
    "index": {"core", "lake", "quality", "faces"},
    "erasure": {"core", "lake", "quality", "ingest", "faces", "index"},
    "quality": {"core", "lake"},
    # lake: the spark_submit runner mode puts Delta's jars and the driver's launch settings
    # (jobs.lake.session) on spark-submit's command line, imported only when that mode runs.
    "orchestration": {"core", "lake"},
    "testdata": {"core"},
    "commands": {
        "core",
        "lake",
        "ingest",
        "faces",
        "index",
        "erasure",
        "quality",
        "orchestration",
        "testdata",
    },
    "resources": set(),
}
HEAVY = ("pyspark", "delta", "great_expectations", "airflow", "onnxruntime", "insightface")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_every_module_imports_only_what_its_subpackage_may() -> None:
    problems = []
    for path in sorted(ROOT.rglob("*/*.py")):
        package = path.relative_to(ROOT).parts[0]
        assert package in ALLOWED, f"{path}: subpackage {package!r} is not in the layout"
        for name in _imports(path):
            parts = name.split(".")
            if (
                parts[0] == "jobs"
                and len(parts) > 1
                and parts[1] != package
                and parts[1] not in ALLOWED[package]
            ):
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
            if package == "core" and parts[0] in HEAVY:
                problems.append(f"{path.relative_to(ROOT)} (core is pure) imports {name}")
    assert not problems


def test_no_module_is_left_at_the_top_of_the_package() -> None:
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["__init__.py"]
