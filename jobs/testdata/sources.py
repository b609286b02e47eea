"""Manifest fields other than image_path: source and page URLs, crawl times, country and tag hints."""

from __future__ import annotations

import hashlib
import random
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.testdata.jurisdiction import SOURCE_CASES, SourceCase

NON_UK_HOSTS = (
    "www.example.com",
    "cdn.example.net",
    "images.example.org",
    "photos.example.de",
    "www.example.fr",
    "media.example.com",
    "static.example.io",
    "uk.example.com",
    "example.com.au",
    "photos.example.je",
    "example.gg",
    "news.example.im",
    "example.co.uk.evil.com",
    "www.example.ie",
    "img.example.jp",
)
UK_HOSTS = (
    "www.example.co.uk",
    "news.bbc.co.uk",
    "gov.uk",
    "shop.example.org.uk",
    "EXAMPLE.CO.UK",
    "www.example.co.uk:8443",
    "example.uk",
    "img.example.ltd.uk",
)
COUNTRIES = ("US", "FR", "DE", "GB", "UK", "gb", "JE", "IM", "GG", "IE", "AU", "US", "DE", "GB")
TAGS = ("portrait", "news", "event", "sport", "profile", "street", "family", "ukraine", "uk", "UK", "travel")
PLATFORMS = ("photoshare", "socialnet", "newsroom", "forum", "blog", "shop")
SECTIONS = ("news", "people", "gallery", "p", "media", "uk", "world", "events")


def crawled_at(rng: random.Random, line_no: int) -> str:
    """A zoned crawl time (UTC ``Z`` or ``+01:00``) for ``line_no``."""
    # Crawl time advances with the line so later lines look like later fetches; no wall clock.
    start = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=line_no * 37 + rng.randrange(3600))
    if rng.random() < 0.5:
        return start.strftime("%Y-%m-%dT%H:%M:%SZ")
    local = start + timedelta(hours=1)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + "+01:00"


class SourceMaker:
    """Source fields for each line; hands out the policy cases, in order, to the first ingestible lines."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._cases: deque[SourceCase] = deque(SOURCE_CASES)
        self._case_lines: dict[int, int] = {}  # index in SOURCE_CASES -> line it landed on

    def source(
        self,
        rng: random.Random,
        line_no: int,
        ext: str,
        *,
        case: SourceCase | None = None,
        force_uk: bool | None = None,
    ) -> dict[str, Any]:
        """Manifest fields other than image_path: URLs, time, hints, platform and unknown extras.

        ``force_uk`` True/False picks a plain UK/non-UK source (a scenario needs it); None draws freely.
        """
        slug = hashlib.sha256(f"{self.seed}/url/{line_no}".encode()).hexdigest()[:12]
        page_host: str | None = None
        country: str | None = None
        tags: list[str] | None = None
        if case is not None:
            host, page_host, country = case.host or "www.example.com", case.page_host, case.country
            tags = list(case.tags) if case.tags is not None else None
        elif force_uk is True:
            host = rng.choice(("www.example.co.uk", "news.bbc.co.uk"))
        elif force_uk is False:
            host = rng.choice(("www.example.com", "media.example.com"))
        else:
            roll = rng.random()
            if roll < 0.18:
                host = rng.choice(UK_HOSTS)
            elif roll < 0.23:
                host, page_host = "cdn.example.net", rng.choice(UK_HOSTS)
            else:
                host = rng.choice(NON_UK_HOSTS)
            if rng.random() < 0.3:
                country = rng.choice(COUNTRIES)
            if rng.random() < 0.35:
                tags = rng.sample(TAGS, rng.randint(1, 3))
        query = f"?w={rng.choice((320, 640, 1024))}" if rng.random() < 0.15 else ""
        record: dict[str, Any] = {"source_url": f"https://{host}/{rng.choice(SECTIONS)}/{slug}.{ext}{query}"}
        if page_host is None and rng.random() < 0.6 and case is None and force_uk is None:
            page_host = host
        if page_host is not None:
            record["page_url"] = (
                f"https://{page_host}/{rng.choice(SECTIONS)}/story-{rng.randrange(10**6)}.html"
            )
        record["crawled_at"] = crawled_at(rng, line_no)
        if country is not None:
            record["country"] = country
        if tags is not None:
            record["tags"] = tags
        if force_uk is False:
            record["country"] = "US"
        if rng.random() < 0.7:
            record["platform"] = rng.choice(PLATFORMS)
        if rng.random() < 0.15:
            record["crawler_version"] = "2.3"
        if rng.random() < 0.1:
            record["http_status"] = 200
        return record

    def ok_source(self, rng: random.Random, line_no: int, ext: str) -> dict[str, Any]:
        """Source fields of an ingestible line: the next unplanted policy case, else a free draw."""
        if self._cases:
            case = self._cases.popleft()
            self._case_lines[SOURCE_CASES.index(case)] = line_no
            return self.source(rng, line_no, ext, case=case)
        return self.source(rng, line_no, ext)

    def scenario_source(self, rng: random.Random, line_no: int, ext: str) -> dict[str, Any]:
        """Like ``ok_source``, except that lines 1 and 2 are fixed anchors: a UK source, then a non-UK one."""
        if line_no == 1:
            return self.source(rng, line_no, ext, force_uk=True)
        if line_no == 2:
            return self.source(rng, line_no, ext, force_uk=False)
        return self.ok_source(rng, line_no, ext)

    def policy_cases(self) -> list[dict[str, Any]]:
        """The answer key's ``policy_cases``: every case, its verdict and the line it landed on."""
        out = []
        for i, case in enumerate(SOURCE_CASES):
            host = case.page_host if case.field == "page_url" else case.host
            out.append(
                {
                    "field": case.field,
                    "value": case.value,
                    "host": host if case.field.endswith("url") else None,
                    "uk": case.uk,
                    "why": case.why,
                    "line_no": self._case_lines.get(i),
                }
            )
        return out
