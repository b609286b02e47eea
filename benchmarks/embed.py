"""Embed throughput: ``jobs.faces.embed.embed`` on local[N] vs a plain single-process loop over the same models.

Both sides run the same insightface models (SCRFD detect -> ``norm_crop`` -> ArcFace-style embed) on
the same canonical images of a lake ingested from a sample drop, with the same total thread budget:
Spark ``local[N]`` (N tasks, ``cores // tasks`` onnxruntime threads each, as the job decides) vs one
Python process calling ``jobs.faces.runtime.analyse_images`` with N onnxruntime intra-op threads. Every
measured Spark run embeds into a fresh copy of the ingested lake, so each run does the same work.
Spark runs and reference loops are interleaved (reference, Spark, reference, Spark…) so that the
drifting load of this shared machine hits both sides alike.

The pack: by default a mixed pack (the real SCRFD-500M detector from ``../shared/models/det_500m``
+ the generated recognizer), or the generated pack when the real detector is not there.

Usage::

    ./dev bench embed --n 500                       # local[1] vs 1 thread, local[2] vs 2 threads, 2 repeats each
    ./dev bench embed --n 500 --cores 2 --repeats 1 # one configuration only
    ./dev bench embed --n 500 --no-gate             # without the expectations gate (isolates its cost)
    ./dev bench embed --n 500 --pack generated      # the generated detector instead of SCRFD-500M

A Spark run whose batch the expectations gate refuses (``QualityGateError``: nothing published) is
recorded as such, with its time until the refusal, and the benchmark goes on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.actions import profile_actions
from benchmarks.common import (
    BENCH_DIR,
    Recorder,
    add_spark_arguments,
    command_line,
    facelake_config,
    loadavg,
    machine,
    markdown_table,
    save_result,
    spark_facts,
)
from benchmarks.ingest import answer_key_summary, ensure_drop

WARMUP_IMAGES = 8
MODELS_SITE = " embed() localCheckpoint"
LAKES = BENCH_DIR / "lakes"


def real_detector() -> Path | None:
    from jobs.faces.packs import shared_models_dir

    path = shared_models_dir() / "det_500m" / "det_500m.onnx"
    return path if path.is_file() else None


def prepare_pack(which: str) -> tuple[Any, str]:
    """(ModelPack, description): the mixed pack (real SCRFD-500M + generated recognizer) or the generated one."""
    from jobs.faces.packs import resolve_pack
    from jobs.faces.testpack import GENERATED_PACK, build_generated_pack

    detector = real_detector() if which in ("auto", "mixed") else None
    if which == "mixed" and detector is None:
        raise SystemExit(
            "--pack mixed: no det_500m.onnx under ../shared/models/det_500m (or $FACELAKE_MODELS_DIR)"
        )
    if detector is None:
        return resolve_pack(
            GENERATED_PACK
        ), "generated pack (generated SCRFD-shaped detector + generated recognizer)"
    folder = build_generated_pack(BENCH_DIR / "models" / "mixed-det500m", detector_from=detector)
    return resolve_pack(str(folder)), f"mixed pack: real SCRFD-500M ({detector}) + generated recognizer"


def ensure_base_lake(spark: Any, config: Any, drop: Path, n: int, seed: int) -> Path:
    """The lake holding the ingested drop (no faces yet), built once and copied for every measured run."""
    from jobs.core.runs import RunContext
    from jobs.ingest.job import ingest_drop

    lake = LAKES / f"embed-base-n{n}-seed{seed}"
    done = lake / ".bench-ingested"
    if not done.is_file():
        shutil.rmtree(lake, ignore_errors=True)
        ingest_drop(
            spark, config.replace(lake=str(lake), drop=str(drop)), RunContext(job="bench-embed-ingest")
        )
        done.write_text("ok\n")
    return lake


def fresh_copy(base: Path, name: str) -> Path:
    target = LAKES / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target)
    return target


def canonical_images(spark: Any, lake: Path) -> list[tuple[str, bytes]]:
    """What the embed job will process on a fresh copy: canonical, unsuppressed images (ordered by id)."""
    from pyspark.sql import functions as F

    from jobs.lake.tables import read_table

    suppressed = (
        read_table(spark, str(lake), "suppression")
        .where("kind = 'sha256'")
        .select(F.col("value").alias("image_id"))
    )
    rows = (
        read_table(spark, str(lake), "images")
        .where(F.col("canonical_id") == F.col("image_id"))
        .join(suppressed, "image_id", "left_anti")
        .select("image_id", "content")
        .orderBy("image_id")
        .collect()
    )
    return [(r["image_id"], bytes(r["content"])) for r in rows]


def shrink_lake(spark: Any, lake: Path, keep: list[str]) -> None:
    """Delete every image but ``keep`` (the warm-up lake: loads the pack in every Python worker cheaply)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from jobs.lake.tables import table_uri

    DeltaTable.forPath(spark, table_uri(str(lake), "images")).delete(~F.col("image_id").isin(keep))


