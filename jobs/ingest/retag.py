"""Re-apply the jurisdiction policy to existing rows without re-reading any image or re-crawling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.policy import load_policy
from jobs.core.runs import RunContext, start_run
from jobs.ingest.dedupe import tag_groups
from jobs.ingest.job import tags_udf, union_cluster_tags
from jobs.lake.schemas import table_spec
from jobs.lake.tables import pin_read_versions, read_table, upsert_rows

TAG_COLUMNS = ("jurisdiction_tags", "policy_version")
WRITE_ORDER = ("image_sources", "images", "faces", "face_status")
"""Sources first, as in ingest; faces and face_status copy their image's tags, so they come after images."""
UPDATE_COLUMNS = {
    "image_sources": TAG_COLUMNS,
    "images": TAG_COLUMNS,
    "faces": ("jurisdiction_tags",),
    "face_status": ("jurisdiction_tags",),
}
COUNT_NAMES = {
    "image_sources": "sources_retagged",
    "images": "images_retagged",
    "faces": "faces_retagged",
    "face_status": "face_status_retagged",
}


def retag(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    *,
    gate: Callable[..., object] | None = None,
) -> dict[str, int]:
    """Recompute every source's tags under the current policy, then every cluster's union, and copy
    each image's tags onto its faces and face_status rows.

    Touches only the tag columns, and only rows whose tags or policy version change: a rerun with
    the same policy makes no commit. Every changed row of the four tables passes its expectation
    suite before anything is written; ``gate(suite, rows)`` (or ``gate.check_all``) defaults to the
    expectations gate (``jobs.quality.gate.publish_gate``) and raises ``QualityGateError`` on a failure.
    """
    policy = load_policy(config.policy_file or None)
    run.inputs.update({"policy_version": policy.version})
    tag = tags_udf(policy)
    read_versions = pin_read_versions(spark, config.lake, (*WRITE_ORDER, "image_links"), run)

    def pinned(name: str) -> DataFrame:
        return read_table(spark, config.lake, name, read_versions[name])

    sources = pinned("image_sources")
    images = pinned("images")
    # Small (ids and tags only) and reused by every check and write: the Python UDF runs once per source.
    source_tags = sources.select(
        "source_id", "image_id", tag("source_url", "page_url", "country", "tags").alias("_new_tags")
    ).persist()
    # Unioned over each cluster and over the clusters verified links join (same photo).
    groups = tag_groups(images.select("image_id", "canonical_id"), pinned("image_links")).select(
        "image_id", F.col("tag_group").alias("canonical_id")
    )
    cluster = union_cluster_tags(
        source_tags.select("image_id", F.col("_new_tags").alias("jurisdiction_tags")), groups
    )
    image_tags = (
        groups.join(cluster, "canonical_id", "left")
        .select(
            "image_id", F.coalesce("jurisdiction_tags", F.array().cast("array<string>")).alias("_new_tags")
        )
        .persist()
    )
    try:
        run.progress("policy %s: re-tagging %d source(s)", policy.version, source_tags.count())
        publish = {
            "image_sources": _changed(
                sources.join(source_tags.drop("image_id"), "source_id"), policy.version
            ),
            "images": _changed(images.join(image_tags, "image_id"), policy.version),
            # Against every image's tags, not only the changed ones: this also repairs rows left stale
            # by an ingest that widened a cluster after embedding, or by a retag that crashed midway.
            "faces": _changed(pinned("faces").join(image_tags, "image_id")),
            "face_status": _changed(pinned("face_status").join(image_tags, "image_id")),
        }
        # Every table passes its suite before any is written: a failure publishes nothing.
        _check(spark, config, run, gate, publish, pinned("faces"))
        for name in WRITE_ORDER:
            rows = _still_present(spark, config.lake, name, publish[name])
            written = upsert_rows(spark, config.lake, name, rows, UPDATE_COLUMNS[name], run)
            run.progress("%s: %d row(s) re-tagged", name, written)
            run.count(COUNT_NAMES[name], written)
    finally:
        source_tags.unpersist()
        image_tags.unpersist()
    return dict(run.counts)


