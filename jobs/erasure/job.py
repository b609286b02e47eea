"""``facelake erase``: plan, suppress, delete, purge builds and history, clean landing files, verify, audit.

Steps of an executed request, each idempotent so a rerun after a failure at any point finishes it:

1. plan — resolve the selector to images, then to every row of every table that holds them (ids,
   hashes and counts, stored under ``<lake>/_erasure/<erasure_id>/plan.json`` until the run completes);
2. suppress — add the content, pHash, URL and host hashes to ``suppression`` (ingest and embed check it
   just before they publish), then fence every table with a metadata commit, so a job that read a
   table before the erasure cannot commit to it afterwards (Delta fails it as a concurrent update);
3. delete — one MERGE per table deletes the rows at the current version (keys come from a DataFrame,
   so no id appears in Delta's operation parameters);
4. history — every data and change-data file of every version is rewritten without the erased rows
   (``jobs.erasure.history``), Data Docs redacted;
5. landing — erased image files deleted and the manifest lines naming them blanked in drops still present;
6. index — every retained FAISS build holding an erased face is replaced by a clean copy;
7. settle — rows a racing job committed meanwhile are erased the same way;
8. verify — ``jobs.erasure.verify`` scans every file, build, landing file and version independently;
9. audit — the ``erasure_audit`` row and the HTML report: ids, hashes and counts only.

The erasure DAG runs them grouped as plan, erase (2-3), purge (4-5), index (6-7), verify, report — one
call each with ``--until``; a call skips the steps its stored plan records as done.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.ids import SEPARATOR, host_digest, row_id
from jobs.core.runs import RunContext, log, start_run
from jobs.erasure.history import (
    HistoryRewrite,
    RowRule,
    TableFolder,
    clear_delta_cache,
    files_by_version,
    redact_text,
    rewrite_history,
)
from jobs.erasure.request import ErasureRequest, ErasureRequestError, build_request
from jobs.erasure.select import Selection, select
from jobs.lake.tables import (
    commit_metadata,
    ensure_table,
    host_suffixes,
    latest_version,
    read_table,
    table_uri,
    url_sha256,
)

ERASURE_DIR = "_erasure"
STEPS = ("plan", "suppress", "delete", "history", "landing", "index", "settle", "verify", "audit")
# The coarser steps an operator sees (the erasure DAG's tasks, ``--until``): each groups internal steps.
DAG_STEPS = ("plan", "erase", "purge", "index", "verify", "report")
DAG_STEP_OF = {
    "plan": "plan",
    "suppress": "erase",
    "delete": "erase",
    "history": "purge",
    "landing": "purge",
    "index": "index",
    "settle": "index",
    "verify": "verify",
    "audit": "report",
}
IMAGE_TABLES = ("images", "image_sources", "faces", "face_status")
ROW_TABLES = (*IMAGE_TABLES, "image_links", "crawl_manifest", "quarantine")
SAMPLE = 5


class ErasureStepFailed(RuntimeError):
    """Raised on purpose by tests (``fail_after``) to prove a rerun finishes an interrupted erasure."""


@dataclass
class ErasurePlan:
    """Everything an execute run erases, by id and hash (never URLs, bytes or embeddings)."""

    erasure_id: str
    selector_kind: str
    selector_digest: str
    image_ids: list[str]
    subject: list[dict[str, Any]]
    expansion: list[dict[str, Any]]
    face_ids: list[str]
    source_ids: list[str]
    lines: list[str]  # drop_id <US> line_no of crawl_manifest rows
    quarantine_ids: list[str]
    link_ids: list[str]
    phashes: list[str]
    url_hashes: list[str]
    host_digests: list[str]
    drop_uris: list[str]
    counts: dict[str, int]
    versions_before: dict[str, int]
    expected_rows: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # table -> version -> non-erased rows
    steps_done: list[str] = field(default_factory=list)
    step_counts: dict[str, int] = field(default_factory=dict)  # what the steps done so far counted
    verification: dict[str, Any] = field(default_factory=dict)  # checks, survival, rows_lost once passed

    def rules(self) -> dict[str, RowRule]:
        """Which rows of each table are erased, at every version."""
        images = frozenset(self.image_ids)
        by_image = RowRule(drop=((("image_id",), images),))
        rules = {name: by_image for name in IMAGE_TABLES}
        rules["image_links"] = RowRule(drop=((("image_id",), images), (("other_image_id",), images)))
        rules["crawl_manifest"] = RowRule(drop=((("drop_id", "line_no"), frozenset(self.lines)),))
        rules["quarantine"] = RowRule(drop=((("quarantine_id",), frozenset(self.quarantine_ids)),))
        rules["dq_results"] = RowRule(scrub=(("example_ids", self.tokens()),))
        return rules

    def tokens(self) -> frozenset[str]:
        """Every erased id and hash: redacted wherever it shows up in text (commit logs, Data Docs)."""
        return frozenset(
            self.image_ids
            + self.face_ids
            + self.source_ids
            + self.quarantine_ids
            + self.link_ids
            + self.phashes
        )


def _df(spark: SparkSession, values: list[str], column: str) -> DataFrame:
    import pandas as pd

    return spark.createDataFrame(
        pd.DataFrame({column: sorted(set(values))}, dtype="object"), f"{column} string"
    )


def _collect(df: DataFrame, column: str) -> list[str]:
    return sorted({r[0] for r in df.select(column).distinct().collect() if r[0] is not None})


def _lines_key(df: DataFrame) -> DataFrame:
    return df.select(F.concat_ws(SEPARATOR, "drop_id", F.col("line_no").cast("string")).alias("line"))


def _line_col() -> F.Column:
    return F.concat_ws(SEPARATOR, "drop_id", F.col("line_no").cast("string"))


def _under(url: F.Column, domain: str) -> F.Column:
    host = F.lower(F.call_function("parse_url", url, F.lit("HOST")))
    return F.coalesce(F.array_contains(host_suffixes(host), domain), F.lit(False))


def make_plan(
    spark: SparkSession, config: FacelakeConfig, request: ErasureRequest, selection: Selection
) -> ErasurePlan:
    """Every row of every table the selected images (and, for a domain, its lines) reach, at the latest version.

    Ids are matched through joins with DataFrames, never ``isin`` literals, so no id lands in a query
    plan or a Delta commit's operation parameters.
    """
    from jobs.index.purge import builds_holding

    lake = config.lake
    for name in (*ROW_TABLES, "suppression", "erasure_audit", "dq_results", "index_builds"):
        ensure_table(spark, lake, name)
    versions = {name: latest_version(spark, lake, name) for name in ROW_TABLES}
    at = {name: read_table(spark, lake, name, version=versions[name]) for name in ROW_TABLES}
    images = _df(spark, sorted(selection.image_ids), "image_id")
    sources = at["image_sources"].join(images, "image_id", "left_semi")
    manifest, quarantine = at["crawl_manifest"], at["quarantine"]
    domain = request.values[0] if request.kind == "source_domain" else None

    url_hashes = set(_collect(sources.select(url_sha256(F.col("source_url")).alias("h")), "h"))
    quarantined = quarantine.join(
        images.withColumnRenamed("image_id", "file_sha256"), "file_sha256", "left_semi"
    )
    if domain is not None:
        quarantined = quarantined.unionByName(
            quarantine.where(
                _under(F.col("source_url"), domain)
                | _under(F.get_json_object("raw_line", "$.page_url"), domain)
            )
        )
    url_hashes |= set(
        _collect(
            quarantined.where(F.col("source_url").isNotNull()).select(url_sha256("source_url").alias("h")),
            "h",
        )
    )
    by_hash = _df(spark, sorted(url_hashes), "h")
    line_rows = _lines_key(sources).unionByName(
        _lines_key(manifest.withColumn("h", url_sha256(F.col("source_url"))).join(by_hash, "h", "left_semi"))
    )
    if domain is not None:
        line_rows = line_rows.unionByName(
            _lines_key(
                manifest.where(_under(F.col("source_url"), domain) | _under(F.col("page_url"), domain))
            )
        )
    lines = _collect(line_rows, "line")
    line_df = _df(spark, lines, "line")
    quarantined = (
        quarantined.unionByName(
            quarantine.withColumn("h", url_sha256(F.col("source_url")))
            .join(by_hash, "h", "left_semi")
            .drop("h")
        )
        .unionByName(
            quarantine.withColumn("line", _line_col()).join(line_df, "line", "left_semi").drop("line")
        )
        .dropDuplicates(["quarantine_id"])
    )
    manifest_rows = manifest.withColumn("line", _line_col()).join(line_df, "line", "left_semi")
    faces = at["faces"].join(images, "image_id", "left_semi")
    links = (
        at["image_links"]
        .join(images, "image_id", "left_semi")
        .unionByName(
            at["image_links"].join(
                images.withColumnRenamed("image_id", "other_image_id"), "other_image_id", "left_semi"
            )
        )
        .dropDuplicates(["link_id"])
    )
    drop_uris: set[str] = set()
    for frame in (manifest_rows, quarantined):
        if "drop_uri" in frame.columns:
            drop_uris |= set(_collect(frame.where(F.col("drop_uri").isNotNull()), "drop_uri"))
    face_ids = _collect(faces, "face_id")
    holding = builds_holding(spark, lake, face_ids)
    counts = {
        "images": len(selection.image_ids),
        "images.direct": len(selection.direct),
        "images.subject": len({m.image_id for m in selection.subject}),
        "images.expansion": len({m.image_id for m in selection.expansion}),
        "image_sources": sources.count(),
        "faces": len(face_ids),
        "face_status": at["face_status"].join(images, "image_id", "left_semi").count(),
        "image_links": links.count(),
        "crawl_manifest": manifest_rows.count(),
        "quarantine": quarantined.count(),
        "index_builds": len(holding),
        "index_vectors": sum(holding.values()),
        "landing_drops": len(drop_uris),
    }
    return ErasurePlan(
        erasure_id=request.erasure_id,
        selector_kind=request.kind,
        selector_digest=request.digest,
        image_ids=sorted(selection.image_ids),
        subject=[asdict(m) for m in selection.subject],
        expansion=[asdict(m) for m in selection.expansion],
        face_ids=face_ids,
        source_ids=_collect(sources, "source_id"),
        lines=lines,
        quarantine_ids=_collect(quarantined, "quarantine_id"),
        link_ids=_collect(links, "link_id"),
        phashes=_collect(
            at["images"].join(images, "image_id", "left_semi").where(F.col("phash").isNotNull()), "phash"
        ),
        url_hashes=sorted(url_hashes),
        host_digests=[host_digest(domain)] if domain is not None else [],
        drop_uris=sorted(drop_uris),
        counts=counts,
        versions_before=versions,
    )


# -- state of a run ------------------------------------------------------------------------------------


class ErasureState:
    """``<lake>/_erasure/<erasure_id>/``: the plan while a run is under way, and the reports."""

    def __init__(self, lake: str, erasure_id: str) -> None:
        self.uri = lake.rstrip("/") + f"/{ERASURE_DIR}/{erasure_id}"
        self.folder = TableFolder(self.uri)

    def load(self) -> ErasurePlan | None:
        try:
            return ErasurePlan(**json.loads(self.folder.read("plan.json")))
        except (FileNotFoundError, OSError):
            return None

    def save(self, plan: ErasurePlan) -> None:
        self.folder.fs.create_dir(self.folder.base, recursive=True)
        self.folder.write("plan.json", json.dumps(asdict(plan), sort_keys=True).encode("utf-8"))

    def done(self, plan: ErasurePlan, step: str) -> None:
        if step not in plan.steps_done:
            plan.steps_done.append(step)
        self.save(plan)

    def forget(self) -> None:
        """Drop the plan (erased ids) once the erasure completed; suppression keeps the hashes."""
        self.folder.delete("plan.json")


# -- steps ---------------------------------------------------------------------------------------------


def suppress(spark: SparkSession, lake: str, plan: ErasurePlan, run: RunContext) -> int:
    """Add the plan's hashes to ``suppression`` and fence every table the erasure writes."""
    from jobs.lake.tables import merge_new_rows

    now = datetime.now(UTC)
    entries = (
        [("sha256", v) for v in plan.image_ids]
        + [("phash", v) for v in plan.phashes]
        + [("url_sha256", v) for v in plan.url_hashes]
        + [("host", v) for v in plan.host_digests]
    )
    added = 0
    if entries:
        import pandas as pd

        frame = pd.DataFrame(entries, columns=["kind", "value"])
        frame["suppression_id"] = [row_id(k, v) for k, v in entries]
        frame["erasure_id"] = plan.erasure_id
        frame["added_at"] = now
        rows = spark.createDataFrame(frame).select(
            "suppression_id", "kind", "value", "erasure_id", F.col("added_at").cast("timestamp")
        )
        added = merge_new_rows(spark, lake, "suppression", rows, run)
    # A metadata change fails every transaction that read the table before it and commits after it.
    with commit_metadata(spark, run):
        for name in ROW_TABLES:
            quoted = table_uri(lake, name).replace("`", "``")
            spark.sql(
                f"ALTER TABLE delta.`{quoted}` SET TBLPROPERTIES ('facelake.erasure.fence' = '{plan.erasure_id}')"
            )
    return added


