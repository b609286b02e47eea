"""Jurisdiction tag policy: load the versioned policy file and tag a source (pure, no Spark)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jobs.core.hosts import host_of, host_under
from jobs.core.paths import resource_dir

DEFAULT_POLICY = resource_dir("policies") / "jurisdiction.toml"


@dataclass(frozen=True)
class TagRule:
    """When a source earns one jurisdiction tag."""

    tag: str
    host_suffixes: tuple[str, ...]
    countries: frozenset[str]
    country_subdivisions_of: frozenset[str]
    crawler_tags: frozenset[str]

    def matches_country(self, code: str) -> bool:
        """``code`` is one of ``countries`` or an ISO 3166-2 subdivision (``GB-SCT``) of one listed."""
        country, dash, _ = code.partition("-")
        return code in self.countries or (bool(dash) and country in self.country_subdivisions_of)


@dataclass(frozen=True)
class Policy:
    """A versioned set of tag rules; ``vocabulary`` is every tag it can produce."""

    version: str
    rules: tuple[TagRule, ...]

    @property
    def vocabulary(self) -> list[str]:
        return sorted(r.tag for r in self.rules)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a policy TOML file (the repository's ``policies/jurisdiction.toml`` by default)."""
    path = Path(path) if path else DEFAULT_POLICY
    raw = tomllib.loads(path.read_text())
    rules = tuple(
        TagRule(
            tag=tag,
            host_suffixes=tuple(s.lower().strip(".") for s in spec.get("host_suffixes", [])),
            countries=frozenset(c.upper() for c in spec.get("countries", [])),
            country_subdivisions_of=frozenset(c.upper() for c in spec.get("country_subdivisions_of", [])),
            crawler_tags=frozenset(t.lower() for t in spec.get("crawler_tags", [])),
        )
        for tag, spec in sorted(raw["tags"].items())
    )
    return Policy(version=str(raw["version"]), rules=rules)


def tags_for_source(
    policy: Policy,
    source_url: str | None,
    page_url: str | None = None,
    country: str | None = None,
    crawler_tags: Iterable[str] | None = None,
) -> list[str]:
    """The sorted jurisdiction tags one source earns under ``policy``."""
    hosts = [h for h in (host_of(source_url), host_of(page_url)) if h]
    country_code = (country or "").strip().upper()
    labels = {t.strip().lower() for t in (crawler_tags or []) if isinstance(t, str)}
    out = set()
    for rule in policy.rules:
        if (
            any(host_under(h, s) for h in hosts for s in rule.host_suffixes)
            or rule.matches_country(country_code)
            or labels & rule.crawler_tags
        ):
            out.add(rule.tag)
    return sorted(out)
