"""Create the lake: every facelake table from `schemas/`, empty, with its Delta properties (idempotent)."""

from __future__ import annotations

import argparse
import sys

from jobs.core.config import add_config_arguments, command_main
from jobs.core.runs import start_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Create every missing table under the lake root and print where they are."""
    from jobs.lake.session import get_spark
    from jobs.lake.tables import init_lake

    config, ctx = start_run(args, "init")
    created = init_lake(get_spark(config, "facelake-init"), config.lake)
    for name, uri in created.items():
        print(f"{name:16s} {uri}")
    ctx.count("tables", len(created))
    print(ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``facelake init`` as a program: ``python -m jobs.commands.init --help``."""
    return command_main("init", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
