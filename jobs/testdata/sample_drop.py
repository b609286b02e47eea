"""Deterministic sample crawl-drop generator with an answer key for ingest, dedupe and jurisdiction tests."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import struct
import sys
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from scipy.fft import dctn

from jobs.core.reasons import QuarantineReason

OK = "ok"
ANSWER_KEY_VERSION = 1
MANIFEST_NAME = "manifest.jsonl"
ANSWER_KEY_NAME = "answer_key.json"
IMAGES_DIR = "images"

BYTE_LIMIT_FOR_TESTS = 2 * 1024 * 1024
PIXEL_LIMIT_FOR_TESTS = 50_000_000
# Far above any sane pixel limit and above Pillow's own bomb guard (2 x 89.5 MP), yet ~110 kB on disk.
BOMB_SIDE = 30_000
# Incompressible noise this big sits between the 2 MiB test limit and the 20 MiB ingest default.
OVERSIZED_SHAPE = (960, 960)

# Distances are measured with the 63-bit DCT pHash below (and its 64-bit imagehash-style twin).
# Distinct contents are kept at least 14 apart, leaving slack for a reader whose pHash differs a
# little (resize filter, DC bit) to still see them > 10 apart; near-dups stay well inside 10.
DISTINCT_MIN_DISTANCE = 14
NEAR_DUP_MAX_DISTANCE = 6
RECENT_WINDOW = 48

# Lines scheduled first so that every category exists as soon as n >= len(COVERAGE_PLAN).
COVERAGE_PLAN: tuple[str, ...] = (
    "unique_face", "unique_nonface", "unique_face", "near_resize", "unique_nonface",
    "empty_file", "unique_face", "exact_dup_new_path", "unique_nonface", "not_an_image",
    "unique_face", "near_jpeg_quality", "exact_dup_same_path", "truncated_jpeg", "unique_nonface",
    "mirror", "malformed_not_json", "unique_face", "near_crop", "truncated_png",
    "unique_nonface", "missing_file", "near_brightness", "animated_gif", "corrupt_jpeg",
    "unique_face", "path_escape_parent", "near_format", "exif_orientation", "malformed_array",
    "unique_nonface", "oversized", "missing_source_url", "unique_face", "ext_mismatch",
    "bomb", "crawled_at_no_zone", "unique_nonface", "path_escape_absolute", "malformed_truncated",
    "unique_face", "missing_crawled_at", "crawled_at_not_a_date", "unique_nonface", "tags_not_a_list",
    "exact_dup_new_path", "near_resize", "unique_face", "near_jpeg_quality", "mirror",
    "unique_nonface", "missing_image_path", "path_escape_dotdot", "unique_face", "near_crop",
    "exact_dup_same_path", "unique_nonface", "near_brightness", "near_format", "unique_face",
)

# Tail mix after the coverage block; the oversized file is deliberately absent (one per drop keeps
# a 100k drop from costing gigabytes of noise).
TAIL_WEIGHTS: dict[str, float] = {
    "unique_face": 26, "unique_nonface": 22,
    "exact_dup_new_path": 7, "exact_dup_same_path": 3,
    "near_jpeg_quality": 3, "near_resize": 3, "near_crop": 3, "near_brightness": 3, "near_format": 3,
    "mirror": 3, "animated_gif": 1, "exif_orientation": 1, "ext_mismatch": 1,
    "empty_file": 0.5, "not_an_image": 0.5, "truncated_jpeg": 0.5, "truncated_png": 0.5,
    "corrupt_jpeg": 0.5, "bomb": 0.2, "missing_file": 0.6,
    "path_escape_parent": 0.2, "path_escape_absolute": 0.2, "path_escape_dotdot": 0.2,
    "malformed_not_json": 0.3, "malformed_array": 0.3, "malformed_truncated": 0.3,
    "missing_source_url": 0.3, "missing_crawled_at": 0.3, "missing_image_path": 0.3,
    "crawled_at_no_zone": 0.3, "crawled_at_not_a_date": 0.3, "tags_not_a_list": 0.3,
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
}
ALL_KINDS: tuple[str, ...] = tuple(dict.fromkeys(COVERAGE_PLAN))
NEAR_KINDS = ("near_jpeg_quality", "near_resize", "near_crop", "near_brightness", "near_format")


# --------------------------------------------------------------------------- base photos


@dataclass(frozen=True)
class _Base:
    name: str
    image: Image.Image  # RGB or L, already shrunk to keep crops cheap
    faces: tuple[tuple[int, int, int, int], ...]  # boxes in `image` coordinates
    crop_area: tuple[float, float]
    paste_face: bool = False  # a tight face crop: pasted onto a background instead of cropped


# Face boxes found once with the SCRFD-0.5GF detector on the original files and rounded
# (x0, y0, x1, y1 in original pixels); approximate by design.
_FACE_BASES: dict[str, tuple[str, tuple[tuple[int, int, int, int], ...], tuple[float, float], bool]] = {
    "t1.jpg": (
        "insightface",
        ((745, 342, 847, 480), (464, 266, 573, 415), (56, 261, 169, 398),
         (906, 59, 1011, 206), (1130, 273, 1227, 401), (270, 145, 372, 270)),
        (0.12, 0.45), False,
    ),
    "astronaut.png": ("skimage", ((180, 60, 272, 180),), (0.4, 0.8), False),
    "camera.png": ("skimage", ((199, 116, 258, 200),), (0.4, 0.8), False),
    "Tom_Hanks_54745.png": ("insightface", ((4, 0, 86, 111),), (1.0, 1.0), True),
}
# No human face in any of these (chelsea is a cat; the insightface mask_*.jpg are flat
# surgical-mask textures that insightface uses to render masks, not people).
_NONFACE_BASES: tuple[tuple[str, str], ...] = (
    ("skimage", "chelsea.png"), ("skimage", "coffee.png"), ("skimage", "rocket.jpg"),
    ("skimage", "horse.png"), ("skimage", "coins.png"), ("skimage", "brick.png"),
    ("skimage", "motorcycle_left.png"), ("skimage", "hubble_deep_field.jpg"), ("skimage", "moon.png"),
    ("skimage", "grass.png"), ("skimage", "gravel.png"), ("skimage", "ihc.png"),
    ("skimage", "retina.jpg"), ("skimage", "color.png"), ("skimage", "page.png"),
    ("insightface", "mask_blue.jpg"), ("insightface", "mask_white.jpg"), ("insightface", "mask_black.jpg"),
)
_BASE_MAX_SIDE = 640


def _package_data_dir(package: str) -> Path:
    # Package paths, never a fetcher: skimage's pooch would try the network for missing files.
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data"
    import insightface

    return Path(insightface.__file__).parent / "data" / "images"


def _open_base(package: str, name: str) -> Image.Image:
    path = _package_data_dir(package) / name
    if not path.is_file():
        raise FileNotFoundError(f"bundled sample image not found: {path}")
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return img.convert("L" if img.mode in ("L", "I", "I;16", "1") else "RGB")


@cache
def _bases() -> tuple[tuple[_Base, ...], tuple[_Base, ...]]:
    faces = []
    for name, (package, boxes, area, paste) in _FACE_BASES.items():
        img = _open_base(package, name)
        scale = min(1.0, _BASE_MAX_SIDE / max(img.size))
        if scale < 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        scaled = tuple(tuple(round(v * scale) for v in box) for box in boxes)
        faces.append(_Base(name, img, scaled, area, paste))  # type: ignore[arg-type]
    nonfaces = []
    for package, name in _NONFACE_BASES:
        img = _open_base(package, name)
        scale = min(1.0, _BASE_MAX_SIDE / max(img.size))
        if scale < 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        nonfaces.append(_Base(name, img, (), (0.4, 0.8)))
    return tuple(faces), tuple(nonfaces)


# --------------------------------------------------------------------------- perceptual hash


def phash(img: Image.Image) -> tuple[int, int]:
    """DCT pHash of ``img`` as (63-bit: 8x8 low band without DC, 64-bit: imagehash-style with DC)."""
    grey = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(grey, type=2, norm="ortho")[:8, :8].ravel()
    ac = low[1:]
    bits63 = ac > np.median(ac)
    bits64 = low > np.median(low)
    return int.from_bytes(np.packbits(bits63).tobytes(), "big"), int.from_bytes(np.packbits(bits64).tobytes(), "big")


class _HashRegistry:
    """Every distinct ingestible content's pHashes, to keep new content far from all of it."""

    def __init__(self) -> None:
        self._a = np.zeros(1024, dtype=np.uint64)
        self._b = np.zeros(1024, dtype=np.uint64)
        self._group = np.zeros(1024, dtype=np.int64)
        self._size = 0

    def min_distance(self, hashes: tuple[int, int], exclude_group: int | None = None) -> int:
        if self._size == 0:
            return 64
        a = np.bitwise_count(self._a[: self._size] ^ np.uint64(hashes[0]))
        b = np.bitwise_count(self._b[: self._size] ^ np.uint64(hashes[1]))
        d = np.minimum(a, b).astype(np.int64)
        if exclude_group is not None:
            d[self._group[: self._size] == exclude_group] = 64
        return int(d.min())

    def add(self, hashes: tuple[int, int], group: int) -> None:
        if self._size == len(self._a):
            self._a = np.concatenate([self._a, np.zeros_like(self._a)])
            self._b = np.concatenate([self._b, np.zeros_like(self._b)])
            self._group = np.concatenate([self._group, np.zeros_like(self._group)])
        self._a[self._size] = hashes[0]
        self._b[self._size] = hashes[1]
        self._group[self._size] = group
        self._size += 1


