"""What the line builders of one drop share: files, picture and source makers, and the contents seen so far."""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from jobs.testdata.files import DropFiles
from jobs.testdata.hashes import Hashes, HashRegistry
from jobs.testdata.images import PictureMaker
from jobs.testdata.jurisdiction import source_is_uk
from jobs.testdata.sources import SourceMaker

# Exact dups, near-dups and mirrors copy only from this many most recent contents.
RECENT_WINDOW = 48


@dataclass
class Content:
    """An ingestible content already in the drop, which later duplicates, near-dups and mirrors copy."""

    line_no: int
    path: str
    data: bytes
    fmt: str
    image: Image.Image  # decoded pixels, the thing transforms start from
    hashes: Hashes
    group: int
    content_id: str
    has_face: bool
    base: str
    uk: bool
    quality: int | None
    source_url: str


class DropState:
    """The mutable state of one drop being generated, passed to every line builder."""

    def __init__(self, out_dir: Path, seed: int) -> None:
        self.seed = seed
        self.files = DropFiles(out_dir, seed)
        self.registry = HashRegistry()
        self.pictures = PictureMaker(self.registry)
        self.sources = SourceMaker(seed)
        self.uniques: deque[Content] = deque(maxlen=RECENT_WINDOW)  # near-dup and mirror originals
        self.files_window: deque[Content] = deque(maxlen=RECENT_WINDOW)  # exact-dup originals
        self.scenarios: dict[str, Any] = {}
        self._groups = 0
        self._content_seq = 0

    def next_content_id(self, prefix: str = "c") -> str:
        self._content_seq += 1
        return f"{prefix}{self._content_seq:06d}"

    def register(self, hashes: Hashes) -> int:
        """Register a new distinct content; returns its group (near-dups join their original's)."""
        self._groups += 1
        self.registry.add(hashes, self._groups)
        return self._groups

    @staticmethod
    def pick(
        rng: random.Random,
        pool: deque[Content],
        want: Callable[[Content], bool] | None = None,
    ) -> list[Content]:
        """``pool`` (only the wanted items, unless there are none) in a seeded random order."""
        items = [c for c in pool if want is None or want(c)] or list(pool)
        rng.shuffle(items)
        return items

    @staticmethod
    def describe(entry: dict[str, Any], content: Content) -> None:
        """Fill the answer-key entry's picture facts from ``content``."""
        entry["content_id"] = content.content_id
        entry["format"] = content.fmt
        entry["width"], entry["height"] = content.image.size
        entry["has_face_expected"] = content.has_face
        entry["base_image"] = content.base

    @staticmethod
    def emit(entry: dict[str, Any], record: dict[str, Any]) -> str:
        """The manifest line for ``record``; fills the entry's source URL and UK verdict."""
        entry["source_url"] = record.get("source_url") if isinstance(record.get("source_url"), str) else None
        entry["uk_expected"] = source_is_uk(record)
        return json.dumps(record, ensure_ascii=False)
