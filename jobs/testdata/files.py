"""Image files of a sample drop: seeded paths, writes, byte totals and which line first had each content."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

IMAGES_DIR = "images"


class DropFiles:
    """Everything the drop writes under ``images/``, and the answer-key facts about each file."""

    def __init__(self, out_dir: Path, seed: int) -> None:
        self.out = out_dir
        self.seed = seed
        self.file_seq = 0
        self.files = 0
        self.total_bytes = 0
        self._made_dirs: set[str] = set()
        self._first_line_by_sha: dict[str, int] = {}

    def new_path(self, rng: random.Random, ext: str) -> str:
        """A fresh relative path in hash-bucketed folders (``.jpg`` is sometimes spelt ``.jpeg``)."""
        self.file_seq += 1
        digest = hashlib.sha256(f"{self.seed}/{self.file_seq}".encode()).hexdigest()
        if ext == "jpg" and rng.random() < 0.1:
            ext = "jpeg"
        return f"{IMAGES_DIR}/{digest[:2]}/{digest[2:18]}.{ext}"

    def request_ref(self) -> str:
        """A request id for an error page, tied to the file counter so it never draws from an RNG."""
        return hashlib.sha256(f"{self.seed}/{self.file_seq}".encode()).hexdigest()[:16]

    def _parent(self, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent not in self._made_dirs:
            (self.out / parent).mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(parent)

    def write(self, rel: str, data: bytes) -> None:
        self._parent(rel)
        (self.out / rel).write_bytes(data)
        self.files += 1
        self.total_bytes += len(data)

    def symlink(self, rel: str, target: str) -> None:
        """A symbolic link at ``rel`` whose text is ``target``; the target is never opened or read.

        Not counted in ``files``/``total_bytes``: those are the regular files the drop holds.
        """
        self._parent(rel)
        (self.out / rel).symlink_to(target)

    def folder(self, rel: str) -> None:
        """An empty folder at ``rel`` (a path named like an image); not counted as a file."""
        self._parent(rel)
        (self.out / rel).mkdir()
        self._made_dirs.add(rel)

    def seen(self, data: bytes) -> bool:
        """True when some earlier line already has exactly these bytes."""
        return hashlib.sha256(data).hexdigest() in self._first_line_by_sha

    def record(self, entry: dict[str, Any], path: str, data: bytes, *, write: bool = True) -> None:
        """Write ``data`` at ``path`` (unless the path is reused) and fill the entry's file facts."""
        if write:
            self.write(path, data)
        sha = hashlib.sha256(data).hexdigest()
        first = self._first_line_by_sha.setdefault(sha, entry["line_no"])
        entry["image_path"] = path
        entry["file_sha256"] = sha
        entry["bytes"] = len(data)
        entry["exact_dup_of_line"] = first if first != entry["line_no"] else None
