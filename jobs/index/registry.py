"""The ``index_builds`` Delta table: a build is current by one commit; pruning deletes old builds' files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.runs import RunContext, log
from jobs.index.store import BuildStore
from jobs.lake.tables import ensure_table, read_table, upsert_rows

TABLE = "index_builds"


class NoIndexBuildError(LookupError):
    """There is no published build to search or update (run `facelake index build`)."""


@dataclass(frozen=True)
class BuildRecord:
    """One registry row (the fields callers use; ``row`` has them all)."""

    build_id: str
    pack_id: str
    pack_sha256: str
    faces_version: int
    kind: str
    dim: int
    n_vectors: int
    n_shards: int
    manifest_sha256: str
    status: str
    row: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BuildRecord:
        names = ("build_id", "pack_id", "pack_sha256", "faces_version", "kind", "dim", "n_vectors")
        return cls(
            **{n: row[n] for n in names},
            n_shards=row["n_shards"],
            manifest_sha256=row["manifest_sha256"],
            status=row["status"],
            row=row,
        )


def builds(spark: SparkSession, lake: str, pack_id: str | None = None) -> list[BuildRecord]:
    """Every registered build (of one pack), newest faces version first, then newest published."""
    ensure_table(spark, lake, TABLE)
    rows = read_table(spark, lake, TABLE)
    if pack_id:
        rows = rows.where(F.col("pack_id") == pack_id)
    # Newest faces version first: an erasure's clean copy of an older build keeps that build's place.
    ordered = rows.orderBy(
        F.col("faces_version").desc(), F.col("published_at").desc(), F.col("build_id").desc()
    )
    return [BuildRecord.from_row(r.asDict()) for r in ordered.collect()]


def find_build(spark: SparkSession, lake: str, build_id: str) -> BuildRecord | None:
    return next((b for b in builds(spark, lake) if b.build_id == build_id), None)


def current_build(spark: SparkSession, lake: str, pack_id: str | None = None) -> BuildRecord:
    """The published build of the newest faces version (of ``pack_id``; with None, of any pack)."""
    for build in builds(spark, lake, pack_id):
        if build.status == "published":
            return build
    which = f" for pack {pack_id}" if pack_id else ""
    raise NoIndexBuildError(f"no published index build{which} in this lake: run `facelake index build` first")


def publish(
    spark: SparkSession, lake: str, row: dict[str, Any], run: RunContext, gate: Callable[..., object]
) -> int:
    """Make a build current: gate its registry row, then the one Delta commit that adds it.

    Everything the row points at must already be written and verified; until this commit the build
    is invisible, so a build killed at any earlier point leaves the previous one current.
    """
    frame = spark.createDataFrame([row], schema=_schema())
    gate(TABLE, frame)
    return write_rows(spark, lake, frame, run)


def write_rows(
    spark: SparkSession, lake: str, rows: DataFrame | list[dict[str, Any]], run: RunContext
) -> int:
    """Upsert whole registry rows in one commit (a row rewritten under its id replaces the old one)."""
    frame = rows if isinstance(rows, DataFrame) else spark.createDataFrame(rows, schema=_schema())
    columns = tuple(f.name for f in _schema().fields if f.name != "build_id")
    return upsert_rows(spark, lake, TABLE, frame, columns, run, replace_row=True)


def _schema():
    from jobs.lake.schemas import table_spec

    return table_spec(TABLE).schema


def prune(
    spark: SparkSession,
    lake: str,
    run: RunContext,
    *,
    keep: int,
    orphan_grace_seconds: float = 3600.0,
    store: BuildStore | None = None,
) -> dict[str, int]:
    """Keep the ``keep`` newest published builds per pack; delete older builds' files, then mark them pruned.

    Files go first: a prune killed between the two steps leaves a row still marked published whose
    files are gone, which is never current (newer builds exist) and is finished by the next prune.
    Folders with no registry row (builds killed before publishing) are deleted once nothing in them
    changed for ``orphan_grace_seconds``, so a build still writing is never touched.
    """
    if keep < 1:
        raise ValueError("index_keep_builds must be >= 1: the current build is never pruned")
    store = store or BuildStore(lake)
    registered = builds(spark, lake)
    doomed: list[BuildRecord] = []
    by_pack: dict[str, int] = {}
    for build in registered:
        if build.status != "published":
            continue
        by_pack[build.pack_id] = by_pack.get(build.pack_id, 0) + 1
        if by_pack[build.pack_id] > keep:
            doomed.append(build)
    for build in doomed:
        store.delete_dir(build.build_id)
    now = datetime.now(UTC)
    if doomed:
        marked = [{**b.row, "status": "pruned", "pruned_at": now} for b in doomed]
        upsert_rows(
            spark, lake, TABLE, spark.createDataFrame(marked, schema=_schema()), ("status", "pruned_at"), run
        )
    known = {b.build_id for b in registered}
    orphans = [
        name
        for name, mtime in store.build_dirs().items()
        if name not in known and time.time() - mtime >= orphan_grace_seconds
    ]
    for name in orphans:
        store.delete_dir(name)
    for build in registered:
        # A pruned build's folder can come back only from a prune killed midway: finish it.
        if build.status == "pruned" and store.exists(build.build_id):
            store.delete_dir(build.build_id)
    if doomed or orphans:
        log.info(
            "index prune: %d old build(s) and %d unpublished folder(s) deleted", len(doomed), len(orphans)
        )
    return {"builds_pruned": len(doomed), "orphans_deleted": len(orphans)}
