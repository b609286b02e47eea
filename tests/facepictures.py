"""Test pictures the generated detector takes for faces: textured scenery with two bright patterned squares.

Shared by the face-link and search tests (imported as a plain module, like ``lakedata``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def picture(seed: int) -> Image.Image:
    """640x480 scenery in 8-px blocks with two 32-px patterned squares (the generated pack's "faces")."""
    rng = np.random.default_rng(seed)
    # Never darker than the generated detector's "padding" level, so nothing blocks a detection.
    img = np.kron(rng.integers(40, 120, (60, 80, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    for x, y in ((200, 180), (440, 300)):
        img[y - 16 : y + 16, x - 16 : x + 16] = np.kron(
            rng.integers(150, 256, (4, 4, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)
        )
    return Image.fromarray(img)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
