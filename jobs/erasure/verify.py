"""The independent erasure verifier: searches every file and every readable version for what an erasure removed."""

from __future__ import annotations

import codecs
import hashlib
import html
import json
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import mask
from jobs.core.ids import url_digest
from jobs.core.runs import RunContext
from jobs.index.plan import faiss_id
from jobs.lake.fs import arrow_uri, hadoop_path
from jobs.lake.schemas import table_names
from jobs.lake.tables import read_table, table_uri, url_sha256
from jobs.quality.erasure_checks import check_erased, table_versions
from jobs.quality.runner import DATA_DOCS, run_suite, write_results

log = logging.getLogger("facelake")

TABLES_DIR = "tables"
INDEX_DIR = "_index"
"""Where FAISS build folders live under the lake root (``jobs.index.store.INDEX_DIR``)."""
DROP_MANIFEST = "manifest.jsonl"
ERASURE_WORK_DIR = "_erasure"
"""The erasure job's own folder under the lake root (its plan holds erased ids until the run completes):
the one place not searched."""
HASH_EXEMPT_TABLES = frozenset({"suppression"})
"""Tables that hold hashes of erased content by design (the never-ingest-again list): searched for URLs
and image bytes only."""
ROW_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "images": (("image_id", "image_id"), ("canonical_id", "image_id")),
    "image_sources": (("image_id", "image_id"), ("source_url", "url"), ("page_url", "url")),
    "faces": (("image_id", "image_id"), ("face_id", "face_id")),
    "face_status": (("image_id", "image_id"),),
    "image_links": (("image_id", "image_id"), ("other_image_id", "image_id")),
    "crawl_manifest": (("source_url", "url"), ("page_url", "url")),
    "quarantine": (("file_sha256", "image_id"), ("source_url", "url")),
}
"""Per data table: (column, marker kind) pairs whose match makes a row an erased row; ``url`` columns are
compared by ``url_sha256``."""

CHUNK = 4 * 1024 * 1024
"""Bytes read at a time from a file."""
MIN_OVERLAP = 64 * 1024
"""Characters of one chunk's end scanned again with the next chunk, so no token is cut in two."""
PREFIX_MIN = 32
"""Shortest prefix of a 64-hex id that counts as the id: Delta's statistics keep 32 characters of strings."""
DROP_TABLES = ("crawl_manifest", "quarantine")
"""Tables whose ``drop_uri`` column names the drops ingest read."""
MANIFEST_LINE_CAP = 1024 * 1024 + 1
"""Manifest lines longer than ingest accepts are scanned as text in pieces, not parsed."""
MAX_LISTED = 5

_SCHEME = re.compile(r"https?://", re.IGNORECASE)
_URL_BODY = re.compile(r"https?://[^\s\"'<>\\`]*", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}*"
_ANY_HEX = re.compile(r"[0-9a-f]{16,}", re.IGNORECASE)
_DELTA_FILE = re.compile(r"^(\d+)\.")


# --------------------------------------------------------------------------------------------
# What is searched for, and what was found
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Markers:
    """What an erasure removed, as the verifier searches for it."""

    image_ids: frozenset[str]
    """sha256 hex of the image content (= ``images.image_id``) of every erased image."""
    phashes: frozenset[str] = frozenset()
    """``images.phash`` values (16 hex) of erased images."""
    url_hashes: frozenset[str] = frozenset()
    """``jobs.core.ids.url_digest(url)`` of every erased source URL."""
    urls: frozenset[str] = frozenset()
    """The URLs themselves: only held in memory during a run, never written anywhere."""
    face_ids: frozenset[str] = frozenset()
    """``faces.face_id`` of erased faces, when known."""


@dataclass(frozen=True)
class Leftover:
    """One place still holding something an erasure removed (ids and counts only, never the value)."""

    store: str
    """A table name, ``index``, ``landing`` or ``data_docs``."""
    path: str
    """Relative to the lake root; for landing files, the drop's URI."""
    kind: str
    """image_id | face_id | phash | url | url_hash | image_bytes | rows."""
    count: int
    detail: str = ""

    def describe(self) -> str:
        """One line naming the store, path, kind and count."""
        return f"{self.store} {self.path}: {self.kind} x{self.count}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass
class Verification:
    """The verifier's answer: leftovers found, one check per scan or table, files scanned."""

    leftovers: list[Leftover]
    checks: list[tuple[str, bool, str]]
    """(check name, passed, detail) — the detail holds counts and versions only."""
    files_scanned: int

    @property
    def passed(self) -> bool:
        """Nothing left anywhere and every check passed."""
        return not self.leftovers and all(ok for _, ok, _ in self.checks)

    def by_store(self) -> dict[str, int]:
        """Leftovers per store (how many places, not occurrences)."""
        return dict(sorted(Counter(left.store for left in self.leftovers).items()))

    def summary(self) -> str:
        """One line: passed or failed, files scanned, leftovers per store, failed checks."""
        failed = [name for name, ok, _ in self.checks if not ok]
        stores = ", ".join(f"{s} {n}" for s, n in self.by_store().items())
        return (
            f"erasure verification {'passed' if self.passed else 'FAILED'}: {self.files_scanned} files "
            f"scanned, {len(self.checks)} checks, {len(self.leftovers)} leftovers"
            + (f" ({stores})" if stores else "")
            + (f", {len(failed)} failed checks ({', '.join(failed)})" if failed else "")
        )

    def failure_message(self) -> str:
        """The summary plus every leftover and failed check, one per line."""
        lines = [self.summary()]
        lines += [f"  - {left.describe()}" for left in self.leftovers]
        lines += [f"  - check {name} failed: {detail}" for name, ok, detail in self.checks if not ok]
        return "\n".join(lines)