def _changed(rows: DataFrame, policy_version: str | None = None) -> DataFrame:
    """Rows whose tags (``_new_tags``), or policy version when given, differ, carrying the new values."""
    differs = ~F.col("jurisdiction_tags").eqNullSafe(F.col("_new_tags"))
    if policy_version is not None:
        differs = differs | ~F.col("policy_version").eqNullSafe(F.lit(policy_version))
    out = rows.where(differs).withColumn("jurisdiction_tags", F.col("_new_tags")).drop("_new_tags")
    return out if policy_version is None else out.withColumn("policy_version", F.lit(policy_version))


def _still_present(spark: SparkSession, lake: str, name: str, rows: DataFrame) -> DataFrame:
    """Rows whose key is still in the table: upsert_rows inserts unknown keys, and a retag must never
    re-insert a row an erasure deleted after this run pinned its snapshot."""
    key = list(table_spec(name).key)
    return rows.join(read_table(spark, lake, name).select(*key), key, "left_semi")


def _check(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    gate: Callable[..., object] | None,
    publish: dict[str, DataFrame],
    faces_table: DataFrame,
) -> None:
    """Validate every frame of ``publish`` (empty ones are skipped by the gate); raises on a failure."""
    from jobs.quality.gate import check_together, publish_gate

    if gate is not None:
        check_together(gate, [(name, publish[name]) for name in WRITE_ORDER])
        return
    faces_by_dim = _faces_by_pack_dim(publish["faces"], faces_table)
    first_dim, first_faces = faces_by_dim[0] if faces_by_dim else (None, publish["faces"])
    dim = {} if first_dim is None else {"embedding_dim": first_dim}
    publish_gate(spark, config, run, **dim).check_all(
        [
            ("image_sources", publish["image_sources"]),
            ("images", publish["images"]),
            ("faces", first_faces),
            ("face_status", publish["face_status"]),
        ]
    )
    # Packs of another dimension need their own parameter, hence their own gate (rare: while packs
    # are switched); dq_results records each of these validations (its key has a validation id).
    for other_dim, frame in faces_by_dim[1:]:
        publish_gate(spark, config, run, embedding_dim=other_dim)("faces", frame)


def _faces_by_pack_dim(stale: DataFrame, faces_table: DataFrame) -> list[tuple[int, DataFrame]]:
    """Stale faces split by their pack's embedding dimension (none when nothing is stale).

    Retag loads no model, so a pack's dimension is the one most of its published faces have; a row
    that disagrees with its pack then fails the faces suite.
    """
    packs = [r["pack_id"] for r in stale.select("pack_id").distinct().collect()]
    if not packs:
        return []
    counts = (
        faces_table.where(F.col("pack_id").isin(packs))
        .groupBy("pack_id", "embedding_dim")
        .count()
        .orderBy("pack_id", F.desc("count"), "embedding_dim")
        .collect()
    )
    dim_of: dict[str, int] = {}
    for r in counts:
        dim_of.setdefault(r["pack_id"], int(r["embedding_dim"]))
    by_dim: dict[int, list[str]] = {}
    for pack in packs:
        by_dim.setdefault(dim_of[pack], []).append(pack)
    return [(d, stale.where(F.col("pack_id").isin(ps))) for d, ps in sorted(by_dim.items())]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy-file",
        help="jurisdiction policy TOML (default: the packaged jobs/resources/policies/jurisdiction.toml)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Re-tag the lake under the configured policy and print a summary."""
    from jobs.lake.session import get_spark

    config, ctx = start_run(args, "retag")
    retag(get_spark(config, "facelake-retag"), config, ctx)
    print(ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``facelake retag`` as a program: ``python -m jobs.ingest.retag --help``."""
    return command_main("retag", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