def _hamming(x: tuple[int, int], y: tuple[int, int]) -> int:
    return max((x[0] ^ y[0]).bit_count(), (x[1] ^ y[1]).bit_count())


# --------------------------------------------------------------------------- jurisdiction policy


def host_of(url: str) -> str | None:
    """Lower-case host of ``url`` without port or trailing dot, or None when there is none."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def host_is_uk(host: str | None) -> bool:
    """True when ``host`` is under the .uk ccTLD (not .je/.gg/.im, not a 'uk.' label elsewhere)."""
    return bool(host) and (host == "uk" or host.endswith(".uk"))  # type: ignore[union-attr]


def source_is_uk(record: dict[str, Any]) -> bool:
    """The DESIGN rules for one manifest record: .uk host of source/page URL, country GB/UK, tag uk."""
    for key in ("source_url", "page_url"):
        value = record.get(key)
        if isinstance(value, str) and host_is_uk(host_of(value)):
            return True
    country = record.get("country")
    if isinstance(country, str) and country.strip().upper() in {"GB", "UK"}:
        return True
    tags = record.get("tags")
    return isinstance(tags, list) and any(isinstance(t, str) and t.strip().lower() == "uk" for t in tags)


@dataclass(frozen=True)
class _SourceCase:
    field: str  # which manifest field carries the signal
    value: str
    uk: bool
    why: str
    host: str | None = None  # source_url host, as written (case and port kept)
    page_host: str | None = None
    country: str | None = None
    tags: tuple[str, ...] | None = None


# Each case lands on an ingestible line early in the drop so ingest really meets it.
_SOURCE_CASES: tuple[_SourceCase, ...] = (
    _SourceCase("source_url", "www.example.co.uk", True, "host under the .uk ccTLD", host="www.example.co.uk"),
    _SourceCase("source_url", "news.bbc.co.uk", True, "host under the .uk ccTLD", host="news.bbc.co.uk"),
    _SourceCase("source_url", "gov.uk", True, "host under the .uk ccTLD", host="gov.uk"),
    _SourceCase("source_url", "shop.example.org.uk", True, "host under the .uk ccTLD", host="shop.example.org.uk"),
    _SourceCase("source_url", "example.uk", True, "direct .uk registration", host="example.uk"),
    _SourceCase("source_url", "EXAMPLE.CO.UK", True, "host names are case-insensitive", host="EXAMPLE.CO.UK"),
    _SourceCase("source_url", "www.example.co.uk:8443", True, "the port is not part of the host",
                host="www.example.co.uk:8443"),
    _SourceCase("source_url", "uk.example.com", False, "'uk' is a subdomain label, the TLD is .com",
                host="uk.example.com"),
    _SourceCase("source_url", "example.com.au", False, "Australian domain", host="example.com.au"),
    _SourceCase("source_url", "photos.example.je", False, "Jersey: Crown Dependency, own data-protection law",
                host="photos.example.je"),
    _SourceCase("source_url", "example.gg", False, "Guernsey: Crown Dependency, own data-protection law",
                host="example.gg"),
    _SourceCase("source_url", "news.example.im", False, "Isle of Man: Crown Dependency, own data-protection law",
                host="news.example.im"),
    _SourceCase("source_url", "example.co.uk.evil.com", False, "only the rightmost label is the TLD (.com)",
                host="example.co.uk.evil.com"),
    _SourceCase("source_url", "www.example.ie", False, "Ireland is not the UK", host="www.example.ie"),
    _SourceCase("page_url", "www.example.co.uk", True, "the page (not the image host) is under .uk",
                host="cdn.example.net", page_host="www.example.co.uk"),
    _SourceCase("page_url", "uk.example.org", False, "page host's TLD is .org", host="cdn.example.net",
                page_host="uk.example.org"),
    _SourceCase("country", "GB", True, "country hint GB", host="www.example.com", country="GB"),
    _SourceCase("country", "UK", True, "country hint UK (non-ISO alias accepted by policy)",
                host="www.example.com", country="UK"),
    _SourceCase("country", "gb", True, "country hints are case-insensitive", host="media.example.com", country="gb"),
    _SourceCase("country", "JE", False, "Jersey is a Crown Dependency", host="www.example.com", country="JE"),
    _SourceCase("country", "IM", False, "Isle of Man is a Crown Dependency", host="www.example.com", country="IM"),
    _SourceCase("country", "GG", False, "Guernsey is a Crown Dependency", host="www.example.com", country="GG"),
    _SourceCase("country", "US", False, "other country", host="www.example.com", country="US"),
    _SourceCase("country", "FR", False, "other country", host="www.example.fr", country="FR"),
    _SourceCase("country", "DE", False, "other country", host="photos.example.de", country="DE"),
    _SourceCase("tags", "uk", True, "explicit uk tag", host="www.example.com", tags=("news", "uk")),
    _SourceCase("tags", "UK", True, "tags are case-insensitive", host="static.example.io", tags=("UK",)),
    _SourceCase("tags", "ukraine", False, "only the exact tag 'uk' counts", host="www.example.com",
                tags=("ukraine", "news")),
)

_NON_UK_HOSTS = (
    "www.example.com", "cdn.example.net", "images.example.org", "photos.example.de", "www.example.fr",
    "media.example.com", "static.example.io", "uk.example.com", "example.com.au", "photos.example.je",
    "example.gg", "news.example.im", "example.co.uk.evil.com", "www.example.ie", "img.example.jp",
)
_UK_HOSTS = (
    "www.example.co.uk", "news.bbc.co.uk", "gov.uk", "shop.example.org.uk", "EXAMPLE.CO.UK",
    "www.example.co.uk:8443", "example.uk", "img.example.ltd.uk",
)
_COUNTRIES = ("US", "FR", "DE", "GB", "UK", "gb", "JE", "IM", "GG", "IE", "AU", "US", "DE", "GB")
_TAGS = ("portrait", "news", "event", "sport", "profile", "street", "family", "ukraine", "uk", "UK", "travel")
_PLATFORMS = ("photoshare", "socialnet", "newsroom", "forum", "blog", "shop")
_SECTIONS = ("news", "people", "gallery", "p", "media", "uk", "world", "events")


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class SampleDropSummary:
    """What a generated drop holds; every count comes from the answer key's point of view."""

    out_dir: str
    n: int
    seed: int
    lines: int
    files: int
    total_bytes: int
    ok_lines: int
    quarantined_lines: int
    distinct_contents: int
    face_expected_contents: int
    unique_face: int
    unique_nonface: int
    exact_dup_lines: int
    exact_dup_same_path_lines: int
    near_dup_lines: int
    mirror_lines: int
    uk_lines: int
    uk_ok_lines: int
    by_expected: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    near_dups_by_transform: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict with sorted nested mappings."""
        out = asdict(self)
        for key in ("by_expected", "by_kind", "near_dups_by_transform"):
            out[key] = dict(sorted(out[key].items()))
        return out


# --------------------------------------------------------------------------- generator


@dataclass
class _Content:
    line_no: int
    path: str
    data: bytes
    fmt: str
    image: Image.Image  # decoded pixels, the thing transforms start from
    hashes: tuple[int, int]
    group: int
    content_id: str
    has_face: bool
    base: str
    uk: bool
    quality: int | None


def _encode(img: Image.Image, fmt: str, quality: int | None = None, **extra: Any) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality or 85, **extra)
    elif fmt == "PNG":
        # Level 1: PNG encoding dominates the runtime at higher levels for no test value.
        img.save(buf, "PNG", compress_level=1, **extra)
    elif fmt == "WEBP":
        img.save(buf, "WEBP", quality=quality or 85, method=2, **extra)
    else:
        img.save(buf, fmt, **extra)
    return buf.getvalue()


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.copy()


_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


class _Generator:
    def __init__(self, out_dir: Path, n: int, seed: int) -> None:
        self.out = out_dir
        self.n = n
        self.seed = seed
        self.face_bases, self.nonface_bases = _bases()
        self.registry = _HashRegistry()
        self.groups = 0
        self.content_seq = 0
        self.file_seq = 0
        self.uniques: deque[_Content] = deque(maxlen=RECENT_WINDOW)
        self.files_window: deque[_Content] = deque(maxlen=RECENT_WINDOW)
        self.first_line_by_sha: dict[str, int] = {}
        self.made_dirs: set[str] = set()
        self.files = 0
        self.total_bytes = 0
        self.case_queue: deque[_SourceCase] = deque(_SOURCE_CASES)
        self.case_lines: dict[int, int] = {}
        self.scenarios: dict[str, Any] = {}
        self.tail_rng = random.Random(f"facelake-sample-drop/{seed}/tail")
        self._tail_kinds = list(TAIL_WEIGHTS)
        self._tail_cum = np.cumsum([TAIL_WEIGHTS[k] for k in self._tail_kinds]).tolist()
        self.bomb_idat = b""
        self._url_cache: dict[int, str] = {}
        self.counts: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.transforms: Counter[str] = Counter()

    # ------------------------------------------------------------------ plumbing

    def kind_for(self, line_no: int) -> str:
        if line_no <= len(COVERAGE_PLAN):
            return COVERAGE_PLAN[line_no - 1]
        return self.tail_rng.choices(self._tail_kinds, cum_weights=self._tail_cum)[0]

    def new_path(self, rng: random.Random, ext: str) -> str:
        self.file_seq += 1
        digest = hashlib.sha256(f"{self.seed}/{self.file_seq}".encode()).hexdigest()
        if ext == "jpg" and rng.random() < 0.1:
            ext = "jpeg"
        return f"{IMAGES_DIR}/{digest[:2]}/{digest[2:18]}.{ext}"

    def write(self, rel: str, data: bytes) -> None:
        parent = rel.rpartition("/")[0]
        if parent not in self.made_dirs:
            (self.out / parent).mkdir(parents=True, exist_ok=True)
            self.made_dirs.add(parent)
        (self.out / rel).write_bytes(data)
        self.files += 1
        self.total_bytes += len(data)

    def next_content_id(self, prefix: str = "c") -> str:
        self.content_seq += 1
        return f"{prefix}{self.content_seq:06d}"

    def crawled_at(self, rng: random.Random, line_no: int) -> str:
        # Crawl time advances with the line so later lines look like later fetches; no wall clock.
        start = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=line_no * 37 + rng.randrange(3600))
        if rng.random() < 0.5:
            return start.strftime("%Y-%m-%dT%H:%M:%SZ")
        local = start + timedelta(hours=1)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + "+01:00"

    def source(self, rng: random.Random, line_no: int, ext: str, *, case: _SourceCase | None = None,
               force_uk: bool | None = None) -> dict[str, Any]:
        """Manifest fields other than image_path: URLs, time, hints, platform and unknown extras."""
        slug = hashlib.sha256(f"{self.seed}/url/{line_no}".encode()).hexdigest()[:12]
        page_host: str | None = None
        country: str | None = None
        tags: list[str] | None = None
        if case is not None:
            host, page_host, country = case.host or "www.example.com", case.page_host, case.country
            tags = list(case.tags) if case.tags is not None else None
        elif force_uk is True:
            host = rng.choice(("www.example.co.uk", "news.bbc.co.uk"))
        elif force_uk is False:
            host = rng.choice(("www.example.com", "media.example.com"))
        else:
            roll = rng.random()
            if roll < 0.18:
                host = rng.choice(_UK_HOSTS)
            elif roll < 0.23:
                host, page_host = "cdn.example.net", rng.choice(_UK_HOSTS)
            else:
                host = rng.choice(_NON_UK_HOSTS)
            if rng.random() < 0.3:
                country = rng.choice(_COUNTRIES)
            if rng.random() < 0.35:
                tags = rng.sample(_TAGS, rng.randint(1, 3))
        query = f"?w={rng.choice((320, 640, 1024))}" if rng.random() < 0.15 else ""
        record: dict[str, Any] = {"source_url": f"https://{host}/{rng.choice(_SECTIONS)}/{slug}.{ext}{query}"}
        if page_host is None and rng.random() < 0.6 and case is None and force_uk is None:
            page_host = host
        if page_host is not None:
            record["page_url"] = f"https://{page_host}/{rng.choice(_SECTIONS)}/story-{rng.randrange(10**6)}.html"
        record["crawled_at"] = self.crawled_at(rng, line_no)
        if country is not None:
            record["country"] = country
        if tags is not None:
            record["tags"] = tags
        if force_uk is False:
            record["country"] = "US"
        if rng.random() < 0.7:
            record["platform"] = rng.choice(_PLATFORMS)
        if rng.random() < 0.15:
            record["crawler_version"] = "2.3"
        if rng.random() < 0.1:
            record["http_status"] = 200
        return record

    def ok_source(self, rng: random.Random, line_no: int, ext: str) -> dict[str, Any]:
        if self.case_queue:
            case = self.case_queue.popleft()
            self.case_lines[_SOURCE_CASES.index(case)] = line_no
            return self.source(rng, line_no, ext, case=case)
        return self.source(rng, line_no, ext)

    # ------------------------------------------------------------------ pixels

    def _crop_box(self, rng: random.Random, base: _Base) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int] | None]:
        w, h = base.image.size
        area = rng.uniform(*base.crop_area) * w * h
        aspect = rng.uniform(0.7, 1.45)
        cw = max(32, min(w, round((area * aspect) ** 0.5)))
        ch = max(32, min(h, round(area / cw)))
        face = None
        if base.faces:
            fx0, fy0, fx1, fy1 = rng.choice(base.faces)
            # Pad the detector box so chin and hair survive the crop; detectors want some context.
            px, py = (fx1 - fx0) * 0.25, (fy1 - fy0) * 0.2
            fx0, fy0 = max(0, round(fx0 - px)), max(0, round(fy0 - py))
            fx1, fy1 = min(w, round(fx1 + px)), min(h, round(fy1 + py))
            cw, ch = max(cw, fx1 - fx0), max(ch, fy1 - fy0)
            x0 = rng.randint(max(0, fx1 - cw), min(fx0, w - cw))
            y0 = rng.randint(max(0, fy1 - ch), min(fy0, h - ch))
            face = (fx0 - x0, fy0 - y0, fx1 - x0, fy1 - y0)
        else:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return (x0, y0, x0 + cw, y0 + ch), face

    def _composite_face(self, rng: random.Random, base: _Base) -> tuple[Image.Image, tuple[int, int, int, int]]:
        """A face patch pasted at a random place and scale onto a crop of a face-free photo."""
        if base.paste_face:
            patch = base.image.convert("RGB")
        else:
            w, h = base.image.size
            fx0, fy0, fx1, fy1 = rng.choice(base.faces)
            # Pad the detector box so chin and hair come along; detectors want some context.
            px, py = (fx1 - fx0) * rng.uniform(0.2, 0.45), (fy1 - fy0) * rng.uniform(0.15, 0.35)
            box = (max(0, round(fx0 - px)), max(0, round(fy0 - py)), min(w, round(fx1 + px)), min(h, round(fy1 + py)))
            patch = base.image.crop(box).convert("RGB")
        background = rng.choice(self.nonface_bases)
        cw = rng.randint(160, 300)
        ch = round(cw * rng.uniform(0.75, 1.3))
        bx, by = background.image.size
        sx, sy = rng.randint(0, max(0, bx - cw // 2)), rng.randint(0, max(0, by - ch // 2))
        bg = background.image.resize((cw, ch), Image.Resampling.BILINEAR,
                                     box=(sx, sy, min(bx, sx + cw), min(by, sy + ch))).convert("RGB")
        scale = min(cw, ch) * rng.uniform(0.35, 0.65) / max(patch.size)
        pw, ph = max(24, round(patch.width * scale)), max(24, round(patch.height * scale))
        x, y = rng.randint(0, cw - pw), rng.randint(0, ch - ph)
        bg.paste(patch.resize((pw, ph), Image.Resampling.BILINEAR), (x, y))
        return bg, (x, y, x + pw, y + ph)

    def _restyle(self, rng: random.Random, img: Image.Image, face: tuple[int, int, int, int] | None) -> Image.Image:
        """Index-seeded colour field and big opaque shapes: reshapes the low-frequency band pHash reads."""
        w, h = img.size
        grey = img.mode == "L"
        # A random colour field of a few cells, upscaled smoothly, lands squarely in the 8x8 DCT band
        # pHash reads, so hashes of different lines come out close to independent coin flips.
        cells = rng.randint(3, 8), rng.randint(3, 8)
        field_px = rng.randbytes(cells[0] * cells[1] * 3)
        colour_field = Image.frombytes("RGB", cells, field_px).resize((w, h), Image.Resampling.BILINEAR)
        mask = Image.new("L", (w, h), round(255 * rng.uniform(0.5, 0.7)))
        if face:
            # The face gets a light wash only, so a detector still finds it.
            mask.paste(round(255 * 0.25), face)
        out = Image.composite(colour_field, img.convert("RGB"), mask)
        draw = ImageDraw.Draw(out)
        shapes = rng.randint(3, 6)
        placed = 0
        for _ in range(shapes * 6):
            if placed == shapes:
                break
            sw, sh = round(w * rng.uniform(0.15, 0.45)), round(h * rng.uniform(0.15, 0.45))
            x0, y0 = rng.randint(-sw // 3, w - sw // 2), rng.randint(-sh // 3, h - sh // 2)
            box = (x0, y0, x0 + sw, y0 + sh)
            if face and not (box[2] <= face[0] or box[0] >= face[2] or box[3] <= face[1] or box[1] >= face[3]):
                continue
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            shape = rng.randrange(3)
            if shape == 0:
                draw.rectangle(box, fill=colour)
            elif shape == 1:
                draw.ellipse(box, fill=colour)
            else:
                draw.polygon([(rng.randint(box[0], box[2]), rng.randint(box[1], box[3])) for _ in range(3)], fill=colour)
            placed += 1
        return out.convert("L") if grey else out

    def make_pixels(self, rng: random.Random, with_face: bool, max_side: int) -> tuple[Image.Image, bool, str]:
        base = rng.choice(self.face_bases if with_face else self.nonface_bases)
        crop: tuple[int, int, int, int] | None = None
        # Half the face pictures are pasted onto other scenery: crops of one photo alone look too alike.
        if base.paste_face or (base.faces and rng.random() < 0.5):
            img, face = self._composite_face(rng, base)
        else:
            crop, face = self._crop_box(rng, base)
            img = base.image
        cw, ch = (crop[2] - crop[0], crop[3] - crop[1]) if crop else img.size
        scale = rng.randint(min(96, max_side), max_side) / max(cw, ch)
        size = (max(16, round(cw * scale)), max(16, round(ch * scale)))
        if face is not None:
            face = tuple(round(v * scale) for v in face)  # type: ignore[assignment]
        img = img.resize(size, Image.Resampling.BILINEAR, box=crop, reducing_gap=2.0)
        if img.mode == "L" and rng.random() < 0.6:
            img = img.convert("RGB")
        return self._restyle(rng, img, face), face is not None, base.name

    def fresh_image(self, rng: random.Random, with_face: bool, fmt: str | None = None, *, distinct: bool = False,
                    ) -> tuple[bytes, Image.Image, str, bool, str, int | None, tuple[int, int]]:
        """A new picture, encoded; with ``distinct``, retried until its pHash is far from all registered ones."""
        # At 100k lines a candidate needs ~1.1 tries on average; the cap only bounds a pathological seed.
        for attempt in range(40):
            chosen = fmt or rng.choices(("JPEG", "PNG", "WEBP"), weights=(65, 15, 20))[0]
            max_side = {"JPEG": 256, "PNG": 160, "WEBP": 192}[chosen]
            pixels, has_face, base = self.make_pixels(rng, with_face, max_side)
            quality = rng.randint(72, 92) if chosen in ("JPEG", "WEBP") else None
            extra: dict[str, Any] = {}
            if chosen == "JPEG" and rng.random() < 0.1:
                extra["progressive"] = True
            data = _encode(pixels, chosen, quality, **extra)
            decoded = _decode(data)
            hashes = phash(decoded)
            if not distinct or self.registry.min_distance(hashes) >= DISTINCT_MIN_DISTANCE or attempt == 39:
                return data, decoded, chosen, has_face, base, quality, hashes
        raise AssertionError("unreachable")

    def register(self, hashes: tuple[int, int]) -> int:
        self.groups += 1
        self.registry.add(hashes, self.groups)
        return self.groups

    # ------------------------------------------------------------------ line builders

    def line(self, line_no: int) -> tuple[str, dict[str, Any]]:
        """Returns (manifest line text, answer-key entry) for ``line_no``."""
        kind = self.kind_for(line_no)
        rng = random.Random(f"facelake-sample-drop/{self.seed}/line/{line_no}")
        entry: dict[str, Any] = {
            "line_no": line_no, "kind": kind, "expected": str(EXPECTED_BY_KIND.get(kind, OK)),
            "image_path": None, "source_url": None, "uk_expected": None, "content_id": None,
            "file_sha256": None, "bytes": None, "format": None, "width": None, "height": None,
            "frames": None, "exif_orientation": None, "has_face_expected": None, "base_image": None,
            "exact_dup_of_line": None, "near_dup_of_line": None, "mirror_of_line": None, "transform": None,
        }
        builder: Callable[[random.Random, int, dict[str, Any]], str] = getattr(self, f"_line_{_builder_for(kind)}")
        text = builder(rng, line_no, entry)
        if entry["kind"] != kind:  # a builder fell back to a simpler category
            entry["expected"] = str(EXPECTED_BY_KIND.get(entry["kind"], OK))
        self.kinds[entry["kind"]] += 1
        self.counts[entry["expected"]] += 1
        return text, entry

    def _record_file(self, entry: dict[str, Any], path: str, data: bytes, *, write: bool = True) -> None:
        if write:
            self.write(path, data)
        sha = hashlib.sha256(data).hexdigest()
        first = self.first_line_by_sha.setdefault(sha, entry["line_no"])
        entry["image_path"] = path
        entry["file_sha256"] = sha
        entry["bytes"] = len(data)
        entry["exact_dup_of_line"] = first if first != entry["line_no"] else None

    def _emit(self, entry: dict[str, Any], record: dict[str, Any]) -> str:
        entry["source_url"] = record.get("source_url") if isinstance(record.get("source_url"), str) else None
        entry["uk_expected"] = source_is_uk(record)
        return json.dumps(record, ensure_ascii=False)

    def _content_entry(self, entry: dict[str, Any], content: _Content | None, *, fmt: str, image: Image.Image,
                       has_face: bool | None, base: str | None) -> None:
        entry["format"] = fmt
        entry["width"], entry["height"] = image.size
        entry["has_face_expected"] = has_face
        entry["base_image"] = base
        if content is not None:
            entry["content_id"] = content.content_id

    def _line_unique(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        with_face = entry["kind"] == "unique_face"
        data, decoded, fmt, has_face, base, quality, hashes = self.fresh_image(rng, with_face, distinct=True)
        path = self.new_path(rng, _EXT[fmt])
        self._record_file(entry, path, data)
        record = {"image_path": path, **self.scenario_source(rng, line_no, _EXT[fmt])}
        content = _Content(line_no, path, data, fmt, decoded, hashes, self.register(hashes),
                           self.next_content_id(), has_face, base, source_is_uk(record), quality)
        self._content_entry(entry, content, fmt=fmt, image=decoded, has_face=has_face, base=base)
        self.uniques.append(content)
        self.files_window.append(content)
        return self._emit(entry, record)

    def scenario_source(self, rng: random.Random, line_no: int, ext: str) -> dict[str, Any]:
        # The first two lines are fixed scenario anchors (UK canonical, then a non-UK one).
        if line_no == 1:
            return self.source(rng, line_no, ext, force_uk=True)
        if line_no == 2:
            return self.source(rng, line_no, ext, force_uk=False)
        return self.ok_source(rng, line_no, ext)

    def _pick(self, rng: random.Random, pool: deque[_Content], want: Callable[[_Content], bool] | None = None,
              ) -> list[_Content]:
        items = [c for c in pool if want is None or want(c)] or list(pool)
        rng.shuffle(items)
        return items

    def _line_exact_dup(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        if not self.files_window:
            entry["kind"] = "unique_nonface"
            return self._line_unique(rng, line_no, entry)
        same_path = entry["kind"] == "exact_dup_same_path"
        force_uk: bool | None = None
        candidates = self._pick(rng, self.files_window)
        if line_no <= len(COVERAGE_PLAN) and "uk_exact_dup" not in self.scenarios and not same_path:
            # Scenario: first copy from a non-UK source, the byte-identical copy from a UK one.
            candidates = self._pick(rng, self.files_window, lambda c: not c.uk)
            force_uk = True
        original = candidates[0]
        ext = original.path.rsplit(".", 1)[1]
        path = original.path if same_path else self.new_path(rng, ext)
        self._record_file(entry, path, original.data, write=not same_path)
        # The URL slug embeds the line number, so this source URL always differs from the original's.
        src = self.source(rng, line_no, ext, force_uk=True) if force_uk else self.ok_source(rng, line_no, ext)
        record = {"image_path": path, **src}
        self._content_entry(entry, original, fmt=original.fmt, image=original.image, has_face=original.has_face,
                            base=original.base)
        if force_uk:
            self.scenarios["uk_exact_dup"] = {
                "original_line": original.line_no, "original_image_path": original.path,
                "dup_line": line_no, "dup_image_path": path,
                "note": "byte-identical copy seen at a .uk host; the first copy's source is not UK",
            }
        if same_path and "same_path_twice" not in self.scenarios:
            self.scenarios["same_path_twice"] = {"lines": [original.line_no, line_no], "image_path": path}
        return self._emit(entry, record)

    def _near_variant(self, rng: random.Random, kind: str, original: _Content) -> tuple[bytes, str, str]:
        img = original.image.convert("RGB") if original.image.mode not in ("RGB", "L") else original.image
        fmt = original.fmt
        if kind == "near_jpeg_quality":
            q = rng.choice([q for q in (55, 60, 65, 70, 80, 88, 95) if q != original.quality])
            return _encode(img, "JPEG", q), "JPEG", f"jpeg_quality:{q}"
        if kind == "near_resize":
            s = rng.choice((0.5, 0.6, 0.7, 0.75, 0.8, 0.9))
            out = img.resize((max(16, round(img.width * s)), max(16, round(img.height * s))), Image.Resampling.LANCZOS)
            return _encode(out, fmt, original.quality), fmt, f"resize:{s:.2f}"
        if kind == "near_crop":
            w, h = img.size
            cuts = [rng.uniform(0.0, 0.03) for _ in range(4)]
            cuts[rng.randrange(4)] = rng.uniform(0.015, 0.03)
            box = (round(w * cuts[0]), round(h * cuts[1]), w - round(w * cuts[2]), h - round(h * cuts[3]))
            label = ",".join(f"{c:.3f}" for c in cuts)
            return _encode(img.crop(box), fmt, original.quality), fmt, f"crop:{label}"
        if kind == "near_brightness":
            factor = rng.choice((-1, 1)) * rng.uniform(0.04, 0.10)
            out = ImageEnhance.Brightness(img).enhance(1 + factor)
            return _encode(out, fmt, original.quality), fmt, f"brightness:{factor:+.3f}"
        if kind == "near_format":
            target = {"PNG": "WEBP", "WEBP": "PNG", "JPEG": "PNG"}[fmt]
            return _encode(img, target, 90), target, f"format:{fmt.lower()}->{target.lower()}"
        raise ValueError(kind)

    def _line_near_dup(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        kind = entry["kind"]
        if not self.uniques:
            entry["kind"] = "unique_face"
            return self._line_unique(rng, line_no, entry)
        uk_scenario = line_no <= len(COVERAGE_PLAN) and kind == "near_resize" and "uk_near_dup" not in self.scenarios
        if uk_scenario:
            candidates = self._pick(rng, self.uniques, lambda c: c.uk)
        elif kind == "near_format":
            candidates = self._pick(rng, self.uniques, lambda c: c.fmt in ("PNG", "WEBP"))
        else:
            candidates = self._pick(rng, self.uniques)
        chosen: tuple[_Content, bytes, str, str, Image.Image, tuple[int, int]] | None = None
        for original in candidates:
            for _ in range(3):
                data, fmt, transform = self._near_variant(rng, kind, original)
                if hashlib.sha256(data).hexdigest() in self.first_line_by_sha:
                    continue  # the same transform of the same original again would be an exact dup
                decoded = _decode(data)
                hashes = phash(decoded)
                close = _hamming(hashes, original.hashes) <= NEAR_DUP_MAX_DISTANCE
                if close and self.registry.min_distance(hashes, exclude_group=original.group) >= DISTINCT_MIN_DISTANCE:
                    chosen = (original, data, fmt, transform, decoded, hashes)
                    break
            if chosen:
                break
        if chosen is None:
            entry["kind"] = "unique_nonface"
            return self._line_unique(rng, line_no, entry)
        original, data, fmt, transform, decoded, hashes = chosen
        self.registry.add(hashes, original.group)
        path = self.new_path(rng, _EXT[fmt])
        self._record_file(entry, path, data)
        ext = _EXT[fmt]
        src = self.source(rng, line_no, ext, force_uk=False) if uk_scenario else self.ok_source(rng, line_no, ext)
        record = {"image_path": path, **src}
        content = _Content(line_no, path, data, fmt, decoded, hashes, original.group,
                           f"{original.content_id}~{transform}", original.has_face, original.base,
                           source_is_uk(record), None)
        self._content_entry(entry, content, fmt=fmt, image=decoded, has_face=original.has_face, base=original.base)
        entry["near_dup_of_line"] = original.line_no
        entry["transform"] = transform
        self.transforms[transform.split(":")[0]] += 1
        self.files_window.append(content)
        if uk_scenario:
            self.scenarios["uk_near_dup"] = {
                "canonical_line": original.line_no, "canonical_image_path": original.path,
                "canonical_source_url": self._url_cache.get(original.line_no),
                "near_dup_line": line_no, "near_dup_image_path": path, "near_dup_source_url": record["source_url"],
                "transform": transform,
                "note": "canonical seen at a .co.uk URL; the near-dup only at a .com URL -> canonical is UK",
            }
        return self._emit(entry, record)

    def _line_mirror(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        scenario = line_no <= len(COVERAGE_PLAN) and "uk_mirror" not in self.scenarios
        candidates = self._pick(rng, self.uniques, (lambda c: not c.uk) if scenario else None)
        for original in candidates:
            data = _encode(ImageOps.mirror(original.image), original.fmt, original.quality)
            decoded = _decode(data)
            hashes = phash(decoded)
            if self.registry.min_distance(hashes) >= DISTINCT_MIN_DISTANCE:
                break
        else:
            entry["kind"] = "unique_nonface"
            return self._line_unique(rng, line_no, entry)
        path = self.new_path(rng, _EXT[original.fmt])
        self._record_file(entry, path, data)
        ext = _EXT[original.fmt]
        src = self.source(rng, line_no, ext, force_uk=True) if scenario else self.ok_source(rng, line_no, ext)
        record = {"image_path": path, **src}
        content = _Content(line_no, path, data, original.fmt, decoded, hashes, self.register(hashes),
                           f"{original.content_id}~hflip", original.has_face, original.base, source_is_uk(record),
                           original.quality)
        self._content_entry(entry, content, fmt=original.fmt, image=decoded, has_face=original.has_face,
                            base=original.base)
        entry["mirror_of_line"] = original.line_no
        entry["transform"] = "hflip"
        self.files_window.append(content)
        if scenario:
            self.scenarios["uk_mirror"] = {
                "original_line": original.line_no, "mirror_line": line_no,
                "note": "mirror seen at a .uk host; a mirror is not a near-dup, so the original stays non-UK",
            }
        return self._emit(entry, record)

    def _line_special(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        """Valid but unusual files: animated GIF, EXIF-rotated JPEG, PNG bytes under a .jpg name."""
        kind = entry["kind"]
        for attempt in range(40):
            with_face = kind == "exif_orientation" or rng.random() < 0.5
            if kind == "animated_gif":
                pixels, has_face, base = self.make_pixels(rng, with_face, 160)
                frames = [pixels.convert("RGB")]
                for _ in range(rng.randint(2, 3)):
                    # Later frames differ; only the first frame is the image's content.
                    frames.append(ImageOps.mirror(frames[-1]) if rng.random() < 0.5 else frames[-1].rotate(180))
                buf = io.BytesIO()
                # Fast-octree palettes: Pillow's default median-cut quantizer dominates the GIF cost.
                paletted = [f.quantize(colors=128, method=Image.Quantize.FASTOCTREE) for f in frames]
                paletted[0].save(buf, "GIF", save_all=True, append_images=paletted[1:], duration=120, loop=0)
                data, fmt = buf.getvalue(), "GIF"
                first_frame = _decode(data)  # palette mode, exactly what a reader hashes
                views = [first_frame]
                decoded = first_frame.convert("RGB")
            elif kind == "exif_orientation":
                pixels, has_face, base = self.make_pixels(rng, True, 320)
                exif = Image.Exif()
                exif[0x0112] = 6
                # Stored sideways; orientation 6 tells viewers to rotate 90 degrees clockwise.
                data = _encode(pixels.rotate(90, expand=True), "JPEG", 88, exif=exif.tobytes())
                fmt = "JPEG"
                decoded = _decode(data)
                views = [decoded, ImageOps.exif_transpose(decoded)]
            else:
                pixels, has_face, base = self.make_pixels(rng, with_face, 192)
                data, fmt = _encode(pixels, "PNG"), "PNG"
                decoded = _decode(data)
                views = [decoded]
            hashes_list = [phash(v) for v in views]
            far = all(self.registry.min_distance(h) >= DISTINCT_MIN_DISTANCE for h in hashes_list)
            if len(hashes_list) == 2:
                far = far and _hamming(hashes_list[0], hashes_list[1]) >= DISTINCT_MIN_DISTANCE
            if far or attempt == 39:
                break
        ext = "jpg" if kind == "ext_mismatch" else _EXT[fmt]
        path = self.new_path(rng, ext)
        self._record_file(entry, path, data)
        record = {"image_path": path, **self.ok_source(rng, line_no, ext)}
        group = self.register(hashes_list[0])
        for extra in hashes_list[1:]:
            self.registry.add(extra, group)
        content = _Content(line_no, path, data, fmt, decoded, hashes_list[0], group, self.next_content_id(),
                           has_face, base, source_is_uk(record), 88 if fmt == "JPEG" else None)
        self._content_entry(entry, content, fmt=fmt, image=decoded, has_face=has_face, base=base)
        if kind == "animated_gif":
            entry["frames"] = len(frames)
        if kind == "exif_orientation":
            entry["exif_orientation"] = 6
        self.files_window.append(content)
        return self._emit(entry, record)

    def _bad_file_bytes(self, rng: random.Random, kind: str) -> tuple[bytes, str, dict[str, Any]]:
        info: dict[str, Any] = {}
        if kind == "empty_file":
            return b"", rng.choice(("jpg", "png")), info
        if kind == "not_an_image":
            ref = hashlib.sha256(f"{self.seed}/{self.file_seq}".encode()).hexdigest()[:16]
            body = rng.choice((
                f"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n"
                f"<body><h1>Forbidden</h1><p>request {ref}</p></body></html>\n",
                f'{{"error": "rate limited", "request": "{ref}"}}\n',
                f"<html><body>Please enable JavaScript to view this image ({ref})</body></html>\n",
            ))
            return body.encode(), "jpg", info
        if kind in ("truncated_jpeg", "truncated_png", "corrupt_jpeg"):
            fmt = "PNG" if kind == "truncated_png" else "JPEG"
            data, decoded, _, has_face, base, _, _ = self.fresh_image(rng, rng.random() < 0.5, fmt=fmt)
            info.update(format=fmt, width=decoded.width, height=decoded.height, has_face=has_face, base=base)
            if kind == "corrupt_jpeg":
                return _corrupt_jpeg(data, rng), "jpg", info
            # Half a file: headers intact (the format is recognised), pixel data cut off.
            return data[: len(data) // 2], _EXT[fmt], info
        if kind == "oversized":
            noise = np.random.default_rng(rng.getrandbits(64)).integers(0, 256, (*OVERSIZED_SHAPE, 3), dtype=np.uint8)
            data = _encode(Image.fromarray(noise, "RGB"), "PNG")
            info.update(format="PNG", width=OVERSIZED_SHAPE[1], height=OVERSIZED_SHAPE[0], has_face=False, base=None)
            return data, "png", info
        if kind == "bomb":
            if not self.bomb_idat:
                self.bomb_idat = _bomb_idat(BOMB_SIDE)
            colour = bytes(rng.randrange(256) for _ in range(3))
            info.update(format="PNG", width=BOMB_SIDE, height=BOMB_SIDE)
            return _bomb_png(BOMB_SIDE, colour, self.bomb_idat), "png", info
        raise ValueError(kind)

    def _line_bad_file(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        kind = entry["kind"]
        data, ext, info = self._bad_file_bytes(rng, kind)
        path = self.new_path(rng, ext)
        self._record_file(entry, path, data)
        entry["content_id"] = f"bad{line_no:06d}"
        entry["format"] = info.get("format")
        entry["width"], entry["height"] = info.get("width"), info.get("height")
        entry["has_face_expected"] = info.get("has_face")
        entry["base_image"] = info.get("base")
        if kind == "oversized":
            self.scenarios["oversized"] = {"line": line_no, "image_path": path, "bytes": len(data)}
        record = {"image_path": path, **self.source(rng, line_no, ext)}
        return self._emit(entry, record)

    def _line_bad_path(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        kind = entry["kind"]
        if kind == "missing_file":
            path = self.new_path(rng, "jpg")  # named like every other file, never written
        elif kind == "path_escape_parent":
            path = rng.choice(("../etc/passwd", "../../etc/passwd", "../outside.jpg"))
        elif kind == "path_escape_absolute":
            path = rng.choice(("/etc/passwd", "/tmp/outside.jpg", "/etc/hostname"))
        else:
            path = rng.choice(("images/../../etc/passwd", "images/./../../outside.jpg"))
        entry["image_path"] = path
        record = {"image_path": path, **self.source(rng, line_no, "jpg")}
        return self._emit(entry, record)

    def _line_bad_line(self, rng: random.Random, line_no: int, entry: dict[str, Any]) -> str:
        kind = entry["kind"]
        ext = "jpg"
        path: str | None = None
        if kind not in ("malformed_not_json", "malformed_array", "malformed_truncated", "missing_image_path"):
            # The file itself is fine, so the field problem is the only possible reason.
            data, decoded, fmt, has_face, base, _, _ = self.fresh_image(rng, rng.random() < 0.5)
            ext = _EXT[fmt]
            path = self.new_path(rng, ext)
            self._record_file(entry, path, data)
            entry["content_id"] = self.next_content_id("q")
            entry["format"], (entry["width"], entry["height"]) = fmt, decoded.size
            entry["has_face_expected"], entry["base_image"] = has_face, base
        record: dict[str, Any] = {"image_path": path} if path else {}
        record.update(self.source(rng, line_no, ext))
        if kind.startswith("malformed"):
            fake = self.new_path(rng, "jpg")
            entry["image_path"] = None
            if kind == "malformed_array":
                return json.dumps([fake, record["source_url"], record["crawled_at"]])
            if kind == "malformed_truncated":
                full = json.dumps({"image_path": fake, **record})
                return full[: max(20, len(full) // 2)]
            return rng.choice((
                f"image_path={fake} source_url={record['source_url']}",
                f"{{'image_path': '{fake}', 'source_url': '{record['source_url']}'}}",
                f"{fake}\t{record['source_url']}\t{record['crawled_at']}",
            ))
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
        return self._emit(entry, record)

    # ------------------------------------------------------------------ run

    def run(self, manifest: io.TextIOBase, key_lines: Callable[[dict[str, Any]], None],
            progress: Callable[[int, int], None] | None) -> None:
        step = max(1, self.n // 10)
        for line_no in range(1, self.n + 1):
            text, entry = self.line(line_no)
            if line_no <= len(COVERAGE_PLAN) and entry["source_url"]:
                self._url_cache[line_no] = entry["source_url"]
            manifest.write(text + "\n")
            key_lines(entry)
            self._tally(entry)
            if progress and line_no % step == 0:
                progress(line_no, self.n)

    def _tally(self, entry: dict[str, Any]) -> None:
        if entry["uk_expected"]:
            self.counts["_uk_lines"] += 1
            if entry["expected"] == OK:
                self.counts["_uk_ok_lines"] += 1
        if entry["expected"] == OK:
            if entry["exact_dup_of_line"] is not None:
                self.counts["_exact_dups"] += 1
                if entry["kind"] == "exact_dup_same_path":
                    self.counts["_exact_dup_same_path"] += 1
            elif entry["near_dup_of_line"] is None:
                self.counts["_distinct"] += 1
                self.counts["_distinct_face"] += bool(entry["has_face_expected"])

    def policy_cases(self) -> list[dict[str, Any]]:
        out = []
        for i, case in enumerate(_SOURCE_CASES):
            host = case.page_host if case.field == "page_url" else case.host
            out.append({
                "field": case.field, "value": case.value, "host": host if case.field.endswith("url") else None,
                "uk": case.uk, "why": case.why, "line_no": self.case_lines.get(i),
            })
        return out


def _builder_for(kind: str) -> str:
    if kind in ("unique_face", "unique_nonface"):
        return "unique"
    if kind.startswith("exact_dup"):
        return "exact_dup"
    if kind in NEAR_KINDS:
        return "near_dup"
    if kind == "mirror":
        return "mirror"
    if kind in ("animated_gif", "exif_orientation", "ext_mismatch"):
        return "special"
    if kind in ("empty_file", "not_an_image", "truncated_jpeg", "truncated_png", "corrupt_jpeg", "oversized", "bomb"):
        return "bad_file"
    if kind in ("missing_file", "path_escape_parent", "path_escape_absolute", "path_escape_dotdot"):
        return "bad_path"
    return "bad_line"


def _corrupt_jpeg(data: bytes, rng: random.Random) -> bytes:
    """Keep every header up to the scan, replace the entropy-coded data with garbage.

    Escaped random bytes alone only make libjpeg warn (Pillow then returns a grey image), so the
    garbage carries a second SOI marker, which libjpeg treats as a fatal structure error.
    """
    sos = data.index(b"\xff\xda")
    header_end = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    size = max(256, len(data) - header_end - 2)
    garbage = rng.randbytes(size).replace(b"\xff", b"\xfe")
    cut = rng.randint(8, 64)
    return data[:header_end] + garbage[:cut] + b"\xff\xd8" + garbage[cut:] + b"\xff\xd9"


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def _bomb_idat(side: int) -> bytes:
    # 1-bit palette rows of zeros (filter byte 0 + packed pixels), streamed to keep memory flat.
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    chunks = [comp.compress(row * 1000) for _ in range(side // 1000)]
    chunks.append(comp.compress(row * (side % 1000)))
    chunks.append(comp.flush())
    return b"".join(chunks)


def _bomb_png(side: int, colour: bytes, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"PLTE", colour + b"\x00\x00\x00")
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


# --------------------------------------------------------------------------- public API


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace a sample drop there")
        # Only what a previous run wrote is removed; anything else in the folder is left alone.
        for name in (MANIFEST_NAME, ANSWER_KEY_NAME):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / IMAGES_DIR, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def generate_sample_drop(out_dir: Path, n: int, seed: int = 0, *, overwrite: bool = False,
                         progress: Callable[[int, int], None] | None = None) -> SampleDropSummary:
    """Write a drop of ``n`` manifest lines (plus images and ``answer_key.json``) into ``out_dir``.

    Output is byte-identical for the same (n, seed). Every category exists once ``n >= 60``;
    the first k lines of a drop do not depend on ``n``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    gen = _Generator(out_dir, n, seed)
    key_tmp = out_dir / (ANSWER_KEY_NAME + ".part")
    with (out_dir / MANIFEST_NAME).open("w", encoding="utf-8", newline="\n") as manifest, \
            key_tmp.open("w", encoding="utf-8", newline="\n") as key:
        # Streamed by hand in sorted-key order so a 100k-line key never sits in memory.
        key.write("{\n")
        key.write(f'"limits": {_dump({"byte_limit_for_tests": BYTE_LIMIT_FOR_TESTS, "pixel_limit_for_tests": PIXEL_LIMIT_FOR_TESTS})},\n')
        key.write('"lines": [\n')
        first = [True]

        def write_key_line(entry: dict[str, Any]) -> None:
            key.write(("" if first[0] else ",\n") + _dump(entry))
            first[0] = False

        gen.run(manifest, write_key_line, progress)
        summary = _summary(gen, out_dir)
        key.write("\n],\n")
        key.write(f'"n": {n},\n')
        key.write('"policy_cases": [\n' + ",\n".join(_dump(c) for c in gen.policy_cases()) + "\n],\n")
        key.write(f'"scenarios": {_dump(gen.scenarios)},\n')
        key.write(f'"seed": {seed},\n')
        summary_dict = summary.to_dict()
        summary_dict.pop("out_dir")
        key.write(f'"summary": {_dump(summary_dict)},\n')
        key.write(f'"version": {ANSWER_KEY_VERSION}\n')
        key.write("}\n")
    key_tmp.replace(out_dir / ANSWER_KEY_NAME)
    return summary


