"""Embed job (Spark driver): faces and face_status for canonical images not yet processed with the pack."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.runs import RunContext, start_run
from jobs.faces.packs import ModelPack, resolve_pack
from jobs.faces.runtime import (
    FaceStatus,
    FailureReason,  # noqa: F401 - face_status's reason vocabulary, read from here with FaceStatus
    ImageResult,
    RuntimeSettings,
    analyse_images,
    cached_pack,
    compute_threads,
    load_count,
    tune_allocator,
)
from jobs.lake.tables import (
    commit_metadata,
    ensure_table,
    latest_version,
    merge_new_rows,
    read_table,
    row_id_col,
    upsert_rows,
)
from jobs.quality.gate import check_together, publish_gate

log = logging.getLogger("facelake.embed")

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"
SPILLABLE = StorageLevel.MEMORY_AND_DISK


# What the executors return: one "status" row per image plus one "face" row per face.
RESULT_SCHEMA = T.StructType(
    [
        T.StructField("kind", T.StringType(), False),
        T.StructField("image_id", T.StringType(), False),
        T.StructField("status", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("detail", T.StringType()),
        T.StructField("face_count", T.IntegerType()),
        T.StructField("face_index", T.IntegerType()),
        T.StructField("bbox", T.ArrayType(T.FloatType())),
        T.StructField("landmarks", T.ArrayType(T.FloatType())),
        T.StructField("det_score", T.FloatType()),
        T.StructField("embedding", T.ArrayType(T.FloatType())),
        T.StructField("worker", T.StringType()),
        T.StructField("worker_loads", T.IntegerType()),
    ]
)


@dataclass(frozen=True)
class EmbedOptions:
    """Knobs of one embed run (the model pack, providers and lake come from FacelakeConfig)."""

    det_size: tuple[int, int] = (640, 640)
    det_thresh: float = 0.5
    rec_batch: int = 32
    """Aligned crops per recognizer call (faces of several images share a call); a recognizer whose batch
    axis is fixed gets exactly its declared size instead."""
    images_per_batch: int = 16
    """Images per Arrow batch handed to the Python worker."""
    threads: int | None = None
    """onnxruntime intra-op threads per task; None = cores per executor // concurrent tasks."""
    retry_failed: bool = False
    drop_other_packs: bool = False
    refresh_tags: bool = True


# ------------------------------------------------------------------------------------------------
# The mapInPandas function: the worker pipeline (jobs.faces.runtime) over Arrow batches
# ------------------------------------------------------------------------------------------------


def results_frame(results: list[ImageResult], worker: str, loads: int) -> pd.DataFrame:
    """ImageResults -> the rows of RESULT_SCHEMA (one status row per image, one row per face)."""
    rows: list[dict[str, Any]] = []
    for r in results:
        rows.append(
            {
                "kind": "status",
                "image_id": r.image_id,
                "status": r.status.value,
                "reason": r.reason.value if r.reason else None,
                "detail": r.detail,
                "face_count": len(r.faces) if r.status is FaceStatus.OK else 0,
                "face_index": None,
                "bbox": None,
                "landmarks": None,
                "det_score": None,
                "embedding": None,
                "worker": worker,
                "worker_loads": loads,
            }
        )
        if r.status is not FaceStatus.OK:
            continue
        for i, f in enumerate(r.faces):
            rows.append(
                {
                    "kind": "face",
                    "image_id": r.image_id,
                    "status": None,
                    "reason": None,
                    "detail": None,
                    "face_count": None,
                    "face_index": i,
                    "bbox": f.bbox.astype(np.float32).tolist(),
                    "landmarks": f.landmarks.astype(np.float32).reshape(-1).tolist(),
                    "det_score": float(min(max(f.det_score, 0.0), 1.0)),
                    "embedding": f.embedding.astype(np.float32),
                    "worker": worker,
                    "worker_loads": loads,
                }
            )
    frame = pd.DataFrame(rows, columns=RESULT_SCHEMA.fieldNames())
    for col in ("face_count", "face_index", "worker_loads"):
        frame[col] = frame[col].astype("Int32")
    frame["det_score"] = frame["det_score"].astype("float32")
    return frame


