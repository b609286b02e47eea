"""Near-duplicate banding is exact (checked against brute force), and canonical choice is deterministic."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.dedupe import (
    Member,
    assign_canonicals,
    band_plan,
    near_duplicate_pairs,
    phash_long_col,
    phash_to_long,
)


@pytest.mark.parametrize("k", range(0, 20))
def test_band_plan_guarantees_exactness(k: int) -> None:
    plan = band_plan(k)
    widths = [w for _, w in plan.bands]
    assert sum(widths) == 64 and max(widths) - min(widths) <= 1
    assert k // len(plan.bands) <= 2  # each pair within k differs in <= 2 bits of some band
    assert [o for o, _ in plan.bands] == [sum(widths[:i]) for i in range(len(widths))]
    if len(plan.bands) > 1:  # fewest bands: one fewer would not be exact
        assert k // (len(plan.bands) - 1) > 2


def test_band_plan_rejects_bad_thresholds() -> None:
    with pytest.raises(ValueError):
        band_plan(64)
    with pytest.raises(ValueError):
        band_plan(-1)


def test_phash_to_long_round_trips_the_sign_bit() -> None:
    assert phash_to_long("0000000000000001") == 1
    assert phash_to_long("ffffffffffffffff") == -1
    assert phash_to_long("8000000000000000") == -(1 << 63)


def _clustered_hashes(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        base = rng.getrandbits(64)
        out.append(f"{base:016x}")
        for _ in range(rng.randint(0, 3)):  # near duplicates: flip 1..12 bits
            flipped = base
            for bit in rng.sample(range(64), rng.randint(1, 12)):
                flipped ^= 1 << bit
            out.append(f"{flipped:016x}")
    return out[:n]


@pytest.mark.parametrize("threshold", [3, 8, 10])
def test_banding_join_equals_brute_force(spark: SparkSession, threshold: int) -> None:
    hashes = _clustered_hashes(400, seed=threshold)
    ids = [f"i{i:04d}" for i in range(len(hashes))]
    df = spark.createDataFrame(list(zip(ids, hashes, strict=True)), "image_id string, phash string")
    df = df.withColumn("phash_long", phash_long_col(F.col("phash")))
    assert [r["phash_long"] for r in df.collect()] == [phash_to_long(h) for h in hashes]

    got = {(r["a_id"], r["b_id"], r["distance"]) for r in near_duplicate_pairs(df, df, threshold).collect()}
    want = set()
    for i, a in enumerate(hashes):
        for j, b in enumerate(hashes):
            d = (int(a, 16) ^ int(b, 16)).bit_count()
            if i != j and d <= threshold:
                want.add((ids[i], ids[j], d))
    assert want, "the data must contain near duplicates"
    assert got == want


def test_canonical_is_largest_then_earliest_then_id() -> None:
    t0, t1 = datetime(2026, 1, 1), datetime(2026, 2, 1)
    members = [
        Member("a", 100, t1),
        Member("b", 400, t1),
        Member("c", 400, t0),
        Member("d", 50, t0),
        Member("e", 10, t0),
    ]
    out = assign_canonicals(members, [("a", "b"), ("b", "c"), ("d", "a")])
    assert out == {"a": "c", "b": "c", "c": "c", "d": "c", "e": "e"}
    # Input order does not matter.
    assert assign_canonicals(list(reversed(members)), [("c", "b"), ("a", "d"), ("b", "a")]) == out


def test_published_canonical_keeps_its_role() -> None:
    t0 = datetime(2026, 1, 1)
    members = [Member("old", 10, t0, existing_canonical=True), Member("new_big", 10_000, t0)]
    assert assign_canonicals(members, [("new_big", "old")]) == {"old": "old", "new_big": "old"}


def test_bridge_between_two_published_clusters_joins_the_nearest() -> None:
    t0 = datetime(2026, 1, 1)
    members = [Member("p1", 10, t0, True), Member("p2", 99, t0, True), Member("x", 5, t0), Member("y", 5, t0)]
    out = assign_canonicals(members, [("x", "p1"), ("x", "y"), ("y", "p2")])
    assert out["p1"] == "p1" and out["p2"] == "p2"
    assert out["x"] == "p1" and out["y"] == "p2"
