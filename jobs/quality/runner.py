"""Running a suite with GX: one ephemeral context per run, reports, Data Docs and dq_results rows."""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession

from jobs.core.ids import row_id
from jobs.core.runs import RunContext
from jobs.lake.fs import copy_local_tree
from jobs.lake.schemas import schema_of
from jobs.lake.tables import merge_new_rows
from jobs.quality.derived import ROWS_VIEW, References, build_view
from jobs.quality.gx import KeepingSiteIndexBuilder, import_gx, quiet_gx
from jobs.quality.suites import ExpectationSpec, SuiteSpec, default_parameters, suite_spec

log = logging.getLogger("facelake.quality")

DATA_DOCS = "data_docs"
"""Data Docs live at ``<lake>/data_docs/`` (``index.html`` lists the current run's validations)."""
MAX_EXAMPLES = 5
_SITE = "facelake"
_DATASOURCE = "facelake"


# --------------------------------------------------------------------------------------------
# Reports
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
    validation_id: str
    """This validation's id in ``dq_results`` (``validation_id``); see ``next_validation_id``."""
    outcomes: list[ExpectationOutcome]
    data_docs_path: str | None
    """Data Docs index of the run (``<lake>/data_docs/index.html``)."""
    data_docs_pages: list[str]
    """This suite run's validation pages (one per view)."""
    checked_at: datetime
    rows_written: int = 0
    """Rows this report added to ``dq_results`` (see ``write_results``)."""

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


# --------------------------------------------------------------------------------------------
# Running a suite
# --------------------------------------------------------------------------------------------


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
    data_docs: bool = True,
) -> QualityReport:
    """Run ``suite_name`` on ``df`` with an ephemeral GX context and return the report (never raises on failures).

    Writes no ``dq_results`` rows: the caller records reports with ``write_results``, so that the
    reports of frames published together go in one MERGE.

    - ``parameters``: values for the suite's ``$PARAMETER``s (``quality_parameters(config, ...)``).
    - ``references``: rows of other tables that cross-table checks must see besides the published
      tables, e.g. ``{"image_sources": new_sources}`` when publishing images and their sources together.
    - ``table_name``: the table checked (defaults to the suite's; needed for generic suites).
    - ``data_docs``: build the run's Data Docs pages under the lake (default); False only checks.
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
    session = _session(data_docs_root(lake) if data_docs else None, run)
    outcomes: list[ExpectationOutcome] = []
    pages: list[str] = []
    with quiet_gx():
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
        index = session.build_docs(spark) if data_docs else None
    by_id = {o.expectation_id: o for o in outcomes}
    ordered = [by_id[_full_id(spec, table_name, e)] for e in spec.expectations]
    report = QualityReport(
        suite=suite_name,
        table_name=table_name,
        run_id=run.run_id,
        job=run.job,
        table_version=table_version,
        validation_id=next_validation_id(run.run_id, suite_name, table_name, table_version),
        outcomes=ordered,
        data_docs_path=index,
        data_docs_pages=pages,
        checked_at=checked_at,
    )
    level = logging.INFO if report.success else logging.WARNING
    log.log(level, report.summary() if report.success else report.failure_message())
    return report


def _full_id(spec: SuiteSpec, table_name: str, e: ExpectationSpec) -> str:
    # A generic suite runs on many tables: the id says which one a result is about.
    return e.expectation_id if spec.table else f"{table_name}:{e.expectation_id}"


_VALIDATIONS_LOCK = threading.Lock()
_VALIDATIONS: OrderedDict[str, Counter[tuple[str, str, int | None]]] = OrderedDict()
_VALIDATIONS_RUNS = 64
"""Runs whose validation counts are kept: only a session interleaving more runs than this (a notebook)
would number an old run's validations afresh, and a repeat of one of them would then not be recorded."""


def next_validation_id(run_id: str, suite: str, table_name: str, table_version: int | None) -> str:
    """A new validation's id: ``row_id(run_id, suite, table_name, table_version, n)`` for the run's n-th
    validation (1-based) of that suite, table and version in this process.

    Numbered per (suite, table, version) rather than per run, so a validation's id does not depend on
    what else the run checked before it: the same job validating the same frames in the same order
    gets the same ids, and a second validation of the same thing (a generic suite run per table, a
    suite run twice) gets a new one, so ``dq_results`` keeps both.
    """
    key = (suite, table_name, table_version)
    with _VALIDATIONS_LOCK:
        counts = _VALIDATIONS.setdefault(run_id, Counter())
        _VALIDATIONS.move_to_end(run_id)
        while len(_VALIDATIONS) > _VALIDATIONS_RUNS:
            _VALIDATIONS.popitem(last=False)
        counts[key] += 1
        n = counts[key]
    return row_id(run_id, suite, table_name, table_version, n)


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


def write_results(spark: SparkSession, lake: str, reports: Sequence[QualityReport], run: RunContext) -> int:
    """Insert the reports' rows into ``dq_results`` in one MERGE; returns the rows inserted.

    The MERGE is on (run, validation, expectation): every validation of a run lands, even of the
    same suite, and writing the same reports again adds nothing. Sets ``rows_written`` of a report
    written alone; of reports written together, only when every row was new (the usual case), since
    one MERGE reports one count.
    """
    if not reports:
        return 0
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
            report.validation_id,
        )
        for report in reports
        for o in report.outcomes
    ]
    frame = spark.createDataFrame(rows, schema_of("dq_results"))
    written = merge_new_rows(spark, lake, "dq_results", frame, run)
    expected = sum(len(r.outcomes) for r in reports)
    if len(reports) == 1:
        reports[0].rows_written = written
    elif written == expected:
        for r in reports:
            r.rows_written = len(r.outcomes)
    if written < expected:
        # Only the same validation written again (a retried write) can meet an existing key.
        log.info(
            "dq_results already held %d result(s) of run %s for suite(s) %s",
            expected - written,
            run.run_id,
            ", ".join(r.suite for r in reports),
        )
    return written


# --------------------------------------------------------------------------------------------
# GX session and Data Docs
# --------------------------------------------------------------------------------------------


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
        gx = import_gx()
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
                    # GX's default index builder would delete earlier runs' pages (see the class).
                    "site_index_builder": {
                        "module_name": KeepingSiteIndexBuilder.__module__,
                        "class_name": KeepingSiteIndexBuilder.__name__,
                    },
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
        gx = import_gx()
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
