"""Nightly drop bookkeeping: find the landing root's drops not fully ingested yet, mark a drop done, summarise the lake."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import stat
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.core.config import add_config_arguments, command_main
from jobs.core.dropfiles import local_root
from jobs.core.runs import start_run

log = logging.getLogger("facelake.drops")

MANIFEST_NAME = "manifest.jsonl"
LANDING_ENV = "FACELAKE_LANDING"
# Drops sit at most this many folders below the landing root (e.g. <root>/<day>/<crawler>/<drop>).
MAX_DEPTH = 4
MAX_NAME_LENGTH = 255
# Under the lake root, next to tables/: one empty-ish marker per drop whose ingest completed.
MARKER_DIR = "_drops/ingested"
_HASH_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


# -- pure: the landing root ------------------------------------------------------------------------


@dataclass(frozen=True)
class DropFolder:
    """A folder holding manifest.jsonl: its absolute path and its drop id (as ingest computes it)."""

    drop: str
    drop_id: str


@dataclass
class LandingScan:
    """What a walk of the landing root found: drop folders, and how many entries it skipped, by reason."""

    root: str
    drops: list[DropFolder] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def safe_name(name: str) -> bool:
    """Whether a folder name can become a drop path: valid UTF-8, no control or format characters
    (they forge log lines), not hidden (crawlers upload into dot-folders, then rename), not too long."""
    if not name or len(name) > MAX_NAME_LENGTH or name.startswith("."):
        return False
    try:
        name.encode("utf-8")  # os.scandir hands undecodable bytes over as lone surrogates
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name)


def landing_root(landing: str) -> Path:
    """The landing root as an absolute local folder (a path or a ``file:`` URI).

    The operator's root itself may be reached through a symbolic link (it is resolved once); nothing
    below it ever is.
    """
    root = local_root(landing)
    if root is None:
        raise ValueError("the landing root must be a local folder (a path or file: URI)")
    path = Path(root).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"landing root {path} is not a folder")
    return path


def scan_landing(landing: str, max_depth: int = MAX_DEPTH) -> LandingScan:
    """Every drop folder under ``landing``, sorted by path, without following any symbolic link.

    A folder holding ``manifest.jsonl`` is a drop (its subfolders are its own files, not drops);
    other folders are descended into up to ``max_depth`` levels. Each folder is opened relative to
    its parent's descriptor with ``O_NOFOLLOW``, so nothing outside the root is read, even when a
    link is swapped in during the walk. Links, unsafe names (``safe_name``), unreadable entries,
    manifests that are not regular files and folders too deep are skipped and counted, never fatal.
    """
    root = landing_root(landing)
    scan = LandingScan(root=str(root))
    fd = os.open(root, _DIR_FLAGS)
    try:
        _walk(fd, root, 0, max_depth, scan)
    finally:
        os.close(fd)
    scan.drops.sort(key=lambda d: d.drop)
    return scan


def _walk(dir_fd: int, path: Path, depth: int, max_depth: int, scan: LandingScan) -> None:
    drop_id = _manifest_drop_id(dir_fd, scan)
    if drop_id is not None:
        scan.drops.append(DropFolder(str(path), drop_id))
        return
    if _has_entry(dir_fd, MANIFEST_NAME):
        return  # a manifest that is a link or not a regular file: counted, folder not used
    try:
        with os.scandir(dir_fd) as entries:
            names = sorted((e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in entries)
    except OSError:
        scan.skipped["unreadable"] += 1
        return
    for name, is_link, is_dir in names:
        if is_link:
            scan.skipped["symlink"] += 1
        elif not is_dir:
            continue  # a loose file next to drops: not a drop
        elif not safe_name(name):
            scan.skipped["unsafe_name"] += 1
        elif depth + 1 > max_depth:
            scan.skipped["too_deep"] += 1
        else:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                # ELOOP: replaced by a link since the listing; EACCES; gone: never fatal.
                scan.skipped["unreadable"] += 1
                continue
            try:
                _walk(child, path / name, depth + 1, max_depth, scan)
            finally:
                os.close(child)


def _has_entry(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _manifest_drop_id(dir_fd: int, scan: LandingScan) -> str | None:
    """The drop id of the folder's manifest (sha256 of its bytes, first 16 hex digits, as
    ``jobs.core.manifest.drop_id_for``), or None when it has no readable regular manifest."""
    try:
        fd = os.open(MANIFEST_NAME, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        scan.skipped["symlink" if exc.errno == errno.ELOOP else "unreadable"] += 1
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            scan.skipped["manifest_not_a_file"] += 1
            return None
        digest = hashlib.sha256()
        while chunk := os.read(fd, _HASH_CHUNK):
            digest.update(chunk)
    except OSError:
        scan.skipped["unreadable"] += 1
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()[:16]


def pending_drops(drops: Iterable[DropFolder], ingested: set[str]) -> list[DropFolder]:
    """The drops whose ingest has not completed, each drop id once (the first folder by path: two
    folders with the same manifest are the same drop to ingest, which keys it by the manifest bytes)."""
    seen: set[str] = set()
    pending = []
    for drop in sorted(drops, key=lambda d: d.drop):
        if drop.drop_id in ingested or drop.drop_id in seen:
            continue
        seen.add(drop.drop_id)
        pending.append(drop)
    return pending


def is_drop_id(text: str) -> bool:
    """Whether ``text`` looks like a drop id (16 lower-case hex digits)."""
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def marker_ids(names: Iterable[str]) -> set[str]:
    """Drop ids of the marker files among ``names`` (anything else in the folder is ignored)."""
    return {name for name in names if is_drop_id(name)}


# -- Spark / Hadoop FS: the lake's side ----------------------------------------------------------


def marker_dir(lake: str) -> str:
    return lake.rstrip("/") + "/" + MARKER_DIR


def ingested_drop_ids(spark: Any, lake: str) -> set[str]:
    """Drop ids whose ingest completed (``mark_ingested`` ran after it), read through Hadoop's
    FileSystem so an object-store lake works the same."""
    from jobs.lake.fs import hadoop_path

    fs, path = hadoop_path(spark, marker_dir(lake))
    if not fs.exists(path):
        return set()
    return marker_ids(status.getPath().getName() for status in fs.listStatus(path))


def mark_ingested(spark: Any, lake: str, drop_id: str, dag_run_id: str | None = None) -> None:
    """Record that drop ``drop_id`` is fully ingested: a marker file named by its id (content: ids and
    a time, nothing from the drop). Run only after ``facelake ingest`` exited 0, i.e. after its last
    commit landed; a drop whose ingest failed half-way has no marker and is found again next night."""
    from jobs.lake.fs import hadoop_path

    if not is_drop_id(drop_id):
        raise ValueError("not a drop id (16 hex digits)")
    fs, path = hadoop_path(spark, marker_dir(lake) + "/" + drop_id)
    body = json.dumps(
        {"drop_id": drop_id, "dag_run_id": dag_run_id, "marked_at": datetime.now(UTC).isoformat()},
        sort_keys=True,
    )
    out = fs.create(path, True)
    try:
        out.write(bytearray(body.encode("utf-8")))
    finally:
        out.close()


def lake_summary(spark: Any, lake: str) -> dict[str, Any]:
    """Rows and version of every table, and the current index build (ids and counts only)."""
    from jobs.lake.fs import hadoop_path
    from jobs.lake.schemas import table_names
    from jobs.lake.tables import latest_version, read_table, table_uri

    tables: dict[str, dict[str, int]] = {}
    for name in table_names():
        fs, path = hadoop_path(spark, table_uri(lake, name) + "/_delta_log")
        if fs.exists(path):
            tables[name] = {
                "rows": read_table(spark, lake, name).count(),
                "version": latest_version(spark, lake, name),
            }
    index = current_index_build(spark, lake) if "index_builds" in tables else None
    return {"tables": tables, "index": index, "drops_ingested": len(ingested_drop_ids(spark, lake))}


def current_index_build(spark: Any, lake: str) -> dict[str, Any] | None:
    """The current published index build (build_id, faces_version, n_vectors, n_shards), None if none.

    Read from the registry table directly, in the registry's own order (``jobs.index.registry.builds``:
    newest faces version, then newest published); the ingest package does not import the index one.
    """
    from pyspark.sql import functions as F

    from jobs.lake.fs import hadoop_path
    from jobs.lake.tables import read_table, table_uri

    fs, path = hadoop_path(spark, table_uri(lake, "index_builds") + "/_delta_log")
    if not fs.exists(path):
        return None
    row = (
        read_table(spark, lake, "index_builds")
        .where(F.col("status") == "published")
        .orderBy(F.col("faces_version").desc(), F.col("published_at").desc(), F.col("build_id").desc())
        .select("build_id", "faces_version", "n_vectors", "n_shards")
        .first()
    )
    return row.asDict() if row is not None else None


# -- CLI -----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake drops find|mark|summary`` flags."""
    sub = parser.add_subparsers(dest="drops_command", metavar="ACTION", required=True)
    find = sub.add_parser("find", help="list the landing root's drops not fully ingested yet (JSON)")
    find.add_argument(
        "--landing", default=os.environ.get(LANDING_ENV), help=f"landing root folder (default ${LANDING_ENV})"
    )
    find.add_argument("--max-depth", type=int, default=MAX_DEPTH, help="folders below the root to look into")
    mark = sub.add_parser(
        "mark", help="record that a drop's ingest completed (after `facelake ingest` exited 0)"
    )
    mark.add_argument("--drop-id", required=True, help="the drop id (from `drops find`)")
    summary = sub.add_parser("summary", help="rows and version per table, current index build (JSON)")
    summary.add_argument("--index-only", action="store_true", help="only the current index build")
    for p in (find, mark, summary):
        p.add_argument("--output", help="also write the JSON result to this file (for a calling DAG task)")
        add_config_arguments(p)


