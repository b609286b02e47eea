"""Variants of jobs.ingest.dedupe.near_duplicate_pairs, measured side by side (``neardup --impl hinted|proposed``).

``hinted`` is jobs.ingest.dedupe's code with one join hint (the minimal fix). ``proposed``: same exact banding (jobs.ingest.dedupe.band_plan, radius-1 midpoints), four changes:

1. every (band, key, flip) of a hash comes from one ``inline`` of one array (one scan, no union of
   one scan per band);
2. a self-join (``left is right``) builds the key frame once and joins it with itself under two
   DataFrame aliases, so Spark reuses the shuffle (``ReusedExchange``) instead of exploding and
   shuffling the same 67 keys per hash twice;
3. the join carries a ``merge`` hint: the planner sizes the exploded side from the input files (67x
   too small) and otherwise broadcasts it, which runs the driver out of memory from ~100k hashes;
4. each pair is emitted once, with no final ``dropDuplicates`` shuffle: a match is kept only for the
   lowest band in which the two hashes are within 2 bits, and within a band only for one (flip_a,
   flip_b) combination (value/value for equal band values, value/neighbour at distance 1, the
   lower/higher flip at distance 2).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.ingest.dedupe import BandPlan, band_plan, hamming_col
from jobs.ingest.dedupe import band_keys as jobs_band_keys

JOIN_HINT = "merge"
"""Join strategy on the key join: "merge" (sort-merge, spills), "shuffle_hash" (no sort, a hash map per task) or
"broadcast_left" (the left keys broadcast, the right side streamed without a shuffle: a small batch vs a big table)."""


def _band_value(hash_col: Column, offset: int, width: int) -> Column:
    return F.shiftrightunsigned(hash_col, offset).bitwiseAND(F.lit((1 << width) - 1))


def band_keys(df: DataFrame, plan: BandPlan, id_col: str, hash_col: str) -> DataFrame:
    """(id, hash, band, band_key, flip): per band the band value (flip -1) and its 1-bit neighbours."""
    entries = []
    for band, (offset, width) in enumerate(plan.bands):
        value = _band_value(F.col(hash_col), offset, width)
        entries.append(F.struct(F.lit(band).alias("band"), value.alias("band_key"), F.lit(-1).alias("flip")))
        for flip in range(width):
            entries.append(
                F.struct(
                    F.lit(band).alias("band"),
                    value.bitwiseXOR(F.lit(1 << flip)).alias("band_key"),
                    F.lit(flip).alias("flip"),
                )
            )
    return df.select(F.col(id_col).alias("id"), F.col(hash_col).alias("hash"), F.inline(F.array(*entries)))


def _first_band_condition(plan: BandPlan, xor: Column, band: Column) -> Column:
    """True when no band below ``band`` has the two hashes within 2 bits (so only the lowest band keeps the pair)."""
    cond = F.lit(True)
    for b, (offset, width) in enumerate(plan.bands):
        earlier_close = F.bit_count(_band_value(xor, offset, width)) <= 2
        cond = F.when(band > F.lit(b), cond & ~earlier_close).otherwise(cond)
    return cond


def _candidates(
    left: DataFrame, right: DataFrame, plan: BandPlan, id_col: str, hash_col: str, hint: str
) -> DataFrame:
    """Key matches with different ids, one (flip_a, flip_b) combination per pair and band."""
    lk = band_keys(left, plan, id_col, hash_col)
    rk = lk if right is left else band_keys(right, plan, id_col, hash_col)
    if (
        hint == "broadcast_left"
    ):  # a small new batch against a large table: ship the batch's keys, stream the table
        lk, rk = lk.hint("broadcast"), rk
    else:
        rk = rk.hint(hint)
    joined = lk.alias("l").join(
        rk.alias("r"), (F.col("l.band") == F.col("r.band")) & (F.col("l.band_key") == F.col("r.band_key"))
    )
    one_combination = (F.col("l.flip") < F.col("r.flip")) | (
        (F.col("l.flip") == -1) & (F.col("r.flip") == -1)
    )
    return joined.where((F.col("l.id") != F.col("r.id")) & one_combination)


def near_duplicate_pairs(
    left: DataFrame,
    right: DataFrame,
    threshold: int,
    id_col: str = "image_id",
    hash_col: str = "phash_long",
    hint: str = JOIN_HINT,
) -> DataFrame:
    """Same output as jobs.ingest.dedupe.near_duplicate_pairs: (a_id, b_id, distance), both orders for a self-join."""
    plan = band_plan(threshold)
    xor = F.col("l.hash").bitwiseXOR(F.col("r.hash"))
    return (
        _candidates(left, right, plan, id_col, hash_col, hint)
        .select(
            F.col("l.id").alias("a_id"),
            F.col("r.id").alias("b_id"),
            F.bit_count(xor).alias("distance"),
            F.col("l.band").alias("band"),
            xor.alias("xor"),
        )
        .where((F.col("distance") <= threshold) & _first_band_condition(plan, F.col("xor"), F.col("band")))
        .select("a_id", "b_id", "distance")
    )


def jobs_candidate_count(
    left: DataFrame, right: DataFrame, threshold: int, hash_col: str = "phash_long"
) -> int:
    """Rows jobs.ingest.dedupe's banding join hands to its exact filter (self matches included)."""
    plan = band_plan(threshold)
    lk = jobs_band_keys(left.select(F.col(hash_col).alias("a_hash")), plan, "a_hash")
    rk = jobs_band_keys(right.select(F.col(hash_col).alias("b_hash")), plan, "b_hash")
    return lk.join(rk, ["band", "band_key"]).count()


def candidate_count(
    left: DataFrame,
    right: DataFrame,
    threshold: int,
    id_col: str = "image_id",
    hash_col: str = "phash_long",
    hint: str = JOIN_HINT,
) -> int:
    """Rows the proposed join hands to the exact filter (self matches and redundant combinations removed)."""
    return _candidates(left, right, band_plan(threshold), id_col, hash_col, hint).count()


def near_duplicate_pairs_hinted(
    left: DataFrame,
    right: DataFrame,
    threshold: int,
    id_col: str = "image_id",
    hash_col: str = "phash_long",
    hint: str = JOIN_HINT,
) -> DataFrame:
    """jobs.ingest.dedupe.near_duplicate_pairs verbatim plus one join hint: the minimal fix measured as ``--impl hinted``."""
    plan = band_plan(threshold)
    lk = jobs_band_keys(
        left.select(F.col(id_col).alias("a_id"), F.col(hash_col).alias("a_hash")), plan, "a_hash"
    )
    rk = jobs_band_keys(
        right.select(F.col(id_col).alias("b_id"), F.col(hash_col).alias("b_hash")), plan, "b_hash"
    )
    if hint == "broadcast_left":
        lk = lk.hint("broadcast")
    else:
        rk = rk.hint(hint)
    candidates = lk.join(rk, ["band", "band_key"]).where(F.col("a_id") != F.col("b_id"))
    return (
        candidates.select("a_id", "b_id", hamming_col(F.col("a_hash"), F.col("b_hash")).alias("distance"))
        .where(F.col("distance") <= threshold)
        .dropDuplicates(["a_id", "b_id"])
    )