def _summary(gen: _Generator, out_dir: Path) -> SampleDropSummary:
    c = gen.counts
    by_expected = {k: v for k, v in c.items() if not k.startswith("_")}
    return SampleDropSummary(
        out_dir=str(out_dir), n=gen.n, seed=gen.seed, lines=gen.n, files=gen.files, total_bytes=gen.total_bytes,
        ok_lines=by_expected.get(OK, 0), quarantined_lines=gen.n - by_expected.get(OK, 0),
        distinct_contents=c["_distinct"], face_expected_contents=c["_distinct_face"],
        unique_face=gen.kinds["unique_face"], unique_nonface=gen.kinds["unique_nonface"],
        exact_dup_lines=c["_exact_dups"], exact_dup_same_path_lines=c["_exact_dup_same_path"],
        near_dup_lines=sum(gen.kinds[k] for k in NEAR_KINDS), mirror_lines=gen.kinds["mirror"],
        uk_lines=c["_uk_lines"], uk_ok_lines=c["_uk_ok_lines"],
        by_expected=dict(sorted(by_expected.items())), by_kind=dict(sorted(gen.kinds.items())),
        near_dups_by_transform=dict(sorted(gen.transforms.items())),
    )


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``sample-drop`` command."""
    parser.add_argument("dir", type=Path, help="folder to write the drop into (must be empty unless --overwrite)")
    parser.add_argument("--n", type=int, default=200, help="number of manifest lines (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same n and seed give identical bytes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace manifest.jsonl, answer_key.json and images/ of an earlier drop in DIR")


def run(args: argparse.Namespace) -> int:
    """Generate the drop described by ``args`` and print a short summary; returns the exit code."""
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(f"sample-drop: {done}/{total} lines ({done * 100 // total}%) {time.monotonic() - started:.0f}s",
              file=sys.stderr, flush=True)

    try:
        summary = generate_sample_drop(args.dir, args.n, args.seed, overwrite=args.overwrite,
                                       progress=progress if args.n >= 5000 else None)
    except ValueError as exc:
        print(f"sample-drop: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    s = summary.to_dict()
    print(f"sample drop written to {s['out_dir']} in {elapsed:.1f}s (n={s['n']}, seed={s['seed']})")
    print(f"  lines {s['lines']}: ok {s['ok_lines']}, quarantined {s['quarantined_lines']}; "
          f"files {s['files']} ({s['total_bytes'] / 1e6:.1f} MB)")
    print(f"  distinct contents {s['distinct_contents']} (face expected {s['face_expected_contents']}); "
          f"exact dups {s['exact_dup_lines']}, near dups {s['near_dup_lines']}, mirrors {s['mirror_lines']}")
    print(f"  UK sources: {s['uk_lines']} lines ({s['uk_ok_lines']} ingestible)")
    print("  quarantine: " + ", ".join(f"{k} {v}" for k, v in s["by_expected"].items() if k != OK))
    print(f"  answer key: {Path(s['out_dir']) / ANSWER_KEY_NAME}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m jobs.testdata.sample_drop DIR --n 50 --seed 1``."""
    parser = argparse.ArgumentParser(prog="python -m jobs.testdata.sample_drop", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
