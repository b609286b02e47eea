"""Crawl-drop manifest contract: parse and validate one manifest.jsonl line (pure, no Spark)."""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jobs.reasons import QuarantineReason

REQUIRED = ("image_path", "source_url", "crawled_at")
KNOWN = (*REQUIRED, "page_url", "country", "tags", "platform")
RAW_LINE_LIMIT = 4096


@dataclass(frozen=True)
class ManifestRecord:
    """A valid manifest line, normalised (UTC time, upper-case country, unknown fields as JSON)."""

    line_no: int
    image_path: str
    source_url: str
    page_url: str | None
    crawled_at: datetime
    country: str | None
    tags: list[str] | None
    platform: str | None
    extra: str | None


@dataclass(frozen=True)
class Rejection:
    """A manifest line that cannot be ingested, with the reason and what could be read of it."""

    line_no: int
    reason: QuarantineReason
    detail: str
    raw_line: str
    image_path: str | None = None
    source_url: str | None = None


def drop_id_for(manifest_bytes: bytes) -> str:
    """Deterministic drop id: the same manifest always gets the same id, so reruns are no-ops."""
    return hashlib.sha256(manifest_bytes).hexdigest()[:16]


def row_id(*parts: object) -> str:
    """Deterministic id from parts (sha256 over their unit-separated text)."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()


def safe_relative_path(image_path: str) -> str | None:
    """The normalised path inside the drop folder, or None when it is absolute or escapes it."""
    if not image_path or "\x00" in image_path or "\\" in image_path:
        return None
    if image_path.startswith("/") or urlsplit(image_path).scheme:
        return None
    normal = posixpath.normpath(image_path)
    if normal == ".." or normal.startswith("../") or normal == ".":
        return None
    return normal


def _valid_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed port or IPv6 literal
        return False


def parse_timestamp(value: str) -> datetime | None:
    """ISO-8601 with an explicit zone, as UTC; None when unparsable or zone-less."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return parsed.astimezone(UTC)


def parse_line(line: str, line_no: int) -> ManifestRecord | Rejection:
    """Validate one manifest line against the crawl-drop contract (DESIGN.md)."""
    raw = line[:RAW_LINE_LIMIT]

    def reject(reason: QuarantineReason, detail: str, obj: dict[str, Any] | None = None) -> Rejection:
        obj = obj or {}
        image_path = obj.get("image_path") if isinstance(obj.get("image_path"), str) else None
        source_url = obj.get("source_url") if isinstance(obj.get("source_url"), str) else None
        return Rejection(line_no, reason, detail, raw, image_path, source_url)

    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        return reject(QuarantineReason.MALFORMED_JSON, f"not JSON: {exc.msg} at column {exc.colno}"
                      if isinstance(exc, json.JSONDecodeError) else "not JSON: nested too deep")
    if not isinstance(obj, dict):
        return reject(QuarantineReason.MALFORMED_JSON, f"a JSON {type(obj).__name__}, not an object")

    # Absent or null is missing; present but empty or of the wrong type is invalid.
    for name in REQUIRED:
        if obj.get(name) is None:
            return reject(QuarantineReason.MISSING_FIELD, f"required field {name} is missing", obj)
    for name in (*REQUIRED, "page_url", "country", "platform"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return reject(QuarantineReason.INVALID_FIELD, f"{name} must be a string", obj)
        if name in REQUIRED and not obj[name].strip():
            return reject(QuarantineReason.INVALID_FIELD, f"{name} is empty", obj)

    image_path = safe_relative_path(obj["image_path"])
    if image_path is None:
        return reject(QuarantineReason.PATH_ESCAPE, "image_path is absolute or leaves the drop folder", obj)
    if not _valid_http_url(obj["source_url"]):
        return reject(QuarantineReason.INVALID_FIELD, "source_url is not an http(s) URL with a host", obj)
    page_url = obj.get("page_url") or None
    if page_url is not None and not _valid_http_url(page_url):
        return reject(QuarantineReason.INVALID_FIELD, "page_url is not an http(s) URL with a host", obj)
    crawled_at = parse_timestamp(obj["crawled_at"])
    if crawled_at is None:
        return reject(QuarantineReason.INVALID_FIELD, "crawled_at is not ISO-8601 with a time zone", obj)

    country = obj.get("country") or None
    if country is not None:
        country = country.strip().upper()
        if len(country) != 2 or not country.isalpha():
            return reject(QuarantineReason.INVALID_FIELD, "country is not a two-letter code", obj)
    tags = obj.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        return reject(QuarantineReason.INVALID_FIELD, "tags must be a list of strings", obj)

    unknown = {k: v for k, v in obj.items() if k not in KNOWN}
    return ManifestRecord(
        line_no=line_no,
        image_path=image_path,
        source_url=obj["source_url"],
        page_url=page_url,
        crawled_at=crawled_at,
        country=country,
        tags=tags,
        platform=obj.get("platform") or None,
        extra=json.dumps(unknown, sort_keys=True, ensure_ascii=False) if unknown else None,
    )
