"""Ingest stage: a crawl drop -> validated, decoded, hashed, deduplicated and tagged rows in Delta.

Steps (each a function below): parse the manifest; drop suppressed URLs; read and decode every
referenced file on the executors; quarantine what fails; drop suppressed content; build
provenance rows; find near duplicates against the drop and the table; pick canonicals; union
jurisdiction tags over each cluster; then write image_sources -> images -> crawl_manifest ->
quarantine, each an idempotent MERGE. Sources are written first so a crash never leaves an image
without its provenance; a rerun completes what a crashed run left out.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.dropfiles import local_root, object_store_options, read_drop_file
from jobs.core.imaging import decode_image, hamming
from jobs.core.manifest import UTF8_BOM, ManifestRecord, Rejection, drop_id_for, parse_line
from jobs.core.neardup import METHOD as NEAR_DUP_METHOD
from jobs.core.neardup import Edge, Member, assign_canonicals
from jobs.core.policy import Policy, load_policy, tags_for_source
from jobs.core.runs import RunContext, start_run
from jobs.ingest.dedupe import (
    candidate_pairs,
    near_duplicate_pairs,
    phash_long_col,
    tag_groups,
    verify_candidates,
)
from jobs.ingest.suppression import load_suppression, not_suppressed_now, without_suppressed_hosts
from jobs.lake.schemas import table_spec
from jobs.lake.tables import (
    ensure_table,
    init_lake,
    latest_version,
    merge_new_rows,
    only_new,
    pin_read_versions,
    read_table,
    row_id_col,
    upsert_rows,
    url_sha256,
)
from jobs.quality.gate import check_together, publish_gate

log = logging.getLogger("facelake.ingest")

MANIFEST_NAME = "manifest.jsonl"
WRITE_ORDER = ("image_sources", "images", "image_links", "crawl_manifest", "quarantine")

# One row per manifest line, valid or not, before it is split into crawl_manifest and quarantine.
_PARSED = T.StructType(
    [
        T.StructField("line_no", T.IntegerType(), False),
        T.StructField("ok", T.BooleanType(), False),
        T.StructField("image_path", T.StringType()),
        T.StructField("source_url", T.StringType()),
        T.StructField("source_host", T.StringType()),
        T.StructField("page_url", T.StringType()),
        T.StructField("page_host", T.StringType()),
        T.StructField("crawled_at", T.TimestampType()),
        T.StructField("country", T.StringType()),
        T.StructField("tags", T.ArrayType(T.StringType())),
        T.StructField("platform", T.StringType()),
        T.StructField("extra", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("detail", T.StringType()),
        T.StructField("raw_line", T.StringType()),
    ]
)

_DECODED = T.StructType(
    [
        T.StructField("image_path", T.StringType()),
        T.StructField("sha256", T.StringType()),
        T.StructField("byte_size", T.LongType()),
        T.StructField("phash", T.StringType()),
        T.StructField("probe_hashes", T.ArrayType(T.StringType())),
        T.StructField("width", T.IntegerType()),
        T.StructField("height", T.IntegerType()),
        T.StructField("format", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("detail", T.StringType()),
        T.StructField("content", T.BinaryType()),
    ]
)
# Decoded rows are yielded in chunks of about this many image bytes, so a batch of paths never
# holds more than that in a Python worker, whatever Arrow's records-per-batch setting.
DECODE_CHUNK_BYTES = 64 << 20


class RacedErasureError(RuntimeError):
    """Rows this run wrote match suppression entries an erasure added while it wrote them."""


class InjectedFailure(RuntimeError):
    """Raised on purpose after a write step (``fail_after``) to test crash recovery."""


@dataclass
class IngestReport:
    """What one ingest run did: counts per outcome and per quarantine reason, rows inserted per table."""

    drop_id: str
    counts: dict[str, int] = field(default_factory=dict)
    quarantine: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)


def _parsed_row(line: bytes, line_no: int) -> tuple[Any, ...]:
    parsed = parse_line(line, line_no)
    if isinstance(parsed, ManifestRecord):
        return (
            line_no,
            True,
            parsed.image_path,
            parsed.source_url,
            parsed.source_host,
            parsed.page_url,
            parsed.page_host,
            parsed.crawled_at,
            parsed.country,
            parsed.tags,
            parsed.platform,
            parsed.extra,
            None,
            None,
            None,
        )
    assert isinstance(parsed, Rejection)
    return (
        line_no,
        False,
        parsed.image_path,
        parsed.source_url,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        parsed.reason.value,
        parsed.detail,
        parsed.raw_line,
    )


def normalize_drop_uri(drop: str) -> str:
    """What ``drop_uri`` records for a drop: an absolute local path for a local folder (a relative path
    or ``file:`` URI resolved, links included), any other URI (``s3a://…``) unchanged.

    Absolute so that a later job (an erasure looking for landing files) finds the folder whatever
    its working directory; a bare path stays local, as ``jobs.core.dropfiles.local_root`` reads it.
    """
    root = local_root(drop)
    return drop if root is None else str(Path(root).resolve())


def manifest_uri(drop: str) -> str:
    return drop.rstrip("/") + "/" + MANIFEST_NAME


def read_drop_id(spark: SparkSession, drop: str) -> str:
    """The drop's deterministic id, from the manifest bytes (works for local paths and object stores)."""
    from pyspark.errors import AnalysisException

    try:
        row = spark.read.format("binaryFile").load(manifest_uri(drop)).select("content").first()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" not in str(exc):
            raise
        row = None
    if row is None:
        raise FileNotFoundError(f"no {MANIFEST_NAME} in drop {drop}")
    return drop_id_for(bytes(row["content"]))


def parse_manifest(spark: SparkSession, drop: str) -> DataFrame:
    """Every non-blank manifest line parsed on the executors, with its 1-based line number.

    Lines are split on ``\\n`` only and handed over as raw bytes (Spark's text source keeps them
    undecoded), so invalid UTF-8 is quarantined instead of silently replaced by U+FFFD.
    """
    text = spark.read.option("lineSep", "\n").text(manifest_uri(drop))
    lines = (
        text.select(F.col("value").cast("binary").alias("line")).rdd.map(lambda r: bytes(r[0])).zipWithIndex()
    )
    rows = lines.filter(lambda li: li[0].strip() not in (b"", UTF8_BOM)).map(
        lambda li: _parsed_row(li[0], li[1] + 1)
    )
    return spark.createDataFrame(rows, _PARSED)


def read_and_decode(
    spark: SparkSession, drop: str, paths: DataFrame, max_bytes: int, max_pixels: int
) -> DataFrame:
    """(image_path, sha256, byte_size, phash, width, height, format, reason, detail, content) per path.

    Each executor reads its paths itself (``jobs.core.dropfiles``: no link followed, nothing outside the
    drop, size checked before reading) and decodes them once; ``content`` is kept for images only.
    """
    options = object_store_options(dict(spark.sparkContext.getConf().getAll()))

    def decode_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        rows: list[tuple[Any, ...]] = []
        held = 0
        for batch in batches:
            for image_path in batch["image_path"]:
                file = read_drop_file(drop, image_path, max_bytes, options)
                if file.content is None:
                    rows.append(
                        (
                            image_path,
                            file.sha256,
                            file.size,
                            None,
                            None,
                            None,
                            None,
                            None,
                            file.reason.value if file.reason else None,
                            file.detail,
                            None,
                        )
                    )
                    continue
                d = decode_image(file.content, max_bytes, max_pixels)
                rows.append(
                    (
                        image_path,
                        d.sha256,
                        d.byte_size,
                        d.phash,
                        list(d.probes) if d.probes else None,
                        d.width,
                        d.height,
                        d.format,
                        d.reason.value if d.reason else None,
                        d.detail,
                        file.content if d.ok else None,
                    )
                )
                held += len(file.content) if d.ok else 0
                if held >= DECODE_CHUNK_BYTES:
                    yield pd.DataFrame(rows, columns=_DECODED.fieldNames())
                    rows, held = [], 0
        if rows:
            yield pd.DataFrame(rows, columns=_DECODED.fieldNames())

    return paths.select("image_path").mapInPandas(decode_batches, _DECODED)


def tags_udf(policy: Policy):
    """A pandas UDF computing one source's jurisdiction tags under ``policy`` (tiny, so shipped as is)."""

    @F.pandas_udf(T.ArrayType(T.StringType()))
    def tag(source_url: pd.Series, page_url: pd.Series, country: pd.Series, tags: pd.Series) -> pd.Series:
        return pd.Series(
            [
                tags_for_source(policy, s, p, c, list(t) if t is not None else None)
                for s, p, c, t in zip(source_url, page_url, country, tags, strict=True)
            ]
        )

    return tag


def _quarantine_rows(df: DataFrame, drop_id: str, drop_uri: str, run: RunContext, now: F.Column) -> DataFrame:
    return df.select(
        row_id_col(F.lit(drop_id), "line_no", "reason").alias("quarantine_id"),
        F.lit(drop_id).alias("drop_id"),
        "line_no",
        "reason",
        "detail",
        "image_path",
        "source_url",
        "file_sha256",
        "byte_size",
        "raw_line",
        now.alias("quarantined_at"),
        F.lit(run.run_id).alias("run_id"),
        F.lit(drop_uri).alias("drop_uri"),
    )


def union_cluster_tags(sources: DataFrame, membership: DataFrame) -> DataFrame:
    """(canonical_id, jurisdiction_tags): the sorted union of the tags of every source of every member.

    ``sources`` has (image_id, jurisdiction_tags); ``membership`` maps image_id -> canonical_id.
    """
    return (
        sources.join(membership, "image_id")
        .groupBy("canonical_id")
        .agg(
            F.array_sort(F.array_distinct(F.flatten(F.collect_list("jurisdiction_tags")))).alias(
                "jurisdiction_tags"
            )
        )
    )


def ingest_drop(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    *,
    fail_after: str | None = None,
    gate: Callable[..., object] | None = None,
    after_write: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest one crawl drop into the lake. Idempotent: the same drop again changes no data.

    ``fail_after`` names a table in ``WRITE_ORDER``; the run raises ``InjectedFailure`` right
    after writing it (crash-recovery tests). ``after_write(table)`` is called after each table's
    commit (race tests run an erasure there, between two commits of this run). ``gate(suite, rows, references=None)`` validates each
    table's rows before anything is written; by default the expectations gate
    (``jobs.quality.gate.publish_gate``).
    """
    cached: list[DataFrame] = []

    def persist(frame: DataFrame) -> DataFrame:
        cached.append(frame.persist())
        return frame

    try:
        return _ingest(spark, config, run, persist, fail_after=fail_after, gate=gate, after_write=after_write)
    finally:
        # Also on failure: a long-lived session (tests, notebooks) must not keep image bytes cached.
        for frame in cached:
            frame.unpersist()


def _ingest(
    spark: SparkSession,
    config: FacelakeConfig,
    run: RunContext,
    persist: Callable[[DataFrame], DataFrame],
    *,
    fail_after: str | None,
    gate: Callable[..., object] | None,
    after_write: Callable[[str], None] | None = None,
) -> IngestReport:
    if not config.drop:
        raise ValueError("no drop given: pass --drop DIR (or set FACELAKE_DROP)")
    if fail_after is not None and fail_after not in WRITE_ORDER:
        raise ValueError(f"fail_after must be one of {WRITE_ORDER}")
    drop_id = read_drop_id(spark, config.drop)
    drop_uri = normalize_drop_uri(config.drop)
    report = IngestReport(drop_id)
    run.inputs.update({"drop_id": drop_id})
    policy = load_policy(config.policy_file or None)
    init_lake(spark, config.lake)
    read_versions = pin_read_versions(
        spark, config.lake, ("images", "image_sources", "image_links", "suppression"), run
    )
    now = F.lit(datetime.now(UTC)).cast("timestamp")
    suppressed = load_suppression(spark, config.lake, read_versions["suppression"])

    # 1. Manifest lines.
    run.progress("drop %s: parsing %s", drop_id, MANIFEST_NAME)
    parsed = persist(parse_manifest(spark, config.drop))
    lines = parsed.where("ok").withColumn("url_sha256", url_sha256(F.col("source_url")))
    bad_lines = parsed.where("NOT ok").withColumns(
        {"file_sha256": F.lit(None).cast("string"), "byte_size": F.lit(None).cast("long")}
    )
    lines = lines.join(suppressed.url_hashes, "url_sha256", "left_anti") if suppressed.has_urls else lines
    if suppressed.has_hosts:  # erased domains: the host or any of its parents on the list
        lines = without_suppressed_hosts(lines, suppressed.hosts, ("source_host", "page_host"))

    # 2. Files: read and decode each distinct path once, on the executors.
    run.progress("decoding images")
    paths = lines.select("image_path").distinct()
    decoded = persist(
        read_and_decode(spark, config.drop, paths, config.max_image_bytes, config.max_image_pixels)
    )
    located = lines.drop("reason", "detail", "raw_line").join(decoded, "image_path")
    bad_files = located.where(F.col("reason").isNotNull()).select(
        "line_no",
        "reason",
        "detail",
        "image_path",
        "source_url",
        F.col("sha256").alias("file_sha256"),
        "byte_size",
        F.lit(None).cast("string").alias("raw_line"),
    )
    good = located.where(F.col("reason").isNull()).withColumnRenamed("sha256", "image_id")

    # 3. Suppressed content: exact sha256 or pHash within the threshold.
    if suppressed.has_content:
        good = good.join(suppressed.sha256s.withColumnRenamed("value", "image_id"), "image_id", "left_anti")
        hits = near_duplicate_pairs(
            good.select("image_id", phash_long_col(F.col("phash")).alias("phash_long")).distinct(),
            suppressed.phashes.select(
                F.col("value").alias("image_id"), phash_long_col(F.col("value")).alias("phash_long")
            ),
            config.phash_threshold,
        )
        good = good.join(hits.select(F.col("a_id").alias("image_id")).distinct(), "image_id", "left_anti")
    good = persist(good)

    # 4. Provenance: one source row per line whose image decoded.
    tag = tags_udf(policy)
    sources = good.select(
        row_id_col(
            "image_id", "source_url", "page_url", F.date_format("crawled_at", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
        ).alias("source_id"),
        "image_id",
        "source_url",
        "source_host",
        "page_url",
        "page_host",
        "crawled_at",
        "country",
        "tags",
        "platform",
        "extra",
        F.lit(drop_id).alias("drop_id"),
        "line_no",
        tag("source_url", "page_url", "country", "tags").alias("jurisdiction_tags"),
        F.lit(policy.version).alias("policy_version"),
        now.alias("ingested_at"),
        F.lit(run.run_id).alias("run_id"),
    ).dropDuplicates(["source_id"])

    # 5. New images (content not in the table yet) and their near duplicates.
    images_uri = ensure_table(spark, config.lake, "images")
    existing = read_table(spark, config.lake, "images", read_versions["images"]).select(
        "image_id", "phash", "probe_hashes", "canonical_id", "width", "height", "first_crawled_at"
    )
    new_images = persist(
        good.groupBy("image_id")
        .agg(
            F.first("phash").alias("phash"),
            F.first("probe_hashes").alias("probe_hashes"),
            F.first("width").alias("width"),
            F.first("height").alias("height"),
            F.first("format").alias("format"),
            F.first("byte_size").alias("byte_size"),
            F.first("content").alias("content"),
            F.min("crawled_at").alias("first_crawled_at"),
        )
        .join(existing.select("image_id"), "image_id", "left_anti")
    )
    canonical_of, verified = _assign_canonicals(spark, config, new_images, existing, read_versions["images"])
    new_images = new_images.join(canonical_of, "image_id")
    new_links = link_rows(spark, verified, "ingest", run)

    # 6. Tags: the union over every source of every member of the cluster (existing + new sources).
    stored_sources = read_table(spark, config.lake, "image_sources", read_versions["image_sources"])
    all_sources = stored_sources.select("image_id", "jurisdiction_tags").unionByName(
        sources.select("image_id", "jurisdiction_tags")
    )
    membership = existing.select("image_id", "canonical_id").unionByName(
        canonical_of.select("image_id", "canonical_id")
    )
    # Tags are unioned over each cluster and over clusters a verified link joins (same photo).
    stored_links = read_table(spark, config.lake, "image_links", read_versions["image_links"])
    link_pairs = stored_links.select("image_id", "other_image_id").unionByName(
        new_links.select("image_id", "other_image_id")
    )
    groups = persist(tag_groups(membership, link_pairs).select("image_id", "tag_group"))
    cluster_tags = union_cluster_tags(
        all_sources, groups.select("image_id", F.col("tag_group").alias("canonical_id"))
    ).withColumnRenamed("canonical_id", "tag_group")
    image_rows = (
        new_images.join(groups, "image_id")
        .join(cluster_tags, "tag_group", "left")
        .select(
            "image_id",
            "phash",
            "canonical_id",
            "near_dup_distance",
            "near_dup_method",
            "near_dup_score",
            "probe_hashes",
            "width",
            "height",
            "format",
            "byte_size",
            "content",
            F.coalesce("jurisdiction_tags", F.array().cast("array<string>")).alias("jurisdiction_tags"),
            F.lit(policy.version).alias("policy_version"),
            "first_crawled_at",
            F.lit(drop_id).alias("first_drop_id"),
            now.alias("ingested_at"),
            F.lit(run.run_id).alias("run_id"),
        )
    )
    # Existing images whose cluster gained a tag through this drop's sources.
    retagged = (
        read_table(spark, config.lake, "images", read_versions["images"])
        .join(groups, "image_id")
        .join(cluster_tags.withColumnRenamed("jurisdiction_tags", "new_tags"), "tag_group")
        .where(~F.col("jurisdiction_tags").eqNullSafe(F.col("new_tags")))
        .withColumn("jurisdiction_tags", F.col("new_tags"))
        .withColumn("policy_version", F.lit(policy.version))
        .drop("new_tags", "tag_group")
    )

    # 7. Counts (before writing, so a failed write still reports what it saw).
    report.counts["manifest_lines"] = parsed.count()
    reasons = Counter(
        {
            r["reason"]: r["count"]
            for r in bad_lines.unionByName(bad_files.withColumn("ok", F.lit(False)), allowMissingColumns=True)
            .groupBy("reason")
            .count()
            .collect()
        }
    )
    report.quarantine = dict(sorted(reasons.items()))
    report.counts["quarantined"] = sum(reasons.values())
    report.counts["ingestible_lines"] = good.count()
    report.counts["suppressed"] = (
        report.counts["manifest_lines"] - report.counts["quarantined"] - report.counts["ingestible_lines"]
    )
    report.counts["new_images"] = new_images.count()
    report.counts["near_dup_aliases"] = new_images.where("canonical_id != image_id").count()

    # Valid lines whose content was not suppressed: ingested ones and those quarantined for their file.
    kept_lines = good.select("line_no").unionByName(bad_files.select("line_no")).distinct()
    manifest_rows = lines.join(kept_lines, "line_no", "left_semi").select(
        F.lit(drop_id).alias("drop_id"),
        "line_no",
        "image_path",
        "source_url",
        "page_url",
        "crawled_at",
        "country",
        "tags",
        "platform",
        "extra",
        now.alias("ingested_at"),
        F.lit(run.run_id).alias("run_id"),
        F.lit(drop_uri).alias("drop_uri"),
    )
    quarantine = _quarantine_rows(
        bad_lines.select(*bad_files.columns).unionByName(bad_files), drop_id, drop_uri, run, now
    )
    # Only what is new (or, for images, re-tagged) is validated and published.
    publish = {
        "image_sources": persist(only_new(spark, config.lake, "image_sources", sources)),
        "images": persist(image_rows.unionByName(retagged)),
        "image_links": persist(only_new(spark, config.lake, "image_links", new_links)),
        "crawl_manifest": persist(only_new(spark, config.lake, "crawl_manifest", manifest_rows)),
        "quarantine": persist(only_new(spark, config.lake, "quarantine", quarantine)),
    }

    # 8. Expectations gate every table before anything is written: a failure publishes nothing.
    # One dq_results MERGE for the five validations (a commit each cost ~2.5 s of a small ingest).
    check_together(
        gate or publish_gate(spark, config, run),
        [
            ("image_sources", publish["image_sources"], {"images": publish["images"]}),
            ("images", publish["images"], {"image_sources": publish["image_sources"]}),
            ("image_links", publish["image_links"]),
            ("crawl_manifest", publish["crawl_manifest"]),
            ("quarantine", publish["quarantine"]),
        ],
    )

    # 9. Writes, sources first; each checked against the suppression list as it is now (an erasure may
    # have run since this run read it).
    suppression_version = latest_version(spark, config.lake, "suppression")

    def fresh(name: str) -> DataFrame:
        rows = not_suppressed_now(spark, config.lake, publish[name])
        if name == "crawl_manifest":  # a line names its content by path only: match it through its file
            named = not_suppressed_now(spark, config.lake, good.select("line_no", "image_id"))
            erased_lines = good.select("line_no").exceptAll(named.select("line_no"))
            rows = rows.join(erased_lines, "line_no", "left_anti")
        return rows

    def step(name: str, inserted: int) -> None:
        report.inserted[name] = inserted
        run.progress("%s: %d row(s) written", name, inserted)
        if fail_after == name:
            raise InjectedFailure(f"stopped on purpose after writing {name}")
        if after_write is not None:
            after_write(name)

    step(
        "image_sources",
        merge_new_rows(spark, config.lake, "image_sources", fresh("image_sources"), run, already_new=True),
    )
    step(
        "images",
        upsert_rows(
            spark,
            config.lake,
            "images",
            fresh("images"),
            update_columns=("jurisdiction_tags", "policy_version"),
            run=run,
        ),
    )
    step(
        "image_links",
        merge_new_rows(spark, config.lake, "image_links", fresh("image_links"), run, already_new=True),
    )
    step(
        "crawl_manifest",
        merge_new_rows(spark, config.lake, "crawl_manifest", fresh("crawl_manifest"), run, already_new=True),
    )
    step(
        "quarantine",
        merge_new_rows(spark, config.lake, "quarantine", fresh("quarantine"), run, already_new=True),
    )

    if latest_version(spark, config.lake, "suppression") != suppression_version:
        # An erasure committed while this run was writing: anything of it written anyway is reported.
        leaked = 0
        for name, rows in publish.items():
            key = list(table_spec(name).key)
            written = not_suppressed_now(spark, config.lake, rows, suppression_version).join(
                read_table(spark, config.lake, name).select(*key), key, "left_semi"
            )
            leaked += written.count() - not_suppressed_now(spark, config.lake, written).count()
        if leaked:
            raise RacedErasureError(
                f"ingest of drop {drop_id}: {leaked} row(s) written while an erasure ran match its suppression "
                "list; rerun the erasure (it erases them again) before the next ingest"
            )
    log.debug("images table %s", images_uri)
    return report


def _assign_canonicals(
    spark: SparkSession,
    config: FacelakeConfig,
    new_images: DataFrame,
    existing: DataFrame,
    images_version: int,
) -> tuple[DataFrame, list[dict]]:
    """(image_id, canonical_id, near_dup_distance, near_dup_method, near_dup_score) for every new image,
    and the verified pairs (``dedupe.VERDICT_SCHEMA`` dicts) that decided it.

    Candidates: the exact probe-hash banding join of the new images against new + published ones
    (``dedupe.candidate_pairs``), plus, for a published alias among them, its canonical (an alias
    joins a canonical only on direct evidence). Each candidate is verified on the executors
    (``dedupe.verify_candidates``); the verified edges and the members they touch are collected (small)
    and the canonical choice runs in plain Python (``neardup.assign_canonicals``: no chaining).
    """
    cols = ("image_id", "phash", "probe_hashes")
    new_ids = new_images.select(F.col("image_id").alias("b_id"), F.lit(True).alias("b_new"))
    raw = candidate_pairs(
        new_images.select(*cols),
        new_images.select(*cols).unionByName(existing.select(*cols)),
        config.near_dup_radius,
    )
    # A pair of two new images comes back in both orders: verify it once.
    raw = raw.join(new_ids, "b_id", "left").where(F.col("b_new").isNull() | (F.col("a_id") < F.col("b_id")))
    published_alias = existing.where("canonical_id != image_id").select(
        F.col("image_id").alias("b_id"), F.col("canonical_id")
    )
    via_alias = raw.join(published_alias, "b_id").select(
        "a_id", F.col("canonical_id").alias("b_id"), F.lit(None).cast("int").alias("distance")
    )
    pairs = (
        raw.select("a_id", "b_id", "distance")
        .unionByName(via_alias)
        .groupBy("a_id", "b_id")
        .agg(F.min("distance").alias("distance"))
    )
    stored = read_table(spark, config.lake, "images", images_version).select("image_id", "content")
    needed = pairs.select(F.col("b_id").alias("image_id")).distinct()
    contents = new_images.select("image_id", "content").unionByName(
        stored.join(needed, "image_id", "left_semi")
    )
    verdicts = verify_candidates(pairs, contents, config.max_image_pixels).where("matched").collect()
    verified = [v.asDict() for v in verdicts]
    edges = [Edge(r["a_id"], r["b_id"], r["score"]) for r in verdicts]
    new_rows = new_images.select("image_id", "phash", "width", "height", "first_crawled_at").collect()
    touched = {e.b for e in edges} - {r["image_id"] for r in new_rows}
    old_rows = existing.where(F.col("image_id").isin(list(touched))).collect() if touched else []
    phash_of = {r["image_id"]: r["phash"] for r in new_rows + old_rows}
    members = [Member(r["image_id"], r["width"] * r["height"], r["first_crawled_at"]) for r in new_rows]
    members += [
        Member(r["image_id"], r["width"] * r["height"], r["first_crawled_at"], existing_canonical=True)
        for r in old_rows
        if r["canonical_id"] == r["image_id"]
    ]
    canonical = assign_canonicals(members, edges)
    score_of = {frozenset((e.a, e.b)): e.score for e in edges}
    rows = []
    for r in new_rows:
        image_id, canonical_id = r["image_id"], canonical[r["image_id"]]
        if canonical_id == image_id:
            rows.append((image_id, canonical_id, None, None, None))
        else:
            rows.append(
                (
                    image_id,
                    canonical_id,
                    hamming(r["phash"], phash_of[canonical_id]),
                    NEAR_DUP_METHOD,
                    score_of[frozenset((image_id, canonical_id))],
                )
            )
    schema = "image_id string, canonical_id string, near_dup_distance int, near_dup_method string, near_dup_score double"
    return spark.createDataFrame(rows, schema), verified


LINK_INPUT = "a_id string, b_id string, score double, inliers int, mirrored boolean"


def link_rows(spark: SparkSession, verified: list[dict], stage: str, run: RunContext) -> DataFrame:
    """``image_links`` rows for verified pairs (``VERDICT_SCHEMA`` dicts): smaller id first, deterministic id."""
    rows = [(v["a_id"], v["b_id"], v["score"], v["inliers"], v["mirrored"]) for v in verified]
    pairs = spark.createDataFrame(rows, LINK_INPUT)
    first, second = F.least("a_id", "b_id"), F.greatest("a_id", "b_id")
    return pairs.select(
        row_id_col(first, second).alias("link_id"),
        first.alias("image_id"),
        second.alias("other_image_id"),
        F.lit(NEAR_DUP_METHOD).alias("method"),
        "score",
        "inliers",
        "mirrored",
        F.lit(stage).alias("stage"),
        F.current_timestamp().alias("found_at"),
        F.lit(run.run_id).alias("run_id"),
    ).dropDuplicates(["link_id"])


def record_counts(report: IngestReport, run: RunContext) -> dict[str, int]:
    """Add an ingest report's counts to the run's summary and log its quarantine reasons; flat counts."""
    for name, value in report.counts.items():
        run.count(name, value)
    for name, value in report.inserted.items():
        run.count(f"{name}_inserted", value)
    for reason, n in report.quarantine.items():
        run.progress("quarantined %d: %s", n, reason)
    return {**run.counts, **{f"quarantine.{k}": v for k, v in report.quarantine.items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake ingest`` flags."""
    parser.add_argument("--drop", help="crawl drop folder or URI holding manifest.jsonl")
    parser.add_argument(
        "--phash-threshold",
        type=int,
        help="max pHash Hamming distance to suppressed content that blocks a new image",
    )
    parser.add_argument(
        "--near-dup-radius",
        type=int,
        help="max probe-hash distance of a near-duplicate candidate (then verified)",
    )
    parser.add_argument("--max-image-bytes", type=int, help="files above this size are quarantined")
    parser.add_argument("--max-image-pixels", type=int, help="images above width x height are quarantined")
    parser.add_argument(
        "--policy-file",
        help="jurisdiction policy TOML (default: the packaged jobs/resources/policies/jurisdiction.toml)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the ingest job for parsed CLI arguments; prints a summary, returns the exit code."""
    from jobs.lake.session import get_spark

    config, run_ctx = start_run(args, "ingest")
    spark = get_spark(config, "facelake-ingest")
    record_counts(ingest_drop(spark, config, run_ctx), run_ctx)
    print(run_ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.ingest.job --drop DIR --lake URI``."""
    return command_main("ingest", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
