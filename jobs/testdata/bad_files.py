"""Bytes of broken sample files: empty, not an image, truncated, corrupt, oversized and decompression bombs."""

from __future__ import annotations

import random
import struct
import zlib
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from jobs.testdata.images import EXT, PictureMaker, encode

# The limits the answer key tells tests to configure so these files fail as it claims.
BYTE_LIMIT_FOR_TESTS = 2 * 1024 * 1024
PIXEL_LIMIT_FOR_TESTS = 50_000_000
# Far above any sane pixel limit and above Pillow's own bomb guard (2 x 89.5 MP), yet ~110 kB on disk.
BOMB_SIDE = 30_000
# Incompressible noise this big sits between the 2 MiB test limit and the 20 MiB ingest default.
OVERSIZED_SHAPE = (960, 960)


def bad_file(
    rng: random.Random, kind: str, pictures: PictureMaker, ref: str
) -> tuple[bytes, str, dict[str, Any]]:
    """(bytes, file extension, answer-key facts) of a file of ``kind``; ``ref`` tags error pages."""
    info: dict[str, Any] = {}
    if kind == "empty_file":
        return b"", rng.choice(("jpg", "png")), info
    if kind == "not_an_image":
        body = rng.choice(
            (
                f"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n"
                f"<body><h1>Forbidden</h1><p>request {ref}</p></body></html>\n",
                f'{{"error": "rate limited", "request": "{ref}"}}\n',
                f"<html><body>Please enable JavaScript to view this image ({ref})</body></html>\n",
            )
        )
        return body.encode(), "jpg", info
    if kind in ("truncated_jpeg", "truncated_png", "corrupt_jpeg"):
        fmt = "PNG" if kind == "truncated_png" else "JPEG"
        picture = pictures.fresh(rng, rng.random() < 0.5, fmt=fmt)
        info.update(
            format=fmt,
            width=picture.image.width,
            height=picture.image.height,
            has_face=picture.has_face,
            base=picture.base,
        )
        if kind == "corrupt_jpeg":
            return corrupt_jpeg(picture.data, rng), "jpg", info
        # Half a file: headers intact (the format is recognised), pixel data cut off.
        return picture.data[: len(picture.data) // 2], EXT[fmt], info
    if kind == "oversized":
        noise = np.random.default_rng(rng.getrandbits(64)).integers(
            0, 256, (*OVERSIZED_SHAPE, 3), dtype=np.uint8
        )
        data = encode(Image.fromarray(noise, "RGB"), "PNG")
        info.update(
            format="PNG", width=OVERSIZED_SHAPE[1], height=OVERSIZED_SHAPE[0], has_face=False, base=None
        )
        return data, "png", info
    if kind == "bomb":
        colour = bytes(rng.randrange(256) for _ in range(3))
        info.update(format="PNG", width=BOMB_SIDE, height=BOMB_SIDE)
        return bomb_png(BOMB_SIDE, colour), "png", info
    raise ValueError(kind)


def corrupt_jpeg(data: bytes, rng: random.Random) -> bytes:
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


@cache
def _bomb_idat(side: int) -> bytes:
    # Cached: compressing 30k rows takes ~2 s, and bombs differ only in their palette colour.
    # 1-bit palette rows of zeros (filter byte 0 + packed pixels), streamed to keep memory flat.
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    chunks = [comp.compress(row * 1000) for _ in range(side // 1000)]
    chunks.append(comp.compress(row * (side % 1000)))
    chunks.append(comp.flush())
    return b"".join(chunks)


def bomb_png(side: int, colour: bytes) -> bytes:
    """A valid 1-bit PNG of ``side`` x ``side`` pixels of ``colour``: tiny on disk, huge decoded."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"PLTE", colour + b"\x00\x00\x00")
        + _png_chunk(b"IDAT", _bomb_idat(side))
        + _png_chunk(b"IEND", b"")
    )