class ErasureVerificationError(RuntimeError):
    """Something an erasure removed is still somewhere; the message names each place (never the value)."""

    def __init__(self, verification: Verification) -> None:
        super().__init__(verification.failure_message())
        self.verification = verification


# --------------------------------------------------------------------------------------------
# Pure scanning: text, values, Arrow arrays, FAISS ids
# --------------------------------------------------------------------------------------------


def _is_hex(value: str, length: int | None = None) -> bool:
    return (
        bool(value)
        and (length is None or len(value) == length)
        and all(c in "0123456789abcdef" for c in value.lower())
    )


def url_variants(token: str) -> list[str]:
    """The forms of a URL-looking token whose digest is compared: as found, without trailing punctuation,
    HTML-unescaped."""
    forms = [token, token.rstrip(_URL_TRAILING)]
    if "&" in token:
        forms += [html.unescape(f) for f in list(forms)]
    return list(dict.fromkeys(f for f in forms if f))


def hex_tokens(text: str, min_length: int = 16) -> list[str]:
    """Hex runs of ``min_length`` to 64 characters not touching another hex character, lower-cased."""
    pattern = re.compile(rf"(?<![0-9a-f])[0-9a-f]{{{min_length},64}}(?![0-9a-f])", re.IGNORECASE)
    return [m.group().lower() for m in pattern.finditer(text)]


def url_tokens(text: str) -> list[str]:
    """Every ``http(s)://`` token of ``text`` (up to whitespace, a quote, a bracket or a backslash)."""
    return [_URL_BODY.match(text, m.start()).group() for m in _SCHEME.finditer(text)]


class MarkerIndex:
    """Markers arranged for fast search: ids by value and 32-character prefix, URLs by length, FAISS ids."""

    def __init__(self, markers: Markers) -> None:
        self.image_ids = frozenset(v.lower() for v in markers.image_ids)
        self.face_ids = frozenset(markers.face_ids)
        self.phashes = frozenset(v.lower() for v in markers.phashes if _is_hex(v))
        self.url_hashes = frozenset(
            {v.lower() for v in markers.url_hashes} | {url_digest(u) for u in markers.urls}
        )
        self.urls = frozenset(markers.urls)
        self.hex_kinds: dict[str, str] = {}
        for values, kind in (
            (self.url_hashes, "url_hash"),
            ({f.lower() for f in self.face_ids}, "face_id"),
            (self.image_ids, "image_id"),
        ):
            for v in values:
                if _is_hex(v, 64):
                    self.hex_kinds[v] = kind
        self.prefixes: dict[str, list[str]] = {}
        for v in self.hex_kinds:
            self.prefixes.setdefault(v[:PREFIX_MIN], []).append(v)
        self.phash_lengths = frozenset(len(p) for p in self.phashes)
        shortest = min([PREFIX_MIN, *(n for n in self.phash_lengths if n >= 8)])
        self.hex_pattern = re.compile(rf"(?<![0-9a-f])[0-9a-f]{{{shortest},64}}(?![0-9a-f])", re.IGNORECASE)
        grouped: dict[int, set[str]] = {}
        # Markers that none of the patterns above find are searched for as plain substrings.
        self.literals: list[tuple[str, str]] = []
        for u in self.urls:
            if _SCHEME.match(u):
                grouped.setdefault(len(u), set()).add(u)
            elif u:
                self.literals.append((u, "url"))
        self.urls_by_length = {n: frozenset(s) for n, s in sorted(grouped.items())}
        for values, kind in ((markers.image_ids, "image_id"), (markers.face_ids, "face_id")):
            self.literals += [(v, kind) for v in values if v and not _is_hex(v, 64)]
        self.faiss_ids = frozenset(faiss_id(f) for f in markers.face_ids)
        self.overlap = max(MIN_OVERLAP, 2 * max([len(u) for u in self.urls] or [0]) + 2)
        self.prefilter_hashes = None if self.literals else f"[0-9a-f]{{{shortest}}}|https?://"
        self.prefilter_urls = None if any(k == "url" for _, k in self.literals) else "https?://"

    def _hex_kind(self, token: str) -> str | None:
        token = token.lower()
        if len(token) in self.phash_lengths and token in self.phashes:
            return "phash"
        if len(token) == 64:
            return self.hex_kinds.get(token)
        if len(token) >= PREFIX_MIN:
            for full in self.prefixes.get(token[:PREFIX_MIN], ()):
                if full.startswith(token):
                    return self.hex_kinds[full]
        return None

    def url_matches(self, value: str) -> bool:
        """Whether ``value`` is an erased URL (exactly, or by the digest of its normalised form)."""
        return value in self.urls or (bool(self.url_hashes) and url_digest(value) in self.url_hashes)

    def scan_text(self, text: str, *, hashes: bool = True, lo: int = 0, hi: int | None = None) -> Counter:
        """Marker occurrences in ``text`` by kind, counting those that start in ``[lo, hi)``.

        Hex runs are looked up as ids, url hashes, 32+ character id prefixes (Delta statistics) and
        phashes (``hashes=False`` skips all of these: the suppression list holds them by design);
        each ``http(s)://`` position counts once when an erased URL starts there or the digest of
        the URL token there is an erased URL's; other markers are found as substrings.
        """
        hi = len(text) if hi is None else hi
        found: Counter = Counter()
        if hashes and (self.hex_kinds or self.phashes):
            for m in self.hex_pattern.finditer(text, lo):
                if m.start() >= hi:
                    break
                kind = self._hex_kind(m.group())
                if kind:
                    found[kind] += 1
        if self.urls_by_length or self.url_hashes:
            for m in _SCHEME.finditer(text, lo):
                p = m.start()
                if p >= hi:
                    break
                hit = any(text[p : p + n] in group for n, group in self.urls_by_length.items())
                if not hit and self.url_hashes:
                    token = _URL_BODY.match(text, p).group()
                    hit = any(url_digest(v) in self.url_hashes for v in url_variants(token))
                if hit:
                    found["url"] += 1
        for literal, kind in self.literals:
            if not hashes and kind != "url":
                continue
            i = text.find(literal, lo)
            while i != -1 and i < hi:
                found[kind] += 1
                i = text.find(literal, i + 1)
        return found

    def scan_value(self, value: str, column: str = "", *, hashes: bool = True) -> Counter:
        """``scan_text`` of one stored string; a value of a ``…url`` column also counts when it is an
        erased URL as a whole (digest of its normalised form)."""
        found = self.scan_text(value, hashes=hashes)
        if column.lower().endswith("url") and not found["url"] and self.url_matches(value):
            found["url"] += 1
        return found