def _merge_delete(
    spark: SparkSession, lake: str, name: str, keys: DataFrame, condition: str, run: RunContext
) -> int:
    from delta.tables import DeltaTable

    uri = table_uri(lake, name)
    target = DeltaTable.forPath(spark, uri)
    probe = target.toDF().alias("t").join(keys.alias("s"), F.expr(condition), "left_semi")
    if probe.isEmpty():
        return 0
    with commit_metadata(spark, run):
        target.alias("t").merge(keys.alias("s"), condition).whenMatchedDelete().execute()
    last = target.history(1).select("operationMetrics").first()
    return int(((last["operationMetrics"] or {}) if last else {}).get("numTargetRowsDeleted", 0))


def delete_rows(spark: SparkSession, lake: str, plan: ErasurePlan, run: RunContext) -> dict[str, int]:
    """Delete the plan's rows from every table at its latest version (one MERGE per table)."""
    images = _df(spark, plan.image_ids, "image_id")
    deleted = {}
    for name in IMAGE_TABLES:
        deleted[name] = _merge_delete(spark, lake, name, images, "t.image_id = s.image_id", run)
    deleted["image_links"] = _merge_delete(
        spark, lake, "image_links", images, "t.image_id = s.image_id OR t.other_image_id = s.image_id", run
    )
    lines = _df(spark, plan.lines, "line").select(
        F.split("line", SEPARATOR).getItem(0).alias("drop_id"),
        F.split("line", SEPARATOR).getItem(1).cast("int").alias("line_no"),
    )
    deleted["crawl_manifest"] = _merge_delete(
        spark, lake, "crawl_manifest", lines, "t.drop_id = s.drop_id AND t.line_no = s.line_no", run
    )
    deleted["quarantine"] = _merge_delete(
        spark,
        lake,
        "quarantine",
        _df(spark, plan.quarantine_ids, "quarantine_id"),
        "t.quarantine_id = s.quarantine_id",
        run,
    )
    return deleted


