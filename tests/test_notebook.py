"""notebooks/explore.ipynb runs top to bottom against a small lake, and what it reports matches the lake."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from pyspark.sql import DataFrame, SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.faces.embed import embed
from jobs.index.build import build_index
from jobs.ingest.job import ingest_drop
from jobs.lake.api import Lake
from jobs.lake.tables import table_uri
from jobs.testdata.sample_drop import generate_sample_drop

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore.ipynb"
# Six or more numbers in a row, comma-separated: what a printed embedding (or bbox list of one) looks like.
VECTOR = re.compile(r"(-?\d+\.\d+(e-?\d+)?,\s*){5,}-?\d+\.\d+")


@pytest.fixture(scope="module")
def explore_lake(
    spark: SparkSession,
    spark_config: FacelakeConfig,
    sample_drop: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Two drops ingested (two ingest commits to diff), then one embed run (the version to pin)."""
    root = tmp_path_factory.mktemp("explore")
    second = root / "drop-2"
    generate_sample_drop(second, n=30, seed=8)
    config = spark_config.replace(lake=str(root / "lake"))
    for drop in (sample_drop, second):
        ingest_drop(spark, config.replace(drop=str(drop)), RunContext(job="ingest"))
    reports = [embed(spark, config, RunContext(job="embed"))]
    assert reports[0]["faces_inserted"] > 0, reports  # the generated pack finds faces in the sample drops
    build = build_index(spark, config, RunContext(job="index-build"), shards=2)
    return {"root": config.lake, "embed": reports, "build": build}


def delta(spark: SparkSession, root: str, name: str, version: int | None = None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(table_uri(root, name))


def per_jurisdiction(df: DataFrame) -> Counter:
    counts: Counter = Counter()
    for row in df.select("jurisdiction_tags").collect():
        counts.update(row["jurisdiction_tags"] or ["untagged"])
    return counts


def output_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            if out["output_type"] == "stream":
                parts.append(out["text"])
            else:
                parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


def test_explore_notebook_runs_and_reports_the_lake(
    spark: SparkSession, explore_lake: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Committed clean: no outputs (they could hold data from someone's lake) and no execution counts.
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]

    root = explore_lake["root"]
    for key in [k for k in os.environ if k.startswith("FACELAKE_")]:
        monkeypatch.delenv(key)
    env = {
        "FACELAKE_LAKE": root,
        "FACELAKE_SPARK_MASTER": "local[1]",
        "FACELAKE_DRIVER_MEMORY": "1g",
        "FACELAKE_SHUFFLE_PARTITIONS": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}
    ).execute()

    text = output_text(nb)
    summaries = [line for line in text.splitlines() if line.startswith("SUMMARY ")]
    assert len(summaries) == 1, text[-2000:]
    summary = json.loads(summaries[0].removeprefix("SUMMARY "))

    # Privacy: ids, hashes and counts only — no image bytes, no vectors.
    assert "content" not in text and "bytearray" not in text and "\\x89PNG" not in text
    assert not VECTOR.search(text), VECTOR.search(text).group(0)[:200]

    lake = Lake(spark, root)
    tables = lake.tables()
    assert summary["tables"] == tables and {"images", "faces", "face_status"} <= set(tables)
    assert summary["rows"] == {name: delta(spark, root, name).count() for name in tables}

    # Faces pinned at the current index build's version (the embed commit), read with the images version embed read.
    pinned = lake.last_version_by("faces", "embed")
    embeds = lake.history("faces").where("job = 'embed'").count()
    assert embeds == 1 and summary["pinned_version"] == pinned == lake.latest_version("faces")
    assert summary["pinned_version"] == explore_lake["build"].row["faces_version"]
    last = explore_lake["embed"][-1]
    assert (summary["pack_id"], summary["images_version"]) == (last["pack_id"], last["images_version"])

    faces = delta(spark, root, "faces", pinned)
    images = delta(spark, root, "images", last["images_version"])
    expected = {}
    face_counts, image_counts = per_jurisdiction(faces), per_jurisdiction(images)
    for tag in set(face_counts) | set(image_counts):
        expected[tag] = {"images": image_counts[tag], "faces": face_counts[tag]}
    assert summary["jurisdictions"] == expected
    assert expected["uk"]["faces"] > 0 and expected["untagged"]["images"] > 0

    pack_faces = faces.where(faces.pack_id == last["pack_id"]).select("face_id")
    query = min(r["face_id"] for r in pack_faces.collect())
    search = summary["search"]
    assert search["build_id"] == explore_lake["build"].build_id
    assert search["vectors"] == pack_faces.count() > 1 and search["k"] == min(5, search["vectors"])
    assert search["query_face"] == search["top_face"] == query
    assert search["top_score"] == pytest.approx(1.0, abs=1e-3)

    # The diff between the two ingest commits of images, checked against the two snapshots.
    ingests = sorted(r["version"] for r in lake.history("images").where("job = 'ingest'").collect())
    v_a, v_b = ingests[0], ingests[-1]
    before, after = delta(spark, root, "images", v_a), delta(spark, root, "images", v_b)
    ids_a = {r["image_id"] for r in before.select("image_id").collect()}
    ids_b = {r["image_id"] for r in after.select("image_id").collect()}
    changed = after.join(before.select("image_id"), "image_id").select(*before.columns).exceptAll(before)
    assert summary["diff"] == {
        "from": v_a,
        "to": v_b,
        "insert": len(ids_b - ids_a),
        "delete": len(ids_a - ids_b),
        "update": changed.select("image_id").distinct().count(),
    }
    assert v_a < v_b and summary["diff"]["insert"] > 0

    assert summary["time_travel"] == {
        "version_rows": len(ids_a),
        "timestamp_version": v_a,
        "timestamp_rows": len(ids_a),
        "latest_rows": delta(spark, root, "images").count(),
    }