def scan_chunks(chunks: Iterable[bytes], index: MarkerIndex, *, hashes: bool = True) -> tuple[Counter, str]:
    """Stream ``chunks`` of a file as UTF-8 text (errors replaced) through ``index.scan_text``.

    Memory stays bounded: each chunk is scanned with the end of the previous one, and every match is
    counted once, in the chunk where it starts. ``\\/`` (a JSON-escaped slash) is read as ``/``.
    Returns the counts and the sha256 of the bytes (kind ``image_bytes`` when it is an erased image's).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    digest = hashlib.sha256()
    found: Counter = Counter()
    context, pending, held = "", "", ""

    def flush(final: bool) -> None:
        nonlocal context, pending
        buf = context + pending
        lo = len(context)
        hi = len(buf) if final else max(lo, len(buf) - index.overlap)
        found.update(index.scan_text(buf, hashes=hashes, lo=lo, hi=hi))
        context, pending = buf[max(0, hi - 1) : hi], buf[hi:]

    for chunk in chunks:
        digest.update(chunk)
        piece = held + decoder.decode(chunk)
        held = ""
        if piece.endswith("\\"):
            piece, held = piece[:-1], "\\"
        pending += piece.replace("\\/", "/")
        if len(pending) >= CHUNK:
            flush(False)
    pending += (held + decoder.decode(b"", final=True)).replace("\\/", "/")
    flush(True)
    sha = digest.hexdigest()
    if sha in index.image_ids:
        found["image_bytes"] += 1
    return found, sha


def _leaves(array: Any, name: str, field_name: str | None = None) -> Iterator[tuple[str, str, Any]]:
    """(column path, nearest field name, flat array) for every leaf of a possibly nested Arrow array."""
    field_name = name if field_name is None else field_name
    if isinstance(array, pa.ChunkedArray):
        for chunk in array.chunks:
            yield from _leaves(chunk, name, field_name)
        return
    kind = array.type
    if pa.types.is_dictionary(kind):
        yield from _leaves(array.dictionary_decode(), name, field_name)
    elif pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            child = kind.field(i).name
            yield from _leaves(array.field(i), f"{name}.{child}", child)
    elif pa.types.is_map(kind):
        yield from _leaves(array.keys, f"{name}.key", field_name)
        yield from _leaves(array.items, f"{name}.value", field_name)
    elif any(
        test(kind)
        for test in (
            pa.types.is_list,
            pa.types.is_large_list,
            pa.types.is_fixed_size_list,
            pa.types.is_list_view,
            pa.types.is_large_list_view,
        )
    ):
        yield from _leaves(array.flatten(), f"{name}.element", field_name)
    elif pa.types.is_string_view(kind):
        yield name, field_name, array.cast(pa.large_string())
    elif pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind):
        yield name, field_name, array.cast(pa.large_binary())
    else:
        yield name, field_name, array


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_bytes(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def scan_array(array: Any, name: str, index: MarkerIndex, *, hashes: bool = True) -> Counter:
    """Marker occurrences in one Arrow column (nested ones walked to their leaves), by kind.

    Strings: ``scan_value`` of each distinct value (times its count). Bytes: the sha256 of each value
    against erased image ids (``image_bytes``) and a text scan of values that could hold a token.
    ``faiss_id`` integers (index id maps) against the FAISS ids of erased faces (``face_id``).
    """
    found: Counter = Counter()
    wanted_faiss = pa.array(sorted(index.faiss_ids), type=pa.int64())
    for _, column, leaf in _leaves(array, name):
        kind = leaf.type
        if _is_text(kind) or _is_bytes(kind):
            text = _is_text(kind)
            if not text:
                for value, count in _distinct(leaf):
                    if hashlib.sha256(value).hexdigest() in index.image_ids:
                        found["image_bytes"] += count
            candidates = leaf
            pattern = index.prefilter_hashes if hashes else index.prefilter_urls
            if pattern is not None and not (text and column.lower().endswith("url")) and len(leaf):
                candidates = leaf.filter(pc.match_substring_regex(leaf, pattern=pattern, ignore_case=True))
            for value, count in _distinct(candidates):
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                for k, n in index.scan_value(value, column if text else "", hashes=hashes).items():
                    found[k] += n * count
        elif hashes and index.faiss_ids and column == "faiss_id" and pa.types.is_integer(kind):
            hits = pc.sum(pc.is_in(leaf.cast(pa.int64()), value_set=wanted_faiss)).as_py()
            found["face_id"] += int(hits or 0)
    return found


def _distinct(array: Any) -> Iterator[tuple[Any, int]]:
    if not len(array):
        return
    counts = pc.value_counts(array)
    for value, count in zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True):
        if value is not None:
            yield value, int(count)


def stored_faiss_ids(index: Any) -> np.ndarray | None:
    """The ids a FAISS index holds (``IndexIDMap``/``IndexIDMap2`` id map, or every IVF list's ids);
    None for an index type that stores no ids."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    invlists = ivf.invlists
    parts = []
    for list_no in range(invlists.nlist):
        n = invlists.list_size(list_no)
        if n:
            pointer = invlists.get_ids(list_no)
            parts.append(np.array(faiss.rev_swig_ptr(pointer, n), dtype=np.int64))
            invlists.release_ids(list_no, pointer)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Files: a folder on local disk (links never followed) or on an object store
# --------------------------------------------------------------------------------------------


@dataclass
class _File:
    rel: str
    size: int
    open: Callable[[], BinaryIO]


def _open_at(dir_fd: int, name: str) -> BinaryIO:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{name}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _Tree:
    """The files under one folder: local (``os.fwalk``, symbolic links never followed) or any pyarrow
    file system (object stores have no links)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.links_skipped = 0
        target = arrow_uri(uri)
        self.local: str | None = None
        self.fs: Any = None
        if "://" in target:
            from pyarrow import fs

            self.fs, self.base = fs.FileSystem.from_uri(target)
            self.base = self.base.rstrip("/")
        else:
            self.local = target

    def exists(self) -> bool:
        if self.local is not None:
            return os.path.isdir(self.local)
        from pyarrow import fs

        return self.fs.get_file_info(self.base).type == fs.FileType.Directory

    def files(self, skip_top: frozenset[str] = frozenset()) -> Iterator[_File]:
        """Every regular file, sorted by path within each folder, except under the top-level folders
        ``skip_top``; each ``open`` is valid during its step only."""
        if not self.exists():
            return
        if self.local is not None:
            for dirpath, dirnames, filenames, dir_fd in os.fwalk(self.local, follow_symlinks=False):
                if os.path.normpath(dirpath) == os.path.normpath(self.local):
                    dirnames[:] = [d for d in dirnames if d not in skip_top]
                dirnames.sort()
                for name in sorted(filenames):
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        self.links_skipped += stat.S_ISLNK(st.st_mode)
                        continue
                    rel = os.path.relpath(os.path.join(dirpath, name), self.local).replace(os.sep, "/")
                    yield _File(rel, st.st_size, partial(_open_at, dir_fd, name))
                self.links_skipped += sum(1 for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
            return
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self.base, recursive=True))
        for info in sorted(infos, key=lambda i: i.path):
            rel = info.path[len(self.base) :].lstrip("/")
            if info.type == fs.FileType.File and rel.split("/", 1)[0] not in skip_top:
                yield _File(rel, int(info.size or 0), partial(self.fs.open_input_file, info.path))


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _is_parquet(stream: BinaryIO, size: int) -> bool:
    if size < 12:
        return False
    stream.seek(0)
    head = stream.read(4)
    stream.seek(size - 4)
    tail = stream.read(4)
    stream.seek(0)
    return head == b"PAR1" and tail == b"PAR1"


@dataclass
class _Found:
    counts: Counter = field(default_factory=Counter)
    columns: set[str] = field(default_factory=set)
    error: str | None = None
    parquet: bool = False
    name_hit: bool = False


def _scan_parquet(stream: BinaryIO, index: MarkerIndex, hashes: bool) -> _Found:
    """Every column of every row group, one column chunk at a time, plus the footer's key-value metadata."""
    import pyarrow.parquet as pq

    result = _Found(parquet=True)
    parquet = pq.ParquetFile(stream)
    for key, value in (parquet.metadata.metadata or {}).items():
        text = key.decode("utf-8", "replace") + "\n" + value.decode("utf-8", "replace")
        counts = index.scan_text(text, hashes=hashes)
        if counts:
            result.counts.update(counts)
            result.columns.add("(file metadata)")
    names = parquet.schema_arrow.names
    for group in range(parquet.num_row_groups):
        for name in names:
            column = parquet.read_row_group(group, columns=[name]).column(0)
            counts = scan_array(column, name, index, hashes=hashes)
            if +counts:
                result.counts.update(counts)
                result.columns.add(name)
            del column
    return result


def _scan_file(item: _File, index: MarkerIndex, *, hashes: bool = True) -> _Found:
    """One file: Parquet column by column (by its magic bytes, whatever its name), anything else as text.

    A file that looks like Parquet but cannot be read is scanned as text, and the error is returned.
    """
    with item.open() as stream:
        if _is_parquet(stream, item.size):
            try:
                return _scan_parquet(stream, index, hashes)
            except Exception as exc:  # a damaged or planted file: still searched, as bytes
                error = f"unreadable as Parquet ({type(exc).__name__})"
                stream.seek(0)
                counts, _ = scan_chunks(_read_chunks(stream), index, hashes=hashes)
                return _Found(counts, error=error)
        counts, _ = scan_chunks(_read_chunks(stream), index, hashes=hashes)
        return _Found(counts)


# --------------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------------


class _Run:
    """What one verification collects: leftovers, checks, files scanned; names made safe to show."""

    def __init__(self, index: MarkerIndex) -> None:
        self.index = index
        self.leftovers: list[Leftover] = []
        self.checks: list[tuple[str, bool, str]] = []
        self.files = 0

    def safe(self, text: str) -> str:
        """``text`` (a path, a column name) with any marker in it replaced; credentials masked."""
        text = str(mask(text))
        if not self.index.scan_text(text):
            return text
        redacted = _ANY_HEX.sub("<hex>", _URL_BODY.sub("<url>", text))
        for literal, _ in self.index.literals:
            redacted = redacted.replace(literal, "<marker>")
        return redacted if not self.index.scan_text(redacted) else "<withheld: the name holds a marker>"

    def add(self, store: str, path: str, counts: Counter, detail: str = "") -> int:
        """One leftover per kind found; returns how many were added."""
        added = 0
        for kind, count in sorted(counts.items()):
            if count > 0:
                self.leftovers.append(Leftover(store, self.safe(path), kind, int(count), self.safe(detail)))
                added += 1
        return added

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append((self.safe(name), passed, self.safe(detail)))


def _table_file_role(rel: str) -> str:
    """What a file under a table folder is, for the leftover's detail (with its version when it has one)."""
    parts = rel.split("/")
    name = parts[-1]
    version = _DELTA_FILE.match(name)
    at = f", version {int(version.group(1))}" if version else ""
    if "_delta_log" in parts:
        if ".checkpoint" in name or "_sidecars" in parts:
            return "checkpoint" + at
        if name == "_last_checkpoint":
            return "last checkpoint pointer"
        if name.startswith("."):
            return "file-system checksum"
        if name.endswith(".crc"):
            return "checksum" + at
        if name.endswith(".json"):
            return "commit" + at
        return "log file"
    if "_change_data" in parts:
        return "change data file"
    if name.endswith(".parquet"):
        return "data file"
    return "file"


def _describe_found(role: str, found: _Found) -> str:
    columns = sorted(found.columns)
    listed = ", ".join(columns[:MAX_LISTED]) + (", …" if len(columns) > MAX_LISTED else "")
    return role + (f"; columns {listed}" if listed else "") + ("; the file name" if found.name_hit else "")


def _scan_one(run: _Run, item: _File, store: str, path: str, hashes: bool, role: str) -> int:
    """Scan one file (its name too); returns how many leftovers it added."""
    run.files += 1
    try:
        found = _scan_file(item, run.index, hashes=hashes)
    except OSError as exc:
        run.check(f"read {path}", False, f"could not be read ({type(exc).__name__})")
        return 0
    name_hits = run.index.scan_text(path, hashes=hashes)
    if name_hits:
        found.counts.update(name_hits)
        found.name_hit = True
    if found.error:
        run.check(f"read {path}", False, found.error)
    return run.add(store, path, found.counts, _describe_found(role, found))


def _scan_tree(
    run: _Run,
    tree: _Tree,
    prefix: str,
    store_of: Callable[[str], str],
    role_of: Callable[[str], str],
    hashes_for: Callable[[str], bool],
) -> dict[str, tuple[int, int]]:
    """Scan every file under ``tree``; leftovers at ``prefix/rel``. Returns per store (files, leftovers)."""
    stats: dict[str, list[int]] = {}
    for item in tree.files():
        store = store_of(item.rel)
        per_store = stats.setdefault(store, [0, 0])
        per_store[0] += 1
        path = f"{prefix}/{item.rel}" if prefix else item.rel
        per_store[1] += _scan_one(run, item, store, path, hashes_for(store), role_of(item.rel))
    return {store: (files, left) for store, (files, left) in stats.items()}


def _scan_tables(run: _Run, lake: str) -> None:
    tree = _Tree(lake.rstrip("/") + "/" + TABLES_DIR)
    if not tree.exists():
        # A mistyped lake URI must not pass as a clean lake.
        run.check("files:tables", False, "the lake root has no tables folder")
        return
    known = set(table_names())
    stats = _scan_tree(
        run,
        tree,
        TABLES_DIR,
        store_of=lambda rel: rel.split("/", 1)[0] if "/" in rel else TABLES_DIR,
        role_of=lambda rel: _table_file_role(rel.split("/", 1)[1] if "/" in rel else rel),
        hashes_for=lambda store: store not in HASH_EXEMPT_TABLES,
    )
    for name in sorted(known | set(stats)):
        if name not in stats and name in known:
            continue  # a table this lake does not have
        files, left = stats[name]
        scope = (
            "" if name not in HASH_EXEMPT_TABLES else " (URLs and image bytes only: holds hashes by design)"
        )
        run.check(f"files:{name}", left == 0, f"{files} files scanned{scope}, {left} leftovers")
    if tree.links_skipped:
        run.check("files:tables links", False, f"{tree.links_skipped} symbolic links not followed")


def _scan_index(run: _Run, lake: str) -> None:
    """Every file of every build folder; FAISS files' stored ids against the erased faces' FAISS ids."""
    tree = _Tree(lake.rstrip("/") + "/" + INDEX_DIR)
    files = left = 0
    # Stored ids of an index file and its id map, compared as soon as both were read (sorted listing:
    # a shard's .faiss comes just before its .ids.parquet), so at most one shard's ids are held.
    pending: dict[str, dict[str, np.ndarray]] = {}

    def compare(stem: str, key: str, ids: np.ndarray) -> None:
        both = pending.setdefault(stem, {})
        both[key] = ids
        if len(both) == 2:
            del pending[stem]
            extra = int((~np.isin(both["index"], both["map"])).sum())
            if extra:
                run.check(
                    f"index ids {INDEX_DIR}/{stem}.faiss",
                    False,
                    f"{extra} stored vectors have no entry in the id map (they could be erased faces)",
                )

    for item in tree.files():
        path = f"{INDEX_DIR}/{item.rel}"
        files += 1
        run.files += 1
        try:
            found = _scan_file(item, run.index)
            if item.rel.endswith(".faiss"):
                ids = _faiss_file_ids(item)
                if ids is None:
                    found.error = found.error or "not a readable FAISS index"
                else:
                    hits = int(np.isin(ids, np.fromiter(run.index.faiss_ids, np.int64)).sum())
                    if hits:
                        found.counts["face_id"] += hits
                        found.columns.add("stored ids")
                    compare(item.rel[: -len(".faiss")], "index", ids)
            elif item.rel.endswith(".ids.parquet") and found.parquet:
                compare(item.rel[: -len(".ids.parquet")], "map", _id_map_ids(item))
        except OSError as exc:
            run.check(f"read {path}", False, f"could not be read ({type(exc).__name__})")
            continue
        name_hits = run.index.scan_text(path)
        if name_hits:
            found.counts.update(name_hits)
            found.name_hit = True
        role = "index file" if item.rel.endswith(".faiss") else "id map" if found.parquet else "file"
        left += run.add("index", path, found.counts, _describe_found(role, found))
        if found.error:
            run.check(f"read {path}", False, found.error)
    run.check("files:index", left == 0, f"{files} files scanned, {left} leftovers")
    if tree.links_skipped:
        run.check("files:index links", False, f"{tree.links_skipped} symbolic links not followed")


def _faiss_file_ids(item: _File) -> np.ndarray | None:
    import faiss

    with item.open() as stream:
        data = stream.read()
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError:
        return None
    del data
    return stored_faiss_ids(index)


def _id_map_ids(item: _File) -> np.ndarray:
    import pyarrow.parquet as pq

    with item.open() as stream:
        parquet = pq.ParquetFile(stream)
        if "faiss_id" not in parquet.schema_arrow.names:
            return np.empty(0, dtype=np.int64)
        return parquet.read(columns=["faiss_id"]).column(0).to_numpy().astype(np.int64)


def _scan_data_docs(run: _Run, lake: str) -> None:
    tree = _Tree(lake.rstrip("/") + "/" + DATA_DOCS)
    stats = _scan_tree(
        run, tree, DATA_DOCS, lambda rel: "data_docs", lambda rel: "data docs file", lambda store: True
    )
    files, left = stats.get("data_docs", (0, 0))
    run.check("files:data_docs", left == 0, f"{files} files scanned, {left} leftovers")


def _scan_rest(run: _Run, lake: str) -> None:
    """Anything else under the lake root (a stray copy of a table, an export, …), except the erasure
    job's own folder; the store is the top-level name."""
    tree = _Tree(lake)
    skip = frozenset({TABLES_DIR, INDEX_DIR, DATA_DOCS, ERASURE_WORK_DIR})
    files = left = 0
    for item in tree.files(skip_top=skip):
        store = item.rel.split("/", 1)[0]
        files += 1
        left += _scan_one(run, item, store, item.rel, True, "file")
    run.check("files:other", left == 0, f"{files} other files under the lake root scanned, {left} leftovers")


def iter_lines(
    read: Callable[[int], bytes], cap: int = MANIFEST_LINE_CAP
) -> Iterator[tuple[int, bytes, bool]]:
    """(line number from 1, bytes, whole) for each ``\\n``-terminated line of a stream; a line over ``cap``
    bytes comes in pieces (all with its number) marked not whole. Memory stays within a chunk plus ``cap``."""
    buffer = b""
    number = 1
    while True:
        chunk = read(CHUNK)
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end != -1 and end < cap:
                line, buffer = buffer[:end], buffer[end + 1 :]
                yield number, line, True
                number += 1
            elif len(buffer) >= cap:
                piece, buffer = buffer[:cap], buffer[cap:]
                yield number, piece, False
            else:
                break
        if not chunk:
            if buffer:
                yield number, buffer, True
            return


def scan_manifest(read: Callable[[int], bytes], index: MarkerIndex) -> tuple[Counter, list[int]]:
    """A drop's ``manifest.jsonl``, line by line: text scan of each line, plus its ``source_url`` and
    ``page_url`` fields (when the line parses) as erased URLs. Malformed lines are scanned as text.

    Returns counts by kind and the numbers (1-based) of the lines holding a marker.
    """
    found: Counter = Counter()
    lines: list[int] = []
    for number, raw, whole in iter_lines(read):
        counts = index.scan_text(raw.decode("utf-8", "replace").replace("\\/", "/"))
        if whole and not counts["url"]:
            urls = _manifest_urls(raw)
            if any(index.url_matches(u) for u in urls):
                counts["url"] += 1
        if +counts:
            found.update(counts)
            if not lines or lines[-1] != number:
                lines.append(number)
    return found, lines


def _manifest_urls(raw: bytes) -> list[str]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return []
    if not isinstance(value, dict):
        return []
    return [v for k in ("source_url", "page_url") if isinstance(v := value.get(k), str)]


def _scan_drop(run: _Run, drop: str) -> None:
    """Every file of a drop (links never followed): erased image bytes, markers in any text, the manifest
    line by line. File names are not shown (image paths may be personal)."""
    shown = run.safe(drop)
    tree = _Tree(drop)
    if not tree.exists():
        run.check(f"landing {shown}", True, "drop folder no longer exists")
        return
    files = 0
    by_kind: Counter = Counter()
    manifest: Counter = Counter()
    lines: list[int] = []
    unreadable = 0
    for item in tree.files():
        files += 1
        run.files += 1
        try:
            with item.open() as stream:
                if item.rel == DROP_MANIFEST:
                    manifest, lines = scan_manifest(stream.read, run.index)
                    continue
                counts, _ = scan_chunks(_read_chunks(stream), run.index)
        except OSError:
            unreadable += 1
            continue
        counts.update(run.index.scan_text(item.rel))
        for kind, n in counts.items():
            # Files, not occurrences: one image file is one leftover however often its name matched.
            by_kind[kind] += 1 if n else 0
    left = 0
    if +manifest:
        listed = ", ".join(str(n) for n in lines[:MAX_LISTED]) + (", …" if len(lines) > MAX_LISTED else "")
        left += run.add(
            "landing", f"{shown}/{DROP_MANIFEST}", manifest, f"{len(lines)} manifest lines: {listed}"
        )
    left += run.add("landing", shown, by_kind, "files in the drop (names not shown: paths may be personal)")
    detail = f"{files} files scanned, {left} leftovers"
    if tree.links_skipped:
        detail += f", {tree.links_skipped} symbolic links not followed"
    run.check(
        f"landing {shown}",
        left == 0 and not unreadable,
        detail + (f", {unreadable} unreadable" if unreadable else ""),
    )


# --------------------------------------------------------------------------------------------
# Rows at every readable version
# --------------------------------------------------------------------------------------------


def _table_exists(spark: SparkSession, lake: str, table: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, table_uri(lake, table)))


