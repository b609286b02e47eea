"""Deterministic row ids: sha256 over unit-separated parts, so reruns produce the same keys."""

from __future__ import annotations

import hashlib
import re

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
