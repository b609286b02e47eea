"""Near duplicates, pure logic: geometric verification of candidate pairs and the canonical choice.

A candidate comes cheap (``imaging.probe_spaces``: a pHash of one image close to a probe hash of
another); it becomes a near duplicate only when local features (ORB) of the two images agree on one
similarity transform (RANSAC), that transform makes one picture (almost) contain the other, and the
textured pixels it lines up agree. Aligned face photos share their low frequencies, so a pHash alone
merges different people; the pixel agreement does not. An alias is always a verified match of its
canonical itself: no chains.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

METHOD = "orb_ransac_pixels"  # recorded per alias with its score
WORK_SIDE = 256  # verification runs on both pictures scaled to this longest side


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one candidate pair; ``score`` in [0, 1] (pixel agreement)."""

    matched: bool
    score: float
    inliers: int
    mirrored: bool
    scale: float
    rotation_deg: float
    coverage: float  # the share of the smaller picture that lies inside the larger one
    reason: str


@dataclass(frozen=True)
class VerifyParams:
    """Thresholds of the geometric verification (defaults measured on LFW photos, see benchmarks)."""

    min_inliers: int = 20
    max_rotation_deg: float = 12.0
    min_scale: float = 0.2
    max_scale: float = 5.0
    min_contained: float = 0.85  # of the smaller picture, inside the larger
    min_area_ratio: float = 0.3  # smaller / larger picture area, in the larger's pixels
    min_agreement: float = 0.78  # textured pixels that agree after the photometric fit
    pixel_tolerance: float = 0.08  # of the 0-1 grey range


def _grey(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = WORK_SIDE / max(h, w)
    if abs(scale - 1) > 1e-3:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        grey = cv2.resize(grey, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=interp)
    return grey


_ORB = None


def _features(grey: np.ndarray) -> tuple[list, np.ndarray | None]:
    global _ORB
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=1000, edgeThreshold=15, patchSize=15, fastThreshold=7)
    return _ORB.detectAndCompute(grey, None)


def _no(reason: str, inliers: int = 0, mirrored: bool = False) -> Verdict:
    return Verdict(False, 0.0, inliers, mirrored, 0.0, 0.0, 0.0, reason)


def _agreement(a: np.ndarray, b: np.ndarray, m: np.ndarray, tolerance: float) -> tuple[float, float, float]:
    """(agreeing share, contained share of the smaller, area ratio) for ``a`` warped onto ``b`` by ``m``."""
    hb, wb = b.shape
    ha, wa = a.shape
    warped = cv2.warpAffine(a, m, (wb, hb), flags=cv2.INTER_LINEAR, borderValue=0)
    inside = cv2.warpAffine(np.ones_like(a), m, (wb, hb), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    overlap = int(inside.sum())
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    area_a = ha * wa * scale * scale  # a's area in b's pixels
    area_b = hb * wb
    contained = overlap / max(1.0, min(area_a, area_b))
    area_ratio = min(area_a, area_b) / max(area_a, area_b)
    if overlap < 64:
        return 0.0, contained, area_ratio
    # Blur both a little: re-encoding and resampling noise is not disagreement.
    wa_, b_ = cv2.GaussianBlur(warped, (BLUR, BLUR), 0), cv2.GaussianBlur(b, (BLUR, BLUR), 0)
    x = wa_.astype(np.float64)[inside] / 255.0
    y = b_.astype(np.float64)[inside] / 255.0
    # Only pixels textured in both count: flat areas (a studio backdrop) agree between any two photos,
    # and a caption band or a frame is flat in one of the two.
    grad = np.minimum(_gradient(wa_), _gradient(b_))[inside]
    textured = grad > TEXTURE_MIN
    if textured.sum() < 64:
        return 0.0, contained, area_ratio
    x, y = x[textured], y[textured]
    # Gain and offset fitted twice, the second time on the pixels the first fit explains: brightness,
    # contrast and greyscale edits are not disagreement, and a caption band does not skew the fit.
    keep = np.ones_like(x, dtype=bool)
    for _ in range(2):
        xs, ys = x[keep], y[keep]
        var = xs.var()
        gain = ((xs - xs.mean()) * (ys - ys.mean())).mean() / var if var > 1e-9 else 0.0
        gain = min(max(gain, 0.5), 2.0)
        offset = ys.mean() - gain * xs.mean()
        residual = np.abs(gain * x + offset - y)
        keep = residual <= 2 * tolerance
        if keep.sum() < 64:
            break
    agree = float((residual <= tolerance).mean())
    return agree, contained, area_ratio


BLUR = 3  # Gaussian kernel (pixels at WORK_SIDE) applied to both before comparing
TEXTURE_MIN = 0.04  # grey-level gradient (0-1 range per pixel) above which a pixel carries texture


def _gradient(grey: np.ndarray) -> np.ndarray:
    g = grey.astype(np.float32) / 255.0
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return np.sqrt(gx * gx + gy * gy)


def _match_one(
    ka: list,
    da: np.ndarray,
    ga: np.ndarray,
    kb: list,
    db: np.ndarray,
    gb: np.ndarray,
    p: VerifyParams,
    mirrored: bool,
) -> Verdict:
    if da is None or db is None or len(ka) < p.min_inliers or len(kb) < p.min_inliers:
        return _no("too_few_features", mirrored=mirrored)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < p.min_inliers:
        return _no("too_few_matches", len(good), mirrored)
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    m, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=2000, confidence=0.995
    )
    inliers = int(mask.sum()) if mask is not None else 0
    if m is None or inliers < p.min_inliers:
        return _no("no_consistent_transform", inliers, mirrored)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    rotation = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    if not (p.min_scale <= scale <= p.max_scale) or abs(rotation) > p.max_rotation_deg:
        return Verdict(False, 0.0, inliers, mirrored, scale, rotation, 0.0, "implausible_transform")
    agree, contained, area_ratio = _agreement(ga, gb, m, p.pixel_tolerance)
    if contained < p.min_contained or area_ratio < p.min_area_ratio:
        return Verdict(False, agree, inliers, mirrored, scale, rotation, contained, "partial_overlap")
    if agree < p.min_agreement:
        return Verdict(False, agree, inliers, mirrored, scale, rotation, contained, "pixels_disagree")
    return Verdict(True, agree, inliers, mirrored, scale, rotation, contained, "verified")


