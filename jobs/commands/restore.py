"""`facelake restore TABLE VERSION`: restore a table to an earlier version, refusing any version an erasure purged."""

from __future__ import annotations

import argparse
import sys

from jobs.core.config import add_config_arguments, command_main
from jobs.core.runs import start_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="facelake table, e.g. images")
    parser.add_argument("version", type=int, help="version to restore (see `facelake history TABLE`)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Restore one table as a new commit that records this run."""
    from jobs.lake.api import Lake

    config, ctx = start_run(args, "restore")
    lake = Lake.open(config=config)
    before = lake.latest_version(args.table)
    after = lake.restore(args.table, args.version, ctx)
    print(f"{args.table}: version {before} -> {after} (restored to {args.version}), run {ctx.run_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``facelake restore`` as a program: ``python -m jobs.commands.restore --help``."""
    return command_main("restore", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
