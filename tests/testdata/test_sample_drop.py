"""The sample crawl-drop generator: categories, answer key, determinism, bad files and pHash distances."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import posixpath
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from scipy.fft import dctn

from jobs.core.manifest import MAX_LINE_BYTES
from jobs.core.reasons import QuarantineReason as R
from jobs.testdata.sample_drop import (
    ALL_KINDS,
    SampleDropSummary,
    add_arguments,
    generate_sample_drop,
    main,
)

N = 80
SEED = 0
PHASH_NEAR = 10  # what ingest treats as a near duplicate (Hamming distance, inclusive)


# --------------------------------------------------------------------------- helpers


def _phash(img: Image.Image) -> int:
    """Independent pHash: 32x32 grey, 2D DCT, 8x8 low band without DC, median threshold (63 bits)."""
    grey = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(grey, type=2, norm="ortho")[:8, :8].ravel()[1:]
    bits = low > np.median(low)
    return int("".join("1" if b else "0" for b in bits), 2)


def _distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _decoded(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        # Upright pixels are what a reader sees; the EXIF-rotated sample depends on this.
        return ImageOps.exif_transpose(img)


def _is_uk(record: dict[str, Any]) -> bool:
    """DESIGN.md jurisdiction rules, written independently of the generator."""
    for name in ("source_url", "page_url"):
        url = record.get(name)
        if isinstance(url, str):
            host = (urlsplit(url).hostname or "").rstrip(".").lower()
            if host == "uk" or host.endswith(".uk"):
                return True
    country = record.get("country")
    if isinstance(country, str) and country.upper() in ("GB", "UK"):
        return True
    tags = record.get("tags")
    return isinstance(tags, list) and any(isinstance(t, str) and t.lower() == "uk" for t in tags)


def _file_digests(root: Path) -> dict[str, str]:
    """Hash of every regular file, text of every symbolic link (never followed), and every folder."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _regular_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if not p.is_symlink() and p.is_file()]


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample-drop") / "drop"
    generate_sample_drop(out, N, SEED)
    return out


