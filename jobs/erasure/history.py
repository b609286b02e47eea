"""Erasing rows from a Delta table's whole history: every file that ever held one is rewritten without it.

Delta's own answer to "delete this everywhere" is DELETE then VACUUM RETAIN 0 HOURS, which drops every
old version of the table: time travel is lost for every row, erased or not. Instead, every data and
Change Data Feed file that any retained version references is checked; a file holding an erased row
is rewritten without it (under a new name) and every commit JSON and checkpoint that names the old
file is pointed at the new one. Each version then reads exactly what it read before minus the
erased rows, so history survival is 1.00 whatever the selector. What it costs: the files that held
erased rows are rewritten once (their other rows included), and the log files naming them are
rewritten in place. Statistics of a rewritten file keep only its row count (its min/max could be
an erased id), checksum (.crc) files are dropped (Delta recomputes them) and a commit file keeps its
modification time on local disks, so timestamp time travel is unchanged there.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import stat
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.core.ids import SEPARATOR
from jobs.lake.fs import arrow_uri

log = logging.getLogger("facelake")

LOG_DIR = "_delta_log"
REDACTED = "[erased]"
_COMMIT = re.compile(r"^\d{20}(\.\d{20})?(\.compacted)?\.json$")
_CHECKPOINT = re.compile(r"^\d{20}\.checkpoint(\.\d+\.\d+)?(\.[0-9a-f-]+)?\.parquet$")
_HEX_TOKEN = re.compile(r"(?<![0-9a-f])[0-9a-f]{16,64}(?![0-9a-f])")


@dataclass(frozen=True)
class RowRule:
    """Which rows of one table are erased, and which values are cut out of the rows that stay.

    ``drop``: (columns, keys) pairs; a row is erased when its values of ``columns`` (joined with the
    unit separator when there are several) are in ``keys``, for any pair. ``scrub``: list-of-string
    columns whose erased items are removed from rows that stay (``dq_results.example_ids``).
    """

    drop: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = ()
    scrub: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def columns(self) -> list[str]:
        names = [c for cols, _ in self.drop for c in cols] + [c for c, _ in self.scrub]
        return list(dict.fromkeys(names))

    @property
    def empty(self) -> bool:
        return not any(keys for _, keys in self.drop) and not any(keys for _, keys in self.scrub)


def _key_array(table: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    if len(columns) == 1:
        return pc.cast(table.column(columns[0]), pa.string())
    parts = [pc.fill_null(pc.cast(table.column(c), pa.string()), "") for c in columns]
    return pc.binary_join_element_wise(*parts, SEPARATOR)


def erased_mask(table: pa.Table, rule: RowRule) -> pa.Array:
    """Boolean mask of ``table``'s rows that ``rule`` erases (all false when its columns are absent)."""
    mask = pa.array([False] * table.num_rows, pa.bool_())
    for columns, keys in rule.drop:
        if not keys or any(c not in table.column_names for c in columns):
            continue
        hit = pc.fill_null(pc.is_in(_key_array(table, columns), value_set=pa.array(sorted(keys))), False)
        mask = pc.or_(mask, hit)
    return mask


def _scrub_hits(table: pa.Table, rule: RowRule) -> int:
    hits = 0
    for column, values in rule.scrub:
        if values and column in table.column_names:
            flat = pc.list_flatten(table.column(column))
            hits += int(pc.sum(pc.is_in(flat, value_set=pa.array(sorted(values)))).as_py() or 0)
    return hits


def apply_rule(table: pa.Table, rule: RowRule) -> tuple[pa.Table, int, int]:
    """``table`` without the rows ``rule`` erases and with its scrubbed values cut out.

    Returns (kept table, rows erased, values scrubbed). Pure: tested without Spark or files.
    """
    mask = erased_mask(table, rule)
    erased = int(pc.sum(mask).as_py() or 0)
    kept = table.filter(pc.invert(mask)) if erased else table
    scrubbed = _scrub_hits(kept, rule)
    if scrubbed:
        for column, values in rule.scrub:
            if column not in kept.column_names:
                continue
            cleaned = [
                None if items is None else [v for v in items if v not in values]
                for items in kept.column(column).to_pylist()
            ]
            index = kept.column_names.index(column)
            kept = kept.set_column(index, kept.field(index), pa.array(cleaned, kept.field(index).type))
    return kept, erased, scrubbed