def readable_versions(spark: SparkSession, lake: str, table: str) -> tuple[list[int], int]:
    """Versions of ``table`` whose data files are all still in storage (time travel works), and how many
    listed versions are not readable (purged, vacuumed, or their log expired)."""
    listed = table_versions(spark, lake, table)
    latest = max(listed)
    live = set(read_table(spark, lake, table).inputFiles())
    readable, unreadable = [latest], 0
    # Lake.first_readable_version stops at the first readable version; purges can leave readable
    # versions before unreadable ones (version 0 is an empty CREATE TABLE), so each one is checked.
    for version in listed:
        if version == latest:
            continue
        try:
            files = set(read_table(spark, lake, table, version=version).inputFiles())
        except Exception:  # the log no longer reconstructs it
            unreadable += 1
            continue
        missing = False
        for uri in files - live:
            fs, path = hadoop_path(spark, uri)
            if not fs.exists(path):
                missing = True
                break
        if missing:
            unreadable += 1
        else:
            readable.append(version)
    return sorted(readable), unreadable


def row_selector(
    columns: Iterable[str], rules: Iterable[tuple[str, str]], markers: dict[str, DataFrame]
) -> Column | None:
    """The predicate of an erased row: any rule's column in its marker set (``url`` columns by digest);
    None when no rule applies (no such column, or no markers of its kind). Marker values stay in
    DataFrames, never in the predicate's text."""
    present = set(columns)
    parts = []
    for column, kind in rules:
        if column not in present or kind not in markers:
            continue
        value = url_sha256(F.col(column)) if kind == "url" else F.col(column)
        parts.append(value.isin(markers[kind]))
    if not parts:
        return None
    selector = parts[0]
    for part in parts[1:]:
        selector = selector | part
    return selector


