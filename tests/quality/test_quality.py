"""The GX gate: every suite passes on good data and each expectation catches its own break.

Speed: one suite run per suite on good data and one on broken data. The broken DataFrame breaks
every expectation of the suite at once, each on its own row, so one GX run tells which
expectation caught which row; the parametrized tests then read that run's report.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import types as T

from jobs.core.config import FacelakeConfig
from jobs.core.ids import host_digest
from jobs.core.runs import RunContext
from jobs.lake.fs import copy_local_tree
from jobs.lake.schemas import schema_differences, schema_of, table_names
from jobs.lake.tables import read_table
from jobs.quality import derived, erasure_checks, gate, runner, suites

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DROP = "0123456789abcdef"
DIM = 16  # the test pack's embedding dimension (a run-time parameter)
PACK_SHA = hashlib.sha256(b"pack").hexdigest()
PACK_ID = "generated-test-pack@" + PACK_SHA[:12]
PARAMS = suites.quality_parameters(FacelakeConfig(), embedding_dim=DIM)
TABLE_SUITES = [
    "crawl_manifest",
    "face_status",
    "images",
    "image_sources",
    "faces",
    "quarantine",
    "suppression",
    "image_links",
    "index_builds",
    "dq_results",
    "erasure_audit",
]
ALL_SUITES = [*TABLE_SUITES, "erased_selector"]
# Recording is a Delta MERGE into dq_results per suite run (seconds of CPU each): the tests record
# the images suite on good and broken data and image_sources (URL columns) on broken data only.
RECORDED_GOOD = ("images",)
RECORDED_BROKEN = ("images", "image_sources")


def h64(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def h16(*parts: object) -> str:
    return h64(*parts)[:16]


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def relaxed(schema: T.StructType) -> T.StructType:
    """The table's schema with every column nullable, so broken rows may hold nulls."""
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def frame(spark, table: str, rows: list[dict[str, Any]], exact: bool = True):
    schema = schema_of(table)
    data = [tuple(r[f.name] for f in schema.fields) for r in rows]
    return spark.createDataFrame(data, schema if exact else relaxed(schema))


# ---------------------------------------------------------------------------------------------
# Good rows per table
# ---------------------------------------------------------------------------------------------


def image_row(i: int) -> dict[str, Any]:
    image_id = h64("image", i)
    return {
        "image_id": image_id,
        "phash": h16("phash", i),
        "canonical_id": image_id,
        "near_dup_distance": None,
        "near_dup_method": None,
        "near_dup_score": None,
        "probe_hashes": [h16("probe", i * 13 + k) for k in range(13)],
        "width": 640 + i,
        "height": 480,
        "format": "JPEG",
        "byte_size": 1000 + i,
        "content": b"\xff\xd8\xff" + bytes([i % 256]),
        "jurisdiction_tags": ["uk"] if i % 3 == 0 else [],
        "policy_version": "2025-03",
        "first_crawled_at": NOW,
        "first_drop_id": DROP,
        "ingested_at": NOW,
        "run_id": "r1",
    }


def source_row(i: int, image_id: str | None = None) -> dict[str, Any]:
    image_id = image_id or h64("image", i)
    url = f"https://img{i}.example.com/p/{i}.jpg"
    return {
        "source_id": h64("source", image_id, url),
        "image_id": image_id,
        "source_url": url,
        "source_host": f"img{i}.example.com",
        "page_url": f"https://www.example.co.uk/page/{i}",
        "page_host": "www.example.co.uk",
        "crawled_at": NOW,
        "country": "GB",
        "tags": ["uk"],
        "platform": "web",
        "extra": None,
        "drop_id": DROP,
        "line_no": i + 1,
        "jurisdiction_tags": ["uk"],
        "policy_version": "2025-03",
        "ingested_at": NOW,
        "run_id": "r1",
    }


def face_row(i: int) -> dict[str, Any]:
    image_id = h64("image", i)
    x1, y1 = 10.0 + i, 20.0
    return {
        "face_id": h64("face", image_id, "pack", 0),
        "image_id": image_id,
        "face_index": 0,
        "bbox": [x1, y1, x1 + 100.0, y1 + 120.0],
        "landmarks": [
            x1 + 30,
            y1 + 40,
            x1 + 70,
            y1 + 40,
            x1 + 50,
            y1 + 60,
            x1 + 35,
            y1 + 90,
            x1 + 65,
            y1 + 90,
        ],
        "det_score": 0.9,
        "embedding": unit([float((i + k) % 7 + 1) for k in range(DIM)]),
        "embedding_dim": DIM,
        "pack_id": PACK_ID,
        "pack_sha256": PACK_SHA,
        "jurisdiction_tags": ["uk"] if i % 2 else [],
        "embedded_at": NOW,
        "run_id": "r1",
    }


def status_row(i: int) -> dict[str, Any]:
    status = ("ok", "no_face", "failed")[i % 3]
    return {
        "image_id": h64("image", i),
        "pack_id": PACK_ID,
        "status": status,
        "reason": "detect_failed" if status == "failed" else None,
        "detail": "RuntimeError: boom" if status == "failed" else None,
        "face_count": 2 if status == "ok" else 0,
        "pack_sha256": PACK_SHA,
        "model_files": [{"role": "detection", "file": "det.onnx", "sha256": h64("det")}],
        "det_size": "640x640",
        "det_thresh": 0.5,
        "jurisdiction_tags": ["uk"] if i % 2 else [],
        "processed_at": NOW,
        "run_id": "r1",
    }


def manifest_row(i: int) -> dict[str, Any]:
    return {
        "drop_id": DROP,
        "line_no": i + 1,
        "image_path": f"images/{i:04d}.jpg",
        "source_url": f"https://img{i}.example.com/p/{i}.jpg",
        "page_url": None,
        "crawled_at": NOW,
        "country": "GB" if i % 2 else None,
        "tags": ["uk"] if i % 2 else None,
        "platform": None,
        "extra": None,
        "ingested_at": NOW,
        "run_id": "r1",
        "drop_uri": "/crawls/drop-1",
    }


