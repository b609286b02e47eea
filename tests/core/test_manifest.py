"""The crawl-drop contract: every manifest line is either a normalised record or a reasoned rejection."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from jobs.core.manifest import ManifestRecord, Rejection, drop_id_for, parse_line, safe_relative_path
from jobs.core.reasons import QuarantineReason as R

GOOD = {
    "image_path": "images/a.jpg",
    "source_url": "https://www.example.co.uk/a.jpg",
    "crawled_at": "2026-03-01T10:00:00+01:00",
}


def line(**changes: object) -> str:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


def test_valid_line_is_normalised() -> None:
    rec = parse_line(
        line(
            country="gb",
            tags=["uk"],
            platform="forum",
            page_url="http://p.example.com/x",
            crawler_version="2.3",
            http_status=200,
        ),
        7,
    )
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
    [
        ("a.jpg", "a.jpg"),
        ("images/./a.jpg", "images/a.jpg"),
        ("images/x/../a.jpg", "images/a.jpg"),
        ("..", None),
        ("../a", None),
        ("/a", None),
        ("", None),
        (".", None),
        ("s3://b/a.jpg", None),
    ],
)
def test_safe_relative_path(path: str, expected: str | None) -> None:
    assert safe_relative_path(path) == expected


def test_drop_id_is_deterministic_and_content_based() -> None:
    assert drop_id_for(b"a\n") == drop_id_for(b"a\n")
    assert drop_id_for(b"a\n") != drop_id_for(b"b\n")
    assert len(drop_id_for(b"")) == 16


# ---------------------------------------------------------------- hostile lines (issue #10)


def _line(**overrides: object) -> dict:
    base = {
        "image_path": "a.jpg",
        "source_url": "https://example.com/a.jpg",
        "crawled_at": "2026-03-01T12:00:00Z",
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            b'{"image_path": "a.jpg", "image_path": "b.jpg", "source_url": "https://e.com/", "crawled_at": "2026-01-01Z"}',
            R.MALFORMED_JSON,
        ),
        (json.dumps(_line())[:-1].encode() + b', "n": ' + b"9" * 5000 + b"}", R.MALFORMED_JSON),
        (json.dumps(_line())[:-1].encode() + b', "n": 1e999}', R.MALFORMED_JSON),
        (json.dumps(_line())[:-1].encode() + b', "n": -Infinity}', R.MALFORMED_JSON),
        (json.dumps(_line()).encode().replace(b"example", b"exa\xffmple"), R.INVALID_ENCODING),
        (json.dumps(_line())[:-1].encode() + b', "x": "\\udc00"}', R.INVALID_ENCODING),
        (b"{" + b'"a": 1, ' * 200_000 + b'"b": 2}', R.LINE_TOO_LONG),
        (json.dumps(_line(crawled_at="0001-01-01T00:00:00+01:00")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(crawled_at="9999-12-31T23:59:59-01:00")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(crawled_at="1970-01-01T00:00:00Z")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(country="ＧＢ")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(country="éé")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(country="ß")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(source_url="https://bad host.com/a.jpg")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(page_url="https://a|b.com/")).encode(), R.INVALID_FIELD),
        (json.dumps(_line(image_path="file:/etc/passwd")).encode(), R.PATH_ESCAPE),
        (json.dumps(_line(image_path="s3a://bucket/x.jpg")).encode(), R.PATH_ESCAPE),
        (b"[" * 50_000 + b"]" * 50_000, R.MALFORMED_JSON),
    ],
)
def test_hostile_lines_are_rejected_with_a_reason_never_raised(raw: bytes, reason: R) -> None:
    parsed = parse_line(raw, 3)
    assert isinstance(parsed, Rejection) and parsed.reason == reason, parsed
    parsed.raw_line.encode("utf-8")  # storable text: no lone surrogates
    assert len(parsed.raw_line) <= 4096


def test_bom_crlf_and_odd_but_valid_values_are_accepted() -> None:
    line = (
        b"\xef\xbb\xbf" + json.dumps(_line(country="gb-sct", image_path="x:y/[a]%20b.jpg")).encode() + b"\r"
    )
    parsed = parse_line(line, 1)
    assert isinstance(parsed, ManifestRecord)
    assert parsed.country == "GB-SCT" and parsed.image_path == "x:y/[a]%20b.jpg"
    assert parse_line(json.dumps(_line(country="GBR")).replace(", ", ",\r "), 2).country == "GBR"
    # The BOM is only stripped from line 1; elsewhere it is not JSON.
    assert isinstance(parse_line(line, 2), Rejection)


def test_valid_lines_carry_the_normalised_hosts() -> None:
    parsed = parse_line(
        json.dumps(_line(source_url="https://bücher.co.uk/a.jpg", page_url="https://EX.com./p")), 1
    )
    assert isinstance(parsed, ManifestRecord)
    assert (parsed.source_host, parsed.page_host) == ("xn--bcher-kva.co.uk", "ex.com")
    assert parsed.source_url == "https://bücher.co.uk/a.jpg"  # the URL itself is stored as given
