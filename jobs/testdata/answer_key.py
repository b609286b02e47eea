"""The answer key's format (line entries, a streamed writer) and the drop's top-level files and folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import IO, Any

from jobs.testdata.bad_files import BYTE_LIMIT_FOR_TESTS, PIXEL_LIMIT_FOR_TESTS
from jobs.testdata.files import IMAGES_DIR
from jobs.testdata.plan import expected_for

ANSWER_KEY_VERSION = 1
MANIFEST_NAME = "manifest.jsonl"
ANSWER_KEY_NAME = "answer_key.json"


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``, refusing a non-empty one unless ``overwrite`` (then only a drop's files go)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace a sample drop there"
            )
        # Only what a previous run wrote is removed; anything else in the folder is left alone.
        for name in (MANIFEST_NAME, ANSWER_KEY_NAME):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / IMAGES_DIR, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def new_entry(line_no: int, kind: str) -> dict[str, Any]:
    """An answer-key line entry with every field present; builders fill in what applies."""
    return {
        "line_no": line_no,
        "kind": kind,
        "expected": expected_for(kind),
        "image_path": None,
        "source_url": None,
        "uk_expected": None,
        "content_id": None,
        "file_sha256": None,
        "bytes": None,
        "format": None,
        "width": None,
        "height": None,
        "frames": None,
        "exif_orientation": None,
        "has_face_expected": None,
        "base_image": None,
        "exact_dup_of_line": None,
        "near_dup_of_line": None,
        "mirror_of_line": None,
        "transform": None,
    }


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class AnswerKeyWriter:
    """Streams answer_key.json by hand in sorted-key order, so a 100k-line key never sits in memory."""

    def __init__(self, stream: IO[str]) -> None:
        self._out = stream
        self._first = True
        limits = {
            "byte_limit_for_tests": BYTE_LIMIT_FOR_TESTS,
            "pixel_limit_for_tests": PIXEL_LIMIT_FOR_TESTS,
        }
        stream.write("{\n")
        stream.write(f'"limits": {_dump(limits)},\n')
        stream.write('"lines": [\n')

    def line(self, entry: dict[str, Any]) -> None:
        self._out.write(("" if self._first else ",\n") + _dump(entry))
        self._first = False

    def finish(
        self,
        *,
        n: int,
        seed: int,
        policy_cases: list[dict[str, Any]],
        scenarios: dict[str, Any],
        summary: dict[str, Any],
    ) -> None:
        """The keys after ``lines``, in sorted order, and the closing brace."""
        out = self._out
        out.write("\n],\n")
        out.write(f'"n": {n},\n')
        out.write('"policy_cases": [\n' + ",\n".join(_dump(c) for c in policy_cases) + "\n],\n")
        out.write(f'"scenarios": {_dump(scenarios)},\n')
        out.write(f'"seed": {seed},\n')
        out.write(f'"summary": {_dump(summary)},\n')
        out.write(f'"version": {ANSWER_KEY_VERSION}\n')
        out.write("}\n")
