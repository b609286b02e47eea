"""Set-up check: Java 17+ present, Delta's jars resolved from Maven Central into the local cache."""

from __future__ import annotations

import argparse
import sys

from jobs.core.config import add_config_arguments, command_main, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jobs.lake.session import (
        SetupError,
        jar_cache_dir,
        java_major_version,
        require_java,
        resolve_delta_jars,
    )

    config = config_from_args(args)
    try:
        require_java()
        jars = resolve_delta_jars(config)
    except SetupError as exc:
        print(f"facelake setup: {exc}", file=sys.stderr)
        return 2
    print(f"Java {java_major_version()} OK; Delta jars ready: {len(jars)} in {jar_cache_dir(config)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``facelake setup`` as a program: ``python -m jobs.commands.bootstrap --help``."""
    return command_main("setup", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
