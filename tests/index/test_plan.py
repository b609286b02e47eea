"""Index planning: byte sizes, FAISS ids and shards, the factory chosen per budget, nprobe grid and choice."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import pytest

from jobs.index.plan import (
    DEFAULT_MEMORY_BUDGET,
    ID_BYTES,
    IndexPlan,
    choose_nprobe,
    code_options,
    faiss_id,
    nlist_for,
    nprobe_grid,
    parse_bytes,
    plan_index,
    shard_count,
    shard_of,
)

GIB = 1024**3
MIB = 1024**2


def _estimate(n: int, dim: int, n_shards: int, code_bytes: int) -> int:
    """The documented IVF memory formula: codes + ids for every vector, plus each shard's centroids."""
    nlist = nlist_for(math.ceil(n / n_shards))
    return n * (code_bytes + ID_BYTES) + nlist * dim * 4 * n_shards


def _plan(n: int, dim: int, n_shards: int, budget: int) -> IndexPlan:
    return plan_index(n, dim, n_shards, memory_budget=budget, exact_below=10_000)


# --- parse_bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4G", 4 * GIB),
        ("512m", 512 * MIB),
        ("1.5GiB", 3 * GIB // 2),
        ("1.5 gib", 3 * GIB // 2),
        (" 2k ", 2048),
        ("64KB", 64 * 1024),
        ("1T", 1024**4),
        ("1073741824", GIB),
        (1024, 1024),
    ],
)
def test_parse_bytes_accepts_binary_units(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "4X", "4GG", "", "G", "1,5G", "-4G", "4 G B"])
def test_parse_bytes_rejects_bad_text_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_bytes(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "4G" in message and "512M" in message


def test_parse_bytes_message_cuts_long_input() -> None:
    with pytest.raises(ValueError) as caught:
        parse_bytes("x" * 500)
    assert "x" * 21 not in str(caught.value)
    assert repr("x" * 20) in str(caught.value)


@pytest.mark.parametrize("value", [0, -1, -(4 * GIB), "0", "0G", "0.0001k"])
def test_parse_bytes_rejects_zero_and_negative(value: str | int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_bytes(value)


# --- faiss_id / shard_of / shard_count -----------------------------------------------------------


def test_faiss_id_is_a_positive_60_bit_int_and_deterministic() -> None:
    ids = [faiss_id(f"face-{i}") for i in range(2_000)]
    assert all(isinstance(i, int) and 0 < i < 2**60 for i in ids)
    assert ids == [faiss_id(f"face-{i}") for i in range(2_000)]
    assert len(set(ids)) == len(ids)
    # The value is pinned: it must equal Spark's faiss_id_col in every build, forever.
    assert faiss_id("abc") == int("ba7816bf8f01cfe", 16)
    assert faiss_id("face-1") != faiss_id("face-2")
    assert faiss_id("é") == int(hashlib.sha256("é".encode()).hexdigest()[:15], 16)


def test_shard_of_is_in_range_and_stable() -> None:
    for n_shards in (1, 3, 4, 7):
        shards = [shard_of(f"face-{i}", n_shards) for i in range(500)]
        assert all(0 <= s < n_shards for s in shards)
        assert shards == [shard_of(f"face-{i}", n_shards) for i in range(500)]
        assert shards == [faiss_id(f"face-{i}") % n_shards for i in range(500)]
    assert {shard_of(f"face-{i}", 1) for i in range(100)} == {0}


def test_shard_of_is_roughly_balanced() -> None:
    counts = Counter(shard_of(f"face-{i:06d}", 4) for i in range(10_000))
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(2250 <= c <= 2750 for c in counts.values()), counts


@pytest.mark.parametrize(
    ("n", "configured", "per_shard", "expected"),
    [
        (10, 4, 100, 4),
        (10, "3", 100, 3),
        (10**9, 1, 100, 1),
        (0, "auto", 100, 1),
        (1, "auto", 100, 1),
        (100, "auto", 100, 1),
        (101, "auto", 100, 2),
        (1_000, " AUTO ", 100, 10),
        (4_000_001, "auto", 2_000_000, 3),
    ],
)
def test_shard_count(n: int, configured: int | str, per_shard: int, expected: int) -> None:
    assert shard_count(n, configured, per_shard) == expected


def test_shard_count_auto_defaults_to_two_million_per_shard() -> None:
    assert shard_count(2_000_000, "auto") == 1
    assert shard_count(2_000_001, "auto") == 2


@pytest.mark.parametrize("configured", [0, -2, "0"])
def test_shard_count_below_one_raises(configured: int | str) -> None:
    with pytest.raises(ValueError, match=">= 1 or 'auto'"):
        shard_count(100, configured)


# --- plan_index ----------------------------------------------------------------------------------


def test_small_collection_gets_exact_flat() -> None:
    plan = plan_index(9_999, 512, 4, exact_below=10_000)
    assert plan.factory == "IDMap2,Flat"
    assert plan.exact and plan.nlist == 0 and plan.train_size == 0
    assert plan.codes == "Flat" and plan.bytes_per_vector == 2048
    assert plan.estimated_bytes == 9_999 * (2048 + ID_BYTES)
    assert plan.memory_budget == DEFAULT_MEMORY_BUDGET
    assert plan.as_dict()["factory"] == "IDMap2,Flat"


def test_exact_below_is_a_strict_bound() -> None:
    assert plan_index(9_999, 128, 1, exact_below=10_000).factory == "IDMap2,Flat"
    plan = plan_index(10_000, 128, 1, exact_below=10_000)
    assert plan.factory == f"IVF{plan.nlist},Flat" and not plan.exact


def test_small_collection_over_budget_is_not_exact() -> None:
    flat = 5_000 * (4 * 128 + ID_BYTES)
    plan = plan_index(5_000, 128, 1, memory_budget=flat - 1, exact_below=10_000)
    assert not plan.exact
    assert plan.codes != "Flat" and plan.estimated_bytes <= flat - 1


def test_large_collection_gets_ivf_flat_when_it_fits() -> None:
    plan = plan_index(1_000_000, 512, 4)
    assert plan.nlist == nlist_for(250_000) == 2048
    assert plan.factory == "IVF2048,Flat"
    assert plan.codes == "Flat" and plan.bytes_per_vector == 2048
    assert plan.estimated_bytes == _estimate(1_000_000, 512, 4, 2048) <= DEFAULT_MEMORY_BUDGET


@pytest.mark.parametrize(("n", "dim", "n_shards"), [(1_000_000, 512, 4), (300_000, 128, 1), (50_000, 64, 3)])
def test_codes_step_down_as_the_budget_shrinks(n: int, dim: int, n_shards: int) -> None:
    options = code_options(dim)
    assert [c for c, _ in options][:3] == ["Flat", "SQfp16", "SQ8"]
    nlist = nlist_for(math.ceil(n / n_shards))
    for i, (codes, code_bytes) in enumerate(options):
        need = _estimate(n, dim, n_shards, code_bytes)
        # Exactly the estimate fits these codes; one byte less falls to the next codes.
        plan = _plan(n, dim, n_shards, need)
        assert (plan.factory, plan.codes, plan.bytes_per_vector) == (f"IVF{nlist},{codes}", codes, code_bytes)
        assert plan.estimated_bytes == need and plan.memory_budget == need
        if i + 1 < len(options):
            assert _plan(n, dim, n_shards, need - 1).codes == options[i + 1][0]


def test_known_budgets_for_a_million_512d_vectors() -> None:
    n, dim, shards = 1_000_000, 512, 4
    assert _plan(n, dim, shards, 4 * GIB).codes == "Flat"
    assert _plan(n, dim, shards, 2 * GIB).codes == "Flat"  # 2.06e9 + 16 MiB of centroids
    assert _plan(n, dim, shards, 3 * GIB // 2).codes == "SQfp16"  # 1.03e9 + centroids
    assert _plan(n, dim, shards, 1 * GIB).codes == "SQfp16"
    assert _plan(n, dim, shards, 768 * MIB).codes == "SQ8"  # 0.52e9 + centroids
    assert _plan(n, dim, shards, 256 * MIB).codes == "PQ64"  # 72 MB + centroids
    assert _plan(n, dim, shards, 40 * MIB).codes == "PQ16"  # 24 MB + 16 MiB of centroids


def test_nothing_fits_raises_naming_the_budget() -> None:
    n, dim, shards = 1_000_000, 512, 4
    smallest = _estimate(n, dim, shards, 8)
    assert _plan(n, dim, shards, smallest).codes == "PQ8"
    with pytest.raises(ValueError) as caught:
        _plan(n, dim, shards, smallest - 1)
    message = str(caught.value)
    assert "memory budget of" in message and "--memory-budget" in message
    assert "1000000 vectors of dim 512" in message
    with pytest.raises(ValueError, match=r"memory budget of 1\.0 MiB.*need 31\.3 MiB"):
        _plan(n, dim, shards, MIB)


def test_dim_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dimension"):
        plan_index(100, 0, 1)


@pytest.mark.parametrize("dim", [512, 128])
def test_pq_sub_quantizers_divide_dim(dim: int) -> None:
    pq = [(c, b) for c, b in code_options(dim) if c.startswith("PQ")]
    assert pq, dim
    for codes, code_bytes in pq:
        m = int(codes[2:])
        assert m == code_bytes and m < dim and dim % m == 0
    assert "PQ48" not in dict(pq)  # 48 divides neither 512 nor 128
    # The plan's own choice at a tiny budget is a dividing PQ too.
    n = 2_000_000
    plan = _plan(n, dim, 2, _estimate(n, dim, 2, 8))
    assert plan.codes == "PQ8" and dim % int(plan.codes[2:]) == 0


@pytest.mark.parametrize("n", [20_000, 100_000, 1_000_000, 20_000_000, 100_000_000])
@pytest.mark.parametrize("dim", [32, 128, 512])
@pytest.mark.parametrize("n_shards", [1, 4, 16])
def test_plans_never_hnsw_and_train_enough(n: int, dim: int, n_shards: int) -> None:
    for budget in (10**13, 4 * GIB, GIB, 256 * MIB, 64 * MIB):
        try:
            plan = _plan(n, dim, n_shards, budget)
        except ValueError as error:
            assert "memory budget" in str(error)
            continue
        assert "HNSW" not in plan.factory
        assert plan.factory.startswith("IVF") and not plan.exact
        assert plan.estimated_bytes <= budget
        assert 39 * plan.nlist <= plan.train_size <= n
        if plan.codes.startswith("PQ"):
            assert plan.train_size >= 39 * 256


@pytest.mark.parametrize("per_shard", [0, 1, 10, 1_000, 250_000, 10**6, 10**8, 10**9, 10**12])
def test_nlist_is_a_power_of_two_in_range(per_shard: int) -> None:
    nlist = nlist_for(per_shard)
    assert 16 <= nlist <= 65536
    assert nlist & (nlist - 1) == 0


def test_nlist_tracks_four_sqrt_n() -> None:
    assert nlist_for(1) == 16
    assert nlist_for(10**6) == 4096  # 4 * 1000 -> nearest power of two
    assert nlist_for(10**12) == 65536
    for n in (10**4, 10**5, 10**6, 10**7):
        assert 0.5 <= nlist_for(n) / (4 * math.sqrt(n)) <= 2


# --- nprobe grid and choice ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nlist", "grid"),
    [
        (0, [0]),
        (1, [1]),
        (2, [1]),
        (16, [1, 2, 4, 8]),
        (100, [1, 2, 4, 8, 16, 32]),
        (2048, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]),
    ],
)
def test_nprobe_grid(nlist: int, grid: list[int]) -> None:
    assert nprobe_grid(nlist) == grid


def test_nprobe_grid_stays_within_half_the_lists() -> None:
    for nlist in (16, 64, 4096, 65536):
        grid = nprobe_grid(nlist)
        assert grid[-1] == nlist // 2
        assert all(b == 2 * a for a, b in zip(grid, grid[1:], strict=False))


def _point(nprobe: int, recall: float) -> dict[str, float]:
    return {"nprobe": nprobe, "recall_at_10": recall, "ms_per_query": nprobe / 10}


def test_choose_nprobe_takes_the_smallest_reaching_the_target() -> None:
    curve = [_point(1, 0.6), _point(2, 0.8), _point(4, 0.95), _point(8, 0.99), _point(16, 1.0)]
    assert choose_nprobe(curve, 0.95) == _point(4, 0.95)
    assert choose_nprobe(curve, 0.96) == _point(8, 0.99)
    assert choose_nprobe(curve, 0.5) == _point(1, 0.6)
    # Order of the curve does not matter.
    assert choose_nprobe(list(reversed(curve)), 0.95)["nprobe"] == 4


def test_choose_nprobe_falls_back_to_the_best_recall() -> None:
    curve = [_point(1, 0.5), _point(2, 0.9), _point(4, 0.85)]
    assert choose_nprobe(curve, 0.95) == _point(2, 0.9)


def test_choose_nprobe_returns_a_copy_and_handles_empty() -> None:
    assert choose_nprobe([], 0.95) == {}
    curve = [_point(0, 1.0)]
    chosen = choose_nprobe(curve, 0.95)
    assert chosen == _point(0, 1.0)
    chosen["nprobe"] = 99
    assert curve[0]["nprobe"] == 0
