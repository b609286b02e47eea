"""Which category each line of a sample drop falls in, and the quarantine reason the key expects for it."""

from __future__ import annotations

import random

import numpy as np

from jobs.core.reasons import QuarantineReason

OK = "ok"

# Lines scheduled first so that every category exists as soon as n >= len(COVERAGE_PLAN).
COVERAGE_PLAN: tuple[str, ...] = (
    "unique_face",
    "unique_nonface",
    "unique_face",
    "near_resize",
    "unique_nonface",
    "empty_file",
    "unique_face",
    "exact_dup_new_path",
    "unique_nonface",
    "not_an_image",
    "unique_face",
    "near_jpeg_quality",
    "exact_dup_same_path",
    "truncated_jpeg",
    "unique_nonface",
    "mirror",
    "malformed_not_json",
    "unique_face",
    "near_crop",
    "truncated_png",
    "unique_nonface",
    "missing_file",
    "near_brightness",
    "animated_gif",
    "corrupt_jpeg",
    "unique_face",
    "path_escape_parent",
    "near_format",
    "exif_orientation",
    "malformed_array",
    "unique_nonface",
    "oversized",
    "missing_source_url",
    "unique_face",
    "ext_mismatch",
    "bomb",
    "crawled_at_no_zone",
    "unique_nonface",
    "path_escape_absolute",
    "malformed_truncated",
    "unique_face",
    "missing_crawled_at",
    "crawled_at_not_a_date",
    "unique_nonface",
    "tags_not_a_list",
    "invalid_utf8",
    "symlink_in_drop",
    "unique_face",
    "dir_as_image",
    "mirror",
    "unique_nonface",
    "missing_image_path",
    "path_escape_dotdot",
    "unique_face",
    "line_too_long",
    "symlink_out_of_drop",
    "unique_nonface",
    "symlink_folder",
    "near_copy",
    "unique_face",
)

# Tail mix after the coverage block; the oversized file and the over-long line are deliberately
# absent (one of each per drop keeps a 100k drop from costing gigabytes of noise).
TAIL_WEIGHTS: dict[str, float] = {
    "unique_face": 26,
    "unique_nonface": 22,
    "exact_dup_new_path": 7,
    "exact_dup_same_path": 3,
    "near_jpeg_quality": 3,
    "near_resize": 3,
    "near_crop": 3,
    "near_brightness": 3,
    "near_format": 3,
    "near_copy": 3,
    "mirror": 3,
    "animated_gif": 1,
    "exif_orientation": 1,
    "ext_mismatch": 1,
    "empty_file": 0.5,
    "not_an_image": 0.5,
    "truncated_jpeg": 0.5,
    "truncated_png": 0.5,
    "corrupt_jpeg": 0.5,
    "bomb": 0.2,
    "missing_file": 0.6,
    "path_escape_parent": 0.2,
    "path_escape_absolute": 0.2,
    "path_escape_dotdot": 0.2,
    "malformed_not_json": 0.3,
    "malformed_array": 0.3,
    "malformed_truncated": 0.3,
    "missing_source_url": 0.3,
    "missing_crawled_at": 0.3,
    "missing_image_path": 0.3,
    "crawled_at_no_zone": 0.3,
    "crawled_at_not_a_date": 0.3,
    "tags_not_a_list": 0.3,
    "invalid_utf8": 0.3,
    "symlink_in_drop": 0.2,
    "symlink_out_of_drop": 0.2,
    "symlink_folder": 0.1,
    "dir_as_image": 0.2,
}

