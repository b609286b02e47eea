"""Build files on local disk: write, read, checksum, list, delete, and refusing altered builds."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from jobs.index import store as store_module
from jobs.index.store import INDEX_DIR, MANIFEST, BuildStore, IndexIntegrityError
from jobs.lake.fs import arrow_uri as _normalise

BUILD = "20240501T120000-3f9a2c7d81e4b6"
"""A build id longer than the 12 characters messages name."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BuildStore:
    return BuildStore(str(tmp_path / "lake"))


def _publish(store: BuildStore, files: dict[str, bytes]) -> dict[str, Any]:
    """Write shard files of BUILD and return a manifest listing them (shard i: shard-i.faiss + ids)."""
    shards = []
    for i in range(len(files) // 2):
        entry: dict[str, Any] = {"shard": i}
        for key, name in (("index", f"shard-{i}.faiss"), ("ids", f"shard-{i}.ids.npy")):
            data = files[name]
            entry[f"{key}_file"] = name
            entry[f"{key}_sha256"] = store.write_bytes(f"{BUILD}/{name}", data)
            entry[f"{key}_bytes"] = len(data)
        shards.append(entry)
    return {"build_id": BUILD, "shards": shards}


def _files() -> dict[str, bytes]:
    return {
        "shard-0.faiss": bytes(range(256)) * 40,
        "shard-0.ids.npy": b"ids-0" * 100,
        "shard-1.faiss": b"\x00" * 5_000,
        "shard-1.ids.npy": b"ids-1" * 100,
    }


# --- paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3a://bucket/lake", "s3://bucket/lake"),
        ("s3a://KEY:SECRET@bucket/p", "s3://KEY:SECRET@bucket/p"),
        ("s3n://bucket/lake", "s3://bucket/lake"),
        ("gcs://bucket/lake", "gs://bucket/lake"),
        ("s3://bucket/lake", "s3://bucket/lake"),
        ("gs://bucket/lake", "gs://bucket/lake"),
        ("file:///data/lake", "/data/lake"),
        ("file:/data/lake", "/data/lake"),
        ("/data/lake", "/data/lake"),
    ],
)
def test_normalise_maps_hadoop_schemes(uri: str, expected: str) -> None:
    assert _normalise(uri) == expected


def test_normalise_makes_relative_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _normalise("lake") == str((tmp_path / "lake").resolve())
    assert _normalise("./a/../lake/") == str((tmp_path / "lake").resolve())
    assert os.path.isabs(_normalise("x"))