def _marker_frames(spark: SparkSession, index: MarkerIndex, markers: Markers) -> dict[str, DataFrame]:
    frames = {}
    for kind, values in (
        ("image_id", index.image_ids),
        ("face_id", markers.face_ids),
        ("url", index.url_hashes),
    ):
        if values:
            frames[kind] = spark.createDataFrame([(v,) for v in sorted(values)], "v string")
    return frames


def _check_rows(
    spark: SparkSession, lake: str, run: _Run, markers: Markers, context: RunContext, record: bool
) -> None:
    """The ``rows:<table>`` checks: rows matching the markers at every readable version, per data table.

    Each table's per-version counts are computed in Spark; the ``erased_selector`` expectations then run
    once over all of them (one GX validation, one ``dq_results`` record), not once per table.
    """
    frames = _marker_frames(spark, run.index, markers)
    counted: list[tuple[str, int, int]] = []  # (table, version, matching rows)
    spans: dict[str, tuple[list[int], int]] = {}
    for table, rules in ROW_RULES.items():
        if not _table_exists(spark, lake, table):
            continue
        try:
            selector = row_selector(read_table(spark, lake, table).columns, rules, frames)
            if selector is None:
                run.check(f"rows:{table}", True, "no markers of the kinds this table is searched by")
                continue
            versions, unreadable = readable_versions(spark, lake, table)
            spans[table] = (versions, unreadable)
            for r in check_erased(spark, lake, table, selector, versions).collect():
                counted.append((table, int(r["table_version"]), int(r["matching_rows"])))
        except Exception as exc:  # a damaged table must not stop the file scans; its text may hold paths
            log.warning(
                "erasure verification: rows of %s could not be checked (%s)", table, type(exc).__name__
            )
            run.check(f"rows:{table}", False, f"could not be checked ({type(exc).__name__})")
            spans.pop(table, None)
    if not spans:
        return
    all_versions = sorted({v for versions, _ in spans.values() for v in versions})
    counts = spark.createDataFrame(
        [(v, n) for t, v, n in counted if t in spans], "table_version long, matching_rows long"
    )
    report = run_suite(
        spark,
        counts,
        "erased_selector",
        lake=lake,
        run=context,
        table_name="all data tables",
        table_version=None,
        parameters={"versions_checked": all_versions},
        data_docs=record,
    )
    if record:
        write_results(spark, lake, [report], context)
    run.check("expectations:erased_selector", report.success, f"{len(spans)} tables, {len(counted)} versions")
    for table, (versions, unreadable) in spans.items():
        holding = sorted(v for t, v, n in counted if t == table and n)
        rows = sum(n for t, _, n in counted if t == table)
        span = _span(versions)
        if rows:
            run.add(
                table,
                f"{TABLES_DIR}/{table}",
                Counter(rows=rows),
                f"versions {', '.join(map(str, holding))} (of {span})",
            )
        skipped = f", {unreadable} unreadable versions skipped" if unreadable else ""
        run.check(
            f"rows:{table}",
            rows == 0,
            f"versions {span} checked{skipped}, {rows} matching rows summed over versions",
        )