def embed_partition_fn(pack: ModelPack, settings: RuntimeSettings, rec_batch: int, max_pixels: int):
    """The ``mapInPandas`` function. It captures only the pack's path + checksums and the settings."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        tune_allocator()
        loaded = cached_pack(pack, settings)  # once per Python worker process
        worker = f"{platform.node()}:{os.getpid()}"
        for batch in batches:
            items = list(zip(batch["image_id"], batch["content"], strict=True))
            results = analyse_images(loaded, items, rec_batch=rec_batch, max_pixels=max_pixels)
            yield results_frame(results, worker, load_count(pack, settings))

    return run


# ------------------------------------------------------------------------------------------------
# Driver side
# ------------------------------------------------------------------------------------------------


def executor_slots(spark: SparkSession) -> tuple[int, int]:
    """(cores per executor, task slots per executor).

    Local mode: the N of ``local[N]``. A cluster: ``spark.executor.cores`` / ``spark.task.cpus``; when
    ``spark.executor.cores`` is unset the count is unknown and each task is given ``spark.task.cpus``.
    """
    sc = spark.sparkContext
    conf = sc.getConf()
    task_cpus = max(1, int(conf.get("spark.task.cpus", "1")))
    if sc.master.startswith("local"):
        cores = int(sc.defaultParallelism)
    elif conf.get("spark.executor.cores", None):
        cores = int(conf.get("spark.executor.cores"))
    else:
        return task_cpus, 1
    return cores, max(1, cores // task_cpus)


def pending_images(
    spark: SparkSession,
    lake: str,
    pack_id: str,
    *,
    images_version: int | None = None,
    retry_failed: bool = False,
) -> DataFrame:
    """Canonical images (image_id, content, jurisdiction_tags) without a face_status row for ``pack_id``."""
    images = read_table(spark, lake, "images", version=images_version)
    done = read_table(spark, lake, "face_status").where(F.col("pack_id") == pack_id)
    if retry_failed:
        done = done.where(F.col("status") != FaceStatus.FAILED.value)
    return (
        images.where(F.col("canonical_id") == F.col("image_id"))
        .join(done.select("image_id"), "image_id", "left_anti")
        .select("image_id", "content", "jurisdiction_tags")
    )


def _still_publishable(spark: SparkSession, lake: str, rows: DataFrame) -> DataFrame:
    """Rows whose image still exists now and is not suppressed (an erasure may have run meanwhile)."""
    current = read_table(spark, lake, "images").select("image_id")
    suppressed = (
        read_table(spark, lake, "suppression")
        .where("kind = 'sha256'")
        .select(F.col("value").alias("image_id"))
    )
    return rows.join(current, "image_id", "left_semi").join(suppressed, "image_id", "left_anti")


def merge_status(spark: SparkSession, lake: str, rows: DataFrame, run: RunContext) -> int:
    """MERGE face_status rows: insert new keys; replace a row whose status, reason or face count changed
    (a retried failure). Makes no commit when nothing changes. Returns rows inserted + updated."""
    return upsert_rows(
        spark, lake, "face_status", rows, ("status", "reason", "face_count"), run, replace_row=True
    )


def refresh_tags(spark: SparkSession, lake: str, run: RunContext) -> dict[str, int]:
    """Copy each image's current jurisdiction tags onto its faces and face_status rows (no commit if none changed).

    Tags change after embedding when a retag or a new UK source joins a cluster; erasure by
    jurisdiction must find the faces either way.
    """
    tags = read_table(spark, lake, "images").select("image_id", F.col("jurisdiction_tags").alias("_new_tags"))
    names = ("faces", "face_status")
    stale = {
        name: read_table(spark, lake, name)
        .join(tags, "image_id")
        .where(~F.col("jurisdiction_tags").eqNullSafe(F.col("_new_tags")))
        .withColumn("jurisdiction_tags", F.col("_new_tags"))
        .drop("_new_tags")
        for name in names
    }
    # The usual case, nothing stale, costs one Spark job for both tables; otherwise each is upserted.
    if stale["faces"].select("image_id").unionByName(stale["face_status"].select("image_id")).isEmpty():
        return dict.fromkeys(names, 0)
    return {
        name: upsert_rows(spark, lake, name, stale[name], update_columns=("jurisdiction_tags",), run=run)
        for name in names
    }


class IncompletePackError(ValueError):
    """Other packs' rows cannot be dropped while the current pack has not covered every canonical image."""


