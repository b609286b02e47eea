"""Near-duplicate candidate joins are exact: banding and the probe-space join checked against brute force."""

from __future__ import annotations

import random

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.imaging import Probes, candidate_distance, hamming
from jobs.ingest.dedupe import (
    band_plan,
    candidate_pairs,
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


def _probes(rng: random.Random, base: int | None = None) -> list[str]:
    """A phash and 13 probe hashes; with ``base``, each is ``base`` with a few bits flipped."""
    out = []
    for _ in range(14):
        if base is None:
            out.append(f"{rng.getrandbits(64):016x}")
        else:
            value = base
            for bit in rng.sample(range(64), rng.randint(0, 7)):
                value ^= 1 << bit
            out.append(f"{value:016x}")
    return out


def test_candidate_pairs_equal_the_pure_rule(spark: SparkSession) -> None:
    """The Spark probe join finds exactly the pairs ``imaging.candidate_distance`` puts within the radius."""
    rng = random.Random(11)
    rows = []
    for i in range(160):
        # Every fourth image shares hashes with a random earlier one, in a random probe slot.
        base = int(rows[rng.randrange(len(rows))][1], 16) if rows and i % 4 == 0 else None
        hashes = _probes(rng, base)
        rows.append((f"i{i:03d}", hashes[0], hashes[1:]))
    rows.append(("legacy", rows[5][1], None))  # written before probes existed: full hash only
    df = spark.createDataFrame(rows, "image_id string, phash string, probe_hashes array<string>")
    radius = 9
    got = {(r["a_id"], r["b_id"], r["distance"]) for r in candidate_pairs(df, df, radius).collect()}

    def probes(row: tuple) -> Probes | None:
        tail = row[2]
        return (
            Probes(row[1], tail[0], tuple(tail[1:5]), tuple(tail[5:9]), tuple(tail[9:13])) if tail else None
        )

    want = set()
    for a in rows:
        for b in rows:
            if a[0] == b[0]:
                continue
            pa, pb = probes(a), probes(b)
            if pa and pb:
                d = candidate_distance(pa, pb)
            else:  # a legacy row only has its full hash, as a key
                full = pa or pb
                other = b[1] if pa else a[1]
                d = min(hamming(h, other) for h in full.all()) if full else hamming(a[1], b[1])
            if d <= radius:
                want.add((a[0], b[0], d))
    assert len(want) > 40, "the data must contain candidates"
    assert any("legacy" in (a, b) for a, b, _ in want)
    assert got == want