def purge_history(spark: SparkSession, lake: str, plan: ErasurePlan) -> dict[str, HistoryRewrite]:
    """Rewrite every version of every table without the plan's rows; redact Data Docs."""
    tokens = plan.tokens()
    done = {
        name: rewrite_history(table_uri(lake, name), rule, plan.erasure_id, tokens=tokens, table=name)
        for name, rule in plan.rules().items()
    }
    clear_delta_cache(spark)
    return done


def redact_data_docs(lake: str, plan: ErasurePlan) -> int:
    """Erased ids in Data Docs pages (validation results list failing ids) replaced by a marker."""
    from jobs.quality.runner import data_docs_root

    folder = TableFolder(data_docs_root(lake))
    tokens, changed = plan.tokens(), 0
    for relpath in folder.listing():
        if relpath.endswith((".html", ".json", ".txt", ".md")):
            text = folder.read(relpath).decode("utf-8", errors="replace")
            new, count = redact_text(text, tokens)
            if count:
                folder.write(relpath, new.encode("utf-8"))
                changed += 1
    return changed


def clean_landing(plan: ErasurePlan) -> dict[str, int]:
    """In every drop still present: delete files of erased content, blank the manifest lines naming them.

    Blanked lines keep every other line's number (ingest skips blank lines), so a rerun of ingest on the
    drop finds the same sources. Symlinks are never followed; nothing outside the drop is touched.
    """
    import hashlib

    from jobs.core.ids import url_digest

    erased, urls = set(plan.image_ids), set(plan.url_hashes)
    counts = {"landing_files_deleted": 0, "landing_lines_blanked": 0, "landing_drops_missing": 0}
    for drop in plan.drop_uris:
        folder = TableFolder(drop)
        listing = folder.listing()
        if not listing:
            counts["landing_drops_missing"] += 1
            continue
        gone: set[str] = set()
        for relpath in sorted(listing):
            if relpath == "manifest.jsonl" or (folder.local and os.path.islink(folder.full(relpath))):
                continue
            if hashlib.sha256(folder.read(relpath)).hexdigest() in erased:
                folder.delete(relpath)
                gone.add(posixpath.normpath(relpath))
                counts["landing_files_deleted"] += 1
        if "manifest.jsonl" not in listing:
            continue
        raw = folder.read("manifest.jsonl")
        lines = raw.split(b"\n")
        changed = False
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            path = record.get("image_path")
            url = record.get("source_url")
            hit = (isinstance(path, str) and posixpath.normpath(path) in gone) or (
                isinstance(url, str) and url_digest(url) in urls
            )
            if hit:
                lines[n] = b""
                changed = True
                counts["landing_lines_blanked"] += 1
        if changed:
            folder.write("manifest.jsonl", b"\n".join(lines))
    return counts


