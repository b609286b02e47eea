"""Great Expectations gate: run a table's suite on a DataFrame before it is published.

Suites live in ``expectations/<name>.json`` in GX Core 1.x format (what
``ExpectationSuite.to_json_dict()`` writes). This module only adds what GX cannot know:

* **derived columns** for cross-table and computed checks. An expectation on a column the
  DataFrame lacks (``embedding_norm``, ``landmarks_in_box``, ``source_count``, ``suppressed``…)
  gets that column computed in Spark first (see ``DERIVED_COLUMNS`` and the ``check_*``
  helpers); a standard GX expectation then does the checking.
* **views**: an expectation whose ``meta.view`` names a view (``jurisdiction_tags``…) runs on a
  reshaped DataFrame, e.g. one row per (id, tag), as its own GX batch (see ``VIEWS``).
* **run-time parameters** (``{"$PARAMETER": "max_image_pixels"}`` in the JSON), filled from the
  config with ``quality_parameters(config, embedding_dim=…)`` and passed to GX as
  ``expectation_parameters``.
* results to the ``dq_results`` Delta table (ids of failing rows only, never personal data) and
  GX Data Docs under ``<lake>/data_docs/``.

Call ``validate_or_raise`` BEFORE writing: it raises ``QualityGateError`` when any expectation
fails, so nothing is published and the previous good version stays visible.

To add a check: add the expectation to the suite's JSON; if it needs a computed column, add a
``check_<name>`` function and register it in ``DERIVED_COLUMNS``; if it needs a reshaped
DataFrame, register a view in ``VIEWS`` and set ``meta.view``.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, reduce
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.core.paths import resource_dir
from jobs.core.reasons import QuarantineReason
from jobs.core.runs import RunContext
from jobs.lake.fs import copy_local_tree
from jobs.lake.schemas import schema_of
from jobs.lake.tables import merge_new_rows, read_table, table_uri

log = logging.getLogger("facelake.quality")

EXPECTATIONS_DIR = resource_dir("expectations")
DATA_DOCS = "data_docs"
"""Data Docs live at ``<lake>/data_docs/`` (``index.html`` lists the current run's validations)."""
MAX_EXAMPLES = 5
ROWS_VIEW = "rows"
_SITE = "facelake"
_DATASOURCE = "facelake"


class QualityGateError(RuntimeError):
    """A suite failed: the message names each failed expectation, its count and example ids."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        super().__init__(report.failure_message())


# --------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite, as facelake reads it from the JSON."""

    expectation_id: str
    """Unique within the suite: ``meta.expectation_id`` or ``<type>(<columns>)``."""
    type: str
    kwargs: dict[str, Any]
    view: str
    columns: tuple[str, ...]
    """Columns the expectation reads (kwargs and row condition)."""
    failing_rows: str | None
    """Spark SQL predicate selecting failing rows, for example ids of aggregate expectations."""
    config: dict[str, Any]


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    table: str | None
    """Table the suite checks; None for a generic suite (``erased_selector``) told at run time."""
    id_columns: tuple[str, ...]
    expectations: tuple[ExpectationSpec, ...]
    parameters: frozenset[str]
    """Names of the ``$PARAMETER``s the suite needs."""
    raw: dict[str, Any]

    def views(self) -> list[str]:
        return list(dict.fromkeys(e.view for e in self.expectations))


def suite_names() -> list[str]:
    """Every suite in ``expectations/``."""
    return sorted(p.stem for p in EXPECTATIONS_DIR.glob("*.json"))


def suite_path(name: str) -> Path:
    return EXPECTATIONS_DIR / f"{name}.json"


@cache
def suite_spec(name: str) -> SuiteSpec:
    """Parse ``expectations/<name>.json`` (without importing GX) and check facelake's conventions."""
    path = suite_path(name)
    if not path.is_file():
        raise KeyError(f"no expectation suite {name!r}; known: {', '.join(suite_names())}")
    raw = json.loads(path.read_text())
    meta = raw.get("meta") or {}
    if meta.get("table"):
        raw["expectations"] = [*raw["expectations"], *_schema_not_null(meta["table"], raw["expectations"])]
    specs: list[ExpectationSpec] = []
    params: set[str] = set()
    for config in raw["expectations"]:
        kwargs = dict(config.get("kwargs") or {})
        emeta = config.get("meta") or {}
        columns = _kwargs_columns(kwargs)
        expectation_id = emeta.get("expectation_id") or f"{config['type']}({','.join(columns)})"
        view = emeta.get("view", ROWS_VIEW)
        if view != ROWS_VIEW and view not in VIEWS:
            raise ValueError(f"suite {name}: {expectation_id} names unknown view {view!r}")
        specs.append(
            ExpectationSpec(
                expectation_id, config["type"], kwargs, view, columns, emeta.get("failing_rows"), config
            )
        )
        params |= _parameter_names(kwargs)
    ids = [s.expectation_id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"suite {name}: expectation ids {duplicates} repeat; set meta.expectation_id")
    return SuiteSpec(
        name=raw["name"],
        table=meta.get("table"),
        id_columns=tuple(meta.get("id_columns") or ()),
        expectations=tuple(specs),
        parameters=frozenset(params),
        raw=raw,
    )


def _schema_not_null(table: str, declared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A not-null expectation for every NOT NULL column of ``table`` the suite does not check yet.

    Delta enforces the schema's NOT NULL at write time, after the gate; a NULL the gate let through
    would fail the MERGE and lose the whole batch, so the gate checks every constraint the table has.
    """
    covered = {
        c["kwargs"].get("column")
        for c in declared
        if c["type"] == "expect_column_values_to_not_be_null" and "row_condition" not in c["kwargs"]
        and (c.get("meta") or {}).get("view", ROWS_VIEW) == ROWS_VIEW
    }
    return [
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": f.name},
            "meta": {"expectation_id": f"expect_column_values_to_not_be_null({f.name})[schema]"},
            "notes": f"NOT NULL in schemas/{table}.json (Delta refuses the write otherwise).",
            "severity": "critical",
        }
        for f in schema_of(table).fields
        if not f.nullable and f.name not in covered
    ]


def load_suite(name: str):  # -> great_expectations.ExpectationSuite
    """The suite as a GX ``ExpectationSuite`` (``gx.ExpectationSuite(**json)``)."""
    gx = _gx()
    return gx.ExpectationSuite(**copy.deepcopy(suite_spec(name).raw))


def _kwargs_columns(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    cols: list[str] = []
    for key in ("column", "column_A", "column_B"):
        if isinstance(kwargs.get(key), str):
            cols.append(kwargs[key])
    cols.extend(kwargs.get("column_list") or [])
    cols.extend(_condition_columns(kwargs.get("row_condition")))
    return tuple(dict.fromkeys(cols))


def _condition_columns(condition: Any) -> list[str]:
    if isinstance(condition, dict):
        out = []
        if isinstance(condition.get("column"), dict):
            out.append(condition["column"]["name"])
        for sub in condition.get("conditions") or []:
            out.extend(_condition_columns(sub))
        return out
    return []


def _parameter_names(value: Any) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return {str(value["$PARAMETER"])}
        return set().union(*(_parameter_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_parameter_names(v) for v in value)) if value else set()
    return set()


def quality_parameters(
    config: FacelakeConfig | None = None,
    *,
    embedding_dim: int | None = None,
    jurisdiction_vocabulary: Iterable[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Run-time suite parameters: config limits, the pack's dimension, the policy's tags.

    ``validate_or_raise(..., parameters=quality_parameters(config, embedding_dim=pack.dim))``.
    The tag vocabulary is the policy's (``config.policy_file``) unless given.
    """
    from jobs.core.policy import load_policy

    params: dict[str, Any] = default_parameters()
    if config is not None:
        params["max_image_pixels"] = config.max_image_pixels
        params["phash_threshold"] = config.phash_threshold
        params["jurisdiction_vocabulary"] = load_policy(config.policy_file or None).vocabulary
    if embedding_dim is not None:
        params["embedding_dim"] = int(embedding_dim)
    if jurisdiction_vocabulary is not None:
        params["jurisdiction_vocabulary"] = sorted(set(jurisdiction_vocabulary))
    params.update(extra)
    return params


def default_parameters() -> dict[str, Any]:
    """Parameters with a code-level default (anything else must be passed).

    ``jurisdiction_vocabulary``: the tags the repository's policy can emit; ``quarantine_reasons``:
    the ``QuarantineReason`` values.
    """
    from jobs.core.policy import load_policy

    return {
        "jurisdiction_vocabulary": load_policy().vocabulary,
        "quarantine_reasons": sorted(r.value for r in QuarantineReason),
    }


# --------------------------------------------------------------------------------------------
# Derived columns and views (compute in Spark, let GX check)
# --------------------------------------------------------------------------------------------


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


def check_pixel_count(df: DataFrame) -> DataFrame:
    """Adds ``pixel_count`` = width x height (a long)."""
    return df.withColumn("pixel_count", F.col("width").cast("long") * F.col("height").cast("long"))


def check_embedding_length(df: DataFrame) -> DataFrame:
    """Adds ``embedding_length`` = number of values in ``embedding``."""
    return df.withColumn("embedding_length", _null_if("embedding", F.size("embedding")))


def check_embedding_norm(df: DataFrame) -> DataFrame:
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


def check_landmarks_in_box(df: DataFrame) -> DataFrame:
    """Adds ``landmarks_in_box``: a 4-value box, 10 landmark values, every point within the box
    grown by ``LANDMARK_MARGIN`` of its size on each side."""
    value = F.when(F.col("bbox").isNull() | F.col("landmarks").isNull(), F.lit(None)).otherwise(
        F.coalesce(F.expr(_LANDMARKS_IN_BOX), F.lit(False))
    )
    return df.withColumn("landmarks_in_box", value)


def check_image_exists(df: DataFrame, images: DataFrame) -> DataFrame:
    """Adds ``image_exists``: the row's ``image_id`` is an ``images.image_id``."""
    known = images.select(F.col("image_id").alias("_known_id")).distinct().withColumn("_known", F.lit(True))
    joined = df.join(known, df["image_id"] == known["_known_id"], "left")
    return joined.withColumn("image_exists", _null_if("image_id", F.coalesce("_known", F.lit(False)))).drop(
        "_known_id", "_known"
    )


def check_source_count(df: DataFrame, sources: DataFrame) -> DataFrame:
    """Adds ``source_count``: rows of ``image_sources`` naming the row's ``image_id``."""
    counts = sources.groupBy(F.col("image_id").alias("_src_id")).agg(F.count(F.lit(1)).alias("_src_n"))
    joined = df.join(counts, df["image_id"] == counts["_src_id"], "left")
    return joined.withColumn("source_count", _null_if("image_id", F.coalesce("_src_n", F.lit(0)))).drop(
        "_src_id", "_src_n"
    )


def check_canonical(df: DataFrame, images: DataFrame) -> DataFrame:
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


def check_suppressed(df: DataFrame, suppression: DataFrame) -> DataFrame:
    """Adds ``suppressed``: the row's content, URL or host is on the suppression list.

    Checks whichever columns the DataFrame has: ``image_id`` against ``sha256`` entries, ``phash``
    against ``phash`` entries (exact; ingest also drops near duplicates), ``source_url`` against
    ``url_sha256`` entries (``jobs.ingest.suppression.url_sha256``, as ingest hashes it), and
    ``source_host``/``page_host`` against ``host`` suffixes.
    """
    from jobs.ingest.suppression import url_sha256

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
        suffixes = suppression.where(F.col("kind") == "host").select(F.col("value").alias("_sfx"))
        hosts = (
            frame.select(F.col(column).alias(name + "_h")).where(F.col(name + "_h").isNotNull()).distinct()
        )
        host = F.col(name + "_h")
        matches = F.lower(host) == F.col("_sfx")
        matches = matches | F.lower(host).endswith(F.concat(F.lit("."), F.col("_sfx")))
        hits = hosts.join(suffixes, matches).select(name + "_h").distinct().withColumn(name, F.lit(True))
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
            "check_suppressed needs an image_id, phash, source_url, source_host or page_host column"
        )
    value = reduce(lambda a, b: a | b, [F.coalesce(F.col(f), F.lit(False)) for f in flags])
    return out.withColumn("suppressed", value).drop(*flags)


@dataclass(frozen=True)
class Derived:
    """How to compute a derived column, and which other tables it reads."""

    build: Callable[[DataFrame, References], DataFrame]
    references: tuple[str, ...] = ()


DERIVED_COLUMNS: dict[str, Derived] = {
    "pixel_count": Derived(lambda df, refs: check_pixel_count(df)),
    "embedding_length": Derived(lambda df, refs: check_embedding_length(df)),
    "embedding_norm": Derived(lambda df, refs: check_embedding_norm(df)),
    "landmarks_in_box": Derived(lambda df, refs: check_landmarks_in_box(df)),
    "image_exists": Derived(
        lambda df, refs: check_image_exists(df, refs.get("images", ["image_id"])), ("images",)
    ),
    "source_count": Derived(
        lambda df, refs: check_source_count(df, refs.get("image_sources", ["image_id"])), ("image_sources",)
    ),
    "canonical_ok": Derived(
        lambda df, refs: check_canonical(df, refs.get("images", ["image_id", "canonical_id"])), ("images",)
    ),
    "suppressed": Derived(
        lambda df, refs: check_suppressed(df, refs.get("suppression", ["kind", "value"])), ("suppression",)
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


# --------------------------------------------------------------------------------------------
# Erasure verification
# --------------------------------------------------------------------------------------------


def table_versions(spark: SparkSession, lake: str, table: str) -> list[int]:
    """Every version listed in the table's history (oldest first)."""
    from delta.tables import DeltaTable

    rows = DeltaTable.forPath(spark, table_uri(lake, table)).history().select("version").collect()
    return sorted(int(r["version"]) for r in rows)


def check_erased(
    spark: SparkSession,
    lake: str,
    table: str,
    selector: str | Column | DataFrame,
    versions: Iterable[int] | None = None,
) -> DataFrame:
    """Per-version counts of rows matching an erased selector: columns ``table_version``, ``matching_rows``.

    ``selector`` is a Spark SQL predicate, a Column, or a DataFrame of keys (rows are matched with
    a semi join on its columns). ``versions`` defaults to every version in the table's history;
    the erasure job should pass the versions that must still be readable after purging.
    """
    versions = sorted(
        set(int(v) for v in (table_versions(spark, lake, table) if versions is None else versions))
    )
    wanted = spark.createDataFrame([(v,) for v in versions], "table_version long")
    if not versions:
        return wanted.withColumn("matching_rows", F.lit(0).cast("long"))
    parts = []
    for v in versions:
        rows = read_table(spark, lake, table, version=v)
        if isinstance(selector, DataFrame):
            rows = rows.join(selector, list(selector.columns), "left_semi")
        else:
            rows = rows.where(selector)
        parts.append(rows.select(F.lit(v).cast("long").alias("table_version")))
    counts = (
        reduce(DataFrame.unionAll, parts)
        .groupBy("table_version")
        .agg(F.count(F.lit(1)).alias("matching_rows"))
    )
    return wanted.join(counts, "table_version", "left").select(
        "table_version", F.coalesce("matching_rows", F.lit(0)).cast("long").alias("matching_rows")
    )


def verify_erased(
    spark: SparkSession,
    table: str,
    selector: str | Column | DataFrame,
    *,
    lake: str,
    run: RunContext,
    versions: Iterable[int] | None = None,
    raise_on_failure: bool = True,
    record: bool = True,
) -> QualityReport:
    """After an erasure: zero rows of ``table`` match ``selector`` at every version in ``versions``.

    Runs the ``erased_selector`` suite on ``check_erased``'s counts: the dq_results rows record the
    rows still matching (observed value), the versions checked (parameter and observed value) and,
    on failure, the versions still holding matches as example ids. The selector itself is never
    recorded (it may be personal data).
    """
    if versions is None:
        versions = table_versions(spark, lake, table)
    versions = sorted(set(int(v) for v in versions))
    counts = check_erased(spark, lake, table, selector, versions)
    call = validate_or_raise if raise_on_failure else run_suite
    return call(
        spark,
        counts,
        "erased_selector",
        lake=lake,
        run=run,
        table_name=table,
        table_version=max(versions) if versions else None,
        parameters={"versions_checked": versions},
        record=record,
    )


# --------------------------------------------------------------------------------------------
# Running a suite
# --------------------------------------------------------------------------------------------


@dataclass
class ExpectationOutcome:
    """What one expectation found; what goes into a dq_results row."""

    expectation_id: str
    expectation_type: str
    view: str
    kwargs: dict[str, Any]
    success: bool
    observed_value: Any = None
    element_count: int | None = None
    unexpected_count: int | None = None
    example_ids: list[str] = field(default_factory=list)
    error: str | None = None
    data_docs_path: str | None = None

    def describe(self) -> str:
        parts = [self.expectation_id]
        if self.error:
            parts.append(f"error: {self.error}")
        if self.unexpected_count is not None:
            of = f" of {self.element_count}" if self.element_count is not None else ""
            parts.append(f"{self.unexpected_count} unexpected{of}")
        elif self.observed_value is not None:
            parts.append(f"observed {json.dumps(self.observed_value, default=str)}")
        if self.example_ids:
            parts.append("e.g. " + ", ".join(self.example_ids[:MAX_EXAMPLES]))
        return ": ".join(parts[:1]) + (": " + "; ".join(parts[1:]) if len(parts) > 1 else "")


@dataclass
class QualityReport:
    """Result of one suite run against one DataFrame."""

    suite: str
    table_name: str
    run_id: str
    job: str
    table_version: int | None
    outcomes: list[ExpectationOutcome]
    data_docs_path: str | None
    """Data Docs index of the run (``<lake>/data_docs/index.html``)."""
    data_docs_pages: list[str]
    """This suite run's validation pages (one per view)."""
    checked_at: datetime
    rows_written: int = 0
    """Rows this report added to ``dq_results`` (see ``write_reports``)."""

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def outcome(self, expectation_id: str) -> ExpectationOutcome:
        for o in self.outcomes:
            if o.expectation_id == expectation_id:
                return o
        raise KeyError(expectation_id)

    def summary(self) -> str:
        """One line for a job summary."""
        passed = sum(o.success for o in self.outcomes)
        status = "passed" if self.success else "FAILED"
        docs = f"; data docs {self.data_docs_pages[0] if self.data_docs_pages else self.data_docs_path}"
        return f"suite {self.suite} on {self.table_name} {status}: {passed}/{len(self.outcomes)} expectations held{docs}"

    def failure_message(self) -> str:
        failed = self.failures
        lines = [
            f"quality gate failed: suite {self.suite} on {self.table_name}"
            + (f" v{self.table_version}" if self.table_version is not None else "")
            + f" (run {self.run_id}): {len(failed)} of {len(self.outcomes)} expectation(s) failed"
        ]
        lines += [f"  - {o.describe()}" for o in failed]
        if self.data_docs_path:
            lines.append(
                f"  data docs: {self.data_docs_pages[0] if self.data_docs_pages else self.data_docs_path}"
            )
        return "\n".join(lines)


def validate_or_raise(
    spark: SparkSession,
    df: DataFrame,
    suite_name: str,
    *,
    lake: str,
    run: RunContext,
    table_version: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    references: Mapping[str, DataFrame] | None = None,
    table_name: str | None = None,
    read_published: bool = True,
    record: bool = True,
) -> QualityReport:
    """Run ``suite_name`` on ``df``, record the results, raise ``QualityGateError`` if anything failed.

    Call it before publishing ``df``. See ``run_suite`` for the arguments.
    """
    report = run_suite(
        spark,
        df,
        suite_name,
        lake=lake,
        run=run,
        table_version=table_version,
        parameters=parameters,
        references=references,
        table_name=table_name,
        read_published=read_published,
        record=record,
    )
    if not report.success:
        raise QualityGateError(report)
    return report


def run_suite(
    spark: SparkSession,
    df: DataFrame,
    suite_name: str,
    *,
    lake: str,
    run: RunContext,
    table_version: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    references: Mapping[str, DataFrame] | None = None,
    table_name: str | None = None,
    read_published: bool = True,
    record: bool = True,
    defer_write: bool = False,
) -> QualityReport:
    """Run ``suite_name`` on ``df`` with an ephemeral GX context and return the report (never raises on failures).

    - ``parameters``: values for the suite's ``$PARAMETER``s (``quality_parameters(config, ...)``).
    - ``references``: rows of other tables that cross-table checks must see besides the published
      tables, e.g. ``{"image_sources": new_sources}`` when publishing images and their sources together.
    - ``table_name``: the table checked (defaults to the suite's; needed for generic suites).
    - ``record``: write ``dq_results`` rows and Data Docs under the lake (default); False only checks.
    - ``defer_write``: with ``record``, build the Data Docs but leave the ``dq_results`` rows to the
      caller, who writes several reports in one MERGE with ``write_reports``.
    """
    spec = suite_spec(suite_name)
    table_name = table_name or spec.table
    if not table_name:
        raise ValueError(f"suite {suite_name} is generic: pass table_name")
    params = {**default_parameters(), **dict(parameters or {})}
    missing = sorted(spec.parameters - params.keys())
    if missing:
        raise ValueError(
            f"suite {suite_name} needs parameter(s) {', '.join(missing)}: "
            "pass parameters=quality_parameters(config, embedding_dim=...)"
        )
    params = {k: _jsonable(v) for k, v in params.items() if k in spec.parameters}
    refs = References(spark, lake, references, read_published=read_published)
    checked_at = datetime.now(UTC)
    session = _session(data_docs_root(lake) if record else None, run)
    outcomes: list[ExpectationOutcome] = []
    pages: list[str] = []
    with _quiet_gx():
        for view in spec.views():
            frame = build_view(df, spec, view, refs)
            try:
                view_outcomes, page = session.validate(frame, spec, view, table_name, params, run, checked_at)
                _add_computed_examples(frame, spec, view_outcomes)
            finally:
                frame.unpersist()
            outcomes.extend(o for _, o in view_outcomes)
            if page:
                pages.append(page)
        index = session.build_docs(spark) if record else None
    by_id = {o.expectation_id: o for o in outcomes}
    ordered = [by_id[_full_id(spec, table_name, e)] for e in spec.expectations]
    report = QualityReport(
        suite=suite_name,
        table_name=table_name,
        run_id=run.run_id,
        job=run.job,
        table_version=table_version,
        outcomes=ordered,
        data_docs_path=index,
        data_docs_pages=pages,
        checked_at=checked_at,
    )
    if record and not defer_write:
        write_reports(spark, lake, [report], run)
    level = logging.INFO if report.success else logging.WARNING
    log.log(level, report.summary() if report.success else report.failure_message())
    return report


def _full_id(spec: SuiteSpec, table_name: str, e: ExpectationSpec) -> str:
    # A generic suite runs once per table in a run: keep dq_results keys distinct.
    return e.expectation_id if spec.table else f"{table_name}:{e.expectation_id}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return value


def _add_computed_examples(
    frame: DataFrame, spec: SuiteSpec, outcomes: list[tuple[ExpectationSpec, ExpectationOutcome]]
) -> None:
    """Example ids for failed aggregate expectations whose JSON says which rows fail (``meta.failing_rows``)."""
    for e, o in outcomes:
        if o.success or o.example_ids or not e.failing_rows:
            continue
        rows = frame.where(e.failing_rows).select(*spec.id_columns).limit(MAX_EXAMPLES).collect()
        o.example_ids = _dedupe([_id_string([r[c] for c in spec.id_columns]) for r in rows])


def _id_string(values: Sequence[Any]) -> str | None:
    if any(v is None for v in values):
        return None
    return ":".join(str(v) for v in values)


def _dedupe(ids: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(i for i in ids if i is not None))[:MAX_EXAMPLES]


def write_reports(spark: SparkSession, lake: str, reports: Sequence[QualityReport], run: RunContext) -> int:
    """Write several reports' ``dq_results`` rows in one MERGE; returns the rows inserted.

    Sets ``rows_written`` of a report written alone; of reports written together, only when every row
    was new (the usual case: a run's first check of each suite), since one MERGE reports one count.
    """
    if not reports:
        return 0
    written = write_results(spark, lake, reports, run)
    expected = sum(len(r.outcomes) for r in reports)
    if len(reports) == 1:
        reports[0].rows_written = written
    elif written == expected:
        for r in reports:
            r.rows_written = len(r.outcomes)
    if written < expected:
        # dq_results' key is (run_id, suite, expectation_id): one result per run and suite.
        log.warning(
            "dq_results already held %d result(s) of run %s for suite(s) %s; kept the first ones",
            expected - written,
            run.run_id,
            ", ".join(r.suite for r in reports),
        )
    return written


def write_results(
    spark: SparkSession, lake: str, report: QualityReport | Sequence[QualityReport], run: RunContext
) -> int:
    """Insert the report's (or reports') rows into ``dq_results`` (MERGE on run, suite, expectation: reruns add nothing)."""
    reports = [report] if isinstance(report, QualityReport) else list(report)
    rows = [
        (
            report.run_id,
            report.job,
            report.suite,
            report.table_name,
            report.table_version,
            o.expectation_id,
            o.expectation_type,
            json.dumps(o.kwargs, sort_keys=True, default=str),
            bool(o.success),
            None if o.observed_value is None else json.dumps(o.observed_value, sort_keys=True, default=str),
            o.element_count,
            o.unexpected_count,
            list(o.example_ids),
            o.data_docs_path,
            report.checked_at,
        )
        for report in reports
        for o in report.outcomes
    ]
    frame = spark.createDataFrame(rows, schema_of("dq_results"))
    return merge_new_rows(spark, lake, "dq_results", frame, run)


# --------------------------------------------------------------------------------------------
# GX plumbing
# --------------------------------------------------------------------------------------------


def _gx():
    """Import GX lazily (it takes seconds) and keep its logging quiet."""
    level = logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR
    logging.getLogger("great_expectations").setLevel(level)  # before the import: it logs while importing
    import great_expectations as gx

    # ... and sets INFO on one of its own loggers at import time.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(level)
    return gx


@cache
def _keeping_site_index_builder() -> type:
    from great_expectations.render.renderer.site_builder import DefaultSiteIndexBuilder

    class KeepingSiteIndexBuilder(DefaultSiteIndexBuilder):
        """The default index page, without deleting pages of validations made by other contexts."""

        def build(self, skip_and_clean_missing: bool = False, build_index: bool = True):
            return super().build(skip_and_clean_missing=False, build_index=build_index)

    KeepingSiteIndexBuilder.__module__ = __name__
    return KeepingSiteIndexBuilder


def __getattr__(name: str) -> Any:
    # GX instantiates the Data Docs index builder by module and class name; build it lazily so
    # importing this module does not import GX.
    if name == "KeepingSiteIndexBuilder":
        return _keeping_site_index_builder()
    raise AttributeError(name)


class _quiet_gx:
    """Silence GX's Python warnings while a suite runs."""

    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", module="great_expectations")
        warnings.filterwarnings("ignore", message=".*great_expectations.*")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri)


def data_docs_root(lake: str) -> str:
    """Where Data Docs live for ``lake``."""
    return lake.rstrip("/") + "/" + DATA_DOCS


_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str | None, str], _GxSession] = {}


