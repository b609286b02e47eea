"""The `facelake` console script: every job as a subcommand, `facelake <command> --lake URI [options]`."""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). Modules are imported only when their command runs,
# so `facelake --help` stays fast and never starts Spark.
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": (
        "jobs.commands.bootstrap",
        "check Java 17+ and resolve Delta's jars once (then everything runs offline)",
    ),
    "sample-drop": (
        "jobs.testdata.sample_drop",
        "generate a deterministic sample crawl drop with an answer key",
    ),
    "init": ("jobs.commands.init", "create every facelake table under the lake root"),
    "ingest": ("jobs.ingest.job", "ingest a crawl drop into the lake"),
    "drops": (
        "jobs.ingest.drops",
        "nightly bookkeeping: find drops not fully ingested yet, mark a drop done, summarise the lake",
    ),
    "embed": (
        "jobs.faces.embed",
        "detect, align and embed faces of new canonical images (insightface on onnxruntime)",
    ),
    "link-faces": (
        "jobs.ingest.facelinks",
        "after embed: verify images whose faces embed close as copies; link them and union their tags",
    ),
    "index": (
        "jobs.index.build",
        "FAISS index: build (full, from a pinned faces version), update (CDF), prune, list",
    ),
    "search": ("jobs.index.search", "search the current index with a photo's faces (or --face-id)"),
    "erase": (
        "jobs.erasure.job",
        "erase a jurisdiction's, a domain's, some images' or a subject's records everywhere (dry run first)",
    ),
    "models": (
        "jobs.faces.packs",
        "show, fetch or build a face model pack (generated-test-pack, buffalo_l, a folder)",
    ),
    "retag": ("jobs.ingest.retag", "re-apply the jurisdiction policy to existing rows (no image re-read)"),
    "sql": (
        "jobs.commands.sql",
        "run Spark SQL over every table (latest or as of a version); a table or JSON lines",
    ),
    "history": ("jobs.commands.history", "which run made each version of a table, from what"),
    "restore": (
        "jobs.commands.restore",
        "restore a table to an earlier version (refuses versions an erasure purged)",
    ),
    "maintain": (
        "jobs.lake.maintain",
        "re-apply table properties, OPTIMIZE (Z-order) and VACUUM with the configured retention",
    ),
    "demo": ("jobs.commands.demo", "sample drop -> lake on the embedded default, with a summary"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only the module of the command named in ``argv`` (if any) is imported.

    Every command is listed for ``facelake --help`` from ``COMMANDS`` alone, so the top-level help
    never imports Spark, GX or onnxruntime; ``facelake ingest --help`` imports only the ingest job.
    """
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="facelake",
        description="facelake: batch platform for crawled face images (Spark + Delta Lake).",
        epilog="Every command takes --lake URI (default from config) and documents its options with --help.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser(argv).parse_args(argv)
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