def settle(spark: SparkSession, lake: str, plan: ErasurePlan, run: RunContext) -> int:
    """Erase rows a racing job committed after the delete (same rules); returns the rows found."""
    images = _df(spark, plan.image_ids, "image_id")
    back = sum(
        read_table(spark, lake, name).join(images, "image_id", "left_semi").count() for name in IMAGE_TABLES
    )
    if back:
        log.warning(
            "erasure %s: %d rows came back from a racing job; erasing them", plan.erasure_id[:12], back
        )
        delete_rows(spark, lake, plan, run)
        purge_history(spark, lake, plan)
    from jobs.index.purge import remove_faces

    # A build published after the index step, from faces it read before the erasure.
    back += int(remove_faces(spark, lake, plan.face_ids, run)["vectors_removed"])
    return back


# -- measures ------------------------------------------------------------------------------------------


def expected_rows(lake: str, plan: ErasurePlan) -> dict[str, dict[str, int]]:
    """Before the erasure: the non-erased rows each retained version of each table holds."""
    from jobs.erasure.history import surviving_rows

    return {
        name: {str(v): n for v, n in surviving_rows(table_uri(lake, name), rule).items()}
        for name, rule in plan.rules().items()
        if name in ROW_TABLES
    }


def history_survival(lake: str, plan: ErasurePlan) -> tuple[float, int]:
    """(non-erased (version, row) pairs still read ÷ all of them before, rows lost) over every table and version."""
    from jobs.erasure.history import surviving_rows

    kept = total = 0
    for name, before in plan.expected_rows.items():
        after = surviving_rows(table_uri(lake, name), plan.rules()[name])
        for version, n in before.items():
            total += n
            kept += min(n, after.get(int(version), 0))
    return (kept / total if total else 1.0), total - kept


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class ErasureOutcome:
    """What a run did, for the CLI, the DAG and tests (ids, hashes and counts only)."""

    erasure_id: str
    mode: str
    status: str
    counts: dict[str, int]
    versions_before: dict[str, int]
    versions_after: dict[str, int]
    history_survival: float | None
    checks: list[tuple[str, bool, str]]
    report_path: str
    subject: list[dict[str, Any]]
    expansion: list[dict[str, Any]]
    samples: dict[str, list[str]]
    seconds: dict[str, float]
    steps_done: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(passed for _, passed, _ in self.checks)

    def summary(self) -> dict[str, Any]:
        """What ``--summary-json`` writes (the erasure DAG reads it): ids, counts and paths only."""
        return {
            "erasure_id": self.erasure_id,
            "mode": self.mode,
            "status": self.status,
            "steps_done": list(self.steps_done),
            "counts": {k: int(v) for k, v in sorted(self.counts.items())},
            "history_survival": self.history_survival,
            "verified": self.verified if self.checks else None,
            "report_path": self.report_path,
            "versions_before": dict(self.versions_before),
            "versions_after": dict(self.versions_after),
            "seconds": dict(self.seconds),
            "headline": self.headline(),
        }

    def headline(self) -> str:
        survival = "-" if self.history_survival is None else f"{self.history_survival:.4f}"
        verdict = "n/a" if self.mode == "dry_run" else ("passed" if self.verified else "FAILED")
        return (
            f"erasure {self.erasure_id[:12]} {self.mode} {self.status}: images {self.counts.get('images', 0)}, "
            f"faces {self.counts.get('faces', 0)}, sources {self.counts.get('image_sources', 0)}, "
            f"index vectors {self.counts.get('index_vectors', 0)}, history survival {survival}, "
            f"verification {verdict}; report {self.report_path}"
        )


