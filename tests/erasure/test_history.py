"""Erasing rows from a Delta table's whole history: every version reads what it read before, minus them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyspark.sql import SparkSession

from jobs.erasure.history import (
    REDACTED,
    RowRule,
    apply_rule,
    clear_delta_cache,
    dictionary_columns,
    files_by_version,
    redact_text,
    rewrite_history,
    surviving_rows,
)

ERASED = frozenset({"id20", "id40", "id41"})
RULE = RowRule(drop=((("id",), ERASED),))


def test_dictionary_encoding_is_kept_only_where_values_repeat() -> None:
    """Rewritten files must not outgrow the files they replace: distinct bytes, ids and embedding floats
    are written plain; repeated strings (also inside lists and structs) keep their dictionary."""
    import io

    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 400
    model_file = pa.struct([("role", pa.string()), ("sha256", pa.string())])
    table = pa.table(
        {
            "image_id": [f"{i:064x}" for i in range(n)],
            "content": [rng.bytes(64) for _ in range(n)],
            "pack_id": ["buffalo_s"] * n,
            "embedding": pa.array(
                list(rng.standard_normal((n, 64), dtype=np.float32)), pa.list_(pa.float32())
            ),
            "tags": [["uk", "gb"] if i % 2 else ["fr"] for i in range(n)],
            "model_files": pa.array([[{"role": "det", "sha256": "ab" * 32}]] * n, pa.list_(model_file)),
        }
    )
    assert dictionary_columns(table) == [
        "pack_id",
        "tags.list.element",
        "model_files.list.element.role",
        "model_files.list.element.sha256",
    ]

    def size(**options: object) -> int:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy", **options)
        return sink.tell()

    assert size(use_dictionary=dictionary_columns(table)) < size()  # pyarrow's default: every column


def test_apply_rule_drops_rows_and_scrubs_lists() -> None:
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "drop": ["d1", "d1", "d2"],
            "line": [1, 2, 1],
            "examples": [["x", "gone"], None, ["gone"]],
        }
    )
    rule = RowRule(
        drop=((("id",), frozenset({"a"})), (("drop", "line"), frozenset({"d2\x1f1"}))),
        scrub=(("examples", frozenset({"gone"})),),
    )
    kept, erased, scrubbed = apply_rule(table, rule)
    assert kept.column("id").to_pylist() == ["b"] and erased == 2 and scrubbed == 0
    kept, erased, scrubbed = apply_rule(table, RowRule(scrub=(("examples", frozenset({"gone"})),)))
    assert kept.column("examples").to_pylist() == [["x"], None, []] and erased == 0 and scrubbed == 2


def test_redact_text_replaces_whole_tokens_only() -> None:
    token = "ab" * 32
    text = f'{{"predicate": "image_id = \'{token}\'", "other": "{"cd" * 32}", "longer": "{token}ff"}}'
    out, count = redact_text(text, frozenset({token}))
    assert count == 1 and token not in out.replace(f"{token}ff", "") and REDACTED in out and "cd" * 32 in out


def _table(spark: SparkSession, path: Path) -> dict[int, list[str]]:
    spark.sql(
        f"CREATE TABLE delta.`{path}` (id string, v int, ts timestamp, tags array<string>, m map<string,long>) "
        "USING delta TBLPROPERTIES (delta.enableChangeDataFeed = true, delta.checkpointInterval = 3)"
    )
    for i in range(5):
        spark.sql(
            f"SELECT concat('id{i}', cast(id AS string)) AS id, cast(id AS int) AS v, current_timestamp() AS ts, "
            "array('a') AS tags, map('k', id) AS m FROM range(3)"
        ).coalesce(1).write.format("delta").mode("append").save(str(path))
    spark.sql(f"DELETE FROM delta.`{path}` WHERE v = 1")  # a version with remove actions and CDF files
    return {
        v: sorted(r.id for r in spark.read.format("delta").option("versionAsOf", v).load(str(path)).collect())
        for v in range(7)
    }


def test_every_version_reads_its_rows_minus_the_erased_and_a_rerun_changes_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = tmp_path / "t"
    before = _table(spark, path)
    log = path / "_delta_log"
    mtimes = {p.name: p.stat().st_mtime for p in log.glob("*.json")}
    expected_survivors = surviving_rows(str(path), RULE)
    assert sorted(files_by_version(str(path))) == list(range(7))

    result = rewrite_history(str(path), RULE, "e" * 64, tokens=ERASED)
    clear_delta_cache(spark)

    assert result.files_rewritten > 0 and result.rows_erased >= 3 and result.log_files_rewritten > 0
    for version, ids in before.items():
        now = spark.read.format("delta").option("versionAsOf", version).load(str(path))
        assert sorted(r.id for r in now.collect()) == [i for i in ids if i not in ERASED], version
    changes = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0)
    assert changes.load(str(path)).where("id IN ('id20', 'id40', 'id41')").count() == 0
    assert surviving_rows(str(path), RULE) == expected_survivors  # history survival 1.00
    # Commit files keep their modification times: timestamp time travel is unchanged.
    after = {p.name: p.stat().st_mtime for p in log.glob("*.json")}
    assert after.keys() == mtimes.keys() and all(abs(after[n] - t) < 1e-3 for n, t in mtimes.items())
    assert not [
        p for p in log.glob("*.crc") if not p.name.startswith(".")
    ]  # Delta's (Hadoop's sidecars stay)
    for file in path.rglob("*"):
        if file.is_file() and not file.name.endswith(".crc"):
            data = file.read_bytes()
            assert b"id40" not in data and b"id20" not in data, file

    again = rewrite_history(str(path), RULE, "e" * 64, tokens=ERASED)
    assert again.files_deleted == 0 and again.log_files_rewritten == 0

    spark.createDataFrame(
        [("id99", 1, None, None, None)], spark.read.format("delta").load(str(path)).schema
    ).write.format("delta").mode("append").save(str(path))
    assert spark.read.format("delta").load(str(path)).count() == 9  # 15 - 5 deleted (v = 1) - 2 erased + 1


def test_an_orphan_file_holding_erased_rows_is_deleted(spark: SparkSession, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "t"
    _table(spark, path)
    holder = next(
        p for p in sorted(path.glob("part-*.parquet")) if "id20" in pq.read_table(p).column("id").to_pylist()
    )
    stale = path / "part-stale-copy.snappy.parquet"
    stale.write_bytes(holder.read_bytes())  # no version names it
    clean = path / "part-clean-copy.snappy.parquet"
    clean.write_bytes(
        next(
            p
            for p in sorted(path.glob("part-*.parquet"))
            if not set(pq.read_table(p).column("id").to_pylist()) & ERASED
        ).read_bytes()
    )
    result = rewrite_history(str(path), RULE, "e" * 64)
    assert not stale.exists() and clean.exists()  # only files holding erased rows are touched
    assert any(r.path == stale.name and r.new_path is None and not r.referenced for r in result.rewrites)
