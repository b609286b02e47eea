"""`facelake index build|update|prune|list`: FAISS shards from one pinned `faces` version, built on workers.

A full build reads ``faces`` of one pack at one Delta version, trains one template index on a bounded
sample on the driver, then fills every shard on the workers (each worker reads its own shard's
vectors from the lake; nothing large comes back to the driver), measures recall@10 against exact
search on held-out queries, writes a manifest and an HTML report, verifies every file, and publishes
with one commit to ``index_builds``. An update starts from the current build's shards and applies
the Change Data Feed of ``faces`` since that build's version: inserts added, deletes removed, no
retraining.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.runs import RunContext, log, start_run
from jobs.index import mechanics
from jobs.index.plan import (
    FAISS_ID_HEX,
    METRIC,
    IndexPlan,
    choose_nprobe,
    human_bytes,
    nprobe_grid,
    parse_bytes,
    plan_index,
    shard_count,
)
from jobs.index.registry import BuildRecord, current_build, find_build, prune, publish
from jobs.index.store import MANIFEST, BuildStore, IndexIntegrityError
from jobs.lake.tables import ensure_table, pin_read_versions, read_table

TEMPLATE = "template.faiss"
REPORT = "report.html"
QUERY_SALT = "recall-query"
TRAIN_SALT = "train-sample"
SHARD_SCHEMA = (
    "shard int, vectors long, index_file string, ids_file string, index_sha256 string, ids_sha256 string, "
    "index_bytes long, ids_bytes long, seconds double, probe binary"
)


class MixedPacksError(ValueError):
    """The faces to index come from more than one pack or dimension: one build holds one pack."""


class IndexConsistencyError(RuntimeError):
    """An update's shard does not hold exactly the faces of its version (Change Data Feed gap)."""


def index_file(shard: int) -> str:
    return f"shard-{shard:05d}.faiss"


def ids_file(shard: int) -> str:
    return f"shard-{shard:05d}.ids.parquet"


def faiss_id_col(face_id: str | Column = "face_id") -> Column:
    """``plan.faiss_id`` as a Spark column: 60 bits of sha256(face_id) as a positive long."""
    col = F.col(face_id) if isinstance(face_id, str) else face_id
    return F.conv(F.substring(F.sha2(col, 256), 1, FAISS_ID_HEX), 16, 10).cast("long")


def _salted_rank(salt: str) -> Column:
    return F.sha2(F.concat(F.col("face_id"), F.lit("|" + salt)), 256)


def build_identity(
    kind: str,
    parent_build_id: str | None,
    pack_sha256: str,
    faces_version: int,
    n_shards: int,
    plan: IndexPlan,
    config: FacelakeConfig,
) -> dict[str, Any]:
    """What makes two builds the same build (hashed into the build id, recorded in the manifest)."""
    return {
        "kind": kind,
        "parent_build_id": parent_build_id,
        "pack_sha256": pack_sha256,
        "faces_version": faces_version,
        "n_shards": n_shards,
        "factory": plan.factory,
        "recall_target": config.index_recall_target,
    }