def _emit(result: dict[str, Any], output: str | None) -> None:
    text = json.dumps(result, sort_keys=True)
    print(text)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Run ``facelake drops <action>``; prints its JSON result (ids, paths under the landing root, counts)."""
    from jobs.lake.session import get_spark

    config, run_ctx = start_run(args, f"drops-{args.drops_command}")
    if args.drops_command == "find":
        if not args.landing:
            raise ValueError(f"no landing root: pass --landing DIR (or set {LANDING_ENV})")
        scan = scan_landing(args.landing, args.max_depth)
        spark = get_spark(config, "facelake-drops")
        ingested = ingested_drop_ids(spark, config.lake)
        pending = pending_drops(scan.drops, ingested)
        run_ctx.progress(
            "landing: %d drop folder(s), %d pending, %d already ingested; skipped %s",
            len(scan.drops),
            len(pending),
            len(scan.drops) - len(pending),
            dict(sorted(scan.skipped.items())) or "none",
        )
        result: dict[str, Any] = {
            "landing": scan.root,
            "pending": [{"drop": d.drop, "drop_id": d.drop_id} for d in pending],
            "found": len(scan.drops),
            "skipped": dict(sorted(scan.skipped.items())),
            # The nightly's index task updates the current build, or makes a full one when there is none.
            "index_build": (current_index_build(spark, config.lake) or {}).get("build_id"),
        }
    elif args.drops_command == "mark":
        spark = get_spark(config, "facelake-drops")
        mark_ingested(spark, config.lake, args.drop_id, run_ctx.dag_run_id)
        run_ctx.progress("drop %s marked as ingested", args.drop_id)
        result = {"drop_id": args.drop_id, "marked": True}
    else:
        spark = get_spark(config, "facelake-drops")
        if args.index_only:
            result = {"index": current_index_build(spark, config.lake)}
        else:
            result = lake_summary(spark, config.lake)
    _emit(result, args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.ingest.drops find --landing DIR --lake URI``."""
    return command_main("drops", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
