"""The wheel works without a checkout: a non-editable install into a fresh virtualenv runs `facelake init` and
an ingest from a directory outside the checkout, finding schemas, expectations, policies and the Spark log
config as package data (issue #11).

Offline and fast: the virtualenv is made with uv and filled from uv's cache (the packages of requirements.lock
are already there: ./dev installed them with uv), facelake itself is built from a clean copy of the sources (so
nothing is written into the checkout), and the child reuses the Delta jars resolved by the test run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs.core.config import FacelakeConfig
from jobs.lake.schemas import table_names, table_spec
from jobs.lake.session import jar_cache_dir, resolve_delta_jars

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

CHECKOUT = Path(__file__).resolve().parents[1]
RESOURCES = ("schemas", "expectations", "policies", "conf")
# Left out of the copy the wheel is built from, at the top of the checkout: VCS, virtualenvs, caches (every dot
# folder), earlier builds and runtime output.
TOP_LEVEL_OUTPUT = {"build", "dist", "demo", "lake", "spark-warehouse", "metastore_db", "derby.log"}


def not_sources(folder: str, names: list[str]) -> set[str]:
    """``shutil.copytree`` ignore: bytecode and egg-info anywhere, dot folders and outputs at the top only."""
    top = Path(folder) == CHECKOUT
    return {
        n
        for n in names
        if n == "__pycache__"
        or n.endswith((".pyc", ".egg-info"))
        or (top and (n.startswith(".") or n in TOP_LEVEL_OUTPUT))
    }


# What the child process is asked to report about the installed package, as one JSON object.
PROBE = """
import importlib.metadata, json, sys, sysconfig
import jobs
from jobs.core import paths
from jobs.core.config import load_config
from jobs.lake.session import spark_settings

direct_url = importlib.metadata.distribution("facelake").read_text("direct_url.json")
print(json.dumps({
    "purelib": sysconfig.get_paths()["purelib"],
    "jobs": jobs.__file__,
    "resources": {name: str(paths.resource_dir(name)) for name in sys.argv[1:]},
    "checkout_root": None if paths.checkout_root() is None else str(paths.checkout_root()),
    "cache_root": str(paths.cache_root()),
    "direct_url": json.loads(direct_url) if direct_url else None,
    "sys_path": sys.path,
    "java_options": spark_settings(load_config(environ={}), [])["spark.driver.extraJavaOptions"],
}))
"""


def find_uv() -> str | None:
    """The uv that ./dev installed next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}"
    )
    return done.stdout


def uv_install(uv: str, python: Path, args: list[str], cwd: Path) -> None:
    """``uv pip install`` from the cache only; if the cache lacks something, say so and try the index once."""
    cmd = [uv, "pip", "install", "--quiet", "--python", str(python), *args]
    offline = subprocess.run(
        [*cmd, "--offline"], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    if offline.returncode != 0:
        print(f"offline install failed, retrying online:\n{offline.stderr[-2000:]}", file=sys.stderr)
        run(cmd, cwd=cwd)


def make_drop(drop: Path) -> dict[str, str]:
    """Three manifest lines: a PNG from a .co.uk URL, a JPEG from a .com URL, one line that is not JSON.

    Returns the sha256 (the image id) of each image file by its source URL.
    """
    (drop / "img").mkdir(parents=True)
    rng = np.random.default_rng(11)  # noise: the two pictures are far apart in pHash, so no near duplicate
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(drop / "img" / "a.png")
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(
        drop / "img" / "b.jpg", quality=90
    )
    sources = {"https://photos.example.co.uk/a.png": "img/a.png", "https://example.com/b.jpg": "img/b.jpg"}
    lines = [
        json.dumps({"image_path": path, "source_url": url, "crawled_at": "2026-05-01T00:00:00Z"})
        for url, path in sources.items()
    ]
    lines.append('{"image_path": "img/c.png", "source_url": ')  # line 3: malformed_json
    (drop / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return {url: hashlib.sha256((drop / path).read_bytes()).hexdigest() for url, path in sources.items()}


def delta_rows(table: Path) -> list[dict[str, Any]]:
    """The rows of a small unpartitioned Delta table without Spark: its log's added minus removed files."""
    live: set[str] = set()
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                live.add(action["add"]["path"])
            elif "remove" in action:
                live.discard(action["remove"]["path"])
    return [row for path in sorted(live) for row in pq.read_table(table / path).to_pylist()]


def summary_counts(stdout: str, job: str) -> dict[str, int]:
    """The counts of a job's end-of-run summary line (``<job> run <id> done in 1.2s: a=1, b=2``)."""
    match = re.search(rf"^{job} run \w+ done in [\d.]+s: (.*)$", stdout, re.MULTILINE)
    assert match, f"no {job} summary in:\n{stdout}"
    return {k: int(v) for k, v in (part.split("=") for part in match.group(1).split(", "))}


def child_env(venv: Path, home: Path, jars: Path) -> dict[str, str]:
    """The parent's environment minus everything that points at the checkout or its virtualenv."""
    drop = ("FACELAKE_", "PYSPARK_", "PYTHON", "AIRFLOW", "VIRTUAL_ENV", "SPARK_HOME", "UV_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    checkout_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != checkout_bin]
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), *path]),
        VIRTUAL_ENV=str(venv),
        HOME=str(home),  # nothing may land in the real ~/.cache/facelake either
        FACELAKE_CACHE=str(home / "facelake-cache"),
        FACELAKE_JAR_CACHE=str(jars),  # the Delta jars this test run resolved: no network
        FACELAKE_DRIVER_MEMORY="1g",
        FACELAKE_LOG_LEVEL="INFO",
    )
    return env


