"""`facelake history TABLE`: which run made each version of a table, from what (newest first)."""

from __future__ import annotations

import argparse
import json
import sys

from jobs.commands.sql import format_table, jsonable
from jobs.core.config import add_config_arguments, command_main, config_from_args
from jobs.core.runs import configure_logging

COLUMNS = [
    "version",
    "timestamp",
    "operation",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "job",
    "run_id",
    "dag_run_id",
    "inputs",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="facelake table, e.g. faces")
    parser.add_argument("--limit", type=int, default=20, help="newest N versions (default 20)")
    parser.add_argument("--json", action="store_true", help="JSON lines (inputs parsed) instead of a table")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print the table's history."""
    from jobs.lake.api import Lake, history_records

    config = config_from_args(args)
    configure_logging(config.log_level if args.log_level else "WARNING")
    records = history_records(Lake.open(config=config), args.table, args.limit)
    if args.json:
        for record in records:
            print(json.dumps(jsonable(record)))
    else:
        print(format_table(COLUMNS, [[r[c] for c in COLUMNS] for r in records], width=40))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``facelake history`` as a program: ``python -m jobs.commands.history --help``."""
    return command_main("history", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
