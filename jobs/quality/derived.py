"""Derived check columns and views: computed in Spark so that standard GX expectations can check them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.lake.schemas import schema_of
from jobs.lake.tables import host_sha256, host_suffixes, read_table, table_uri, url_sha256

if TYPE_CHECKING:
    from jobs.quality.suites import SuiteSpec

ROWS_VIEW = "rows"
"""The view of expectations without ``meta.view``: the DataFrame's own rows."""


class References:
    """Other tables a cross-table check needs: the published table plus rows about to be published.

    ``given`` rows (e.g. the images of the same ingest, not written yet) are unioned with the
    table as published in the lake (when it exists and ``read_published``).
    """

    def __init__(
        self,
        spark: SparkSession,
        lake: str | None,
        given: Mapping[str, DataFrame] | None = None,
        read_published: bool = True,
    ) -> None:
        self.spark = spark
        self.lake = lake
        self.given = dict(given or {})
        self.read_published = read_published

    def get(self, name: str, columns: Sequence[str]) -> DataFrame:
        parts = []
        if name in self.given:
            parts.append(self.given[name].select(*columns))
        if self.read_published and self.lake and _table_exists(self.spark, self.lake, name):
            parts.append(read_table(self.spark, self.lake, name).select(*columns))
        if not parts:
            schema = schema_of(name)
            return self.spark.createDataFrame([], schema).select(*columns)
        return reduce(DataFrame.unionByName, parts)


def _table_exists(spark: SparkSession, lake: str, name: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, table_uri(lake, name))


def _null_if(key: str, value: Column) -> Column:
    """A derived value, null when its key is null (the not-null expectation reports those rows)."""
    return F.when(F.col(key).isNull(), F.lit(None)).otherwise(value)


def with_pixel_count(df: DataFrame) -> DataFrame:
    """Adds ``pixel_count`` = width x height (a long)."""
    return df.withColumn("pixel_count", F.col("width").cast("long") * F.col("height").cast("long"))


def with_embedding_length(df: DataFrame) -> DataFrame:
    """Adds ``embedding_length`` = number of values in ``embedding``."""
    return df.withColumn("embedding_length", _null_if("embedding", F.size("embedding")))


def with_embedding_norm(df: DataFrame) -> DataFrame:
    """Adds ``embedding_norm`` = L2 norm of ``embedding`` (computed in double)."""
    squares = F.aggregate(
        "embedding", F.lit(0.0).cast("double"), lambda acc, x: acc + x.cast("double") * x.cast("double")
    )
    return df.withColumn("embedding_norm", F.sqrt(squares))


LANDMARK_MARGIN = 0.25
"""How far outside its box (as a fraction of the box's width / height) a landmark may lie.

SCRFD regresses keypoints independently of the box: on the 20k sample drop the real SCRFD-500M put
a landmark outside the box on 40 of 7,745 faces, at most 12% of the box size beyond it. A quarter
of the box still catches what the check is for: points of another face or in another frame.
"""

_LANDMARKS_IN_BOX = (
    "size(bbox) = 4 AND size(landmarks) = 10 AND forall(sequence(0, 4), i -> "
    f"landmarks[2 * i] BETWEEN bbox[0] - {LANDMARK_MARGIN} * (bbox[2] - bbox[0]) "
    f"AND bbox[2] + {LANDMARK_MARGIN} * (bbox[2] - bbox[0]) "
    f"AND landmarks[2 * i + 1] BETWEEN bbox[1] - {LANDMARK_MARGIN} * (bbox[3] - bbox[1]) "
    f"AND bbox[3] + {LANDMARK_MARGIN} * (bbox[3] - bbox[1]))"
)


def with_landmarks_in_box(df: DataFrame) -> DataFrame:
    """Adds ``landmarks_in_box``: a 4-value box, 10 landmark values, every point within the box
    grown by ``LANDMARK_MARGIN`` of its size on each side."""
    value = F.when(F.col("bbox").isNull() | F.col("landmarks").isNull(), F.lit(None)).otherwise(
        F.coalesce(F.expr(_LANDMARKS_IN_BOX), F.lit(False))
    )
    return df.withColumn("landmarks_in_box", value)


def with_image_exists(df: DataFrame, images: DataFrame) -> DataFrame:
    """Adds ``image_exists``: the row's ``image_id`` is an ``images.image_id``."""
    known = images.select(F.col("image_id").alias("_known_id")).distinct().withColumn("_known", F.lit(True))
    joined = df.join(known, df["image_id"] == known["_known_id"], "left")
    return joined.withColumn("image_exists", _null_if("image_id", F.coalesce("_known", F.lit(False)))).drop(
        "_known_id", "_known"
    )