def _session(docs_root: str | None, run: RunContext) -> _GxSession:
    """One ephemeral GX context per run and Data Docs root: the run's index lists all its validations."""
    key = (docs_root, run.run_id)
    with _SESSION_LOCK:
        if key not in _SESSIONS:
            for old in [k for k in _SESSIONS if k[1] != run.run_id]:
                del _SESSIONS[old]  # keep only the current run's contexts
            _SESSIONS[key] = _GxSession(docs_root)
        return _SESSIONS[key]


class _GxSession:
    """An ephemeral GX context with a Spark datasource and, when given a root, a Data Docs site."""

    def __init__(self, docs_root: str | None) -> None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.docs_root = docs_root
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.datasource = self.context.data_sources.add_spark(_DATASOURCE, persist=True)
        self.names: set[str] = set()
        self.pending: list[Any] = []
        self.local_site: Path | None = None
        if docs_root is not None:
            if _is_local(docs_root):
                self.local_site = _local_path(docs_root)
            else:
                self.local_site = Path(tempfile.mkdtemp(prefix="facelake-data-docs-"))
            self.local_site.mkdir(parents=True, exist_ok=True)
            self.context.add_data_docs_site(
                _SITE,
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(self.local_site.resolve()),
                    },
                    # GX's default index builder deletes every page this (ephemeral) context did
                    # not produce, i.e. earlier runs' pages that dq_results rows link to.
                    "site_index_builder": {"module_name": __name__, "class_name": "KeepingSiteIndexBuilder"},
                },
            )

    def _unique(self, base: str) -> str:
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}-{n}"
        self.names.add(name)
        return name

    def validate(
        self,
        frame: DataFrame,
        spec: SuiteSpec,
        view: str,
        table_name: str,
        params: Mapping[str, Any],
        run: RunContext,
        checked_at: datetime,
    ) -> tuple[list[tuple[ExpectationSpec, ExpectationOutcome]], str | None]:
        """Validate one view in two passes and store the merged result for Data Docs.

        Pass 1 runs every expectation with ``BOOLEAN_ONLY`` (GX bundles the counts into a few Spark
        jobs). Pass 2 re-runs, with ``SUMMARY`` and the id columns, only what needs details: failed
        or errored expectations, aggregate ones (their observed value is recorded) and any with
        ``mostly`` < 1. A passing publish thus costs one cheap pass.
        """
        gx = _gx()
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )
        from great_expectations.validator.validation_statistics import calc_validation_statistics

        expectations = [e for e in spec.expectations if e.view == view]
        base = spec.name if spec.table else f"{spec.name}.{table_name}"
        name = self._unique(base if view == ROWS_VIEW else f"{base}.{view}")
        configs = []
        for e in expectations:
            config = copy.deepcopy(e.config)
            config["meta"] = {**(config.get("meta") or {}), "expectation_id": e.expectation_id}
            configs.append(config)
        meta = copy.deepcopy(spec.raw.get("meta") or {})
        suite = self.context.suites.add(gx.ExpectationSuite(name=name, expectations=configs, meta=meta))
        asset = self.datasource.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe(name).get_batch(
            batch_parameters={"dataframe": frame}
        )

        result = batch.validate(suite, result_format="BOOLEAN_ONLY", expectation_parameters=dict(params))
        by_id = {e.expectation_id: e for e in expectations}
        redo = [
            r.expectation_config.meta["expectation_id"]
            for r in result.results
            if _needs_detail(r, by_id[r.expectation_config.meta["expectation_id"]])
        ]
        if redo:
            detail_suite = gx.ExpectationSuite(
                name=name, expectations=[c for c in configs if c["meta"]["expectation_id"] in redo], meta=meta
            )
            detailed = batch.validate(
                detail_suite,
                result_format={
                    "result_format": "SUMMARY",
                    "unexpected_index_column_names": list(spec.id_columns),
                    "partial_unexpected_count": MAX_EXAMPLES * 4,
                    # Values of failing rows could be personal data (URLs): keep only their ids.
                    "exclude_unexpected_values": True,
                    "return_unexpected_index_query": False,
                },
                expectation_parameters=dict(params),
            )
            again = {r.expectation_config.meta["expectation_id"]: r for r in detailed.results}
            result.results = [
                again.get(r.expectation_config.meta["expectation_id"], r) for r in result.results
            ]
            stats = calc_validation_statistics(result.results)
            result.success = stats.success
            result.statistics = {
                "evaluated_expectations": stats.evaluated_expectations,
                "successful_expectations": stats.successful_expectations,
                "unsuccessful_expectations": stats.unsuccessful_expectations,
                "success_percent": stats.success_percent,
            }

        page = None
        if self.local_site is not None:
            run_identifier = RunIdentifier(run_name=run.run_id, run_time=checked_at)
            result.meta["run_id"] = run_identifier
            result.meta["validation_time"] = checked_at
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
                run_id=run_identifier,
                batch_identifier=result.batch_id,
            )
            self.context.validation_results_store.store_validation_results(
                suite_validation_result=result,
                suite_validation_result_identifier=key,
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
            )
            self.pending.append(key)
            page = self._page_uri(key)
        rows = None
        outcomes = []
        for r in result.results:
            e = by_id[r.expectation_config.meta["expectation_id"]]
            outcome = _outcome(r, e, spec, table_name, page)
            if outcome.success and outcome.element_count is None and _is_map(e.type):
                # Pass 1 only: every row held (mostly = 1).
                rows = frame.count() if rows is None else rows
                outcome.element_count, outcome.unexpected_count = rows, 0
            outcomes.append((e, outcome))
        return outcomes, page

    def _page_uri(self, key: Any) -> str | None:
        urls = self.context.get_docs_sites_urls(
            resource_identifier=key, site_name=_SITE, only_if_exists=False
        )
        if not urls or not urls[0].get("site_url"):
            return None
        path = Path(urlparse(urls[0]["site_url"]).path)
        assert self.local_site is not None and self.docs_root is not None
        relative = path.relative_to(self.local_site.resolve()).as_posix()
        return self.docs_root.rstrip("/") + "/" + relative

    def build_docs(self, spark: SparkSession) -> str | None:
        """Render this run's new validation pages and the index; copy them to the lake if remote."""
        if self.local_site is None or self.docs_root is None:
            return None
        keys, self.pending = self.pending, []
        self.context.build_data_docs(site_names=[_SITE], resource_identifiers=keys or None)
        if not _is_local(self.docs_root):
            copy_local_tree(spark, self.local_site, self.docs_root)
        return self.docs_root.rstrip("/") + "/index.html"