def _span(versions: list[int]) -> str:
    if not versions:
        return "none"
    if versions == list(range(versions[0], versions[-1] + 1)):
        return f"{versions[0]}-{versions[-1]}" if len(versions) > 1 else str(versions[0])
    return ", ".join(str(v) for v in versions)


# --------------------------------------------------------------------------------------------
# The verifier
# --------------------------------------------------------------------------------------------


def _drop_uris(spark: SparkSession, lake: str) -> list[str]:
    """Distinct non-null ``drop_uri`` values of ``crawl_manifest`` and ``quarantine`` at their latest
    versions (where the column exists): every drop ingest was given."""
    uris: set[str] = set()
    for table in DROP_TABLES:
        if not _table_exists(spark, lake, table):
            continue
        frame = read_table(spark, lake, table)
        if "drop_uri" in frame.columns:
            rows = frame.where(F.col("drop_uri").isNotNull()).select("drop_uri").distinct().collect()
            uris |= {str(r[0]) for r in rows}
    return sorted(uris)


def verify_erasure(
    spark: SparkSession,
    lake: str,
    markers: Markers,
    *,
    run: RunContext,
    drops: Iterable[str] = (),
    raise_on_failure: bool = True,
    record: bool = True,
) -> Verification:
    """Check, independently of the code that erased, that nothing of ``markers`` remains anywhere.

    1. Rows: every data table holding per-image rows, at every readable version, through the
       ``erased_selector`` suite (``jobs.quality.erasure_checks.verify_erased``; with ``record`` its
       dq_results rows and Data Docs are written — counts and versions only).
    2. Every file under ``<lake>/tables/`` (data files of every version, change data, commits,
       checkpoints, checksums, anything else): Parquet column by column, nested columns included,
       other files as text. The ``suppression`` table is searched for URLs and image bytes only.
    3. Every file of every FAISS build under ``<lake>/_index/``: the stored ids of each index file
       against the erased faces' FAISS ids, id maps and text files like any other file.
    4. Landing: each drop in ``drops`` and each ``crawl_manifest.drop_uri`` that still exists — every
       file's bytes, and ``manifest.jsonl`` line by line. Links are never followed.
    5. Every file under ``<lake>/data_docs/`` (after step 1 wrote its own pages), then every other file
       under the lake root except the erasure job's own ``_erasure/`` folder.

    Nothing of a marker's value is logged, returned or put in an error: leftovers name the store,
    the path (names holding a marker are redacted), the kind and a count. Raises
    ``ErasureVerificationError`` on failure when ``raise_on_failure``.
    """
    state = _Run(MarkerIndex(markers))
    _log_start(state.index)
    _check_rows(spark, lake, state, markers, run, record)
    _scan_everything(state, lake, [*drops, *_drop_uris(spark, lake)])
    return _finish(state, raise_on_failure)


