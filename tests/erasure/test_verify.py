"""The independent erasure verifier: a clean lake passes, and every kind of planted leftover is caught and named.

Pure helpers (tokens, text and manifest scans, FAISS ids) are tested without Spark. For the lake, one
lake of kept images (versions of images, image_sources, faces, crawl_manifest, quarantine; a FAISS
build) is built per module and copied twice: verified as is (it must pass), and with one leftover of
the erased image ``E`` planted per test below, each in its own place, verified once; each test checks
that its own leftover is found and named, and that no marker's value is ever shown.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pytest
from lakedata import rows
from pyspark.sql import SparkSession

from jobs.core.ids import url_digest
from jobs.core.runs import RunContext
from jobs.erasure import verify
from jobs.erasure.verify import (
    ErasureVerificationError,
    Leftover,
    MarkerIndex,
    Markers,
    Verification,
    hex_tokens,
    scan_chunks,
    scan_manifest,
    stored_faiss_ids,
    url_tokens,
    verify_erasure,
)
from jobs.index.plan import faiss_id
from jobs.lake.schemas import table_spec
from jobs.lake.tables import merge_new_rows


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


E_BYTES = b"\xff\xd8\xff\xe0 erased image bytes \x00\x01\x02" * 8
E_ID = _sha(E_BYTES)
E_URL = "https://photos.example.co.uk/people/Erased-Person.jpg"
E_PAGE = "https://www.example.co.uk/about/erased-person"
E_PHASH = "e1e2e3e4e5e6e7e8"
E_FACE = _sha(b"face of the erased image")
E_DROP = "dddd" * 16
K_BYTES = [b"\x89PNG kept image %d" % i * 8 for i in range(2)]
K_IDS = [_sha(b) for b in K_BYTES]
K_URLS = [f"https://example.com/kept-{i}.jpg" for i in range(2)]
K_FACES = [_sha(b"kept face %d" % i) for i in range(2)]
K_DROP = "cccc" * 16
BUILD = "b" * 64
DIM = 4

MARKERS = Markers(
    image_ids=frozenset({E_ID}),
    phashes=frozenset({E_PHASH}),
    url_hashes=frozenset({url_digest(E_URL)}),
    urls=frozenset({E_URL}),
    face_ids=frozenset({E_FACE}),
)
SECRETS = [E_ID, E_ID[:32], E_ID[:16], E_URL, E_URL.lower(), E_PAGE, url_digest(E_URL), E_PHASH, E_FACE]
"""Strings that must never appear in a message, summary, leftover, check or log line."""


# --- rows of the erased image E and the kept images K -------------------------------------------


def image_item(image_id: str, content: bytes, phash: str, i: int) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "canonical_id": image_id,
        "phash": phash,
        "content": content,
        "byte_size": len(content),
        "first_drop_id": f"drop-{i}",
        "probe_hashes": [],
    }


E_IMAGE = image_item(E_ID, E_BYTES, E_PHASH, 9)
E_FACE_ROW = {"face_id": E_FACE, "image_id": E_ID, "embedding": [1.0, 0.0, 0.0, 0.0]}


def kept_items() -> dict[str, list[dict[str, Any]]]:
    """The kept images' rows in every table they reach."""
    return {
        "image_sources": [
            {
                "source_id": _sha(b"source K%d" % i),
                "image_id": K_IDS[i],
                "source_url": K_URLS[i],
                "page_url": f"https://example.com/page-{i}",
                "source_host": "example.com",
                "page_host": "example.com",
                "drop_id": K_DROP,
            }
            for i in range(2)
        ],
        "faces": [
            {"face_id": K_FACES[i], "image_id": K_IDS[i], "embedding": [0.0, 1.0, 0.0, float(i)]}
            for i in range(2)
        ],
        "crawl_manifest": [{"drop_id": K_DROP, "line_no": i + 1, "source_url": K_URLS[i]} for i in range(2)],
        "quarantine": [
            {"quarantine_id": _sha(b"q%d" % i), "drop_id": K_DROP, "file_sha256": _sha(b"bad %d" % i)}
            for i in range(2)
        ],
    }


