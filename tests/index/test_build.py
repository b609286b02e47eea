"""The Spark build: pinned faces version, shards on workers, registry publish, update through CDF, pruning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from indexdata import PACK_ID, append_faces, delete_faces, face_ids
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.index.build import MixedPacksError, build_index, faiss_id_col, update_index
from jobs.index.plan import faiss_id, shard_of
from jobs.index.registry import NoIndexBuildError, builds, current_build, prune
from jobs.index.search import open_build
from jobs.index.store import MANIFEST, BuildStore, IndexIntegrityError
from jobs.lake.tables import latest_version, read_table
from jobs.testdata.vectors import clustered_vectors


def _config(config: FacelakeConfig, **changes) -> FacelakeConfig:
    return config.replace(index_exact_below=changes.pop("exact_below", 1_000), **changes)


def _manifest(lake: str, build_id: str, sha: str) -> dict:
    return BuildStore(lake).read_manifest(build_id, sha)


def test_faiss_id_column_equals_the_pure_function(spark: SparkSession) -> None:
    ids = face_ids(50)
    frame = spark.createDataFrame([(i,) for i in ids], "face_id string").select("face_id", faiss_id_col())
    got = {r[0]: r[1] for r in frame.collect()}
    assert got == {i: faiss_id(i) for i in ids}


def test_100k_build_reaches_recall_and_records_the_version_it_read(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    config = _config(config, exact_below=10_000)
    vectors = clustered_vectors(100_000, 16, spread=0.8, seed=3)
    ids = face_ids(100_000)
    append_faces(spark, config.lake, vectors, ids)
    read_version = latest_version(spark, config.lake, "faces")

    result = build_index(spark, config, RunContext("index-build"), shards=4)

    row = result.row
    assert result.status == "published" and row["faces_version"] == read_version
    assert row["n_vectors"] == 100_000 and row["n_shards"] == 4 and row["factory"].startswith("IVF")
    assert row["recall_at_10"] >= 0.95
    manifest = _manifest(config.lake, result.build_id, row["manifest_sha256"])
    assert manifest["faces_version"] == read_version and manifest["dim"] == 16
    assert (
        json.loads(row["search_params"]) == manifest["search_params"]
        and manifest["search_params"]["nprobe"] >= 1
    )
    # nprobe was tuned: the curve has points below the target and the chosen one is the cheapest above it.
    curve = {p["nprobe"]: p["recall_at_10"] for p in manifest["curve"]}
    assert min(curve.values()) < 0.95 <= curve[manifest["search_params"]["nprobe"]]
    assert all(r < 0.95 for p, r in curve.items() if p < manifest["search_params"]["nprobe"])
    # Every face is in exactly the shard its id says, and nowhere else.
    expected = np.bincount([shard_of(i, 4) for i in ids], minlength=4).tolist()
    assert [s["vectors"] for s in manifest["shards"]] == expected
    assert {k for k in manifest["durations"]} >= {"read", "train", "add", "measure", "verify", "total"}
    assert Path(result.report).is_file() and "recall_latency.png" in Path(result.report).read_text()

    # A later write to faces does not change what the published build says it holds.
    append_faces(spark, config.lake, clustered_vectors(10, 16, seed=9), face_ids(10, salt="late"))
    assert current_build(spark, config.lake).faces_version == read_version
    # The searchable build answers a query with its own vector first.
    loaded = open_build(spark, config.lake)
    scores, found = loaded.search(vectors[[7, 70_000]], 10)
    assert [loaded.faces_of(found[q])[0][0] for q in range(2)] == [ids[7], ids[70_000]]
    assert scores[:, 0] == pytest.approx([1.0, 1.0], abs=1e-4)


def test_rerun_on_the_same_version_is_a_noop(spark: SparkSession, config: FacelakeConfig) -> None:
    config = _config(config)
    append_faces(spark, config.lake, clustered_vectors(300, 8, seed=1), face_ids(300))
    first = build_index(spark, config, RunContext("index-build"))
    registry_version = latest_version(spark, config.lake, "index_builds")
    again = build_index(spark, config, RunContext("index-build"))
    assert again.status == "unchanged" and again.build_id == first.build_id
    assert latest_version(spark, config.lake, "index_builds") == registry_version


def test_empty_faces_table(spark: SparkSession, config: FacelakeConfig) -> None:
    from jobs.lake.tables import ensure_table

    ensure_table(spark, config.lake, "faces")
    with pytest.raises(MixedPacksError, match="faces is empty"):
        build_index(spark, config, RunContext("index-build"))
    result = build_index(spark, config, RunContext("index-build"), pack=PACK_ID, dim=16)
    assert result.row["n_vectors"] == 0 and result.row["recall_at_10"] is None
    assert result.row["factory"] == "IDMap2,Flat"
    loaded = open_build(spark, config.lake)
    scores, found = loaded.search(np.ones((1, 16), dtype=np.float32) / 4, 5)
    assert (found == -1).all() and loaded.faces_of(found[0]) == [None] * 5


def test_a_shard_with_one_vector(spark: SparkSession, config: FacelakeConfig) -> None:
    # Find 7 faces whose ids put exactly one of them in some shard of a 3-shard build.
    ids = face_ids(7, salt="one")
    counts = np.bincount([shard_of(i, 3) for i in ids], minlength=3)
    assert 1 in counts.tolist(), counts  # fixed ids: a property of the data, checked
    lonely_shard = counts.tolist().index(1)
    lonely = next(i for i in ids if shard_of(i, 3) == lonely_shard)
    vectors = clustered_vectors(7, 8, seed=4)
    append_faces(spark, config.lake, vectors, ids)
    result = build_index(spark, config, RunContext("index-build"), shards=3)
    manifest = _manifest(config.lake, result.build_id, result.row["manifest_sha256"])
    assert [s["vectors"] for s in manifest["shards"]] == counts.tolist()
    loaded = open_build(spark, config.lake)
    _, found = loaded.search(vectors[[ids.index(lonely)]], 3)
    assert loaded.faces_of(found[0])[0][0] == lonely


def test_more_shards_than_faces_writes_every_shard(spark: SparkSession, config: FacelakeConfig) -> None:
    append_faces(spark, config.lake, clustered_vectors(2, 8, seed=5), face_ids(2))
    result = build_index(spark, config, RunContext("index-build"), shards=6)
    manifest = _manifest(config.lake, result.build_id, result.row["manifest_sha256"])
    assert [s["shard"] for s in manifest["shards"]] == list(range(6))
    assert sum(s["vectors"] for s in manifest["shards"]) == 2
    assert len(open_build(spark, config.lake).shards) == 6


def test_mixed_packs_are_refused_unless_one_is_chosen(spark: SparkSession, config: FacelakeConfig) -> None:
    append_faces(spark, config.lake, clustered_vectors(20, 8, seed=1), face_ids(20))
    append_faces(
        spark,
        config.lake,
        clustered_vectors(10, 4, seed=2),
        face_ids(10, salt="other"),
        pack_id="other@aaaaaaaaaaaa",
        pack_sha256="a" * 64,
    )
    with pytest.raises(MixedPacksError, match="2 packs"):
        build_index(spark, config, RunContext("index-build"))
    with pytest.raises(MixedPacksError, match="no pack 'nope'"):
        build_index(spark, config, RunContext("index-build"), pack="nope")
    result = build_index(spark, config, RunContext("index-build"), pack="other")
    assert result.row["pack_id"] == "other@aaaaaaaaaaaa" and result.row["dim"] == 4
    assert result.row["n_vectors"] == 10


def test_update_adds_and_removes_through_the_change_data_feed(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    config = _config(config, exact_below=500)
    vectors = clustered_vectors(3_000, 8, spread=0.5, seed=6)
    ids = face_ids(3_000)
    append_faces(spark, config.lake, vectors, ids)
    parent = build_index(spark, config, RunContext("index-build"), shards=2)
    assert parent.row["factory"].startswith("IVF")
    with pytest.raises(NoIndexBuildError):
        update_index(spark, config, RunContext("index-update"), pack="unknown")
    assert update_index(spark, config, RunContext("index-update")).status == "unchanged"

    extra = clustered_vectors(200, 8, spread=0.5, seed=7)
    extra_ids = face_ids(200, salt="new")
    append_faces(spark, config.lake, extra, extra_ids)
    delete_faces(spark, config.lake, ids[:100])
    run = RunContext("index-update")
    child = update_index(spark, config, run)

    row = child.row
    assert row["kind"] == "update" and row["parent_build_id"] == parent.build_id
    assert row["faces_version"] == latest_version(spark, config.lake, "faces")
    assert row["n_vectors"] == 3_100 and row["factory"] == parent.row["factory"]
    assert run.counts["faces_added"] == 200 and run.counts["faces_removed"] == 100
    assert row["recall_at_10"] >= 0.95
    loaded = open_build(spark, config.lake)
    assert loaded.record.build_id == child.build_id
    assert sum(s.ntotal for s in loaded.shards) == 3_100
    found_ids = {f for f, _ in (x for x in loaded.faces_of(loaded.id_map.index.to_numpy()) if x)}
    assert found_ids == set(ids[100:]) | set(extra_ids)
    _, found = loaded.search(extra[:3], 1)
    assert [loaded.faces_of(f)[0][0] for f in found] == extra_ids[:3]
    # The parent stays as it was (a retained build), and both are in the registry.
    assert {b.build_id for b in builds(spark, config.lake)} == {parent.build_id, child.build_id}


def test_a_changed_file_is_refused_at_load(spark: SparkSession, config: FacelakeConfig) -> None:
    append_faces(spark, config.lake, clustered_vectors(50, 8, seed=1), face_ids(50))
    result = build_index(spark, config, RunContext("index-build"), shards=2)
    store = BuildStore(config.lake)
    target = Path(store.path(result.build_id, "shard-00001.faiss"))
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match="shard-00001.faiss has sha256"):
        open_build(spark, config.lake)
    manifest = Path(store.path(result.build_id, MANIFEST))
    manifest.write_text(manifest.read_text().replace('"n_shards": 2', '"n_shards": 3'))
    with pytest.raises(IndexIntegrityError, match="manifest.json has sha256"):
        open_build(spark, config.lake)
    # A rebuild on the same version notices the damage and writes the build again.
    again = build_index(spark, config, RunContext("index-build"), shards=2)
    assert again.status == "published" and again.build_id == result.build_id
    assert open_build(spark, config.lake).record.build_id == result.build_id


def test_prune_keeps_the_newest_builds_and_deletes_the_rest(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    config = _config(config, index_keep_builds=2)
    made = []
    for step in range(3):
        append_faces(spark, config.lake, clustered_vectors(20, 8, seed=step), face_ids(20, salt=f"s{step}"))
        made.append(build_index(spark, config, RunContext("index-build")).build_id)
    store = BuildStore(config.lake)
    status = {b.build_id: b.status for b in builds(spark, config.lake)}
    assert status == {made[0]: "pruned", made[1]: "published", made[2]: "published"}
    assert not store.exists(made[0]) and store.exists(made[1]) and store.exists(made[2])
    assert current_build(spark, config.lake).build_id == made[2]
    # An unpublished folder (a killed build) goes once idle for the grace period.
    store.write_bytes("deadbeef/shard-00000.faiss", b"partial")
    assert prune(spark, config.lake, RunContext("index-prune"), keep=2)["orphans_deleted"] == 0
    assert prune(spark, config.lake, RunContext("index-prune"), keep=2, orphan_grace_seconds=0) == {
        "builds_pruned": 0,
        "orphans_deleted": 1,
    }
    assert not store.exists("deadbeef") and store.exists(made[2])
    history = read_table(spark, config.lake, "index_builds").where(F.col("status") == "pruned")
    assert history.count() == 1


def test_a_build_killed_midway_leaves_the_previous_build_current(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    import os
    import signal
    import subprocess
    import time

    config = _config(config, exact_below=1_000)
    append_faces(spark, config.lake, clustered_vectors(2_000, 8, seed=1), face_ids(2_000))
    previous = build_index(spark, config, RunContext("index-build"), shards=4)
    append_faces(spark, config.lake, clustered_vectors(20_000, 8, seed=2), face_ids(20_000, salt="more"))
    store = BuildStore(config.lake)
    env = {**os.environ, "FACELAKE_SPARK_MASTER": "local[2]", "FACELAKE_SHUFFLE_PARTITIONS": "2"}
    command = [sys.executable, "-m", "jobs.index.build", "build", "--lake", config.lake, "--shards", "4"]
    command += ["--exact-below", str(config.index_exact_below)]
    # Its own session: the kill takes the JVM and the Python workers with it, as a lost node would.
    proc = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killed_in = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [d for d in store.build_dirs() if d != previous.build_id]
            if partial and any(store.exists(f"{d}/shard-0000{s}.faiss") for d in partial for s in range(4)):
                os.killpg(proc.pid, signal.SIGKILL)
                killed_in = partial[0]
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_in is not None, (
        proc.returncode,
        proc.stderr.read().decode()[-2000:] if proc.stderr else "",
    )
    assert proc.returncode == -signal.SIGKILL
    # Shard files were written, but no registry row: the previous build is current and searchable.
    assert store.exists(killed_in) and not store.exists(f"{killed_in}/{MANIFEST}")
    assert [b.build_id for b in builds(spark, config.lake)] == [previous.build_id]
    loaded = open_build(spark, config.lake)
    assert loaded.record.build_id == previous.build_id and sum(s.ntotal for s in loaded.shards) == 2_000
    # The next build finishes; pruning removes the dead attempt's folder once idle.
    assert build_index(spark, config, RunContext("index-build"), shards=4).build_id == killed_in
    assert (
        prune(spark, config.lake, RunContext("index-prune"), keep=3, orphan_grace_seconds=0)[
            "orphans_deleted"
        ]
        == 0
    )
    assert current_build(spark, config.lake).n_vectors == 22_000


def test_cli_on_a_file_uri_lake_prints_the_report(
    spark: SparkSession, config: FacelakeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.index.build import main

    lake_uri = Path(config.lake).resolve().as_uri()  # file:///…: the Hadoop-style URI form
    append_faces(spark, lake_uri, clustered_vectors(40, 8, seed=1), face_ids(40))
    assert main(["build", "--lake", lake_uri, "--shards", "2"]) == 0
    out = capsys.readouterr().out
    assert "vectors_indexed=40" in out and "published; report file:///" in out
    report = out.strip().rsplit("report ", 1)[1]
    assert Path(report.removeprefix("file://")).is_file()
    assert main(["list", "--lake", lake_uri]) == 0
    listing = capsys.readouterr().out.strip().splitlines()
    assert len(listing) == 1 and "published" in listing[0] and "40 vectors / 2 shards" in listing[0]
    assert open_build(spark, lake_uri).record.n_vectors == 40
