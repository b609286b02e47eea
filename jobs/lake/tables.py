"""Delta side effects shared by every job: where tables live, creating them, conforming and merging rows."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.ids import SEPARATOR
from jobs.core.runs import RunContext
from jobs.lake.schemas import TableSpec, table_names, table_spec


def row_id_col(*parts: str | Column) -> Column:
    """Spark twin of ``jobs.core.ids.row_id`` (tested to agree): sha256 of the unit-separated parts."""
    cols = [F.col(p) if isinstance(p, str) else p for p in parts]
    return F.sha2(F.concat_ws(SEPARATOR, *[F.coalesce(c.cast("string"), F.lit("")) for c in cols]), 256)


def url_sha256(url: Column) -> Column:
    """Spark twin of ``jobs.core.ids.url_digest`` (tested to agree)."""
    return F.sha2(F.lower(F.regexp_replace(F.trim(url), "#.*$", "")), 256)


def host_sha256(host: Column) -> Column:
    """Spark twin of ``jobs.core.ids.host_digest`` (tested to agree) for hosts already normalised, as
    ``source_host``, ``page_host`` and their ``host_suffixes`` are (case is folded again, nothing else)."""
    return F.sha2(F.lower(host), 256)


def host_suffixes(host: Column) -> Column:
    """Every whole-label suffix of a normalised host: ``a.b.co.uk`` -> [a.b.co.uk, b.co.uk, co.uk, uk].

    Spark twin of ``jobs.core.hosts.host_under``: a host is under a suffix exactly when the suffix is
    in this list, so "under a suppressed host" is an equi-join, never a join on ``endswith``.
    """
    labels = F.split(host, r"\.")
    return F.transform(
        F.sequence(F.lit(1), F.size(labels)),
        lambda i: F.array_join(F.slice(labels, i, F.size(labels) - i + 1), "."),
    )


def table_uri(lake: str, name: str) -> str:
    """URI of table ``name`` under the lake root (a local path or an object-store URI)."""
    table_spec(name)  # fail early on unknown names
    if lake.startswith("file:///"):
        # Hadoop's own spelling: Delta compares locations as strings and calls file:/// and file:/ two places.
        lake = "file:/" + lake[len("file:///") :]
    return lake.rstrip("/") + "/tables/" + name


# Tables whose schema this process has already brought up to its spec: a job calls ensure_table for the
# same table many times, and each check loads the table's snapshot (~0.15 s). Schemas only ever grow
# here, from the same spec, so a table once checked stays current for the life of the process.
_SCHEMA_CHECKED: set[str] = set()


def ensure_table(spark: SparkSession, lake: str, name: str) -> str:
    """Create table ``name`` with its schema and properties if absent; returns its URI."""
    from delta.tables import DeltaTable

    spec = table_spec(name)
    uri = table_uri(lake, name)
    if DeltaTable.isDeltaTable(spark, uri):
        if uri not in _SCHEMA_CHECKED:
            _add_missing_columns(spark, uri, spec)
            _SCHEMA_CHECKED.add(uri)
        return uri
    builder = (
        DeltaTable.createIfNotExists(spark).location(uri).addColumns(spec.schema).comment(spec.description)
    )
    for key, value in spec.properties.items():
        builder = builder.property(key, value)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    builder.execute()
    return uri


def forget_checked_schema(lake: str, name: str) -> None:
    """The next ``ensure_table`` checks table ``name``'s schema again (after a RESTORE, which may bring
    back a schema from before columns were added)."""
    _SCHEMA_CHECKED.discard(table_uri(lake, name))


def _add_missing_columns(spark: SparkSession, uri: str, spec: TableSpec) -> None:
    """Columns added to a schema file since the table was created (nullable ones only) join the table."""
    present = set(spark.read.format("delta").load(uri).columns)
    missing = [f for f in spec.schema.fields if f.name not in present]
    for field in missing:
        if not field.nullable:
            raise ValueError(
                f"{spec.name}: new column {field.name} must be nullable to join an existing table"
            )
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        quoted = uri.replace("`", "``")
        spark.sql(f"ALTER TABLE delta.`{quoted}` ADD COLUMNS ({columns})")


def init_lake(spark: SparkSession, lake: str, names: Iterable[str] | None = None) -> dict[str, str]:
    """Create every facelake table that does not exist yet (idempotent)."""
    return {name: ensure_table(spark, lake, name) for name in (names or table_names())}


def conform(df: DataFrame, name: str) -> DataFrame:
    """Select and cast ``df``'s columns into table ``name``'s exact column order and types."""
    spec = table_spec(name)
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ValueError(f"rows for {name} lack columns {missing}")
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema.fields])


def read_table(spark: SparkSession, lake: str, name: str, version: int | None = None) -> DataFrame:
    """Table ``name`` at its latest version or at ``version`` (unguarded: see jobs.lake.api for checks)."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(table_uri(lake, name))


def latest_version(spark: SparkSession, lake: str, name: str) -> int:
    """The newest version of table ``name`` (which must exist)."""
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, table_uri(lake, name)).history(1).select("version").first()[0])