def quarantine_row(i: int) -> dict[str, Any]:
    return {
        "quarantine_id": h64("q", i),
        "drop_id": DROP,
        "line_no": i + 1,
        "reason": "malformed_json" if i % 2 else "missing_file",
        "detail": "bad line",
        "image_path": f"images/{i}.jpg",
        "source_url": None,
        "file_sha256": h64("file", i) if i % 2 == 0 else None,
        "byte_size": 10 * i if i % 2 == 0 else None,
        "raw_line": "{" * (i + 1),
        "quarantined_at": NOW,
        "run_id": "r1",
        "drop_uri": "s3a://crawls/drop-1",
    }


def suppression_row(i: int) -> dict[str, Any]:
    kind, value = [
        ("sha256", h64("erased", i)),
        ("phash", h16("erased", i)),
        ("url_sha256", h64("url", i)),
        ("host", host_digest(f"erased{i}.example")),
    ][i % 4]
    return {
        "suppression_id": h64(kind, value),
        "kind": kind,
        "value": value,
        "erasure_id": h64("erasure", 1),
        "added_at": NOW,
    }


def link_row(i: int) -> dict[str, Any]:
    a, b = sorted((h64("image", i), h64("image", i + 100)))
    return {
        "link_id": h64("link", i),
        "image_id": a,
        "other_image_id": b,
        "method": "orb_ransac_pixels",
        "score": 0.9,
        "inliers": 120,
        "mirrored": bool(i % 2),
        "stage": "ingest" if i % 2 else "faces",
        "found_at": NOW,
        "run_id": "r1",
    }


def build_row(i: int) -> dict[str, Any]:
    return {
        "build_id": h64("build", i),
        "pack_id": "buffalo_l@0123456789ab",
        "pack_sha256": h64("pack", 1),
        "faces_version": 3 + i,
        "kind": "update" if i % 2 else "full",
        "parent_build_id": h64("build", i - 1) if i % 2 else None,
        "dim": 512,
        "metric": "inner_product",
        "factory": "IVF1024,Flat",
        "search_params": '{"nprobe": 16}',
        "n_vectors": 1000 + i,
        "n_shards": 4,
        "build_path": f"/lake/_index/{h64('build', i)}",
        "manifest_sha256": h64("manifest", i),
        "recall_at_10": 0.97,
        "recall_target": 0.95,
        "estimated_bytes": 2_000_000,
        "memory_budget": 4_000_000,
        "status": "published",
        "published_at": NOW,
        "pruned_at": None,
        "run_id": "r1",
    }


def dq_row(i: int) -> dict[str, Any]:
    return {
        "run_id": "r1",
        "job": "ingest",
        "suite": "images",
        "table_name": "images",
        "table_version": 3,
        "expectation_id": f"expect_column_values_to_be_unique(c{i})",
        "expectation_type": "expect_column_values_to_be_unique",
        "kwargs": "{}",
        "success": bool(i % 2),
        "observed_value": None,
        "element_count": 10,
        "unexpected_count": 0 if i % 2 else 2,
        "example_ids": [] if i % 2 else [h64("image", i)],
        "data_docs_path": "/lake/data_docs/index.html",
        "checked_at": NOW,
        "validation_id": h64("validation", 1),
    }


def audit_row(i: int) -> dict[str, Any]:
    return {
        "erasure_id": h64("erasure", i),
        "mode": "execute" if i % 2 else "dry_run",
        "status": "completed" if i % 2 else "planned",
        "ticket_ref": f"T-{i}",
        "requested_by": "op1",
        "selector_kind": "jurisdiction",
        "selector_digest": h64("selector", i),
        "started_at": NOW,
        "finished_at": None,
        "counts": {"images": 3},
        "table_versions": {"images": 4},
        "first_readable_versions": None,
        "checks": [{"name": "no_rows", "passed": True, "detail": "0"}],
        "run_id": "r1",
        "history_survival": 1.0 if i % 2 else None,
        "report_path": None,
        "dag_run_id": None,
    }


def counts_row(i: int) -> dict[str, Any]:
    return {"table_version": i, "matching_rows": 0}


ROW_MAKERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "images": image_row,
    "image_sources": source_row,
    "faces": face_row,
    "face_status": status_row,
    "crawl_manifest": manifest_row,
    "quarantine": quarantine_row,
    "suppression": suppression_row,
    "image_links": link_row,
    "index_builds": build_row,
    "dq_results": dq_row,
    "erasure_audit": audit_row,
    "erased_selector": counts_row,
}
COUNTS_SCHEMA = T.StructType(
    [T.StructField("table_version", T.LongType(), False), T.StructField("matching_rows", T.LongType(), False)]
)


@dataclass
class Case:
    """Rows of one suite's table plus what the cross-table checks will see."""

    suite: str
    rows: list[dict[str, Any]]
    image_ids: set[str] = field(default_factory=set)
    unsourced: set[str] = field(default_factory=set)
    suppression: list[dict[str, Any]] = field(default_factory=lambda: [suppression_row(i) for i in range(4)])
    parameters: dict[str, Any] = field(default_factory=lambda: dict(PARAMS))

    def dataframe(self, spark, exact: bool):
        if self.suite == "erased_selector":
            return spark.createDataFrame(
                [(r["table_version"], r["matching_rows"]) for r in self.rows], COUNTS_SCHEMA
            )
        return frame(spark, self.suite, self.rows, exact)

    def references(self, spark) -> dict[str, Any]:
        # images: what faces and image_sources point at; image_sources: what images need (>= 1 each).
        images = [{**image_row(0), "image_id": i, "canonical_id": i} for i in sorted(self.image_ids)]
        sourced = {
            r["image_id"] for r in self.rows if self.suite == "images" and r["image_id"]
        } - self.unsourced
        sources = [source_row(0, image_id) for image_id in sorted(sourced)]
        return {
            "images": frame(spark, "images", images),
            "image_sources": frame(spark, "image_sources", sources),
            "suppression": frame(spark, "suppression", self.suppression),
        }


