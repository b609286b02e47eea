"""Deterministic sample crawl-drop generator with an answer key for ingest, dedupe and jurisdiction tests."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jobs.testdata.answer_key import (
    ANSWER_KEY_NAME,
    ANSWER_KEY_VERSION,
    MANIFEST_NAME,
    AnswerKeyWriter,
    prepare_out_dir,
)
from jobs.testdata.bad_files import BYTE_LIMIT_FOR_TESTS, PIXEL_LIMIT_FOR_TESTS
from jobs.testdata.files import IMAGES_DIR
from jobs.testdata.generator import Generator
from jobs.testdata.plan import ALL_KINDS, COVERAGE_PLAN, EXPECTED_BY_KIND, NEAR_KINDS, OK
from jobs.testdata.summary import SampleDropSummary

__all__ = [
    "ALL_KINDS",
    "ANSWER_KEY_NAME",
    "ANSWER_KEY_VERSION",
    "BYTE_LIMIT_FOR_TESTS",
    "COVERAGE_PLAN",
    "EXPECTED_BY_KIND",
    "IMAGES_DIR",
    "MANIFEST_NAME",
    "NEAR_KINDS",
    "OK",
    "PIXEL_LIMIT_FOR_TESTS",
    "SampleDropSummary",
    "add_arguments",
    "generate_sample_drop",
    "main",
    "run",
]


def generate_sample_drop(
    out_dir: Path,
    n: int,
    seed: int = 0,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SampleDropSummary:
    """Write a drop of ``n`` manifest lines (plus images and ``answer_key.json``) into ``out_dir``.

    Output is byte-identical for the same (n, seed). Every category exists once ``n >= 60``;
    the first k lines of a drop do not depend on ``n``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, overwrite)
    gen = Generator(out_dir, n, seed)
    key_tmp = out_dir / (ANSWER_KEY_NAME + ".part")
    # Binary: the manifest is UTF-8 text except for the lines that are deliberately not (invalid_utf8).
    with (
        (out_dir / MANIFEST_NAME).open("wb") as manifest,
        key_tmp.open("w", encoding="utf-8", newline="\n") as key_file,
    ):
        key = AnswerKeyWriter(key_file)
        gen.run(manifest, key, progress)
        summary = gen.summary()
        gen.finish_key(key, summary)
    # Renamed into place only when complete: a half-written key is never read as a whole one.
    key_tmp.replace(out_dir / ANSWER_KEY_NAME)
    return summary


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``sample-drop`` command."""
    parser.add_argument(
        "dir", type=Path, help="folder to write the drop into (must be empty unless --overwrite)"
    )
    parser.add_argument("--n", type=int, default=200, help="number of manifest lines (default 200)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; same n and seed give identical bytes"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace manifest.jsonl, answer_key.json and images/ of an earlier drop in DIR",
    )


def run(args: argparse.Namespace) -> int:
    """Generate the drop described by ``args`` and print a short summary; returns the exit code."""
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(
            f"sample-drop: {done}/{total} lines ({done * 100 // total}%) {time.monotonic() - started:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    try:
        summary = generate_sample_drop(
            args.dir,
            args.n,
            args.seed,
            overwrite=args.overwrite,
            progress=progress if args.n >= 5000 else None,
        )
    except ValueError as exc:
        print(f"sample-drop: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    s = summary.to_dict()
    print(f"sample drop written to {s['out_dir']} in {elapsed:.1f}s (n={s['n']}, seed={s['seed']})")
    print(
        f"  lines {s['lines']}: ok {s['ok_lines']}, quarantined {s['quarantined_lines']}; "
        f"files {s['files']} ({s['total_bytes'] / 1e6:.1f} MB)"
    )
    print(
        f"  distinct contents {s['distinct_contents']} (face expected {s['face_expected_contents']}); "
        f"exact dups {s['exact_dup_lines']}, near dups {s['near_dup_lines']}, mirrors {s['mirror_lines']}"
    )
    print(f"  UK sources: {s['uk_lines']} lines ({s['uk_ok_lines']} ingestible)")
    print("  quarantine: " + ", ".join(f"{k} {v}" for k, v in s["by_expected"].items() if k != OK))
    print(f"  answer key: {Path(s['out_dir']) / ANSWER_KEY_NAME}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m jobs.testdata.sample_drop DIR --n 50 --seed 1``."""
    parser = argparse.ArgumentParser(prog="python -m jobs.testdata.sample_drop", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
