"""The one host normaliser (jobs.core.hosts): browser-equivalent hosts for policy, columns, suppression and erasure."""

from __future__ import annotations

import pytest

from jobs.core.hosts import host_of, host_under, normalize_host
from jobs.core.policy import load_policy, tags_for_source


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://A.B.CO.UK:80/x", "a.b.co.uk"),
        ("https://example.co.uk./x", "example.co.uk"),
        ("https://bücher.co.uk/a.jpg", "xn--bcher-kva.co.uk"),
        ("https://xn--bcher-kva.co.uk/a.jpg", "xn--bcher-kva.co.uk"),
        ("https://example.co．uk/a.jpg", "example.co.uk"),  # full-width full stop
        ("https://example.co。uk/a.jpg", "example.co.uk"),  # ideographic full stop
        ("https://ＥＸＡＭＰＬＥ.CO.UK/a.jpg", "example.co.uk"),  # full-width capitals
        ("https://example.co.%75k/a.jpg", "example.co.uk"),  # %-escaped host
        ("https://example.co.uk\\@evil.com/a.jpg", "example.co.uk"),  # browsers: backslash ends the host
        ("https://user:pw@example.com:8443/a.jpg", "example.com"),
        ("HTTPS:\\\\example.com\\a.jpg", "example.com"),
        ("https://photos.example.com/a b|c%zz.jpg", "photos.example.com"),  # oddities in the path only
        ("  https://example.com/a.jpg\n", "example.com"),
        ("https://exa\tmple.com/", "example.com"),  # tabs and newlines are removed, as in browsers
        ("https://[2001:DB8::1]:443/a.jpg", "[2001:db8::1]"),
        ("https://😀.example/a.jpg", "xn--e28h.example"),
    ],
)
def test_host_of_matches_what_a_browser_reaches(url: str, host: str) -> None:
    assert host_of(url) == host


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "not a url",
        "ftp://example.com/a.jpg",
        "javascript:alert(1)",
        "https://",
        "https://bad host.example/a.jpg",
        "https://a|b.example/a.jpg",
        "https://ex%zzample.com/a.jpg",
        "https://example.com:80x/a.jpg",
        "https://a..b/a.jpg",
        "https://%ff%fe.com/",
        "https://[zz]/",
    ],
)
def test_host_of_refuses_what_no_browser_accepts(url: str | None) -> None:
    assert host_of(url) is None


def test_normalize_host_is_idempotent_on_its_output() -> None:
    for raw in ["bücher.co.uk", "ＥＸＡＭＰＬＥ.co．uk", "Example.COM.", "😀.example"]:
        once = normalize_host(raw)
        assert once is not None and once.isascii() and once == once.lower()
        assert normalize_host(once) == once


def test_host_under_compares_whole_labels() -> None:
    assert host_under("co.uk", "uk") and host_under("a.b.co.uk", "co.uk")
    assert (
        not host_under("xuk", "uk") and not host_under(None, "uk") and not host_under("uk.example.com", "uk")
    )


def test_policy_tags_the_hosts_the_old_parser_missed() -> None:
    policy = load_policy()
    for url in [
        "https://bücher.co.uk/a.jpg",
        "https://example.co．uk/a.jpg",
        "https://example.co。uk/a.jpg",
        "https://ＥＸＡＭＰＬＥ.CO.UK/a.jpg",
        "https://example.co.%75k/a.jpg",
        "https://example.co.uk\\@evil.com/",
        "https://news.example.london/a.jpg",
        "https://x.scot/a.jpg",
        "https://x.wales/",
        "https://x.cymru/",
    ]:
        assert tags_for_source(policy, url) == ["uk"], url
    for url in [
        "https://photos.example.je/",
        "https://example.gg/",
        "https://example.im/",
        "https://uk.example.com/",
        "https://example.co.uk.evil.com/",
    ]:
        assert tags_for_source(policy, url) == [], url


@pytest.mark.parametrize(
    ("country", "uk"),
    [
        ("GB", True),
        ("uk", True),
        ("GBR", True),
        ("GB-SCT", True),
        ("gb-nir", True),
        ("JE", False),
        ("GG", False),
        ("IM", False),
        ("GI", False),
        ("GBX", False),
    ],
)
def test_policy_country_spellings(country: str, uk: bool) -> None:
    assert (tags_for_source(load_policy(), "https://example.com/", country=country) == ["uk"]) is uk


def test_policy_file_examples_hold() -> None:
    import tomllib

    from jobs.core.policy import DEFAULT_POLICY

    raw = tomllib.loads(DEFAULT_POLICY.read_text())["tags"]["uk"]
    policy = load_policy()
    for host in raw["uk_examples"]:
        assert tags_for_source(policy, f"https://{host}/a.jpg") == ["uk"], host
    for host in raw["not_uk_examples"]:
        assert tags_for_source(policy, f"https://{host}/a.jpg") == [], host