def good_case(suite: str, n: int) -> Case:
    rows = [ROW_MAKERS[suite](i) for i in range(n)]
    case = Case(suite, rows)
    if suite == "images":
        # Row 1 is a near duplicate folded into row 0.
        rows[1].update(
            canonical_id=rows[0]["image_id"],
            near_dup_distance=3,
            near_dup_method="orb_ransac_pixels",
            near_dup_score=0.97,
        )
    if suite in ("image_sources", "faces"):
        case.image_ids = {r["image_id"] for r in rows}
    if suite == "erased_selector":
        case.parameters = {**case.parameters, "versions_checked": list(range(n))}
    return case


# ---------------------------------------------------------------------------------------------
# One break per expectation: mutate row `r` (and the case), return the ids the report must show
# ---------------------------------------------------------------------------------------------

Break = Callable[[dict[str, Any], Case], list[str]]


def _set(**changes: Any) -> Break:
    """Break by changing columns; the example id is the row's (possibly changed) id."""

    def apply(row: dict[str, Any], case: Case) -> list[str]:
        row.update(changes)
        return [row_id(case.suite, row)]

    return apply


def row_id(suite: str, row: dict[str, Any]) -> str:
    ids = suites.suite_spec(suite).id_columns
    values = [row[c] for c in ids]
    return "" if any(v is None for v in values) else ":".join(map(str, values))


def _null(column: str, **also: Any) -> Break:
    def apply(row: dict[str, Any], case: Case) -> list[str]:
        row.update({column: None, **also})
        return [row_id(case.suite, row)]  # "" when the id itself is null: no example then

    return apply


def _copy_of_first(*columns: str, **also: Any) -> Break:
    """Give the row the first row's values in ``columns`` (a duplicate key)."""

    def apply(row: dict[str, Any], case: Case) -> list[str]:
        row.update({c: case.rows[0][c] for c in columns}, **also)
        return [row_id(case.suite, case.rows[0])]

    return apply


def _same_face_key(row: dict[str, Any], case: Case) -> list[str]:
    """Another face id for the first row's (image, pack, index): both rows fail."""
    first = case.rows[0]
    row.update(image_id=first["image_id"], pack_id=first["pack_id"], face_index=first["face_index"])
    return [first["face_id"], row["face_id"]]


def _image_dup(row: dict[str, Any], case: Case) -> list[str]:
    first = case.rows[0]["image_id"]
    row.update(image_id=first, canonical_id=first)
    return [first]


def _image_bad_id(row: dict[str, Any], case: Case) -> list[str]:
    row.update(image_id="Z" * 64, canonical_id="Z" * 64)
    return ["Z" * 64]


def _unsourced(row: dict[str, Any], case: Case) -> list[str]:
    case.unsourced.add(row["image_id"])
    return [row["image_id"]]


def _suppress_sha(row: dict[str, Any], case: Case) -> list[str]:
    case.suppression.append(
        {**suppression_row(0), "suppression_id": h64("s", row["image_id"]), "value": row["image_id"]}
    )
    return [row_id(case.suite, row)]


def _suppress_host(row: dict[str, Any], case: Case) -> list[str]:
    row.update(source_host="img.banned.example")
    case.suppression.append(
        {**suppression_row(3), "suppression_id": h64("s", "banned"), "value": host_digest("banned.example")}
    )
    return [row["source_id"]]


def _suppress_url(row: dict[str, Any], case: Case) -> list[str]:
    from jobs.core.ids import url_digest

    digest = url_digest(row["source_url"].upper() + "#fragment")  # the same URL, as ingest normalises it
    case.suppression.append({**suppression_row(2), "suppression_id": h64("s", digest), "value": digest})
    return [row_id(case.suite, row)]


def _missing_image(row: dict[str, Any], case: Case) -> list[str]:
    row.update(image_id=h64("no such image"))
    return [row_id(case.suite, row)]


def _landmark_outside(row: dict[str, Any], case: Case) -> list[str]:
    landmarks = list(row["landmarks"])
    landmarks[0] = row["bbox"][0] - (row["bbox"][2] - row["bbox"][0])  # a whole box width to the left
    row.update(landmarks=landmarks)
    return [row["face_id"]]


def _swap_link(row: dict[str, Any], case: Case) -> list[str]:
    row.update(image_id=row["other_image_id"], other_image_id=row["image_id"])
    return [row["link_id"]]


def _erased_rows_left(row: dict[str, Any], case: Case) -> list[str]:
    row.update(matching_rows=3)
    return [str(row["table_version"])]


def _version_not_checked(row: dict[str, Any], case: Case) -> list[str]:
    case.parameters["versions_checked"] = [*case.parameters["versions_checked"], 99]
    return []


