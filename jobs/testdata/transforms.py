"""Augmentations of sample pictures: near-duplicate variants, mirrors and valid-but-unusual files."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageEnhance, ImageOps

from jobs.testdata.copies import make_copy
from jobs.testdata.images import PictureMaker, decode, encode

EXIF_ORIENTATION_TAG = 0x0112
SAMPLE_COPY_TRANSFORMS = ("caption", "border", "rotate", "grayscale", "crop_5")


def near_variant(
    rng: random.Random,
    kind: str,
    img: Image.Image,
    fmt: str,
    quality: int | None,
) -> tuple[bytes, str, str]:
    """(bytes, format, transform label) of a near duplicate of ``img`` (encoded as ``fmt`` at ``quality``)."""
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if kind == "near_jpeg_quality":
        q = rng.choice([q for q in (55, 60, 65, 70, 80, 88, 95) if q != quality])
        return encode(img, "JPEG", q), "JPEG", f"jpeg_quality:{q}"
    if kind == "near_resize":
        s = rng.choice((0.5, 0.6, 0.7, 0.75, 0.8, 0.9))
        out = img.resize(
            (max(16, round(img.width * s)), max(16, round(img.height * s))), Image.Resampling.LANCZOS
        )
        return encode(out, fmt, quality), fmt, f"resize:{s:.2f}"
    if kind == "near_crop":
        w, h = img.size
        cuts = [rng.uniform(0.0, 0.03) for _ in range(4)]
        cuts[rng.randrange(4)] = rng.uniform(0.015, 0.03)
        box = (round(w * cuts[0]), round(h * cuts[1]), w - round(w * cuts[2]), h - round(h * cuts[3]))
        label = ",".join(f"{c:.3f}" for c in cuts)
        return encode(img.crop(box), fmt, quality), fmt, f"crop:{label}"
    if kind == "near_brightness":
        factor = rng.choice((-1, 1)) * rng.uniform(0.04, 0.10)
        out = ImageEnhance.Brightness(img).enhance(1 + factor)
        return encode(out, fmt, quality), fmt, f"brightness:{factor:+.3f}"
    if kind == "near_copy":
        # The re-post transforms of jobs.testdata.copies that pHash alone misses or barely sees (the
        # verifier's job), kept to those that leave a small synthetic picture enough texture.
        name = rng.choice(SAMPLE_COPY_TRANSFORMS)
        copy = make_copy(img, name, rng)
        return copy.data, copy.fmt, f"copy_{name}:{copy.label}"
    if kind == "near_format":
        target = {"PNG": "WEBP", "WEBP": "PNG", "JPEG": "PNG"}[fmt]
        return encode(img, target, 90), target, f"format:{fmt.lower()}->{target.lower()}"
    raise ValueError(kind)


def mirrored(img: Image.Image, fmt: str, quality: int | None) -> bytes:
    """``img`` flipped left to right, encoded like the original."""
    return encode(ImageOps.mirror(img), fmt, quality)


@dataclass(frozen=True)
class SpecialFile:
    """A valid but unusual file and every view of it a reader may hash."""

    data: bytes
    fmt: str
    image: Image.Image  # decoded, what the answer key describes
    views: tuple[Image.Image, ...]
    has_face: bool
    base: str
    frames: int | None = None


def special_file(rng: random.Random, kind: str, pictures: PictureMaker) -> SpecialFile:
    """An animated GIF, an EXIF-rotated JPEG or PNG bytes meant for a ``.jpg`` name, by ``kind``."""
    with_face = kind == "exif_orientation" or rng.random() < 0.5
    if kind == "animated_gif":
        pixels, has_face, base = pictures.pixels(rng, with_face, 160)
        frames = [pixels.convert("RGB")]
        for _ in range(rng.randint(2, 3)):
            # Later frames differ; only the first frame is the image's content.
            frames.append(ImageOps.mirror(frames[-1]) if rng.random() < 0.5 else frames[-1].rotate(180))
        buf = io.BytesIO()
        # Fast-octree palettes: Pillow's default median-cut quantizer dominates the GIF cost.
        paletted = [f.quantize(colors=128, method=Image.Quantize.FASTOCTREE) for f in frames]
        paletted[0].save(buf, "GIF", save_all=True, append_images=paletted[1:], duration=120, loop=0)
        data = buf.getvalue()
        first_frame = decode(data)  # palette mode, exactly what a reader hashes
        return SpecialFile(
            data, "GIF", first_frame.convert("RGB"), (first_frame,), has_face, base, len(frames)
        )
    if kind == "exif_orientation":
        pixels, has_face, base = pictures.pixels(rng, True, 320)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = 6
        # Stored sideways; orientation 6 tells viewers to rotate 90 degrees clockwise.
        data = encode(pixels.rotate(90, expand=True), "JPEG", 88, exif=exif.tobytes())
        decoded = decode(data)
        return SpecialFile(data, "JPEG", decoded, (decoded, ImageOps.exif_transpose(decoded)), has_face, base)
    if kind == "ext_mismatch":
        pixels, has_face, base = pictures.pixels(rng, with_face, 192)
        data = encode(pixels, "PNG")
        decoded = decode(data)
        return SpecialFile(data, "PNG", decoded, (decoded,), has_face, base)
    raise ValueError(kind)
