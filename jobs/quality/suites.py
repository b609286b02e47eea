"""Expectation suites: read ``expectations/<name>.json``, add schema-derived checks, fill parameters."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jobs.core.config import FacelakeConfig
from jobs.core.paths import resource_dir
from jobs.core.reasons import QuarantineReason
from jobs.lake.schemas import schema_of
from jobs.quality.derived import ROWS_VIEW, VIEWS
from jobs.quality.gx import import_gx

EXPECTATIONS_DIR = resource_dir("expectations")


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
    """The file's JSON, without the schema-derived expectations (those are in ``expectations``)."""

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
    configs = list(raw["expectations"])
    if meta.get("table"):
        # Added to the spec only: ``raw`` stays the file as GX reads and writes it (``load_suite``).
        configs += _schema_not_null(meta["table"], configs)
    specs: list[ExpectationSpec] = []
    params: set[str] = set()
    for config in configs:
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
        if c["type"] == "expect_column_values_to_not_be_null"
        and "row_condition" not in c["kwargs"]
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
    gx = import_gx()
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

    ``publish_gate(spark, config, run, embedding_dim=pack.dim)`` passes
    ``quality_parameters(config, embedding_dim=pack.dim)`` to every suite it runs.
    The tag vocabulary is the policy's (``config.policy_file``) unless given.
    """
    from jobs.core.policy import load_policy

    params: dict[str, Any] = default_parameters()
    if config is not None:
        params["max_image_pixels"] = config.max_image_pixels
        params["phash_threshold"] = config.phash_threshold
        params["index_min_recall"] = config.index_recall_target
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
    the ``QuarantineReason`` values; ``near_dup_min_score``: the verification score an alias needs;
    ``index_min_recall``: the recall@10 a published index build must reach.
    """
    from jobs.core.neardup import VerifyParams
    from jobs.core.policy import load_policy

    return {
        "jurisdiction_vocabulary": load_policy().vocabulary,
        "quarantine_reasons": sorted(r.value for r in QuarantineReason),
        "near_dup_min_score": VerifyParams().min_agreement,
        "index_min_recall": FacelakeConfig().index_recall_target,
    }