def verify_pair(a_rgb: np.ndarray, b_rgb: np.ndarray, params: VerifyParams | None = None) -> Verdict:
    """Whether ``b`` is a copy of ``a`` (or the other way round): re-encoded, resized, cropped, framed,
    tilted, recoloured or mirrored. Both are HxWx3 uint8 RGB (as ``imaging.load_rgb`` returns)."""
    p = params or VerifyParams()
    ga, gb = _grey(a_rgb), _grey(b_rgb)
    ka, da = _features(ga)
    kb, db = _features(gb)
    direct = _match_one(ka, da, ga, kb, db, gb, p, mirrored=False)
    if direct.matched:
        return direct
    gm = np.ascontiguousarray(ga[:, ::-1])
    km, dm = _features(gm)
    flipped = _match_one(km, dm, gm, kb, db, gb, p, mirrored=True)
    if flipped.matched:
        return flipped
    return max(direct, flipped, key=lambda v: (v.inliers, v.score))


@dataclass(frozen=True)
class Member:
    """What the canonical choice looks at for one image."""

    image_id: str
    area: int
    first_crawled_at: object  # anything orderable (datetime)
    existing_canonical: bool = False


@dataclass(frozen=True)
class Edge:
    """A verified near-duplicate pair with its verification score."""

    a: str
    b: str
    score: float


def rank_key(m: Member) -> tuple:
    """Best first: an already-published canonical, then largest resolution, then earliest crawl, then id."""
    return (not m.existing_canonical, -m.area, m.first_crawled_at, m.image_id)


def assign_canonicals(members: Iterable[Member], edges: Iterable[Edge]) -> dict[str, str]:
    """Map each image id to its canonical: itself, or a canonical it was verified against directly.

    Published canonicals keep their role and take their verified neighbours first (best score
    wins). Then, among the images left, the one verified against the most others left becomes a
    canonical (ties: ``rank_key`` — larger, earlier, smaller id) and takes those neighbours as aliases;
    repeat. A hub is what every copy of a photo was verified against (the original, not its
    upscaled or framed copy), so this groups most copies without ever chaining: an alias always
    lies one verified match from its canonical. Deterministic for a given input.
    """
    by_id = {m.image_id: m for m in members}
    neighbours: dict[str, dict[str, float]] = {i: {} for i in by_id}
    for e in edges:
        if e.a in by_id and e.b in by_id and e.a != e.b:
            neighbours[e.a][e.b] = max(e.score, neighbours[e.a].get(e.b, 0.0))
            neighbours[e.b][e.a] = max(e.score, neighbours[e.b].get(e.a, 0.0))
    out: dict[str, str] = {}
    published = [m.image_id for m in sorted(by_id.values(), key=rank_key) if m.existing_canonical]
    for p in published:
        out[p] = p
    for image_id in sorted(by_id):
        if image_id in out:
            continue
        choices = [(score, n) for n, score in neighbours[image_id].items() if n in published]
        if choices:
            out[image_id] = min(choices, key=lambda c: (-c[0], rank_key(by_id[c[1]])))[1]

    def open_degree(image_id: str) -> int:
        return sum(1 for n in neighbours[image_id] if n not in out)

    heap = [(-open_degree(i), rank_key(by_id[i]), i) for i in by_id if i not in out]
    heapq.heapify(heap)
    while heap:
        neg_degree, _, image_id = heapq.heappop(heap)
        if image_id in out:
            continue
        degree = open_degree(image_id)
        if degree != -neg_degree:  # stale: some neighbours were taken since it was pushed
            heapq.heappush(heap, (-degree, rank_key(by_id[image_id]), image_id))
            continue
        out[image_id] = image_id
        for n in sorted(neighbours[image_id]):
            if n not in out:
                out[n] = image_id
    return out
