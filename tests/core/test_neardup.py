"""Geometric verification confirms copies and refuses different pictures; the canonical choice never chains."""

from __future__ import annotations

import io
import random
from datetime import datetime

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from jobs.core.imaging import candidate_distance, load_rgb, probe_hashes
from jobs.core.neardup import Edge, Member, VerifyParams, assign_canonicals, verify_pair
from jobs.testdata.copies import TRANSFORMS, make_copy

MAX_PIXELS = 50_000_000


def _photo(name: str) -> Image.Image:
    pixels = getattr(skdata, name)()
    img = Image.fromarray(pixels).convert("RGB")
    return img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)


def _rgb(img: Image.Image) -> np.ndarray:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return load_rgb(buf.getvalue(), MAX_PIXELS)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return _photo("astronaut")


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_every_copy_transform_is_verified_and_a_candidate(astronaut: Image.Image, transform: str) -> None:
    rng = random.Random(transform)
    copy = make_copy(astronaut, transform, rng)
    original, copied = _rgb(astronaut), load_rgb(copy.data, MAX_PIXELS)
    verdict = verify_pair(original, copied)
    assert verdict.matched, (copy.label, verdict)
    assert verdict.score >= VerifyParams().min_agreement and verdict.inliers >= VerifyParams().min_inliers
    assert verdict.mirrored is (transform == "mirror")
    # ... and the probe hashes make it a candidate in the first place (default radius 12).
    assert candidate_distance(probe_hashes(astronaut), probe_hashes(Image.fromarray(copied))) <= 12, (
        copy.label
    )


@pytest.mark.parametrize("a, b", [("astronaut", "coffee"), ("chelsea", "coffee"), ("astronaut", "camera")])
def test_different_photos_are_not_verified(a: str, b: str) -> None:
    verdict = verify_pair(_rgb(_photo(a)), _rgb(_photo(b)))
    assert not verdict.matched and verdict.score < VerifyParams().min_agreement


def test_two_overlapping_cuts_of_one_photo_are_not_copies(astronaut: Image.Image) -> None:
    """Same pixels where they overlap, but neither contains the other: partial overlap, not a copy."""
    w, h = astronaut.size
    left, right = astronaut.crop((0, 0, int(w * 0.6), h)), astronaut.crop((int(w * 0.4), 0, w, h))
    verdict = verify_pair(_rgb(left), _rgb(right))
    assert not verdict.matched and verdict.reason == "partial_overlap"


def test_a_tiny_or_flat_image_is_refused_not_crashed() -> None:
    flat = np.full((40, 40, 3), 128, dtype=np.uint8)
    verdict = verify_pair(flat, flat.copy())
    assert not verdict.matched and verdict.reason == "too_few_features"


T0, T1 = datetime(2026, 1, 1), datetime(2026, 2, 1)


def test_an_alias_is_a_direct_match_of_its_canonical_never_a_neighbours_neighbour() -> None:
    # A chain a~b~c~d: b (verified against two, and larger than c) becomes canonical of a and c;
    # d was only verified against c, an alias, so it stays its own canonical.
    members = [Member("a", 400, T0), Member("b", 300, T0), Member("c", 200, T0), Member("d", 100, T0)]
    edges = [Edge("a", "b", 0.9), Edge("b", "c", 0.9), Edge("c", "d", 0.9)]
    assert assign_canonicals(members, edges) == {"a": "b", "b": "b", "c": "b", "d": "d"}


def test_the_hub_every_copy_matches_is_the_canonical_not_the_biggest_copy() -> None:
    # The original matches all its copies; an upscaled copy and a framed copy do not match each other.
    members = [
        Member("orig", 250 * 250, T0),
        Member("upscaled", 350 * 350, T0),
        Member("framed", 280 * 280, T0),
    ]
    members += [Member("crop", 175 * 175, T0)]
    edges = [Edge("orig", x, 0.95) for x in ("upscaled", "framed", "crop")] + [Edge("upscaled", "crop", 0.9)]
    assert set(assign_canonicals(members, edges).values()) == {"orig"}


def test_canonical_is_largest_then_earliest_then_id_and_order_free() -> None:
    members = [Member("a", 100, T1), Member("b", 400, T1), Member("c", 400, T0), Member("e", 10, T0)]
    edges = [Edge("a", "c", 0.9), Edge("b", "c", 0.95), Edge("a", "b", 0.99)]
    out = assign_canonicals(members, edges)
    assert out == {"a": "c", "b": "c", "c": "c", "e": "e"}
    assert assign_canonicals(list(reversed(members)), list(reversed(edges))) == out


def test_alias_joins_its_best_scored_canonical() -> None:
    members = [Member("p", 900, T0, True), Member("q", 800, T0, True), Member("x", 10, T0)]
    out = assign_canonicals(members, [Edge("x", "p", 0.81), Edge("q", "x", 0.97)])
    assert out == {"p": "p", "q": "q", "x": "q"}


def test_published_canonical_keeps_its_role_against_a_bigger_newcomer() -> None:
    members = [Member("old", 10, T0, existing_canonical=True), Member("new_big", 10_000, T0)]
    assert assign_canonicals(members, [Edge("new_big", "old", 0.9)]) == {"old": "old", "new_big": "old"}


def test_edges_to_unknown_ids_are_ignored() -> None:
    assert assign_canonicals([Member("a", 1, T0)], [Edge("a", "ghost", 1.0)]) == {"a": "a"}
