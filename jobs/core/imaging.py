"""Decode and hash one image (pure, no Spark): limits, EXIF orientation, sha256, pHash and probe hashes, RGB pixels."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from scipy.fft import dctn

from jobs.core.reasons import QuarantineReason

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})

# Truncated files must fail, not decode half-grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class Decoded:
    """The outcome for one file: either hashes and geometry, or a quarantine reason."""

    sha256: str | None
    byte_size: int
    phash: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    probes: tuple[str, ...] | None = None  # Probes.all()[1:]: mirror, centre, mirrored and corner crops
    reason: QuarantineReason | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


class TooManyPixels(ValueError):
    """The header declares more pixels than the limit (raised before a single pixel is decoded)."""


def _upright_first_frame(image: Image.Image) -> Image.Image:
    """The first frame of an animation, decoded, with its EXIF orientation applied."""
    image.seek(0)
    image.load()
    return ImageOps.exif_transpose(image)


def load_rgb(data: bytes | None, max_pixels: int) -> np.ndarray:
    """Image bytes -> HxWx3 uint8 RGB pixels, the image decode_image hashes (first frame, EXIF orientation).

    Raises ValueError without bytes, TooManyPixels above ``max_pixels``, Pillow's own error for a bad file.
    """
    if not data:
        raise ValueError("no image bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own bomb warning; we apply our own limit
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise TooManyPixels(f"{width}x{height} > limit {max_pixels} pixels")
            return np.asarray(_upright_first_frame(image).convert("RGB"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash as 16 hex chars (32x32 greyscale, 8x8 low frequencies vs their median)."""
    grey = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    coeffs = dctn(np.asarray(grey, dtype=np.float64), type=2, norm="ortho")[:8, :8]
    bits = (coeffs > np.median(coeffs)).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


# Centre crops probed, as a fraction cut off each side: a copy cropped (or framed) by about this much hashes like the probe.
CROP_PROBES: tuple[float, ...] = (0.04, 0.08, 0.12, 0.16)
PROBE_SIDE = 512  # probes are cut from a copy no larger than this


@dataclass(frozen=True)
class Probes:
    """An image's full-view pHash and the hashes a transformed copy of it would have."""

    phash: str
    mirror: str
    crops: tuple[str, ...]  # centre crops, CROP_PROBES order
    mirror_crops: tuple[str, ...]
    corners: tuple[str, ...]  # CORNER_CUT off two adjacent sides, CORNERS order

    def all(self) -> tuple[str, ...]:
        return (self.phash, self.mirror, *self.crops, *self.mirror_crops, *self.corners)


# A crop that takes more off one side than the other moves the picture's centre: these probes cut
# CORNER_CUT off two adjacent sides (left+top, right+top, left+bottom, right+bottom).
CORNER_CUT = 0.06
CORNERS: tuple[tuple[int, int, int, int], ...] = ((1, 1, 0, 0), (0, 1, 1, 0), (1, 0, 0, 1), (0, 0, 1, 1))


def _corner_crop(image: Image.Image, sides: tuple[int, int, int, int]) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * CORNER_CUT), round(h * CORNER_CUT)
    left, top, right, bottom = sides
    return image.crop(
        (dx * left, dy * top, max(dx * left + 1, w - dx * right), max(dy * top + 1, h - dy * bottom))
    )


def _centre_crop(image: Image.Image, fraction: float) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * fraction), round(h * fraction)
    return image.crop((dx, dy, max(dx + 1, w - dx), max(dy + 1, h - dy)))


def probe_spaces(probes: Probes) -> list[tuple[str, str, bool]]:
    """(space, hash, is_key) rows one image contributes to the candidate join.

    Two images are candidates when a query of one lies within the radius of a key of the other in the
    same space: in space ``full`` the key is the full-view hash and every probe queries it (a crop,
    frame or mirror of B hashes like a probe of A); in space ``crop<k>`` the k-th centre crops meet
    (a caption band or a tilt changes the edges, not the centre), in ``corner<k>`` the k-th corner crops.
    """
    rows = [("full", probes.phash, True)]
    rows += [("full", h, False) for h in probes.all()[1:]]
    rows += [(f"crop{k}", h, True) for k, h in enumerate(probes.crops)]
    rows += [(f"corner{k}", h, True) for k, h in enumerate(probes.corners)]
    return rows


