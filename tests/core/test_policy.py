"""Jurisdiction policy: the repository's rules and their edge cases, without Spark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.core.policy import host_of, host_under, load_policy, tags_for_source

POLICY = load_policy()


def test_policy_is_versioned_with_a_vocabulary() -> None:
    assert POLICY.version
    assert POLICY.vocabulary == ["uk"]


@pytest.mark.parametrize(
    ("url", "uk"),
    [
        ("https://www.example.co.uk/a.jpg", True),
        ("https://news.bbc.co.uk/a.jpg", True),
        ("https://gov.uk/a.jpg", True),
        ("https://shop.example.org.uk/a.jpg", True),
        ("https://EXAMPLE.CO.UK/a.jpg", True),  # upper-case host
        ("https://www.example.co.uk:8443/a.jpg", True),  # port
        ("https://www.example.co.uk./a.jpg", True),  # trailing dot
        ("https://user@www.example.co.uk/a.jpg", True),  # userinfo
        ("https://uk.example.com/a.jpg", False),  # uk is a subdomain label, not the TLD
        ("https://example.co.uk.evil.com/a.jpg", False),
        ("https://example.com.au/a.jpg", False),
        ("https://photos.example.je/a.jpg", False),  # Crown Dependencies are not the UK
        ("https://example.gg/a.jpg", False),
        ("https://news.example.im/a.jpg", False),
        ("https://example.com/uk/a.jpg", False),  # path, not host
        ("https://notuk/a.jpg", False),
    ],
)
def test_hosts(url: str, uk: bool) -> None:
    assert (tags_for_source(POLICY, url) == ["uk"]) is uk


@pytest.mark.parametrize(
    ("country", "tags", "uk"),
    [
        ("GB", None, True),
        ("gb", None, True),
        ("UK", None, True),
        ("JE", None, False),
        ("IM", None, False),
        ("GG", None, False),
        ("US", None, False),
        (None, ["uk"], True),
        (None, ["UK", "news"], True),
        (None, ["ukraine"], False),
        (None, [], False),
    ],
)
def test_country_and_crawler_tags(country: str | None, tags: list[str] | None, uk: bool) -> None:
    assert (tags_for_source(POLICY, "https://example.com/a.jpg", None, country, tags) == ["uk"]) is uk


def test_page_url_counts_too() -> None:
    assert tags_for_source(POLICY, "https://cdn.example.com/a.jpg", "https://www.example.co.uk/p") == ["uk"]


def test_host_helpers() -> None:
    assert host_of("https://A.B.CO.UK:80/x") == "a.b.co.uk"
    assert host_of("not a url") is None and host_of(None) is None
    assert host_under("co.uk", "uk") and not host_under("xuk", "uk") and not host_under(None, "uk")


def test_policy_change_is_explicit(tmp_path: Path) -> None:
    changed = tmp_path / "p.toml"
    changed.write_text(
        'version = "v2"\n[tags.uk]\nhost_suffixes = ["uk", "gg"]\ncountries = []\ncrawler_tags = []\n'
        '[tags.je]\nhost_suffixes = ["je"]\n'
    )
    policy = load_policy(changed)
    assert policy.version == "v2" and policy.vocabulary == ["je", "uk"]
    assert tags_for_source(policy, "https://example.gg/a") == ["uk"]
    assert tags_for_source(policy, "https://example.je/a") == ["je"]
    assert tags_for_source(policy, "https://example.com/a", country="GB") == []


def test_policy_agrees_with_the_sample_drop_answer_key(sample_drop: Path) -> None:
    key = json.loads((sample_drop / "answer_key.json").read_text())
    # The drop holds a line of invalid UTF-8 on purpose (quarantined as invalid_encoding).
    lines = (
        (sample_drop / "manifest.jsonl").read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    )
    checked = 0
    for entry in key["lines"]:
        try:
            obj = json.loads(lines[entry["line_no"] - 1])
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("source_url"), str):
            continue
        tags = obj.get("tags") if isinstance(obj.get("tags"), list) else None
        got = tags_for_source(POLICY, obj["source_url"], obj.get("page_url"), obj.get("country"), tags)
        assert (got == ["uk"]) is entry["uk_expected"], entry["line_no"]
        checked += 1
    assert checked > 50
    host_cases = [c for c in key["policy_cases"] if c["field"] in ("source_url", "page_url")]
    assert host_cases
    for case in host_cases:
        assert (tags_for_source(POLICY, f"https://{case['host']}/x.jpg") == ["uk"]) is case["uk"], case
