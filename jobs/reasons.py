"""Machine-readable quarantine reasons shared by the sample-drop generator, ingest and tests."""

from __future__ import annotations

from enum import StrEnum


class QuarantineReason(StrEnum):
    """Why a manifest line or an image file was set aside instead of ingested."""

    MALFORMED_JSON = "malformed_json"  # the line is not a JSON object
    MISSING_FIELD = "missing_field"  # a required field (image_path, source_url, crawled_at) is absent
    INVALID_FIELD = "invalid_field"  # a field has the wrong type or format (bad timestamp, no zone, bad URL…)
    PATH_ESCAPE = "path_escape"  # image_path is absolute or leaves the drop folder
    MISSING_FILE = "missing_file"  # image_path names no file
    EMPTY_FILE = "empty_file"  # zero bytes
    NOT_AN_IMAGE = "not_an_image"  # bytes are not a known image format
    TRUNCATED_IMAGE = "truncated_image"  # a known format, cut short
    CORRUPT_IMAGE = "corrupt_image"  # a known format whose data does not decode
    TOO_MANY_BYTES = "too_many_bytes"  # file larger than the configured byte limit
    TOO_MANY_PIXELS = "too_many_pixels"  # width x height above the pixel limit (decompression bomb)
