"""The lake API for jobs and notebooks: tables at a version or time, run history, diffs, guarded restore."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig, load_config
from jobs.core.runs import RunContext
from jobs.lake.fs import hadoop_path
from jobs.lake.schemas import table_names, table_spec
from jobs.lake.tables import commit_metadata, forget_checked_schema, table_uri

log = logging.getLogger("facelake.lake")

CHANGE_TYPE = "_change_type"
"""Column naming the kind of change in :meth:`Lake.diff` (Delta's Change Data Feed vocabulary)."""


class LakeError(ValueError):
    """An operator-facing error about the lake: one clear sentence, no Spark stack trace."""


class PurgedVersionError(LakeError):
    """A table version whose data files are gone (purged by an erasure, or vacuumed)."""

    def __init__(
        self, message: str, table: str, version: int, erasure_id: str | None, first_readable: int | None
    ):
        super().__init__(message)
        self.table = table
        self.version = version
        self.erasure_id = erasure_id
        self.first_readable = first_readable


@dataclass(frozen=True)
class ErasureRecord:
    """What the audit says an executed erasure did to one table (ids and versions only)."""

    erasure_id: str
    ticket_ref: str | None
    finished_at: datetime | None
    table_version: int
    """The table's version once the erasure's deletes were committed."""
    first_readable: int
    """The oldest version of the table still readable after the erasure purged its history."""


class Lake:
    """A facelake lake root seen from Spark: every table by name, at any readable version.

    ``Lake.open()`` is the notebook entry point; jobs pass their own session. Nothing here reads
    image bytes or embeddings into the driver except what the caller asks for.
    """

    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark = spark
        self.root = root.rstrip("/")

    @classmethod
    def open(
        cls, root: str | None = None, spark: SparkSession | None = None, config: FacelakeConfig | None = None
    ) -> Lake:
        """Open the lake at ``root`` (default: the configured lake), starting local Spark if needed."""
        if config is None:
            config = load_config(overrides={"lake": root})
        elif root is not None:
            config = config.replace(lake=root)
        if spark is None:
            from jobs.lake.session import get_spark

            spark = get_spark(config, "facelake-lake")
        return cls(spark, config.lake)

    # -- naming -------------------------------------------------------------------------------

    def uri(self, name: str) -> str:
        """Where table ``name`` lives (raises KeyError for a name facelake does not own)."""
        return table_uri(self.root, name)

    def exists(self, name: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, self.uri(name)))

    def tables(self) -> list[str]:
        """The facelake tables that exist in this lake."""
        return [name for name in table_names() if self.exists(name)]

    def _delta(self, name: str):  # -> DeltaTable
        from delta.tables import DeltaTable
        from pyspark.errors import AnalysisException

        uri = self.uri(name)
        try:
            return DeltaTable.forPath(self.spark, uri)
        except AnalysisException:
            raise LakeError(
                f"table {name!r} does not exist in lake {self.root} (run `facelake init`)"
            ) from None

    # -- versions -----------------------------------------------------------------------------

    def latest_version(self, name: str) -> int:
        return int(self._delta(name).history(1).select("version").first()[0])

    def version_at(self, name: str, timestamp: datetime | str) -> int:
        """The version that was current at ``timestamp`` (the last commit at or before it).

        Strings and datetimes without a zone are read in the Spark session time zone, as Delta's
        ``timestampAsOf`` reads strings and as ``history().toPandas()`` shows commit times.
        """
        history = self._delta(name).history().select("version", "timestamp")
        if isinstance(timestamp, datetime) and timestamp.tzinfo is None:
            timestamp = timestamp.isoformat(sep=" ")  # PySpark would read a naive datetime as OS-local time
        ts = F.lit(timestamp).cast("timestamp")
        row = history.where(F.col("timestamp") <= ts).agg(F.max("version")).first()
        if row[0] is None:
            first = history.orderBy("version").select("timestamp").first()
            raise LakeError(
                f"table {name!r} did not exist yet at {timestamp}: its oldest recorded version was committed "
                f"at {first[0] if first else 'an unknown time'}"
            )
        return int(row[0])

    def table(
        self, name: str, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        """Table ``name`` at its latest version, at ``version``, or as it was at ``timestamp``.

        Time travel is checked before it is attempted: a version whose files an erasure purged
        raises :class:`PurgedVersionError` naming the erasure and the first readable version.
        """
        if version is not None and timestamp is not None:
            raise LakeError("give a version or a timestamp, not both")
        if timestamp is not None:
            version = self.version_at(name, timestamp)
        if version is None:
            self._delta(name)  # a clear error for a missing table
            return self.spark.read.format("delta").load(self.uri(name))
        self.check_readable(name, version)
        return self.spark.read.format("delta").option("versionAsOf", version).load(self.uri(name))

    def _files(self, name: str, version: int | None) -> set[str]:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        try:
            return set(reader.load(self.uri(name)).inputFiles())
        except Exception as exc:  # Delta reports an expired or unknown version as an analysis error
            raise LakeError(
                f"version {version} of table {name!r} cannot be reconstructed from the Delta log "
                f"(versions that exist: {self._version_range(name)}): {first_line(exc)}"
            ) from None

    def _version_range(self, name: str) -> str:
        row = self._delta(name).history().agg(F.min("version"), F.max("version")).first()
        return f"{row[0]}..{row[1]}"

    def missing_files(self, name: str, version: int) -> list[str]:
        """Data files that ``version`` needs and storage no longer has.

        Only files removed since ``version`` are checked: files of the latest snapshot are live.
        """
        latest = self.latest_version(name)
        if version > latest or version < 0:
            raise LakeError(
                f"table {name!r} has no version {version}: its versions are {self._version_range(name)}"
            )
        if version == latest:
            return []
        return self._missing(name, version, self._files(name, None))

    def _missing(self, name: str, version: int, live: set[str]) -> list[str]:
        """Files of ``version`` that are neither in the live snapshot (``live``) nor in storage."""
        missing = []
        for uri in sorted(self._files(name, version) - live):
            fs, path = hadoop_path(self.spark, uri)
            if not fs.exists(path):
                missing.append(uri)
        return missing

    def erasures(self, name: str) -> list[ErasureRecord]:
        """Completed, executed erasures that committed a version of table ``name``, oldest first."""
        if name == "erasure_audit" or not self.exists("erasure_audit"):
            return []
        rows = (
            self.spark.read.format("delta")
            .load(self.uri("erasure_audit"))
            .where((F.col("mode") == "execute") & (F.col("status") == "completed"))
            .select(
                "erasure_id",
                "ticket_ref",
                "finished_at",
                F.element_at("table_versions", F.lit(name)).alias("table_version"),
                F.element_at("first_readable_versions", F.lit(name)).alias("first_readable"),
            )
            .where(F.col("table_version").isNotNull())
            .collect()
        )
        records = [
            ErasureRecord(
                r["erasure_id"],
                r["ticket_ref"],
                r["finished_at"],
                int(r["table_version"]),
                int(r["first_readable"] if r["first_readable"] is not None else r["table_version"]),
            )
            for r in rows
        ]
        return sorted(records, key=lambda e: e.table_version)

    def check_readable(self, name: str, version: int) -> None:
        """Raise a clear error unless every data file of ``version`` is still in storage."""
        missing = self.missing_files(name, version)
        if not missing:
            return
        # The erasure that purged them is the first one that committed after this version.
        later = [e for e in self.erasures(name) if e.table_version > version]
        if later:
            erasure = later[0]
            first = max(erasure.first_readable, version + 1)
            ticket = f" (ticket {erasure.ticket_ref})" if erasure.ticket_ref else ""
            raise PurgedVersionError(
                f"version {version} of table {name!r} is no longer readable: erasure {erasure.erasure_id}{ticket} "
                f"purged its data files; the first readable version is {first}",
                name,
                version,
                erasure.erasure_id,
                first,
            )
        first = self.first_readable_version(name, after=version)
        raise PurgedVersionError(
            f"version {version} of table {name!r} is no longer readable: {len(missing)} of its data files were "
            f"removed (VACUUM beyond the retention window; no erasure recorded it); the first readable version "
            f"is {first}",
            name,
            version,
            None,
            first,
        )

    def first_readable_version(self, name: str, after: int = -1) -> int:
        """The oldest version newer than ``after`` whose files are all in storage."""
        latest = self.latest_version(name)
        live = self._files(name, None)
        for version in range(after + 1, latest):
            if not self._missing(name, version, live):
                return version
        return latest

    # -- history ------------------------------------------------------------------------------

    def history(self, name: str, limit: int | None = None) -> DataFrame:
        """One row per version, newest first: when, what operation, rows changed, and which run made it.

        ``job``, ``run_id``, ``dag_run_id`` and ``inputs`` (JSON: drop id, Delta versions read, …)
        come from the commit's userMetadata, which every facelake job writes.
        """
        metric = lambda key: F.element_at("operationMetrics", F.lit(key)).cast("long")  # noqa: E731
        meta = F.col("userMetadata")
        return (
            self._delta(name)
            .history(limit)
            .select(
                "version",
                "timestamp",
                "operation",
                F.coalesce(
                    metric("numTargetRowsInserted"),
                    F.when(
                        F.col("operation").isin("WRITE", "CREATE TABLE AS SELECT", "STREAMING UPDATE"),
                        metric("numOutputRows"),
                    ),
                    F.lit(0),
                ).alias("rows_inserted"),
                F.coalesce(metric("numTargetRowsUpdated"), metric("numUpdatedRows"), F.lit(0)).alias(
                    "rows_updated"
                ),
                F.coalesce(metric("numTargetRowsDeleted"), metric("numDeletedRows"), F.lit(0)).alias(
                    "rows_deleted"
                ),
                F.get_json_object(meta, "$.job").alias("job"),
                F.get_json_object(meta, "$.run_id").alias("run_id"),
                F.get_json_object(meta, "$.dag_run_id").alias("dag_run_id"),
                F.get_json_object(meta, "$.inputs").alias("inputs"),
                F.col("readVersion").alias("read_version"),
            )
            .orderBy(F.col("version").desc())
        )

    def last_version_by(self, name: str, job: str) -> int | None:
        """The newest version of ``name`` committed by a run of ``job`` (None if it never wrote one)."""
        row = self.history(name).where(F.col("job") == job).agg(F.max("version")).first()
        return None if row[0] is None else int(row[0])

    # -- diff ---------------------------------------------------------------------------------

    def change_data_feed(self, name: str) -> bool:
        properties = self._delta(name).detail().select("properties").first()[0] or {}
        return str(properties.get("delta.enableChangeDataFeed", "false")).lower() == "true"

    def diff(
        self, name: str, from_version: int, to_version: int | None = None, method: str = "auto"
    ) -> DataFrame:
        """The net change of table ``name`` between two versions, one row per changed key.

        Rows carry the table's columns plus ``_change_type``: ``insert`` (absent at
        ``from_version``), ``delete`` (absent at ``to_version``), or an ``update_preimage`` /
        ``update_postimage`` pair. A row changed and changed back counts as unchanged.
        ``method``: ``cdf`` reads only the Change Data Feed of the versions in between (tables
        with CDF on), ``key`` compares the two snapshots by key, ``auto`` picks ``cdf`` when it can.
        """
        if to_version is None:
            to_version = self.latest_version(name)
        if from_version > to_version:
            raise LakeError(f"diff needs from_version <= to_version, got {from_version} > {to_version}")
        if method == "auto":
            method = "cdf" if self.change_data_feed(name) else "key"
        spec = table_spec(name)
        key, columns = list(spec.key), spec.columns
        if method == "key":
            before = self.table(name, version=from_version)
            after = self.table(name, version=to_version)
        elif method == "cdf":
            self.check_readable(name, to_version)
            if from_version == to_version:
                return (
                    self.table(name, version=to_version)
                    .limit(0)
                    .withColumn(CHANGE_TYPE, F.lit(None).cast("string"))
                )
            changes = (
                self.spark.read.format("delta")
                .option("readChangeFeed", "true")
                .option("startingVersion", from_version + 1)
                .option("endingVersion", to_version)
                .load(self.uri(name))
            )
            per_key = Window.partitionBy(*key)
            changes = changes.withColumn("_first", F.min("_commit_version").over(per_key)).withColumn(
                "_last", F.max("_commit_version").over(per_key)
            )
            # The state before the range is what the key's first change removed; the state after
            # it is what its last change left. A delete and insert in one commit (RESTORE, file
            # rewrites) cancel out below when the row is the same.
            before = changes.where(
                (F.col("_commit_version") == F.col("_first"))
                & F.col(CHANGE_TYPE).isin("delete", "update_preimage")
            ).select(*columns)
            after = changes.where(
                (F.col("_commit_version") == F.col("_last"))
                & F.col(CHANGE_TYPE).isin("insert", "update_postimage")
            ).select(*columns)
        else:
            raise LakeError(f"unknown diff method {method!r}: use auto, cdf or key")
        return _net_changes(before, after, key, columns)

    def diff_counts(
        self, name: str, from_version: int, to_version: int | None = None, method: str = "auto"
    ) -> dict[str, int]:
        """How many keys were inserted, updated and deleted between two versions."""
        counts = {"insert": 0, "update": 0, "delete": 0}
        rows = self.diff(name, from_version, to_version, method).groupBy(CHANGE_TYPE).count().collect()
        for change, n in rows:
            if change == "update_postimage":
                counts["update"] = n
            elif change in counts:
                counts[change] = n
        return counts

    # -- restore ------------------------------------------------------------------------------

    def restore(self, name: str, version: int, run: RunContext | None = None) -> int:
        """Restore table ``name`` to ``version`` as a new commit; returns the new version.

        Refuses versions whose files were purged, and any version older than an executed
        erasure's commit on the table: restoring past an erasure would undo it (for
        ``suppression``, it would let erased content be crawled back in).
        """
        self.check_readable(name, version)
        blocking = [e for e in self.erasures(name) if e.table_version > version]
        if blocking:
            erasure = blocking[-1]
            raise LakeError(
                f"refusing to restore table {name!r} to version {version}: erasure {erasure.erasure_id} committed "
                f"version {erasure.table_version} after it, and a restore would undo that erasure; restore to "
                f"version {erasure.table_version} or later"
            )
        latest = self.latest_version(name)
        if version == latest:
            return latest
        run = run or RunContext(job="restore")
        run.inputs.update({"table": name, "restore_to_version": version, "from_version": latest})
        with commit_metadata(self.spark, run):
            self._delta(name).restoreToVersion(version)
        forget_checked_schema(self.root, name)
        log.info("restored %s from version %d to %d (run %s)", name, latest, version, run.run_id)
        return self.latest_version(name)

    # -- SQL ----------------------------------------------------------------------------------

    def register_views(
        self,
        version: int | dict[str, int] | None = None,
        timestamp: datetime | str | None = None,
        names: list[str] | None = None,
    ) -> dict[str, int]:
        """Register each existing table as a temporary view of the same name; returns name -> version.

        ``version`` is one version for every table or a per-table dict (others stay latest);
        a table that has no such version is not registered, and is named in a warning.
        """
        registered: dict[str, int] = {}
        for name in names or self.tables():
            wanted = version.get(name) if isinstance(version, dict) else version
            try:
                if timestamp is not None:
                    wanted = self.version_at(name, timestamp)
                df = self.table(name, version=wanted)
            except LakeError as exc:
                log.warning("view %s not registered: %s", name, exc)
                continue
            df.createOrReplaceTempView(name)
            registered[name] = wanted if wanted is not None else self.latest_version(name)
        for name in set(table_names()) - set(registered):
            # A view left from an earlier call (or another lake) would answer with the wrong data.
            self.spark.catalog.dropTempView(name)
        return registered

    def sql(
        self, query: str, version: int | dict[str, int] | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        """Run Spark SQL with every facelake table registered as a view (at a version if given)."""
        self.register_views(version, timestamp)
        return self.spark.sql(query)


def _net_changes(before: DataFrame, after: DataFrame, key: list[str], columns: list[str]) -> DataFrame:
    """Compare a 'before' and an 'after' row set by key; keep only keys whose row differs."""
    # to_json compares every column type (maps and binaries included) null-safely.
    fingerprint = F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)
    b = before.select(*key, F.struct(*columns).alias("_before"), fingerprint.alias("_bf"))
    a = after.select(*key, F.struct(*columns).alias("_after"), fingerprint.alias("_af"))
    joined = b.join(a, key, "full_outer").where(~F.col("_bf").eqNullSafe(F.col("_af")))
    change = F.explode(
        F.filter(
            F.array(
                F.when(
                    F.col("_af").isNull(), F.struct(F.lit("delete").alias("t"), F.col("_before").alias("row"))
                ),
                F.when(
                    F.col("_bf").isNull(), F.struct(F.lit("insert").alias("t"), F.col("_after").alias("row"))
                ),
                F.when(
                    F.col("_bf").isNotNull() & F.col("_af").isNotNull(),
                    F.struct(F.lit("update_preimage").alias("t"), F.col("_before").alias("row")),
                ),
                F.when(
                    F.col("_bf").isNotNull() & F.col("_af").isNotNull(),
                    F.struct(F.lit("update_postimage").alias("t"), F.col("_after").alias("row")),
                ),
            ),
            lambda x: x.isNotNull(),
        )
    ).alias("_c")
    return joined.select(change).select(
        *[F.col(f"_c.row.{c}").alias(c) for c in columns], F.col("_c.t").alias(CHANGE_TYPE)
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Spark's run to pages), for one-line operator errors."""
    text = str(exc).strip().splitlines()
    return text[0][:400] if text else type(exc).__name__


def history_records(lake: Lake, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """:meth:`Lake.history` as plain dicts with ``inputs`` parsed (for scripts and JSON output)."""
    out = []
    for row in lake.history(name, limit).collect():
        record = row.asDict()
        record["inputs"] = json.loads(record["inputs"]) if record["inputs"] else None
        out.append(record)
    return out
