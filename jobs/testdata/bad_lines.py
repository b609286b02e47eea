"""Builders of lines ingest must quarantine: broken files, bad paths, malformed JSON and bad fields."""

from __future__ import annotations

import json
import random
from typing import Any

from jobs.testdata.bad_files import bad_file as bad_file_bytes
from jobs.testdata.images import EXT
from jobs.testdata.state import DropState

MALFORMED_KINDS = ("malformed_not_json", "malformed_array", "malformed_truncated")


def bad_file(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """A well-formed line whose file is empty, not an image, truncated, corrupt, too big or a bomb."""
    kind = entry["kind"]
    data, ext, info = bad_file_bytes(rng, kind, state.pictures, state.files.request_ref())
    path = state.files.new_path(rng, ext)
    state.files.record(entry, path, data)
    entry["content_id"] = f"bad{line_no:06d}"
    entry["format"] = info.get("format")
    entry["width"], entry["height"] = info.get("width"), info.get("height")
    entry["has_face_expected"] = info.get("has_face")
    entry["base_image"] = info.get("base")
    if kind == "oversized":
        state.scenarios["oversized"] = {"line": line_no, "image_path": path, "bytes": len(data)}
    record = {"image_path": path, **state.sources.source(rng, line_no, ext)}
    return state.emit(entry, record)


def bad_path(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """A well-formed line whose image_path names no file or points outside the drop."""
    kind = entry["kind"]
    if kind == "missing_file":
        path = state.files.new_path(rng, "jpg")  # named like every other file, never written
    elif kind == "path_escape_parent":
        path = rng.choice(("../etc/passwd", "../../etc/passwd", "../outside.jpg"))
    elif kind == "path_escape_absolute":
        path = rng.choice(("/etc/passwd", "/tmp/outside.jpg", "/etc/hostname"))
    else:
        path = rng.choice(("images/../../etc/passwd", "images/./../../outside.jpg"))
    entry["image_path"] = path
    record = {"image_path": path, **state.sources.source(rng, line_no, "jpg")}
    return state.emit(entry, record)


def bad_line(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """A line that is not a JSON object, lacks a required field or has an invalid one."""
    kind = entry["kind"]
    ext = "jpg"
    path: str | None = None
    if kind not in (*MALFORMED_KINDS, "missing_image_path"):
        # The file itself is fine, so the field problem is the only possible reason.
        picture = state.pictures.fresh(rng, rng.random() < 0.5)
        ext = EXT[picture.fmt]
        path = state.files.new_path(rng, ext)
        state.files.record(entry, path, picture.data)
        entry["content_id"] = state.next_content_id("q")
        entry["format"], (entry["width"], entry["height"]) = picture.fmt, picture.image.size
        entry["has_face_expected"], entry["base_image"] = picture.has_face, picture.base
    record: dict[str, Any] = {"image_path": path} if path else {}
    record.update(state.sources.source(rng, line_no, ext))
    if kind in MALFORMED_KINDS:
        return _malformed(state, rng, kind, entry, record)
    if kind == "missing_source_url":
        del record["source_url"]
    elif kind == "missing_crawled_at":
        del record["crawled_at"]
    elif kind == "crawled_at_no_zone":
        record["crawled_at"] = record["crawled_at"].replace("Z", "").replace("+01:00", "")
    elif kind == "crawled_at_not_a_date":
        record["crawled_at"] = rng.choice(("yesterday", "2024-13-45T25:61:00Z", "", "05/06/2024 12:00"))
    elif kind == "tags_not_a_list":
        record["tags"] = rng.choice(("portrait", "news,event"))
    return state.emit(entry, record)


def _malformed(state: DropState, rng: random.Random, kind: str, entry: dict[str, Any], record: dict[str, Any]) -> str:
    # The key has no path and no UK verdict for these: ingest cannot read either from the line.
    fake = state.files.new_path(rng, "jpg")
    entry["image_path"] = None
    if kind == "malformed_array":
        return json.dumps([fake, record["source_url"], record["crawled_at"]])
    if kind == "malformed_truncated":
        full = json.dumps({"image_path": fake, **record})
        return full[: max(20, len(full) // 2)]
    return rng.choice((
        f"image_path={fake} source_url={record['source_url']}",
        f"{{'image_path': '{fake}', 'source_url': '{record['source_url']}'}}",
        f"{fake}\t{record['source_url']}\t{record['crawled_at']}",
    ))