@pytest.fixture(scope="module")
def key(drop: Path) -> dict[str, Any]:
    return json.loads((drop / "answer_key.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def raw_lines(drop: Path) -> list[bytes]:
    data = (drop / "manifest.jsonl").read_bytes()
    assert data.endswith(b"\n")
    return data.split(b"\n")[:-1]


@pytest.fixture(scope="module")
def lines(raw_lines: list[bytes]) -> list[str]:
    # surrogateescape: the invalid_utf8 lines keep their bad bytes as lone surrogates instead of failing.
    return [line.decode("utf-8", errors="surrogateescape") for line in raw_lines]


@pytest.fixture(scope="module")
def hashes(drop: Path, key: dict[str, Any]) -> dict[int, int]:
    """pHash of every ingestible line's file, by line number."""
    return {
        e["line_no"]: _phash(_decoded(drop / e["image_path"])) for e in key["lines"] if e["expected"] == "ok"
    }


def _entries(key: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [e for e in key["lines"] if all(e[k] == v for k, v in match.items())]


# --------------------------------------------------------------------------- structure


def test_layout_and_answer_key_shape(drop: Path, key: dict[str, Any], lines: list[str]) -> None:
    assert sorted(p.name for p in drop.iterdir()) == ["answer_key.json", "images", "manifest.jsonl"]
    assert len(lines) == N == key["n"] == len(key["lines"])
    assert key["version"] == 1 and key["seed"] == SEED
    assert key["limits"] == {"byte_limit_for_tests": 2 * 1024 * 1024, "pixel_limit_for_tests": 50_000_000}
    assert [e["line_no"] for e in key["lines"]] == list(range(1, N + 1))
    assert list(key) == sorted(key)
    assert all(list(e) == sorted(e) for e in key["lines"])
    # The manifest never points at the answer key.
    assert "answer_key" not in "".join(lines)


def test_every_category_and_reason_is_present(key: dict[str, Any]) -> None:
    kinds = Counter(e["kind"] for e in key["lines"])
    assert set(kinds) == set(ALL_KINDS)
    expected = {e["expected"] for e in key["lines"]}
    assert expected == {"ok", *(r.value for r in R)}
    assert any(e["has_face_expected"] is True for e in _entries(key, expected="ok"))
    assert any(e["has_face_expected"] is False for e in _entries(key, expected="ok"))
    transforms = {e["transform"].split(":")[0] for e in key["lines"] if e["near_dup_of_line"]}
    assert {"jpeg_quality", "resize", "crop", "brightness", "format"} <= transforms
    assert {t for t in transforms if t.startswith("copy_")}, "a re-post copy from jobs.testdata.copies"
    formats = {e["format"] for e in _entries(key, expected="ok")}
    assert {"JPEG", "PNG", "WEBP", "GIF"} <= formats


def test_manifest_lines_match_the_key(key: dict[str, Any], lines: list[str]) -> None:
    for entry, line in zip(key["lines"], lines, strict=True):
        record = _parse(line)
        if entry["expected"] == R.MALFORMED_JSON:
            assert not isinstance(record, dict), line
            assert entry["image_path"] is None and entry["uk_expected"] is None
            continue
        assert isinstance(record, dict), line
        if entry["expected"] == R.INVALID_ENCODING:
            # The bad bytes sit in source_url, which the key cannot hold as text.
            assert entry["source_url"] is None and isinstance(record["source_url"], str)
            assert record.get("image_path") == entry["image_path"]
            assert _is_uk(record) == entry["uk_expected"], line
            continue
        assert record.get("image_path") == entry["image_path"]
        assert record.get("source_url") == entry["source_url"]
        assert _is_uk(record) == entry["uk_expected"], line


def test_valid_lines_honour_the_contract(drop: Path, key: dict[str, Any], lines: list[str]) -> None:
    zones = Counter()
    extras = Counter()
    for entry, line in zip(key["lines"], lines, strict=True):
        if entry["expected"] in (R.MALFORMED_JSON, R.MISSING_FIELD, R.INVALID_FIELD, R.PATH_ESCAPE):
            continue
        record = json.loads(line)
        assert {"image_path", "source_url", "crawled_at"} <= set(record)
        stamp = datetime.fromisoformat(record["crawled_at"])
        assert stamp.tzinfo is not None
        zones[record["crawled_at"][-6:] if "+" in record["crawled_at"] else "Z"] += 1
        assert "tags" not in record or isinstance(record["tags"], list)
        assert urlsplit(record["source_url"]).scheme == "https"
        assert not posixpath.normpath(record["image_path"]).startswith("..")
        extras.update(k for k in record if k in ("crawler_version", "http_status"))
    assert zones["Z"] and zones["+01:00"]
    assert extras["crawler_version"] and extras["http_status"]


def test_line_level_problems_are_exactly_one_each(key: dict[str, Any], lines: list[str]) -> None:
    required = ("image_path", "source_url", "crawled_at")
    for entry in key["lines"]:
        record = _parse(lines[entry["line_no"] - 1])
        if entry["expected"] == R.MISSING_FIELD:
            assert sum(name not in record for name in required) == 1
        elif entry["expected"] == R.INVALID_FIELD:
            stamp = record["crawled_at"]
            try:
                zoned = datetime.fromisoformat(stamp).tzinfo is not None
            except ValueError:
                zoned = False
            assert (not zoned) != (not isinstance(record.get("tags", []), list))
            # The file itself is fine, so the field is the only reason.
            assert entry["file_sha256"] is not None and entry["has_face_expected"] is not None


def test_byte_level_problems_are_the_only_problem(
    key: dict[str, Any], raw_lines: list[bytes], lines: list[str]
) -> None:
    """invalid_utf8 and line_too_long lines would be ingestible if their bytes were right."""
    required = ("image_path", "source_url", "crawled_at")
    seen = Counter()
    for entry in key["lines"]:
        raw, text = raw_lines[entry["line_no"] - 1], lines[entry["line_no"] - 1]
        if entry["expected"] == R.INVALID_ENCODING:
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            assert len(raw) < MAX_LINE_BYTES
            record = json.loads(text)
            # Only source_url holds bytes that are not UTF-8 (escaped into lone surrogates when read).
            bad = [
                k
                for k, v in record.items()
                if isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v)
            ]
            assert bad == ["source_url"]
            assert urlsplit(record["source_url"]).scheme == "https"
        elif entry["expected"] == R.LINE_TOO_LONG:
            assert len(raw) > MAX_LINE_BYTES
            assert len(raw) <= MAX_LINE_BYTES + 4096  # just over: the drop stays small
            record = json.loads(raw.decode("utf-8"))
            assert isinstance(record, dict) and record["image_path"] == entry["image_path"]
            # Without the padding field the line would be short and valid.
            del record["page_html"]
            assert len(json.dumps(record, ensure_ascii=False).encode()) < 4096
            assert entry["source_url"] == record["source_url"]
        else:
            assert len(raw) < MAX_LINE_BYTES
            continue
        seen[entry["expected"]] += 1
        assert all(record.get(name) for name in required)
        datetime.fromisoformat(record["crawled_at"])
        assert entry["file_sha256"] is not None and entry["has_face_expected"] is not None
    assert seen[R.INVALID_ENCODING] >= 1 and seen[R.LINE_TOO_LONG] == 1


def test_summary_matches_key(tmp_path: Path) -> None:
    summary = generate_sample_drop(tmp_path / "d", 60, seed=2)
    assert isinstance(summary, SampleDropSummary)
    key = json.loads((tmp_path / "d" / "answer_key.json").read_text())
    data = summary.to_dict()
    assert data["lines"] == 60 and data["n"] == 60 and data["seed"] == 2
    assert data["by_expected"] == dict(sorted(Counter(e["expected"] for e in key["lines"]).items()))
    assert data["by_kind"] == dict(sorted(Counter(e["kind"] for e in key["lines"]).items()))
    files = _regular_files(tmp_path / "d" / "images")
    assert data["files"] == len(files)
    assert data["total_bytes"] == sum(p.stat().st_size for p in files)
    assert data["uk_lines"] == sum(bool(e["uk_expected"]) for e in key["lines"])
    assert data["exact_dup_lines"] == sum(
        e["exact_dup_of_line"] is not None for e in key["lines"] if e["expected"] == "ok"
    )
    assert data["near_dup_lines"] == sum(e["near_dup_of_line"] is not None for e in key["lines"])
    assert data["mirror_lines"] == sum(e["mirror_of_line"] is not None for e in key["lines"])
    stored = dict(key["summary"])
    assert stored == {k: v for k, v in data.items() if k != "out_dir"}
    with pytest.raises(AttributeError):
        summary.lines = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- determinism


def test_same_n_and_seed_give_identical_bytes(drop: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_sample_drop(again, N, SEED)
    assert _file_digests(again) == _file_digests(drop)


def test_other_seed_differs_and_prefix_is_stable(drop: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_sample_drop(other, N, SEED + 1)
    assert (other / "manifest.jsonl").read_bytes() != (drop / "manifest.jsonl").read_bytes()
    shorter = tmp_path / "shorter"
    generate_sample_drop(shorter, 60, SEED)
    # A smaller drop is the first lines of a bigger one with the same seed.
    assert (drop / "manifest.jsonl").read_bytes().startswith((shorter / "manifest.jsonl").read_bytes())


def test_refuses_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "d"
    generate_sample_drop(out, 10, seed=1)
    before = _file_digests(out)
    with pytest.raises(ValueError, match="not empty"):
        generate_sample_drop(out, 10, seed=1)
    (out / "notes.txt").write_text("keep me")
    generate_sample_drop(out, 12, seed=1, overwrite=True)
    after = _file_digests(out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert len(json.loads((out / "answer_key.json").read_text())["lines"]) == 12
    assert set(after) - set(before) - {"notes.txt"}  # the old drop's files went, the new ones came
    with pytest.raises(ValueError, match="positive"):
        generate_sample_drop(tmp_path / "e", 0)


# --------------------------------------------------------------------------- files


def test_file_hashes_and_exact_duplicates(drop: Path, key: dict[str, Any]) -> None:
    first_by_sha: dict[str, int] = {}
    by_line = {e["line_no"]: e for e in key["lines"]}
    for entry in key["lines"]:
        if entry["file_sha256"] is None:
            # Links and folders are checked in test_links_and_folders_are_never_files.
            if entry["image_path"] is not None and entry["expected"] not in (
                R.PATH_ESCAPE,
                R.SYMLINK,
                R.NOT_A_FILE,
            ):
                assert not (drop / entry["image_path"]).exists()
            continue
        data = (drop / entry["image_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["file_sha256"]
        assert len(data) == entry["bytes"]
        first = first_by_sha.setdefault(entry["file_sha256"], entry["line_no"])
        assert entry["exact_dup_of_line"] == (None if first == entry["line_no"] else first)
    dups = _entries(key, kind="exact_dup_new_path") + _entries(key, kind="exact_dup_same_path")
    assert dups
    # Among ingestible lines, only the planted duplicates repeat bytes (no accidental twins).
    for entry in _entries(key, expected="ok"):
        assert (entry["exact_dup_of_line"] is not None) is entry["kind"].startswith("exact_dup"), entry
    for entry in dups:
        original = by_line[entry["exact_dup_of_line"]]
        assert original["file_sha256"] == entry["file_sha256"]
        assert original["content_id"] == entry["content_id"]
        assert original["source_url"] != entry["source_url"]
        same_path = entry["kind"] == "exact_dup_same_path"
        assert (original["image_path"] == entry["image_path"]) is same_path


def test_ok_images_decode(drop: Path, key: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    for entry in _entries(key, expected="ok"):
        with Image.open(drop / entry["image_path"]) as img:
            img.load()
            assert img.format == entry["format"]
            assert img.size == (entry["width"], entry["height"])
            if entry["kind"] == "animated_gif":
                assert img.n_frames == entry["frames"] > 1
            if entry["kind"] == "exif_orientation":
                assert img.getexif().get(0x0112) == entry["exif_orientation"] == 6
            if entry["kind"] == "ext_mismatch":
                assert entry["image_path"].endswith((".jpg", ".jpeg")) and img.format == "PNG"


def _load_error(path: Path) -> str | None:
    """Pillow's complaint when fully decoding ``path`` (None when it decodes)."""
    with Image.open(path) as img:
        try:
            img.load()
        except OSError as exc:
            return str(exc)
    return None


def test_bad_files_fail_the_way_the_key_claims(
    drop: Path, key: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    limits = key["limits"]
    seen = Counter()
    for entry in key["lines"]:
        reason = entry["expected"]
        path = drop / entry["image_path"] if entry["image_path"] else None
        seen[reason] += 1
        if reason == R.EMPTY_FILE:
            assert path is not None and path.stat().st_size == 0
        elif reason == R.NOT_AN_IMAGE:
            with pytest.raises(UnidentifiedImageError):
                Image.open(path)
            assert path.suffix in (".jpg", ".jpeg") and path.stat().st_size > 0
        elif reason == R.TRUNCATED_IMAGE:
            error = _load_error(path)
            assert error is not None and "truncated" in error, error
        elif reason == R.CORRUPT_IMAGE:
            error = _load_error(path)
            assert error is not None and "truncated" not in error, error
            assert path.read_bytes().endswith(b"\xff\xd9")  # complete file, bad data
        elif reason == R.TOO_MANY_BYTES:
            size = path.stat().st_size
            assert limits["byte_limit_for_tests"] < size == entry["bytes"] < 20 * 1024 * 1024
            assert _load_error(path) is None  # valid, only too big
        elif reason == R.TOO_MANY_PIXELS:
            # Pillow's own guard already refuses it; the size is read from the header, never decoded.
            with pytest.raises(Image.DecompressionBombError):
                Image.open(path)
            with monkeypatch.context() as patched:
                patched.setattr(Image, "MAX_IMAGE_PIXELS", None)
                with Image.open(path) as img:
                    width, height = img.size
            assert width * height > limits["pixel_limit_for_tests"]
            assert (width, height) == (entry["width"], entry["height"])
            assert path.stat().st_size < 1024 * 1024
        elif reason == R.MISSING_FILE:
            assert path is not None and not path.exists() and path.parent.is_relative_to(drop)
        elif reason == R.PATH_ESCAPE:
            resolved = Path(os.path.normpath(drop / entry["image_path"]))
            assert not resolved.is_relative_to(drop), entry["image_path"]
    assert seen[R.TRUNCATED_IMAGE] >= 2 and seen[R.PATH_ESCAPE] >= 3 and seen[R.MALFORMED_JSON] >= 3


def _links_on_the_way(drop: Path, image_path: str) -> list[Path]:
    """The symbolic links among image_path and its folders, looked at with lstat only."""
    parts = image_path.split("/")
    return [
        drop.joinpath(*parts[: i + 1])
        for i in range(len(parts))
        if drop.joinpath(*parts[: i + 1]).is_symlink()
    ]


def test_links_and_folders_are_never_files(drop: Path, key: dict[str, Any]) -> None:
    """symlink and not_a_file lines: nothing is a regular file where image_path points (no link followed)."""
    by_line = {e["line_no"]: e for e in key["lines"]}
    kinds = Counter()
    for entry in key["lines"]:
        if entry["expected"] not in (R.SYMLINK, R.NOT_A_FILE):
            continue
        kinds[entry["kind"]] += 1
        assert entry["file_sha256"] is None and entry["bytes"] is None
        links = _links_on_the_way(drop, entry["image_path"])
        if entry["expected"] == R.NOT_A_FILE:
            assert links == [] and (drop / entry["image_path"]).is_dir()
            assert Path(entry["image_path"]).suffix in (".jpg", ".jpeg", ".png", ".webp")
            continue
        assert len(links) == 1, entry
        link = links[0]
        target = os.readlink(link)
        # Resolved lexically from the link's folder, never through the file system.
        lands = Path(os.path.normpath(link.parent / target)) if not os.path.isabs(target) else Path(target)
        if entry["kind"] == "symlink_out_of_drop":
            assert link == drop / entry["image_path"]
            assert not lands.is_relative_to(drop), target
        else:
            assert not os.path.isabs(target) and lands.is_relative_to(drop), target
            if entry["kind"] == "symlink_in_drop":
                assert link == drop / entry["image_path"]
            else:  # a folder link in front of a real file
                assert link != drop / entry["image_path"] and lands.is_dir() and not lands.is_symlink()
        scenario = key["scenarios"].get(entry["kind"])
        if scenario is not None and scenario["line"] == entry["line_no"]:
            assert scenario["image_path"] == entry["image_path"] and scenario["target"] == target
            assert drop / scenario["link"] == link
            if scenario["target_line"] is not None:
                # The link points at the very file an earlier, ingestible line names.
                original = by_line[scenario["target_line"]]
                assert original["expected"] == "ok" and scenario["target_line"] < entry["line_no"]
                real = lands / Path(entry["image_path"]).name if entry["kind"] == "symlink_folder" else lands
                assert real == drop / original["image_path"] and not real.is_symlink()
    assert {"symlink_in_drop", "symlink_out_of_drop", "symlink_folder", "dir_as_image"} <= set(kinds)
    for kind in ("symlink_in_drop", "symlink_out_of_drop", "symlink_folder"):
        assert kind in key["scenarios"]


def test_truncated_files_are_cut_valid_images(drop: Path, key: dict[str, Any]) -> None:
    suffixes = {Path(e["image_path"]).suffix for e in _entries(key, expected=R.TRUNCATED_IMAGE.value)}
    assert {".png"} <= suffixes and suffixes & {".jpg", ".jpeg"}
    for entry in _entries(key, expected=R.TRUNCATED_IMAGE.value):
        with Image.open(drop / entry["image_path"]) as img:  # the header is intact
            assert img.size == (entry["width"], entry["height"])


# --------------------------------------------------------------------------- perceptual hashes


def test_near_duplicates_are_close_and_mirrors_are_not(key: dict[str, Any], hashes: dict[int, int]) -> None:
    near = [e for e in key["lines"] if e["near_dup_of_line"] is not None]
    mirrors = [e for e in key["lines"] if e["mirror_of_line"] is not None]
    assert near and mirrors
    for entry in near:
        if entry["kind"] != "near_copy":  # a re-post copy (caption, frame, tilt) may lie far by pHash
            assert _distance(hashes[entry["line_no"]], hashes[entry["near_dup_of_line"]]) <= PHASH_NEAR, entry
        assert entry["mirror_of_line"] is None
    for entry in mirrors:
        assert entry["transform"] == "hflip" and entry["near_dup_of_line"] is None
        assert _distance(hashes[entry["line_no"]], hashes[entry["mirror_of_line"]]) > PHASH_NEAR, entry


def test_distinct_contents_are_far_apart(key: dict[str, Any], hashes: dict[int, int]) -> None:
    """Every ingestible picture that is neither an exact nor a near duplicate is its own cluster."""
    cluster = {}
    for entry in _entries(key, expected="ok"):
        if entry["exact_dup_of_line"] is None:
            cluster[entry["line_no"]] = (
                entry["near_dup_of_line"] or entry["mirror_of_line"] or entry["line_no"]
            )
    roots = sorted(set(cluster.values()))
    mirrors = {e["line_no"] for e in key["lines"] if e["mirror_of_line"] is not None}
    assert len(roots) >= 30
    for a, b in itertools.combinations(roots, 2):
        assert _distance(hashes[a], hashes[b]) > PHASH_NEAR, (a, b)
    # Near-dups sit with their own original only (a mirror is far from everything by pHash).
    for line, root in cluster.items():
        if line != root and line not in mirrors:
            for other in roots:
                if other != root:
                    assert _distance(hashes[line], hashes[other]) > PHASH_NEAR, (line, other)


# --------------------------------------------------------------------------- jurisdiction


def test_policy_cases_land_on_ingestible_lines(key: dict[str, Any], lines: list[str]) -> None:
    cases = key["policy_cases"]
    hosts = {c["host"]: c["uk"] for c in cases if c["host"]}
    assert hosts["uk.example.com"] is False and hosts["EXAMPLE.CO.UK"] is True
    assert hosts["www.example.co.uk:8443"] is True and hosts["example.co.uk.evil.com"] is False
    for crown in ("photos.example.je", "example.gg", "news.example.im"):
        assert hosts[crown] is False
    countries = {c["value"]: c["uk"] for c in cases if c["field"] == "country"}
    assert countries == {
        "GB": True,
        "UK": True,
        "gb": True,
        "JE": False,
        "IM": False,
        "GG": False,
        "US": False,
        "FR": False,
        "DE": False,
    }
    by_line = {e["line_no"]: e for e in key["lines"]}
    for case in cases:
        entry = by_line[case["line_no"]]
        assert entry["expected"] == "ok"
        assert entry["uk_expected"] is case["uk"], case
        assert case["value"] in lines[case["line_no"] - 1]


def test_uk_near_dup_scenario_makes_the_canonical_uk(key: dict[str, Any], hashes: dict[int, int]) -> None:
    scenario = key["scenarios"]["uk_near_dup"]
    by_line = {e["line_no"]: e for e in key["lines"]}
    canonical, near = by_line[scenario["canonical_line"]], by_line[scenario["near_dup_line"]]
    assert canonical["image_path"] == scenario["canonical_image_path"]
    assert near["image_path"] == scenario["near_dup_image_path"]
    assert urlsplit(canonical["source_url"]).hostname.endswith(".co.uk") and canonical["uk_expected"]
    assert urlsplit(near["source_url"]).hostname.endswith(".com") and not near["uk_expected"]
    assert (
        near["near_dup_of_line"] == canonical["line_no"] and near["file_sha256"] != canonical["file_sha256"]
    )
    assert _distance(hashes[near["line_no"]], hashes[canonical["line_no"]]) <= PHASH_NEAR

    # Cluster UK-ness as ingest must compute it: the union over exact and near duplicates.
    def root(entry: dict[str, Any]) -> int:
        while entry["exact_dup_of_line"] or entry["near_dup_of_line"] or entry["mirror_of_line"]:
            entry = by_line[
                entry["exact_dup_of_line"] or entry["near_dup_of_line"] or entry["mirror_of_line"]
            ]
        return entry["line_no"]

    cluster_uk: dict[int, bool] = {}
    for entry in _entries(key, expected="ok"):
        cluster_uk[root(entry)] = cluster_uk.get(root(entry), False) or entry["uk_expected"]
    assert cluster_uk[canonical["line_no"]] is True
    exact = key["scenarios"]["uk_exact_dup"]
    assert not by_line[exact["original_line"]]["uk_expected"] and by_line[exact["dup_line"]]["uk_expected"]
    assert cluster_uk[root(by_line[exact["original_line"]])] is True
    # A mirror is a copy of its original (issue #12): its UK source makes the original's cluster UK.
    mirror = key["scenarios"]["uk_mirror"]
    assert by_line[mirror["mirror_line"]]["uk_expected"] is True
    assert not by_line[mirror["original_line"]]["uk_expected"]
    assert root(by_line[mirror["mirror_line"]]) == root(by_line[mirror["original_line"]])
    assert cluster_uk[root(by_line[mirror["original_line"]])] is True


# --------------------------------------------------------------------------- faces


def test_face_flags_follow_the_base_photos(key: dict[str, Any]) -> None:
    face_bases = {"t1.jpg", "astronaut.png", "camera.png", "Tom_Hanks_54745.png"}
    for entry in key["lines"]:
        if entry["base_image"] is not None:
            assert entry["has_face_expected"] is (entry["base_image"] in face_bases), entry
    assert {e["base_image"] for e in _entries(key, kind="unique_face")} <= face_bases


MODEL = Path(os.environ.get("FACELAKE_MODELS_DIR", Path(__file__).resolve().parents[3] / "shared" / "models"))


@pytest.mark.skipif(
    not (MODEL / "det_500m" / "det_500m.onnx").is_file(), reason="real detector not available"
)
def test_real_detector_agrees_with_face_flags(drop: Path, key: dict[str, Any]) -> None:
    from insightface.model_zoo import get_model

    detector = get_model(str(MODEL / "det_500m" / "det_500m.onnx"), providers=["CPUExecutionProvider"])
    detector.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    agree = total = 0
    for entry in _entries(key, expected="ok", exact_dup_of_line=None):
        pixels = np.asarray(_decoded(drop / entry["image_path"]).convert("RGB"))[:, :, ::-1].copy()
        boxes, _ = detector.detect(pixels, input_size=(640, 640))
        agree += (len(boxes) > 0) == entry["has_face_expected"]
        total += 1
    assert agree >= 0.95 * total, (agree, total)


# --------------------------------------------------------------------------- scale and CLI


@pytest.mark.slow
def test_two_thousand_lines_finish_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    summary = generate_sample_drop(tmp_path / "big", 2000, seed=11)
    elapsed = time.monotonic() - started
    assert summary.lines == 2000
    assert sum(1 for _ in (tmp_path / "big" / "manifest.jsonl").open("rb")) == 2000
    assert elapsed < 60, f"2000 lines took {elapsed:.1f}s"


def test_cli_main_and_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["somewhere"])
    assert (args.n, args.seed, args.overwrite) == (200, 0, False)

    assert main([str(tmp_path / "d"), "--n", "50", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "50" in out and "quarantine" in out
    assert sum(1 for _ in (tmp_path / "d" / "manifest.jsonl").open("rb")) == 50
    assert main([str(tmp_path / "d"), "--n", "50", "--seed", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([str(tmp_path / "d"), "--n", "50", "--seed", "1", "--overwrite"]) == 0