def build_id_for(**identity: Any) -> str:
    """Deterministic: the same pack, faces version, kind, parent and plan give the same build id."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class BuildResult:
    """What a build did: the registry row it published (or found), and where its report is."""

    build_id: str
    status: str
    """``published``, or ``unchanged`` when the same build was already current."""
    row: dict[str, Any]
    report: str | None = None
    durations: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PackFaces:
    """The faces of one pack at one version, and what the build needs to know about them."""

    frame: DataFrame
    pack_id: str
    pack_sha256: str
    dim: int
    count: int


def select_pack(faces: DataFrame, pack: str | None) -> PackFaces:
    """Faces of ``pack`` (a pack id like ``buffalo_l@1a2b…`` or its name); with None, the only pack there is.

    Refuses faces of several packs without ``--pack``, and a pack whose faces disagree on dimension or
    pack sha256: a FAISS index holds vectors of one embedding space.
    """
    stats = faces.groupBy("pack_id").agg(
        F.count("*").alias("n"),
        F.collect_set("embedding_dim").alias("dims"),
        F.collect_set("pack_sha256").alias("shas"),
    )
    found = {r["pack_id"]: r for r in stats.collect()}
    if pack:
        chosen = [p for p in found if p == pack or p.split("@", 1)[0] == pack]
        if len(chosen) > 1:
            raise MixedPacksError(
                f"--pack {pack!r} matches {len(chosen)} packs ({', '.join(sorted(chosen))})"
            )
        if not chosen:
            raise MixedPacksError(
                f"faces hold no pack {pack!r}; present: {', '.join(sorted(found)) or 'none (empty table)'}"
            )
        pack_id = chosen[0]
    elif len(found) > 1:
        raise MixedPacksError(
            f"faces hold {len(found)} packs ({', '.join(sorted(found))}): one build indexes one pack; "
            "choose with --pack"
        )
    elif not found:
        raise MixedPacksError("faces is empty: pass --pack (and --dim) to publish an empty build")
    else:
        pack_id = next(iter(found))
    row = found[pack_id]
    if len(row["dims"]) != 1 or len(row["shas"]) != 1:
        raise MixedPacksError(
            f"pack {pack_id}'s faces have {len(row['dims'])} dimension(s) and {len(row['shas'])} pack sha256(s): "
            "re-embed with one pack before indexing"
        )
    frame = faces.where(F.col("pack_id") == pack_id)
    return PackFaces(frame, pack_id, row["shas"][0], int(row["dims"][0]), int(row["n"]))


def _collect_vectors(rows: DataFrame, dim: int) -> tuple[np.ndarray, np.ndarray]:
    collected = rows.select("faiss_id", "embedding").collect()
    ids = np.array([r["faiss_id"] for r in collected], dtype=np.int64)
    return ids, mechanics.as_matrix([r["embedding"] for r in collected], dim)


def sample(rows: DataFrame, size: int, salt: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` rows chosen by a salted hash of face_id (the same rows on every rerun), collected."""
    if size <= 0:
        return np.empty(0, dtype=np.int64), np.empty((0, dim), dtype=np.float32)
    keys = rows.select("face_id", _salted_rank(salt).alias("_rank")).orderBy("_rank").limit(size)
    return _collect_vectors(rows.join(F.broadcast(keys.select("face_id")), "face_id", "left_semi"), dim)


def shard_task(
    lake: str, build_id: str, base: str, dim: int, queries: np.ndarray, grid: list[int], threads: int
):
    """The cogrouped pandas function run on a worker for one shard.

    ``base`` is the file each shard starts from: ``<build>/template.faiss`` for a full build (trained,
    empty) or ``<parent build>/shard-{n}`` for an update; then removed ids go, new rows are added,
    the count is checked against the shard's rows at the pinned version, recall queries are answered,
    and the index and its id map are written next to the manifest.
    """

    def run(key: tuple[Any, ...], current, removed):
        import faiss
        import pandas as pd

        faiss.omp_set_num_threads(threads)
        started = time.perf_counter()
        shard = int(key[0])
        store = BuildStore(lake)
        start_file = f"{base}/{index_file(shard)}" if not base.endswith(TEMPLATE) else base
        index = mechanics.from_bytes(store.read_bytes(start_file))
        ids = current["faiss_id"].to_numpy(dtype=np.int64)
        vectors = mechanics.as_matrix(current.pop("embedding"), dim)  # the column's arrays go now
        new = current["is_new"].to_numpy(dtype=bool)
        mechanics.fill_shard(index, ids[new], vectors[new], removed["faiss_id"].to_numpy(dtype=np.int64))
        if index.ntotal != len(ids):
            raise IndexConsistencyError(
                f"shard {shard}: {index.ntotal} vectors after applying changes, {len(ids)} faces at the "
                "pinned version: the Change Data Feed has a gap; run a full `facelake index build`"
            )
        probe = mechanics.probe_shard(index, ids, vectors, queries, grid)
        blob = mechanics.to_bytes(index)
        id_map = current[["faiss_id", "face_id", "image_id"]].sort_values("faiss_id")
        buffer = io.BytesIO()
        id_map.to_parquet(buffer, index=False)
        id_bytes = buffer.getvalue()
        index_sha = store.write_bytes(f"{build_id}/{index_file(shard)}", blob)
        ids_sha = store.write_bytes(f"{build_id}/{ids_file(shard)}", id_bytes)
        return pd.DataFrame(
            [
                {
                    "shard": shard,
                    "vectors": len(ids),
                    "index_file": index_file(shard),
                    "ids_file": ids_file(shard),
                    "index_sha256": index_sha,
                    "ids_sha256": ids_sha,
                    "index_bytes": len(blob),
                    "ids_bytes": len(id_bytes),
                    "seconds": time.perf_counter() - started,
                    "probe": _pack_probe(probe),
                }
            ]
        )

    return run