BREAKS: dict[str, dict[str, Break]] = {
    "images": {
        "expect_column_values_to_not_be_null(image_id)": _null("image_id", canonical_id=h64("image", 0)),
        "expect_column_values_to_be_unique(image_id)": _image_dup,
        "expect_column_values_to_match_regex(image_id)": _image_bad_id,
        "expect_column_values_to_not_be_null(phash)": _set(phash=None),
        "expect_column_values_to_match_regex(phash)": _set(phash="NOT-A-PHASH"),
        "expect_column_values_to_not_be_null(canonical_id)": _set(canonical_id=None),
        "expect_column_values_to_be_in_set(canonical_ok)": _set(
            canonical_id=h64("dangling"), near_dup_method="orb_ransac_pixels", near_dup_score=0.9
        ),
        "expect_column_values_to_be_in_set(near_dup_verified)": _set(
            canonical_id=h64("image", 0), near_dup_distance=20, near_dup_method=None, near_dup_score=None
        ),
        "expect_column_values_to_be_between(near_dup_score)": _set(
            canonical_id=h64("image", 0),
            near_dup_distance=20,
            near_dup_method="orb_ransac_pixels",
            near_dup_score=PARAMS["near_dup_min_score"] - 0.1,
        ),
        "expect_column_values_to_be_between(near_dup_distance)": _set(
            canonical_id=h64("image", 0),
            near_dup_distance=65,
            near_dup_method="orb_ransac_pixels",
            near_dup_score=0.9,
        ),
        "expect_column_values_to_be_between(width)": _set(width=0),
        "expect_column_values_to_be_between(height)": _set(height=0),
        "expect_column_values_to_be_between(pixel_count)": _set(width=10_000, height=10_000),
        "expect_column_values_to_be_in_set(format)": _set(format="BMP"),
        "expect_column_values_to_be_between(byte_size)": _set(byte_size=0),
        "expect_column_values_to_be_in_set(jurisdiction_tag)": _set(jurisdiction_tags=["uk", "je"]),
        "expect_column_values_to_be_between(source_count)": _unsourced,
        "expect_column_values_to_be_in_set(suppressed)": _suppress_sha,
    },
    "image_sources": {
        "expect_column_values_to_not_be_null(source_id)": _null("source_id"),
        "expect_column_values_to_be_unique(source_id)": _copy_of_first("source_id"),
        "expect_column_values_to_match_regex(source_id)": _set(source_id="not-a-hash"),
        "expect_column_values_to_not_be_null(image_id)": _null("image_id"),
        "expect_column_values_to_be_in_set(image_exists)": _missing_image,
        "expect_column_values_to_not_be_null(source_url)": _set(source_url=None),
        "expect_column_values_to_match_regex(source_host)": _set(source_host="IMG.Example.com"),
        "expect_column_values_to_match_regex(drop_id)": _set(drop_id="xyz"),
        "expect_column_values_to_be_between(line_no)": _set(line_no=0),
        "expect_column_values_to_be_in_set(jurisdiction_tag)": _set(jurisdiction_tags=["fr"]),
        "expect_column_values_to_be_in_set(suppressed)": _suppress_host,
    },
    "faces": {
        "expect_column_values_to_not_be_null(face_id)": _null("face_id"),
        "expect_column_values_to_be_unique(face_id)": _copy_of_first("face_id"),
        "expect_column_values_to_match_regex(face_id)": _set(face_id="face-1"),
        "expect_compound_columns_to_be_unique(image_id,pack_id,face_index)": _same_face_key,
        "expect_column_values_to_not_be_null(image_id)": _null("image_id"),
        "expect_column_values_to_be_in_set(image_exists)": _missing_image,
        "expect_column_values_to_be_between(face_index)": _set(face_index=-1),
        "expect_column_values_to_be_between(det_score)": _set(det_score=1.5),
        "expect_column_values_to_be_in_set(landmarks_in_box)": _landmark_outside,
        "expect_column_values_to_be_between(embedding_dim)": _set(embedding_dim=DIM + 1),
        "expect_column_values_to_be_between(embedding_length)": _set(embedding=unit([1.0] * (DIM - 1))),
        "expect_column_values_to_be_between(embedding_norm)": _set(
            embedding=[2.0 * v for v in unit([1.0] * DIM)]
        ),
        "expect_column_values_to_match_regex(pack_id)": _set(pack_id="generated-test-pack"),
        "expect_column_values_to_match_regex(pack_sha256)": _set(pack_sha256="abc"),
        "expect_column_values_to_be_in_set(jurisdiction_tag)": _set(jurisdiction_tags=["us"]),
        "expect_column_values_to_be_in_set(suppressed)": _suppress_sha,
    },
    "face_status": {
        "expect_compound_columns_to_be_unique(image_id,pack_id)": _copy_of_first("image_id", "pack_id"),
        "expect_column_values_to_match_regex(image_id)": _set(image_id="not-an-image-id"),
        "expect_column_values_to_match_regex(pack_id)": _set(pack_id="buffalo_l"),
        "expect_column_values_to_be_in_set(status)": _set(status="done", reason=None, face_count=0),
        "expect_column_values_to_be_in_set(reason)": _set(status="failed", reason="oops", face_count=0),
        "expect_column_values_to_not_be_null(reason)[failed]": _set(
            status="failed", reason=None, face_count=0
        ),
        "expect_column_values_to_be_between(face_count)[ok]": _set(status="ok", reason=None, face_count=0),
        "expect_column_values_to_be_between(face_count)[no_face,failed]": _set(
            status="no_face", reason=None, face_count=1
        ),
        "expect_column_values_to_match_regex(pack_sha256)": _set(pack_sha256="abc"),
        "expect_column_values_to_be_in_set(jurisdiction_tag)": _set(jurisdiction_tags=["gb"]),
        "expect_column_values_to_be_in_set(suppressed)": _suppress_sha,
    },
    "crawl_manifest": {
        "expect_compound_columns_to_be_unique(drop_id,line_no)": _copy_of_first("drop_id", "line_no"),
        "expect_column_values_to_match_regex(drop_id)": _set(drop_id="NOT-HEX"),
        "expect_column_values_to_be_between(line_no)": _set(line_no=0),
        "expect_column_values_to_not_be_null(image_path)": _set(image_path=None),
        "expect_column_values_to_not_match_regex(image_path)": _set(image_path="images/../../etc/passwd"),
        "expect_column_values_to_not_be_null(source_url)": _set(source_url=None),
        "expect_column_values_to_not_be_null(crawled_at)": _set(crawled_at=None),
        "expect_column_values_to_match_regex(country)": _set(country="gb"),
        "expect_column_values_to_be_in_set(suppressed)": _suppress_url,
        "expect_column_values_to_not_be_null(drop_uri)": _set(drop_uri=None),
    },
    "quarantine": {
        "expect_column_values_to_not_be_null(quarantine_id)": _null("quarantine_id"),
        "expect_column_values_to_be_unique(quarantine_id)": _copy_of_first("quarantine_id"),
        "expect_column_values_to_match_regex(quarantine_id)": _set(quarantine_id="q-1"),
        "expect_column_values_to_be_in_set(reason)": _set(reason="bogus"),
        "expect_column_values_to_match_regex(drop_id)": _set(drop_id="xyz"),
        "expect_column_values_to_be_between(line_no)": _set(line_no=0),
        "expect_column_values_to_match_regex(file_sha256)": _set(file_sha256="abc"),
        "expect_column_values_to_be_between(byte_size)": _set(byte_size=-1),
        "expect_column_value_lengths_to_be_between(raw_line)": _set(raw_line="x" * 5000),
        "expect_column_values_to_not_be_null(drop_uri)": _set(drop_uri=None),
    },
    "image_links": {
        "expect_column_values_to_be_unique(link_id)": _copy_of_first("link_id"),
        "expect_column_values_to_match_regex(link_id)": _set(link_id="L-1"),
        "expect_column_values_to_match_regex(image_id)": _set(image_id="0" * 63),
        "expect_column_values_to_match_regex(other_image_id)": _set(other_image_id="f" * 65),
        "expect_column_values_to_be_in_set(link_ordered)": _swap_link,
        "expect_column_values_to_be_between(score)": _set(score=0.5),
        "expect_column_values_to_be_in_set(stage)": _set(stage="guess"),
    },
    "index_builds": {
        "expect_column_values_to_be_unique(build_id)": _copy_of_first("build_id"),
        "expect_column_values_to_match_regex(build_id)": _set(build_id="b-1"),
        "expect_column_values_to_match_regex(pack_sha256)": _set(pack_sha256="abc"),
        "expect_column_values_to_match_regex(manifest_sha256)": _set(manifest_sha256="F" * 64),
        "expect_column_values_to_be_in_set(kind)": _set(kind="partial"),
        "expect_column_values_to_be_in_set(status)": _set(status="current"),
        "expect_column_values_to_be_in_set(metric)": _set(metric="l2"),
        "expect_column_values_to_be_between(dim)": _set(dim=0),
        "expect_column_values_to_be_between(faces_version)": _set(faces_version=-1),
        "expect_column_values_to_be_between(n_vectors)": _set(n_vectors=-5),
        "expect_column_values_to_be_between(n_shards)": _set(n_shards=0),
        "expect_column_values_to_be_between(recall_at_10)": _set(recall_at_10=0.5),
        "expect_column_values_to_be_in_set(index_fits_budget)": _set(estimated_bytes=5_000_000),
        "expect_column_values_to_be_in_set(update_has_parent)": _set(
            kind="full", parent_build_id=h64("b", 0)
        ),
    },
    "suppression": {
        "expect_column_values_to_not_be_null(suppression_id)": _null("suppression_id"),
        "expect_column_values_to_be_unique(suppression_id)": _copy_of_first("suppression_id"),
        "expect_column_values_to_match_regex(suppression_id)": _set(suppression_id="s-1"),
        "expect_column_values_to_be_in_set(kind)": _set(kind="url"),
        "expect_column_values_to_not_be_null(value)": _set(value=None),
        "expect_column_values_to_match_regex(value)[sha256,url_sha256]": _set(kind="url_sha256", value="abc"),
        "expect_column_values_to_match_regex(value)[phash]": _set(kind="phash", value="abc"),
        "expect_column_values_to_match_regex(value)[host]": _set(kind="host", value="evil.example"),
        "expect_column_values_to_not_be_null(erasure_id)": _set(erasure_id=None),
    },
    "dq_results": {
        "expect_compound_columns_to_be_unique(run_id,validation_id,expectation_id)": _copy_of_first(
            "expectation_id"
        ),
        "expect_column_values_to_not_be_null(validation_id)": _null("validation_id"),
        "expect_column_values_to_match_regex(validation_id)": _set(validation_id="v-1"),
        "expect_column_values_to_not_be_null(success)": _set(success=None),
        "expect_column_values_to_be_between(unexpected_count)": _set(unexpected_count=-1),
        "expect_column_values_to_not_match_regex(example_id)": _set(
            example_ids=["https://example.com/me.jpg"]
        ),
    },
    "erasure_audit": {
        "expect_compound_columns_to_be_unique(erasure_id,mode)": _copy_of_first("erasure_id", "mode"),
        "expect_column_values_to_be_in_set(mode)": _set(mode="wipe"),
        "expect_column_values_to_be_in_set(status)": _set(status="done"),
        "expect_column_values_to_be_in_set(selector_kind)": _set(selector_kind="everything"),
        "expect_column_values_to_match_regex(selector_digest)": _set(selector_digest="uk"),
    },
    "erased_selector": {
        "images:expect_column_sum_to_be_between(matching_rows)": _erased_rows_left,
        "images:expect_column_distinct_values_to_equal_set(table_version)": _version_not_checked,
    },
}
# The gate adds a not-null expectation for each NOT NULL column of the table a suite does not check
# itself (ids ending in "[schema]"): the break of each is a NULL in that column.
BREAKS = {
    suite: {
        **{
            e.expectation_id: _null(e.columns[0])
            for e in suites.suite_spec(suite).expectations
            if e.expectation_id.endswith("[schema]")
        },
        **breaks,
    }
    for suite, breaks in BREAKS.items()
}
FIRST_BROKEN_ROW = 2  # rows 0 and 1 stay good (duplicates copy row 0; images' row 1 is an alias of row 0)