def _outcome(
    r: Any, e: ExpectationSpec, spec: SuiteSpec, table_name: str, page: str | None
) -> ExpectationOutcome:
    result = dict(r.result or {})
    error = _error_message(r.exception_info)
    examples = _example_ids(result.get("partial_unexpected_index_list"), spec.id_columns)
    observed = result.get("observed_value")
    if _is_map(e.type):
        element_count, unexpected_count = result.get("element_count"), result.get("unexpected_count")
    else:
        # Counts of an aggregate expectation are about values, not rows: they go in the observed value.
        element_count = unexpected_count = None
        if observed is None:
            observed = {
                k: result[k] for k in ("unexpected_count", "missing_count") if result.get(k) is not None
            } or None
    kwargs = r.expectation_config.kwargs
    kwargs = {k: v for k, v in dict(kwargs).items() if k not in ("batch_id",)}
    return ExpectationOutcome(
        expectation_id=_full_id(spec, table_name, e),
        expectation_type=e.type,
        view=e.view,
        kwargs=json.loads(json.dumps(kwargs, default=_json_default)),
        success=bool(r.success) and error is None,
        observed_value=None if observed is None else json.loads(json.dumps(observed, default=_json_default)),
        element_count=_int_or_none(element_count),
        unexpected_count=_int_or_none(unexpected_count),
        example_ids=examples,
        error=error,
        data_docs_path=page,
    )