def reference_loop(
    pack: Any, settings: Any, items: list[tuple[str, bytes]], rec_batch: int, max_pixels: int
) -> dict[str, Any]:
    """Load the pack (not timed), warm it on a few images, then one timed pass over every image."""
    from jobs.faces.runtime import FaceStatus, analyse_images, load_pack

    loaded = load_pack(pack, settings)
    analyse_images(loaded, items[:WARMUP_IMAGES], rec_batch=rec_batch, max_pixels=max_pixels)
    t0 = time.perf_counter()
    results = analyse_images(loaded, items, rec_batch=rec_batch, max_pixels=max_pixels)
    seconds = time.perf_counter() - t0
    statuses = Counter(r.status.value for r in results)
    faces = sum(len(r.faces) for r in results if r.status is FaceStatus.OK)
    return {
        "seconds": seconds,
        "statuses": dict(statuses),
        "faces": faces,
        "providers": list(loaded.providers),
    }


@contextmanager
def profile_embed() -> Iterator[Any]:
    """Wall time of jobs/faces/embed.py by call site; the models stage is the ``localCheckpoint`` in ``embed()`` (the
    mapInPandas), the two in ``_publish()`` materialise the rows to validate and merge.

    Spark 4's classic DataFrame overrides the actions of ``pyspark.sql.DataFrame`` (which
    ``profile_actions`` patches), so they are patched here on the class that actually runs.
    """
    from pyspark.sql.classic.dataframe import DataFrame

    import jobs.faces.embed

    with profile_actions(jobs.faces.embed, ("merge_new_rows", "merge_status", "refresh_tags")) as prof:
        saved = []
        for name in ("count", "collect", "first", "isEmpty", "localCheckpoint"):
            saved.append((name, getattr(DataFrame, name)))
            setattr(DataFrame, name, prof.wrap(getattr(DataFrame, name), name))
        try:
            yield prof
        finally:
            for name, original in reversed(saved):
                setattr(DataFrame, name, original)


def timed_gate(spark: Any, config: Any, run: Any, pack: Any, prof: Any, enabled: bool) -> Any:
    """The job's own expectations gate (as ``embed`` builds it), timed as one site; or a no-op gate."""
    if not enabled:
        return lambda _table, _rows: None
    from jobs.quality.gate import publish_gate

    return _TimedGate(publish_gate(spark, config, run, embedding_dim=pack.embedding_dim), prof)


class _TimedGate:
    """A ``PublishGate`` whose calls (one suite or ``check_all``) are timed as one site."""

    def __init__(self, gate: Any, prof: Any) -> None:
        self._call = prof.wrap(gate, "expectations gate")
        self.check_all = prof.wrap(gate.check_all, "expectations gate")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)


def models_stage_seconds(prof: Any) -> float:
    return sum(s for site, s in prof.seconds.items() if MODELS_SITE in site)


