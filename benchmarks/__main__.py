"""Dispatch ``python -m benchmarks NAME [options]`` to the named benchmark's ``main(argv)``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, tuple[str, str]] = {
    "ingest": ("benchmarks.ingest", "ingest throughput on a sample drop vs a plain Python decode loop"),
    "embed": (
        "benchmarks.embed",
        "embed job on local[N] vs a single-process loop over the same insightface models",
    ),
    "neardup": ("benchmarks.neardup", "near-duplicate pHash join vs numpy brute force and imagededup"),
    "neardup_scale": (
        "benchmarks.neardup_scale",
        "radius-12 candidates at 100k/1M (Spark vs FAISS), lfw-dev candidates + verification, copy recall",
    ),
    "index_scale": (
        "benchmarks.index_scale",
        "FAISS index build at 100k/1M: jobs.index mechanics vs autofaiss build_index (same vectors, budget)",
    ),
    "erasure_scale": (
        "benchmarks.erasure_scale",
        "erasure at 10k/100k/1M faces: run_erasure vs DELETE + VACUUM RETAIN 0 (time, bytes, history survival)",
    ),
}


def usage() -> str:
    lines = ["usage: ./dev bench NAME [options]   (NAME --help for its options)", "", "benchmarks:"]
    lines += [f"  {name:13s} {about}" for name, (_, about) in BENCHMARKS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
