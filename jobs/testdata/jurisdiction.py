"""The answer key's UK oracle (the DESIGN rules, written apart from jobs.core.policy) and its policy cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.hosts import host_of, host_under

# Only host parsing is shared with the pipeline; the rules are restated here so the key stays an
# independent check of jobs.core.policy.


def host_is_uk(host: str | None) -> bool:
    """True when ``host`` is under the .uk ccTLD (not .je/.gg/.im, not a 'uk.' label elsewhere)."""
    return host_under(host, "uk")


def source_is_uk(record: dict[str, Any]) -> bool:
    """The DESIGN rules for one manifest record: .uk host of source/page URL, country GB/UK, tag uk."""
    for key in ("source_url", "page_url"):
        value = record.get(key)
        if isinstance(value, str) and host_is_uk(host_of(value)):
            return True
    country = record.get("country")
    if isinstance(country, str) and country.strip().upper() in {"GB", "UK"}:
        return True
    tags = record.get("tags")
    return isinstance(tags, list) and any(isinstance(t, str) and t.strip().lower() == "uk" for t in tags)


@dataclass(frozen=True)
class SourceCase:
    """One tricky jurisdiction input planted on an ingestible line, with the verdict the rules give."""

    field: str  # which manifest field carries the signal
    value: str
    uk: bool
    why: str
    host: str | None = None  # source_url host, as written (case and port kept)
    page_host: str | None = None
    country: str | None = None
    tags: tuple[str, ...] | None = None


# Each case lands on an ingestible line early in the drop so ingest really meets it.
SOURCE_CASES: tuple[SourceCase, ...] = (
    SourceCase("source_url", "www.example.co.uk", True, "host under the .uk ccTLD", host="www.example.co.uk"),
    SourceCase("source_url", "news.bbc.co.uk", True, "host under the .uk ccTLD", host="news.bbc.co.uk"),
    SourceCase("source_url", "gov.uk", True, "host under the .uk ccTLD", host="gov.uk"),
    SourceCase(
        "source_url", "shop.example.org.uk", True, "host under the .uk ccTLD", host="shop.example.org.uk"
    ),
    SourceCase("source_url", "example.uk", True, "direct .uk registration", host="example.uk"),
    SourceCase("source_url", "EXAMPLE.CO.UK", True, "host names are case-insensitive", host="EXAMPLE.CO.UK"),
    SourceCase(
        "source_url",
        "www.example.co.uk:8443",
        True,
        "the port is not part of the host",
        host="www.example.co.uk:8443",
    ),
    SourceCase(
        "source_url",
        "uk.example.com",
        False,
        "'uk' is a subdomain label, the TLD is .com",
        host="uk.example.com",
    ),
    SourceCase("source_url", "example.com.au", False, "Australian domain", host="example.com.au"),
    SourceCase(
        "source_url",
        "photos.example.je",
        False,
        "Jersey: Crown Dependency, own data-protection law",
        host="photos.example.je",
    ),
    SourceCase(
        "source_url",
        "example.gg",
        False,
        "Guernsey: Crown Dependency, own data-protection law",
        host="example.gg",
    ),
    SourceCase(
        "source_url",
        "news.example.im",
        False,
        "Isle of Man: Crown Dependency, own data-protection law",
        host="news.example.im",
    ),
    SourceCase(
        "source_url",
        "example.co.uk.evil.com",
        False,
        "only the rightmost label is the TLD (.com)",
        host="example.co.uk.evil.com",
    ),
    SourceCase("source_url", "www.example.ie", False, "Ireland is not the UK", host="www.example.ie"),
    SourceCase(
        "page_url",
        "www.example.co.uk",
        True,
        "the page (not the image host) is under .uk",
        host="cdn.example.net",
        page_host="www.example.co.uk",
    ),
    SourceCase(
        "page_url",
        "uk.example.org",
        False,
        "page host's TLD is .org",
        host="cdn.example.net",
        page_host="uk.example.org",
    ),
    SourceCase("country", "GB", True, "country hint GB", host="www.example.com", country="GB"),
    SourceCase(
        "country",
        "UK",
        True,
        "country hint UK (non-ISO alias accepted by policy)",
        host="www.example.com",
        country="UK",
    ),
    SourceCase(
        "country", "gb", True, "country hints are case-insensitive", host="media.example.com", country="gb"
    ),
    SourceCase("country", "JE", False, "Jersey is a Crown Dependency", host="www.example.com", country="JE"),
    SourceCase(
        "country", "IM", False, "Isle of Man is a Crown Dependency", host="www.example.com", country="IM"
    ),
    SourceCase(
        "country", "GG", False, "Guernsey is a Crown Dependency", host="www.example.com", country="GG"
    ),
    SourceCase("country", "US", False, "other country", host="www.example.com", country="US"),
    SourceCase("country", "FR", False, "other country", host="www.example.fr", country="FR"),
    SourceCase("country", "DE", False, "other country", host="photos.example.de", country="DE"),
    SourceCase("tags", "uk", True, "explicit uk tag", host="www.example.com", tags=("news", "uk")),
    SourceCase("tags", "UK", True, "tags are case-insensitive", host="static.example.io", tags=("UK",)),
    SourceCase(
        "tags",
        "ukraine",
        False,
        "only the exact tag 'uk' counts",
        host="www.example.com",
        tags=("ukraine", "news"),
    ),
)