def _pack_probe(probe: mechanics.ShardProbe) -> bytes:
    arrays = {"exact_s": probe.exact[0], "exact_i": probe.exact[1]}
    for nprobe, (scores, ids) in probe.approx.items():
        arrays[f"s_{nprobe}"], arrays[f"i_{nprobe}"] = scores, ids
        arrays[f"t_{nprobe}"] = np.array([probe.seconds[nprobe]])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack_probe(data: bytes, grid: list[int]) -> mechanics.ShardProbe:
    arrays = np.load(io.BytesIO(data))
    return mechanics.ShardProbe(
        (arrays["exact_s"], arrays["exact_i"]),
        {p: (arrays[f"s_{p}"], arrays[f"i_{p}"]) for p in grid},
        {p: float(arrays[f"t_{p}"][0]) for p in grid},
    )


def _empty_shard(store: BuildStore, build_id: str, template: bytes, shard: int) -> dict[str, Any]:
    """A shard no face hashed to: the empty template and an empty id map (search still opens it)."""
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"faiss_id": np.array([], dtype=np.int64), "face_id": [], "image_id": []}).astype(
        {"face_id": "string", "image_id": "string"}
    ).to_parquet(buffer, index=False)
    return {
        "shard": shard,
        "vectors": 0,
        "index_file": index_file(shard),
        "ids_file": ids_file(shard),
        "index_sha256": store.write_bytes(f"{build_id}/{index_file(shard)}", template),
        "ids_sha256": store.write_bytes(f"{build_id}/{ids_file(shard)}", buffer.getvalue()),
        "index_bytes": len(template),
        "ids_bytes": len(buffer.getvalue()),
        "seconds": 0.0,
        "probe": None,
    }


def _worker_threads(spark: SparkSession) -> int:
    from jobs.faces.embed import executor_slots
    from jobs.faces.runtime import compute_threads

    cores, slots = executor_slots(spark)
    return compute_threads(cores, slots)


def _fill_shards(
    spark: SparkSession,
    lake: str,
    build_id: str,
    base: str,
    rows: DataFrame,
    removed: DataFrame,
    n_shards: int,
    dim: int,
    queries: np.ndarray,
    grid: list[int],
) -> list[dict[str, Any]]:
    task = shard_task(lake, build_id, base, dim, queries, grid, _worker_threads(spark))
    current = rows.select("shard", "faiss_id", "face_id", "image_id", "embedding", "is_new")
    shards = (
        current.groupBy("shard")
        .cogroup(removed.select("shard", "faiss_id").groupBy("shard"))
        .applyInPandas(task, SHARD_SCHEMA)
        .collect()
    )
    return sorted((r.asDict() for r in shards), key=lambda r: r["shard"])


@dataclass
class _BuildJob:
    """What a full build and an update both know before their shards are filled."""

    build_id: str
    identity: dict[str, Any]
    plan: IndexPlan
    pack: PackFaces
    faces_version: int
    n_shards: int
    started: float
    durations: dict[str, float]