def _maybe_fail(step: str, fail_after: str | None) -> None:
    if fail_after == step:
        raise ErasureStepFailed(f"stopped on purpose after step {step!r}")


def _completed(spark: SparkSession, lake: str, erasure_id: str) -> bool:
    ensure_table(spark, lake, "erasure_audit")
    return (
        read_table(spark, lake, "erasure_audit")
        .where(
            (F.col("erasure_id") == erasure_id)
            & (F.col("mode") == "execute")
            & (F.col("status") == "completed")
        )
        .limit(1)
        .count()
        > 0
    )


def _markers(spark: SparkSession, lake: str, erasure_id: str, plan: ErasurePlan | None):  # -> Markers
    from jobs.erasure.verify import Markers

    if plan is not None:
        return Markers(
            image_ids=frozenset(plan.image_ids),
            phashes=frozenset(plan.phashes),
            url_hashes=frozenset(plan.url_hashes),
            face_ids=frozenset(plan.face_ids),
        )
    # A finished erasure keeps no plan: its suppression entries say what it erased.
    rows = read_table(spark, lake, "suppression").where(F.col("erasure_id") == erasure_id).collect()
    by_kind: dict[str, set[str]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], set()).add(r["value"])
    return Markers(
        image_ids=frozenset(by_kind.get("sha256", ())),
        phashes=frozenset(by_kind.get("phash", ())),
        url_hashes=frozenset(by_kind.get("url_sha256", ())),
    )