def redact_text(text: str, tokens: frozenset[str]) -> tuple[str, int]:
    """``text`` with every hex token in ``tokens`` (erased ids and hashes) replaced; returns (text, count)."""
    if not tokens:
        return text, 0
    count = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) in tokens:
            count += 1
            return REDACTED
        return match.group(0)

    return _HEX_TOKEN.sub(swap, text), count


@dataclass
class FileRewrite:
    """One data or change-data file that held erased rows."""

    path: str  # relative to the table root, decoded
    new_path: str | None  # None: every row was erased (or the file is an orphan), so it is only deleted
    rows_erased: int
    values_scrubbed: int
    bytes_before: int
    bytes_after: int
    rows_after: int
    referenced: bool


@dataclass
class HistoryRewrite:
    """What purging one table's history did (counts and sizes only)."""

    table: str
    files_checked: int = 0
    rewrites: list[FileRewrite] = field(default_factory=list)
    log_files_rewritten: int = 0
    tokens_redacted: int = 0
    checksums_dropped: int = 0

    @property
    def files_rewritten(self) -> int:
        return sum(1 for r in self.rewrites if r.new_path is not None)

    @property
    def files_deleted(self) -> int:
        return len(self.rewrites)

    @property
    def bytes_rewritten(self) -> int:
        return sum(r.bytes_after for r in self.rewrites)

    @property
    def bytes_deleted(self) -> int:
        return sum(r.bytes_before for r in self.rewrites)

    @property
    def rows_erased(self) -> int:
        """Erased rows found in history files (a row carried by several files counts once per file)."""
        return sum(r.rows_erased for r in self.rewrites)

    def counts(self) -> dict[str, int]:
        return {
            "files_checked": self.files_checked,
            "files_rewritten": self.files_rewritten,
            "files_deleted": self.files_deleted,
            "bytes_rewritten": self.bytes_rewritten,
            "bytes_deleted": self.bytes_deleted,
            "history_rows_erased": self.rows_erased,
            "log_files_rewritten": self.log_files_rewritten,
            "log_tokens_redacted": self.tokens_redacted,
        }


