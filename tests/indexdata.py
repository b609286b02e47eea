"""Test data for index tests: synthetic `faces` rows written straight into a lake (no detector needed)."""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from jobs.lake.tables import conform, ensure_table

PACK_ID = "synthetic@0123456789ab"
PACK_SHA = hashlib.sha256(b"synthetic").hexdigest()


def face_ids(n: int, start: int = 0, salt: str = "f") -> list[str]:
    return [hashlib.sha256(f"{salt}-{i}".encode()).hexdigest() for i in range(start, start + n)]


def append_faces(
    spark: SparkSession,
    lake: str,
    vectors: np.ndarray,
    ids: list[str],
    *,
    pack_id: str = PACK_ID,
    pack_sha256: str = PACK_SHA,
    image_ids: list[str] | None = None,
) -> None:
    """Append one faces row per vector (one commit), through Parquet so 100k rows take seconds, not minutes."""
    n, dim = vectors.shape
    image_ids = image_ids or [hashlib.sha256(f"img-{f}".encode()).hexdigest() for f in ids]
    table = pa.table(
        {
            "face_id": ids,
            "image_id": image_ids,
            "face_index": pa.array(np.zeros(n, dtype=np.int32)),
            "bbox": pa.array([[1.0, 2.0, 30.0, 40.0]] * n, type=pa.list_(pa.float32())),
            "landmarks": pa.array([[5.0] * 10] * n, type=pa.list_(pa.float32())),
            "det_score": pa.array(np.full(n, 0.9, dtype=np.float32)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim).cast(
                pa.list_(pa.float32())
            ),
            "embedding_dim": pa.array(np.full(n, dim, dtype=np.int32)),
            "pack_id": [pack_id] * n,
            "pack_sha256": [pack_sha256] * n,
            "jurisdiction_tags": pa.array([[]] * n, type=pa.list_(pa.string())),
            "embedded_at": pa.array(
                [datetime(2026, 12, 1, tzinfo=UTC)] * n, type=pa.timestamp("us", tz="UTC")
            ),
            "run_id": ["test"] * n,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "faces.parquet")
        pq.write_table(table, path)
        frame = conform(spark.read.parquet(path), "faces")
        frame.write.format("delta").mode("append").save(ensure_table(spark, lake, "faces"))


def delete_faces(spark: SparkSession, lake: str, ids: list[str]) -> None:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    DeltaTable.forPath(spark, ensure_table(spark, lake, "faces")).delete(F.col("face_id").isin(ids))
