"""Crawl-drop manifest contract: parse and validate one manifest.jsonl line (pure, no Spark)."""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobs.core.hosts import host_of
from jobs.core.reasons import QuarantineReason

REQUIRED = ("image_path", "source_url", "crawled_at")
KNOWN = (*REQUIRED, "page_url", "country", "tags", "platform")
RAW_LINE_LIMIT = 4096
MAX_LINE_BYTES = 1 << 20
"""Longer manifest lines are quarantined unparsed: no crawler writes a megabyte of metadata per image."""
UTF8_BOM = b"\xef\xbb\xbf"
# Crawl times outside this range come from broken clocks or crafted lines (and years 1 or 9999
# overflow once converted to UTC); they are quarantined, not stored.
EARLIEST_CRAWL = datetime(1990, 1, 1, tzinfo=UTC)
LATEST_CRAWL = datetime(2200, 1, 1, tzinfo=UTC)
# ISO 3166-1 alpha-2 (GB) or alpha-3 (GBR), or an ISO 3166-2 subdivision (GB-SCT); ASCII only.
_URL_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")
_COUNTRY = re.compile(r"[A-Z]{2,3}|[A-Z]{2}-[A-Z0-9]{1,3}")


@dataclass(frozen=True)
class ManifestRecord:
    """A valid manifest line, normalised (UTC time, upper-case country, unknown fields as JSON)."""

    line_no: int
    image_path: str
    source_url: str
    source_host: str
    page_url: str | None
    page_host: str | None
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


def safe_relative_path(image_path: str) -> str | None:
    """The normalised path inside the drop folder, or None when it is absolute or escapes it."""
    if not image_path or "\x00" in image_path or "\\" in image_path:
        return None
    # "scheme:/…" is a URL (file:/etc/passwd, s3a://…); "a:b.jpg" is a file name with a colon.
    if image_path.startswith("/") or _URL_PREFIX.match(image_path):
        return None
    normal = posixpath.normpath(image_path)
    if normal == ".." or normal.startswith("../") or normal == ".":
        return None
    return normal


def parse_timestamp(value: str) -> datetime | None:
    """ISO-8601 with an explicit zone, as UTC; None when unparsable, zone-less or out of range."""
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return None
        utc = parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # year 1 at +01:00 or 9999 at -01:00 leave datetime's range
        return None
    return utc if EARLIEST_CRAWL <= utc < LATEST_CRAWL else None