class TableFolder:
    """The files of one Delta table through pyarrow.fs (local disk or object store); paths relative to it."""

    def __init__(self, uri: str) -> None:
        from pyarrow import fs

        self.uri = uri
        self.fs, base = fs.FileSystem.from_uri(arrow_uri(uri))
        self.base = base.rstrip("/")
        self.local = isinstance(self.fs, fs.LocalFileSystem)

    def full(self, relpath: str) -> str:
        return self.base + "/" + relpath

    def listing(self) -> dict[str, tuple[int, float | None]]:
        """Every regular file under the folder: relative path -> (size, mtime seconds).

        On local disk symbolic links are neither listed nor followed (a landing drop is untrusted: a
        link to a folder outside it must not make the erasure read or delete there); object stores
        have no links.
        """
        from pyarrow import fs

        out = {}
        if self.local:
            for dirpath, dirnames, filenames in os.walk(self.base, followlinks=False):
                dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    st = os.lstat(full)
                    if stat.S_ISREG(st.st_mode):
                        out[os.path.relpath(full, self.base).replace(os.sep, "/")] = (st.st_size, st.st_mtime)
            return out
        for info in self.fs.get_file_info(fs.FileSelector(self.base, recursive=True, allow_not_found=True)):
            if info.type == fs.FileType.File:
                mtime = info.mtime.timestamp() if info.mtime is not None else None
                out[info.path[len(self.base) + 1 :]] = (int(info.size or 0), mtime)
        return out

    def read(self, relpath: str) -> bytes:
        with self.fs.open_input_stream(self.full(relpath)) as stream:
            return stream.read()

    def read_parquet(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open_input_file(self.full(relpath)) as handle:
            if columns is not None:
                present = set(pq.read_schema(handle).names)
                columns = [c for c in columns if c in present]
            return pq.read_table(handle, columns=columns)

    def write(self, relpath: str, data: bytes, mtime: float | None = None) -> None:
        """Replace a file whole: through a temporary name and a rename where the store has renames."""
        target = self.full(relpath)
        if self.local:
            tmp = posixpath.join(
                posixpath.dirname(target), f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp"
            )
            with open(tmp, "wb") as handle:
                handle.write(data)
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            os.replace(tmp, target)
            # Hadoop's local file system checks a file against its ".<name>.crc" sidecar when there is one.
            sidecar = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.crc")
            if os.path.exists(sidecar):
                os.remove(sidecar)
            return
        with self.fs.open_output_stream(target) as stream:
            stream.write(data)

    def write_parquet(self, relpath: str, table: pa.Table) -> int:
        sink = pa.BufferOutputStream()
        # INT96 as Spark writes by default: Spark reads it back as the same TimestampType column.
        pq.write_table(
            table,
            sink,
            compression="snappy",
            use_deprecated_int96_timestamps=True,
            use_dictionary=dictionary_columns(table),
        )
        data = sink.getvalue().to_pybytes()
        self.write(relpath, data)
        return len(data)

    def delete(self, relpath: str) -> None:
        from pyarrow import fs

        target = self.full(relpath)
        if self.fs.get_file_info(target).type != fs.FileType.NotFound:
            self.fs.delete_file(target)
        if self.local:  # Hadoop's ".<name>.crc" sidecar goes with its file
            sidecar = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.crc")
            if self.fs.get_file_info(sidecar).type != fs.FileType.NotFound:
                self.fs.delete_file(sidecar)


def dictionary_columns(table: pa.Table, max_share: float = 0.5) -> list[str]:
    """The Parquet leaf columns worth dictionary encoding: at most ``max_share`` of their values distinct.

    Spark's writer drops a dictionary that does not pay; pyarrow keeps it, and on distinct values
    (content bytes, ids, embedding floats) the dictionary page plus its indices outweigh the values,
    so a rewritten file would grow past the one it replaces. Leaves of lists and structs are judged by
    their own values and named by their Parquet path (``model_files.list.element.role``).
    """

    def leaves(path: str, values: Any, kind: pa.DataType) -> Iterator[tuple[str, Any]]:
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            yield from leaves(f"{path}.list.element", pc.list_flatten(values), kind.value_type)
        elif pa.types.is_struct(kind):
            for i in range(kind.num_fields):
                field = kind.field(i)
                yield from leaves(f"{path}.{field.name}", pc.struct_field(values, [i]), field.type)
        elif not pa.types.is_nested(kind) and not pa.types.is_dictionary(kind):
            yield path, values

    keep = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        for path, values in leaves(name, column, column.type):
            if len(values) == 0 or pc.count_distinct(values).as_py() <= max_share * len(values):
                keep.append(path)
    return keep


def _is_data_file(relpath: str) -> bool:
    name = posixpath.basename(relpath)
    return (
        not relpath.startswith(LOG_DIR + "/")
        and name.endswith(".parquet")
        and not name.startswith((".", "_"))
    )


def _log_kind(relpath: str) -> str | None:
    if not relpath.startswith(LOG_DIR + "/") or relpath.count("/") != 1:
        return None
    name = relpath.split("/", 1)[1]
    if _COMMIT.match(name):
        return "commit"
    if _CHECKPOINT.match(name):
        return "checkpoint"
    if name.endswith(".crc") and name[:20].isdigit():
        return "crc"
    if name == "_last_checkpoint":
        return "last_checkpoint"
    return None


def _action_path(path: str) -> str | None:
    """A log action's file path as a path relative to the table (None for absolute paths elsewhere)."""
    if "://" in path or path.startswith("/"):
        return None
    return unquote(path)


def referenced_files(folder: TableFolder, listing: dict[str, tuple[int, float | None]]) -> set[str]:
    """Every data and change-data file any commit JSON or checkpoint names (relative, decoded)."""
    found: set[str] = set()
    for relpath in listing:
        kind = _log_kind(relpath)
        if kind == "commit":
            for line in folder.read(relpath).decode("utf-8").splitlines():
                if not line.strip():
                    continue
                action = json.loads(line)
                for key in ("add", "remove", "cdc"):
                    if key in action and (path := _action_path(action[key].get("path", ""))):
                        found.add(path)
        elif kind == "checkpoint":
            table = folder.read_parquet(relpath)
            for key in ("add", "remove"):
                if key in table.column_names:
                    for item in table.column(key).to_pylist():
                        if item and (path := _action_path(item.get("path") or "")):
                            found.add(path)
    return found


def _rewritten_name(relpath: str, erasure_id: str) -> str:
    folder, name = posixpath.split(relpath)
    stem = name.split(".erased-")[0].removesuffix(".parquet")
    return posixpath.join(folder, f"{stem}.erased-{erasure_id[:12]}.parquet")


def _check_file(
    folder: TableFolder, relpath: str, size: int, rule: RowRule, erasure_id: str, referenced: bool
) -> FileRewrite | None:
    try:
        keys = folder.read_parquet(relpath, rule.columns)
    except FileNotFoundError:
        return None
    if not int(pc.sum(erased_mask(keys, rule)).as_py() or 0) and not _scrub_hits(keys, rule):
        return None
    whole = folder.read_parquet(relpath)
    kept, erased, scrubbed = apply_rule(whole, rule)
    if not referenced or kept.num_rows == 0:
        # An orphan (no version reads it) or a file of erased rows only: deleting it is enough.
        return FileRewrite(relpath, None, erased, scrubbed, size, 0, 0, referenced)
    new_path = _rewritten_name(relpath, erasure_id)
    written = folder.write_parquet(new_path, kept.replace_schema_metadata(whole.schema.metadata))
    return FileRewrite(relpath, new_path, erased, scrubbed, size, written, kept.num_rows, referenced)


def _rewrite_action(action: dict, mapping: dict[str, FileRewrite]) -> dict | None:
    """The action with its file swapped for the rewrite; None when the file is gone whole."""
    for key in ("add", "remove", "cdc"):
        if key not in action:
            continue
        path = _action_path(action[key].get("path", ""))
        change = mapping.get(path) if path else None
        if change is None:
            return action
        if change.new_path is None:
            return None
        item = dict(action[key])
        item["path"] = quote(change.new_path)
        item["size"] = change.bytes_after
        if "stats" in item or key == "add":
            # min/max of the old file could be an erased id: only the row count is kept.
            item["stats"] = json.dumps({"numRecords": change.rows_after})
        item.pop("stats_parsed", None)
        item.pop("tags", None)
        return {**action, key: item}
    return action


def _rewrite_commit(text: str, mapping: dict[str, FileRewrite], tokens: frozenset[str]) -> tuple[str, int]:
    lines, redacted = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        original = json.loads(line)
        action = _rewrite_action(original, mapping)
        if action is None:
            continue
        # Lines that name no rewritten file stay byte for byte as Delta wrote them.
        text_line = (
            line if action is original else json.dumps(action, separators=(",", ":"), ensure_ascii=False)
        )
        out, n = redact_text(text_line, tokens)
        redacted += n
        lines.append(out)
    return "\n".join(lines) + "\n", redacted


def _rewrite_checkpoint(table: pa.Table, mapping: dict[str, FileRewrite]) -> pa.Table | None:
    """The checkpoint with its file actions swapped; None when it names none of the rewritten files."""
    rows = table.to_pylist()
    changed, out = False, []
    for row in rows:
        keep = True
        for key in ("add", "remove"):
            item = row.get(key)
            if not item:
                continue
            path = _action_path(item.get("path") or "")
            change = mapping.get(path) if path else None
            if change is None:
                continue
            changed = True
            if change.new_path is None:
                keep = False
                break
            item["path"] = quote(change.new_path)
            item["size"] = change.bytes_after
            if key == "add":
                item["stats"] = json.dumps({"numRecords": change.rows_after})
                if "stats_parsed" in item:
                    item["stats_parsed"] = None
                if "tags" in item:
                    item["tags"] = None
        if keep:
            out.append(row)
    if not changed:
        return None
    return pa.Table.from_pylist(out, schema=table.schema)


def _update_last_checkpoint(folder: TableFolder, listing: dict[str, tuple[int, float | None]]) -> None:
    relpath = LOG_DIR + "/_last_checkpoint"
    if relpath not in listing:
        return
    info = json.loads(folder.read(relpath))
    # The checksum covers the old sizes; without one Delta does not check it.
    info.pop("checksum", None)
    version = int(info.get("version", -1))
    parts = [
        p for p in listing if _log_kind(p) == "checkpoint" and p.split("/")[1].startswith(f"{version:020d}.")
    ]
    if parts:
        info["sizeInBytes"] = sum(folder.fs.get_file_info(folder.full(p)).size or 0 for p in parts)
        adds = 0
        for part in parts:
            table = folder.read_parquet(part, ["add"])
            adds += sum(1 for item in table.column("add").to_pylist() if item)
        info["numOfAddFiles"] = adds
    folder.write(relpath, json.dumps(info, separators=(",", ":")).encode("utf-8"))


def rewrite_history(
    uri: str,
    rule: RowRule,
    erasure_id: str,
    *,
    tokens: Iterable[str] = (),
    table: str = "",
    threads: int = 4,
) -> HistoryRewrite:
    """Erase ``rule``'s rows from every file of the Delta table at ``uri``, every version included.

    Idempotent and resumable: a file already rewritten holds no erased row, a rewritten file's name
    is the same on every run, and the old files are deleted only once no log file names them, so
    an interruption at any point is finished by running it again. ``tokens``: erased ids and hashes
    to redact from commit-log text (commit metadata, operation parameters). Returns counts only.
    """
    folder = TableFolder(uri)
    result = HistoryRewrite(table or posixpath.basename(uri.rstrip("/")))
    token_set = frozenset(tokens)
    if rule.empty and not token_set:
        return result
    listing = folder.listing()
    referenced = referenced_files(folder, listing)
    data_files = sorted(p for p in listing if _is_data_file(p))
    result.files_checked = len(data_files)

    # 1. Rewrite (or mark for deletion) every file holding an erased row, referenced or orphaned.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        checked = pool.map(
            lambda p: _check_file(folder, p, listing[p][0], rule, erasure_id, p in referenced), data_files
        )
        result.rewrites = [c for c in checked if c is not None]
    mapping = {r.path: r for r in result.rewrites if r.referenced}

    # 2. Point every commit JSON and checkpoint at the rewritten files; redact ids from the log's text.
    log_changed = False
    for relpath in sorted(listing):
        kind = _log_kind(relpath)
        if kind == "commit":
            text = folder.read(relpath).decode("utf-8")
            new_text, redacted = _rewrite_commit(text, mapping, token_set)
            if new_text.strip() != text.strip():
                folder.write(relpath, new_text.encode("utf-8"), mtime=listing[relpath][1])
                result.log_files_rewritten += 1
                result.tokens_redacted += redacted
                log_changed = True
        elif kind == "checkpoint" and mapping:
            new_table = _rewrite_checkpoint(folder.read_parquet(relpath), mapping)
            if new_table is not None:
                sink = pa.BufferOutputStream()
                pq.write_table(new_table, sink, compression="snappy")
                folder.write(relpath, sink.getvalue().to_pybytes(), mtime=listing[relpath][1])
                result.log_files_rewritten += 1
                log_changed = True

    # 3. Checksum files describe the old files (and may list them with statistics): Delta recomputes them.
    if log_changed or result.rewrites:
        for relpath in listing:
            if _log_kind(relpath) == "crc":
                folder.delete(relpath)
                result.checksums_dropped += 1
        _update_last_checkpoint(folder, folder.listing())

    # 4. Only now that no log file names them: delete the old files (and Hadoop's checksum sidecars).
    for change in result.rewrites:
        folder.delete(change.path)
    if result.rewrites or log_changed:
        log.info(
            "erasure %s: %s history: %d of %d files rewritten, %d deleted, %d log files rewritten",
            erasure_id[:12],
            result.table,
            result.files_rewritten,
            result.files_checked,
            result.files_deleted,
            result.log_files_rewritten,
        )
    return result


