"""autofaiss's build_index as index_scale's reference: run by the autofaiss venv's python, one build per process."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Shared with benchmarks.index_scale (which imports them from here), so both sides are timed and sized
# by the same code; this file imports nothing from the project, it runs in another venv.


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (VmHWM)."""
    return _status_kib("VmHWM") * 1024


def rss_bytes() -> int:
    """This process's resident set now (VmRSS)."""
    return _status_kib("VmRSS") * 1024


def serialized_bytes(index: Any) -> int:
    """Bytes of ``faiss.write_index(index)``, counted as written (no copy of the index is made)."""
    import faiss

    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer  # flushes
    return total


def time_queries(
    search: Callable[[np.ndarray], Any], queries: np.ndarray, single: int, repeats: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Best-of-``repeats`` wall time of one batch search of all ``queries`` and of ``single`` one at a time.

    Returns the timings and the ids of the last batch search.
    """
    search(queries[:10])  # warm-up: first touch of the index pages
    batch = []
    for _ in range(repeats):
        started = time.perf_counter()
        found = search(queries)[1]
        batch.append(time.perf_counter() - started)
    ones = []
    rows = queries[:single]
    for _ in range(repeats):
        started = time.perf_counter()
        for row in range(len(rows)):
            search(rows[row : row + 1])
        ones.append(time.perf_counter() - started)
    timings = {
        "batch_queries": len(queries),
        "batch_seconds": batch,
        "qps_batch": len(queries) / min(batch),
        "batch_ms_per_query": 1000.0 * min(batch) / max(1, len(queries)),
        "single_queries": len(rows),
        "single_seconds": ones,
        "qps_single": len(rows) / min(ones),
        "single_ms_per_query": 1000.0 * min(ones) / max(1, len(rows)),
    }
    return timings, np.asarray(found, dtype=np.int64)


def sweep(
    search: Callable[[np.ndarray], Any],
    apply: Callable[[str], None],
    settings: list[str],
    queries: np.ndarray,
    single: int,
    repeats: int,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Each search setting timed like the chosen one (``time_queries``): points, and their ids by key."""
    points, ids = [], {}
    for i, setting in enumerate(settings):
        apply(setting)
        timings, found = time_queries(search, queries, single, repeats)
        ids[f"sweep{i}"] = found
        points.append({"params": setting, "key": f"sweep{i}", **timings})
    return points, ids


class _Timings(logging.Handler):
    """Collects autofaiss's own ``>>> Finished "<step>" in <s> secs`` log lines."""

    PATTERN = re.compile(r'>>> Finished "(.*)" in ([0-9.]+) secs')

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(record.getMessage())
        if match:
            self.steps[match.group(1)] = float(match.group(2))


def _step(steps: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in steps.items() if k.startswith(prefix))


def sweep_params(index_param: str, index: Any) -> list[str]:
    """Search settings around autofaiss's choice: efSearch for HNSW, nprobe (powers of two) for IVF."""
    if "nprobe" in index_param:
        import faiss

        nlist = faiss.extract_index_ivf(index).nlist
        out = []
        p = 1
        while p <= max(1, nlist // 2):
            text = re.sub(r"nprobe=\d+", f"nprobe={p}", index_param)
            out.append(re.sub(r"efSearch=\d+", f"efSearch={2 * p}", text))
            p *= 2
        return out if index_param in out else [*out, index_param]
    if "efSearch" in index_param:
        grid = {
            16,
            32,
            64,
            128,
            256,
            512,
            1024,
            2048,
            4096,
            int(re.findall(r"efSearch=(\d+)", index_param)[0]),
        }
        return [f"efSearch={v}" for v in sorted(grid)]
    return []


def run(args: argparse.Namespace) -> dict[str, Any]:
    import autofaiss
    import faiss
    from autofaiss import build_index

    faiss.omp_set_num_threads(args.threads)
    queries = np.ascontiguousarray(np.load(args.queries), dtype=np.float32)
    timings = _Timings()
    logging.getLogger("autofaiss").addHandler(timings)
    rss_before = rss_bytes()
    started, cpu_started = time.perf_counter(), time.process_time()
    index, infos = build_index(
        embeddings=str(args.emb),
        index_path=None,
        index_infos_path=None,
        save_on_disk=False,
        max_index_memory_usage=f"{args.memory_budget}B",
        current_memory_available=f"{args.available}B",
        metric_type="ip",
        min_nearest_neighbors_to_retrieve=args.min_neighbors,
        max_index_query_time_ms=args.query_ms,
        nb_cores=args.threads,
    )
    build_seconds = time.perf_counter() - started
    build_cpu = time.process_time() - cpu_started
    peak_build = peak_rss_bytes()
    if index is None:
        raise SystemExit(f"autofaiss build_index returned no index: {infos}")
    steps = timings.steps
    tune = _step(steps, "Computing best hyperparameters")
    metrics = _step(steps, "Compute fast metrics")
    adding = _step(steps, "-> Adding the vectors to the index")
    faiss.omp_set_num_threads(args.threads)
    index_bytes = serialized_bytes(index)
    params = str(infos.get("index_param") or "")
    space = faiss.ParameterSpace()
    if params:
        space.set_index_parameters(index, params)

    def search(q: np.ndarray) -> Any:
        return index.search(q, args.k)

    qps, chosen_ids = time_queries(search, queries, args.single, args.repeats)
    points, ids = sweep(
        search,
        lambda setting: space.set_index_parameters(index, setting),
        sweep_params(params, index),
        queries,
        args.sweep_single,
        args.sweep_repeats,
    )
    np.savez(args.out / "autofaiss_ids.npz", chosen=chosen_ids, **ids)
    return {
        "versions": {"autofaiss": autofaiss.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
        "index_key": infos.get("index_key"),
        "index_param": params,
        "metric_infos": infos,
        "build_seconds": build_seconds,
        "build_cpu_seconds": build_cpu,
        "steps": {
            "train (extract sample + k-means)": _step(steps, "-> Extract training vectors")
            + _step(steps, "-> Training the index"),
            "add": adding - tune - metrics,
            "tune search params": tune,
            "fast metrics": metrics,
        },
        "autofaiss_log_steps": steps,
        "rss_before_build": rss_before,
        "peak_rss": peak_build,
        "index_bytes": index_bytes,
        "ntotal": int(index.ntotal),
        "search": qps,
        "sweep": points,
        "omp_threads": faiss.omp_get_max_threads(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emb", type=Path, required=True, help="folder holding only the vectors' .npy")
    parser.add_argument("--queries", type=Path, required=True, help=".npy of the query vectors")
    parser.add_argument("--out", type=Path, required=True, help="folder for result.json and the result ids")
    parser.add_argument("--memory-budget", type=int, required=True, help="max_index_memory_usage, bytes")
    parser.add_argument("--available", type=int, required=True, help="current_memory_available, bytes")
    parser.add_argument(
        "--query-ms", type=float, default=10.0, help="max_index_query_time_ms (10, its default)"
    )
    parser.add_argument("--min-neighbors", type=int, default=10, help="min_nearest_neighbors_to_retrieve")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--k", type=int, default=11, help="neighbours per query (k+1: the query finds itself)"
    )
    parser.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-single", type=int, default=50, help="single queries per sweep point")
    parser.add_argument("--sweep-repeats", type=int, default=2, help="timings per sweep point, best kept")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args)
    (args.out / "autofaiss_result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