def candidate_distance(a: Probes, b: Probes) -> int:
    """The smallest Hamming distance over the pairings ``probe_spaces`` joins (pure reference of the join)."""
    full = min(
        min(hamming(a.phash, h) for h in b.all()),
        min(hamming(b.phash, h) for h in a.all()),
    )
    same_cut = [hamming(x, y) for x, y in zip(a.crops, b.crops, strict=True)]
    same_cut += [hamming(x, y) for x, y in zip(a.corners, b.corners, strict=True)]
    return min(full, *same_cut)


def probe_hashes(image: Image.Image) -> Probes:
    """Hashes of ``image`` as mirrored and centre-cropped copies of it would look."""
    full = phash(image)
    # Every probe is a 32x32 thumbnail of a large share of the picture: cut them from one smaller copy
    # instead of resizing a 12-megapixel original a dozen times.
    if max(image.size) > PROBE_SIDE:
        image = image.copy()
        image.thumbnail((PROBE_SIDE, PROBE_SIDE), Image.Resampling.LANCZOS)
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return Probes(
        full,
        phash(mirrored),
        tuple(phash(_centre_crop(image, f)) for f in CROP_PROBES),
        tuple(phash(_centre_crop(mirrored, f)) for f in CROP_PROBES),
        tuple(phash(_corner_crop(image, sides)) for sides in CORNERS),
    )


def decode_image(data: bytes | None, max_bytes: int, max_pixels: int) -> Decoded:
    """Validate, decode (first frame, EXIF orientation applied) and hash one file's bytes."""
    if data is None:
        return Decoded(None, 0, reason=QuarantineReason.MISSING_FILE, detail="no file at image_path")
    size = len(data)
    digest = sha256_hex(data)
    if size == 0:
        return Decoded(digest, 0, reason=QuarantineReason.EMPTY_FILE, detail="zero bytes")
    if size > max_bytes:
        return Decoded(
            digest, size, reason=QuarantineReason.TOO_MANY_BYTES, detail=f"{size} bytes > limit {max_bytes}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning; we apply our own limit
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "?"
            width, height = image.size
            if fmt not in SUPPORTED_FORMATS:
                return Decoded(
                    digest, size, reason=QuarantineReason.NOT_AN_IMAGE, detail=f"unsupported format {fmt}"
                )
            # Checked from the header before decoding a single pixel: a bomb is cheap on disk.
            if width * height > max_pixels:
                return Decoded(
                    digest,
                    size,
                    width=width,
                    height=height,
                    format=fmt,
                    reason=QuarantineReason.TOO_MANY_PIXELS,
                    detail=f"{width}x{height} > limit {max_pixels} pixels",
                )
            image = _upright_first_frame(image)
    except UnidentifiedImageError:
        return Decoded(digest, size, reason=QuarantineReason.NOT_AN_IMAGE, detail="not a known image format")
    except Image.DecompressionBombError as exc:
        return Decoded(digest, size, reason=QuarantineReason.TOO_MANY_PIXELS, detail=str(exc)[:200])
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        truncated = isinstance(exc, EOFError) or "truncated" in text.lower() or "end of file" in text.lower()
        reason = QuarantineReason.TRUNCATED_IMAGE if truncated else QuarantineReason.CORRUPT_IMAGE
        return Decoded(digest, size, format=None, reason=reason, detail=f"{type(exc).__name__}: {text[:160]}")
    width, height = image.size
    probes = probe_hashes(image)
    return Decoded(
        digest, size, phash=probes.phash, width=width, height=height, format=fmt, probes=probes.all()[1:]
    )
