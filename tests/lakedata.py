"""Test data for lake tests: rows of any table, faces, two-way row comparison, and a scan of Delta's log for a marker.

Shared by test_lake, test_sql, test_maintain and test_privacy (imported as a plain module, like ``hostile_drop``),
so no test module imports another.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.lake.schemas import table_spec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _default(field: T.StructField, i: int) -> Any:
    kind = field.dataType
    if isinstance(kind, T.StringType):
        return f"{field.name}-{i}"
    if isinstance(kind, (T.IntegerType, T.LongType)):
        return i
    if isinstance(kind, (T.FloatType, T.DoubleType)):
        return float(i)
    if isinstance(kind, T.TimestampType):
        return NOW
    if isinstance(kind, T.BinaryType):
        return bytes([i % 256])
    if isinstance(kind, T.BooleanType):
        return False
    if isinstance(kind, T.ArrayType):
        return []
    if isinstance(kind, T.MapType):
        return {}
    return None


def rows(spark: SparkSession, name: str, items: list[dict[str, Any]]) -> DataFrame:
    """Rows of table ``name``: every column filled deterministically, ``items`` override some."""
    schema = table_spec(name).schema
    data = [{f.name: item.get(f.name, _default(f, i)) for f in schema.fields} for i, item in enumerate(items)]
    return spark.createDataFrame(data, schema)


def faces(spark: SparkSession, ids: list[str], score: float = 0.9, image: str = "img") -> DataFrame:
    return rows(
        spark,
        "faces",
        [
            {
                "face_id": f,
                "image_id": f"{image}-{f}",
                "det_score": score,
                "embedding": [1.0, 0.0],
                "jurisdiction_tags": ["uk"] if f.endswith("uk") else [],
            }
            for f in ids
        ],
    )


def sorted_rows(df: DataFrame) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


def assert_same_rows(actual: DataFrame, expected: DataFrame) -> None:
    """Two-way comparison: nothing missing, nothing extra (as in Delta's own tests)."""
    cols = expected.columns
    assert actual.select(*cols).exceptAll(expected).count() == 0
    assert expected.exceptAll(actual.select(*cols)).count() == 0


# --- Personal data in Delta's transaction log ------------------------------------------------------------

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