def broken_case(suite: str) -> tuple[Case, dict[str, list[str]]]:
    breaks = BREAKS[suite]
    case = good_case(suite, FIRST_BROKEN_ROW + len(breaks) + 1)
    expected = {}
    for k, (expectation_id, brk) in enumerate(breaks.items()):
        expected[expectation_id] = brk(case.rows[FIRST_BROKEN_ROW + k], case)
    return case, expected


def table_for(suite: str) -> str:
    return "images" if suite == "erased_selector" else suite


# ---------------------------------------------------------------------------------------------
# Fixtures: one run context and lake for the module, one GX run per suite and kind of data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("quality") / "lake")


@pytest.fixture(scope="module")
def module_run() -> RunContext:
    return RunContext(job="test_quality")


@pytest.fixture(scope="module")
def good_reports(spark, module_lake, module_run) -> dict[str, runner.QualityReport]:
    reports = {}
    for suite in ALL_SUITES:
        case = good_case(suite, 6)
        check = gate.PublishGate(
            spark, module_lake, module_run, case.parameters, record=suite in RECORDED_GOOD
        )
        reports[suite] = check(
            suite, case.dataframe(spark, exact=True), case.references(spark), table_name=table_for(suite)
        )
    return reports


@pytest.fixture(scope="module")
def broken_reports(
    spark, module_lake, module_run, good_reports
) -> dict[str, tuple[gate.QualityGateError, dict]]:
    out = {}
    run = RunContext(job="test_quality_broken", run_id=module_run.run_id + "-broken")
    for suite in ALL_SUITES:
        case, expected = broken_case(suite)
        check = gate.PublishGate(spark, module_lake, run, case.parameters, record=suite in RECORDED_BROKEN)
        with pytest.raises(gate.QualityGateError) as caught:
            check(
                suite, case.dataframe(spark, exact=False), case.references(spark), table_name=table_for(suite)
            )
        out[suite] = (caught.value, expected)
    return out