def run_erasure(
    spark: SparkSession,
    config: FacelakeConfig,
    request: ErasureRequest,
    run: RunContext,
    *,
    fail_after: str | None = None,
    until: str | None = None,
) -> ErasureOutcome:
    """Run an erasure request end to end (dry run: plan and report only). See the module docstring.

    Rerunning a completed request re-verifies and changes nothing; rerunning an interrupted one
    resumes from its stored plan, skipping the steps already done. ``until`` (one of ``DAG_STEPS``)
    stops an execute run after that step with status ``in_progress``; the next call resumes (a dry run
    is one step: it always plans and reports). ``fail_after`` (tests) raises after the named step.
    """
    if until is not None and until not in DAG_STEPS:
        raise ValueError(f"until must be one of {', '.join(DAG_STEPS)}")
    from jobs.erasure.report import write_report
    from jobs.erasure.verify import verify_erasure

    lake = config.lake
    state = ErasureState(lake, request.erasure_id)
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        seconds[step] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()
        run.progress("erasure %s: %s done", request.erasure_id[:12], step)
        _maybe_fail(step, fail_after)

    run.inputs.update({"erasure_id": request.erasure_id, "selector_kind": request.kind})
    counts: dict[str, int] = {}
    if request.executes and _completed(spark, lake, request.erasure_id):
        # A finished request: verify again, touch nothing.
        verification = verify_erasure(
            spark, lake, _markers(spark, lake, request.erasure_id, None), run=run, raise_on_failure=False
        )
        lap("verify")
        versions = {name: latest_version(spark, lake, name) for name in ROW_TABLES}
        outcome = ErasureOutcome(
            request.erasure_id,
            request.mode,
            "completed",
            {"reverified": 1},
            versions,
            versions,
            None,
            verification.checks,
            "",
            [],
            [],
            {},
            seconds,
        )
        if verification.passed:
            outcome.report_path = write_report(lake, request, outcome, rerun=True)
            return outcome
        # Something came back after it completed (a run racing it): erase again from the selector.
        log.warning(
            "erasure %s: completed, but records are back; erasing them again", request.erasure_id[:12]
        )

    plan = state.load() if request.executes else None
    if plan is None:
        selection = select(spark, config, request)
        plan = make_plan(spark, config, request, selection)
        if request.executes:
            plan.expected_rows = expected_rows(lake, plan)
            state.save(plan)
    counts.update(plan.counts)
    samples = _samples(plan)
    lap("plan")
    if not request.executes:
        outcome = ErasureOutcome(
            request.erasure_id,
            "dry_run",
            "planned",
            counts,
            plan.versions_before,
            plan.versions_before,
            None,
            [],
            "",
            plan.subject,
            plan.expansion,
            samples,
            seconds,
        )
        outcome.report_path = write_report(lake, request, outcome)
        write_audit(spark, lake, request, outcome, run)
        return outcome

    def stop_here(step: str) -> bool:
        """Whether ``--until`` ends this call after ``step`` (the last internal step of that DAG step)."""
        if until is None or DAG_STEP_OF[step] != until:
            return False
        later = STEPS[STEPS.index(step) + 1 :]
        return not later or DAG_STEP_OF[later[0]] != until

    def in_progress(checks: list | None = None, survival: float | None = None) -> ErasureOutcome:
        return ErasureOutcome(
            request.erasure_id,
            "execute",
            "in_progress",
            {**counts, **plan.step_counts},
            plan.versions_before,
            {name: latest_version(spark, lake, name) for name in ROW_TABLES},
            survival,
            checks or [],
            "",
            plan.subject,
            plan.expansion,
            {k: [] for k in samples},
            seconds,
            list(plan.steps_done),
        )

    if stop_here("plan"):
        return in_progress()
    from jobs.index.purge import remove_faces

    def do_index() -> dict[str, int]:
        purged = remove_faces(spark, lake, plan.face_ids, run)
        return {
            "index_builds_replaced": len(purged["builds_cleaned"]),
            "index_vectors_removed": int(purged["vectors_removed"]),
        }

    def do_history() -> dict[str, int]:
        out: dict[str, int] = {}
        for name, rewrite in purge_history(spark, lake, plan).items():
            for key, value in rewrite.counts().items():
                out[f"{name}.{key}"] = out.get(f"{name}.{key}", 0) + value
        out["data_docs_redacted"] = redact_data_docs(lake, plan)
        return out

    actions = {
        "suppress": lambda: {"suppression_added": suppress(spark, lake, plan, run)},
        "delete": lambda: {f"{n}.deleted": k for n, k in delete_rows(spark, lake, plan, run).items()},
        "history": do_history,
        "landing": lambda: clean_landing(plan),
        "index": do_index,
        "settle": lambda: {"settle_rows_found": settle(spark, lake, plan, run)},
    }
    for step, action in actions.items():
        # A resumed run (a later DAG task, or a rerun after a failure) skips what is already done.
        if step not in plan.steps_done:
            for key, value in action().items():
                plan.step_counts[key] = plan.step_counts.get(key, 0) + int(value)
            state.done(plan, step)
            lap(step)
        if stop_here(step):
            return in_progress()
    counts.update(plan.step_counts)

    if "verify" in plan.steps_done and plan.verification:
        checks = [tuple(c) for c in plan.verification["checks"]]
        survival, lost = plan.verification["survival"], plan.verification["rows_lost"]
        verification = None
    else:
        survival, lost = history_survival(lake, plan)
        verification = verify_erasure(
            spark,
            lake,
            _markers(spark, lake, plan.erasure_id, plan),
            run=run,
            drops=plan.drop_uris,
            raise_on_failure=False,
        )
        checks = list(verification.checks)
        if verification.passed:
            plan.verification = {"checks": checks, "survival": survival, "rows_lost": lost}
            state.done(plan, "verify")
        else:
            # Something remains: the next run redoes every step (each is idempotent), then verifies again.
            plan.steps_done = ["plan"]
            plan.step_counts = {}
            plan.verification = {}
            state.save(plan)
    counts["history_rows_lost"] = lost
    lap("verify")
    failed = verification is not None and not verification.passed
    if stop_here("verify") and not failed:
        return in_progress(checks, survival)
    versions_after = {name: latest_version(spark, lake, name) for name in ROW_TABLES}
    outcome = ErasureOutcome(
        request.erasure_id,
        "execute",
        "failed" if failed else "completed",
        counts,
        plan.versions_before,
        versions_after,
        survival,
        checks,
        "",
        plan.subject,
        plan.expansion,
        {k: [] for k in samples},
        seconds,
        list(plan.steps_done),
    )
    outcome.report_path = write_report(lake, request, outcome)
    write_audit(spark, lake, request, outcome, run)
    if not failed:
        state.forget()
    lap("audit")
    if failed:
        _raise_unless_verified(outcome, verification)
    return outcome


