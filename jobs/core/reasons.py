"""Machine-readable quarantine reasons shared by the sample-drop generator, ingest and tests."""

from __future__ import annotations

from enum import StrEnum


class QuarantineReason(StrEnum):
    """Why a manifest line or an image file was set aside instead of ingested."""

    MALFORMED_JSON = "malformed_json"  # not one JSON object (also: duplicate keys, NaN, numbers out of range)
    INVALID_ENCODING = "invalid_encoding"  # the line's bytes are not UTF-8 (or hold lone surrogates)
    LINE_TOO_LONG = "line_too_long"  # longer than the manifest line limit; not parsed at all
    MISSING_FIELD = "missing_field"  # a required field (image_path, source_url, crawled_at) is absent
    INVALID_FIELD = "invalid_field"  # a field has the wrong type or format (bad timestamp, no zone, bad URL…)
    PATH_ESCAPE = "path_escape"  # image_path is absolute or leaves the drop folder
    MISSING_FILE = "missing_file"  # image_path names no file
    SYMLINK = "symlink"  # image_path is, or passes through, a symbolic link (never followed)
    NOT_A_FILE = "not_a_file"  # image_path names a directory, FIFO, socket or device
    EMPTY_FILE = "empty_file"  # zero bytes
    NOT_AN_IMAGE = "not_an_image"  # bytes are not a known image format
    TRUNCATED_IMAGE = "truncated_image"  # a known format, cut short
    CORRUPT_IMAGE = "corrupt_image"  # a known format whose data does not decode
    TOO_MANY_BYTES = "too_many_bytes"  # file larger than the configured byte limit
    TOO_MANY_PIXELS = "too_many_pixels"  # width x height above the pixel limit (decompression bomb)
