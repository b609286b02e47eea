"""Hostile crawl-drop corpus for tests: path, file and line tricks plus unusual-but-valid images, with an answer key."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

OK = "ok"
SUPPRESSED = "suppressed"
SUPPRESSED_HOST = "blocked-host.example"
"""A host suffix the test puts on the suppression list before ingesting."""
MAX_IMAGE_BYTES = 2_000_000
MAX_IMAGE_PIXELS = 20_000_000
URL_MARKER = "zq7hostile"
"""Every URL in the corpus carries this marker, so a privacy scan can look for it."""


@dataclass
class HostileDrop:
    """The generated drop, what each line must become, and the files planted outside it."""

    drop: Path
    expected: dict[int, str] = field(default_factory=dict)  # line_no -> "ok" | "suppressed" | reason
    uk: dict[int, bool] = field(default_factory=dict)  # line_no -> UK-tagged (ok lines only)
    classes: dict[int, str] = field(default_factory=dict)  # line_no -> what trick the line plays
    outside_sha256: list[str] = field(default_factory=list)  # hashes of files outside the drop
    outside_markers: list[bytes] = field(default_factory=list)  # byte strings only outside files hold


def _photo(seed: int, size: tuple[int, int] = (96, 80), mode: str = "RGB") -> Image.Image:
    """A distinct, decodable picture: smooth gradients plus seeded blocks (distinct pHashes)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            (xx * (seed % 7 + 1) * 3) % 256,
            (yy * (seed % 5 + 2) * 3) % 256,
            ((xx + yy) * (seed % 3 + 1)) % 256,
        ],
        -1,
    ).astype(np.uint8)
    for _ in range(6):
        x0, y0 = rng.integers(0, max(1, w - 16)), rng.integers(0, max(1, h - 16))
        base[y0 : y0 + 16, x0 : x0 + 16] = rng.integers(0, 256, 3)
    return Image.fromarray(base, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(base, "RGB")


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (a decompression bomb that is cheap on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _gif_frames(seed: int, frames: int) -> bytes:
    images = [_photo(seed + i, (48, 40)).convert("P") for i in range(frames)]
    return _encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)


def build_hostile_drop(root: Path) -> HostileDrop:
    """Write ``root/drop`` (manifest + files) and ``root/outside`` (canaries that must never be read)."""
    drop = root / "drop"
    outside = root / "outside"
    (drop / "sub").mkdir(parents=True)
    outside.mkdir()
    out = HostileDrop(drop)

    # Canaries outside the drop: an image and a text file, reachable only through tricks.
    canary_image = _encode(_photo(9001), "PNG")
    (outside / "canary.png").write_bytes(canary_image)
    (outside / "secret.txt").write_bytes(b"facelake-canary-secret " + os.urandom(8).hex().encode())
    out.outside_markers.append((outside / "secret.txt").read_bytes())
    import hashlib

    out.outside_sha256 += [
        hashlib.sha256(canary_image).hexdigest(),
        hashlib.sha256((outside / "secret.txt").read_bytes()).hexdigest(),
    ]

    lines: list[bytes] = []
    seed = iter(range(100, 10_000))

    def url(host: str = "photos.example.com", path: str = "") -> str:
        return f"https://{host}/{URL_MARKER}/{path or next(seed)}.jpg"

    def add(raw: bytes | str | dict, expected: str, cls: str, uk: bool = False) -> int:
        if isinstance(raw, dict):
            raw = json.dumps(raw, ensure_ascii=False)
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        lines.append(raw)
        line_no = len(lines)
        out.expected[line_no] = expected
        out.classes[line_no] = cls
        if expected == OK:
            out.uk[line_no] = uk
        return line_no

    def record(image_path: str, **extra) -> dict:
        rec = {"image_path": image_path, "source_url": url(), "crawled_at": "2026-03-01T12:00:00+00:00"}
        rec.update(extra)
        return rec

    def image_file(name: str, data: bytes | None = None) -> str:
        path = drop / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else _encode(_photo(next(seed)), "JPEG", quality=90))
        return name

    # ------------------------------------------------------------------ path tricks
    os.symlink(outside / "canary.png", drop / "link_out.png")
    add(record("link_out.png"), "symlink", "path: symlink to a file outside")
    os.symlink("/etc/passwd", drop / "link_passwd.jpg")
    add(record("link_passwd.jpg"), "symlink", "path: symlink to a system file")
    image_file("inside_target.jpg")
    os.symlink(drop / "inside_target.jpg", drop / "link_in.jpg")
    add(record("link_in.jpg"), "symlink", "path: symlink to a file inside (never followed)")
    os.symlink(outside, drop / "linkdir")
    add(record("linkdir/canary.png"), "symlink", "path: through a symlinked directory")
    add(record(str(outside / "canary.png")), "path_escape", "path: absolute")
    add(record("../outside/canary.png"), "path_escape", "path: ..")
    add(record("sub/../../outside/canary.png"), "path_escape", "path: .. after a folder")
    add(record("sub\\..\\..\\outside\\canary.png"), "path_escape", "path: backslashes")
    add(record("a\u0000.jpg"), "path_escape", "path: NUL")
    add(record("file:///etc/passwd"), "path_escape", "path: file URL")
    add(record("https://example.com/x.jpg"), "path_escape", "path: http URL")
    for name, cls in [
        ("colon:name.jpg", "path: colon in the name"),
        ("100%25 done%.jpg", "path: percent signs"),
        ("with space.jpg", "path: spaces"),
        ("[glob]*?{a,b}.jpg", "path: glob characters"),
        ("_underscore.jpg", "path: leading underscore (Spark would hide it)"),
        (".dotfile.jpg", "path: leading dot (Spark would hide it)"),
        ("_hidden_dir/.inner.jpg", "path: hidden folder"),
        ("фото.jpg", "path: non-ASCII name"),
    ]:
        add(record(image_file(name)), OK, cls)
    # A file the manifest never names, with a colon: must not break the batch.
    image_file("unnamed:colon.jpg")

    # ------------------------------------------------------------------ file tricks
    add(
        record(image_file("bomb_pixels.png", _png_header_only(30_000, 30_000))),
        "too_many_pixels",
        "file: pixel bomb",
    )
    add(
        record(image_file("frames.gif", _gif_frames(next(seed), 300))),
        OK,
        "file: 300-frame GIF (first frame only)",
    )
    jpeg = _encode(_photo(next(seed), (200, 160)), "JPEG", quality=95)
    add(
        record(image_file("truncated.jpg", jpeg[: len(jpeg) // 2])), "truncated_image", "file: truncated JPEG"
    )
    add(
        record(image_file("corrupt.png", _encode(_photo(next(seed)), "PNG")[:60] + b"\x00garbage" * 40)),
        "corrupt_image",
        "file: corrupt PNG data",
    )
    add(record(image_file("zero.jpg", b"")), "empty_file", "file: zero bytes")
    add(
        record(image_file("doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")),
        "not_an_image",
        "file: PDF named .jpg",
    )
    add(
        record(image_file("page.png", b"<html><body>not an image</body></html>")),
        "not_an_image",
        "file: HTML",
    )
    add(
        record(image_file("scan.tif", _encode(_photo(next(seed)), "TIFF"))),
        "not_an_image",
        "file: TIFF (unsupported)",
    )
    add(
        record(image_file("pic.bmp", _encode(_photo(next(seed)), "BMP"))),
        "not_an_image",
        "file: BMP (unsupported)",
    )
    (drop / "folder.jpg").mkdir()
    add(record("folder.jpg"), "not_a_file", "file: directory named like an image")
    os.mkfifo(drop / "pipe.jpg")
    add(record("pipe.jpg"), "not_a_file", "file: FIFO (must not block)")
    with open(drop / "huge.jpg", "wb") as fh:  # sparse: 3 GiB on paper, nothing on disk
        fh.truncate(3 << 30)
    add(record("huge.jpg"), "too_many_bytes", "file: 3 GiB file (over Spark's 2 GiB binaryFile limit)")
    add(
        record(image_file("big.jpg", b"\xff\xd8\xff" + os.urandom(MAX_IMAGE_BYTES))),
        "too_many_bytes",
        "file: over the byte limit",
    )
    add(record("does/not/exist.jpg"), "missing_file", "file: missing")

    # ------------------------------------------------------------------ valid but unusual images
    unusual = {
        "cmyk.jpg": _encode(_photo(next(seed), mode="CMYK"), "JPEG"),
        "sixteen_bit.png": _encode(
            Image.fromarray(np.asarray(_photo(next(seed)).convert("L"), np.uint16) * 257), "PNG"
        ),
        "palette.png": _encode(_photo(next(seed)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "alpha.png": _encode(_photo(next(seed), mode="RGBA"), "PNG"),
        "progressive.jpg": _encode(_photo(next(seed), (160, 120)), "JPEG", progressive=True),
        "grey.jpg": _encode(_photo(next(seed), mode="L"), "JPEG"),
        "one_pixel.png": _encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "trailing.jpg": _encode(_photo(next(seed)), "JPEG") + b"TRAILING-BYTES" * 10,
        "really_png.jpg": _encode(_photo(next(seed)), "PNG"),
        "animated.gif": _gif_frames(next(seed), 3),
        "photo.webp": _encode(_photo(next(seed)), "WEBP"),
    }
    for name, data in unusual.items():
        add(record(image_file(name, data)), OK, f"image: {name}")

    # ------------------------------------------------------------------ line tricks
    good = image_file("line_target.jpg")
    add(b"hello, not json", "malformed_json", "line: not JSON")
    add(b"[1, 2, 3]", "malformed_json", "line: a JSON array")
    add(b'"a string"', "malformed_json", "line: a JSON string")
    add(b"42", "malformed_json", "line: a JSON number")
    add(b"null", "malformed_json", "line: JSON null")
    add(b"{}", "missing_field", "line: empty object")
    add({**record(good), "image_path": 5}, "invalid_field", "line: image_path of the wrong type")
    add({**record(good), "tags": "uk"}, "invalid_field", "line: tags not a list")
    dup = json.dumps(record(good))[:-1] + ', "source_url": "https://other.example.co.uk/x.jpg"}'
    add(dup, "malformed_json", "line: duplicate keys")
    add(
        json.dumps(record(good))[:-1] + ', "n": ' + "9" * 5000 + "}",
        "malformed_json",
        "line: 5000-digit integer",
    )
    add(json.dumps(record(good))[:-1] + ', "n": 1e999}', "malformed_json", "line: float overflow")
    add(json.dumps(record(good))[:-1] + ', "n": NaN}', "malformed_json", "line: NaN")
    add(b"[" * 100_000 + b"]" * 100_000, "malformed_json", "line: nested 100,000 deep")
    add(record(good, crawled_at="0001-01-01T00:00:00+01:00"), "invalid_field", "line: year 1 with +01:00")
    add(record(good, crawled_at="9999-12-31T23:59:59-01:00"), "invalid_field", "line: year 9999 with -01:00")
    add(record(good, crawled_at="2026-03-01T12:00:00"), "invalid_field", "line: crawled_at without a zone")
    bad_utf8 = (
        json.dumps(record(good)).encode().replace(URL_MARKER.encode(), URL_MARKER.encode() + b"\xff\xfe")
    )
    add(bad_utf8, "invalid_encoding", "line: invalid UTF-8")
    add(
        json.dumps(record(good))[:-1] + ', "x": "\\ud800"}', "invalid_encoding", "line: lone surrogate escape"
    )
    add(json.dumps(record(good))[:-1] + ', "pad": "' + "x" * (2 << 20) + '"}', "line_too_long", "line: 2 MiB")
    add(json.dumps(record(good)).replace(", ", ",\r "), OK, "line: lone CRs between tokens")
    add(
        json.dumps(record(good)).replace(URL_MARKER, URL_MARKER + "\r"),
        "malformed_json",
        "line: CR inside a string",
    )
    add(json.dumps(record(good)) + "\r", OK, "line: CRLF ending")
    add(record(good, country="ＧＢ"), "invalid_field", "line: full-width country")
    add(record(good, country="éé"), "invalid_field", "line: non-ASCII letters as country")
    add(record(good, country="GBR"), OK, "line: alpha-3 GBR", uk=True)
    add(record(good, country="gb-sct"), OK, "line: subdivision GB-SCT", uk=True)
    add(record(good, country="JE"), OK, "line: Jersey is not UK")
    add(record(good, source_url=url("bücher.co.uk")), OK, "host: IDN under .uk", uk=True)
    add(record(good, source_url=url("example.co．uk")), OK, "host: full-width dot", uk=True)
    add(record(good, source_url=url("example.co。uk")), OK, "host: ideographic dot", uk=True)
    add(record(good, source_url=url("ＥＸＡＭＰＬＥ.CO.UK")), OK, "host: full-width capitals", uk=True)
    add(record(good, source_url=url("example.co.%75k")), OK, "host: %-escaped", uk=True)
    add(
        record(good, source_url=f"https://example.co.uk\\@evil.com/{URL_MARKER}.jpg"),
        OK,
        "host: backslash before @ (browsers go to example.co.uk)",
        uk=True,
    )
    add(
        record(good, source_url=url("photos.example.com", "a b|c%zz")),
        OK,
        "url: space, | and bad escape in path",
    )
    add(record(good, source_url=url("news.example.london")), OK, "host: .london", uk=True)
    add(record(good, source_url=url("example.co.uk.evil.com")), OK, "host: .uk label not at the end")
    add(record(good, source_url=f"https://bad host.example/{URL_MARKER}.jpg"), "invalid_field", "host: space")
    add(record(good, source_url=f"https://a|b.example/{URL_MARKER}.jpg"), "invalid_field", "host: pipe")
    add(
        record(good, source_url=f"https://ex%zzample.com/{URL_MARKER}.jpg"),
        "invalid_field",
        "host: bad escape",
    )
    add(record(good, page_url="javascript:alert(1)"), "invalid_field", "line: page_url not http")
    add(record(good, source_url=url(f"cdn.{SUPPRESSED_HOST}")), SUPPRESSED, "host: under a suppressed host")
    add(record(good, page_url=url(SUPPRESSED_HOST)), SUPPRESSED, "host: page on a suppressed host")

    manifest = b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"  # BOM first: line 1 must still parse
    (drop / "manifest.jsonl").write_bytes(manifest)
    return out
