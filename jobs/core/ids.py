"""Deterministic row ids: sha256 over unit-separated parts, so reruns produce the same keys."""

from __future__ import annotations

import hashlib

SEPARATOR = "\x1f"


def row_id(*parts: object) -> str:
    """sha256 hex of ``parts`` joined by the unit separator (None counts as ""); Spark twin: ``jobs.lake.tables.row_id_col``."""
    return hashlib.sha256(SEPARATOR.join("" if p is None else str(p) for p in parts).encode()).hexdigest()