def pin_read_versions(
    spark: SparkSession, lake: str, names: Iterable[str], run: RunContext
) -> dict[str, int]:
    """The current version of each table a run reads, recorded in the run's commit metadata.

    Reading at these versions gives the run one consistent snapshot, and `history` can say
    which versions of its inputs a commit was computed from.
    """
    versions = {}
    for name in names:
        ensure_table(spark, lake, name)
        versions[name] = latest_version(spark, lake, name)
    run.inputs.setdefault("read_versions", {}).update(versions)
    return versions


def only_new(spark: SparkSession, lake: str, name: str, rows: DataFrame) -> DataFrame:
    """The rows whose key is not in table ``name`` yet."""
    from delta.tables import DeltaTable

    key = list(table_spec(name).key)
    existing = DeltaTable.forPath(spark, ensure_table(spark, lake, name)).toDF().select(*key)
    return rows.join(existing, key, "left_anti")


def merge_new_rows(
    spark: SparkSession, lake: str, name: str, rows: DataFrame, run: RunContext, *, already_new: bool = False
) -> int:
    """Insert the rows whose key is not in the table yet (MERGE), so reruns change nothing.

    ``already_new`` says ``rows`` came from ``only_new`` (as a gated publish does): the MERGE still
    inserts only missing keys, but no second anti-join is run just to decide whether to commit.
    Returns the number of rows inserted, read from the commit's operation metrics.
    """
    from delta.tables import DeltaTable

    spec = table_spec(name)
    uri = ensure_table(spark, lake, name)
    rows = conform(rows, name).dropDuplicates(list(spec.key))
    # Skip the MERGE when nothing is new, so a rerun does not even add an empty version.
    pending = (
        rows
        if already_new
        else rows.join(DeltaTable.forPath(spark, uri).toDF().select(*spec.key), list(spec.key), "left_anti")
    )
    if pending.isEmpty():
        return 0
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)
    with commit_metadata(spark, run):
        (
            DeltaTable.forPath(spark, uri)
            .alias("t")
            .merge(rows.alias("s"), condition)
            .whenNotMatchedInsertAll()
            .execute()
        )
    return last_commit_inserted(spark, uri, run)


def last_commit_inserted(spark: SparkSession, uri: str, run: RunContext) -> int:
    """Rows inserted by this run's latest commit on the table (0 when it made none)."""
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, uri).history(1).select("userMetadata", "operationMetrics").first()
    if last is None or last["userMetadata"] != run.commit_metadata():
        return 0
    metrics = last["operationMetrics"] or {}
    return int(metrics.get("numTargetRowsInserted", metrics.get("numOutputRows", 0)))


class commit_metadata:
    """Context manager: Delta commits made inside carry the run's identity as userMetadata."""

    KEY = "spark.databricks.delta.commitInfo.userMetadata"

    def __init__(self, spark: SparkSession, run: RunContext) -> None:
        self.spark = spark
        self.run = run

    def __enter__(self) -> None:
        self.spark.conf.set(self.KEY, self.run.commit_metadata())

    def __exit__(self, *exc: object) -> None:
        self.spark.conf.unset(self.KEY)


def upsert_rows(
    spark: SparkSession,
    lake: str,
    name: str,
    rows: DataFrame,
    update_columns: tuple[str, ...],
    run: RunContext,
    *,
    replace_row: bool = False,
) -> int:
    """MERGE: insert rows with new keys, update ``update_columns`` of rows whose values changed.

    With ``replace_row`` a row whose ``update_columns`` changed is replaced whole (e.g. a retried
    failure gets its new run id and time too). Makes no commit when nothing would change (reruns
    leave the table's version alone). Returns inserted + updated row counts.
    """
    from delta.tables import DeltaTable

    spec = table_spec(name)
    uri = ensure_table(spark, lake, name)
    rows = conform(rows, name).dropDuplicates(list(spec.key))
    target = (
        DeltaTable.forPath(spark, uri)
        .toDF()
        .select(
            *spec.key, F.lit(True).alias("_t_present"), *[F.col(c).alias(f"_t_{c}") for c in update_columns]
        )
    )
    differs = " OR ".join(f"NOT (`{c}` <=> `_t_{c}`)" for c in update_columns)
    pending = rows.join(target, list(spec.key), "left").where(F.col("_t_present").isNull() | F.expr(differs))
    if pending.isEmpty():
        return 0
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in update_columns)
    assigned = spec.columns if replace_row else list(update_columns)
    with commit_metadata(spark, run):
        (
            DeltaTable.forPath(spark, uri)
            .alias("t")
            .merge(rows.alias("s"), condition)
            .whenMatchedUpdate(condition=changed, set={c: f"s.`{c}`" for c in assigned})
            .whenNotMatchedInsertAll()
            .execute()
        )
    last = DeltaTable.forPath(spark, uri).history(1).select("operationMetrics").first()
    metrics = (last["operationMetrics"] or {}) if last else {}
    return int(metrics.get("numTargetRowsInserted", 0)) + int(metrics.get("numTargetRowsUpdated", 0))
