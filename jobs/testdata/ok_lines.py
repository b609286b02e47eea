"""Builders of ingestible lines: new pictures, exact and near duplicates, mirrors and unusual files."""

from __future__ import annotations

import random
from typing import Any

from PIL import Image

from jobs.testdata.hashes import DISTINCT_MIN_DISTANCE, NEAR_DUP_MAX_DISTANCE, Hashes, hamming, phash_pair
from jobs.testdata.images import EXT, decode
from jobs.testdata.jurisdiction import source_is_uk
from jobs.testdata.plan import COVERAGE_PLAN
from jobs.testdata.state import Content, DropState
from jobs.testdata.transforms import mirrored, near_variant, special_file

# Every builder takes (state, rng, line_no, entry), fills the answer-key entry and returns the
# manifest line. One that cannot make its category (nothing to copy yet, no candidate far enough)
# makes a unique picture instead and says so in entry["kind"], so the key stays true.


def _in_coverage(line_no: int) -> bool:
    # Scenarios are planted inside the coverage block so that every drop of n >= 60 has them.
    return line_no <= len(COVERAGE_PLAN)


def unique(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """A new picture, far from every earlier one."""
    picture = state.pictures.fresh(rng, entry["kind"] == "unique_face", distinct=True)
    ext = EXT[picture.fmt]
    path = state.files.new_path(rng, ext)
    state.files.record(entry, path, picture.data)
    record = {"image_path": path, **state.sources.scenario_source(rng, line_no, ext)}
    content = Content(
        line_no,
        path,
        picture.data,
        picture.fmt,
        picture.image,
        picture.hashes,
        state.register(picture.hashes),
        state.next_content_id(),
        picture.has_face,
        picture.base,
        source_is_uk(record),
        picture.quality,
        record["source_url"],
    )
    state.describe(entry, content)
    state.uniques.append(content)
    state.files_window.append(content)
    return state.emit(entry, record)


def exact_dup(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """The bytes of a recent file again, at a new path or (``exact_dup_same_path``) the same one."""
    if not state.files_window:
        entry["kind"] = "unique_nonface"
        return unique(state, rng, line_no, entry)
    same_path = entry["kind"] == "exact_dup_same_path"
    force_uk: bool | None = None
    # Shuffled even when the scenario below re-picks: the draw is part of the seeded stream.
    candidates = state.pick(rng, state.files_window)
    if _in_coverage(line_no) and "uk_exact_dup" not in state.scenarios and not same_path:
        # Scenario: first copy from a non-UK source, the byte-identical copy from a UK one.
        candidates = state.pick(rng, state.files_window, lambda c: not c.uk)
        force_uk = True
    original = candidates[0]
    ext = original.path.rsplit(".", 1)[1]
    path = original.path if same_path else state.files.new_path(rng, ext)
    state.files.record(entry, path, original.data, write=not same_path)
    # The URL slug embeds the line number, so this source URL always differs from the original's.
    if force_uk:
        src = state.sources.source(rng, line_no, ext, force_uk=True)
    else:
        src = state.sources.ok_source(rng, line_no, ext)
    record = {"image_path": path, **src}
    state.describe(entry, original)
    if force_uk:
        state.scenarios["uk_exact_dup"] = {
            "original_line": original.line_no,
            "original_image_path": original.path,
            "dup_line": line_no,
            "dup_image_path": path,
            "note": "byte-identical copy seen at a .uk host; the first copy's source is not UK",
        }
    if same_path and "same_path_twice" not in state.scenarios:
        state.scenarios["same_path_twice"] = {"lines": [original.line_no, line_no], "image_path": path}
    return state.emit(entry, record)


def near_dup(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """A slightly changed copy of a recent unique picture: close to it, far from everything else."""
    kind = entry["kind"]
    if not state.uniques:
        entry["kind"] = "unique_face"
        return unique(state, rng, line_no, entry)
    uk_scenario = _in_coverage(line_no) and kind == "near_resize" and "uk_near_dup" not in state.scenarios
    if uk_scenario:
        candidates = state.pick(rng, state.uniques, lambda c: c.uk)
    elif kind == "near_format":
        candidates = state.pick(rng, state.uniques, lambda c: c.fmt in ("PNG", "WEBP"))
    else:
        candidates = state.pick(rng, state.uniques)
    chosen: tuple[Content, bytes, str, str, Image.Image, Hashes] | None = None
    for original in candidates:
        for _ in range(3):
            data, fmt, transform = near_variant(rng, kind, original.image, original.fmt, original.quality)
            if state.files.seen(data):
                continue  # the same transform of the same original again would be an exact dup
            decoded = decode(data)
            hashes = phash_pair(decoded)
            # A re-post copy may lie far by pHash (that is the point); the others stay close.
            close = kind == "near_copy" or hamming(hashes, original.hashes) <= NEAR_DUP_MAX_DISTANCE
            if (
                close
                and state.registry.min_distance(hashes, exclude_group=original.group) >= DISTINCT_MIN_DISTANCE
            ):
                chosen = (original, data, fmt, transform, decoded, hashes)
                break
        if chosen:
            break
    if chosen is None:
        entry["kind"] = "unique_nonface"
        return unique(state, rng, line_no, entry)
    original, data, fmt, transform, decoded, hashes = chosen
    state.registry.add(hashes, original.group)
    ext = EXT[fmt]
    path = state.files.new_path(rng, ext)
    state.files.record(entry, path, data)
    if uk_scenario:
        src = state.sources.source(rng, line_no, ext, force_uk=False)
    else:
        src = state.sources.ok_source(rng, line_no, ext)
    record = {"image_path": path, **src}
    content = Content(
        line_no,
        path,
        data,
        fmt,
        decoded,
        hashes,
        original.group,
        f"{original.content_id}~{transform}",
        original.has_face,
        original.base,
        source_is_uk(record),
        None,
        record["source_url"],
    )
    state.describe(entry, content)
    entry["near_dup_of_line"] = original.line_no
    entry["transform"] = transform
    state.files_window.append(content)
    if uk_scenario:
        state.scenarios["uk_near_dup"] = {
            "canonical_line": original.line_no,
            "canonical_image_path": original.path,
            "canonical_source_url": original.source_url,
            "near_dup_line": line_no,
            "near_dup_image_path": path,
            "near_dup_source_url": record["source_url"],
            "transform": transform,
            "note": "canonical seen at a .co.uk URL; the near-dup only at a .com URL -> canonical is UK",
        }
    return state.emit(entry, record)


def mirror(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """A recent unique picture flipped left to right: a copy (near duplicate) of it, far from it by pHash."""
    scenario = _in_coverage(line_no) and "uk_mirror" not in state.scenarios
    candidates = state.pick(rng, state.uniques, (lambda c: not c.uk) if scenario else None)
    for original in candidates:
        data = mirrored(original.image, original.fmt, original.quality)
        decoded = decode(data)
        hashes = phash_pair(decoded)
        if state.registry.min_distance(hashes) >= DISTINCT_MIN_DISTANCE:
            break
    else:
        entry["kind"] = "unique_nonface"
        return unique(state, rng, line_no, entry)
    state.registry.add(hashes, original.group)
    ext = EXT[original.fmt]
    path = state.files.new_path(rng, ext)
    state.files.record(entry, path, data)
    if scenario:
        src = state.sources.source(rng, line_no, ext, force_uk=True)
    else:
        src = state.sources.ok_source(rng, line_no, ext)
    record = {"image_path": path, **src}
    content = Content(
        line_no,
        path,
        data,
        original.fmt,
        decoded,
        hashes,
        original.group,
        f"{original.content_id}~hflip",
        original.has_face,
        original.base,
        source_is_uk(record),
        original.quality,
        record["source_url"],
    )
    state.describe(entry, content)
    entry["mirror_of_line"] = original.line_no
    entry["transform"] = "hflip"
    state.files_window.append(content)
    if scenario:
        state.scenarios["uk_mirror"] = {
            "original_line": original.line_no,
            "mirror_line": line_no,
            "note": "mirror seen at a .uk host; a mirror is a copy of the original, so the original's cluster is UK",
        }
    return state.emit(entry, record)


def special(state: DropState, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
    """Valid but unusual files: animated GIF, EXIF-rotated JPEG, PNG bytes under a .jpg name."""
    kind = entry["kind"]
    for attempt in range(40):
        made = special_file(rng, kind, state.pictures)
        hashes_list = [phash_pair(v) for v in made.views]
        far = all(state.registry.min_distance(h) >= DISTINCT_MIN_DISTANCE for h in hashes_list)
        if len(hashes_list) == 2:
            far = far and hamming(hashes_list[0], hashes_list[1]) >= DISTINCT_MIN_DISTANCE
        if far or attempt == 39:
            break
    ext = "jpg" if kind == "ext_mismatch" else EXT[made.fmt]
    path = state.files.new_path(rng, ext)
    state.files.record(entry, path, made.data)
    record = {"image_path": path, **state.sources.ok_source(rng, line_no, ext)}
    group = state.register(hashes_list[0])
    for extra in hashes_list[1:]:
        state.registry.add(extra, group)
    content = Content(
        line_no,
        path,
        made.data,
        made.fmt,
        made.image,
        hashes_list[0],
        group,
        state.next_content_id(),
        made.has_face,
        made.base,
        source_is_uk(record),
        88 if made.fmt == "JPEG" else None,
        record["source_url"],
    )
    state.describe(entry, content)
    if made.frames is not None:
        entry["frames"] = made.frames
    if kind == "exif_orientation":
        entry["exif_orientation"] = 6
    state.files_window.append(content)
    return state.emit(entry, record)
