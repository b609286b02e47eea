"""Index build files on local disk or an object store (pyarrow filesystems): write, read, checksum, delete.

Works the same on the driver and on Spark workers (no JVM needed), so each worker writes its own
shard. Object stores have no atomic rename: nothing here is relied on for atomicity; a build becomes
visible only through its registry row (``jobs.index.registry``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from jobs.core.config import mask
from jobs.lake.fs import arrow_uri

INDEX_DIR = "_index"
"""Folder under the lake root holding every build's files (``_``: not a table; Spark skips it)."""
MANIFEST = "manifest.json"
CHUNK = 8 * 1024 * 1024


class IndexIntegrityError(RuntimeError):
    """A build's files do not match its manifest (or the manifest its registry row): refuse to load it."""


class BuildStore:
    """Files of the builds under ``<lake>/_index``; paths given to methods are relative to it."""

    def __init__(self, lake: str) -> None:
        from pyarrow import fs

        self.uri = lake.rstrip("/") + "/" + INDEX_DIR
        filesystem, base = fs.FileSystem.from_uri(arrow_uri(lake))
        self.fs = filesystem
        self.base = base.rstrip("/") + "/" + INDEX_DIR

    def path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def display(self, *parts: str) -> str:
        """The location for messages and reports: the lake URI with credentials masked."""
        return mask("/".join([self.uri, *parts]))

    def write_bytes(self, relpath: str, data: bytes) -> str:
        """Write one file (parent folders created); returns its sha256."""
        target = self.path(relpath)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(target) as out:
            out.write(data)
        return hashlib.sha256(data).hexdigest()

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open_input_stream(self.path(relpath)) as src:
            return src.readall()

    def upload(self, local: Path, relpath: str) -> str:
        return self.write_bytes(relpath, local.read_bytes())

    def download(self, relpath: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        with self.fs.open_input_stream(self.path(relpath)) as src, local.open("wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)

    def checksum(self, relpath: str) -> tuple[str, int]:
        """(sha256, size) of a stored file, streamed: a shard is never held whole in memory for this."""
        digest, size = hashlib.sha256(), 0
        with self.fs.open_input_stream(self.path(relpath)) as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def exists(self, relpath: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.path(relpath)).type != fs.FileType.NotFound

    def delete_dir(self, relpath: str) -> None:
        if self.exists(relpath):
            self.fs.delete_dir(self.path(relpath))

    def build_dirs(self) -> dict[str, float]:
        """Build folders present -> the newest modification time in them (the folder's own when empty).

        Plain files at the root are not builds and are left alone.
        """
        from pyarrow import fs

        if not self.exists(""):
            return {}
        out: dict[str, float] = {}
        for info in self.fs.get_file_info(fs.FileSelector(self.base, recursive=True)):
            rel = info.path[len(self.base) :].strip("/")
            name, _, below = rel.partition("/")
            if not below and info.type != fs.FileType.Directory:
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            out[name] = max(out.get(name, 0.0), mtime)
        return out

    def write_json(self, relpath: str, value: dict[str, Any]) -> str:
        return self.write_bytes(relpath, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())

    def read_manifest(self, build_id: str, expected_sha256: str) -> dict[str, Any]:
        """A build's manifest, refused unless its sha256 is the one its registry row recorded."""
        data = self.read_bytes(f"{build_id}/{MANIFEST}")
        found = hashlib.sha256(data).hexdigest()
        if found != expected_sha256:
            raise IndexIntegrityError(
                f"index build {build_id[:12]}: manifest.json has sha256 {found[:12]}…, the registry "
                f"recorded {expected_sha256[:12]}…; the build was altered after publishing: rebuild it"
            )
        return json.loads(data)

    def _check(self, build_id: str, entry: dict[str, Any], key: str, found: str, size: int) -> None:
        name = entry[f"{key}_file"]
        if found != entry[f"{key}_sha256"] or size != entry[f"{key}_bytes"]:
            raise IndexIntegrityError(
                f"index build {build_id[:12]}: {name} has sha256 {found[:12]}… ({size} bytes), "
                f"the manifest says {entry[f'{key}_sha256'][:12]}… ({entry[f'{key}_bytes']} bytes); "
                "refusing to load a corrupted or tampered build: rebuild it"
            )

    def _require(self, build_id: str, name: str) -> None:
        if not self.exists(f"{build_id}/{name}"):
            raise IndexIntegrityError(
                f"index build {build_id[:12]}: {name} is missing from {self.display(build_id)}"
            )

    def read_verified(self, build_id: str, entry: dict[str, Any], key: str) -> bytes:
        """A shard's ``index`` or ``ids`` file, read once and checked against its manifest entry."""
        name = entry[f"{key}_file"]
        self._require(build_id, name)
        data = self.read_bytes(f"{build_id}/{name}")
        self._check(build_id, entry, key, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def verify_files(self, build_id: str, manifest: dict[str, Any]) -> None:
        """Every shard file's sha256 and size as the manifest says, or ``IndexIntegrityError`` naming it."""
        for shard in manifest["shards"]:
            for key in ("index", "ids"):
                name = shard[f"{key}_file"]
                self._require(build_id, name)
                self._check(build_id, shard, key, *self.checksum(f"{build_id}/{name}"))
