"""Builders of lines ingest must quarantine: broken files, bad paths, links and folders, malformed JSON,
bad fields, and lines whose bytes are not UTF-8 or too long."""

from __future__ import annotations

import json
import posixpath
import random
from typing import Any

from jobs.core.manifest import MAX_LINE_BYTES
from jobs.testdata.bad_files import bad_file as bad_file_bytes
from jobs.testdata.files import IMAGES_DIR
from jobs.testdata.images import EXT
from jobs.testdata.state import DropState

MALFORMED_KINDS = ("malformed_not_json", "malformed_array", "malformed_truncated")
# Link texts of links that leave the drop. Only the text is written: the generator never opens them.
OUTSIDE_TARGETS = ("/etc/hostname", "/etc/passwd", "../../../outside.jpg")
# Byte runs that are not UTF-8, spliced into a source URL: Latin-1 and CP1252 letters, a lone
# continuation byte, an overlong "/", a UTF-8-encoded surrogate, bytes that never occur in UTF-8.
NOT_UTF8 = (b"caf\xe9", b"na\xefve", b"\x93quote\x94", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff\xfe")
# Unknown field that pads the over-long line: a page snapshot a crawler should not have inlined.
PAD_FIELD = "page_html"
PAD_TEXT = "<div class=gallery><p>lorem ipsum dolor sit amet</p></div> "


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
        path, ext = _fine_file(state, rng, entry)
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


def _malformed(
    state: DropState, rng: random.Random, kind: str, entry: dict[str, Any], record: dict[str, Any]
) -> str:
    # The key has no path and no UK verdict for these: ingest cannot read either from the line.
    fake = state.files.new_path(rng, "jpg")
    entry["image_path"] = None
    if kind == "malformed_array":
        return json.dumps([fake, record["source_url"], record["crawled_at"]])
    if kind == "malformed_truncated":
        full = json.dumps({"image_path": fake, **record})
        return full[: max(20, len(full) // 2)]
    return rng.choice(
        (
            f"image_path={fake} source_url={record['source_url']}",
            f"{{'image_path': '{fake}', 'source_url': '{record['source_url']}'}}",
            f"{fake}\t{record['source_url']}\t{record['crawled_at']}",
        )
    )


def _fine_file(state: DropState, rng: random.Random, entry: dict[str, Any]) -> tuple[str, str]:
    """Write a fresh, valid picture for a line whose only problem is elsewhere; (path, extension)."""
    picture = state.pictures.fresh(rng, rng.random() < 0.5)
    ext = EXT[picture.fmt]
    path = state.files.new_path(rng, ext)
    state.files.record(entry, path, picture.data)
    entry["content_id"] = state.next_content_id("q")
    entry["format"], (entry["width"], entry["height"]) = picture.fmt, picture.image.size
    entry["has_face_expected"], entry["base_image"] = picture.has_face, picture.base
    return path, ext


def bad_entry(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """A well-formed line whose image_path is a symbolic link, passes through one, or is a folder.

    Links inside the drop point at a file an earlier line made (ingest must refuse the link even
    though its target is a fine picture); links out of the drop get a target the generator never
    creates or reads. The key records the first link of each kind under ``scenarios``.
    """
    kind = entry["kind"]
    originals = state.pick(rng, state.files_window) if kind in ("symlink_in_drop", "symlink_folder") else []
    if not originals and kind != "dir_as_image":
        kind = entry["kind"] = "symlink_out_of_drop"  # nothing in the drop to point at yet
    ext = "jpg"
    scenario: dict[str, Any] | None = None
    if kind == "dir_as_image":
        ext = rng.choice(("jpg", "png", "webp"))
        path = state.files.new_path(rng, ext)
        state.files.folder(path)
    elif kind == "symlink_out_of_drop":
        path = state.files.new_path(rng, ext)
        target = rng.choice(OUTSIDE_TARGETS)
        state.files.symlink(path, target)
        scenario = {"line": line_no, "image_path": path, "link": path, "target": target, "target_line": None}
    else:
        original = originals[0]
        ext = original.path.rsplit(".", 1)[1]
        folder, name = original.path.rsplit("/", 1)
        if kind == "symlink_in_drop":
            path = link = state.files.new_path(rng, ext)
            target = posixpath.relpath(original.path, posixpath.dirname(link))
        else:  # a folder link (a crawler's "current" pointing at a dated folder) in front of a real file
            link = f"{IMAGES_DIR}/current-{line_no:06d}"
            target = posixpath.relpath(folder, IMAGES_DIR)
            path = f"{link}/{name}"
        state.files.symlink(link, target)
        scenario = {
            "line": line_no,
            "image_path": path,
            "link": link,
            "target": target,
            "target_line": original.line_no,
        }
    if scenario is not None and kind not in state.scenarios:
        state.scenarios[kind] = scenario
    entry["image_path"] = path
    record = {"image_path": path, **state.sources.source(rng, line_no, ext)}
    return state.emit(entry, record)


def raw_line(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> bytes:
    """The bytes of an otherwise valid line (fine file, every field right) that is not UTF-8 or too long."""
    path, ext = _fine_file(state, rng, entry)
    record: dict[str, Any] = {"image_path": path, **state.sources.source(rng, line_no, ext)}
    if entry["kind"] == "line_too_long":
        # Just over the limit; ASCII padding without characters JSON escapes, so length is exact.
        size = MAX_LINE_BYTES + rng.randint(1, 4096)
        bare = len(json.dumps({**record, PAD_FIELD: ""}, ensure_ascii=False).encode("utf-8"))
        count = size - bare
        record[PAD_FIELD] = (PAD_TEXT * (count // len(PAD_TEXT) + 1))[:count]
        data = state.emit(entry, record).encode("utf-8")
        assert len(data) == size > MAX_LINE_BYTES
        return data
    # Not UTF-8 inside source_url, before the extension (a Latin-1 file name, say). The key keeps
    # no source_url (it is no text) but the UK verdict of the host, which the bytes do not touch.
    text = state.emit(entry, record)
    entry["source_url"] = None
    url = record["source_url"].encode("utf-8")
    cut = url.rindex(b".")
    bad_url = url[:cut] + b"-" + rng.choice(NOT_UTF8) + url[cut:]
    field = b'"source_url": "'
    return text.encode("utf-8").replace(field + url + b'"', field + bad_url + b'"', 1)