class _StrictJSONError(ValueError):
    """The text parses as JSON only under Python's lenient rules (duplicate keys, NaN, huge numbers)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        # Parsers disagree on which duplicate wins, so the line means different things to different readers.
        raise _StrictJSONError("duplicate key " + next(k for k in keys if keys.count(k) > 1)[:40])
    return dict(pairs)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSONError("number out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise _StrictJSONError(f"{name} is not JSON")


def loads_strict(text: str) -> Any:
    """RFC 8259 JSON only: duplicate keys, NaN/Infinity and numbers that overflow are errors."""
    return json.loads(
        text, object_pairs_hook=_no_duplicate_keys, parse_float=_finite_float, parse_constant=_reject_constant
    )


def decode_line(data: bytes, line_no: int) -> str:
    """A manifest line's text: strict UTF-8, the BOM of line 1 and a CRLF's CR removed.

    Raises ``UnicodeDecodeError`` for bytes that are not UTF-8 — never replaced by U+FFFD, which
    would store an altered URL.
    """
    if line_no == 1 and data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    if data.endswith(b"\r"):
        data = data[:-1]
    return data.decode("utf-8", errors="strict")


def parse_line(line: str | bytes, line_no: int) -> ManifestRecord | Rejection:
    """Validate one manifest line against the crawl-drop contract (DESIGN.md).

    ``line`` is the line's text, or its raw bytes (then decoded by ``decode_line``). Never raises:
    every failure is a ``Rejection`` with a ``QuarantineReason``.
    """
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raw = line[:RAW_LINE_LIMIT].decode("utf-8", errors="backslashreplace")
            return Rejection(
                line_no, QuarantineReason.LINE_TOO_LONG, f"{len(line)} bytes > {MAX_LINE_BYTES}", raw
            )
        try:
            line = decode_line(line, line_no)
        except UnicodeDecodeError as exc:
            raw = line[:RAW_LINE_LIMIT].decode("utf-8", errors="backslashreplace")
            return Rejection(
                line_no, QuarantineReason.INVALID_ENCODING, f"not UTF-8 at byte {exc.start}", raw
            )
    if len(line) > MAX_LINE_BYTES:
        return Rejection(
            line_no, QuarantineReason.LINE_TOO_LONG, f"{len(line)} characters", line[:RAW_LINE_LIMIT]
        )
    try:
        return _parse_text(line, line_no)
    except Exception as exc:  # noqa: BLE001 — one crafted line must never fail the batch
        return Rejection(
            line_no,
            QuarantineReason.MALFORMED_JSON,
            f"unparsable: {type(exc).__name__}",
            _printable(line[:RAW_LINE_LIMIT]),
        )


def _printable(text: str) -> str:
    """``text`` safe to encode as UTF-8 (lone surrogates escaped)."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _parse_text(line: str, line_no: int) -> ManifestRecord | Rejection:
    raw = _printable(line[:RAW_LINE_LIMIT])

    def reject(reason: QuarantineReason, detail: str, obj: dict[str, Any] | None = None) -> Rejection:
        obj = obj or {}
        image_path = obj.get("image_path") if isinstance(obj.get("image_path"), str) else None
        source_url = obj.get("source_url") if isinstance(obj.get("source_url"), str) else None
        return Rejection(
            line_no,
            reason,
            detail,
            raw,
            None if image_path is None else _printable(image_path)[:RAW_LINE_LIMIT],
            None if source_url is None else _printable(source_url)[:RAW_LINE_LIMIT],
        )

    try:
        obj = loads_strict(line)
    except json.JSONDecodeError as exc:
        return reject(QuarantineReason.MALFORMED_JSON, f"not JSON: {exc.msg} at column {exc.colno}")
    except _StrictJSONError as exc:
        return reject(QuarantineReason.MALFORMED_JSON, f"not strict JSON: {exc}")
    except RecursionError:
        return reject(QuarantineReason.MALFORMED_JSON, "not JSON: nested too deep")
    except ValueError:  # e.g. an integer of more digits than Python converts
        return reject(QuarantineReason.MALFORMED_JSON, "not JSON: number out of range")
    if not isinstance(obj, dict):
        return reject(QuarantineReason.MALFORMED_JSON, f"a JSON {type(obj).__name__}, not an object")
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # "\ud800": a lone surrogate escape is valid JSON but no text
        return reject(QuarantineReason.INVALID_ENCODING, "a string holds a lone UTF-16 surrogate")

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
    source_host = host_of(obj["source_url"])
    if source_host is None:
        return reject(
            QuarantineReason.INVALID_FIELD, "source_url is not an http(s) URL with a valid host", obj
        )
    page_url = obj.get("page_url") or None
    page_host = None
    if page_url is not None:
        page_host = host_of(page_url)
        if page_host is None:
            return reject(
                QuarantineReason.INVALID_FIELD, "page_url is not an http(s) URL with a valid host", obj
            )
    crawled_at = parse_timestamp(obj["crawled_at"])
    if crawled_at is None:
        return reject(
            QuarantineReason.INVALID_FIELD,
            "crawled_at is not ISO-8601 with a time zone between 1990 and 2200",
            obj,
        )

    country = obj.get("country") or None
    if country is not None:
        country = country.strip()
        # isascii first: "ＧＢ".isalpha() is true and "ß".upper() is "SS".
        if not country.isascii() or not _COUNTRY.fullmatch(country.upper()):
            return reject(QuarantineReason.INVALID_FIELD, "country is not an ISO 3166 code", obj)
        country = country.upper()
    tags = obj.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        return reject(QuarantineReason.INVALID_FIELD, "tags must be a list of strings", obj)

    unknown = {k: v for k, v in obj.items() if k not in KNOWN}
    return ManifestRecord(
        line_no=line_no,
        image_path=image_path,
        source_url=obj["source_url"],
        source_host=source_host,
        page_url=page_url,
        page_host=page_host,
        crawled_at=crawled_at,
        country=country,
        tags=tags,
        platform=obj.get("platform") or None,
        extra=json.dumps(unknown, sort_keys=True, ensure_ascii=False) if unknown else None,
    )
