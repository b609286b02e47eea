"""The `facelake` console script: every job as a subcommand, `facelake <command> --lake URI [options]`."""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). Modules are imported only when their command runs,
# so `facelake --help` stays fast and never starts Spark.
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("jobs.setup", "check Java 17+ and resolve Delta's jars once (then everything runs offline)"),
    "sample-drop": ("jobs.sample_drop", "generate a deterministic sample crawl drop with an answer key"),
    "init": ("jobs.init_lake", "create every facelake table under the lake root"),
    "ingest": ("jobs.ingest", "ingest a crawl drop into the lake"),
    "embed": ("jobs.embed", "detect, align and embed faces of new canonical images (insightface on onnxruntime)"),
    "models": ("jobs.models", "show, fetch or build a face model pack (generated-test-pack, buffalo_l, a folder)"),
    "retag": ("jobs.retag", "re-apply the jurisdiction policy to existing rows (no image re-read)"),
    "sql": ("jobs.sql", "run Spark SQL over every table (latest or as of a version); a table or JSON lines"),
    "history": ("jobs.history", "which run made each version of a table, from what"),
    "restore": ("jobs.restore", "restore a table to an earlier version (refuses versions an erasure purged)"),
    "maintain": ("jobs.maintain", "re-apply table properties, OPTIMIZE (Z-order) and VACUUM with the configured retention"),
    "demo": ("jobs.demo", "sample drop -> lake on the embedded default, with a summary"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facelake",
        description="facelake: batch platform for crawled face images (Spark + Delta Lake).",
        epilog="Every command takes --lake URI (default from config) and documents its options with --help.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError) as exc:
        # Operator errors (bad path, bad setting): one clear line, no stack trace.
        print(f"facelake {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
