"""Remove erased faces from every retained FAISS build: clean copies, switched in by one registry commit.

An erasure must leave no erased vector or id in any build a search could load, current or retained.
Builds are immutable (their files are checksummed in a manifest the registry pins), so each build
holding an erased face is copied shard by shard on the workers without those faces — FAISS ids are
computed from face ids, nothing needs reading to find them — into a new folder with its own
manifest. One Delta commit to ``index_builds`` then adds the clean builds (``kind = erasure``,
``parent_build_id`` = the build they replace, same faces version, so the current build stays the
current one) and marks the originals ``erased``; only after that commit are the originals' folders
deleted. Killed before the commit: the originals are still current and complete, and a rerun
starts over. Killed after it: a rerun finds nothing left to clean and deletes the leftover folders.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pyspark.sql import SparkSession

from jobs.core.runs import RunContext
from jobs.index import mechanics
from jobs.index.plan import faiss_id
from jobs.index.registry import BuildRecord, builds, write_rows
from jobs.index.store import MANIFEST, BuildStore


def _clean_shard(
    lake: str, old_id: str, new_id: str, entry: dict[str, Any], erased: np.ndarray
) -> dict[str, Any]:
    """One shard of ``old_id`` without the ``erased`` FAISS ids, written under ``new_id`` (runs on a worker)."""
    import pandas as pd

    store = BuildStore(lake)
    index = mechanics.from_bytes(store.read_bytes(f"{old_id}/{entry['index_file']}"))
    id_map = pd.read_parquet(io.BytesIO(store.read_bytes(f"{old_id}/{entry['ids_file']}")))
    gone = id_map["faiss_id"].isin(erased)
    removed = (
        int(index.remove_ids(np.asarray(id_map.loc[gone, "faiss_id"], dtype=np.int64))) if gone.any() else 0
    )
    kept = id_map.loc[~gone].reset_index(drop=True)
    if removed != int(gone.sum()) or index.ntotal != len(kept):
        raise RuntimeError(f"build {old_id[:12]} {entry['index_file']}: index and id map disagree")
    blob = mechanics.to_bytes(index)
    buffer = io.BytesIO()
    kept.to_parquet(buffer, index=False)
    return {
        **entry,
        "vectors": len(kept),
        "index_sha256": store.write_bytes(f"{new_id}/{entry['index_file']}", blob),
        "ids_sha256": store.write_bytes(f"{new_id}/{entry['ids_file']}", buffer.getvalue()),
        "index_bytes": len(blob),
        "ids_bytes": len(buffer.getvalue()),
        "removed": removed,
    }


def _holds_any(store: BuildStore, build: BuildRecord, manifest: dict[str, Any], erased: np.ndarray) -> int:
    """How many of the ``erased`` ids the build's id maps hold (id maps are small: ids only)."""
    import pandas as pd

    found = 0
    for entry in manifest["shards"]:
        id_map = pd.read_parquet(io.BytesIO(store.read_bytes(f"{build.build_id}/{entry['ids_file']}")))
        found += int(id_map["faiss_id"].isin(erased).sum())
    return found


def builds_holding(spark: SparkSession, lake: str, face_ids: Iterable[str]) -> dict[str, int]:
    """Published builds holding any of ``face_ids``: build id -> how many (for an erasure's dry run)."""
    erased = np.unique(np.fromiter((faiss_id(f) for f in face_ids), dtype=np.int64))
    if not erased.size:
        return {}
    store = BuildStore(lake)
    found = {}
    for build in builds(spark, lake):
        if build.status == "published":
            manifest = store.read_manifest(build.build_id, build.manifest_sha256)
            if held := _holds_any(store, build, manifest, erased):
                found[build.build_id] = held
    return found


def remove_faces(spark: SparkSession, lake: str, face_ids: Iterable[str], run: RunContext) -> dict[str, Any]:
    """Replace every published build holding any of ``face_ids`` by a copy without them.

    Returns ids and counts only: builds cleaned (old -> new id), vectors removed, folders deleted.
    Idempotent: with nothing left to remove it only deletes folders of builds already marked erased.
    """
    erased = np.unique(np.fromiter((faiss_id(f) for f in face_ids), dtype=np.int64))
    store = BuildStore(lake)
    registered = builds(spark, lake)
    plans: list[tuple[BuildRecord, dict[str, Any], str]] = []
    for build in registered:
        if build.status != "published":
            continue
        manifest = store.read_manifest(build.build_id, build.manifest_sha256)
        if erased.size and _holds_any(store, build, manifest, erased):
            digest = hashlib.sha256(erased.tobytes()).hexdigest()
            new_id = hashlib.sha256(f"{build.build_id}|erasure|{digest}".encode()).hexdigest()
            plans.append((build, manifest, new_id))
    counts: dict[str, Any] = {"builds_cleaned": {}, "vectors_removed": 0, "build_folders_deleted": 0}
    if plans:
        tasks = [
            (build.build_id, new_id, entry)
            for build, manifest, new_id in plans
            for entry in manifest["shards"]
        ]
        for _, new_id, _ in tasks:
            store.delete_dir(new_id)  # a previous attempt killed before its commit
        done = (
            spark.sparkContext.parallelize(tasks, max(1, len(tasks)))
            .map(lambda t: (t[1], _clean_shard(lake, t[0], t[1], t[2], erased)))
            .collect()
        )
        by_build: dict[str, list[dict[str, Any]]] = {}
        for new_id, entry in done:
            by_build.setdefault(new_id, []).append(entry)
        rows = []
        now = datetime.now(UTC)
        for build, manifest, new_id in plans:
            shards = sorted(by_build[new_id], key=lambda e: e["shard"])
            removed = sum(e.pop("removed") for e in shards)
            template = store.read_bytes(f"{build.build_id}/{manifest['template_file']}")
            store.write_bytes(f"{new_id}/{manifest['template_file']}", template)
            clean = {
                **manifest,
                "build_id": new_id,
                "kind": "erasure",
                "parent_build_id": build.build_id,
                "shards": shards,
                "n_vectors": sum(e["vectors"] for e in shards),
                "created_at": now.isoformat(),
                "run_id": run.run_id,
                "erasure": {"vectors_removed": removed},
            }
            store.verify_files(new_id, clean)
            sha = store.write_json(f"{new_id}/{MANIFEST}", clean)
            rows.append(
                {
                    **build.row,
                    "build_id": new_id,
                    "kind": "erasure",
                    "parent_build_id": build.build_id,
                    "n_vectors": clean["n_vectors"],
                    "build_path": store.display(new_id),
                    "manifest_sha256": sha,
                    "run_id": run.run_id,
                }
            )
            rows.append({**build.row, "status": "erased", "pruned_at": now})
            counts["builds_cleaned"][build.build_id[:12]] = new_id[:12]
            counts["vectors_removed"] += removed
        # One commit: the clean builds appear and the originals stop being searchable together.
        write_rows(spark, lake, rows, run)
    for build in builds(spark, lake):
        if build.status == "erased" and store.exists(build.build_id):
            store.delete_dir(build.build_id)
            counts["build_folders_deleted"] += 1
    run.progress("index: %s", json.dumps(counts, sort_keys=True))
    return counts