def _raise_unless_verified(outcome: ErasureOutcome, verification: Any) -> None:
    if not verification.passed:
        from jobs.erasure.verify import ErasureVerificationError

        error = ErasureVerificationError(verification)
        error.outcome = outcome  # the CLI still writes its summary (report path, counts)
        raise error


def _samples(plan: ErasurePlan) -> dict[str, list[str]]:
    """A few ids per store for the dry run's report (ids only)."""
    return {
        "images": plan.image_ids[:SAMPLE],
        "faces": plan.face_ids[:SAMPLE],
        "image_sources": plan.source_ids[:SAMPLE],
        "quarantine": plan.quarantine_ids[:SAMPLE],
        "image_links": plan.link_ids[:SAMPLE],
    }


def write_audit(
    spark: SparkSession, lake: str, request: ErasureRequest, outcome: ErasureOutcome, run: RunContext
) -> None:
    """The ``erasure_audit`` row, through its expectations gate (one row per erasure and mode)."""
    from jobs.lake.tables import upsert_rows
    from jobs.quality.gate import PublishGate

    row = {
        "erasure_id": outcome.erasure_id,
        "mode": outcome.mode,
        "status": outcome.status,
        "ticket_ref": request.ticket,
        "requested_by": request.requested_by,
        "selector_kind": request.kind,
        "selector_digest": request.digest,
        "started_at": run.started_at,
        "finished_at": datetime.now(UTC),
        "counts": {k: int(v) for k, v in outcome.counts.items()},
        "table_versions": outcome.versions_after if outcome.mode == "execute" else None,
        # History is rewritten, not dropped: every version that was readable before still is.
        "first_readable_versions": (
            {name: min(files_by_version(table_uri(lake, name)) or [0]) for name in outcome.versions_after}
            if outcome.mode == "execute"
            else None
        ),
        "checks": [{"name": n, "passed": p, "detail": d} for n, p, d in outcome.checks],
        "run_id": run.run_id,
        "history_survival": outcome.history_survival,
        "report_path": outcome.report_path,
        "dag_run_id": run.dag_run_id,
    }
    from jobs.lake.schemas import table_spec

    frame = spark.createDataFrame([row], table_spec("erasure_audit").schema)
    PublishGate(spark, lake, run)("erasure_audit", frame)
    upsert_rows(
        spark,
        lake,
        "erasure_audit",
        frame,
        ("status", "finished_at", "run_id"),
        run,
        replace_row=True,
    )