def drop_other_packs(spark: SparkSession, lake: str, pack_id: str, run: RunContext) -> dict[str, int]:
    """Delete faces and face_status rows of every pack but ``pack_id`` — only once ``pack_id`` is complete.

    Complete: every canonical image has a face_status row for ``pack_id`` (ok, no_face or failed).
    Rows stay readable by time travel until VACUUM, like any Delta delete.
    """
    from delta.tables import DeltaTable

    missing = pending_images(spark, lake, pack_id).count()
    if missing:
        raise IncompletePackError(
            f"{missing} canonical image(s) have no face_status row for {pack_id}: run `facelake embed` with this "
            "pack first, then drop the other packs"
        )
    dropped = {}
    for name in ("faces", "face_status"):
        uri = ensure_table(spark, lake, name)
        n = read_table(spark, lake, name).where(F.col("pack_id") != pack_id).count()
        if n:
            with commit_metadata(spark, run):
                DeltaTable.forPath(spark, uri).delete(F.col("pack_id") != pack_id)
        dropped[name] = n
    return dropped


def embed(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    options: EmbedOptions | None = None,
    *,
    gate: Callable[[str, DataFrame], None] | None = None,
) -> dict[str, Any]:
    """Detect and embed faces of every canonical image not yet processed with the configured pack.

    The pack is resolved on the driver (found, generated or fetched: ``jobs.faces.packs``); the canonical
    images of a pinned ``images`` version without a ``face_status`` row for it go through a
    ``mapInPandas`` function whose Python workers each load the pack once, from its folder by path and
    checksum (no model is ever pickled), and run ``jobs.faces.runtime.analyse_images``; then ``faces`` (one
    row per face) and ``face_status`` (one row per image: ok, no_face or failed with a reason) are written
    in that order, each an idempotent MERGE.

    Only canonical images are embedded: an alias is a near duplicate (resized, recompressed) of its
    canonical, so its faces would be the same faces again; search finds the canonical, whose sources
    include every alias (image_sources). A rerun processes nothing (no new Delta version); a new pack
    (new name or new bytes, hence a new ``pack_id``) re-embeds everything, and ``drop_other_packs``
    deletes the other packs' rows once every canonical image has a status row for the new pack. Failed
    images are not retried unless ``retry_failed`` (their content is immutable, so a decode failure is
    permanent); no-face images are never retried for the same pack.

    ``gate(table, rows)`` is called before each publish and may raise to stop it (``gate.check_all``,
    when the gate has it, checks both tables in one call); by default it is the expectations gate
    (``jobs.quality.gate.publish_gate``). Returns the pack identity and counts.
    """
    options = options or EmbedOptions()
    pack = resolve_pack(config.model_pack, config.models_dir)
    # A detector exported with a fixed input size runs at that size only; face_status records what ran.
    det_size = pack.detector_input_size or tuple(options.det_size)
    if det_size != tuple(options.det_size):
        log.warning(
            "detector %s has a fixed input of %dx%d: det_size %dx%d does not apply",
            pack.detector.file,
            *det_size,
            *options.det_size,
        )
    if gate is None:  # the expectations gate is on unless a caller supplies its own
        gate = publish_gate(spark, config, run, embedding_dim=pack.embedding_dim)
    run.inputs.update({"pack": pack.describe()})
    run.progress("model pack %s (%s)", pack.pack_id, pack.path)
    for name in ("images", "suppression", "faces", "face_status"):
        ensure_table(spark, config.lake, name)
    images_version = latest_version(spark, config.lake, "images")
    run.inputs["images_version"] = images_version

    pending = pending_images(
        spark, config.lake, pack.pack_id, images_version=images_version, retry_failed=options.retry_failed
    )
    pending = pending.join(
        read_table(spark, config.lake, "suppression")
        .where("kind = 'sha256'")
        .select(F.col("value").alias("image_id")),
        "image_id",
        "left_anti",
    )
    n_pending = pending.count()
    run.count("images_pending", n_pending)
    report: dict[str, Any] = {
        "pack_id": pack.pack_id,
        "pack_sha256": pack.pack_sha256,
        "images_version": images_version,
    }

    if n_pending:
        # Enough tasks to use every slot, then onnxruntime threads so that threads x tasks <= cores.
        partitions = pending.rdd.getNumPartitions()
        task_cpus = max(1, int(spark.sparkContext.getConf().get("spark.task.cpus", "1")))
        total_slots = max(1, spark.sparkContext.defaultParallelism // task_cpus)
        if partitions < min(total_slots, n_pending):
            partitions = min(total_slots, n_pending)
            pending = pending.repartition(partitions, "image_id")
        cores, slots = executor_slots(spark)
        threads = options.threads or compute_threads(cores, min(slots, partitions))
        settings = RuntimeSettings(tuple(config.onnx_providers), threads, det_size, options.det_thresh)
        run.progress(
            "embedding %d image(s) in %d task(s), %d onnxruntime thread(s) each",
            n_pending,
            partitions,
            threads,
        )
        fn = embed_partition_fn(pack, settings, options.rec_batch, config.max_image_pixels)
        previous = spark.conf.get(ARROW_BATCH_CONF, None)
        spark.conf.set(ARROW_BATCH_CONF, str(options.images_per_batch))
        try:
            # Computed exactly once: a local checkpoint cuts the lineage, so the Delta writes below (which
            # refresh cached plans that read face_status) can neither re-run the models nor change the rows.
            results = pending.select("image_id", "content").mapInPandas(fn, RESULT_SCHEMA)
            results = results.localCheckpoint(eager=True, storageLevel=SPILLABLE)
            run.progress("models ran on %d image(s)", n_pending)
        finally:
            if previous is None:
                spark.conf.unset(ARROW_BATCH_CONF)
            else:
                spark.conf.set(ARROW_BATCH_CONF, previous)
        tags = read_table(spark, config.lake, "images", version=images_version).select(
            "image_id", "jurisdiction_tags"
        )
        report.update(_publish(spark, config, run, pack, settings, tags, results, gate))
        stats = (
            results.where("kind = 'status'")
            .groupBy("worker")
            .agg(F.max("worker_loads").alias("loads"))
            .collect()
        )
        report["workers"] = len(stats)
        report["max_pack_loads_per_worker"] = max((r["loads"] for r in stats), default=0)
        report["threads"] = threads
        results.unpersist()
    if options.refresh_tags:
        retagged = refresh_tags(spark, config.lake, run)
        report.update({f"{k}_retagged": v for k, v in retagged.items()})
    if options.drop_other_packs:
        report.update(
            {f"{k}_dropped": v for k, v in drop_other_packs(spark, config.lake, pack.pack_id, run).items()}
        )
    for key, value in report.items():
        if isinstance(value, int) and key not in (
            "images_version",
            "threads",
            "workers",
            "max_pack_loads_per_worker",
        ):
            run.count(key, value)
    report["images_pending"] = n_pending
    return report


def _publish(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    pack: ModelPack,
    settings: RuntimeSettings,
    tags: DataFrame,
    results: DataFrame,
    gate: Callable[[str, DataFrame], None] | None,
) -> dict[str, int]:
    """Write faces, then face_status (so a crash in between only repeats work, never loses faces)."""
    now = F.lit(datetime.now(UTC)).cast("timestamp")
    faces = (
        results.where("kind = 'face'")
        .join(tags, "image_id")
        .select(
            row_id_col("image_id", F.lit(pack.pack_id), "face_index").alias("face_id"),
            "image_id",
            "face_index",
            "bbox",
            "landmarks",
            "det_score",
            "embedding",
            F.size("embedding").alias("embedding_dim"),
            F.lit(pack.pack_id).alias("pack_id"),
            F.lit(pack.pack_sha256).alias("pack_sha256"),
            "jurisdiction_tags",
            now.alias("embedded_at"),
            F.lit(run.run_id).alias("run_id"),
        )
    )
    model_files = F.array(
        *[
            F.struct(
                F.lit(f.role).alias("role"), F.lit(f.file).alias("file"), F.lit(f.sha256).alias("sha256")
            )
            for f in pack.files
        ]
    )
    status = (
        results.where("kind = 'status'")
        .join(tags, "image_id")
        .select(
            "image_id",
            F.lit(pack.pack_id).alias("pack_id"),
            "status",
            "reason",
            "detail",
            "face_count",
            F.lit(pack.pack_sha256).alias("pack_sha256"),
            model_files.alias("model_files"),
            F.lit(f"{settings.det_size[0]}x{settings.det_size[1]}").alias("det_size"),
            F.lit(settings.det_thresh).cast("float").alias("det_thresh"),
            "jurisdiction_tags",
            now.alias("processed_at"),
            F.lit(run.run_id).alias("run_id"),
        )
    )
    # Materialised once, so the counts, every expectation and the MERGEs' pre-checks scan these rows
    # instead of re-planning and re-running the joins over four Delta tables for each action.
    faces = _still_publishable(spark, config.lake, faces).localCheckpoint(eager=True, storageLevel=SPILLABLE)
    status = _still_publishable(spark, config.lake, status).localCheckpoint(
        eager=True, storageLevel=SPILLABLE
    )
    try:
        counts = {r["status"]: r["count"] for r in status.groupBy("status").count().collect()}
        out = {f"images_{s.value}": int(counts.get(s.value, 0)) for s in FaceStatus}
        # Both tables pass their expectations before either is written (one dq_results MERGE for both).
        if gate is not None:
            check_together(gate, [("faces", faces), ("face_status", status)])
        # What is written is what was validated, checked again against erasures that committed meanwhile.
        out["faces_inserted"] = merge_new_rows(
            spark, config.lake, "faces", _still_publishable(spark, config.lake, faces), run
        )
        run.progress("faces: %d row(s) written", out["faces_inserted"])
        out["face_status_written"] = merge_status(
            spark, config.lake, _still_publishable(spark, config.lake, status), run
        )
    finally:
        faces.unpersist()
        status.unpersist()
    run.progress(
        "face_status: %d row(s) written (%s)",
        out["face_status_written"],
        ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none",
    )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake embed`` flags."""
    parser.add_argument("--model-pack", help="pack name (buffalo_l, generated-test-pack…) or folder")
    parser.add_argument("--models-dir", help="folder holding pack folders (default $FACELAKE_MODELS_DIR)")
    parser.add_argument(
        "--onnx-providers",
        help="comma-separated onnxruntime providers, e.g. CUDAExecutionProvider,"
        "CPUExecutionProvider, or auto",
    )
    parser.add_argument(
        "--det-size", type=int, default=640, help="detector input size in pixels, square (default 640)"
    )
    parser.add_argument(
        "--det-thresh", type=float, default=0.5, help="detection score threshold (default 0.5)"
    )
    parser.add_argument(
        "--rec-batch", type=int, default=32, help="aligned faces per recognizer call (default 32)"
    )
    parser.add_argument(
        "--threads", type=int, help="onnxruntime threads per task (default cores // concurrent tasks)"
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="process again the images whose status is failed"
    )
    parser.add_argument(
        "--drop-other-packs",
        action="store_true",
        help="after publishing, delete other packs' faces and face_status rows (only if this pack is complete)",
    )
    parser.add_argument("--max-image-pixels", type=int, help="images above width x height are marked failed")
    add_config_arguments(parser)


def options_from_args(args: argparse.Namespace) -> EmbedOptions:
    return EmbedOptions(
        det_size=(args.det_size, args.det_size),
        det_thresh=args.det_thresh,
        rec_batch=args.rec_batch,
        threads=args.threads,
        retry_failed=args.retry_failed,
        drop_other_packs=args.drop_other_packs,
    )


def run(args: argparse.Namespace) -> int:
    """Run the embed job for parsed CLI arguments; prints a summary, returns the exit code."""
    from jobs.lake.session import get_spark

    config, run_ctx = start_run(args, "embed")
    options = options_from_args(args)
    spark = get_spark(config, "facelake-embed")
    report = embed(spark, config, run_ctx, options)
    print(f"pack {report['pack_id']}")
    print(run_ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.faces.embed --lake URI [--model-pack NAME]``."""
    return command_main("embed", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
