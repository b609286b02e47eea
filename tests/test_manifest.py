"""The crawl-drop contract: every manifest line is either a normalised record or a reasoned rejection."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from jobs.manifest import ManifestRecord, Rejection, drop_id_for, parse_line, safe_relative_path
from jobs.reasons import QuarantineReason as R

GOOD = {"image_path": "images/a.jpg", "source_url": "https://www.example.co.uk/a.jpg", "crawled_at": "2026-03-01T10:00:00+01:00"}


def line(**changes: object) -> str:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def test_valid_line_is_normalised() -> None:
    rec = parse_line(line(country="gb", tags=["uk"], platform="forum", page_url="http://p.example.com/x",
                          crawler_version="2.3", http_status=200), 7)
    assert isinstance(rec, ManifestRecord)
    assert rec.line_no == 7
    assert rec.crawled_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert rec.country == "GB"
    assert rec.tags == ["uk"]
    assert rec.page_url == "http://p.example.com/x"
    # Unknown fields are kept, not rejected.
    assert json.loads(rec.extra) == {"crawler_version": "2.3", "http_status": 200}


def test_z_suffix_and_minimal_line() -> None:
    rec = parse_line(line(crawled_at="2026-03-01T10:00:00Z"), 1)
    assert isinstance(rec, ManifestRecord)
    assert rec.crawled_at.hour == 10 and rec.extra is None and rec.country is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json at all", R.MALFORMED_JSON),
        ('{"image_path": "a.jpg", "source_url": ', R.MALFORMED_JSON),
        ('["image_path", "a.jpg"]', R.MALFORMED_JSON),
        ("42", R.MALFORMED_JSON),
        (line(source_url=...), R.MISSING_FIELD),
        (line(crawled_at=...), R.MISSING_FIELD),
        (line(image_path=None), R.MISSING_FIELD),
        (line(image_path=""), R.INVALID_FIELD),
        (line(crawled_at=""), R.INVALID_FIELD),
        (line(crawled_at="2026-03-01T10:00:00"), R.INVALID_FIELD),  # no zone
        (line(crawled_at="yesterday"), R.INVALID_FIELD),
        (line(tags="uk"), R.INVALID_FIELD),
        (line(tags=["uk", 3]), R.INVALID_FIELD),
        (line(country="United Kingdom"), R.INVALID_FIELD),
        (line(source_url="ftp://example.com/a.jpg"), R.INVALID_FIELD),
        (line(source_url="not a url"), R.INVALID_FIELD),
        (line(page_url="javascript:alert(1)"), R.INVALID_FIELD),
        (line(image_path=12), R.INVALID_FIELD),
        (line(image_path="../etc/passwd"), R.PATH_ESCAPE),
        (line(image_path="/etc/passwd"), R.PATH_ESCAPE),
        (line(image_path="images/../../x.jpg"), R.PATH_ESCAPE),
        (line(image_path="file:///etc/passwd"), R.PATH_ESCAPE),
        (line(image_path="images\\..\\..\\x.jpg"), R.PATH_ESCAPE),
    ],
)
def test_bad_lines_are_rejected_with_reason(text: str, reason: R) -> None:
    out = parse_line(text, 3)
    assert isinstance(out, Rejection)
    assert out.reason == reason
    assert out.line_no == 3
    assert out.raw_line == text


def test_rejection_keeps_what_could_be_read() -> None:
    out = parse_line(line(image_path="../x.jpg"), 1)
    assert isinstance(out, Rejection)
    assert out.image_path == "../x.jpg" and out.source_url == GOOD["source_url"]


def test_raw_line_is_capped() -> None:
    out = parse_line("x" * 10_000, 1)
    assert isinstance(out, Rejection) and len(out.raw_line) == 4096


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a.jpg", "a.jpg"), ("images/./a.jpg", "images/a.jpg"), ("images/x/../a.jpg", "images/a.jpg"),
     ("..", None), ("../a", None), ("/a", None), ("", None), (".", None), ("s3://b/a.jpg", None)],
)
def test_safe_relative_path(path: str, expected: str | None) -> None:
    assert safe_relative_path(path) == expected


def test_drop_id_is_deterministic_and_content_based() -> None:
    assert drop_id_for(b"a\n") == drop_id_for(b"a\n")
    assert drop_id_for(b"a\n") != drop_id_for(b"b\n")
    assert len(drop_id_for(b"")) == 16