def scan_files(lake: str, markers: Markers, *, drops: Iterable[str] = ()) -> Verification:
    """Steps 2 to 5 of ``verify_erasure`` only (every file; no Spark, no rows, no drop found through
    tables): a quick look at a lake's files, e.g. before Spark is up. Never raises on leftovers."""
    state = _Run(MarkerIndex(markers))
    _log_start(state.index)
    _scan_everything(state, lake, drops)
    return _finish(state, raise_on_failure=False)


def _log_start(index: MarkerIndex) -> None:
    log.info(
        "erasure verification: %d image ids, %d face ids, %d phashes, %d url hashes",
        len(index.image_ids),
        len(index.face_ids),
        len(index.phashes),
        len(index.url_hashes),
    )


def _scan_everything(state: _Run, lake: str, drops: Iterable[str]) -> None:
    _scan_tables(state, lake)
    _scan_index(state, lake)
    for drop in dict.fromkeys(drops):
        _scan_drop(state, drop)
    _scan_data_docs(state, lake)
    _scan_rest(state, lake)


def _finish(state: _Run, raise_on_failure: bool) -> Verification:
    verification = Verification(state.leftovers, state.checks, state.files)
    by_store = verification.by_store()
    log.info(
        "erasure verification %s: %d files scanned, %d checks, %d leftovers%s",
        "passed" if verification.passed else "FAILED",
        verification.files_scanned,
        len(verification.checks),
        len(verification.leftovers),
        (" (" + ", ".join(f"{s} {n}" for s, n in by_store.items()) + ")") if by_store else "",
    )
    if raise_on_failure and not verification.passed:
        raise ErasureVerificationError(verification)
    return verification