# ---------------------------------------------------------------------------------------------
# Suites as files
# ---------------------------------------------------------------------------------------------


def test_every_table_has_a_suite():
    assert set(TABLE_SUITES) == set(table_names())
    assert set(suites.suite_names()) == set(ALL_SUITES)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_suite_files_are_gx_json(suite):
    """Each file is what GX itself writes: loading and dumping it gives the same JSON."""
    raw = json.loads(suites.suite_path(suite).read_text())
    dumped = suites.load_suite(suite).to_json_dict()
    dumped["meta"].pop("great_expectations_version", None)
    assert dumped == raw
    spec = suites.suite_spec(suite)
    if spec.table:
        columns = set(schema_of(spec.table).names)
        assert set(spec.id_columns) <= columns
        for e in spec.expectations:
            for c in e.columns:
                assert c in columns or c in derived.DERIVED_COLUMNS or e.view != derived.ROWS_VIEW, (e, c)


def test_every_expectation_has_a_break():
    for suite in ALL_SUITES:
        spec = suites.suite_spec(suite)
        ids = [e.expectation_id if spec.table else f"images:{e.expectation_id}" for e in spec.expectations]
        assert sorted(BREAKS[suite]) == sorted(ids), suite


def test_vocabularies_match_the_code():
    """Sets written into suites agree with the enums and policy the jobs use."""
    from jobs.core.policy import load_policy
    from jobs.core.reasons import QuarantineReason

    assert suites.default_parameters()["jurisdiction_vocabulary"] == load_policy().vocabulary
    assert suites.default_parameters()["quarantine_reasons"] == sorted(QuarantineReason)
    try:
        from jobs.faces.embed import FaceStatus, FailureReason
    except ImportError:  # pragma: no cover - the embed job is optional here
        pytest.skip("jobs.faces.embed not importable")
    kwargs = {e.expectation_id: e.kwargs for e in suites.suite_spec("face_status").expectations}
    assert sorted(kwargs["expect_column_values_to_be_in_set(status)"]["value_set"]) == sorted(FaceStatus)
    assert sorted(kwargs["expect_column_values_to_be_in_set(reason)"]["value_set"]) == sorted(FailureReason)


def test_missing_parameter_is_a_clear_error(spark, lake):
    df = frame(spark, "faces", [face_row(0)])
    with pytest.raises(ValueError, match="embedding_dim"):
        gate.PublishGate(spark, lake, RunContext(job="t"), parameters={})("faces", df)


# ---------------------------------------------------------------------------------------------
# Good data passes, broken data fails exactly where it was broken
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_suite_passes_on_good_data(good_reports, suite):
    report = good_reports[suite]
    assert report.success, report.failure_message()
    assert len(report.outcomes) == len(suites.suite_spec(suite).expectations)
    assert all(o.error is None for o in report.outcomes)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_broken_data_fails_only_the_broken_expectations(broken_reports, suite):
    error, expected = broken_reports[suite]
    assert {o.expectation_id for o in error.report.failures} == set(expected)
    assert all(o.error is None for o in error.report.outcomes), error.report.failure_message()


@pytest.mark.parametrize(
    "suite,expectation_id", [(s, e) for s in ALL_SUITES for e in BREAKS[s]], ids=lambda v: str(v)
)
def test_each_break_is_caught_by_its_expectation_only(broken_reports, suite, expectation_id):
    error, expected = broken_reports[suite]
    outcome = error.report.outcome(expectation_id)
    assert not outcome.success
    assert sorted(outcome.example_ids) == sorted(i for i in expected[expectation_id] if i)
    # The broken row shows up under no other expectation.
    for other in error.report.failures:
        if other.expectation_id != expectation_id:
            assert not set(expected[expectation_id]) & set(other.example_ids) - set(
                expected[other.expectation_id]
            )
    # The gate's message names it, with its count and example ids.
    message = str(error)
    line = next(line for line in message.splitlines() if f"- {expectation_id}:" in line)
    if outcome.unexpected_count is not None:
        assert f"{outcome.unexpected_count} unexpected" in line
        assert outcome.unexpected_count >= 1
    else:
        assert "observed" in line
    for example in outcome.example_ids[:5]:
        assert example in line


def test_gate_message_and_examples(broken_reports):
    error, _ = broken_reports["images"]
    message = str(error)
    assert message.startswith("quality gate failed: suite images on images")
    assert f"{len(BREAKS['images'])} of {len(error.report.outcomes)} expectation(s) failed" in message
    dup = error.report.outcome("expect_column_values_to_be_unique(image_id)")
    assert dup.unexpected_count == 2 and dup.example_ids == [h64("image", 0)]
    assert "data docs:" in message


# ---------------------------------------------------------------------------------------------
# Results table and Data Docs
# ---------------------------------------------------------------------------------------------