def _fill_and_publish(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    store: BuildStore,
    job: _BuildJob,
    *,
    template: bytes,
    base: str,
    rows: DataFrame,
    removed: DataFrame,
    query_ids: np.ndarray,
    queries: np.ndarray,
) -> BuildResult:
    """Shards on the workers, then curve, manifest, report, verification, the publishing commit, pruning."""
    from jobs.quality.gate import publish_gate

    build_id, identity, plan, pack = job.build_id, job.identity, job.plan, job.pack
    faces_version, n_shards, durations = job.faces_version, job.n_shards, job.durations
    grid = nprobe_grid(plan.nlist)
    t0 = time.perf_counter()
    shard_rows = _fill_shards(
        spark, config.lake, build_id, base, rows, removed, n_shards, pack.dim, queries, grid
    )
    durations["add"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    present = {r["shard"] for r in shard_rows}
    shard_rows += [_empty_shard(store, build_id, template, s) for s in range(n_shards) if s not in present]
    shard_rows.sort(key=lambda r: r["shard"])
    probes = [_unpack_probe(r["probe"], grid) for r in shard_rows if r["probe"] is not None]
    curve = mechanics.recall_curve(probes, query_ids)
    chosen = choose_nprobe(curve, config.index_recall_target)
    search_params = {"nprobe": int(chosen["nprobe"])} if chosen.get("nprobe") else {}
    recall = float(chosen["recall_at_10"]) if chosen else None
    durations["measure"] = time.perf_counter() - t0
    shards = [{k: v for k, v in r.items() if k != "probe"} for r in shard_rows]
    n_vectors = sum(int(r["vectors"]) for r in shards)
    manifest = {
        **identity,
        "build_id": build_id,
        "pack_id": pack.pack_id,
        "pack_sha256": pack.pack_sha256,
        "faces_version": faces_version,
        "dim": pack.dim,
        "metric": METRIC,
        "factory": plan.factory,
        "plan": plan.as_dict(),
        "search_params": search_params,
        "n_vectors": n_vectors,
        "n_shards": n_shards,
        "shards": shards,
        "template_file": TEMPLATE,
        "template_sha256": hashlib.sha256(template).hexdigest(),
        "recall_at_10": recall,
        "recall_target": config.index_recall_target,
        "queries": int(len(query_ids)),
        "curve": curve,
        "memory_budget_bytes": plan.memory_budget,
        "estimated_memory_bytes": plan.estimated_bytes,
        "created_at": datetime.now(UTC).isoformat(),
        "run_id": run.run_id,
    }
    t0 = time.perf_counter()
    store.verify_files(build_id, manifest)
    durations["verify"] = time.perf_counter() - t0
    durations["total"] = time.perf_counter() - job.started
    manifest["durations"] = {k: round(v, 3) for k, v in durations.items()}
    report = _write_report(store, build_id, manifest)
    manifest_sha = store.write_json(f"{build_id}/{MANIFEST}", manifest)
    row = {
        "build_id": build_id,
        "pack_id": pack.pack_id,
        "pack_sha256": pack.pack_sha256,
        "faces_version": int(faces_version),
        "kind": identity["kind"],
        "parent_build_id": identity["parent_build_id"],
        "dim": pack.dim,
        "metric": METRIC,
        "factory": plan.factory,
        "search_params": json.dumps(search_params, sort_keys=True),
        "n_vectors": n_vectors,
        "n_shards": n_shards,
        "build_path": store.display(build_id),
        "manifest_sha256": manifest_sha,
        "recall_at_10": recall,
        "recall_target": float(config.index_recall_target),
        "estimated_bytes": int(plan.estimated_bytes),
        "memory_budget": int(plan.memory_budget),
        "status": "published",
        "published_at": datetime.now(UTC),
        "pruned_at": None,
        "run_id": run.run_id,
    }
    if held := erased_faces_held(spark, config.lake, store, build_id, shards):
        store.delete_dir(build_id)
        raise ErasedDuringBuildError(
            f"index build {build_id[:12]} holds {len(held)} face(s) of content an erasure suppressed while it "
            "ran; not published (run the build again)"
        )
    publish(spark, config.lake, row, run, publish_gate(spark, config, run))
    if held := erased_faces_held(spark, config.lake, store, build_id, shards):
        # An erasure completed between the check above and the publishing commit: clean the build now.
        from jobs.index.purge import remove_faces

        log.warning(
            "index build %s: an erasure ran while it published; removing %d face(s)", build_id[:12], len(held)
        )
        remove_faces(spark, config.lake, held, run)
    run.progress(
        "index build %s published: %d vectors in %d shard(s), %s, recall@10 %s, %s",
        build_id[:12],
        n_vectors,
        n_shards,
        plan.factory,
        "n/a" if recall is None else f"{recall:.3f}",
        json.dumps(search_params),
    )
    pruned = prune(spark, config.lake, run, keep=config.index_keep_builds, store=store)
    for name, value in {"vectors_indexed": n_vectors, "shards": n_shards, **pruned}.items():
        run.count(name, value)
    return BuildResult(build_id, "published", row, report, durations)


def _write_report(store: BuildStore, build_id: str, manifest: dict[str, Any]) -> str:
    from jobs.index.report import write_report

    with tempfile.TemporaryDirectory(prefix="facelake-report-") as tmp:
        html = write_report(manifest, Path(tmp))
        for path in sorted(Path(tmp).iterdir()):
            store.upload(path, f"{build_id}/{path.name}")
        return store.display(build_id, html.name)


def _with_ids(frame: DataFrame, n_shards: int) -> DataFrame:
    return frame.withColumn("faiss_id", faiss_id_col()).withColumn(
        "shard", F.pmod(F.col("faiss_id"), F.lit(n_shards)).cast("int")
    )


def _check_unique_ids(rows: DataFrame, expected: int) -> None:
    distinct = rows.select("faiss_id").distinct().count()
    if distinct != expected:
        raise ValueError(
            f"{expected - distinct} FAISS id collision(s) among {expected} faces (60-bit ids): report this"
        )


def build_index(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    *,
    pack: str | None = None,
    shards: int | str | None = None,
    memory_budget: str | int | None = None,
    dim: int | None = None,
) -> BuildResult:
    """Build and publish FAISS shards of one pack's faces at the latest ``faces`` version.

    ``shards``: a count, ``"auto"`` (one per 2M vectors), or None for ``config.shard_count``.
    ``memory_budget``: bytes or ``"4G"``; None for ``config.index_memory_budget``. ``dim`` is needed
    only to publish an empty build of a pack with no faces yet. Rerunning on an unchanged ``faces``
    version with the same settings finds the same build id already current and does nothing.
    """
    started = time.perf_counter()
    store = BuildStore(config.lake)
    durations: dict[str, float] = {}
    faces_version = pin_read_versions(spark, config.lake, ("faces",), run)["faces"]
    faces = read_table(spark, config.lake, "faces", faces_version)
    chosen = _pack_or_empty(faces, pack, dim)
    n_shards = shard_count(chosen.count, shards if shards is not None else config.shard_count)
    budget = parse_bytes(memory_budget if memory_budget is not None else config.index_memory_budget)
    plan = plan_index(chosen.count, chosen.dim, n_shards, budget, config.index_exact_below)
    identity = build_identity("full", None, chosen.pack_sha256, faces_version, n_shards, plan, config)
    build_id = build_id_for(**identity)
    existing = _already_published(spark, config.lake, build_id)
    if existing is not None:
        run.progress(
            "index build %s is already published for faces v%d: nothing to do", build_id[:12], faces_version
        )
        return BuildResult(build_id, "unchanged", existing.row)
    run.progress(
        "index build %s: %d %s vectors of dim %d from faces v%d -> %d shard(s) of %s (est. %s of %s)",
        build_id[:12],
        chosen.count,
        chosen.pack_id,
        chosen.dim,
        faces_version,
        n_shards,
        plan.factory,
        human_bytes(plan.estimated_bytes),
        human_bytes(budget),
    )
    store.delete_dir(build_id)  # leftovers of an attempt killed before publishing
    rows = _with_ids(chosen.frame, n_shards).withColumn("is_new", F.lit(True))
    _check_unique_ids(rows, chosen.count)
    t0 = time.perf_counter()
    query_ids, queries = sample(rows, config_queries(chosen.count), QUERY_SALT, chosen.dim)
    train_rows = rows.join(F.broadcast(_id_frame(spark, query_ids)), "faiss_id", "left_anti")
    _, train = sample(train_rows, plan.train_size, TRAIN_SALT, chosen.dim)
    durations["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    template = mechanics.to_bytes(mechanics.train_template(plan, train))
    store.write_bytes(f"{build_id}/{TEMPLATE}", template)
    durations["train"] = time.perf_counter() - t0
    del train
    job = _BuildJob(build_id, identity, plan, chosen, faces_version, n_shards, started, durations)
    return _fill_and_publish(
        spark,
        config,
        run,
        store,
        job,
        template=template,
        base=f"{build_id}/{TEMPLATE}",
        rows=rows,
        removed=rows.select("shard", "faiss_id").limit(0),
        query_ids=query_ids,
        queries=queries,
    )


class ErasedDuringBuildError(RuntimeError):
    """An erasure suppressed images this build indexed after the build read ``faces``: it is not published."""


def erased_faces_held(
    spark: SparkSession, lake: str, store: BuildStore, build_id: str, shards: list[dict[str, Any]]
) -> list[str]:
    """Face ids the build's shards hold of content the suppression list names now.

    The build read ``faces`` at a pinned version; an erasure that ran since then removed those faces
    from every version of the table, but not from shards already written.
    """
    import pandas as pd

    ensure_table(spark, lake, "suppression")
    suppressed = {
        r[0]
        for r in read_table(spark, lake, "suppression")
        .where(F.col("kind") == "sha256")
        .select("value")
        .collect()
    }
    if not suppressed:
        return []
    held: list[str] = []
    for entry in shards:
        id_map = pd.read_parquet(
            io.BytesIO(store.read_bytes(f"{build_id}/{entry['ids_file']}")), columns=["face_id", "image_id"]
        )
        held += id_map.loc[id_map["image_id"].isin(suppressed), "face_id"].tolist()
    return held


def config_queries(n_vectors: int) -> int:
    """Held-out recall queries: 1,000, or a tenth of a small table (at least 1 when there is any)."""
    return min(1000, max(1 if n_vectors else 0, n_vectors // 10))


def _id_frame(spark: SparkSession, ids: np.ndarray) -> DataFrame:
    return spark.createDataFrame([(int(i),) for i in ids], "faiss_id long")


def _pack_or_empty(faces: DataFrame, pack: str | None, dim: int | None) -> PackFaces:
    try:
        return select_pack(faces, pack)
    except MixedPacksError:
        if faces.isEmpty() and pack and dim:
            return PackFaces(faces, pack, hashlib.sha256(pack.encode()).hexdigest(), int(dim), 0)
        raise


def _already_published(spark: SparkSession, lake: str, build_id: str) -> BuildRecord | None:
    found = find_build(spark, lake, build_id)
    if found is None or found.status != "published":
        return None
    try:
        store = BuildStore(lake)
        store.verify_files(build_id, store.read_manifest(build_id, found.manifest_sha256))
    except (IndexIntegrityError, OSError):
        return None  # its files were damaged: build it again under the same id
    return found


def update_index(
    spark: SparkSession, config: FacelakeConfig, run: RunContext, *, pack: str | None = None
) -> BuildResult:
    """A new build = the current build of ``pack`` plus the ``faces`` changes since its version (CDF).

    Inserted faces are added and deleted faces removed, shard by shard on the workers, into the
    parent's trained index (no retraining: nightly full builds retrain); each shard's count is
    checked against ``faces`` at the new version, and recall is measured again. Unchanged ``faces``:
    nothing to do. Falls back to a full build when the Change Data Feed no longer covers the range.
    """
    started = time.perf_counter()
    store = BuildStore(config.lake)
    parent = current_build(spark, config.lake, pack)
    faces_version = pin_read_versions(spark, config.lake, ("faces",), run)["faces"]
    if faces_version == parent.faces_version:
        run.progress(
            "index: faces v%d is what build %s holds: nothing to do", faces_version, parent.build_id[:12]
        )
        return BuildResult(parent.build_id, "unchanged", parent.row)
    changes = _changes(spark, config.lake, parent, faces_version)
    if changes is None:
        run.progress(
            "index: the Change Data Feed no longer covers faces v%d..v%d: full build",
            parent.faces_version + 1,
            faces_version,
        )
        return build_index(spark, config, run, pack=parent.pack_id, shards=parent.n_shards)
    parent_manifest = store.read_manifest(parent.build_id, parent.manifest_sha256)
    store.verify_files(parent.build_id, parent_manifest)
    faces = read_table(spark, config.lake, "faces", faces_version).where(F.col("pack_id") == parent.pack_id)
    chosen = PackFaces(faces, parent.pack_id, parent.pack_sha256, parent.dim, faces.count())
    plan = IndexPlan(**parent_manifest["plan"])
    n_shards = parent.n_shards
    identity = build_identity(
        "update", parent.build_id, parent.pack_sha256, faces_version, n_shards, plan, config
    )
    build_id = build_id_for(**identity)
    existing = _already_published(spark, config.lake, build_id)
    if existing is not None:
        return BuildResult(build_id, "unchanged", existing.row)
    store.delete_dir(build_id)
    added = changes.where("is_new").select("face_id")
    rows = (
        _with_ids(faces, n_shards)
        .join(added.withColumn("is_new", F.lit(True)), "face_id", "left")
        .fillna({"is_new": False})
    )
    removed = _with_ids(changes.where("is_removed").select("face_id"), n_shards)
    counts = {"faces_added": added.count(), "faces_removed": changes.where(~F.col("is_new")).count()}
    run.progress(
        "index update %s from %s: faces v%d -> v%d, %d added, %d removed",
        build_id[:12],
        parent.build_id[:12],
        parent.faces_version,
        faces_version,
        counts["faces_added"],
        counts["faces_removed"],
    )
    _check_unique_ids(rows, chosen.count)
    durations: dict[str, float] = {}
    t0 = time.perf_counter()
    query_ids, queries = sample(rows, config_queries(chosen.count), QUERY_SALT, chosen.dim)
    durations["read"] = time.perf_counter() - t0
    template = store.read_bytes(f"{parent.build_id}/{TEMPLATE}")
    store.write_bytes(f"{build_id}/{TEMPLATE}", template)
    for name, value in counts.items():
        run.count(name, value)
    job = _BuildJob(build_id, identity, plan, chosen, faces_version, n_shards, started, durations)
    return _fill_and_publish(
        spark,
        config,
        run,
        store,
        job,
        template=template,
        base=parent.build_id,
        rows=rows,
        removed=removed,
        query_ids=query_ids,
        queries=queries,
    )


def _changes(spark: SparkSession, lake: str, parent: BuildRecord, version: int) -> DataFrame | None:
    """face_id, is_new, is_removed: the net effect of ``faces`` changes after the parent's version.

    A face's last change decides: inserted (or updated) and present at ``version`` is new; deleted is
    removed; an update also removes the old vector first. None when CDF cannot be read for the range.
    """
    from pyspark.errors import AnalysisException, IllegalArgumentException

    from jobs.lake.tables import table_uri

    try:
        cdf = (
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", parent.faces_version + 1)
            .option("endingVersion", version)
            .load(table_uri(lake, "faces"))
            .where(F.col("pack_id") == parent.pack_id)
            .where(F.col("_change_type") != "update_preimage")
        )
        from pyspark.sql.window import Window

        last = Window.partitionBy("face_id").orderBy(F.col("_commit_version").desc())
        net = (
            cdf.select("face_id", "_change_type", "_commit_version")
            .withColumn("_rank", F.row_number().over(last))
            .where("_rank = 1")
            .select(
                "face_id",
                (F.col("_change_type") != "delete").alias("is_new"),
                F.lit(True).alias("is_removed"),
            )
            .persist()
        )
        net.count()
        return net
    except (AnalysisException, IllegalArgumentException):
        return None


# -- CLI ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake index build|update|prune|list`` flags."""
    sub = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="full build from the latest faces version, then publish and prune")
    build.add_argument("--pack", help="pack id or name to index (needed when faces hold several packs)")
    build.add_argument("--shards", help="shard count or 'auto' (default: config shard_count)")
    build.add_argument("--memory-budget", dest="index_memory_budget", help="index memory for search, e.g. 4G")
    build.add_argument(
        "--exact-below", dest="index_exact_below", type=int, help="vectors below which the index is exact"
    )
    build.add_argument(
        "--recall-target", dest="index_recall_target", type=float, help="recall@10 to tune for (0.95)"
    )
    build.add_argument(
        "--keep-builds", dest="index_keep_builds", type=int, help="published builds kept per pack"
    )
    build.add_argument("--dim", type=int, help="dimension for an empty build (no faces of --pack yet)")
    update = sub.add_parser(
        "update", help="current build + faces changes since its version (Change Data Feed)"
    )
    update.add_argument("--pack", help="pack id or name (default: the pack of the newest build)")
    update.add_argument(
        "--keep-builds", dest="index_keep_builds", type=int, help="published builds kept per pack"
    )
    prune_cmd = sub.add_parser("prune", help="delete builds beyond --keep-builds and unpublished leftovers")
    prune_cmd.add_argument(
        "--keep-builds", dest="index_keep_builds", type=int, help="published builds kept per pack"
    )
    prune_cmd.add_argument(
        "--orphan-grace", type=float, default=3600.0, help="seconds an unpublished folder must be idle"
    )
    sub.add_parser("list", help="the registry: every build, newest first")
    for p in (build, update, prune_cmd, sub.choices["list"]):
        add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run ``facelake index <action>``; prints a summary (with the report's location), returns the exit code."""
    from jobs.index.registry import builds
    from jobs.lake.session import get_spark

    config, run_ctx = start_run(args, f"index-{args.index_command}")
    spark = get_spark(config, f"facelake-index-{args.index_command}")
    if args.index_command == "build":
        result = build_index(spark, config, run_ctx, pack=args.pack, shards=args.shards, dim=args.dim)
    elif args.index_command == "update":
        result = update_index(spark, config, run_ctx, pack=args.pack)
    elif args.index_command == "prune":
        counts = prune(
            spark, config.lake, run_ctx, keep=config.index_keep_builds, orphan_grace_seconds=args.orphan_grace
        )
        for name, value in counts.items():
            run_ctx.count(name, value)
        print(run_ctx.summary())
        return 0
    else:
        for b in builds(spark, config.lake):
            recall = b.row["recall_at_10"]
            print(
                f"{b.build_id[:12]}  {b.status:9}  {b.kind:6}  {b.pack_id}  faces v{b.faces_version}  "
                f"{b.n_vectors} vectors / {b.n_shards} shards  {b.row['factory']}  "
                f"recall@10 {'n/a' if recall is None else f'{recall:.3f}'}  {b.row['published_at']:%Y-%m-%d %H:%M}"
            )
        return 0
    print(
        run_ctx.summary()
        + f"; build {result.build_id[:12]} {result.status}"
        + (f"; report {result.report}" if result.report else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.index.build build --lake URI``."""
    return command_main("index", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
