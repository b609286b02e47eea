"""An erasure request: its selector, validated and normalised, its digest and its deterministic id (pure)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from jobs.core.hosts import normalize_host
from jobs.core.ids import row_id

SELECTOR_KINDS = ("jurisdiction", "source_domain", "image_hashes", "subject_photo")
MODES = ("dry_run", "execute")
_TAG = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TEXT = re.compile(r"^[\w .,:;/#@()+\-]{1,120}$")
MAX_HASHES = 100_000


class ErasureRequestError(ValueError):
    """A request that cannot run as given; the message says which field and why (never echoing personal data)."""


@dataclass(frozen=True)
class ErasureRequest:
    """What to erase, how, and on whose authority."""

    kind: str
    values: tuple[str, ...]
    mode: str
    ticket: str
    requested_by: str
    expand_faces: float | None = None
    subject_threshold: float | None = None
    photo: bytes | None = field(default=None, repr=False)

    def selector(self) -> dict[str, object]:
        """The normalised selector as recorded for its digest (the subject photo by its sha256)."""
        values = (
            [hashlib.sha256(self.photo or b"").hexdigest()]
            if self.kind == "subject_photo"
            else list(self.values)
        )
        return {
            "kind": self.kind,
            "values": sorted(values),
            "expand_faces": self.expand_faces,
            "subject_threshold": self.subject_threshold,
        }

    @property
    def digest(self) -> str:
        """sha256 of the normalised selector: what the audit records instead of the selector itself."""
        return hashlib.sha256(json.dumps(self.selector(), sort_keys=True).encode()).hexdigest()

    @property
    def erasure_id(self) -> str:
        """Same selector and ticket, same id: a rerun resumes or re-verifies the same erasure."""
        return row_id("erasure", self.digest, self.ticket)

    @property
    def executes(self) -> bool:
        return self.mode == "execute"

    def describe(self) -> str:
        """For logs and reports: kind and size only, so a subject's domain or photo is never written."""
        shown = ",".join(self.values) if self.kind == "jurisdiction" else f"{len(self.values)} value(s)"
        return f"{self.kind}={shown} mode={self.mode} ticket={self.ticket}"


def _text(name: str, value: str | None) -> str:
    value = (value or "").strip()
    if not value:
        raise ErasureRequestError(f"{name} is required")
    if not _TEXT.match(value):
        raise ErasureRequestError(
            f"{name} must be 1-120 characters of letters, digits, spaces and . , : ; / # @ ( ) + - _"
        )
    return value


def _threshold(name: str, value: float | str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ErasureRequestError(f"{name} must be a number between 0 and 1") from None
    if not 0.0 < number <= 1.0:
        raise ErasureRequestError(f"{name} must be a number between 0 and 1 (exclusive of 0)")
    return number


def parse_values(kind: str, raw: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The selector's values, normalised: lower-case tags, hosts as a browser resolves them, sha256 hex."""
    if kind not in SELECTOR_KINDS:
        raise ErasureRequestError(f"selector kind must be one of {', '.join(SELECTOR_KINDS)}")
    items = raw.replace(",", " ").split() if isinstance(raw, str) else [str(v).strip() for v in raw or ()]
    items = [i for i in items if i]
    if kind == "jurisdiction":
        items = items or ["uk"]
        bad = [i for i in items if not _TAG.match(i.lower())]
        if bad:
            raise ErasureRequestError("a jurisdiction tag is 1-32 letters, digits, '-' or '_' (e.g. uk)")
        return tuple(sorted({i.lower() for i in items}))
    if kind == "source_domain":
        if len(items) != 1:
            raise ErasureRequestError("source_domain takes exactly one domain (e.g. example.co.uk)")
        host = normalize_host(items[0])
        if not host or "." not in host:
            raise ErasureRequestError("source_domain is not a valid host name (e.g. example.co.uk)")
        return (host,)
    if kind == "image_hashes":
        if not items:
            raise ErasureRequestError("image_hashes needs at least one sha256")
        if len(items) > MAX_HASHES:
            raise ErasureRequestError(f"image_hashes takes at most {MAX_HASHES} hashes per request")
        bad = sum(1 for i in items if not _SHA256.match(i.lower()))
        if bad:
            raise ErasureRequestError(f"{bad} value(s) of image_hashes are not 64 hex characters (sha256)")
        return tuple(sorted({i.lower() for i in items}))
    return ()


def build_request(
    kind: str,
    values: str | list[str] | tuple[str, ...] | None,
    *,
    mode: str,
    ticket: str | None,
    requested_by: str | None,
    expand_faces: float | str | None = None,
    subject_threshold: float | str | None = None,
    photo: bytes | None = None,
) -> ErasureRequest:
    """Validate every field of a request (CLI flags or an Airflow form) into an :class:`ErasureRequest`."""
    if mode not in MODES:
        raise ErasureRequestError("mode must be dry_run or execute")
    parsed = parse_values(kind, values)
    if kind == "subject_photo" and not photo:
        raise ErasureRequestError("subject_photo needs a readable photo file")
    return ErasureRequest(
        kind=kind,
        values=parsed,
        mode=mode,
        ticket=_text("ticket", ticket),
        requested_by=_text("requested_by", requested_by),
        expand_faces=_threshold("expand_faces", expand_faces),
        subject_threshold=_threshold("subject_threshold", subject_threshold),
        photo=photo if kind == "subject_photo" else None,
    )
