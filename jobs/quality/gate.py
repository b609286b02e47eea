"""The expectations gate every job calls before it publishes: ``publish_gate(...)(suite, rows)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from jobs.core.runs import RunContext
from jobs.quality.runner import QualityReport, run_suite, write_results
from jobs.quality.suites import quality_parameters


class QualityGateError(RuntimeError):
    """A suite failed: the message names each failed expectation, its count and example ids."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        super().__init__(report.failure_message())


Check = tuple[str, DataFrame] | tuple[str, DataFrame, Mapping[str, DataFrame] | None]
"""(suite, rows) or (suite, rows, references): one frame about to be published."""


class PublishGate:
    """A job's gate: ``gate(suite, rows, references=None)`` validates rows about to be published.

    Raises ``QualityGateError`` (nothing is written by the caller then); skips empty frames, since
    nothing would be published. ``gate.check_all([...])`` does the same for several frames that are
    published together, recording all their results in one ``dq_results`` MERGE.

    - ``parameters``: values for the suites' ``$PARAMETER``s (``quality_parameters(config, ...)``).
    - ``references`` (per call): rows of other tables that cross-table checks must see besides the
      published tables, e.g. ``{"image_sources": new_sources}`` when publishing images and their
      sources together.
    - ``table_name`` (per call): the table checked; defaults to the suite's, needed for a generic suite.
    - ``record``: write ``dq_results`` rows and Data Docs under the lake (default); False only checks.
    """

    def __init__(
        self,
        spark: SparkSession,
        lake: str,
        run: RunContext,
        parameters: Mapping[str, Any] | None = None,
        *,
        record: bool = True,
    ) -> None:
        self.spark, self.lake, self.run = spark, lake, run
        self.parameters = dict(parameters or {})
        self.record = record

    def __call__(
        self,
        suite: str,
        rows: DataFrame,
        references: Mapping[str, DataFrame] | None = None,
        *,
        table_name: str | None = None,
    ) -> QualityReport | None:
        return self._check([(suite, rows, references, table_name)])[0]

    def check_all(self, checks: Sequence[Check]) -> list[QualityReport | None]:
        """Run each suite in order, stopping at the first that fails; record every suite that ran (a
        failure too) in ``dq_results``, then raise ``QualityGateError`` if one failed."""
        return self._check([(suite, rows, rest[0] if rest else None, None) for suite, rows, *rest in checks])

    def _check(
        self, checks: Sequence[tuple[str, DataFrame, Mapping[str, DataFrame] | None, str | None]]
    ) -> list[QualityReport | None]:
        reports: list[QualityReport | None] = []
        try:
            for suite, rows, references, table_name in checks:
                if rows.isEmpty():
                    reports.append(None)
                    continue
                report = run_suite(
                    self.spark,
                    rows,
                    suite,
                    lake=self.lake,
                    run=self.run,
                    parameters=self.parameters,
                    references=references,
                    table_name=table_name,
                    data_docs=self.record,
                )
                reports.append(report)
                if not report.success:
                    break
        except Exception:
            self._record(reports)  # a suite that could not run: keep the results of those that did
            raise
        self._record(reports)
        for report in reports:
            if report is not None and not report.success:
                raise QualityGateError(report)
            if report is not None:
                self.run.progress("expectations %s", report.summary())
        return reports

    def _record(self, reports: Sequence[QualityReport | None]) -> None:
        if self.record:
            write_results(self.spark, self.lake, [r for r in reports if r is not None], self.run)


def check_together(gate: PublishGate | Callable[..., object], checks: Sequence[Check]) -> None:
    """Validate frames that are published together: ``gate.check_all(checks)`` (one ``dq_results``
    MERGE for all) when the gate has it, else ``gate(suite, rows[, references])`` for each, in order
    (a caller's own gate, e.g. in tests)."""
    if isinstance(gate, PublishGate):
        gate.check_all(checks)
        return
    for suite, rows, *rest in checks:
        if rest and rest[0] is not None:
            gate(suite, rows, references=rest[0])
        else:
            gate(suite, rows)


def publish_gate(
    spark: SparkSession, config: Any, run: RunContext, **parameter_overrides: Any
) -> PublishGate:
    """The expectations gate of a job, with parameters from its config (``quality_parameters``)."""
    return PublishGate(spark, config.lake, run, quality_parameters(config, **parameter_overrides))