def test_dq_results_rows(spark, module_lake, good_reports, broken_reports):
    results = read_table(spark, module_lake, "dq_results")
    assert schema_differences(results.schema, schema_of("dq_results")) == []
    rows = results.collect()
    n_good = sum(len(suites.suite_spec(s).expectations) for s in RECORDED_GOOD)
    n_broken = sum(len(suites.suite_spec(s).expectations) for s in RECORDED_BROKEN)
    assert len(rows) == n_good + n_broken
    assert sum(r.rows_written for r in good_reports.values()) == n_good
    assert all(r.rows_written == 0 for s, r in good_reports.items() if s not in RECORDED_GOOD)
    for row in rows:
        text = json.dumps(row.asDict(), default=str)
        assert "http://" not in text and "https://" not in text and "example.co" not in text
        for example in row["example_ids"] or []:
            assert "://" not in example and len(example) <= 100
        assert row["data_docs_path"].startswith(module_lake + "/data_docs/validations/")
        assert Path(row["data_docs_path"]).is_file()
    failed = {(r["suite"], r["expectation_id"]) for r in rows if not r["success"]}
    assert failed == {(s, e) for s in RECORDED_BROKEN for e in BREAKS[s]}
    # One validation id per recorded suite run, on each of its rows.
    recorded = [good_reports[s] for s in RECORDED_GOOD] + [
        broken_reports[s][0].report for s in RECORDED_BROKEN
    ]
    by_validation = {r.validation_id: (r.suite, len(r.outcomes)) for r in recorded}
    assert len(by_validation) == len(recorded)
    assert {
        v: (
            next(r["suite"] for r in rows if r["validation_id"] == v),
            sum(r["validation_id"] == v for r in rows),
        )
        for v in {r["validation_id"] for r in rows}
    } == by_validation
    unique = next(
        r
        for r in rows
        if r["expectation_id"] == "expect_column_values_to_be_unique(image_id)" and not r["success"]
    )
    assert unique["unexpected_count"] == 2 and unique["element_count"] == len(BREAKS["images"]) + 3
    assert unique["example_ids"] == [h64("image", 0)]
    pixels = next(r for r in rows if r["expectation_id"] == "expect_column_values_to_be_between(width)")
    assert json.loads(pixels["kwargs"])["max_value"] == PARAMS["max_image_pixels"]
    # The dq_results suite accepts the gate's own rows.
    gate.PublishGate(spark, module_lake, RunContext(job="audit"), record=False)("dq_results", results)


