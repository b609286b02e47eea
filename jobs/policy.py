"""Jurisdiction tag policy: load the versioned policy file and tag a source (pure, no Spark)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "jurisdiction.toml"


@dataclass(frozen=True)
class TagRule:
    """When a source earns one jurisdiction tag."""

    tag: str
    host_suffixes: tuple[str, ...]
    countries: frozenset[str]
    crawler_tags: frozenset[str]


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
            crawler_tags=frozenset(t.lower() for t in spec.get("crawler_tags", [])),
        )
        for tag, spec in sorted(raw["tags"].items())
    )
    return Policy(version=str(raw["version"]), rules=rules)


def host_of(url: str | None) -> str | None:
    """Lower-cased host of a URL without port or trailing dot; None when there is none."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname  # already lower-cased, port and userinfo removed
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def host_under(host: str | None, suffix: str) -> bool:
    """True when ``host`` is ``suffix`` or ends with ``.suffix`` — whole labels only."""
    return bool(host) and (host == suffix or host.endswith("." + suffix))


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
            or country_code in rule.countries
            or labels & rule.crawler_tags
        ):
            out.add(rule.tag)
    return sorted(out)