# -- command line --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake erase`` flags."""
    parser.add_argument(
        "--selector",
        required=True,
        choices=("jurisdiction", "source_domain", "image_hashes", "subject_photo"),
    )
    parser.add_argument(
        "--value",
        action="append",
        default=[],
        help="jurisdiction tag (default uk), the domain, or image sha256s (repeat, or comma-separated)",
    )
    parser.add_argument("--hashes-file", help="image_hashes: a file of sha256s, one per line")
    parser.add_argument("--photo", help="subject_photo: the subject's photo")
    parser.add_argument("--mode", choices=("dry_run", "execute"), default="dry_run")
    parser.add_argument("--ticket", required=True, help="ticket reference of the order")
    parser.add_argument("--requested-by", required=True, help="who asked for it")
    parser.add_argument(
        "--expand-faces",
        type=float,
        help="also erase images holding a face this similar to a face of a selected image (0-1; see README)",
    )
    parser.add_argument(
        "--subject-threshold", type=float, help="subject_photo: similarity for a match (default from config)"
    )
    parser.add_argument(
        "--until",
        choices=DAG_STEPS,
        help="execute: stop after this step (the erasure DAG runs one step per task); a later call resumes",
    )
    parser.add_argument(
        "--summary-json",
        help="also write the outcome (status, counts, survival, verification, report path) as JSON here",
    )
    add_config_arguments(parser)


def request_from_args(args: argparse.Namespace) -> ErasureRequest:
    """The validated request of parsed CLI flags (raises ErasureRequestError with a clear message)."""
    values: list[str] = list(args.value)
    if args.hashes_file:
        path = Path(args.hashes_file)
        if not path.is_file():
            raise ErasureRequestError("--hashes-file is not a readable file")
        values += path.read_text(encoding="utf-8", errors="replace").split()
    photo = None
    if args.selector == "subject_photo":
        if not args.photo or not Path(args.photo).is_file():
            raise ErasureRequestError("subject_photo needs --photo, a readable file")
        photo = Path(args.photo).read_bytes()
    return build_request(
        args.selector,
        values,
        mode=args.mode,
        ticket=args.ticket,
        requested_by=args.requested_by,
        expand_faces=args.expand_faces,
        subject_threshold=args.subject_threshold,
        photo=photo,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``facelake erase``; exit 0 done (dry run planned, or executed and verified), 2 bad request or
    subject photo, 3 verification failed (something remains: the report and the error say where),
    4 face matching needed but no usable index build (run ``facelake index build``)."""
    from jobs.lake.session import get_spark

    try:
        request = request_from_args(args)
    except ErasureRequestError as exc:
        print(f"facelake erase: {exc}", file=sys.stderr)
        return 2
    config, run_ctx = start_run(args, "erase")
    spark = get_spark(config, "facelake-erase")
    from jobs.erasure.verify import ErasureVerificationError
    from jobs.index.registry import NoIndexBuildError
    from jobs.index.search import QueryImageError, SearchRefusedError

    try:
        outcome = run_erasure(spark, config, request, run_ctx, until=args.until)
    except ErasureVerificationError as exc:
        failed = getattr(exc, "outcome", None)
        if args.summary_json and failed is not None:
            _write_summary(args.summary_json, failed)
        print(f"facelake erase: verification failed: {exc}", file=sys.stderr)
        return 3
    except QueryImageError as exc:  # the subject photo: no face, or unreadable
        print(f"facelake erase: subject photo refused: {exc}", file=sys.stderr)
        return 2
    except (NoIndexBuildError, SearchRefusedError) as exc:
        print(f"facelake erase: needs a usable index build for face matching: {exc}", file=sys.stderr)
        return 4
    if args.summary_json:
        _write_summary(args.summary_json, outcome)
    print(outcome.headline())
    for m in outcome.expansion:
        print(
            f"  expansion: image {m['image_id'][:12]} face {m['face_id'][:12] or '-'} score {m['score']:.4f}"
        )
    for m in outcome.subject:
        print(f"  subject match: image {m['image_id'][:12]} face {m['face_id'][:12]} score {m['score']:.4f}")
    return 0


def _write_summary(path: str, outcome: ErasureOutcome) -> None:
    Path(path).write_text(json.dumps(outcome.summary(), sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.erasure.job --selector jurisdiction --value uk --ticket T --requested-by N``."""
    return command_main("erase", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
