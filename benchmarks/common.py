"""Shared benchmark plumbing: machine facts, load measurement per phase, Spark session, result files."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Under the project, not /tmp: creating many files under /tmp is ~10x slower on this machine.
BENCH_DIR = PROJECT_ROOT / ".cache" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def _system_busy_jiffies() -> int:
    """CPU time (all cores) the machine spent busy since boot, in clock ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle


def _own_tree_jiffies() -> int:
    """CPU time of this process and all its live descendants (the Spark JVM, Python workers), in ticks.

    Children that already exited and were reaped count through their parent's cutime/cstime.
    """
    parent_of: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parent_of[pid] = int(rest[1])
        ticks[pid] = sum(int(v) for v in rest[11:15])  # utime stime cutime cstime
    me = os.getpid()
    total, stack = 0, [me]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


@dataclass
class Phase:
    """One timed phase: wall seconds, the load average around it, and the CPU other processes used."""

    name: str
    seconds: float = 0.0
    load_start: float = 0.0
    load_end: float = 0.0
    own_cores: float = 0.0
    """Average cores busy with this benchmark (this process and its children) during the phase."""
    other_cores: float = 0.0
    """Average cores busy with everything else on the machine during the phase."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        """CPU time this benchmark used in the phase (all its processes): less sensitive to contention than wall time."""
        return self.own_cores * self.seconds

    def load(self) -> str:
        return f"{self.load_start:.2f}→{self.load_end:.2f}"


class Recorder:
    """Collects the phases of one benchmark run."""

    def __init__(self) -> None:
        self.phases: list[Phase] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        rec = Phase(name, load_start=loadavg()[0])
        busy0, own0, t0 = _system_busy_jiffies(), _own_tree_jiffies(), time.perf_counter()
        print(f"[bench] {name} … (load {rec.load_start:.2f})", file=sys.stderr, flush=True)
        yield rec
        rec.seconds = time.perf_counter() - t0
        busy1, own1 = _system_busy_jiffies(), _own_tree_jiffies()
        rec.load_end = loadavg()[0]
        wall_ticks = max(rec.seconds * CLK_TCK, 1e-9)
        rec.own_cores = (own1 - own0) / wall_ticks
        rec.other_cores = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall_ticks
        self.phases.append(rec)
        print(
            f"[bench] {name}: {rec.seconds:.2f}s (load {rec.load()}, this run {rec.own_cores:.2f} cores, "
            f"others {rec.other_cores:.2f} cores)",
            file=sys.stderr,
            flush=True,
        )

    def get(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import numpy
    import pyspark

    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    try:
        from importlib.metadata import version

        delta = version("delta-spark")
    except Exception:  # noqa: BLE001 - informational only
        delta = "?"
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "mem_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "delta_spark": delta,
        "numpy": numpy.__version__,
        "load_at_start": loadavg(),
    }


def command_line(name: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run."""
    return " ".join(["./dev", "bench", name, *(shlex.quote(a) for a in argv)])


def add_spark_arguments(parser: Any) -> None:
    """Spark flags shared by the benchmarks (the defaults are the documented benchmark settings)."""
    g = parser.add_argument_group("spark")
    g.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    g.add_argument(
        "--shuffle-partitions",
        type=int,
        default=None,
        help="spark.sql.shuffle.partitions (default: FacelakeConfig's default)",
    )
    g.add_argument(
        "--driver-memory",
        default=None,
        help="spark.driver.memory, e.g. 8g (default: FacelakeConfig's driver_memory)",
    )
    g.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)"
    )


def facelake_config(args: Any, **changes: Any) -> Any:
    """A FacelakeConfig from the code defaults (no file, no environment) plus the benchmark's flags."""
    from jobs.core.config import FacelakeConfig

    # Shuffle and spill files next to the other benchmark files, not under /tmp (slow to create files in here).
    conf: dict[str, str] = {"spark.local.dir": str(BENCH_DIR / "spark-local")}
    for item in args.conf:
        key, _, value = item.partition("=")
        conf[key] = value
    config = FacelakeConfig()
    settings: dict[str, Any] = {
        "spark_master": args.master,
        "spark_ui": False,
        "spark_conf": conf,
        "log_level": "WARNING",
        **changes,
    }
    if args.shuffle_partitions is not None:
        settings["shuffle_partitions"] = args.shuffle_partitions
    if args.driver_memory:
        settings["driver_memory"] = args.driver_memory
    return config.replace(**settings)


def spark_facts(spark: Any) -> dict[str, Any]:
    """The Spark settings that matter for the figures, read back from the running session."""
    jvm = spark.sparkContext._jvm
    return {
        "master": spark.sparkContext.master,
        "default_parallelism": spark.sparkContext.defaultParallelism,
        "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        "driver_memory": spark.sparkContext.getConf().get("spark.driver.memory", "1g (default)"),
        "jvm_max_heap_gib": round(jvm.java.lang.Runtime.getRuntime().maxMemory() / 2**30, 2),
        "adaptive": spark.conf.get("spark.sql.adaptive.enabled"),
        "auto_broadcast_threshold": spark.conf.get("spark.sql.autoBroadcastJoinThreshold"),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def save_result(name: str, data: dict[str, Any]) -> Path:
    """Write the run's figures as JSON under .cache/bench/results/ and return the path."""
    out = BENCH_DIR / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"{name}-{stamp}.json"

    def default(value: Any) -> Any:
        if isinstance(value, Phase):
            return {**asdict(value), "cpu_seconds": value.cpu_seconds}
        if isinstance(value, Path):
            return str(value)
        return str(value)

    path.write_text(json.dumps(data, indent=2, default=default) + "\n")
    return path
