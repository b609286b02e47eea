"""FAISS index build at 100k/1M: facelake's jobs.index mechanics vs autofaiss's build_index, same vectors and budget."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.autofaiss_ref import peak_rss_bytes, rss_bytes, serialized_bytes, sweep, time_queries
from benchmarks.common import (
    BENCH_DIR,
    PROJECT_ROOT,
    Phase,
    Recorder,
    command_line,
    machine,
    markdown_table,
    save_result,
)

K = 10
QUERY_SEED = 7
"""``build_in_memory``'s default seed: with the same count its held-out recall queries are these rows."""
DATA_DIR = BENCH_DIR / "index_scale"
AUTOFAISS_VENV = BENCH_DIR / "autofaiss-venv"
HERE = Path(__file__).resolve().parent
AUTOFAISS_REQUIREMENTS = HERE / "requirements-autofaiss.txt"
REF_SCRIPT = HERE / "autofaiss_ref.py"
GIB = 1024**3


# ------------------------------------------------------------------------------------------- data


@dataclass
class DataSet:
    """Vectors saved as .npy (alone in ``emb/``, autofaiss reads the folder), query rows, exact truth."""

    n: int
    dim: int
    folder: Path
    meta: dict[str, Any]

    @property
    def emb_dir(self) -> Path:
        return self.folder / "emb"

    @property
    def vectors(self) -> Path:
        return self.emb_dir / "vectors.npy"

    @property
    def queries(self) -> Path:
        return self.folder / "queries.npy"

    @property
    def rows(self) -> Path:
        return self.folder / "query_rows.npy"

    @property
    def truth(self) -> Path:
        return self.folder / "truth.npy"


def dataset(n: int, args: argparse.Namespace, rec: Recorder) -> DataSet:
    """``clustered_vectors(n, dim)`` with its held-out query rows and exact top-10 (self dropped), cached."""
    from jobs.index.mechanics import drop_self, exact_topk, sample_rows
    from jobs.testdata.vectors import clustered_vectors

    name = f"n{n}-d{args.dim}-c{args.clusters or 'auto'}-s{args.spread}-seed{args.seed}-q{args.queries}"
    ds = DataSet(n, args.dim, DATA_DIR / name, {})
    meta_path = ds.folder / "meta.json"
    if meta_path.exists() and ds.vectors.exists():
        ds.meta = json.loads(meta_path.read_text())
        print(f"[bench] reusing {ds.folder}", file=sys.stderr, flush=True)
        return ds
    ds.emb_dir.mkdir(parents=True, exist_ok=True)
    with rec.phase(f"data n={n:,}: generate + save") as gen:
        vectors = clustered_vectors(
            n, args.dim, clusters=args.clusters or None, spread=args.spread, seed=args.seed
        )
        partial = ds.folder / "vectors.partial"
        with partial.open("wb") as f:
            np.save(f, vectors)
        partial.replace(ds.vectors)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    with rec.phase(f"data n={n:,}: exact top-{K + 1} of {args.queries:,} queries") as exact:
        rows = sample_rows(n, args.queries, QUERY_SEED)
        queries = np.ascontiguousarray(vectors[rows])
        _, found = exact_topk(np.arange(n, dtype=np.int64), vectors, queries, K + 1)
        truth = drop_self(found, rows, K)
    del vectors
    np.save(ds.queries, queries)
    np.save(ds.rows, rows)
    np.save(ds.truth, truth)
    ds.meta = {
        "n": n,
        "dim": args.dim,
        "clusters": args.clusters or max(1, n // 20),
        "spread": args.spread,
        "seed": args.seed,
        "queries": int(len(rows)),
        "query_seed": QUERY_SEED,
        "vector_bytes": int(ds.vectors.stat().st_size),
        "generate_seconds": gen.seconds,
        "exact_seconds": exact.seconds,
    }
    meta_path.write_text(json.dumps(ds.meta, indent=2) + "\n")
    return ds


def recall_of(ids: np.ndarray, ds: DataSet) -> float:
    """recall@10 of a side's top-(k+1) answers, self dropped, against the exact truth (jobs.index.mechanics)."""
    from jobs.index.mechanics import drop_self, recall_at_k

    rows = np.load(ds.rows)
    return recall_at_k(drop_self(ids, rows, K), np.load(ds.truth), K)


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}