def write_items(spark: SparkSession, lake: str, items: dict[str, list[dict[str, Any]]]) -> None:
    """One MERGE (one new version) per table."""
    run = RunContext(job="test-verify")
    for table, values in items.items():
        assert merge_new_rows(spark, lake, table, rows(spark, table, values), run) == len(values)


def write_build(lake: str, build_id: str, faces: list[str], images: list[str]) -> Path:
    """A build folder as jobs.index writes it: manifest, an IDMap2 index and its id map."""
    folder = Path(lake) / "_index" / build_id
    folder.mkdir(parents=True)
    index = faiss.index_factory(DIM, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    ids = np.array([faiss_id(f) for f in faces], dtype=np.int64)
    index.add_with_ids(np.eye(DIM, dtype=np.float32)[: len(faces)], ids)
    (folder / "shard-00000.faiss").write_bytes(faiss.serialize_index(index).tobytes())
    pd.DataFrame({"faiss_id": ids, "face_id": faces, "image_id": images}).to_parquet(
        folder / "shard-00000.ids.parquet", index=False
    )
    manifest = {
        "build_id": build_id,
        "n_vectors": len(faces),
        "shards": [{"shard": 0, "vectors": len(faces)}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def write_drop(folder: Path, lines: list[dict[str, Any]], files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def append_line(path: Path, value: dict[str, Any]) -> None:
    """Append a JSON line to a log file, dropping Hadoop's checksum of it (local file systems check it)."""
    with path.open("a") as out:
        out.write(json.dumps(value) + "\n")
    (path.parent / f".{path.name}.crc").unlink(missing_ok=True)


class Lines(logging.Handler):
    """Every log line of the ``facelake`` loggers while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self) -> Lines:
        logger = logging.getLogger("facelake")
        self.level_before = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("facelake")
        logger.removeHandler(self)
        logger.setLevel(self.level_before)


@pytest.fixture(scope="module")
def base_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Kept images only: images at versions 1 and 2, one MERGE into every other table, a FAISS build."""
    lake = str(tmp_path_factory.mktemp("verify") / "lake")
    for i in range(2):
        write_items(spark, lake, {"images": [image_item(K_IDS[i], K_BYTES[i], f"{i:x}" * 16, i)]})
    write_items(spark, lake, kept_items())
    write_build(lake, BUILD, K_FACES, K_IDS)
    return lake


def run_verify(spark: SparkSession, lake: str, **kwargs: Any) -> Verification:
    kwargs.setdefault("record", False)
    kwargs.setdefault("raise_on_failure", False)
    return verify_erasure(spark, lake, MARKERS, run=RunContext(job="erasure-verify"), **kwargs)


def found(verification: Verification, store: str, path: str | None = None) -> Counter:
    """Occurrences per kind found in ``store`` (at ``path`` when given)."""
    counts: Counter = Counter()
    for left in verification.leftovers:
        if left.store == store and (path is None or left.path == path):
            counts[left.kind] += left.count
    return counts


def assert_shows_no_marker(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a marker value leaked into: {text[:300]}"


def shown(verification: Verification) -> list[str]:
    """Everything a verification shows: summary, failure message, every leftover and check field."""
    out = [verification.summary(), verification.failure_message()]
    out += [f"{x.store}|{x.path}|{x.kind}|{x.detail}" for x in verification.leftovers]
    out += [f"{name}|{detail}" for name, _, detail in verification.checks]
    return out


# --- pure helpers (no Spark) ---------------------------------------------------------------------


def test_tokens_are_found_inside_longer_strings() -> None:
    text = f'{{"path":"part-{E_ID}.parquet","x":"z{E_ID}"}} see {E_URL}, and "{K_URLS[0]}"'
    assert hex_tokens(text) == [E_ID, E_ID]  # "-", "." and "z" are no hex digits
    assert hex_tokens("a" + E_ID) == [] and hex_tokens(E_ID + "0") == []  # a longer run is no id
    assert url_tokens(text) == [E_URL + ",", K_URLS[0]]


def test_scan_text_finds_each_kind_of_marker() -> None:
    index = MarkerIndex(MARKERS)
    stats = json.dumps(
        {"minValues": {"image_id": E_ID[:32]}, "maxValues": {"image_id": E_ID[:32] + "\ufffd"}}
    )
    text = (
        f"{stats} phash={E_PHASH.upper()} face {E_FACE} digest {url_digest(E_URL)} "
        f"url {E_URL.upper()}#frag (a case variant: only its digest matches) "
        f"inside https://cdn.example/?u={E_URL}&x=1 and a kept one {K_URLS[0]} id {K_IDS[0]}"
    )
    counts = index.scan_text(text)
    assert counts == Counter(image_id=2, phash=1, face_id=1, url_hash=1, url=2)
    assert index.scan_text(text, hashes=False) == Counter(url=2)  # the suppression table's scope
    assert index.scan_text(f"{K_IDS[0]} {K_URLS[1]} {E_ID[:31]}") == Counter()  # 31 characters: no match
    whole_value = index.scan_value(E_URL.upper() + "  ", "source_url")  # the value's normalised digest
    assert whole_value == Counter(url=1)


def test_streamed_text_counts_each_match_once_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    index = MarkerIndex(MARKERS)
    monkeypatch.setattr(verify, "CHUNK", 150)
    index.overlap = 120  # a chunk of 150 characters, 120 scanned again: every token crosses a boundary
    text = (
        "x" * 37 + E_ID + " " + E_URL + " https:\\/\\/photos.example.co.uk\\/people\\/Erased-Person.jpg "
    ) * 7
    data = text.encode()
    whole = index.scan_text(text.replace("\\/", "/"))
    for size in (1, 7, 64, 1000):
        counts, sha = scan_chunks([data[i : i + size] for i in range(0, len(data), size)], index)
        assert counts == whole == Counter(image_id=7, url=14) and sha == _sha(data)
    counts, _ = scan_chunks([E_BYTES[:10], E_BYTES[10:]], index)
    assert counts["image_bytes"] == 1


def test_manifest_lines_are_checked_without_trusting_them() -> None:
    index = MarkerIndex(MARKERS)
    escaped = json.dumps({"source_url": E_URL}).replace("https", "\\u0068ttps")  # only JSON sees the URL
    lines = [
        json.dumps({"source_url": K_URLS[0], "image_path": "k.jpg"}),
        "{not json " + E_ID,
        "[" * 50_000 + "]" * 50_000,
        escaped,
        json.dumps({"source_url": E_URL.upper() + "#x"}),  # the digest of its normalised form
        "x" * 3_000_000,  # longer than ingest reads: scanned in pieces, never parsed
        json.dumps({"page_url": 5, "source_url": None}),
    ]
    data = ("\n".join(lines)).encode()
    counts, numbers = scan_manifest(io.BytesIO(data).read, index)
    assert counts == Counter(image_id=1, url=2) and numbers == [2, 4, 5]


def test_an_object_store_folder_is_listed_and_read_like_a_local_one(tmp_path: Path) -> None:
    """The pyarrow branch (object stores) against the local one, on one folder."""
    from pyarrow import fs

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.bin").write_bytes(E_BYTES)
    (tmp_path / "a" / "y.txt").write_text(E_URL)
    local = verify._Tree(str(tmp_path / "a"))
    remote = verify._Tree(str(tmp_path / "a"))
    remote.local, remote.fs, remote.base = None, fs.LocalFileSystem(), str(tmp_path / "a")
    assert remote.exists() and local.exists()
    for tree in (local, remote):
        listed = {}
        for item in tree.files():
            with item.open() as stream:
                listed[item.rel] = (item.size, stream.read())
        assert listed == {"b/x.bin": (len(E_BYTES), E_BYTES), "y.txt": (len(E_URL), E_URL.encode())}
    assert [f.rel for f in remote.files(skip_top=frozenset({"b"}))] == ["y.txt"]


def test_stored_ids_are_read_from_idmap_and_ivf_indexes() -> None:
    ids = np.array([faiss_id(f) for f in [E_FACE, *K_FACES]], dtype=np.int64)
    vectors = np.random.default_rng(1).standard_normal((200, DIM)).astype(np.float32)
    flat = faiss.index_factory(DIM, "IDMap2,Flat")
    flat.add_with_ids(vectors[:3], ids)
    ivf = faiss.index_factory(DIM, "IVF4,Flat")
    ivf.train(vectors)
    ivf.add_with_ids(vectors[:3], ids)
    for index in (flat, ivf):
        data = faiss.serialize_index(index)
        assert sorted(stored_faiss_ids(faiss.deserialize_index(data)).tolist()) == sorted(ids.tolist())
    assert stored_faiss_ids(faiss.IndexFlatL2(DIM)) is None


# --- the verifier on a lake ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(spark: SparkSession, base_lake: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The kept lake and a drop of kept files, verified for E (never there), recording its results."""
    root = tmp_path_factory.mktemp("clean")
    lake = str(root / "lake")
    shutil.copytree(base_lake, lake)
    drop = write_drop(
        root / "drop", [{"source_url": K_URLS[0], "image_path": "k.jpg"}], {"k.jpg": K_BYTES[0]}
    )
    with Lines() as logs:
        verification = run_verify(spark, lake, drops=[str(drop)], record=True, raise_on_failure=True)
    return {"lake": lake, "drop": str(drop), "verification": verification, "logs": logs.lines}


@pytest.fixture(scope="module")
def planted(spark: SparkSession, base_lake: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The kept lake with one leftover of E planted per test below (each in its own place), verified once."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    root = tmp_path_factory.mktemp("planted")
    lake = root / "lake"
    shutil.copytree(base_lake, lake)
    tables = lake / "tables"
    # A stale data file: E's images row in a Parquet file Delta does not list.
    rows(spark, "images", [E_IMAGE]).coalesce(1).write.parquet(str(root / "scratch"))
    shutil.copy(next((root / "scratch").glob("part-*.parquet")), tables / "images" / STALE)
    # A row readable at an old version: E's face written (faces version 2), deleted at the latest (3).
    write_items(spark, str(lake), {"faces": [E_FACE_ROW]})
    DeltaTable.forPath(spark, str(tables / "faces")).delete(F.col("face_id") == E_FACE)
    # A drop named only by crawl_manifest.drop_uri (when the column exists: crawl_manifest version 2).
    via_table = write_drop(root / "drop-in-table", [{"source_url": E_URL}], {"e.jpg": E_BYTES})
    if "drop_uri" in table_spec("crawl_manifest").columns:
        line = {"drop_id": K_DROP, "line_no": 9, "source_url": K_URLS[0], "drop_uri": str(via_table)}
        write_items(spark, str(lake), {"crawl_manifest": [line]})
    # The suppression list holds E's hash by design.
    write_items(
        spark,
        str(lake),
        {"suppression": [{"suppression_id": "5" * 63 + "a", "kind": "sha256", "value": E_ID}]},
    )
    # E's URL in a commit of crawl_manifest; E's URL and id in a Data Docs page.
    info = {
        "commitInfo": {"operation": "MERGE", "operationParameters": {"predicate": f"source_url = '{E_URL}'"}}
    }
    append_line(tables / "crawl_manifest" / "_delta_log" / f"{1:020d}.json", info)
    page = lake / "data_docs" / "validations" / "page.html"
    page.parent.mkdir(parents=True)
    page.write_text(f'<html><a href="{E_URL}">source</a> <td>{E_ID}</td></html>')
    # E's id inside longer strings: statistics JSON inside a commit line and inside a checkpoint sidecar.
    stats = json.dumps({"numRecords": 1, "minValues": {"image_id": E_ID, "source_id": E_FACE[:32]}})
    info = {
        "commitInfo": {"userMetadata": json.dumps({"note": f"part-00000-{E_ID}.parquet", "stats": stats})}
    }
    append_line(tables / "image_sources" / "_delta_log" / f"{1:020d}.json", info)
    sidecar = tables / "image_sources" / "_delta_log" / "_sidecars" / SIDECAR
    sidecar.parent.mkdir()
    pd.DataFrame({"add": [{"path": "part-x.parquet", "stats": stats}], "txn": [None]}).to_parquet(sidecar)
    # An old build holding E's face.
    write_build(str(lake), OLD_BUILD, [E_FACE, K_FACES[0]], [E_ID, K_IDS[0]])
    # A drop still holding E's file and manifest line; links to E's bytes outside the drop.
    outside = root / "outside"
    outside.mkdir()
    (outside / "e.jpg").write_bytes(E_BYTES)
    lines = [
        {"source_url": K_URLS[0], "image_path": "k.jpg"},
        {"source_url": E_URL, "image_path": "sub/e.jpg"},
    ]
    drop = write_drop(root / "drop", lines, {"k.jpg": K_BYTES[0], "sub/e.jpg": E_BYTES})
    (drop / "link.jpg").symlink_to(outside / "e.jpg")
    (drop / "linked-folder").symlink_to(outside, target_is_directory=True)
    # A file named after E's id, and an export outside every store.
    (tables / "images" / f"{E_ID}.txt").write_text(f"{E_URL} {E_PHASH}")
    (lake / "exports").mkdir()
    (lake / "exports" / "people.csv").write_text(f"url\n{E_URL}\n")

    with Lines() as logs:
        try:
            run_verify(spark, str(lake), drops=[str(drop)], raise_on_failure=True)
        except ErasureVerificationError as caught:
            error = caught
        else:
            pytest.fail("the planted lake passed verification")
    return {
        "lake": str(lake),
        "drop": str(drop),
        "via_table": str(via_table),
        "error": error,
        "logs": logs.lines,
    }


STALE = "part-00000-restored-from-backup.snappy.parquet"
SIDECAR = f"{2:020d}.checkpoint.0a1b.parquet"
OLD_BUILD = "a" * 64


def test_a_clean_lake_passes_and_its_own_records_hold_no_marker(clean: dict[str, Any]) -> None:
    """E was never there (kept images, a build and a drop are): nothing found, also in the dq_results
    rows and Data Docs the run wrote before scanning the files."""
    verification: Verification = clean["verification"]
    assert verification.passed and verification.leftovers == []
    assert all(ok for _, ok, _ in verification.checks)
    checks = {name: detail for name, _, detail in verification.checks}
    assert {f"rows:{t}" for t in ("images", "image_sources", "faces", "crawl_manifest", "quarantine")} <= set(
        checks
    )
    assert checks["rows:images"] == "versions 0-2 checked, 0 matching rows summed over versions"
    assert {
        "files:images",
        "files:dq_results",
        "files:index",
        "files:data_docs",
        f"landing {clean['drop']}",
    } <= set(checks)
    assert not checks["files:data_docs"].startswith("0 files")  # the suite pages of the rows checks
    assert verification.summary().startswith("erasure verification passed: ")
    assert_shows_no_marker(*clean["logs"], *shown(verification))


def test_a_stale_data_file_is_caught(planted: dict[str, Any]) -> None:
    """A Parquet file holding E's images row, copied into the table folder under a new name."""
    verification = planted["error"].verification
    path = f"tables/images/{STALE}"
    assert found(verification, "images", path) == Counter(
        image_id=2, phash=1, image_bytes=1
    )  # + canonical_id
    [left] = [x for x in verification.leftovers if x.path == path and x.kind == "image_id"]
    assert left.detail == "data file; columns canonical_id, content, image_id, phash"
    # Delta does not list the file, so no version's rows hold E: only the file scan sees it.
    assert ("rows:images", True) in [c[:2] for c in verification.checks]


def test_a_row_readable_at_an_old_version_is_caught_twice(planted: dict[str, Any]) -> None:
    """E's face deleted at the latest version only: time travel still reads it, and its data file, its
    change data and its commit's statistics still hold it."""
    verification = planted["error"].verification
    [rows_left] = [x for x in verification.leftovers if x.kind == "rows"]
    assert (rows_left.store, rows_left.path, rows_left.count) == ("faces", "tables/faces", 1)
    assert rows_left.detail == "versions 2 (of 0-3)"
    faces = {x.path: x for x in verification.leftovers if x.store == "faces" and x.kind == "face_id"}
    assert any(re.fullmatch(r"tables/faces/part-[^/]+\.parquet", p) for p in faces)
    assert any(p.startswith("tables/faces/_change_data/") for p in faces)
    assert (
        faces[f"tables/faces/_delta_log/{2:020d}.json"].detail == "commit, version 2"
    )  # 32-character prefixes
    assert ("rows:faces", False) in [c[:2] for c in verification.checks]
    assert "check rows:faces failed: versions 0-3 checked, 1 matching rows" in str(planted["error"])


def test_an_id_in_an_old_index_build_is_caught(planted: dict[str, Any]) -> None:
    """A build folder left behind with E's face: in the index's stored ids and in its id map."""
    index = {(x.path, x.kind): x.count for x in planted["error"].verification.leftovers if x.store == "index"}
    assert index == {
        (f"_index/{OLD_BUILD}/shard-00000.faiss", "face_id"): 1,
        (f"_index/{OLD_BUILD}/shard-00000.ids.parquet", "face_id"): 2,  # face_id and faiss_id columns
        (f"_index/{OLD_BUILD}/shard-00000.ids.parquet", "image_id"): 1,
    }


def test_a_vector_missing_from_its_id_map_is_not_proven_clean(tmp_path: Path) -> None:
    """Without face ids, an index holding a vector its id map does not name fails a check (no Spark needed)."""
    lake = str(tmp_path / "lake")
    (tmp_path / "lake" / "tables").mkdir(parents=True)
    folder = write_build(lake, "c" * 64, [E_FACE, K_FACES[0]], [E_ID, K_IDS[0]])
    pd.DataFrame(
        {"faiss_id": [faiss_id(K_FACES[0])], "face_id": [K_FACES[0]], "image_id": [K_IDS[0]]}
    ).to_parquet(folder / "shard-00000.ids.parquet", index=False)
    verification = verify.scan_files(lake, Markers(image_ids=frozenset({E_ID})))
    assert verification.leftovers == [] and not verification.passed and verification.files_scanned == 3
    [check] = [c for c in verification.checks if not c[1]]
    assert check == (
        f"index ids _index/{'c' * 64}/shard-00000.faiss",
        False,
        "1 stored vectors have no entry in the id map (they could be erased faces)",
    )
    assert verify.scan_files(lake, MARKERS).leftovers[0] == Leftover(
        "index", f"_index/{'c' * 64}/shard-00000.faiss", "face_id", 1, "index file; columns stored ids"
    )


def test_a_mistyped_lake_does_not_pass(tmp_path: Path) -> None:
    verification = verify.scan_files(str(tmp_path / "no-such-lake"), MARKERS)
    assert (
        not verification.passed
        and ("files:tables", False, "the lake root has no tables folder") in verification.checks
    )


def test_landing_files_are_caught_and_links_are_not_followed(planted: dict[str, Any]) -> None:
    """E's image file and its manifest line left in a drop; links to E's bytes outside the drop not read."""
    drop = planted["drop"]
    verification = planted["error"].verification
    landing = {
        (x.path, x.kind): (x.count, x.detail)
        for x in verification.leftovers
        if x.path.startswith(drop + "/") or x.path == drop
    }
    assert landing == {
        (f"{drop}/manifest.jsonl", "url"): (1, "1 manifest lines: 2"),
        (drop, "image_bytes"): (1, "files in the drop (names not shown: paths may be personal)"),
    }
    [check] = [c for c in verification.checks if c[0] == f"landing {drop}"]
    assert check == (f"landing {drop}", False, "3 files scanned, 2 leftovers, 2 symbolic links not followed")


def test_drops_are_found_through_crawl_manifest(planted: dict[str, Any]) -> None:
    if "drop_uri" not in table_spec("crawl_manifest").columns:
        pytest.skip("crawl_manifest has no drop_uri column yet")
    via = planted["via_table"]
    assert found(planted["error"].verification, "landing", via) == Counter(image_bytes=1)
    assert found(planted["error"].verification, "landing", f"{via}/manifest.jsonl") == Counter(url=1)


def test_a_url_in_a_log_file_or_in_data_docs_is_caught(planted: dict[str, Any]) -> None:
    """A commitInfo-like line naming E's URL appended to a commit; E's URL and id in a Data Docs page."""
    places = {(x.store, x.path, x.kind): (x.count, x.detail) for x in planted["error"].verification.leftovers}
    commit = f"tables/crawl_manifest/_delta_log/{1:020d}.json"
    assert places[("crawl_manifest", commit, "url")] == (1, "commit, version 1")
    assert places[("data_docs", "data_docs/validations/page.html", "url")] == (1, "data docs file")
    assert places[("data_docs", "data_docs/validations/page.html", "image_id")] == (1, "data docs file")
    assert {k for k in places if k[0] in ("crawl_manifest", "data_docs")} == {
        ("crawl_manifest", commit, "url"),
        ("data_docs", "data_docs/validations/page.html", "url"),
        ("data_docs", "data_docs/validations/page.html", "image_id"),
    }


def test_a_hex_id_inside_a_longer_string_is_caught(planted: dict[str, Any]) -> None:
    """E's id in statistics JSON inside a JSON string of a commit line, and in a checkpoint sidecar's nested
    column; the suppression list holding E's hash by design is not a leftover."""
    verification = planted["error"].verification
    sources = {
        (x.path, x.kind): (x.count, x.detail) for x in verification.leftovers if x.store == "image_sources"
    }
    assert sources == {
        (f"tables/image_sources/_delta_log/{1:020d}.json", "image_id"): (2, "commit, version 1"),
        (f"tables/image_sources/_delta_log/{1:020d}.json", "face_id"): (1, "commit, version 1"),  # a prefix
        (f"tables/image_sources/_delta_log/_sidecars/{SIDECAR}", "image_id"): (
            1,
            "checkpoint, version 2; columns add",
        ),
        (f"tables/image_sources/_delta_log/_sidecars/{SIDECAR}", "face_id"): (
            1,
            "checkpoint, version 2; columns add",
        ),
    }
    assert "suppression" not in verification.by_store()
    assert ("files:suppression", True) in [c[:2] for c in verification.checks]


def test_messages_never_show_a_marker_value(planted: dict[str, Any]) -> None:
    """Leftovers everywhere, one file named after E's id: the error, summary and logs name each place, kind
    and count, and never E's id (or its prefixes), URL, URL hash, face id or phash."""
    error: ErasureVerificationError = planted["error"]
    verification = error.verification
    message = str(error)
    assert {"images", "image_sources", "faces", "index", "landing", "data_docs", "exports"} <= set(
        verification.by_store()
    )
    for left in verification.leftovers:
        assert left.describe() in message
    [named] = {x.path for x in verification.leftovers if "the file name" in x.detail}
    assert named == "tables/images/<hex>.txt"
    assert found(verification, "exports") == Counter(url=1)
    assert message.startswith("erasure verification FAILED: ")
    assert planted["logs"] and any("FAILED" in line for line in planted["logs"])
    assert_shows_no_marker(message, *planted["logs"], *shown(verification))


def test_leftover_and_summary_formats() -> None:
    left = Leftover("images", "tables/images/x.parquet", "image_id", 2, "data file")
    verification = Verification([left], [("rows:images", True, "versions 0-2 checked")], 5)
    assert left.describe() == "images tables/images/x.parquet: image_id x2 (data file)"
    assert not verification.passed
    assert (
        verification.summary()
        == "erasure verification FAILED: 5 files scanned, 1 checks, 1 leftovers (images 1)"
    )
    assert Verification([], [("x", False, "")], 0).passed is False
    assert Verification([], [("x", True, "")], 0).passed is True