EXPECTED_BY_KIND: dict[str, str] = {
    "empty_file": QuarantineReason.EMPTY_FILE,
    "not_an_image": QuarantineReason.NOT_AN_IMAGE,
    "truncated_jpeg": QuarantineReason.TRUNCATED_IMAGE,
    "truncated_png": QuarantineReason.TRUNCATED_IMAGE,
    "corrupt_jpeg": QuarantineReason.CORRUPT_IMAGE,
    "oversized": QuarantineReason.TOO_MANY_BYTES,
    "bomb": QuarantineReason.TOO_MANY_PIXELS,
    "missing_file": QuarantineReason.MISSING_FILE,
    "path_escape_parent": QuarantineReason.PATH_ESCAPE,
    "path_escape_absolute": QuarantineReason.PATH_ESCAPE,
    "path_escape_dotdot": QuarantineReason.PATH_ESCAPE,
    "malformed_not_json": QuarantineReason.MALFORMED_JSON,
    "malformed_array": QuarantineReason.MALFORMED_JSON,
    "malformed_truncated": QuarantineReason.MALFORMED_JSON,
    "missing_source_url": QuarantineReason.MISSING_FIELD,
    "missing_crawled_at": QuarantineReason.MISSING_FIELD,
    "missing_image_path": QuarantineReason.MISSING_FIELD,
    "crawled_at_no_zone": QuarantineReason.INVALID_FIELD,
    "crawled_at_not_a_date": QuarantineReason.INVALID_FIELD,
    "tags_not_a_list": QuarantineReason.INVALID_FIELD,
    "invalid_utf8": QuarantineReason.INVALID_ENCODING,
    "line_too_long": QuarantineReason.LINE_TOO_LONG,
    "symlink_in_drop": QuarantineReason.SYMLINK,
    "symlink_out_of_drop": QuarantineReason.SYMLINK,
    "symlink_folder": QuarantineReason.SYMLINK,
    "dir_as_image": QuarantineReason.NOT_A_FILE,
}
ALL_KINDS: tuple[str, ...] = tuple(dict.fromkeys(COVERAGE_PLAN))
NEAR_KINDS = ("near_jpeg_quality", "near_resize", "near_crop", "near_brightness", "near_format", "near_copy")
SPECIAL_KINDS = ("animated_gif", "exif_orientation", "ext_mismatch")
BAD_FILE_KINDS = (
    "empty_file",
    "not_an_image",
    "truncated_jpeg",
    "truncated_png",
    "corrupt_jpeg",
    "oversized",
    "bomb",
)
BAD_PATH_KINDS = ("missing_file", "path_escape_parent", "path_escape_absolute", "path_escape_dotdot")
# image_path names a link or a folder where a file should be; the file system entry is the problem.
BAD_ENTRY_KINDS = ("symlink_in_drop", "symlink_out_of_drop", "symlink_folder", "dir_as_image")
# The line's bytes are the problem (written raw, not as text): not UTF-8, or over MAX_LINE_BYTES.
RAW_LINE_KINDS = ("invalid_utf8", "line_too_long")


def expected_for(kind: str) -> str:
    """The answer key's ``expected`` value for a line of ``kind``: ``ok`` or a quarantine reason."""
    return str(EXPECTED_BY_KIND.get(kind, OK))


def builder_for(kind: str) -> str:
    """Which family of line builders makes a line of ``kind``."""
    if kind in ("unique_face", "unique_nonface"):
        return "unique"
    if kind.startswith("exact_dup"):
        return "exact_dup"
    if kind in NEAR_KINDS:
        return "near_dup"
    if kind == "mirror":
        return "mirror"
    if kind in SPECIAL_KINDS:
        return "special"
    if kind in BAD_FILE_KINDS:
        return "bad_file"
    if kind in BAD_PATH_KINDS:
        return "bad_path"
    if kind in BAD_ENTRY_KINDS:
        return "bad_entry"
    if kind in RAW_LINE_KINDS:
        return "raw_line"
    return "bad_line"


class LinePlan:
    """The category of every line: the coverage block first, then a seeded draw from the tail mix."""

    def __init__(self, seed: int) -> None:
        # One stream for the whole tail, so the first k lines never depend on n.
        self._rng = random.Random(f"facelake-sample-drop/{seed}/tail")
        self._kinds = list(TAIL_WEIGHTS)
        self._cum = np.cumsum([TAIL_WEIGHTS[k] for k in self._kinds]).tolist()

    def kind_for(self, line_no: int) -> str:
        """Category of ``line_no``; tail lines must be asked for in order, once each."""
        if line_no <= len(COVERAGE_PLAN):
            return COVERAGE_PLAN[line_no - 1]
        return self._rng.choices(self._kinds, cum_weights=self._cum)[0]