def with_source_count(df: DataFrame, sources: DataFrame) -> DataFrame:
    """Adds ``source_count``: rows of ``image_sources`` naming the row's ``image_id``."""
    counts = sources.groupBy(F.col("image_id").alias("_src_id")).agg(F.count(F.lit(1)).alias("_src_n"))
    joined = df.join(counts, df["image_id"] == counts["_src_id"], "left")
    return joined.withColumn("source_count", _null_if("image_id", F.coalesce("_src_n", F.lit(0)))).drop(
        "_src_id", "_src_n"
    )


def with_canonical_ok(df: DataFrame, images: DataFrame) -> DataFrame:
    """Adds ``canonical_ok``: ``canonical_id`` is an image (here or in ``images``) that is its own canonical."""
    pairs = df.select("image_id", "canonical_id").unionByName(images.select("image_id", "canonical_id"))
    lookup = (
        pairs.where(F.col("image_id").isNotNull())
        .groupBy(F.col("image_id").alias("_canon_id"))
        .agg(F.min((F.col("canonical_id") == F.col("image_id")).cast("int")).alias("_is_canon"))
    )
    joined = df.join(lookup, df["canonical_id"] == lookup["_canon_id"], "left")
    ok = F.coalesce(F.col("_is_canon") == 1, F.lit(False))
    return joined.withColumn("canonical_ok", _null_if("canonical_id", ok)).drop("_canon_id", "_is_canon")


def with_near_dup_verified(df: DataFrame) -> DataFrame:
    """Adds ``near_dup_verified``: an alias carries its verification (method and score), a canonical none."""
    alias = F.col("canonical_id") != F.col("image_id")
    evidence = F.col("near_dup_method").isNotNull() & F.col("near_dup_score").isNotNull()
    none = F.col("near_dup_method").isNull() & F.col("near_dup_score").isNull()
    ok = F.when(alias, evidence).otherwise(none)
    return df.withColumn("near_dup_verified", _null_if("canonical_id", F.coalesce(ok, F.lit(False))))


def with_link_ordered(df: DataFrame) -> DataFrame:
    """Adds ``link_ordered``: ``image_id`` < ``other_image_id`` (one row per pair, no self-link); null
    when an id is null (the not-null expectations report those rows)."""
    a, b = F.col("image_id"), F.col("other_image_id")
    return df.withColumn("link_ordered", F.when(a.isNull() | b.isNull(), F.lit(None)).otherwise(a < b))


def with_index_fits_budget(df: DataFrame) -> DataFrame:
    """Adds ``index_fits_budget``: the build's estimated memory is within its budget."""
    return df.withColumn("index_fits_budget", F.col("estimated_bytes") <= F.col("memory_budget"))


def with_update_has_parent(df: DataFrame) -> DataFrame:
    """Adds ``update_has_parent``: an ``update`` or ``erasure`` build names its parent, a ``full`` build none."""
    has_parent = F.col("parent_build_id").isNotNull()
    # Other kinds are the kind expectation's to report: null here, so one bad value fails one check.
    ok = F.when(F.col("kind").isin("update", "erasure"), has_parent).when(
        F.col("kind") == "full", ~has_parent
    )
    return df.withColumn("update_has_parent", ok)


