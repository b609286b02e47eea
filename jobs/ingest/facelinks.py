"""After embed: faces whose embeddings are close are candidate copies of one photo; verified ones become links.

A crop, frame or mirror that pHash probes missed at ingest still holds the same face, and the same
face embeds to (almost) the same vector. Pairs of faces of two images in different clusters within
``min_similarity`` (cosine) are found with Spark ML's random-projection LSH (no all-pairs join),
each image pair is verified geometrically exactly as at ingest (``jobs.ingest.dedupe.verify_candidates``),
and a verified pair is written to ``image_links`` (stage ``faces``). Jurisdiction tags are then
unioned over the clusters each link joins (``jobs.ingest.retag``), so an erasure sees the copy too.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.runs import RunContext, start_run
from jobs.ingest.dedupe import verify_candidates
from jobs.ingest.job import link_rows
from jobs.ingest.retag import retag
from jobs.lake.tables import merge_new_rows, only_new, pin_read_versions, read_table

DEFAULT_MIN_SIMILARITY = 0.8
"""Cosine between two faces' embeddings above which their images are verified (copies embed at ~0.95+)."""


def face_candidates(faces: DataFrame, min_similarity: float, seed: int = 7) -> DataFrame:
    """(a_id, b_id) image pairs holding a face each within ``min_similarity`` cosine (LSH, approximate).

    ``faces`` has image_id, pack_id and an L2-normalised ``embedding``; faces are only compared within one
    pack. On unit vectors cosine >= s is Euclidean distance <= sqrt(2 - 2s).
    """
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector

    vectors = faces.select("image_id", "pack_id", array_to_vector("embedding").alias("v"))
    radius = math.sqrt(max(0.0, 2.0 - 2.0 * min_similarity))
    lsh = BucketedRandomProjectionLSH(
        inputCol="v", outputCol="hashes", bucketLength=max(radius, 1e-3) * 2, numHashTables=4, seed=seed
    )
    model = lsh.fit(vectors)
    joined = model.approxSimilarityJoin(vectors, vectors, radius, distCol="distance")
    return (
        joined.where(
            (F.col("datasetA.pack_id") == F.col("datasetB.pack_id"))
            & (F.col("datasetA.image_id") < F.col("datasetB.image_id"))
        )
        .select(F.col("datasetA.image_id").alias("a_id"), F.col("datasetB.image_id").alias("b_id"))
        .distinct()
    )


def link_by_faces(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    gate: Callable[..., object] | None = None,
) -> dict[str, int]:
    """Find, verify and record copies through their faces; then re-union tags over linked clusters.

    Pairs already in one cluster or already linked are skipped, so a rerun verifies nothing new and
    writes nothing. Returns counts: candidate pairs, verified links written, rows re-tagged.
    """
    from jobs.quality.gate import publish_gate

    versions = pin_read_versions(spark, config.lake, ("faces", "images", "image_links"), run)
    faces = read_table(spark, config.lake, "faces", versions["faces"])
    images = read_table(spark, config.lake, "images", versions["images"])
    links = read_table(spark, config.lake, "image_links", versions["image_links"])
    canonical_a = images.select(F.col("image_id").alias("a_id"), F.col("canonical_id").alias("ca"))
    canonical_b = images.select(F.col("image_id").alias("b_id"), F.col("canonical_id").alias("cb"))
    known = links.select(F.col("image_id").alias("a_id"), F.col("other_image_id").alias("b_id"))
    pairs = (
        face_candidates(faces, min_similarity)
        .join(canonical_a, "a_id")
        .join(canonical_b, "b_id")
        .where(F.col("ca") != F.col("cb"))
        .join(known, ["a_id", "b_id"], "left_anti")
        .select("a_id", "b_id", F.lit(None).cast("int").alias("distance"))
        .persist()
    )
    try:
        counts = {"face_link_candidates": pairs.count()}
        run.progress("%d image pair(s) share a close face across clusters", counts["face_link_candidates"])
        contents = images.select("image_id", "content").join(
            pairs.select(F.col("a_id").alias("image_id")).unionByName(
                pairs.select(F.col("b_id").alias("image_id"))
            ),
            "image_id",
            "left_semi",
        )
        verified = [
            r.asDict()
            for r in verify_candidates(pairs, contents, config.max_image_pixels).where("matched").collect()
        ]
    finally:
        pairs.unpersist()
    rows = only_new(spark, config.lake, "image_links", link_rows(spark, verified, "faces", run))
    (gate or publish_gate(spark, config, run))("image_links", rows)
    counts["face_links_written"] = merge_new_rows(
        spark, config.lake, "image_links", rows, run, already_new=True
    )
    run.progress("image_links: %d verified link(s) written", counts["face_links_written"])
    if counts["face_links_written"]:
        counts.update(retag(spark, config, run, gate=gate))
    for name, value in counts.items():
        run.count(name, value)
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake link-faces`` flags."""
    parser.add_argument(
        "--min-similarity",
        type=float,
        default=DEFAULT_MIN_SIMILARITY,
        help=f"face cosine above which two images are verified as copies (default {DEFAULT_MIN_SIMILARITY})",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the face-link job for parsed CLI arguments; prints a summary, returns the exit code."""
    from jobs.lake.session import get_spark

    config, run_ctx = start_run(args, "link-faces")
    spark = get_spark(config, "facelake-link-faces")
    link_by_faces(spark, config, run_ctx, min_similarity=args.min_similarity)
    print(run_ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.ingest.facelinks --lake URI``."""
    return command_main("link-faces", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
