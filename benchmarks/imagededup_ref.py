"""The imagededup package as a near-duplicate reference: install on demand, run find_duplicates on given hashes."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.brute import Pairs

BENCH_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_ROOT.parent


@dataclass
class Run:
    """One find_duplicates call: method, input size, wall seconds, and the ordered pairs it returned."""

    method: str
    n: int
    seconds: float
    pairs: Pairs


def install_command() -> list[str]:
    """uv (installed next to the venv's python by ./dev) installing benchmarks/requirements.txt, pinned set kept."""
    uv = Path(sys.executable).with_name("uv")
    return [
        str(uv) if uv.exists() else (shutil.which("uv") or "uv"),
        "pip",
        "install",
        "--python",
        sys.executable,
        "-r",
        str(BENCH_ROOT / "requirements.txt"),
        "-c",
        str(PROJECT_ROOT / "requirements.lock"),
        "-c",
        str(BENCH_ROOT / "constraints.txt"),
    ]


def ensure_imagededup() -> tuple[str | None, str]:
    """(version, note): import imagededup, installing benchmarks/requirements.txt first if needed.

    Returns (None, why) when it cannot be installed or imported.
    """
    try:
        import imagededup
    except ImportError:
        cmd = install_command()
        print("[bench] installing benchmark requirements: " + " ".join(cmd), file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, "install failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
        try:
            import imagededup
        except ImportError as exc:
            return None, f"installed but not importable: {exc}"
    try:
        from imagededup.methods import PHash  # noqa: F401 - imports torch through imagededup.methods.cnn
    except Exception as exc:  # noqa: BLE001 - report any import failure verbatim
        return None, f"imagededup.methods not importable: {type(exc).__name__}: {exc}"
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return imagededup.__version__, "ok"


def find_duplicates(hashes: np.ndarray, threshold: int, method: str, workers: int) -> Run:
    """imagededup's PHash().find_duplicates on an encoding map {id: 16 hex chars}; ids are the array positions."""
    from imagededup.methods import PHash

    encoding_map = {str(i): f"{int(v):016x}" for i, v in enumerate(hashes)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "num_enc_workers has no effect since encodings are provided"
        t0 = time.perf_counter()
        found = PHash(verbose=False).find_duplicates(
            encoding_map=encoding_map,
            max_distance_threshold=threshold,
            scores=True,
            search_method=method,
            num_dist_workers=workers,
        )
        seconds = time.perf_counter() - t0
    a, b, d = [], [], []
    for key, dups in found.items():
        for other, score in dups:
            a.append(int(key))
            b.append(int(other))
            d.append(int(score))
    return Run(
        method,
        int(hashes.shape[0]),
        seconds,
        (np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), np.array(d, dtype=np.uint8)),
    )
