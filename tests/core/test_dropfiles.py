"""Reading drop files (jobs.core.dropfiles): links never followed, special files refused, sizes bounded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from jobs.core.dropfiles import local_root, read_drop_file, read_local, read_object_store
from jobs.core.reasons import QuarantineReason as R


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    root = tmp_path / "drop"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.jpg").write_bytes(b"outside")
    (root / "a.jpg").write_bytes(b"abc")
    (root / "sub" / "b:c d%.jpg").write_bytes(b"xyz")
    (root / "_hidden.jpg").write_bytes(b"h")
    (root / "empty.jpg").write_bytes(b"")
    (root / "big.jpg").write_bytes(b"x" * 100)
    (root / "dir.jpg").mkdir()
    os.mkfifo(root / "fifo.jpg")
    os.symlink(tmp_path / "outside" / "secret.jpg", root / "out.jpg")
    os.symlink(root / "a.jpg", root / "in.jpg")
    os.symlink(tmp_path / "outside", root / "outdir")
    return root


@pytest.mark.parametrize(
    ("relative", "content", "reason"),
    [
        ("a.jpg", b"abc", None),
        ("sub/b:c d%.jpg", b"xyz", None),
        ("_hidden.jpg", b"h", None),
        ("empty.jpg", b"", None),
        ("big.jpg", None, R.TOO_MANY_BYTES),
        ("dir.jpg", None, R.NOT_A_FILE),
        ("fifo.jpg", None, R.NOT_A_FILE),
        ("out.jpg", None, R.SYMLINK),
        ("in.jpg", None, R.SYMLINK),
        ("outdir/secret.jpg", None, R.SYMLINK),
        ("missing.jpg", None, R.MISSING_FILE),
        ("a.jpg/x.jpg", None, R.MISSING_FILE),
    ],
)
def test_read_local(drop: Path, relative: str, content: bytes | None, reason: R | None) -> None:
    got = read_local(str(drop), relative, max_bytes=10)
    assert (got.content, got.reason) == (content, reason)


def test_oversized_files_are_hashed_without_being_returned(drop: Path) -> None:
    got = read_local(str(drop), "big.jpg", max_bytes=10)
    assert got.size == 100 and got.sha256 == hashlib.sha256(b"x" * 100).hexdigest() and got.content is None


def test_file_uris_and_plain_paths_read_alike(drop: Path) -> None:
    assert local_root(drop.as_uri()) == str(drop) and local_root(str(drop)) == str(drop)
    assert local_root("s3a://bucket/drop") is None
    assert read_drop_file(drop.as_uri(), "a.jpg", 10).content == b"abc"


def test_object_store_reader_bounds_sizes(drop: Path) -> None:
    # pyarrow's local file system stands in for a bucket here: same calls as S3/GCS.
    uri = drop.as_uri()
    assert read_object_store(uri, "a.jpg", 10).content == b"abc"
    assert read_object_store(uri, "big.jpg", 10).reason == R.TOO_MANY_BYTES
    assert read_object_store(uri, "missing.jpg", 10).reason == R.MISSING_FILE
    assert read_object_store(uri, "dir.jpg", 10).reason == R.NOT_A_FILE
