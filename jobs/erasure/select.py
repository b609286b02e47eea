"""Which images an erasure request reaches: its selector, the near-duplicate clusters, and face matches.

A request names images indirectly: by the jurisdiction tag (cluster-level, so a non-UK alias of a UK
picture goes too), by source domain (source and page hosts), by content hash, or by a subject's
photo. Every selected image pulls in its cluster (canonical and aliases) and the images face links
verified as copies. ``--expand-faces`` then adds every image holding a face that matches a face of
a selected image, found through the current FAISS build and confirmed with the exact similarity of
the stored embeddings; those are kept apart, with their scores, so a dry run shows what they add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.erasure.request import ErasureRequest
from jobs.lake.tables import ensure_table, host_suffixes, read_table

if TYPE_CHECKING:
    from jobs.index.search import LoadedBuild


@dataclass
class FaceMatch:
    """A face of the lake that matched a query face (a subject's, or one of a selected image)."""

    image_id: str
    face_id: str
    score: float


@dataclass
class Selection:
    """The images a request reaches, split by how they were reached (ids only)."""

    direct: set[str] = field(default_factory=set)
    subject: list[FaceMatch] = field(default_factory=list)
    expansion: list[FaceMatch] = field(default_factory=list)

    @property
    def image_ids(self) -> set[str]:
        return self.direct | {m.image_id for m in self.subject} | {m.image_id for m in self.expansion}


def _ids(df: DataFrame, column: str = "image_id") -> set[str]:
    return {r[0] for r in df.select(column).distinct().collect()}


def with_clusters(spark: SparkSession, lake: str, image_ids: set[str]) -> set[str]:
    """``image_ids`` plus every member of their near-duplicate clusters and their face-linked copies."""
    if not image_ids:
        return set()
    seeds = spark.createDataFrame([(i,) for i in sorted(image_ids)], "image_id string")
    images = read_table(spark, lake, "images").select("image_id", "canonical_id")
    clusters = images.join(seeds, "image_id", "left_semi").select("canonical_id").distinct()
    members = images.join(clusters, "canonical_id", "left_semi").select("image_id")
    found = image_ids | _ids(members)
    ensure_table(spark, lake, "image_links")
    links = read_table(spark, lake, "image_links")
    ids = spark.createDataFrame([(i,) for i in sorted(found)], "seed string")
    linked = (
        links.join(ids, F.col("image_id") == F.col("seed"), "inner")
        .select(F.col("other_image_id").alias("image_id"))
        .unionByName(links.join(ids, F.col("other_image_id") == F.col("seed"), "inner").select("image_id"))
    )
    more = _ids(linked) - found
    if not more:
        return found
    # A linked copy is a cluster of its own: take its members too.
    more_clusters = images.join(
        spark.createDataFrame([(i,) for i in sorted(more)], "image_id string"), "image_id", "left_semi"
    ).select("canonical_id")
    return found | more | _ids(images.join(more_clusters, "canonical_id", "left_semi"))


def by_selector(spark: SparkSession, lake: str, request: ErasureRequest) -> set[str]:
    """Images the selector names directly (before clusters and face expansion)."""
    for name in ("images", "image_sources"):
        ensure_table(spark, lake, name)
    images = read_table(spark, lake, "images")
    if request.kind == "jurisdiction":
        wanted = F.arrays_overlap(
            F.coalesce("jurisdiction_tags", F.array()), F.array(*map(F.lit, request.values))
        )
        return _ids(images.where(wanted))
    if request.kind == "source_domain":
        domain = request.values[0]
        sources = read_table(spark, lake, "image_sources")
        under = F.array_contains(F.coalesce(host_suffixes(F.col("source_host")), F.array()), domain) | (
            F.array_contains(F.coalesce(host_suffixes(F.col("page_host")), F.array()), domain)
        )
        return _ids(sources.where(under))
    if request.kind == "image_hashes":
        wanted = spark.createDataFrame([(v,) for v in request.values], "image_id string")
        return _ids(images.join(wanted, "image_id", "left_semi"))
    return set()


def confirm_matches(
    spark: SparkSession, lake: str, queries: np.ndarray, candidates: list[tuple[str, str]], threshold: float
) -> list[FaceMatch]:
    """Candidates (face_id, image_id) whose stored embedding is within ``threshold`` of any query, exactly.

    The index only proposes: its scores may be approximate (IVF, compressed codes), so each candidate's
    cosine similarity is recomputed from the ``faces`` table's embedding, best query kept.
    """
    if not candidates or len(queries) == 0:
        return []
    wanted = spark.createDataFrame(sorted(set(candidates)), "face_id string, image_id string")
    rows = (
        read_table(spark, lake, "faces")
        .join(wanted.select("face_id"), "face_id", "left_semi")
        .select("face_id", "image_id", "embedding")
        .collect()
    )
    if not rows:
        return []
    matrix = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    q = queries.astype(np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    best = (matrix @ q.T).max(axis=1)
    return sorted(
        (
            FaceMatch(r["image_id"], r["face_id"], float(s))
            for r, s in zip(rows, best, strict=True)
            if s >= threshold
        ),
        key=lambda m: (-m.score, m.face_id),
    )


# Compressed codes (SQ8, PQ) misestimate a cosine by a few hundredths: keep widening the search while the
# last neighbour the index returned is within this much of the threshold.
SCORE_SLACK = 0.05


def _held_out_faces(spark: SparkSession, lake: str, build: LoadedBuild) -> list[tuple[str, str]]:
    """(face_id, image_id) of the build's pack that its shards do not hold: embedded after it was built."""
    import pandas as pd

    ids = build.id_map["face_id"].astype(str).tolist() if "face_id" in build.id_map.columns else []
    held = spark.createDataFrame(pd.DataFrame({"face_id": ids}, dtype="object"), "face_id string")
    newer = (
        read_table(spark, lake, "faces")
        .where(F.col("pack_id") == build.record.pack_id)
        .select("face_id", "image_id")
        .join(held, "face_id", "left_anti")
        .collect()
    )
    return [(r["face_id"], r["image_id"]) for r in newer]


def _search(
    spark: SparkSession, config: FacelakeConfig, build: LoadedBuild, queries: np.ndarray, threshold: float
) -> list[FaceMatch]:
    """Faces matching any query: the build proposes, ``confirm_matches`` decides.

    The build is searched for ``erasure_search_k`` neighbours per query, doubled until every query's
    last neighbour scores below the threshold (less ``SCORE_SLACK``) or the build is exhausted, so a
    face with more matches than k loses none. Faces of the pack embedded after the build are not in it:
    each of them is a candidate too.
    """
    if len(queries) == 0:
        return []
    queries = queries.astype(np.float32)
    total = sum(int(shard.ntotal) for shard in build.shards)
    k = max(1, min(config.erasure_search_k, total))
    while True:
        scores, ids = build.search(queries, k)
        if k >= total or not bool((scores[:, -1] >= threshold - SCORE_SLACK).any()):
            break
        k = min(2 * k, total)
    found = [f for f in build.faces_of(np.unique(ids[ids >= 0])) if f is not None]
    candidates = found + _held_out_faces(spark, config.lake, build)
    return confirm_matches(spark, config.lake, queries, candidates, threshold)


def subject_matches(
    spark: SparkSession, config: FacelakeConfig, photo: bytes, threshold: float
) -> list[FaceMatch]:
    """Faces of the lake matching any face of the subject's photo (through the current build, confirmed)."""
    from jobs.index.search import embed_query, open_build

    build = open_build(spark, config.lake)
    faces = embed_query(config, photo, build)
    return _search(spark, config, build, np.stack([v for _, v in faces]), threshold)


def expansion_matches(
    spark: SparkSession, config: FacelakeConfig, image_ids: set[str], threshold: float
) -> list[FaceMatch]:
    """Faces of other images matching a face of ``image_ids`` (re-posts, crops, the same person lower down).

    The queries are the selected images' faces of the current build's pack: another pack's vectors lie
    in another space (while a lake switches packs, both packs' faces are there).
    """
    if not image_ids:
        return []
    from jobs.index.search import open_build

    ensure_table(spark, config.lake, "faces")
    seeds = spark.createDataFrame([(i,) for i in sorted(image_ids)], "image_id string")
    rows = (
        read_table(spark, config.lake, "faces")
        .join(seeds, "image_id", "left_semi")
        .select("pack_id", "embedding")
        .collect()
    )
    if not rows:
        return []
    build = open_build(spark, config.lake)
    vectors = [r["embedding"] for r in rows if r["pack_id"] == build.record.pack_id]
    if not vectors:
        return []
    queries = np.asarray(vectors, dtype=np.float32)
    return [m for m in _search(spark, config, build, queries, threshold) if m.image_id not in image_ids]


def select(spark: SparkSession, config: FacelakeConfig, request: ErasureRequest) -> Selection:
    """Resolve a request to images: the selector with clusters, the subject's matches, the face expansion."""
    selection = Selection()
    if request.kind == "subject_photo":
        threshold = request.subject_threshold or config.erasure_subject_threshold
        selection.subject = subject_matches(spark, config, request.photo or b"", threshold)
        selection.direct = with_clusters(spark, config.lake, {m.image_id for m in selection.subject})
        selection.direct -= {m.image_id for m in selection.subject}
    else:
        selection.direct = with_clusters(spark, config.lake, by_selector(spark, config.lake, request))
    if request.expand_faces is not None:
        seen = selection.image_ids
        matches = expansion_matches(spark, config, seen, request.expand_faces)
        best: dict[str, FaceMatch] = {}
        for m in matches:
            if m.image_id not in best or m.score > best[m.image_id].score:
                best[m.image_id] = m
        extra = with_clusters(spark, config.lake, set(best)) - seen
        selection.expansion = sorted(best.values(), key=lambda m: (-m.score, m.image_id)) + [
            FaceMatch(i, "", 0.0) for i in sorted(extra - set(best))
        ]
    return selection