def test_store_paths_are_under_the_index_folder(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    store = BuildStore(str(lake) + "/")
    assert store.uri == f"{lake}/{INDEX_DIR}"
    assert store.path("b1", MANIFEST) == f"{lake.resolve()}/{INDEX_DIR}/b1/{MANIFEST}"
    assert store.display("b1", MANIFEST) == f"{lake}/{INDEX_DIR}/b1/{MANIFEST}"


def test_display_masks_credentials() -> None:
    # Constructing a store for s3a:// would reach for the network: set only what display() reads.
    store = BuildStore.__new__(BuildStore)
    store.uri = "s3a://KEY:SECRET@bucket/p/" + INDEX_DIR
    shown = store.display(BUILD)
    assert shown == f"s3a://***@bucket/p/{INDEX_DIR}/{BUILD}"
    assert "SECRET" not in shown and "KEY" not in shown
    store.uri = "s3a://bucket/p/_index?secret_key=abc123&region=eu"
    assert "abc123" not in store.display() and "region=eu" in store.display()


# --- bytes ----------------------------------------------------------------------------------------


def test_write_bytes_returns_sha_and_creates_folders(store: BuildStore, tmp_path: Path) -> None:
    data = b"faiss index bytes" * 100
    sha = store.write_bytes(f"{BUILD}/deep/er/shard-0.faiss", data)
    assert sha == _sha(data)
    on_disk = tmp_path / "lake" / INDEX_DIR / BUILD / "deep" / "er" / "shard-0.faiss"
    assert on_disk.read_bytes() == data
    assert store.read_bytes(f"{BUILD}/deep/er/shard-0.faiss") == data
    # Overwriting replaces the whole file.
    assert store.write_bytes(f"{BUILD}/deep/er/shard-0.faiss", b"short") == _sha(b"short")
    assert on_disk.read_bytes() == b"short"


def test_write_empty_file(store: BuildStore) -> None:
    assert store.write_bytes("b/empty", b"") == _sha(b"")
    assert store.read_bytes("b/empty") == b""
    assert store.checksum("b/empty") == (_sha(b""), 0)


def test_read_missing_file_raises(store: BuildStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nope/manifest.json")


def test_json_round_trip(store: BuildStore) -> None:
    value = {"b": [1, 2], "a": "x"}
    sha = store.write_json(f"{BUILD}/{MANIFEST}", value)
    data = store.read_bytes(f"{BUILD}/{MANIFEST}")
    assert sha == _sha(data) and json.loads(data) == value
    assert data.index(b'"a"') < data.index(b'"b"') and data.endswith(b"\n")


def test_checksum_streams_in_chunks(store: BuildStore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(10_500)
    store.write_bytes("b/big.faiss", data)
    reads: list[int] = []
    real_open = store.fs.open_input_stream

    class Spy:
        def __init__(self, stream: Any) -> None:
            self.stream = stream

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.stream.close()

        def read(self, n: int | None = None) -> bytes:
            assert n is not None, "read the whole file at once"
            reads.append(n)
            return self.stream.read(n)

        def readall(self) -> bytes:
            raise AssertionError("read the whole file at once")

    monkeypatch.setattr(store_module, "CHUNK", 1_000)
    monkeypatch.setattr(store, "fs", _FsProxy(store.fs, lambda path: Spy(real_open(path))))
    assert store.checksum("b/big.faiss") == (_sha(data), 10_500)
    assert set(reads) == {1_000} and len(reads) == 12  # 11 chunks and the empty read ending the loop


class _FsProxy:
    """A filesystem whose input streams are wrapped; everything else goes to the real one."""

    def __init__(self, real: Any, opener: Any) -> None:
        self._real, self._opener = real, opener

    def open_input_stream(self, path: str) -> Any:
        return self._opener(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_download_and_upload(store: BuildStore, tmp_path: Path) -> None:
    data = os.urandom(3_000)
    local = tmp_path / "src.bin"
    local.write_bytes(data)
    assert store.upload(local, "b/x.bin") == _sha(data)
    target = tmp_path / "cache" / "nested" / "x.bin"
    store.download("b/x.bin", target)
    assert target.read_bytes() == data


def test_exists_and_delete_dir(store: BuildStore, tmp_path: Path) -> None:
    assert not store.exists("") and not store.exists("b1")
    store.write_bytes("b1/shard-0.faiss", b"1")
    store.write_bytes("b1/sub/shard-1.faiss", b"2")
    store.write_bytes("b2/shard-0.faiss", b"3")
    assert store.exists("") and store.exists("b1") and store.exists("b1/sub/shard-1.faiss")
    assert not store.exists("b1/shard-9.faiss")
    store.delete_dir("b1")
    assert not store.exists("b1") and not (tmp_path / "lake" / INDEX_DIR / "b1").exists()
    assert store.read_bytes("b2/shard-0.faiss") == b"3"
    store.delete_dir("b1")  # already gone: nothing to do
    store.delete_dir("never-there")
    assert store.exists("b2")


def test_build_dirs_lists_builds_with_newest_mtime(store: BuildStore, tmp_path: Path) -> None:
    assert store.build_dirs() == {}
    store.write_bytes("old/a", b"a")
    store.write_bytes("old/sub/b", b"b")
    store.write_bytes("new/a", b"a")
    root = tmp_path / "lake" / INDEX_DIR
    os.utime(root / "old" / "a", (1_000_000_000, 1_000_000_000))
    os.utime(root / "old" / "sub" / "b", (1_100_000_000, 1_100_000_000))
    os.utime(root / "new" / "a", (1_700_000_000, 1_700_000_000))
    # Folders' own times count too (an empty folder of a build that just started is not idle).
    for folder in ("old", "old/sub", "new"):
        os.utime(root / folder, (900_000_000, 900_000_000))
    (root / "empty").mkdir()
    os.utime(root / "empty", (1_200_000_000, 1_200_000_000))
    dirs = store.build_dirs()
    assert set(dirs) == {"old", "new", "empty"}
    assert dirs["old"] == pytest.approx(1_100_000_000)
    assert dirs["new"] == pytest.approx(1_700_000_000)
    assert dirs["empty"] == pytest.approx(1_200_000_000)


# --- integrity ------------------------------------------------------------------------------------


def test_read_manifest_accepts_the_recorded_sha(store: BuildStore) -> None:
    manifest = _publish(store, _files())
    sha = store.write_json(f"{BUILD}/{MANIFEST}", manifest)
    assert store.read_manifest(BUILD, sha) == manifest


def test_read_manifest_refuses_a_different_sha(store: BuildStore) -> None:
    manifest = {"build_id": BUILD, "shards": [], "marker": "do-not-echo-this-content"}
    recorded = store.write_json(f"{BUILD}/{MANIFEST}", manifest)
    altered = dict(manifest, shards=[{"shard": 0}])
    store.write_json(f"{BUILD}/{MANIFEST}", altered)
    with pytest.raises(IndexIntegrityError) as caught:
        store.read_manifest(BUILD, recorded)
    message = str(caught.value)
    assert BUILD[:12] in message and BUILD not in message
    assert recorded[:12] in message and "manifest.json" in message
    assert "do-not-echo-this-content" not in message and "shards" not in message
    assert isinstance(caught.value, RuntimeError)


def test_verify_files_passes_for_correct_files(store: BuildStore) -> None:
    manifest = _publish(store, _files())
    assert store.verify_files(BUILD, manifest) is None


@pytest.mark.parametrize("name", ["shard-0.faiss", "shard-1.ids.npy"])
def test_verify_files_refuses_a_flipped_byte(store: BuildStore, tmp_path: Path, name: str) -> None:
    files = _files()
    manifest = _publish(store, files)
    path = tmp_path / "lake" / INDEX_DIR / BUILD / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError) as caught:
        store.verify_files(BUILD, manifest)
    message = str(caught.value)
    assert name in message and BUILD[:12] in message
    assert f"({len(files[name])} bytes)" in message  # same size, different sha
    assert _sha(files[name])[:12] in message


def test_verify_files_refuses_a_truncated_file(store: BuildStore, tmp_path: Path) -> None:
    files = _files()
    manifest = _publish(store, files)
    path = tmp_path / "lake" / INDEX_DIR / BUILD / "shard-1.faiss"
    path.write_bytes(files["shard-1.faiss"][:-1])
    with pytest.raises(IndexIntegrityError, match=r"shard-1\.faiss .*\(4999 bytes\).*\(5000 bytes\)"):
        store.verify_files(BUILD, manifest)


def test_verify_files_refuses_a_size_mismatch_with_the_right_sha(store: BuildStore) -> None:
    manifest = _publish(store, _files())
    manifest["shards"][0]["ids_bytes"] += 1
    with pytest.raises(IndexIntegrityError, match=r"shard-0\.ids\.npy"):
        store.verify_files(BUILD, manifest)


def test_verify_files_refuses_a_missing_file(store: BuildStore, tmp_path: Path) -> None:
    manifest = _publish(store, _files())
    (tmp_path / "lake" / INDEX_DIR / BUILD / "shard-1.ids.npy").unlink()
    with pytest.raises(IndexIntegrityError) as caught:
        store.verify_files(BUILD, manifest)
    message = str(caught.value)
    assert "shard-1.ids.npy is missing" in message
    assert BUILD[:12] in message and store.display(BUILD) in message


def test_build_dirs_ignores_files_at_the_index_root(store: BuildStore) -> None:
    store.write_bytes("b1/shard-0.faiss", b"1")
    store.write_bytes("README", b"not a build")
    assert set(store.build_dirs()) == {"b1"}
