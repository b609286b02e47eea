"""End-to-end demo through Airflow: a fresh sample drop -> nightly DAG -> UK erasure DAG (dry run, then execute)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobs.core.config import add_config_arguments, config_from_args
from jobs.orchestration.airflow_local import PROJECT_ROOT, airflow_env, migrate_db
from jobs.orchestration.erasure_dag import DAG_ID as ERASURE_DAG
from jobs.orchestration.erasure_dag import headline_figures
from jobs.orchestration.runner import INPROCESS, MODES, RUNNER_ENV

NIGHTLY_DAG = "facelake_nightly"
# What the demo made, so a rerun may wipe it (and nothing else) for a fresh start.
MARKER = ".facelake-demo"
TICKET = "DEMO-UK-1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", default="demo", help="folder for the landing root and, unless --lake is given, the lake"
    )
    parser.add_argument("--n", type=int, default=200, help="manifest lines in the sample drop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--runner",
        choices=MODES,
        default=INPROCESS,
        help="how tasks run jobs (FACELAKE_TASK_RUNNER); inprocess (default) keeps one JVM for the whole demo",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Airflow's and the jobs' logs here (default: into WORKDIR/demo.log)",
    )
    add_config_arguments(parser)


@contextmanager
def _logs_to(logfile: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr (Airflow, the jobs, the JVM) to ``logfile`` for a while."""
    if logfile is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(logfile, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _fresh(workdir: Path, folders: list[Path]) -> None:
    """Empty ``folders`` under a workdir the demo made before (it holds MARKER); touch nothing else."""
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise SystemExit(
            f"facelake demo: {workdir} exists and was not made by the demo; choose another --workdir"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by facelake demo; its lake and landing are wiped by the next run\n")
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)


def _airflow_environment(runner: str) -> None:
    """The embedded Airflow (SQLite under .cache/airflow, DAGs from dags/, plugins/) for this
    process: set before Airflow is first imported, as Airflow reads its configuration at import."""
    for key, value in airflow_env().items():
        if key.startswith("AIRFLOW") or key == "PATH":
            os.environ[key] = value
    os.environ[RUNNER_ENV] = runner


def _load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{dag_id}.py"))
    if bag.import_errors:
        raise SystemExit(f"facelake demo: {dag_id} does not load: {bag.import_errors}")
    return bag.dags[dag_id]


def _run(dag_id: str, conf: dict[str, Any]) -> tuple[Any, dict[str, float], float]:
    """``dag.test()``: a real DagRun in the SQLite DB, tasks through Airflow's task runner, in this process."""
    started = time.monotonic()
    run = _load_dag(dag_id).test(run_conf=conf)
    wall = time.monotonic() - started
    tasks = {}
    for ti in sorted(run.get_task_instances(), key=lambda t: (t.start_date is None, t.start_date)):
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        seconds = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else None
        tasks[name] = (str(ti.state), seconds)
    return run, tasks, wall


def _note(run: Any) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.get(DagRun, run.id).note or ""


def _report_summary(run: Any) -> dict[str, Any]:
    """The erasure summary the report task returned (through its XCom)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        for task_id, key in (("report", "summary"), ("plan", "summary")):
            row = session.scalars(
                XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key=key)
            ).first()
            if row is not None:
                return XComModel.deserialize_value(row)
    return {}


def _lake_figures(config) -> dict[str, Any]:
    """Rows of the lake the table shows: images, faces, UK-tagged rows, vectors of the current index build."""
    from pyspark.sql import functions as F

    from jobs.index.registry import NoIndexBuildError, current_build
    from jobs.lake.session import get_spark
    from jobs.lake.tables import read_table

    spark = get_spark(config, "facelake-demo")
    out: dict[str, Any] = {}
    uk = 0
    for name in ("images", "faces", "image_sources"):
        frame = read_table(spark, config.lake, name)
        out[name] = frame.count()
        uk += frame.where(F.array_contains("jurisdiction_tags", "uk")).count()
    out["uk_rows"] = uk
    try:
        out["index_vectors"] = current_build(spark, config.lake).n_vectors
    except NoIndexBuildError:
        out["index_vectors"] = 0
    return out


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Generate a fresh sample drop in a landing folder, run the nightly DAG on it, then the erasure DAG
    for the UK in dry run and in execute mode (all through Airflow's ``dag.test()``); print a
    before/after table, the runs' notes and the wall time of every task."""
    total = time.monotonic()
    workdir = Path(args.workdir).resolve()
    landing = workdir / "landing"
    # A fresh lake each time: after a previous demo's erasure the UK sample would be suppressed.
    _fresh(workdir, [landing] + ([workdir / "lake"] if args.lake is None else []))
    if args.lake is None:
        args.lake = str(workdir / "lake")
    config = config_from_args(args)
    _airflow_environment(args.runner)

    from jobs.testdata.sample_drop import generate_sample_drop

    started = time.monotonic()
    migrated = migrate_db()
    if migrated.returncode != 0:
        print((migrated.stdout + migrated.stderr)[-3000:], file=sys.stderr)
        print("facelake demo: airflow db migrate failed (output above)", file=sys.stderr)
        return 1
    setup_seconds = time.monotonic() - started
    drop = landing / f"drop-{args.seed:04d}"
    sample = generate_sample_drop(drop, n=args.n, seed=args.seed, overwrite=True)
    (drop / "answer_key.json").unlink(missing_ok=True)  # test tooling, not part of a crawl drop
    print(f"sample drop: {sample.lines} manifest lines, {sample.files} files in {drop}")
    print(f"lake: {config.lake}; Airflow home {os.environ['AIRFLOW_HOME']} (SQLite); runner {args.runner}")

    timings: list[tuple[str, str, str, str]] = []

    logfile = None if args.verbose else workdir / "demo.log"
    if logfile is not None:
        logfile.write_text("")
        print(f"Airflow's and the jobs' logs: {logfile}")

    def dag_run(label: str, dag_id: str, conf: dict[str, Any]) -> Any:
        print(f"\n== {label}: Airflow DAG {dag_id}", flush=True)
        with _logs_to(logfile):
            run_, tasks, wall = _run(dag_id, conf)
        states = ", ".join(f"{t} {st}" for t, (st, _) in tasks.items())
        print(f"{dag_id}: {run_.state} in {wall:.1f} s ({states})", flush=True)
        for task, (state, seconds) in tasks.items():
            timings.append((label, task, state, "-" if seconds is None else f"{seconds:.1f}"))
        timings.append((label, "(DAG run wall time)", str(run_.state), f"{wall:.1f}"))
        if str(run_.state) != "success":
            raise SystemExit(f"facelake demo: {dag_id} run {run_.run_id} ended {run_.state}: {tasks}")
        return run_

    dag_run("nightly", NIGHTLY_DAG, {"landing": str(landing), "lake": config.lake})
    with _logs_to(logfile):
        before = _lake_figures(config)
    request = {"selector": "jurisdiction", "value": "uk", "ticket": TICKET, "requested_by": "facelake demo"}
    dry = dag_run("erasure dry run", ERASURE_DAG, {**request, "mode": "dry_run", "lake": config.lake})
    with _logs_to(logfile):
        after_dry = _lake_figures(config)
    done = dag_run("erasure execute", ERASURE_DAG, {**request, "mode": "execute", "lake": config.lake})
    with _logs_to(logfile):
        after = _lake_figures(config)
    planned, executed = headline_figures(_report_summary(dry)), headline_figures(_report_summary(done))

    print("\n== Before / after")
    rows = [("", "after nightly", "after dry run", "after execute")]
    for key, label in (
        ("images", "images"),
        ("faces", "faces"),
        ("image_sources", "image sources"),
        ("uk_rows", "UK rows (images+faces+sources)"),
        ("index_vectors", "index vectors (current build)"),
    ):
        rows.append((label, str(before[key]), str(after_dry[key]), str(after[key])))
    rows.append(("UK images planned / erased", "-", str(planned["images"]), str(executed["images"])))
    rows.append(("history survival", "-", planned["history_survival"], executed["history_survival"]))
    rows.append(("verification", "-", planned["verification"], executed["verification"]))
    print(_table(rows))
    print(f"\ndry run report: {planned['report_path']}")
    print(f"execute report: {executed['report_path']}")
    print(f"\nnote of the dry run ({dry.run_id}):\n  " + _note(dry).replace("\n\n", "\n  "))
    print(f"note of the execute run ({done.run_id}):\n  " + _note(done).replace("\n\n", "\n  "))

    print("\n== Wall time per task (seconds)")
    print(_table([("DAG run", "task", "state", "seconds"), *timings]))
    print(f"\nairflow db migrate (set-up, idempotent): {setup_seconds:.1f} s")
    whole = time.monotonic() - total
    print(f"whole demo: {whole:.1f} s ({whole - setup_seconds:.1f} s after set-up)")
    ok = after["uk_rows"] == 0 and executed["verification"] == "passed" and after_dry == before
    if not ok:
        print("facelake demo: UK rows remain or verification did not pass", file=sys.stderr)
        return 1
    print(f'Explore: facelake sql "SELECT mode, status, counts FROM erasure_audit" --lake {config.lake}')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facelake demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
