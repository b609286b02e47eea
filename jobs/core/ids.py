"""Deterministic row ids: sha256 over unit-separated parts, so reruns produce the same keys."""

from __future__ import annotations

import hashlib
import re

from jobs.core.hosts import normalize_host

SEPARATOR = "\x1f"


def row_id(*parts: object) -> str:
    """sha256 hex of ``parts`` joined by the unit separator (None counts as ""); Spark twin: ``jobs.lake.tables.row_id_col``."""
    return hashlib.sha256(SEPARATOR.join("" if p is None else str(p) for p in parts).encode()).hexdigest()


def normalize_url(url: str) -> str:
    """The form a URL is hashed in: trimmed, fragment dropped, lower-cased (over-matching is the safe side)."""
    return re.sub(r"#.*$", "", url.strip()).lower()


def url_digest(url: str) -> str:
    """sha256 of the normalised URL: what the suppression list stores instead of the URL; Spark twin ``url_sha256``."""
    return hashlib.sha256(normalize_url(url).encode("utf-8")).hexdigest()


def host_digest(host: str) -> str:
    """sha256 of a host (suffix) normalised by ``jobs.core.hosts.normalize_host``: what the suppression list
    stores for kind ``host`` instead of the host; Spark twin ``jobs.lake.tables.host_sha256``.

    ``EXAMPLE.co.uk.``, ``ｅｘａｍｐｌｅ.co.uk`` and ``example.co.uk`` give one digest, as ingest sees one
    host. Raises ValueError when no browser would accept the text as a host (the text is not echoed:
    it may be what an erasure is about).
    """
    normalised = normalize_host(host.strip())
    if normalised is None:
        raise ValueError("not a host name: expected a domain such as example.co.uk")
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()
