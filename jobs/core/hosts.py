"""The one host normaliser: a URL's host as a browser would reach it (WHATWG authority rules, UTS-46)."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import idna

WEB_SCHEMES = ("http", "https")
# WHATWG "forbidden domain code points": a host holding one of these is not a host at all.
_FORBIDDEN = frozenset(" \t\n\r#%/:<>?@[\\]^|\x00\x7f")
# Tabs and newlines anywhere in a URL are removed before parsing (WHATWG basic URL parser).
_STRIPPED = re.compile(r"[\t\n\r]")
_PORT = re.compile(r"\d*")


def split_web_url(url: str | None) -> tuple[str, str] | None:
    """(lower-cased scheme, raw authority) of an absolute URL, or None when it has no authority.

    Follows the WHATWG URL standard for special schemes: leading/trailing C0 controls and spaces
    are trimmed, tabs and newlines dropped, any run of ``/`` or ``\\`` starts the authority, and it
    ends at the first ``/``, ``\\``, ``?`` or ``#`` — so ``https://example.co.uk\\@evil.com`` is
    ``example.co.uk``, as every browser resolves it (Python's ``urlsplit`` says ``evil.com``).
    """
    if not isinstance(url, str):
        return None
    text = _STRIPPED.sub(
        "",
        url.strip(
            "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
            "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "
        ),
    )
    scheme, sep, rest = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return None
    rest = rest.lstrip("/\\")
    authority = re.split(r"[/\\?#]", rest, maxsplit=1)[0]
    return scheme.lower(), authority


def normalize_host(raw: str | None) -> str | None:
    """A host as DNS sees it: percent-decoded, UTS-46 mapped, lower-case ASCII (A-labels), no trailing dot.

    Full-width letters and dots (``ＥＸＡＭＰＬＥ.co．uk``, ``example.co。uk``) map to ASCII,
    ``%``-escapes are decoded, and IDNs become punycode (``bücher.co.uk`` -> ``xn--bcher-kva.co.uk``).
    Returns None when no browser would accept it as a host (empty, forbidden characters, empty labels).
    """
    if not raw:
        return None
    if raw.startswith("["):  # IPv6 literal: kept as written, lower-cased
        return raw.lower() if re.fullmatch(r"\[[0-9A-Fa-f:.]+\]", raw) else None
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
        mapped = idna.uts46_remap(decoded, std3_rules=False, transitional=False)
    except (UnicodeDecodeError, idna.IDNAError, ValueError):
        return None
    if any(ch in _FORBIDDEN for ch in mapped):
        return None
    labels = mapped.split(".")
    if labels and labels[-1] == "":  # one trailing dot is the DNS root, not a label
        labels.pop()
    if not labels or any(label == "" for label in labels):
        return None
    try:
        host = ".".join(_ascii_label(label) for label in labels)
    except (UnicodeError, idna.IDNAError):
        return None
    return host if len(host) <= 253 * 4 else None


def _ascii_label(label: str) -> str:
    if label.isascii():
        return label.lower()
    try:
        return idna.alabel(label).decode("ascii")
    except idna.IDNAError:
        # Code points IDNA2008 disallows (emoji, symbols) still resolve in browsers: plain punycode.
        return "xn--" + label.encode("punycode").decode("ascii")


def host_of(url: str | None) -> str | None:
    """The normalised host of an http(s) URL (see ``normalize_host``), None when it has none.

    userinfo (everything up to the last ``@`` of the authority) and a numeric port are dropped;
    a non-numeric port makes the URL invalid, as in browsers.
    """
    parts = split_web_url(url)
    if parts is None or parts[0] not in WEB_SCHEMES:
        return None
    authority = parts[1].rpartition("@")[2]
    if authority.startswith("["):
        end = authority.find("]")
        host, port = (authority[: end + 1], authority[end + 2 :]) if end > 0 else (authority, "")
        if end > 0 and authority[end + 1 : end + 2] not in ("", ":"):
            return None
    else:
        host, _, port = authority.partition(":")
    if not _PORT.fullmatch(port):
        return None
    return normalize_host(host)


def host_under(host: str | None, suffix: str) -> bool:
    """True when ``host`` is ``suffix`` or ends with ``.suffix`` — whole labels only."""
    return bool(host) and (host == suffix or host.endswith("." + suffix))