def inside(path: str | Path, folder: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def test_wheel_runs_init_and_ingest_outside_the_checkout(
    spark_config: FacelakeConfig, tmp_path: Path
) -> None:
    uv = find_uv()
    if uv is None:
        pytest.skip(
            "uv is not installed (./dev installs it into .venv): cannot build a fresh virtualenv offline"
        )
    jars = jar_cache_dir(spark_config)
    assert resolve_delta_jars(spark_config), "Delta's jars are not resolved"  # a no-op once ./dev setup ran
    work = tmp_path / "outside"  # the child's working directory: no checkout, no pyproject.toml, no jobs/
    work.mkdir()

    # 1. A fresh virtualenv with the locked packages, then facelake as a built wheel (non-editable, no deps).
    venv = tmp_path / "venv"
    run([uv, "venv", "--offline", "--quiet", "--python", sys.executable, str(venv)], cwd=work)
    python = venv / "bin" / "python"
    uv_install(uv, python, ["-r", str(CHECKOUT / "requirements.lock")], cwd=work)
    sources = (
        tmp_path / "src"
    )  # setuptools writes build/ and *.egg-info next to the sources: not in the checkout
    shutil.copytree(CHECKOUT, sources, ignore=not_sources)
    uv_install(uv, python, ["--no-deps", str(sources)], cwd=work)
    shutil.rmtree(sources)  # the installed package must not need them either

    # 2. The package and its data files live in the new venv's site-packages, not in the checkout.
    env = child_env(venv, tmp_path / "home", jars)
    probe = json.loads(run([str(python), "-c", PROBE, *RESOURCES], cwd=work, env=env))
    site = probe["purelib"]
    assert inside(site, venv) and inside(probe["jobs"], site) and not inside(probe["jobs"], CHECKOUT), probe
    assert probe["checkout_root"] is None, probe
    assert not probe["direct_url"].get("dir_info", {}).get("editable", False), probe["direct_url"]
    assert not [p for p in probe["sys_path"] if p and inside(p, CHECKOUT)], probe["sys_path"]
    assert inside(probe["cache_root"], tmp_path / "home"), probe
    for name, folder in probe["resources"].items():
        assert inside(folder, site), (name, folder)
        shipped = {p.name for p in Path(folder).iterdir() if p.is_file()}
        wanted = {p.name for p in (CHECKOUT / "jobs" / "resources" / name).iterdir() if p.is_file()}
        assert shipped == wanted, (
            f"package data {name}/ in the wheel: {sorted(shipped)}, in the checkout: {sorted(wanted)}"
        )
    log_config = re.search(r"-Dlog4j2\.configurationFile=file://(\S+)", probe["java_options"])
    assert log_config and inside(log_config.group(1), site) and Path(log_config.group(1)).is_file(), probe[
        "java_options"
    ]

    # 3. The console script of the new venv creates the lake and ingests a 3-line drop.
    facelake = str(venv / "bin" / "facelake")
    lake, drop = tmp_path / "lake", tmp_path / "drop"
    image_ids = make_drop(drop)
    spark_args = ["--lake", str(lake), "--spark-master", "local[1]", "--shuffle-partitions", "1"]
    out = run([facelake, "init", *spark_args], cwd=work, env=env, timeout=1200)
    assert summary_counts(out, "init") == {"tables": len(table_names())}
    for name in table_names():
        assert (lake / "tables" / name / "_delta_log" / f"{0:020d}.json").is_file(), (
            f"init did not create {name}"
        )

    out = run([facelake, "ingest", *spark_args, "--drop", str(drop)], cwd=work, env=env, timeout=1200)
    assert summary_counts(out, "ingest") == {
        "manifest_lines": 3,
        "quarantined": 1,
        "ingestible_lines": 2,
        "suppressed": 0,
        "new_images": 2,
        "near_dup_aliases": 0,
        "image_sources_inserted": 2,
        "images_inserted": 2,
        "image_links_inserted": 0,
        "crawl_manifest_inserted": 2,
        "quarantine_inserted": 1,
    }
    # Schemas: the rows have the declared columns. Policies: the .co.uk source is tagged uk, the .com one not.
    images = {r["image_id"]: r for r in delta_rows(lake / "tables" / "images")}
    assert all(set(r) == set(table_spec("images").schema.fieldNames()) for r in images.values())
    assert {i: images[i]["jurisdiction_tags"] for i in images} == {
        image_ids["https://photos.example.co.uk/a.png"]: ["uk"],
        image_ids["https://example.com/b.jpg"]: [],
    }
    assert {(r["line_no"], r["reason"]) for r in delta_rows(lake / "tables" / "quarantine")} == {
        (3, "malformed_json")
    }
    assert len(delta_rows(lake / "tables" / "crawl_manifest")) == 2
    # Expectations: each published table passed its suite, recorded in dq_results, with Data Docs.
    results = delta_rows(lake / "tables" / "dq_results")
    assert {r["suite"] for r in results} == {"image_sources", "images", "crawl_manifest", "quarantine"}
    assert all(r["success"] for r in results)
    assert (lake / "data_docs" / "index.html").is_file()