def with_suppressed(df: DataFrame, suppression: DataFrame) -> DataFrame:
    """Adds ``suppressed``: the row's content, URL or host is on the suppression list.

    Checks whichever columns the DataFrame has: ``image_id`` against ``sha256`` entries, ``phash``
    against ``phash`` entries (exact; ingest also drops near duplicates), ``source_url`` against
    ``url_sha256`` entries (``jobs.lake.tables.url_sha256``, as ingest hashes it), and the digest of
    each suffix of ``source_host``/``page_host`` (``jobs.lake.tables.host_sha256``) against ``host`` entries.
    """

    flags: list[str] = []

    def flag_equal(frame: DataFrame, column: str, kind: str, key: Column | None = None) -> DataFrame:
        name = f"_sup_{kind}_{column}"
        hits = (
            suppression.where(F.col("kind") == kind)
            .select(F.col("value").alias(name + "_v"))
            .distinct()
            .withColumn(name, F.lit(True))
        )
        flags.append(name)
        key = frame[column] if key is None else key
        return frame.join(hits, key == hits[name + "_v"], "left").drop(name + "_v")

    def flag_host(frame: DataFrame, column: str) -> DataFrame:
        name = f"_sup_host_{column}"
        digests = suppression.where(F.col("kind") == "host").select(F.col("value").alias("_sfx_sha"))
        hosts = (
            frame.select(F.col(column).alias(name + "_h")).where(F.col(name + "_h").isNotNull()).distinct()
        )
        # The same rule ingest applies (digests of host_suffixes), as an equi-join.
        candidates = hosts.select(name + "_h", F.explode(host_suffixes(F.lower(name + "_h"))).alias("_sfx"))
        candidates = candidates.select(name + "_h", host_sha256(F.col("_sfx")).alias("_sfx_sha"))
        hits = (
            candidates.join(digests, "_sfx_sha", "left_semi")
            .select(name + "_h")
            .distinct()
            .withColumn(name, F.lit(True))
        )
        flags.append(name)
        return frame.join(hits, frame[column] == hits[name + "_h"], "left").drop(name + "_h")

    out = df
    if "image_id" in df.columns:
        out = flag_equal(out, "image_id", "sha256")
    if "phash" in df.columns:
        out = flag_equal(out, "phash", "phash")
    if "source_url" in df.columns:
        out = flag_equal(out, "source_url", "url_sha256", url_sha256(F.col("source_url")))
    for column in ("source_host", "page_host"):
        if column in df.columns:
            out = flag_host(out, column)
    if not flags:
        raise ValueError(
            "with_suppressed needs an image_id, phash, source_url, source_host or page_host column"
        )
    value = reduce(lambda a, b: a | b, [F.coalesce(F.col(f), F.lit(False)) for f in flags])
    return out.withColumn("suppressed", value).drop(*flags)


@dataclass(frozen=True)
class Derived:
    """How to compute a derived column, and which other tables it reads."""

    build: Callable[[DataFrame, References], DataFrame]
    references: tuple[str, ...] = ()


DERIVED_COLUMNS: dict[str, Derived] = {
    "pixel_count": Derived(lambda df, refs: with_pixel_count(df)),
    "embedding_length": Derived(lambda df, refs: with_embedding_length(df)),
    "embedding_norm": Derived(lambda df, refs: with_embedding_norm(df)),
    "landmarks_in_box": Derived(lambda df, refs: with_landmarks_in_box(df)),
    "image_exists": Derived(
        lambda df, refs: with_image_exists(df, refs.get("images", ["image_id"])), ("images",)
    ),
    "source_count": Derived(
        lambda df, refs: with_source_count(df, refs.get("image_sources", ["image_id"])), ("image_sources",)
    ),
    "canonical_ok": Derived(
        lambda df, refs: with_canonical_ok(df, refs.get("images", ["image_id", "canonical_id"])), ("images",)
    ),
    "near_dup_verified": Derived(lambda df, refs: with_near_dup_verified(df)),
    "link_ordered": Derived(lambda df, refs: with_link_ordered(df)),
    "index_fits_budget": Derived(lambda df, refs: with_index_fits_budget(df)),
    "update_has_parent": Derived(lambda df, refs: with_update_has_parent(df)),
    "suppressed": Derived(
        lambda df, refs: with_suppressed(df, refs.get("suppression", ["kind", "value"])), ("suppression",)
    ),
}
"""Derived column name -> how to compute it. An expectation on a column the DataFrame lacks uses this."""


def explode_view(df: DataFrame, id_columns: Sequence[str], array_column: str, as_column: str) -> DataFrame:
    """One row per (ids, element of ``array_column``), the element named ``as_column``."""
    return df.select(*id_columns, F.explode(array_column).alias(as_column))


VIEWS: dict[str, Callable[[DataFrame, Sequence[str]], DataFrame]] = {
    "jurisdiction_tags": lambda df, ids: explode_view(df, ids, "jurisdiction_tags", "jurisdiction_tag"),
    "example_ids": lambda df, ids: explode_view(df, ids, "example_ids", "example_id"),
}
"""View name (``meta.view`` in a suite) -> how to reshape the DataFrame for those expectations."""


def build_view(df: DataFrame, spec: SuiteSpec, view: str, references: References) -> DataFrame:
    """The DataFrame one view's expectations run on: derived columns added, unused columns dropped.

    Only the id columns and the columns the expectations read are kept, so image bytes, URLs and
    other content never reach GX unless an expectation reads that very column.
    """
    expectations = [e for e in spec.expectations if e.view == view]
    frame = VIEWS[view](df, list(spec.id_columns)) if view != ROWS_VIEW else df
    needed = list(dict.fromkeys([*spec.id_columns, *(c for e in expectations for c in e.columns)]))
    for column in needed:
        if column not in frame.columns and column in DERIVED_COLUMNS:
            frame = DERIVED_COLUMNS[column].build(frame, references)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"suite {spec.name} ({view} view) needs columns {missing} the data does not have")
    return frame.select(*needed)
