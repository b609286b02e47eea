"""No personal data in Delta's transaction log: commits, checkpoints and checksums hold no URL, path or raw line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.core.runs import RunContext
from jobs.lake.schemas import table_names, table_spec
from jobs.lake.tables import ensure_table, merge_new_rows
from tests.test_lake import rows

# Short enough that Delta's 32-character string statistics would hold it whole, in every column.
MARKER = "pii-marker-7f3a"
LOG_KINDS = ("commit", "checkpoint", "checksum")


def marker_items(name: str, batch: int) -> list[dict[str, Any]]:
    """Two rows' overrides for table ``name``: MARKER in every personal string, bytes or string-array column."""
    spec = table_spec(name)
    items = []
    for i in range(2):
        item: dict[str, Any] = {}
        for f in spec.schema.fields:
            kind = f.dataType
            if f.name in spec.key and isinstance(kind, T.StringType):
                item[f.name] = f"{f.name}-{batch}-{i}"  # new keys each batch, so every MERGE commits
            elif f.name in spec.personal and isinstance(kind, T.StringType):
                item[f.name] = f"https://{MARKER}.example/{f.name}/{batch}/{i}"
            elif f.name in spec.personal and isinstance(kind, T.BinaryType):
                item[f.name] = MARKER.encode()
            elif f.name in spec.personal and kind == T.ArrayType(T.StringType(), True):
                item[f.name] = [MARKER]
        items.append(item)
    return items


def marker_rows(spark: SparkSession, name: str, batch: int) -> DataFrame:
    return rows(spark, name, marker_items(name, batch))


def log_kind(path: Path) -> str:
    """commit (NNN.json), checkpoint (NNN.checkpoint[.part].parquet, v2 sidecars), checksum (Delta's NNN.crc), other."""
    if path.name.startswith("."):
        return "other"  # Hadoop's .NNN.json.crc: a CRC-32 of its neighbour, scanned all the same
    if ".checkpoint." in path.name or path.parent.name == "_sidecars":
        return "checkpoint"
    if path.suffix == ".crc":
        return "checksum"  # the table's state at that version, file statistics included
    if path.suffix == ".json":
        return "commit"
    return "other"


def log_version(path: Path) -> int:
    """The table version a commit, checkpoint or checksum file belongs to."""
    return int(path.name.split(".")[0])


def _strings(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif value is not None:
        yield str(value)


def file_holds_marker(path: Path) -> bool:
    """Whether MARKER is in the file: its bytes, and for parquet (compressed pages) every decoded value."""
    if MARKER.encode() in path.read_bytes():
        return True
    if path.suffix == ".parquet":
        return any(MARKER in s for s in _strings(pq.read_table(path).to_pylist()))
    return False


def log_files(table_dir: Path) -> list[Path]:
    """Every file under the table's _delta_log, sidecars, staged commits and Hadoop checksums included."""
    return sorted(p for p in (table_dir / "_delta_log").rglob("*") if p.is_file())


def leaks(lake: str) -> dict[str, list[str]]:
    """Per log kind, the log files of every table in the lake that hold MARKER."""
    found: dict[str, list[str]] = {}
    for table_dir in sorted((Path(lake) / "tables").iterdir()):
        for path in log_files(table_dir):
            if file_holds_marker(path):
                found.setdefault(log_kind(path), []).append(f"{table_dir.name}/{path.name}")
    return found


def write_marker_lake(spark: SparkSession, lake: str, names: list[str], *, without_stats_property: bool) -> None:
    """Tables made by ensure_table, marker rows MERGEd in, a checkpoint at every commit (Delta's default: every 10th)."""
    for name in names:
        uri = ensure_table(spark, lake, name)
        if without_stats_property:
            spark.sql(f"ALTER TABLE delta.`{uri}` UNSET TBLPROPERTIES ('delta.dataSkippingStatsColumns')")
        spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ('delta.checkpointInterval' = '1')")
        assert merge_new_rows(spark, lake, name, marker_rows(spark, name, 0), RunContext(job="privacy")) == 2
    for name in names:
        kinds = {log_kind(p) for p in log_files(Path(lake) / "tables" / name)}
        assert set(LOG_KINDS) <= kinds, f"{name}: the log must hold commits, a checkpoint and checksums"


def test_marker_rows_fill_every_personal_column() -> None:
    """The proof below is only as good as its rows: each personal string or bytes column holds the marker."""
    for name in table_names():
        spec = table_spec(name)
        first = marker_items(name, 0)[0]
        scalar = {c for c in spec.personal if not isinstance(spec.schema[c].dataType, T.ArrayType)}
        assert {c for c in scalar if MARKER in json.dumps(first.get(c), default=str)} == scalar, name


@pytest.mark.slow
def test_delta_log_holds_no_personal_data(spark: SparkSession, lake: str) -> None:
    """Every table, its stats restricted by schemas/*.json: no commit, checkpoint or checksum holds the marker."""
    write_marker_lake(spark, lake, table_names(), without_stats_property=False)
    # The data is there (the marker is in the tables) ...
    quarantine = spark.read.format("delta").load(f"{lake}/tables/quarantine")
    assert quarantine.where(quarantine.raw_line.contains(MARKER)).count() == 2
    # ... and nowhere in any table's log.
    assert leaks(lake) == {}


@pytest.mark.slow
def test_without_stats_property_the_log_leaks(spark: SparkSession, lake: str) -> None:
    """The control: the same writes without delta.dataSkippingStatsColumns put the marker in every kind of log file,
    so the test above fails without the property (and the scan can see each kind)."""
    names = ["crawl_manifest", "image_sources", "quarantine"]
    write_marker_lake(spark, lake, names, without_stats_property=True)
    found = leaks(lake)
    assert set(LOG_KINDS) <= set(found), found
    for name in names:
        assert any(f.startswith(f"{name}/") for f in found["checkpoint"]), name
