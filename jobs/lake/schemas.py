"""Table schemas loaded from `schemas/*.json`, the single source of truth for every facelake table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from pyspark.sql.types import StructType

from jobs.core.paths import resource_dir

SCHEMA_DIR = resource_dir("schemas")
# Delta writes min/max/null-count statistics of these columns (only) into every commit, checkpoint
# and checksum of _delta_log; without it, the first 32 columns, strings cut to 32 characters.
STATS_COLUMNS_PROPERTY = "delta.dataSkippingStatsColumns"


@dataclass(frozen=True)
class TableSpec:
    """A table's schema plus what jobs need to know about it (key, partitioning, Delta properties)."""

    name: str
    description: str
    key: tuple[str, ...]
    partition_by: tuple[str, ...]
    zorder_by: tuple[str, ...]
    """Columns jobs filter and join on; ``facelake maintain`` Z-orders the files by them."""
    properties: dict[str, str]
    schema: StructType
    personal: tuple[str, ...] = ()
    """Columns holding personal data (``"personal": true``): kept out of Delta's log statistics."""

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.schema.fields]

    @property
    def stats_columns(self) -> tuple[str, ...] | None:
        """Columns Delta keeps statistics on (``delta.dataSkippingStatsColumns``); None when undeclared."""
        declared = self.properties.get(STATS_COLUMNS_PROPERTY)
        if declared is None:
            return None
        return tuple(c.strip().strip("`") for c in declared.split(",") if c.strip())


def _to_struct(fields: list[dict[str, Any]]) -> StructType:
    return StructType.fromJson(
        {
            "type": "struct",
            "fields": [
                {
                    "name": f["name"],
                    "type": f["type"],
                    "nullable": f["nullable"],
                    "metadata": {"comment": f.get("description", "")},
                }
                for f in fields
            ],
        }
    )


@cache
def table_spec(name: str) -> TableSpec:
    """The spec of table ``name`` as written in ``schemas/<name>.json``."""
    path = SCHEMA_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no schema for table {name!r}; known tables: {', '.join(table_names())}")
    raw = json.loads(path.read_text())
    return TableSpec(
        name=raw["table"],
        description=raw["description"],
        key=tuple(raw["key"]),
        partition_by=tuple(raw.get("partition_by", [])),
        zorder_by=tuple(raw.get("zorder_by", [])),
        properties=dict(raw.get("properties", {})),
        schema=_to_struct(raw["fields"]),
        personal=tuple(f["name"] for f in raw["fields"] if f.get("personal", False)),
    )


def table_names() -> list[str]:
    """Every table facelake owns, in a stable order."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))


def schema_of(name: str) -> StructType:
    return table_spec(name).schema


def schema_differences(actual: StructType, expected: StructType) -> list[str]:
    """Human-readable differences between two schemas (empty when they match exactly)."""
    problems: list[str] = []
    a = {f.name: f for f in actual.fields}
    e = {f.name: f for f in expected.fields}
    for name in e.keys() - a.keys():
        problems.append(f"missing column {name}")
    for name in a.keys() - e.keys():
        problems.append(f"unexpected column {name}")
    for name in e.keys() & a.keys():
        if a[name].dataType != e[name].dataType:
            problems.append(
                f"{name}: type {a[name].dataType.simpleString()} != {e[name].dataType.simpleString()}"
            )
        if a[name].nullable != e[name].nullable:
            problems.append(f"{name}: nullable {a[name].nullable} != {e[name].nullable}")
    if not problems and [f.name for f in actual.fields] != [f.name for f in expected.fields]:
        problems.append("column order differs")
    return sorted(problems)
