"""Copies of a photo as the web re-posts them (test tooling): re-encodes, crops, borders, mirrors, captions.

Each transform takes the source pixels and a seeded ``random.Random`` and returns the encoded copy,
so a benchmark or test can ask "is this copy found?" per transform. Not on the product path.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Copy:
    """One transformed copy: its bytes, format and a label saying exactly what was done."""

    transform: str
    data: bytes
    fmt: str
    label: str


def _encode(img: Image.Image, fmt: str, quality: int = 85, **extra: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG", compress_level=1, **extra)
    else:
        img.save(buf, fmt, quality=quality, **extra)
    return buf.getvalue()


def _jpeg(img: Image.Image, rng: random.Random) -> bytes:
    return _encode(img.convert("RGB"), "JPEG", rng.randint(80, 92))


def reencode(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    q = rng.randint(45, 75)
    return _encode(img.convert("RGB"), "JPEG", q), "JPEG", f"jpeg_quality={q}"


def resize(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    s = rng.uniform(0.5, 0.9) if rng.random() < 0.7 else rng.uniform(1.2, 1.6)
    out = img.resize(
        (max(16, round(img.width * s)), max(16, round(img.height * s))), Image.Resampling.LANCZOS
    )
    return _jpeg(out, rng), "JPEG", f"scale={s:.2f}"


def change_format(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    fmt = rng.choice(("PNG", "WEBP"))
    return _encode(img.convert("RGB"), fmt, 80), fmt, f"format={fmt}"


def grayscale(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    return _jpeg(ImageOps.grayscale(img), rng), "JPEG", "grayscale"


def brightness(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    f = rng.choice((-1, 1)) * rng.uniform(0.08, 0.2)
    return (
        _jpeg(ImageEnhance.Brightness(img.convert("RGB")).enhance(1 + f), rng),
        "JPEG",
        f"brightness={f:+.2f}",
    )


def caption(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    """A meme-style text band over the bottom or top of the picture."""
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    band = max(10, round(out.height * rng.uniform(0.08, 0.12)))
    top = 0 if rng.random() < 0.5 else out.height - band
    draw.rectangle((0, top, out.width, top + band), fill=(0, 0, 0))
    words = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ !") for _ in range(rng.randint(12, 24)))
    draw.text((4, top + band // 4), words, fill=(255, 255, 255))
    return _jpeg(out, rng), "JPEG", f"caption_band={band}px"


def exif_rotation(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    """Pixels stored sideways with the EXIF orientation that makes viewers show them upright."""
    orientation, angle = rng.choice(((6, 90), (8, 270), (3, 180)))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    stored = img.convert("RGB").rotate(angle, expand=True)
    return _encode(stored, "JPEG", 88, exif=exif.tobytes()), "JPEG", f"exif_orientation={orientation}"


def _cut(img: Image.Image, cuts: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    left, top, right, bottom = cuts
    return img.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def crop_5(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    return _jpeg(_cut(img, (0.05,) * 4), rng), "JPEG", "crop=0.05 each side"


def crop_10(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    """Up to 10 % off each side, independently (the picture's centre moves too)."""
    cuts = tuple(rng.uniform(0.0, 0.10) for _ in range(4))
    return _jpeg(_cut(img, cuts), rng), "JPEG", "crop=" + ",".join(f"{c:.3f}" for c in cuts)


def crop_15(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    return _jpeg(_cut(img, (0.15,) * 4), rng), "JPEG", "crop=0.15 each side"


def border(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    """A solid frame, 3-10 % of the side, around the picture."""
    px = max(2, round(min(img.size) * rng.uniform(0.03, 0.10)))
    colour = rng.choice(((255, 255, 255), (0, 0, 0), (200, 30, 30), (128, 128, 128)))
    return _jpeg(ImageOps.expand(img.convert("RGB"), border=px, fill=colour), rng), "JPEG", f"border={px}px"


def rotate(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    """A small tilt (1-5 degrees either way), corners filled, size kept."""
    angle = rng.choice((-1, 1)) * rng.uniform(1.0, 5.0)
    out = img.convert("RGB").rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    return _jpeg(out, rng), "JPEG", f"rotate={angle:+.2f}deg"


def mirror(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    return _jpeg(ImageOps.mirror(img.convert("RGB")), rng), "JPEG", "mirror"


TRANSFORMS: dict[str, Callable[[Image.Image, random.Random], tuple[bytes, str, str]]] = {
    "reencode": reencode,
    "resize": resize,
    "format": change_format,
    "grayscale": grayscale,
    "brightness": brightness,
    "caption": caption,
    "exif_rotation": exif_rotation,
    "crop_5": crop_5,
    "crop_10": crop_10,
    "border": border,
    "rotate": rotate,
    "mirror": mirror,
    "crop_15": crop_15,
}

# The recall each transform must reach (issue #12): lossless-looking edits, geometric edits, hard ones.
RECALL_TARGETS: dict[str, float] = {
    **dict.fromkeys(
        ("reencode", "resize", "format", "grayscale", "brightness", "caption", "exif_rotation"), 0.99
    ),
    **dict.fromkeys(("crop_5", "crop_10", "border", "rotate"), 0.95),
    **dict.fromkeys(("mirror", "crop_15"), 0.90),
}


def make_copy(img: Image.Image, transform: str, rng: random.Random) -> Copy:
    """The ``transform`` copy of ``img`` (a name from ``TRANSFORMS``)."""
    data, fmt, label = TRANSFORMS[transform](img, rng)
    return Copy(transform, data, fmt, label)