def profile_rows(prof: Any, total: float) -> list[list[Any]]:
    return [
        [str(r[0]).replace(MODELS_SITE, MODELS_SITE + " (models: mapInPandas)"), *r[1:]]
        for r in prof.rows(total)
    ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./dev bench embed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n",
        type=int,
        default=500,
        help="manifest lines in the sample drop (default 500: ~180 canonical images)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cores",
        default="1,2",
        help="comma-separated core counts: local[N] for Spark, N onnxruntime threads for the loop "
        "(default 1,2; --master is ignored)",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="measured runs per configuration and side (default 2)"
    )
    parser.add_argument(
        "--pack",
        choices=("auto", "mixed", "generated"),
        default="auto",
        help="mixed = real SCRFD-500M + generated recognizer; auto = mixed when det_500m.onnx exists",
    )
    parser.add_argument("--det-size", type=int, default=640, help="detector input size, square (default 640)")
    parser.add_argument("--rec-batch", type=int, default=32)
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="skip the expectations gate in the Spark runs (default: the job as shipped, gate on)",
    )
    add_spark_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:  # noqa: PLR0915 - a linear script
    args = parse_args(argv)
    from jobs.core.runs import RunContext, configure_logging
    from jobs.faces.embed import EmbedOptions, embed
    from jobs.faces.runtime import RuntimeSettings, session_options
    from jobs.lake.session import get_spark
    from jobs.quality.gate import QualityGateError

    cores_list = [int(c) for c in args.cores.split(",") if c.strip()]
    info: dict[str, Any] = {"command": command_line("embed", argv), "machine": machine()}
    rec = Recorder()
    with rec.phase("generate or reuse drop"):
        drop = ensure_drop(args.n, args.seed)
    key = answer_key_summary(drop)
    max_bytes, max_pixels = key["limits"]["byte_limit_for_tests"], key["limits"]["pixel_limit_for_tests"]
    pack, pack_about = prepare_pack(args.pack)
    det_size = (args.det_size, args.det_size)
    info["pack"] = {"about": pack_about, **pack.describe()}
    configure_logging("WARNING")

    runs: list[dict[str, Any]] = []
    items: list[tuple[str, bytes]] = []
    base: Path | None = None
    for cores in cores_list:
        config = facelake_config(
            args,
            spark_master=f"local[{cores}]",
            max_image_bytes=max_bytes,
            max_image_pixels=max_pixels,
            model_pack=pack.path,
        )
        with rec.phase(f"spark session local[{cores}] start"):
            spark = get_spark(config, f"facelake-bench-embed-{cores}")
        info.setdefault("spark", {})[f"local[{cores}]"] = spark_facts(spark)
        if base is None:
            with rec.phase("ingest base lake (once, reused)"):
                base = ensure_base_lake(spark, config, drop, args.n, args.seed)
            items = canonical_images(spark, base)
            info["data"] = {
                "drop": str(drop),
                "n": args.n,
                "seed": args.seed,
                "canonical_images": len(items),
                "bytes": sum(len(b) for _, b in items),
            }
        options = EmbedOptions(det_size=det_size, rec_batch=args.rec_batch)
        # Warm-up (not counted): starts the Python workers and loads the pack in each of them.
        warm = fresh_copy(base, f"embed-warmup-{cores}")
        shrink_lake(spark, warm, [i for i, _ in items[: 4 * cores]])
        with rec.phase(f"warm-up embed local[{cores}] ({4 * cores} images, not counted)"):
            embed(
                spark,
                config.replace(lake=str(warm)),
                RunContext(job="bench-embed-warmup"),
                options,
                gate=None if not args.no_gate else (lambda _t, _r: None),
            )
        shutil.rmtree(warm, ignore_errors=True)
        for repeat in range(1, args.repeats + 1):
            settings = RuntimeSettings(tuple(config.onnx_providers), cores, det_size)
            name = f"loop {cores} thread(s) #{repeat}"
            with rec.phase(name) as phase:
                phase.extra["proc_loadavg"] = Path("/proc/loadavg").read_text().strip()
                ref = reference_loop(pack, settings, items, args.rec_batch, max_pixels)
            runs.append(
                {
                    "side": "loop",
                    "cores": cores,
                    "repeat": repeat,
                    "phase": phase,
                    "seconds": ref["seconds"],
                    "faces": ref["faces"],
                    "statuses": ref["statuses"],
                    "threads": cores,
                    "tasks": 1,
                    "providers": ref["providers"],
                }
            )
            lake = fresh_copy(base, f"embed-run-{cores}-{repeat}")
            name = f"spark local[{cores}] #{repeat}"
            run_config, run_ctx = config.replace(lake=str(lake)), RunContext(job="bench-embed")
            with profile_embed() as prof, rec.phase(name) as phase:
                phase.extra["proc_loadavg"] = Path("/proc/loadavg").read_text().strip()
                gate = timed_gate(spark, run_config, run_ctx, pack, prof, not args.no_gate)
                try:
                    report = embed(spark, run_config, run_ctx, options, gate=gate)
                except QualityGateError as exc:  # the job refused to publish: record why, keep measuring
                    report = {"gate_refused": str(exc).splitlines()[:3]}
                    print(
                        f"[bench] {name}: expectations gate refused the batch: {report['gate_refused']}",
                        file=sys.stderr,
                        flush=True,
                    )
            statuses = {s: report.get(f"images_{s}", 0) for s in ("ok", "no_face", "failed")}
            runs.append(
                {
                    "side": "spark",
                    "cores": cores,
                    "repeat": repeat,
                    "phase": phase,
                    "seconds": phase.seconds,
                    "models_seconds": models_stage_seconds(prof),
                    "faces": report.get("faces_inserted"),
                    "statuses": statuses,
                    "threads": report.get("threads"),
                    "tasks": report.get("workers"),
                    "pack_loads_per_worker": report.get("max_pack_loads_per_worker"),
                    "profile": profile_rows(prof, phase.seconds),
                    "report": report,
                }
            )
            shutil.rmtree(lake, ignore_errors=True)
        spark.stop()  # the next core count needs a new SparkContext (another master)

    n_images = len(items)
    so = session_options(1)
    info["onnxruntime"] = {
        "providers": runs[0]["providers"] if runs else None,
        "det_size": f"{det_size[0]}x{det_size[1]}",
        "det_thresh": 0.5,
        "intra_op_num_threads": "N (loop) / cores // tasks (Spark)",
        "inter_op_num_threads": so.inter_op_num_threads,
        "execution_mode": str(so.execution_mode),
        "graph_optimization_level": str(so.graph_optimization_level),
        "rec_batch": args.rec_batch,
        "images_per_arrow_batch": EmbedOptions().images_per_batch,
        "onnxruntime_version": __import__("onnxruntime").__version__,
        "insightface_version": __import__("insightface").__version__,
    }

    rows = []
    for r in runs:
        ph = r["phase"]
        ref = next(
            (
                x
                for x in runs
                if x["side"] == "loop" and x["cores"] == r["cores"] and x["repeat"] == r["repeat"]
            ),
            None,
        )
        if r["side"] == "loop":
            label = f"loop, 1 process, {r['threads']} ort thread(s) #{r['repeat']}"
            rows.append(
                [
                    label,
                    r["seconds"],
                    n_images / r["seconds"],
                    r["faces"] / r["seconds"],
                    "-",
                    "-",
                    "1.00x",
                    ph.load(),
                    f"{ph.other_cores:.2f}",
                ]
            )
        else:
            label = (
                f"Spark local[{r['cores']}] ({r['tasks']} task(s) x {r['threads']} thread(s)) #{r['repeat']}"
            )
            if r["report"].get("gate_refused"):
                label += " (expectations gate refused: nothing published)"
            ms = r["models_seconds"]
            rows.append(
                [
                    label,
                    r["seconds"],
                    n_images / r["seconds"],
                    (r["faces"] or 0) / r["seconds"],
                    ms,
                    n_images / ms if ms else "-",
                    f"{r['seconds'] / ref['seconds']:.2f}x" if ref else "-",
                    ph.load(),
                    f"{ph.other_cores:.2f}",
                ]
            )
    faces = next((r["faces"] for r in runs if r["side"] == "loop"), 0)
    statuses = next((r["statuses"] for r in runs if r["side"] == "loop"), {})
    print("\n## Embed throughput\n")
    print(
        f"Command: `{info['command']}`  \nData: drop n={args.n} seed {args.seed} -> {n_images} canonical images "
        f"({info['data']['bytes'] / 1e6:.1f} MB), {faces} faces, statuses {statuses}; cores: "
        f"{info['machine']['usable_cores']}; {pack_about}; onnxruntime {info['onnxruntime']}\n"
    )
    print(
        markdown_table(
            [
                "run",
                "wall s (whole job)",
                "images/s",
                "faces/s",
                "models stage s (Spark)",
                "images/s (models stage)",
                "wall vs loop (same cores, same repeat)",
                "load 1-min (start→end)",
                "other procs' cores",
            ],
            rows,
        )
    )
    for r in runs:
        if r["side"] == "spark":
            print(f"\nSpark local[{r['cores']}] #{r['repeat']}: wall time by jobs/faces/embed.py call site\n")
            print(markdown_table(["site", "calls", "seconds", "share"], r["profile"]))
            print(
                f"statuses {r['statuses']}, faces {r['faces']}, pack loads per worker {r['pack_loads_per_worker']}"
            )
            if r["report"].get("gate_refused"):
                print("gate refused: " + " / ".join(r["report"]["gate_refused"]))
    info.update({"runs": runs, "phases": rec.phases, "loadavg_end": loadavg(), "pid": os.getpid()})
    print(f"\nfigures saved to {save_result(f'embed-n{args.n}', info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
