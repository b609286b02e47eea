"""Re-posts of a photo that pixel near-duplicate matching cannot pair (test tooling): the face links them.

``jobs.testdata.copies`` makes the copies ingest's near-duplicate matching is meant to find (re-encodes,
crops, borders, mirrors). A re-post can also lie beyond them: the photo cut off-centre and framed, or
pasted into a page-sized canvas. No probe hash of the original comes near such a copy's pHash, so ingest
keeps it apart, yet it holds the same face: what an erasure's face expansion has to reach. Not on the
product path.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

from jobs.testdata.copies import TRANSFORMS
from jobs.testdata.lfw import FORMAT_EXT, LfwDrop


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def offcut_frame(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    """20-25 % cut off the left and 8-12 % off the top, then a light frame of 6-10 % of the width."""
    w, h = img.size
    left, top = rng.uniform(0.20, 0.25), rng.uniform(0.08, 0.12)
    px = max(2, round(w * rng.uniform(0.06, 0.10)))
    colour = rng.choice(((255, 255, 255), (235, 235, 235), (250, 245, 230)))
    cut = img.convert("RGB").crop((round(w * left), round(h * top), w, h))
    label = f"offcut=left {left:.3f},top {top:.3f};frame={px}px"
    return _jpeg(ImageOps.expand(cut, border=px, fill=colour)), "JPEG", label


def on_canvas(img: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    """The photo, unscaled, off-centre on a light canvas 2x as wide and 1.5x as tall (a page's screenshot)."""
    w, h = img.size
    canvas = Image.new("RGB", (2 * w, round(1.5 * h)), rng.choice(((235, 235, 235), (245, 240, 230))))
    x, y = round(w * rng.uniform(0.7, 0.95)), round(h * rng.uniform(0.2, 0.4))
    canvas.paste(img.convert("RGB"), (x, y))
    return _jpeg(canvas), "JPEG", f"canvas={canvas.width}x{canvas.height} at {x},{y}"


REPOSTS: dict[str, Callable[[Image.Image, random.Random], tuple[bytes, str, str]]] = {
    "offcut_frame": offcut_frame,
    "canvas": on_canvas,
}


def write_subject_drop(
    out_dir: Path, subject: Path, others: list[Path], copies: tuple[str, ...], seed: int = 0
) -> LfwDrop:
    """A drop of the photo ``subject``, one copy of it per name in ``copies`` and the photos ``others``.

    A name is a ``copies.TRANSFORMS`` or a ``REPOSTS`` transform. Every line has a URL of its own (on
    example.com) and the lines come in a seeded shuffled order; ``files`` says what each file is, as
    ``jobs.testdata.lfw.write_lfw_drop`` does (``copies.json`` too).
    """
    rng = random.Random(seed)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[str, str | None]] = {}
    for i, photo in enumerate([subject, *others]):
        rel = f"images/{i:03d}.jpg"
        (out_dir / rel).write_bytes(photo.read_bytes())
        files[rel] = (photo.stem, None)
    with Image.open(subject) as img:
        img.load()
        for name in copies:
            data, fmt, _ = {**TRANSFORMS, **REPOSTS}[name](img, rng)
            rel = f"images/000-{name}.{FORMAT_EXT[fmt]}"
            (out_dir / rel).write_bytes(data)
            files[rel] = (subject.stem, name)
    order = list(files)
    rng.shuffle(order)
    with (out_dir / "manifest.jsonl").open("w") as manifest:
        for n, rel in enumerate(order):
            line = {
                "image_path": rel,
                "source_url": f"https://site{n}.example.com/photos/{n:04d}.jpg",
                "crawled_at": f"2024-07-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
            }
            manifest.write(json.dumps(line) + "\n")
    (out_dir / "copies.json").write_text(json.dumps(files, indent=0))
    return LfwDrop(out_dir, files)