@cache
def _is_map(expectation_type: str) -> bool:
    """Whether GX checks this expectation row by row (so it has unexpected rows and ids)."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    impl = get_expectation_impl(expectation_type)
    return issubclass(impl, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation)


def _needs_detail(result: Any, e: ExpectationSpec) -> bool:
    mostly = e.kwargs.get("mostly", 1)
    return (
        not result.success
        or _error_message(result.exception_info) is not None
        or not _is_map(e.type)
        or (isinstance(mostly, int | float) and mostly < 1)
    )


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_json_dict"):
        return value.to_json_dict()
    if hasattr(value, "dict"):
        return value.dict()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _error_message(info: Any) -> str | None:
    """GX's exception_info is either one dict or a dict of them keyed by metric."""
    if not isinstance(info, dict):
        return None
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for c in candidates:
        if c.get("raised_exception"):
            message = str(c.get("exception_message") or "exception")
            return message.splitlines()[0][:300]
    return None


def _example_ids(index_list: Any, id_columns: Sequence[str]) -> list[str]:
    """Ids of failing rows from GX's ``partial_unexpected_index_list``.

    Spark returns ``[{"col": [v1, v2, …]}]``, pandas ``[{"col": v1}, {"col": v2}]``; both are read.
    """
    if not index_list:
        return []
    ids: list[str | None] = []
    for item in index_list:
        if not isinstance(item, dict):
            continue
        values = [item.get(c) for c in id_columns]
        if values and all(isinstance(v, list) for v in values):
            ids.extend(_id_string(list(row)) for row in zip(*values, strict=False))
        else:
            ids.append(_id_string(values))
    return _dedupe(ids)


