"""A crawl drop of real face photos (``../shared/data/lfw-dev``) and transformed copies of some of them.

Test and benchmark tooling: the photos are read from outside the repository and never copied into
it. The drop's ``copies.json`` says which file is a copy of which photo, by which transform, so
precision (different photos never merge) and recall per transform can be checked after ingest.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from jobs.testdata.copies import TRANSFORMS, make_copy

LFW_DIR = Path(
    os.environ.get("FACELAKE_LFW_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "lfw-dev")
)

# Pairs of lfw-dev files that are the same photograph filed twice (checked by eye: identical pixels
# up to LFW's own alignment). Merging them is right; any other merge is a precision failure.
KNOWN_SAME_PHOTO: frozenset[frozenset[str]] = frozenset(
    frozenset(p)
    for p in (
        ("Carlos_Beltran_0001", "Raul_Ibanez_0001"),
        ("Gabrielle_Rose_0001", "Martha_Bowen_0002"),
        ("Andrew_Caldecott_0001", "Andrew_Gilligan_0001"),
        ("Leslie_Ann_Woodward_0001", "Leslie_Ann_Woodward_0002"),
    )
)

FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class LfwDrop:
    """Where the drop is, and what each of its files is (photo name, transform or None for the photo)."""

    path: Path
    files: dict[str, tuple[str, str | None]]  # image_path -> (photo, transform)


def lfw_photos(root: Path = LFW_DIR) -> list[Path]:
    """Every lfw-dev photo, sorted (empty when the folder is absent)."""
    return sorted((root / "images").glob("*/*.jpg"))


def write_lfw_drop(
    out_dir: Path,
    photos: list[Path],
    copied: int,
    transforms: tuple[str, ...] = tuple(TRANSFORMS),
    seed: int = 0,
) -> LfwDrop:
    """Write ``photos`` plus, for the first ``copied`` of them, one copy per transform, as a drop.

    Lines come in a seeded shuffled order so copies are not next to their photo; every line has a
    distinct fake URL (on example.com) and crawl time.
    """
    rng = random.Random(seed)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[str, str | None]] = {}
    for i, photo in enumerate(photos):
        name = photo.stem
        rel = f"images/{i:05d}.jpg"
        (out_dir / rel).write_bytes(photo.read_bytes())
        files[rel] = (name, None)
        if i < copied:
            with Image.open(photo) as img:
                img.load()
                for t in transforms:
                    copy = make_copy(img, t, rng)
                    rel_copy = f"images/{i:05d}-{t}.{FORMAT_EXT[copy.fmt]}"
                    (out_dir / rel_copy).write_bytes(copy.data)
                    files[rel_copy] = (name, t)
    order = list(files)
    rng.shuffle(order)
    with (out_dir / "manifest.jsonl").open("w") as manifest:
        for n, rel in enumerate(order):
            line = {
                "image_path": rel,
                "source_url": f"https://img.example.com/{n:06d}.jpg",
                "crawled_at": f"2024-06-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
            }
            manifest.write(json.dumps(line) + "\n")
    (out_dir / "copies.json").write_text(json.dumps(files, indent=0))
    return LfwDrop(out_dir, files)


@dataclass(frozen=True)
class Outcome:
    """Precision and recall of an ingest over an ``LfwDrop``."""

    wrong_merges: list[tuple[str, str]]  # (photo of the alias, photo of its canonical), different photos
    known_same_merges: int
    found: dict[str, int]  # transform -> copies that share their photo's canonical
    total: dict[str, int]

    def recall(self, transform: str) -> float:
        return self.found[transform] / self.total[transform] if self.total[transform] else 1.0


def score(drop: LfwDrop, canonical_of_path: dict[str, str]) -> Outcome:
    """Compare the ingest's clusters (``image_path -> canonical image id``) with what the files are."""
    photo_canonical: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    for rel, (photo, transform) in drop.files.items():
        canonical = canonical_of_path[rel]
        members.setdefault(canonical, set()).add(photo)
        if transform is None:
            photo_canonical[photo] = canonical
    wrong, known = [], 0
    for photos in members.values():
        if len(photos) > 1:
            ordered = sorted(photos)
            for a in ordered:
                for b in ordered:
                    if a < b:
                        if frozenset((a, b)) in KNOWN_SAME_PHOTO:
                            known += 1
                        else:
                            wrong.append((a, b))
    found = dict.fromkeys(TRANSFORMS, 0)
    total = dict.fromkeys(TRANSFORMS, 0)
    for rel, (photo, transform) in drop.files.items():
        if transform is not None:
            total[transform] += 1
            found[transform] += canonical_of_path[rel] == photo_canonical[photo]
    return Outcome(wrong, known, found, total)