# --------------------------------------------------------------------------------- facelake side


class RssSampler:
    """Samples this process's VmRSS on a thread, so the peak can be split by build stage afterwards."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), rss_bytes()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, stop: float) -> int | None:
        """Highest sample in [start, stop], or None when the stage was shorter than the interval."""
        return max((rss for t, rss in self.samples if start <= t <= stop), default=None)


def sweep_nprobes(chosen: int, nlist: int) -> list[int]:
    """nprobe values timed like the chosen one: its grid neighbours (chosen/4 .. 2·chosen) and, between
    chosen/2 and chosen, the steps a finer grid than powers of two would have had."""
    if not chosen:
        return []
    grid = [p for p in (chosen // 4, chosen // 2, chosen, 2 * chosen) if 1 <= p <= max(1, nlist // 2)]
    finer = {round(chosen / 2 * f) for f in (1.25, 1.5, 1.75)} if chosen >= 4 else set()
    return sorted(set(grid) | finer)


def facelake_worker(spec_path: str) -> int:
    """One facelake build in this process (``python -m benchmarks.index_scale SPEC.json``): build, size, QPS."""
    import faiss

    from jobs.index import mechanics, plan
    from jobs.index.plan import plan_index, shard_of

    spec = json.loads(Path(spec_path).read_text())
    code = {
        m.__name__: hashlib.sha256(Path(m.__file__).read_bytes()).hexdigest()[:12] for m in (mechanics, plan)
    }
    out = Path(spec["out"])
    threads = int(spec["threads"])
    faiss.omp_set_num_threads(threads)
    rss_start = rss_bytes()
    vectors = np.load(spec["vectors"])
    rss_loaded = rss_bytes()
    n, dim = vectors.shape
    ids = np.arange(n, dtype=np.int64)
    n_shards = int(spec["shards"])
    if n_shards == 1:
        shard_of_row = np.zeros(n, dtype=np.int64)
    else:
        shard_of_row = np.fromiter((shard_of(f"face-{i}", n_shards) for i in range(n)), np.int64, count=n)
    index_plan = plan_index(n, dim, n_shards, int(spec["memory_budget"]), int(spec["exact_below"]))
    print(
        f"[facelake] n={n:,} {index_plan.factory}, train {index_plan.train_size:,}",
        file=sys.stderr,
        flush=True,
    )
    with RssSampler() as sampler:
        started, cpu_started = time.perf_counter(), time.process_time()
        build = mechanics.build_in_memory(
            ids,
            vectors,
            index_plan,
            shard_of_row,
            n_shards,
            float(spec["recall_target"]),
            queries=int(spec["queries"]),
            seed=QUERY_SEED,
        )
        build_seconds = time.perf_counter() - started
        build_cpu = time.process_time() - cpu_started
    peak = peak_rss_bytes()
    stage_peak: dict[str, int | None] = {}
    t = started
    for stage in ("train", "add", "measure"):
        stage_peak[stage] = sampler.peak_between(t, t + build.seconds.get(stage, 0.0))
        t += build.seconds.get(stage, 0.0)
    queries = np.ascontiguousarray(vectors[np.load(spec["rows"])])
    del vectors
    index_bytes = sum(serialized_bytes(s) for s in build.shards)
    params = build.search_params
    current = dict(params)  # what search() uses; the sweep changes it
    for shard in build.shards:
        mechanics.set_search_params(shard, params)
    faiss.omp_set_num_threads(threads)

    def search(q: np.ndarray) -> Any:
        if len(build.shards) == 1:
            return build.shards[0].search(q, K + 1)
        return mechanics.merge_topk([mechanics.search(s, q, K + 1, current) for s in build.shards], K + 1)

    qps, chosen_ids = time_queries(search, queries, int(spec["single"]), int(spec["repeats"]))

    def apply(setting: str) -> None:
        current["nprobe"] = int(setting.split("=")[1])
        for shard in build.shards:
            mechanics.set_search_params(shard, current)

    points, ids_out = sweep(
        search,
        apply,
        [f"nprobe={p}" for p in sweep_nprobes(int(params.get("nprobe", 0)), index_plan.nlist)],
        queries,
        int(spec["sweep_single"]),
        int(spec["sweep_repeats"]),
    )
    np.savez(out / "facelake_ids.npz", chosen=chosen_ids, **ids_out)
    chosen = next((p for p in build.curve if p["nprobe"] == params.get("nprobe", 0)), {})
    result = {
        "plan": index_plan.as_dict(),
        "factory": index_plan.factory,
        "code_sha256_12": code,
        "search_params": params,
        "curve": build.curve,
        "own_recall_at_10": chosen.get("recall_at_10"),
        "steps": build.seconds,
        "build_seconds": build_seconds,
        "build_cpu_seconds": build_cpu,
        "rss_start": rss_start,
        "rss_vectors_loaded": rss_loaded,
        "peak_rss": peak,
        "peak_rss_by_stage": stage_peak,
        "index_bytes": index_bytes,
        "shards": n_shards,
        "shard_vectors": [int(s.ntotal) for s in build.shards],
        "search": qps,
        "sweep": points,
        "omp_threads": faiss.omp_get_max_threads(),
        "faiss": faiss.__version__,
    }
    (out / "facelake_result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


def run_facelake(ds: DataSet, args: argparse.Namespace, rec: Recorder) -> dict[str, Any]:
    out = ds.folder / "facelake"
    out.mkdir(exist_ok=True)
    spec = {
        "out": str(out),
        "vectors": str(ds.vectors),
        "rows": str(ds.rows),
        "threads": args.threads,
        "shards": args.shards,
        "memory_budget": args.memory_budget,
        "exact_below": args.exact_below,
        "recall_target": args.recall_target,
        "queries": args.queries,
        "single": args.single,
        "repeats": args.repeats,
        "sweep_single": args.sweep_single,
        "sweep_repeats": args.sweep_repeats,
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    (out / "facelake_result.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.index_scale", str(out / "spec.json")]
    with rec.phase(f"facelake n={ds.n:,} (subprocess: build_in_memory, size, QPS)") as phase:
        try:
            done = subprocess.run(
                cmd, cwd=PROJECT_ROOT, env=_env(args.threads), timeout=args.timeout, check=False
            )
            failure = None if done.returncode == 0 else f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            failure = f"timed out after {args.timeout:.0f} s"
    if failure:
        return {"side": "facelake", "n": ds.n, "failed": failure, "phase": phase}
    res = json.loads((out / "facelake_result.json").read_text())
    res.update(side="facelake", n=ds.n, phase=phase)
    ids = np.load(out / "facelake_ids.npz")
    res["recall_at_10"] = recall_of(ids["chosen"], ds)
    for point in res["sweep"]:
        point["recall_at_10"] = recall_of(ids[point["key"]], ds)
    res["params_text"] = ", ".join(f"{k}={v}" for k, v in res["search_params"].items()) or "none (exact)"
    return res


# -------------------------------------------------------------------------------- autofaiss side


def autofaiss_python() -> tuple[Path, str]:
    """The autofaiss venv's python, made from requirements-autofaiss.txt on first use (idempotent)."""
    python = AUTOFAISS_VENV / "bin" / "python"
    stamp = AUTOFAISS_VENV / ".facelake-installed"
    want = hashlib.sha256(AUTOFAISS_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python, "reused"
    if not python.exists():
        base = shutil.which("python3.11") or sys.executable
        print(f"[bench] creating {AUTOFAISS_VENV} with {base}", file=sys.stderr, flush=True)
        subprocess.run([base, "-m", "venv", str(AUTOFAISS_VENV)], check=True)
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    cmd += ["-r", str(AUTOFAISS_REQUIREMENTS)]
    print("[bench] installing the autofaiss reference: " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    subprocess.run([str(python), "-c", "import autofaiss, faiss, numpy"], check=True)
    stamp.write_text(want + "\n")
    return python, "installed"


def run_autofaiss(ds: DataSet, args: argparse.Namespace, rec: Recorder, python: Path) -> dict[str, Any]:
    out = ds.folder / "autofaiss"
    out.mkdir(exist_ok=True)
    (out / "autofaiss_result.json").unlink(missing_ok=True)
    cmd = [
        str(python),
        str(REF_SCRIPT),
        f"--emb={ds.emb_dir}",
        f"--queries={ds.queries}",
        f"--out={out}",
        f"--memory-budget={args.memory_budget}",
        f"--available={args.autofaiss_available}",
        f"--query-ms={args.autofaiss_query_ms}",
        f"--min-neighbors={K}",
        f"--threads={args.threads}",
        f"--k={K + 1}",
        f"--single={args.single}",
        f"--repeats={args.repeats}",
        f"--sweep-single={args.sweep_single}",
        f"--sweep-repeats={args.sweep_repeats}",
    ]
    log = out / "autofaiss.log"
    with rec.phase(f"autofaiss n={ds.n:,} (subprocess: build_index, size, QPS)") as phase, log.open("w") as f:
        try:
            done = subprocess.run(
                cmd, cwd=out, env=_env(args.threads), stdout=f, stderr=subprocess.STDOUT, timeout=args.timeout
            )
            failure = None if done.returncode == 0 else f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            failure = f"timed out after {args.timeout:.0f} s"
    if failure:
        tail = log.read_text().splitlines()[-15:]
        print("[bench] autofaiss failed:\n" + "\n".join(tail), file=sys.stderr, flush=True)
        return {"side": "autofaiss", "n": ds.n, "failed": failure, "phase": phase, "log": str(log)}
    res = json.loads((out / "autofaiss_result.json").read_text())
    res.update(side="autofaiss", n=ds.n, phase=phase, log=str(log))
    ids = np.load(out / "autofaiss_ids.npz")
    res["recall_at_10"] = recall_of(ids["chosen"], ds)
    for point in res["sweep"]:
        point["recall_at_10"] = recall_of(ids[point["key"]], ds)
    res["factory"] = res["index_key"]
    res["params_text"] = res["index_param"] or "none"
    return res


# ------------------------------------------------------------------------------------------ report


def _gib(b: float | None) -> str:
    return "–" if b is None else f"{b / GIB:.2f} GiB"


def _mib(b: float | None) -> str:
    return "–" if b is None else f"{b / 1024**2:,.0f} MiB"


def side_row(r: dict[str, Any]) -> list[Any]:
    if r.get("failed"):
        return [r["side"], f"**{r['failed']}**", "", "", "", "", "", "", "", "", ""]
    ph: Phase = r["phase"]
    s = r["search"]
    return [
        r["side"],
        f"`{r['factory']}`",
        r["params_text"],
        f"{r['build_seconds']:.1f}",
        f"{r['build_cpu_seconds']:.0f}",
        _gib(r["peak_rss"]),
        f"{r['index_bytes']:,} ({_gib(r['index_bytes'])})",
        f"{s['qps_batch']:,.0f}",
        f"{s['qps_single']:,.0f} ({s['single_ms_per_query']:.2f} ms)",
        f"{r['recall_at_10']:.4f}",
        f"{ph.load()} / {ph.other_cores:.2f}",
    ]


SIDE_HEADERS = [
    "side",
    "factory",
    "search params",
    "build s",
    "build CPU s",
    "peak RSS",
    "index bytes",
    "QPS batch 1,000",
    "QPS single",
    "recall@10",
    "load 1-min / others' cores",
]


def goals(fl: dict[str, Any], af: dict[str, Any]) -> list[list[Any]]:
    """Each goal of the issue: facelake's figure, autofaiss's, the ratio, met or not."""
    rows = []

    def add(goal: str, mine: float, ref: float, ok: bool, ratio: str) -> None:
        rows.append([goal, mine, ref, ratio, "met" if ok else "**not met**"])

    add(
        "recall@10 ≥ autofaiss's (same budget)",
        round(fl["recall_at_10"], 4),
        round(af["recall_at_10"], 4),
        fl["recall_at_10"] >= af["recall_at_10"],
        f"{fl['recall_at_10'] - af['recall_at_10']:+.4f}",
    )
    add(
        "build s ≤ autofaiss's",
        round(fl["build_seconds"], 1),
        round(af["build_seconds"], 1),
        fl["build_seconds"] <= af["build_seconds"],
        f"{af['build_seconds'] / fl['build_seconds']:.2f}x (autofaiss / facelake)",
    )
    for key, label in (("qps_batch", "QPS, batch of 1,000"), ("qps_single", "QPS, single queries")):
        mine, ref = fl["search"][key], af["search"][key]
        add(f"{label} ≥ autofaiss's", round(mine), round(ref), mine >= ref, f"{mine / ref:.2f}x")
    add(
        "index bytes within the budget",
        fl["index_bytes"],
        af["index_bytes"],
        fl["index_bytes"] <= fl["plan"]["memory_budget"],
        f"{fl['index_bytes'] / af['index_bytes']:.2f}x",
    )
    return rows


def matched_points(fl: dict[str, Any], af: dict[str, Any]) -> list[list[Any]]:
    """Each side at each side's chosen recall: its cheapest sweep point (batch ms/query) reaching it."""
    rows = []
    targets = (("facelake's chosen", fl["recall_at_10"]), ("autofaiss's chosen", af["recall_at_10"]))
    for label, target in targets:
        row: list[Any] = [f"{label}: {target:.4f}"]
        for side in (fl, af):
            reaching = [p for p in side.get("sweep", []) if p["recall_at_10"] >= target - 1e-9]
            best = min(reaching, key=lambda p: p["batch_ms_per_query"]) if reaching else None
            row.append(
                "not reached in its sweep"
                if best is None
                else f"{best['params']}: {best['recall_at_10']:.4f}, {best['batch_ms_per_query']:.2f} / "
                f"{best['single_ms_per_query']:.2f} ms"
            )
        rows.append(row)
    return rows


def sweep_table(r: dict[str, Any]) -> str:
    chosen = r["params_text"]
    return markdown_table(
        ["params", "recall@10", "batch ms/query (QPS)", "single ms/query (QPS)"],
        [
            [
                f"**{p['params']}** (chosen)" if p["params"] == chosen else p["params"],
                f"{p['recall_at_10']:.4f}",
                f"{p['batch_ms_per_query']:.2f} ({p['qps_batch']:,.0f})",
                f"{p['single_ms_per_query']:.2f} ({p['qps_single']:,.0f})",
            ]
            for p in r["sweep"]
        ],
    )


def growth_rows(results: dict[int, dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for n, sides in sorted(results.items()):
        for side in ("facelake", "autofaiss"):
            r = sides.get(side)
            if r is None:
                continue
            if r.get("failed"):
                rows.append([f"{n:,}", side, f"**{r['failed']}**", "", "", "", "", "", "", "", ""])
                continue
            steps = r["steps"]
            if side == "facelake":
                detail = ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
                train = f"{r['plan']['train_size']:,}"
            else:
                detail = ", ".join(f"{k} {v:.1f}" for k, v in steps.items() if v)
                train = "–"
            rows.append(
                [
                    f"{n:,}",
                    side,
                    f"`{r['factory']}`",
                    r["params_text"],
                    train,
                    f"{r['build_seconds']:.1f}",
                    detail,
                    f"{r['recall_at_10']:.4f}",
                    f"{r['search']['qps_batch']:,.0f} / {r['search']['qps_single']:,.0f}",
                    _gib(r["peak_rss"]),
                    _gib(r["index_bytes"]),
                ]
            )
    return rows


def growth_exponents(results: dict[int, dict[str, Any]]) -> list[str]:
    sizes = sorted(results)
    lines = []
    if len(sizes) < 2:
        return lines
    a, b = sizes[0], sizes[-1]
    for side in ("facelake", "autofaiss"):
        ra, rb = results[a].get(side), results[b].get(side)
        if not ra or not rb or ra.get("failed") or rb.get("failed"):
            continue
        ratio = rb["build_seconds"] / ra["build_seconds"]
        exponent = math.log(ratio) / math.log(b / a)
        lines.append(
            f"{side}: build time x{ratio:.1f} for x{b / a:.0f} vectors (n^{exponent:.2f}); "
            f"recall@10 {ra['recall_at_10']:.4f} → {rb['recall_at_10']:.4f}"
        )
    return lines


def report(args: argparse.Namespace, info: dict[str, Any], results: dict[int, dict[str, Any]]) -> None:
    print(f"\n## FAISS index build vs autofaiss ({info['command']})\n")
    m = info["machine"]
    print(
        f"{m['usable_cores']} cores, {m['mem_gib']} GiB, load at start {m['load_at_start']}; "
        f"{args.dim}-d clustered_vectors(spread={args.spread}, clusters={args.clusters or 'n/20'}, "
        f"seed={args.seed}); {args.queries:,} held-out query rows (seed {QUERY_SEED}), self dropped, exact "
        f"top-10 truth; memory budget {_gib(args.memory_budget)}; FAISS omp threads {args.threads}."
    )
    if "autofaiss_env" in info:
        print(f"autofaiss venv: {info['autofaiss_env']}")
    head = results.get(args.n, {})
    fl, af = head.get("facelake"), head.get("autofaiss")
    print(f"\n### Head to head at n = {args.n:,}\n")
    print(markdown_table(SIDE_HEADERS, [side_row(r) for r in (fl, af) if r]))
    if fl and af and not fl.get("failed") and not af.get("failed"):
        print("\n" + markdown_table(["goal", "facelake", "autofaiss", "ratio", "verdict"], goals(fl, af)))
        print(
            "\nEach side at each chosen recall: the cheapest point of its own sweep reaching it (batch / "
            "single ms per query, timed like the head-to-head figures):\n\n"
            + markdown_table(["at recall", "facelake", "autofaiss"], matched_points(fl, af))
        )
    for r in (fl, af):
        if not r or r.get("failed"):
            continue
        print(f"\n{r['side']} steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items()))
        if r["side"] == "facelake":
            print(f"facelake code sha256[:12]: {r['code_sha256_12']}")
            print(
                f"facelake RSS: start {_gib(r['rss_start'])}, vectors loaded {_gib(r['rss_vectors_loaded'])}, "
                "peak by stage " + ", ".join(f"{k} {_gib(v)}" for k, v in r["peak_rss_by_stage"].items())
            )
            print(
                "facelake curve: "
                + "; ".join(
                    f"nprobe {p['nprobe']}: {p['recall_at_10']:.4f} / {p['ms_per_query']:.3f} ms"
                    for p in r["curve"]
                )
            )
            print(
                f"facelake's own recall at its nprobe: {r['own_recall_at_10']} (this benchmark: {r['recall_at_10']:.4f})"
            )
            print(
                f"\nfacelake sweep ({r['sweep'][0]['single_queries'] if r['sweep'] else 0} single queries):\n"
            )
            print(sweep_table(r))
        else:
            print(
                f"autofaiss RSS before build {_gib(r['rss_before_build'])}; metric_infos {r['metric_infos']}"
            )
            print(
                f"\nautofaiss sweep ({r['sweep'][0]['single_queries'] if r['sweep'] else 0} single queries):\n"
            )
            print(sweep_table(r))
    print("\n### Growth\n")
    print(
        markdown_table(
            [
                "n",
                "side",
                "factory",
                "search params",
                "train vectors",
                "build s",
                "steps s",
                "recall@10",
                "QPS batch / single",
                "peak RSS",
                "index",
            ],
            growth_rows(results),
        )
    )
    for line in growth_exponents(results):
        print(f"\n{line}")


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    from jobs.index.plan import DEFAULT_EXACT_BELOW, DEFAULT_RECALL_TARGET, parse_bytes

    def ints(text: str) -> list[int]:
        return [int(float(v)) for v in text.split(",") if v]

    parser = argparse.ArgumentParser(prog="./dev bench index_scale", description=__doc__)
    parser.add_argument("--n", type=lambda v: int(float(v)), default=1_000_000, help="head-to-head size (1M)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--memory-budget", type=parse_bytes, default=parse_bytes("4G"), help="both sides (4G)"
    )
    parser.add_argument(
        "--shards", type=int, default=1, help="facelake shards (1: one index, like autofaiss)"
    )
    parser.add_argument(
        "--sizes", type=ints, default=[100_000, 1_000_000], help="growth sizes (--n is always run)"
    )
    parser.add_argument("--recall-target", type=float, default=DEFAULT_RECALL_TARGET)
    parser.add_argument("--exact-below", type=int, default=DEFAULT_EXACT_BELOW)
    parser.add_argument("--queries", type=int, default=1000, help="held-out query rows, batch size (1000)")
    parser.add_argument("--single", type=int, default=200, help="queries timed one at a time (200)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per QPS figure, best kept (3)")
    parser.add_argument(
        "--sweep-single", type=int, default=50, help="single queries per sweep point (50; batch: --queries)"
    )
    parser.add_argument("--sweep-repeats", type=int, default=2, help="timings per sweep point, best kept (2)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS omp threads, both sides (2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread", type=float, default=0.9)
    parser.add_argument("--clusters", type=int, default=0, help="clusters (0: clustered_vectors' n/20)")
    parser.add_argument(
        "--autofaiss",
        choices=("all", "head", "none"),
        default="all",
        help="run autofaiss at every size, at --n only, or not at all (all)",
    )
    parser.add_argument(
        "--autofaiss-available",
        type=parse_bytes,
        default=None,
        help="autofaiss current_memory_available (default 2x the budget)",
    )
    parser.add_argument(
        "--autofaiss-query-ms",
        type=float,
        default=10.0,
        help="autofaiss max_index_query_time_ms, the latency it tunes to (10, its default)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per side's subprocess (1800)")
    args = parser.parse_args(argv)
    args.autofaiss_available = args.autofaiss_available or 2 * args.memory_budget
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rec = Recorder()
    info: dict[str, Any] = {
        "command": command_line("index_scale", argv),
        "args": vars(args),
        "machine": machine(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    python = None
    if args.autofaiss != "none":
        python, how = autofaiss_python()
        versions = subprocess.run(
            [
                str(python),
                "-c",
                "import autofaiss, faiss, numpy; print(autofaiss.__version__, faiss.__version__, numpy.__version__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        info["autofaiss_env"] = (
            f"{AUTOFAISS_VENV.relative_to(PROJECT_ROOT)} ({how}): autofaiss {versions[0]}, "
            f"faiss-cpu {versions[1]}, numpy {versions[2]}"
        )
    results: dict[int, dict[str, Any]] = {}
    for n in sorted(set(args.sizes) | {args.n}):
        ds = dataset(n, args, rec)
        results[n] = {"facelake": run_facelake(ds, args, rec), "data": ds.meta}
        if python is not None and (args.autofaiss == "all" or n == args.n):
            results[n]["autofaiss"] = run_autofaiss(ds, args, rec, python)
    info["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    report(args, info, results)
    path = save_result(
        f"index_scale-n{args.n}",
        {**info, "phases": rec.phases, "results": {str(n): r for n, r in results.items()}},
    )
    print(f"\nresult JSON: {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(facelake_worker(sys.argv[1]))