def clear_delta_cache(spark) -> None:  # noqa: ANN001 - a SparkSession; Delta caches snapshots per path
    """Forget Delta's cached snapshots in this JVM, so reads after a log rewrite see the new log."""
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


def _commit_version(relpath: str) -> int | None:
    name = relpath.split("/", 1)[1]
    return int(name[:20]) if re.fullmatch(r"\d{20}\.json", name) else None


def files_by_version(uri: str) -> dict[int, set[str]]:
    """Every retained version's live data files (relative, decoded), by replaying the log.

    Starts from the oldest checkpoint when the first commits were cleaned up, as Delta does.
    """
    folder = TableFolder(uri)
    listing = folder.listing()
    commits = sorted(
        (v, p) for p in listing if _log_kind(p) == "commit" and (v := _commit_version(p)) is not None
    )
    if not commits:
        return {}
    live: set[str] = set()
    start = commits[0][0]
    if start > 0:
        checkpoints = sorted(int(p.split("/")[1][:20]) for p in listing if _log_kind(p) == "checkpoint")
        usable = [c for c in checkpoints if c >= start - 1]
        if not usable:
            return {}
        base = usable[0]
        for part in sorted(
            p for p in listing if _log_kind(p) == "checkpoint" and p.split("/")[1].startswith(f"{base:020d}.")
        ):
            for item in folder.read_parquet(part, ["add"]).column("add").to_pylist():
                if item and (path := _action_path(item.get("path") or "")):
                    live.add(path)
        commits = [(v, p) for v, p in commits if v > base]
    out: dict[int, set[str]] = {}
    for version, relpath in commits:
        for line in folder.read(relpath).decode("utf-8").splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action and (path := _action_path(action["add"].get("path", ""))):
                live.add(path)
            elif "remove" in action and (path := _action_path(action["remove"].get("path", ""))):
                live.discard(path)
        out[version] = set(live)
    return out


def row_counts(uri: str, rule: RowRule, paths: set[str]) -> dict[str, tuple[int, int]]:
    """For each file: (rows, rows ``rule`` erases); a missing file counts (0, 0)."""
    folder = TableFolder(uri)

    def one(path: str) -> tuple[str, tuple[int, int]]:
        try:
            keys = folder.read_parquet(path, rule.columns or None)
        except (FileNotFoundError, OSError):
            return path, (0, 0)
        return path, (keys.num_rows, int(pc.sum(erased_mask(keys, rule)).as_py() or 0))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, sorted(paths)))


def surviving_rows(uri: str, rule: RowRule) -> dict[int, int]:
    """Non-erased rows each retained version reads (counted from the files the log names, as a reader would)."""
    versions = files_by_version(uri)
    counts = row_counts(uri, rule, set().union(*versions.values()) if versions else set())
    return {v: sum(counts[f][0] - counts[f][1] for f in files) for v, files in versions.items()}
