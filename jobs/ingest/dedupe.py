"""Near-duplicate dedupe: exact multi-index banding of 64-bit pHashes in Spark, canonical choice in plain Python.

Why banding is exact: split the 64 bits into ``m`` bands. Two hashes within Hamming distance ``k``
differ in at most ``floor(k / m)`` bits of some band (pigeonhole). Every item emits, per band, its
band value and all its 1-bit neighbours (radius ``r = 1``); two band values within distance ``2r``
share such a key (a midpoint). So with ``floor(k / m) <= 2`` every pair within ``k`` meets on some
key, and ``m = ceil((k + 1) / 3)`` is the fewest (widest, most selective) bands that guarantee it.
Candidates are then checked with the exact distance: recall is 1 by construction, precision 1 by
the final filter. No all-pairs join.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

HASH_BITS = 64
NEIGHBOUR_RADIUS = 1


@dataclass(frozen=True)
class BandPlan:
    """How the 64 bits are cut: ``(offset, width)`` per band, low bits first."""

    threshold: int
    bands: tuple[tuple[int, int], ...]

    @property
    def keys_per_hash(self) -> int:
        """Keys one hash emits: per band its value and its 1-bit neighbours."""
        return sum(1 + width for _, width in self.bands)


def band_plan(threshold: int, bits: int = HASH_BITS) -> BandPlan:
    """The fewest bands that make radius-1 midpoint banding exact for ``threshold``."""
    if not 0 <= threshold < bits:
        raise ValueError(f"threshold must be in [0, {bits}), got {threshold}")
    m = max(1, -(-(threshold + 1) // (2 * NEIGHBOUR_RADIUS + 1)))
    base, extra = divmod(bits, m)
    bands, offset = [], 0
    for i in range(m):
        width = base + (1 if i < extra else 0)
        bands.append((offset, width))
        offset += width
    return BandPlan(threshold, tuple(bands))


def phash_to_long(hex_hash: str) -> int:
    """16 hex chars as a signed 64-bit integer (Spark's LongType)."""
    value = int(hex_hash, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def phash_long_col(hex_col: Column) -> Column:
    """Spark expression: 16 hex chars -> signed 64-bit long (two's complement, like phash_to_long)."""
    # conv() returns the unsigned decimal string; casting values >= 2^63 to long would overflow,
    # so split into two 32-bit halves and recombine with a shift.
    high = F.conv(F.substring(hex_col, 1, 8), 16, 10).cast("long")
    low = F.conv(F.substring(hex_col, 9, 8), 16, 10).cast("long")
    return F.shiftleft(high, 32).bitwiseOR(low)


def band_keys(df: DataFrame, plan: BandPlan, hash_col: str = "phash_long") -> DataFrame:
    """One row per (item, band, key): the band's value and each of its 1-bit neighbours."""
    rows = []
    for band, (offset, width) in enumerate(plan.bands):
        mask = (1 << width) - 1
        value = F.shiftrightunsigned(F.col(hash_col), offset).bitwiseAND(F.lit(mask))
        flips = F.explode(F.sequence(F.lit(-1), F.lit(width - 1))).alias("flip")
        rows.append(
            df.select("*", F.lit(band).alias("band"), value.alias("band_value"), flips).select(
                "*",
                F.when(F.col("flip") < 0, F.col("band_value"))
                .otherwise(F.col("band_value").bitwiseXOR(F.expr("shiftleft(CAST(1 AS BIGINT), flip)")))
                .alias("band_key"),
            )
        )
    out = rows[0]
    for more in rows[1:]:
        out = out.unionByName(more)
    return out.drop("band_value", "flip")


def hamming_col(a: Column, b: Column) -> Column:
    return F.bit_count(a.bitwiseXOR(b))


def near_duplicate_pairs(
    left: DataFrame, right: DataFrame, threshold: int, id_col: str = "image_id", hash_col: str = "phash_long"
) -> DataFrame:
    """Every (left id, right id, distance) with Hamming distance <= threshold, ids differing.

    ``left`` and ``right`` need ``id_col`` and ``hash_col``; pass the same frame twice for a
    self-join (both orders are then returned). Exact: see the module docstring.
    """
    plan = band_plan(threshold)
    lk = band_keys(left.select(F.col(id_col).alias("a_id"), F.col(hash_col).alias("a_hash")), plan, "a_hash")
    rk = band_keys(right.select(F.col(id_col).alias("b_id"), F.col(hash_col).alias("b_hash")), plan, "b_hash")
    candidates = lk.join(rk, ["band", "band_key"]).where(F.col("a_id") != F.col("b_id"))
    return (
        candidates.select("a_id", "b_id", hamming_col(F.col("a_hash"), F.col("b_hash")).alias("distance"))
        .where(F.col("distance") <= threshold)
        .dropDuplicates(["a_id", "b_id"])
    )


@dataclass(frozen=True)
class Member:
    """What the canonical choice looks at for one image."""

    image_id: str
    area: int
    first_crawled_at: object  # anything orderable (datetime)
    existing_canonical: bool = False


def rank_key(m: Member) -> tuple:
    """Best first: an already-published canonical, then largest resolution, then earliest crawl, then id."""
    return (not m.existing_canonical, -m.area, m.first_crawled_at, m.image_id)


def assign_canonicals(members: Iterable[Member], edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Map each image id to its cluster's canonical id (connected components, deterministic).

    A published canonical keeps its role so faces and indexes built on it stay valid; when a new
    image links two published clusters, each keeps its canonical and the new image joins the
    best-ranked one.
    """
    by_id = {m.image_id: m for m in members}
    parent = {i: i for i in by_id}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    adjacency: dict[str, set[str]] = {i: set() for i in by_id}
    for a, b in edges:
        if a in by_id and b in by_id and a != b:
            adjacency[a].add(b)
            adjacency[b].add(a)
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    clusters: dict[str, list[Member]] = {}
    for i, m in by_id.items():
        clusters.setdefault(find(i), []).append(m)
    out: dict[str, str] = {}
    for cluster in clusters.values():
        published = sorted((m for m in cluster if m.existing_canonical), key=rank_key)
        best = min(cluster, key=rank_key)
        for m in cluster:
            if m.existing_canonical:
                out[m.image_id] = m.image_id
            elif len(published) > 1:
                out[m.image_id] = _nearest_published(
                    m.image_id, adjacency, {p.image_id for p in published}, published
                )
            else:
                out[m.image_id] = best.image_id
    return out


def _nearest_published(
    start: str, adjacency: dict[str, set[str]], published: set[str], ranked: Sequence[Member]
) -> str:
    """Breadth-first: the published canonicals closest in hops; ties go to the best ranked."""
    seen, frontier = {start}, [start]
    while frontier:
        hits = {n for f in frontier for n in adjacency[f] if n in published}
        if hits:
            return next(m.image_id for m in ranked if m.image_id in hits)
        frontier = [n for f in frontier for n in adjacency[f] if n not in seen]
        seen.update(frontier)
    return ranked[0].image_id
