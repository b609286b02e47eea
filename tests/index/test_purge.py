"""Erased faces leave every retained build: clean copies switched in by one registry commit."""

from __future__ import annotations

import numpy as np
from indexdata import append_faces, face_ids
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.index.build import build_index
from jobs.index.plan import faiss_id
from jobs.index.purge import remove_faces
from jobs.index.registry import builds, current_build
from jobs.index.search import LoadedBuild, open_build
from jobs.index.store import BuildStore
from jobs.testdata.vectors import clustered_vectors


def _all_ids(build: LoadedBuild) -> set[int]:
    return set(build.id_map.index.tolist())


def test_erased_faces_leave_every_retained_build(spark: SparkSession, config: FacelakeConfig) -> None:
    config = config.replace(index_exact_below=500, index_keep_builds=3)
    first_vectors, first_ids = clustered_vectors(1_000, 8, spread=0.5, seed=1), face_ids(1_000)
    append_faces(spark, config.lake, first_vectors, first_ids)
    older = build_index(spark, config, RunContext("index-build"), shards=2)
    append_faces(spark, config.lake, clustered_vectors(100, 8, seed=2), face_ids(100, salt="b"))
    newer = build_index(spark, config, RunContext("index-build"), shards=2)
    erased = first_ids[:30] + ["0" * 64]  # plus an id no build holds

    counts = remove_faces(spark, config.lake, erased, RunContext("erase"))

    assert set(counts["builds_cleaned"]) == {older.build_id[:12], newer.build_id[:12]}
    assert counts["vectors_removed"] == 60 and counts["build_folders_deleted"] == 2
    store = BuildStore(config.lake)
    status = {b.build_id: (b.status, b.kind, b.row["parent_build_id"]) for b in builds(spark, config.lake)}
    assert status[older.build_id][0] == status[newer.build_id][0] == "erased"
    assert not store.exists(older.build_id) and not store.exists(newer.build_id)
    clean = {
        parent: bid for bid, (st, kind, parent) in status.items() if kind == "erasure" and st == "published"
    }
    assert set(clean) == {older.build_id, newer.build_id}
    # The current build is still the newer one (its clean copy), at the same faces version.
    current = current_build(spark, config.lake)
    assert current.build_id == clean[newer.build_id] and current.faces_version == newer.row["faces_version"]
    gone = {faiss_id(f) for f in erased}
    for build_id in clean.values():
        loaded = open_build(spark, config.lake, build_id=build_id)
        assert not (_all_ids(loaded) & gone)
        assert sum(s.ntotal for s in loaded.shards) == len(loaded.id_map)
    loaded = open_build(spark, config.lake)
    assert loaded.record.n_vectors == 1_100 - 30
    _, found = loaded.search(first_vectors[:30], 1)
    assert not {f for f in found[:, 0].tolist()} & gone
    _, found = loaded.search(first_vectors[30:33], 1)
    assert [loaded.faces_of(f)[0][0] for f in found] == first_ids[30:33]
    # A rerun finds nothing to clean and changes nothing.
    before = [(b.build_id, b.status) for b in builds(spark, config.lake)]
    again = remove_faces(spark, config.lake, erased, RunContext("erase"))
    assert again == {"builds_cleaned": {}, "vectors_removed": 0, "build_folders_deleted": 0}
    assert [(b.build_id, b.status) for b in builds(spark, config.lake)] == before


def test_nothing_to_remove_touches_nothing(spark: SparkSession, config: FacelakeConfig) -> None:
    append_faces(spark, config.lake, clustered_vectors(20, 8, seed=1), face_ids(20))
    build = build_index(spark, config, RunContext("index-build"))
    counts = remove_faces(spark, config.lake, face_ids(5, salt="elsewhere"), RunContext("erase"))
    assert counts["builds_cleaned"] == {} and current_build(spark, config.lake).build_id == build.build_id
    assert np.isclose(
        open_build(spark, config.lake).search(clustered_vectors(20, 8, seed=1)[:1], 1)[0][0, 0], 1.0
    )
