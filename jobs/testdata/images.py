"""New sample pictures: crops and face composites of the bundled photos, restyled and encoded."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from jobs.testdata.bases import Base, load_bases
from jobs.testdata.hashes import DISTINCT_MIN_DISTANCE, Hashes, HashRegistry, phash_pair

EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}

Box = tuple[int, int, int, int]


def encode(img: Image.Image, fmt: str, quality: int | None = None, **extra: Any) -> bytes:
    """``img`` as ``fmt`` bytes with the generator's fixed encoder settings."""
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


def decode(data: bytes) -> Image.Image:
    """The pixels a reader gets from ``data`` (first frame, no EXIF rotation)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.copy()


@dataclass(frozen=True)
class Picture:
    """A new encoded picture and what the answer key says about it."""

    data: bytes
    image: Image.Image  # decoded from `data`
    fmt: str
    has_face: bool
    base: str
    quality: int | None
    hashes: Hashes


class PictureMaker:
    """Draws new pictures from the bundled photos; ``registry`` decides what counts as distinct."""

    def __init__(self, registry: HashRegistry) -> None:
        self.registry = registry
        self.face_bases, self.nonface_bases = load_bases()

    def _crop_box(self, rng: random.Random, base: Base) -> tuple[Box, Box | None]:
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

    def _composite_face(self, rng: random.Random, base: Base) -> tuple[Image.Image, Box]:
        """A face patch pasted at a random place and scale onto a crop of a face-free photo."""
        if base.paste_face:
            patch = base.image.convert("RGB")
        else:
            w, h = base.image.size
            fx0, fy0, fx1, fy1 = rng.choice(base.faces)
            # Pad the detector box so chin and hair come along; detectors want some context.
            px, py = (fx1 - fx0) * rng.uniform(0.2, 0.45), (fy1 - fy0) * rng.uniform(0.15, 0.35)
            box = (
                max(0, round(fx0 - px)),
                max(0, round(fy0 - py)),
                min(w, round(fx1 + px)),
                min(h, round(fy1 + py)),
            )
            patch = base.image.crop(box).convert("RGB")
        background = rng.choice(self.nonface_bases)
        cw = rng.randint(160, 300)
        ch = round(cw * rng.uniform(0.75, 1.3))
        bx, by = background.image.size
        sx, sy = rng.randint(0, max(0, bx - cw // 2)), rng.randint(0, max(0, by - ch // 2))
        bg = background.image.resize(
            (cw, ch), Image.Resampling.BILINEAR, box=(sx, sy, min(bx, sx + cw), min(by, sy + ch))
        ).convert("RGB")
        scale = min(cw, ch) * rng.uniform(0.35, 0.65) / max(patch.size)
        pw, ph = max(24, round(patch.width * scale)), max(24, round(patch.height * scale))
        x, y = rng.randint(0, cw - pw), rng.randint(0, ch - ph)
        bg.paste(patch.resize((pw, ph), Image.Resampling.BILINEAR), (x, y))
        return bg, (x, y, x + pw, y + ph)

    @staticmethod
    def _restyle(rng: random.Random, img: Image.Image, face: Box | None) -> Image.Image:
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
        # Coarse grain (4-px cells) over everything but the face: two pictures cut from one photo
        # would otherwise be crops of each other, which the near-duplicate verifier rightly matches.
        grain_cells = (max(1, w // 4), max(1, h // 4))
        grain = Image.frombytes("RGB", grain_cells, rng.randbytes(grain_cells[0] * grain_cells[1] * 3))
        grain_mask = Image.new("L", (w, h), round(255 * 0.45))
        if face:
            grain_mask.paste(0, face)
        out = Image.composite(grain.resize((w, h), Image.Resampling.NEAREST), out, grain_mask)
        draw = ImageDraw.Draw(out)
        shapes = rng.randint(3, 6)
        placed = 0
        for _ in range(shapes * 6):
            if placed == shapes:
                break
            sw, sh = round(w * rng.uniform(0.15, 0.45)), round(h * rng.uniform(0.15, 0.45))
            x0, y0 = rng.randint(-sw // 3, w - sw // 2), rng.randint(-sh // 3, h - sh // 2)
            box = (x0, y0, x0 + sw, y0 + sh)
            if face and not (
                box[2] <= face[0] or box[0] >= face[2] or box[3] <= face[1] or box[1] >= face[3]
            ):
                continue
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            shape = rng.randrange(3)
            if shape == 0:
                draw.rectangle(box, fill=colour)
            elif shape == 1:
                draw.ellipse(box, fill=colour)
            else:
                draw.polygon(
                    [(rng.randint(box[0], box[2]), rng.randint(box[1], box[3])) for _ in range(3)],
                    fill=colour,
                )
            placed += 1
        return out.convert("L") if grey else out

    def pixels(self, rng: random.Random, with_face: bool, max_side: int) -> tuple[Image.Image, bool, str]:
        """(restyled pixels, whether a face is in them, base photo name), longest side <= ``max_side``."""
        base = rng.choice(self.face_bases if with_face else self.nonface_bases)
        crop: Box | None = None
        # Half the face pictures are pasted onto other scenery: crops of one photo alone look too alike.
        if base.paste_face or (base.faces and rng.random() < 0.5):
            img, face = self._composite_face(rng, base)
        else:
            crop, face = self._crop_box(rng, base)
            img = base.image
        cw, ch = (crop[2] - crop[0], crop[3] - crop[1]) if crop else img.size
        scale = rng.randint(min(96, max_side), max_side) / max(cw, ch)
        # Stretched a little, differently per picture: two cuts of one photo are then no similarity
        # transform apart, so the near-duplicate verifier does not take one for a crop of the other.
        stretch = rng.uniform(0.8, 1.0)
        sx, sy = (scale * stretch, scale) if rng.random() < 0.5 else (scale, scale * stretch)
        size = (max(16, round(cw * sx)), max(16, round(ch * sy)))
        if face is not None:
            face = (round(face[0] * sx), round(face[1] * sy), round(face[2] * sx), round(face[3] * sy))
        img = img.resize(size, Image.Resampling.BILINEAR, box=crop, reducing_gap=2.0)
        if img.mode == "L" and rng.random() < 0.6:
            img = img.convert("RGB")
        return self._restyle(rng, img, face), face is not None, base.name

    def fresh(
        self, rng: random.Random, with_face: bool, fmt: str | None = None, *, distinct: bool = False
    ) -> Picture:
        """A new picture, encoded; with ``distinct``, retried until its pHash is far from all registered ones."""
        # At 100k lines a candidate needs ~1.1 tries on average; the cap only bounds a pathological seed.
        for attempt in range(40):
            chosen = fmt or rng.choices(("JPEG", "PNG", "WEBP"), weights=(65, 15, 20))[0]
            max_side = {"JPEG": 256, "PNG": 160, "WEBP": 192}[chosen]
            pixels, has_face, base = self.pixels(rng, with_face, max_side)
            quality = rng.randint(72, 92) if chosen in ("JPEG", "WEBP") else None
            extra: dict[str, Any] = {}
            if chosen == "JPEG" and rng.random() < 0.1:
                extra["progressive"] = True
            data = encode(pixels, chosen, quality, **extra)
            decoded = decode(data)
            hashes = phash_pair(decoded)
            if not distinct or self.registry.min_distance(hashes) >= DISTINCT_MIN_DISTANCE or attempt == 39:
                return Picture(data, decoded, chosen, has_face, base, quality, hashes)
        raise AssertionError("unreachable")
