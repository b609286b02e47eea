"""The real photos sample pictures start from: insightface's and scikit-image's bundled images."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class Base:
    """One bundled photo, shrunk, with where its faces are."""

    name: str
    image: Image.Image  # RGB or L, already shrunk to keep crops cheap
    faces: tuple[tuple[int, int, int, int], ...]  # boxes in `image` coordinates
    crop_area: tuple[float, float]
    paste_face: bool = False  # a tight face crop: pasted onto a background instead of cropped


# Face boxes found once with the SCRFD-0.5GF detector on the original files and rounded
# (x0, y0, x1, y1 in original pixels); approximate by design.
FACE_BASES: dict[str, tuple[str, tuple[tuple[int, int, int, int], ...], tuple[float, float], bool]] = {
    "t1.jpg": (
        "insightface",
        (
            (745, 342, 847, 480),
            (464, 266, 573, 415),
            (56, 261, 169, 398),
            (906, 59, 1011, 206),
            (1130, 273, 1227, 401),
            (270, 145, 372, 270),
        ),
        (0.12, 0.45),
        False,
    ),
    "astronaut.png": ("skimage", ((180, 60, 272, 180),), (0.4, 0.8), False),
    "camera.png": ("skimage", ((199, 116, 258, 200),), (0.4, 0.8), False),
    "Tom_Hanks_54745.png": ("insightface", ((4, 0, 86, 111),), (1.0, 1.0), True),
}
# No human face in any of these (chelsea is a cat; the insightface mask_*.jpg are flat
# surgical-mask textures that insightface uses to render masks, not people).
NONFACE_BASES: tuple[tuple[str, str], ...] = (
    ("skimage", "chelsea.png"),
    ("skimage", "coffee.png"),
    ("skimage", "rocket.jpg"),
    ("skimage", "horse.png"),
    ("skimage", "coins.png"),
    ("skimage", "brick.png"),
    ("skimage", "motorcycle_left.png"),
    ("skimage", "hubble_deep_field.jpg"),
    ("skimage", "moon.png"),
    ("skimage", "grass.png"),
    ("skimage", "gravel.png"),
    ("skimage", "ihc.png"),
    ("skimage", "retina.jpg"),
    ("skimage", "color.png"),
    ("skimage", "page.png"),
    ("insightface", "mask_blue.jpg"),
    ("insightface", "mask_white.jpg"),
    ("insightface", "mask_black.jpg"),
)
BASE_MAX_SIDE = 640


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


def _shrink(img: Image.Image) -> tuple[Image.Image, float]:
    scale = min(1.0, BASE_MAX_SIDE / max(img.size))
    if scale < 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return img, scale


@cache
def load_bases() -> tuple[tuple[Base, ...], tuple[Base, ...]]:
    """(face bases, non-face bases), read once per process."""
    faces = []
    for name, (package, boxes, area, paste) in FACE_BASES.items():
        img, scale = _shrink(_open_base(package, name))
        scaled = tuple(tuple(round(v * scale) for v in box) for box in boxes)
        faces.append(Base(name, img, scaled, area, paste))  # type: ignore[arg-type]
    nonfaces = []
    for package, name in NONFACE_BASES:
        img, _ = _shrink(_open_base(package, name))
        nonfaces.append(Base(name, img, (), (0.4, 0.8)))
    return tuple(faces), tuple(nonfaces)