Check = tuple[str, DataFrame] | tuple[str, DataFrame, Mapping[str, DataFrame] | None]
"""(suite, rows) or (suite, rows, references): one frame about to be published."""


class PublishGate:
    """A job's gate: ``gate(suite, rows, references=None)`` validates rows about to be published.

    Raises ``QualityGateError`` (nothing is written by the caller then); skips empty frames, since
    nothing would be published. ``gate.check_all([...])`` does the same for several frames that are
    published together, recording all their results in one ``dq_results`` MERGE.
    """

    def __init__(self, spark: SparkSession, config: Any, run: RunContext, parameters: Mapping[str, Any]) -> None:
        self.spark, self.config, self.run, self.parameters = spark, config, run, dict(parameters)

    def __call__(
        self, suite: str, rows: DataFrame, references: Mapping[str, DataFrame] | None = None
    ) -> QualityReport | None:
        return self.check_all([(suite, rows, references)])[0]

    def check_all(self, checks: Sequence[Check]) -> list[QualityReport | None]:
        """Run each suite in order, stopping at the first that fails; record every suite that ran (a
        failure too) in ``dq_results``, then raise ``QualityGateError`` if one failed."""
        reports: list[QualityReport | None] = []
        try:
            for suite, rows, *rest in checks:
                if rows.isEmpty():
                    reports.append(None)
                    continue
                report = run_suite(self.spark, rows, suite, lake=self.config.lake, run=self.run,
                                   parameters=self.parameters, references=rest[0] if rest else None, defer_write=True)
                reports.append(report)
                if not report.success:
                    break
        except Exception:
            write_reports(self.spark, self.config.lake, [r for r in reports if r is not None], self.run)
            raise
        write_reports(self.spark, self.config.lake, [r for r in reports if r is not None], self.run)
        for report in reports:
            if report is not None and not report.success:
                raise QualityGateError(report)
            if report is not None:
                self.run.progress("expectations %s", report.summary())
        return reports


def publish_gate(spark: SparkSession, config: Any, run: RunContext, **parameter_overrides: Any) -> PublishGate:
    """The expectations gate of a job, with parameters from its config (``quality_parameters``)."""
    return PublishGate(spark, config, run, quality_parameters(config, **parameter_overrides))