def test_no_personal_data_in_results_or_docs(module_lake, broken_reports):
    docs = Path(module_lake) / "data_docs"
    pages = list(docs.joinpath("validations").rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert "example.com/p/" not in text and "https://img" not in text


def test_data_docs(module_lake, good_reports, broken_reports):
    docs = Path(module_lake) / "data_docs"
    index = docs / "index.html"
    assert index.is_file()
    report = good_reports["images"]
    assert report.data_docs_path == module_lake + "/data_docs/index.html"
    assert len(report.data_docs_pages) == 2  # the rows view and the jurisdiction_tags view
    assert all(Path(p).is_file() for p in report.data_docs_pages)
    assert "images" in index.read_text()


def test_data_docs_copy_to_object_store_uri(spark, tmp_path):
    """Remote lakes get the site built locally, then copied with Hadoop's FileSystem (any URI Spark reads)."""
    site = tmp_path / "site"
    (site / "validations" / "x").mkdir(parents=True)
    (site / "index.html").write_text("<html>index</html>")
    (site / "validations" / "x" / "page.html").write_text("<html>page</html>")
    target = (tmp_path / "remote" / "data_docs").as_uri()
    copy_local_tree(spark, site, target)
    assert (
        tmp_path / "remote" / "data_docs" / "validations" / "x" / "page.html"
    ).read_text() == "<html>page</html>"
    assert (tmp_path / "remote" / "data_docs" / "index.html").is_file()


# ---------------------------------------------------------------------------------------------
# Derived checks and erasure verification on a real Delta table
# ---------------------------------------------------------------------------------------------


def test_with_suppressed_matches_sha_phash_and_host_suffix(spark):
    from jobs.core.ids import url_digest

    images = frame(spark, "images", [image_row(i) for i in range(3)])
    sources = frame(spark, "image_sources", [source_row(i) for i in range(5)])
    suppression = frame(
        spark,
        "suppression",
        [
            {**suppression_row(0), "value": h64("image", 0)},
            {**suppression_row(1), "value": h16("phash", 1)},
            {**suppression_row(3), "value": host_digest("img2.example.com")},
            {**suppression_row(7), "suppression_id": h64("x"), "value": host_digest("example.co.uk.evil")},
            # Whole labels only: "mg4.example.com" is not img4.example.com, nor a parent of it.
            {**suppression_row(11), "suppression_id": h64("y"), "value": host_digest("mg4.example.com")},
            {**suppression_row(2), "value": url_digest(" " + source_row(3)["source_url"] + "#x")},
        ],
    )
    flagged = {
        r["image_id"] for r in derived.with_suppressed(images, suppression).where("suppressed").collect()
    }
    assert flagged == {h64("image", 0), h64("image", 1)}
    flagged = {
        r["image_id"] for r in derived.with_suppressed(sources, suppression).where("suppressed").collect()
    }
    assert flagged == {h64("image", 0), h64("image", 2), h64("image", 3)}


def test_verify_erased_over_versions(spark, lake):
    from delta.tables import DeltaTable

    from jobs.lake.tables import table_uri

    uk, other = image_row(0), image_row(1)
    assert uk["jurisdiction_tags"] == ["uk"] and other["jurisdiction_tags"] == []
    uri = table_uri(lake, "images")
    frame(spark, "images", [uk, other]).write.format("delta").save(uri)  # v0
    selector = "array_contains(jurisdiction_tags, 'uk')"
    DeltaTable.forPath(spark, uri).delete(selector)  # v1: the erasure

    with pytest.raises(gate.QualityGateError) as caught:  # v0 still holds the erased row
        erasure_checks.verify_erased(spark, "images", selector, lake=lake, run=RunContext(job="erase"))
    report = caught.value.report
    assert "e.g. 0" in str(caught.value)
    sums = report.outcome("images:expect_column_sum_to_be_between(matching_rows)")
    assert not sums.success and sums.observed_value == 1 and sums.example_ids == ["0"]
    versions = report.outcome("images:expect_column_distinct_values_to_equal_set(table_version)")
    assert versions.success and versions.kwargs["value_set"] == [0, 1]

    ok = erasure_checks.verify_erased(
        spark, "images", selector, lake=lake, run=RunContext(job="erase"), versions=[1], record=False
    )
    assert ok.success and ok.table_version == 1
    assert ok.outcome("images:expect_column_distinct_values_to_equal_set(table_version)").kwargs[
        "value_set"
    ] == [1]
    assert ok.outcome("images:expect_column_sum_to_be_between(matching_rows)").observed_value == 0
    rows = read_table(spark, lake, "dq_results").where("suite = 'erased_selector'").collect()
    assert {r["table_name"] for r in rows} == {"images"} and len(rows) == 2
    assert {r["table_version"] for r in rows} == {1}
    assert all(selector not in (r["kwargs"] or "") for r in rows)


def test_every_validation_of_a_run_lands_in_dq_results_once(spark, lake):
    from delta.tables import DeltaTable

    from jobs.core.ids import row_id
    from jobs.lake.tables import table_uri

    run = RunContext(job="erase")
    counts = good_case("erased_selector", 3).dataframe(spark, exact=True)

    def validate(table: str) -> runner.QualityReport:
        return runner.run_suite(
            spark,
            counts,
            "erased_selector",
            lake=lake,
            run=run,
            table_name=table,
            table_version=2,
            parameters={"versions_checked": [0, 1, 2]},
            data_docs=False,
        )

    # The erasure verifier checks one generic suite per table, and may check a table twice.
    images, faces, images_again = validate("images"), validate("faces"), validate("images")
    assert images.validation_id == row_id(run.run_id, "erased_selector", "images", 2, 1)
    assert faces.validation_id == row_id(run.run_id, "erased_selector", "faces", 2, 1)
    assert images_again.validation_id == row_id(run.run_id, "erased_selector", "images", 2, 2)
    assert runner.write_results(spark, lake, [images, faces], run) == 4
    assert runner.write_results(spark, lake, [images, faces, images_again], run) == 2
    rows = read_table(spark, lake, "dq_results").collect()
    assert sorted((r["validation_id"], r["table_name"], r["expectation_id"]) for r in rows) == sorted(
        (report.validation_id, report.table_name, f"{report.table_name}:{e}")
        for report in (images, faces, images_again)
        for e in (
            "expect_column_sum_to_be_between(matching_rows)",
            "expect_column_distinct_values_to_equal_set(table_version)",
        )
    )
    assert all(r["run_id"] == run.run_id and r["suite"] == "erased_selector" and r["success"] for r in rows)
    # Writing the same reports again (a retried task) adds no row and no Delta version.
    versions = DeltaTable.forPath(spark, table_uri(lake, "dq_results")).history().count()
    assert runner.write_results(spark, lake, [images, faces, images_again], run) == 0
    assert runner.write_results(spark, lake, [faces], run) == 0 and faces.rows_written == 0
    assert read_table(spark, lake, "dq_results").count() == 6
    assert DeltaTable.forPath(spark, table_uri(lake, "dq_results")).history().count() == versions
    # Another run numbers its validations afresh, under its own run id.
    other = RunContext(job="erase")
    again = runner.run_suite(
        spark,
        counts,
        "erased_selector",
        lake=lake,
        run=other,
        table_name="images",
        table_version=2,
        parameters={"versions_checked": [0, 1, 2]},
        data_docs=False,
    )
    assert again.validation_id == row_id(other.run_id, "erased_selector", "images", 2, 1)


def test_landmarks_may_lie_slightly_outside_the_box_as_scrfd_puts_them(spark):
    from jobs.quality.derived import LANDMARK_MARGIN, with_landmarks_in_box

    box = [100.0, 200.0, 200.0, 400.0]  # 100 wide, 200 high
    inside = [120.0, 250.0, 180.0, 250.0, 150.0, 300.0, 130.0, 350.0, 170.0, 350.0]

    def moved(index: int, value: float) -> list[float]:
        points = list(inside)
        points[index] = value
        return points

    rows = [
        ("inside", box, inside),
        ("12% left, as seen from SCRFD-500M", box, moved(0, 88.0)),
        ("on the margin below", box, moved(9, 400.0 + LANDMARK_MARGIN * 200)),
        ("30% right", box, moved(2, 230.0)),
        ("another face, far above", box, moved(5, 100.0)),
        ("9 landmark values", box, inside[:9]),
        ("no box", None, inside),
    ]
    df = spark.createDataFrame(rows, "case string, bbox array<float>, landmarks array<float>")
    got = {r["case"]: r["landmarks_in_box"] for r in with_landmarks_in_box(df).collect()}
    assert got == {
        "inside": True,
        "12% left, as seen from SCRFD-500M": True,
        "on the margin below": True,
        "30% right": False,
        "another face, far above": False,
        "9 landmark values": False,
        "no box": None,
    }


def test_every_not_null_column_of_a_table_is_checked_by_its_suite() -> None:
    # Delta enforces NOT NULL at write time, after the gate: an unchecked column would let one NULL
    # (e.g. the host of a URL the parser could not read) pass the gate and then fail the whole MERGE.
    from jobs.lake.schemas import schema_of
    from jobs.quality.suites import suite_names, suite_spec

    for name in suite_names():
        spec = suite_spec(name)
        if not spec.table:
            continue
        checked = {
            e.columns[0]
            for e in spec.expectations
            if e.type == "expect_column_values_to_not_be_null" and e.view == "rows"
        }
        required = {f.name for f in schema_of(spec.table).fields if not f.nullable}
        assert required <= checked, (name, sorted(required - checked))


def test_a_null_host_is_refused_by_the_gate_not_by_the_merge(spark, tmp_path) -> None:
    # No suite lists source_host as not-null: the schema-derived expectation catches it.
    sources = frame(
        spark, "image_sources", [{**source_row(0), "source_host": None}, source_row(1)], exact=False
    )
    check = gate.PublishGate(spark, str(tmp_path), RunContext(job="test"), record=False)
    with pytest.raises(gate.QualityGateError) as caught:
        check("image_sources", sources, {"images": frame(spark, "images", [image_row(0), image_row(1)])})
    report = caught.value.report
    failed = {o.expectation_id for o in report.failures}
    assert failed == {"expect_column_values_to_not_be_null(source_host)[schema]"}
