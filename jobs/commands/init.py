"""Create the lake: every facelake table from `schemas/`, empty, with its Delta properties (idempotent)."""

from __future__ import annotations

import argparse
import sys

from jobs.core.config import add_config_arguments, config_from_args, log_config
from jobs.core.runs import RunContext, configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Create every missing table under the lake root and print where they are."""
    from jobs.lake.session import get_spark
    from jobs.lake.tables import init_lake

    config = config_from_args(args)
    configure_logging(config.log_level)
    ctx = RunContext(job="init")
    log_config(config, "init")
    created = init_lake(get_spark(config, "facelake-init"), config.lake)
    for name, uri in created.items():
        print(f"{name:16s} {uri}")
    ctx.count("tables", len(created))
    print(ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facelake init", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
