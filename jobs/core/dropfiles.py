"""Read one file of a crawl drop without leaving it: no link followed, bounded reads, any file name."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from jobs.core.reasons import QuarantineReason

READ_CHUNK = 1 << 20
HASH_LIMIT = 1 << 30
"""Oversized files up to this size are still hashed (streamed, never held) so quarantine can name them."""


@dataclass(frozen=True)
class DropFile:
    """One referenced file: its bytes when read, else the reason it was not (size is what stat said)."""

    content: bytes | None
    size: int
    reason: QuarantineReason | None = None
    detail: str | None = None
    sha256: str | None = None


def local_root(drop: str) -> str | None:
    """The local folder of a drop given as a path or ``file:`` URI; None for other schemes."""
    parts = urlsplit(drop)
    if parts.scheme == "file":
        return unquote(parts.path) or "/"
    if parts.scheme and len(parts.scheme) > 1:  # one letter would be a Windows drive
        return None
    return drop


def read_local(root: str, relative: str, max_bytes: int) -> DropFile:
    """Read ``root/relative`` walking one component at a time with ``O_NOFOLLOW``.

    Each directory is opened relative to its parent's descriptor and the file relative to its
    directory's, so no symbolic link is ever followed (not even one swapped in while we read) and
    nothing outside ``root`` can be reached. FIFOs, sockets, devices and directories are refused
    without reading; files over ``max_bytes`` are refused from their size without reading.
    ``relative`` must already be normalised (``jobs.core.manifest.safe_relative_path``).
    """
    *folders, name = relative.split("/")
    fds: list[int] = []
    try:
        fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        for folder in folders:
            try:
                fds.append(
                    os.open(
                        folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1]
                    )
                )
            except NotADirectoryError:
                # O_NOFOLLOW|O_DIRECTORY says ENOTDIR both for a link and for a plain file: ask lstat.
                if stat.S_ISLNK(os.lstat(folder, dir_fd=fds[-1]).st_mode):
                    return DropFile(
                        None,
                        0,
                        QuarantineReason.SYMLINK,
                        "a folder of image_path is a symbolic link; links are not followed",
                    )
                return DropFile(None, 0, QuarantineReason.MISSING_FILE, "no file at image_path")
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        fds.append(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fds[-1]))
        info = os.fstat(fds[-1])
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            return DropFile(None, 0, QuarantineReason.NOT_A_FILE, f"image_path is {kind}")
        if info.st_size > max_bytes:
            return _oversized(lambda n: os.read(fds[-1], n), info.st_size, max_bytes)
        content = _read_at_most(lambda n: os.read(fds[-1], n), max_bytes)
    except OSError as exc:
        return _os_error(exc)
    finally:
        for fd in reversed(fds):
            os.close(fd)
    return _bounded(content, max_bytes)


def _read_at_most(read: Any, max_bytes: int) -> bytes:
    """Up to ``max_bytes + 1`` bytes: one more than allowed tells a file that grew after stat."""
    chunks, total = [], 0
    while total <= max_bytes:
        chunk = read(min(READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _oversized(read: Any, size: int, max_bytes: int) -> DropFile:
    """A file over the limit: never held in memory, hashed in chunks when it is not absurdly large."""
    digest = None
    if size <= HASH_LIMIT:
        hasher = hashlib.sha256()
        while chunk := read(READ_CHUNK):
            hasher.update(chunk)
        digest = hasher.hexdigest()
    return DropFile(None, size, QuarantineReason.TOO_MANY_BYTES, f"{size} bytes > limit {max_bytes}", digest)


def _bounded(content: bytes, max_bytes: int) -> DropFile:
    if len(content) > max_bytes:
        return DropFile(
            None,
            len(content),
            QuarantineReason.TOO_MANY_BYTES,
            f"more than {max_bytes} bytes",
            hashlib.sha256(content).hexdigest(),
        )
    return DropFile(content, len(content))


def _os_error(exc: OSError) -> DropFile:
    if exc.errno == errno.ELOOP:
        return DropFile(
            None, 0, QuarantineReason.SYMLINK, "image_path is a symbolic link; links are not followed"
        )
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
        return DropFile(None, 0, QuarantineReason.MISSING_FILE, "no file at image_path")
    if exc.errno == errno.EISDIR:
        return DropFile(None, 0, QuarantineReason.NOT_A_FILE, "image_path is a directory")
    return DropFile(
        None, 0, QuarantineReason.MISSING_FILE, f"unreadable: {errno.errorcode.get(exc.errno, 'error')}"
    )


def object_store_options(spark_conf: dict[str, str]) -> dict[str, str]:
    """pyarrow S3 settings from the Hadoop s3a ones, so executors reach the same bucket as Spark."""
    mapping = {
        "spark.hadoop.fs.s3a.endpoint": "endpoint_override",
        "spark.hadoop.fs.s3a.access.key": "access_key",
        "spark.hadoop.fs.s3a.secret.key": "secret_key",
        "spark.hadoop.fs.s3a.session.token": "session_token",
        "spark.hadoop.fs.s3a.endpoint.region": "region",
    }
    return {target: spark_conf[key] for key, target in mapping.items() if spark_conf.get(key)}


def read_object_store(
    drop: str, relative: str, max_bytes: int, options: dict[str, str] | None = None
) -> DropFile:
    """Read ``drop/relative`` from an object store (``s3a://``, ``s3://``, ``gs://``…) through pyarrow.

    Object stores have no symbolic links or special files; the size is checked before reading.
    """
    from pyarrow import fs as pafs

    uri = drop.rstrip("/") + "/" + relative
    try:
        filesystem, path = _filesystem(uri, options or {})
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return DropFile(None, 0, QuarantineReason.MISSING_FILE, "no file at image_path")
        if info.type != pafs.FileType.File:
            return DropFile(None, 0, QuarantineReason.NOT_A_FILE, "image_path is not a file")
        with filesystem.open_input_stream(path) as stream:
            if info.size is not None and info.size > max_bytes:
                return _oversized(stream.read, info.size, max_bytes)
            content = _read_at_most(stream.read, max_bytes)
    except OSError as exc:
        return DropFile(None, 0, QuarantineReason.MISSING_FILE, f"unreadable: {type(exc).__name__}")
    return _bounded(content, max_bytes)


def _filesystem(uri: str, options: dict[str, str]) -> tuple[Any, str]:
    from pyarrow import fs as pafs

    parts = urlsplit(uri)
    if parts.scheme in ("s3a", "s3n", "s3"):
        path = parts.netloc + unquote(parts.path)
        return pafs.S3FileSystem(**options), path
    return pafs.FileSystem.from_uri(uri)


def read_drop_file(
    drop: str, relative: str, max_bytes: int, options: dict[str, str] | None = None
) -> DropFile:
    """Read one normalised relative path of a drop, locally (``read_local``) or from an object store."""
    root = local_root(drop)
    if root is not None:
        return read_local(root, relative, max_bytes)
    return read_object_store(drop, relative, max_bytes, options)
