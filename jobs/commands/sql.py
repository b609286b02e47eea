"""`facelake sql "<query>"`: Spark SQL over every facelake table (latest or as of a version), printed or as JSON lines."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main, config_from_args
from jobs.core.runs import configure_logging

DEFAULT_LIMIT = 100
CELL_WIDTH = 48


def parse_versions(values: Sequence[str] | None) -> int | dict[str, int] | None:
    """``--version`` values: one ``N`` for every table, or ``table=N`` pairs (repeatable)."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return _version_number(values[0])
    versions: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--version {value!r}: give N for every table, or TABLE=N (repeatable)")
        versions[name.strip()] = _version_number(number)
    return versions


def _version_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"--version {text!r} is not a version number") from None
    if number < 0:
        raise ValueError(f"--version {number}: versions start at 0")
    return number


def jsonable(value: Any) -> Any:
    """A Spark value as JSON: timestamps in ISO-8601, binaries base64, rows as objects."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "asDict"):
        return {k: jsonable(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes | bytearray):
        text = f"<{len(value)} bytes>"  # never dump image bytes into a terminal
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(jsonable(value), ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(columns: list[str], rows: Iterable[Sequence[Any]], width: int = CELL_WIDTH) -> str:
    """Rows as an aligned text table; long cells are cut to ``width`` characters."""
    cells = [[_cell(v, width) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda values: " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()  # noqa: E731
    out = [line(columns), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def run_sql(
    config: FacelakeConfig,
    query: str,
    *,
    version: int | dict[str, int] | None = None,
    timestamp: str | None = None,
    as_json: bool = False,
    limit: int | None = DEFAULT_LIMIT,
    out: TextIO = sys.stdout,
    spark: Any = None,
) -> int:
    """Register the lake's tables as views, run ``query`` and write its result to ``out``.

    Returns the number of rows written. JSON lines stream every row (``limit`` None); the text
    table shows at most ``limit`` rows and says when it cut.
    """
    from jobs.lake.api import Lake, LakeError, first_line

    if spark is None:
        from jobs.lake.session import get_spark

        spark = get_spark(config, "facelake-sql")
    lake = Lake(spark, config.lake)
    registered = lake.register_views(version, timestamp)
    if not registered:
        raise LakeError(f"no facelake table is readable in lake {config.lake} at the requested version")
    try:
        result = spark.sql(query)
    except Exception as exc:
        missing = sorted(set(_named_tables(exc)) - set(registered))
        hint = f" (not registered at this version: {', '.join(missing)})" if missing else ""
        raise LakeError(f"query failed: {first_line(exc)}{hint}") from None
    written = 0
    if as_json:
        frame = result if limit is None else result.limit(limit)
        for row in frame.toLocalIterator():
            out.write(json.dumps(jsonable(row.asDict(recursive=True)), ensure_ascii=False) + "\n")
            written += 1
        return written
    fetched = result.limit(limit + 1).collect() if limit is not None else result.collect()
    shown = fetched[:limit] if limit is not None else fetched
    out.write(format_table(result.columns, [tuple(r) for r in shown]) + "\n")
    more = " (more rows not shown: raise --limit)" if limit is not None and len(fetched) > limit else ""
    out.write(f"({len(shown)} row{'s' if len(shown) != 1 else ''}){more}\n")
    return len(shown)


def _named_tables(exc: BaseException) -> list[str]:
    from jobs.lake.schemas import table_names

    text = str(exc)
    return [name for name in table_names() if f"`{name}`" in text]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "query", help='Spark SQL; every facelake table is a view, e.g. "SELECT count(*) FROM faces"'
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--version",
        action="append",
        metavar="N|TABLE=N",
        help="read every table as of version N, or one table as of N (repeatable)",
    )
    when.add_argument(
        "--timestamp", help="read every table as it was at this time (e.g. '2026-11-26 12:00:00')"
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help=f"at most this many rows (default {DEFAULT_LIMIT} for the table, all for --json)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run one query and print its result (logs go to stderr, results to stdout)."""
    config = config_from_args(args)
    configure_logging(config.log_level if args.log_level else "WARNING")
    limit = args.limit if args.limit is not None else (None if args.json else DEFAULT_LIMIT)
    run_sql(
        config,
        args.query,
        version=parse_versions(args.version),
        timestamp=args.timestamp,
        as_json=args.json,
        limit=limit,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``facelake sql`` as a program: ``python -m jobs.commands.sql --help``."""
    return command_main("sql", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
