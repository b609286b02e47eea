"""The erasure DAG's pure parts: its trigger form's schema, form values -> `facelake erase` argv, summary -> note."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jobs.orchestration.subprocess_task import MAX_ARG_LENGTH, URI_RULES, URI_SCHEMA

# Stdlib only: dags/facelake_erasure.py imports this module at parse time.

DAG_ID = "facelake_erasure"
# The DAG's tasks, in order; each runs `facelake erase ... --until STEP` (the CLI's DAG_STEPS).
STEPS = ("plan", "erase", "purge", "index", "verify", "report")
EXECUTE_ONLY = ("erase", "purge", "index", "verify")
SELECTORS = ("jurisdiction", "source_domain", "image_hashes", "subject_photo")
MODES = ("dry_run", "execute")
# XCom keys: the step's summary (ids, counts, paths) and the text the run's note gets
# (plugins/facelake_run_notes.py copies it onto the DAG run when the run ends).
SUMMARY_KEY = "summary"
NOTE_KEY = "facelake_note"
NOTE_MAX_CHARS = 1000  # dag_run_note.content is a String(1000)

# JSON-schema patterns, written so ECMAScript (the UI form) and Python's re (jsonschema, the server)
# read them alike: "(?![\s\S])" is the end of the string in both ("$" would, in Python, also match
# before a trailing newline, letting "T-1\n" through).
# Ticket and requester: the erasure request's own charset (jobs.erasure.request._TEXT), first character
# a letter or digit (so never an option-like "-..."), 1-120 characters, no control characters.
TEXT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 .,:;/#@()+_-]{0,119}(?![\s\S])"
TEXT_RULES = "1-120 letters, digits, spaces and . , : ; / # @ ( ) + - _, starting with a letter or digit"
# Selector values: tags, ASCII host names or sha256 hex, separated by commas, spaces or newlines;
# no value may start with "-".
VALUE_PATTERN = r"^(?![\s\S]*(?:^|[\s,])-)[A-Za-z0-9._,\s-]*(?![\s\S])"
VALUE_RULES = (
    "letters, digits, '.', '-', '_' only; several values separated by commas or new lines; "
    "none starting with '-'"
)
_SPLIT = re.compile(r"[\s,]+")

log = logging.getLogger(__name__)


def form_schema() -> dict[str, dict[str, Any]]:
    """The trigger form: for each param, ``Param(**spec)`` keyword arguments (``default`` included when
    the field has one; ticket and requester have none, so the form requires them)."""
    return {
        "selector": {
            "default": "jurisdiction",
            "type": "string",
            "enum": list(SELECTORS),
            "values_display": {
                "jurisdiction": "Jurisdiction tag (e.g. uk)",
                "source_domain": "Source domain (and its subdomains)",
                "image_hashes": "Image sha256 hashes",
                "subject_photo": "Subject photo (face search)",
            },
            "title": "What to erase",
            "description": "The selector kind; its value goes in the next field (or the photo path below).",
            "section": "Request",
        },
        "value": {
            "default": "uk",
            "type": ["null", "string"],
            "maxLength": 100_000 * 66,  # MAX_HASHES sha256s and their separators
            "pattern": VALUE_PATTERN,
            "format": "multiline",
            "title": "Selector value",
            "description": (
                "jurisdiction: a tag (default uk); source_domain: one host name in ASCII (punycode) form, "
                f"e.g. example.co.uk; image_hashes: sha256 hex values. {VALUE_RULES}."
            ),
            "section": "Request",
        },
        "photo": {
            "default": None,
            "type": ["null", "string"],
            **URI_SCHEMA,
            "title": "Subject photo path",
            "description": f"subject_photo only: path of the subject's photo on the workers ({URI_RULES}).",
            "section": "Request",
        },
        "mode": {
            "default": "dry_run",
            "type": "string",
            "enum": list(MODES),
            "values_display": {
                "dry_run": "Dry run: plan and report counts, change nothing",
                "execute": "Execute: erase everywhere, verify, audit",
            },
            "title": "Mode",
            "description": "Start with a dry run; execute erases for good.",
            "section": "Request",
        },
        "ticket": {
            "type": "string",
            "minLength": 1,
            "maxLength": 120,
            "pattern": TEXT_PATTERN,
            "title": "Ticket reference",
            "description": f"Required: the order's ticket reference ({TEXT_RULES}).",
            "section": "Authority",
        },
        "requested_by": {
            "type": "string",
            "minLength": 1,
            "maxLength": 120,
            "pattern": TEXT_PATTERN,
            "title": "Requested by",
            "description": f"Required: who asked for it, a name or role ({TEXT_RULES}).",
            "section": "Authority",
        },
        "expand_faces": {
            "default": None,
            "type": ["null", "number"],
            "exclusiveMinimum": 0,
            "maximum": 1,
            "title": "Expand to similar faces",
            "description": (
                "Optional, 0-1 (exclusive of 0): also erase images holding a face at least this similar "
                "to a face of a selected image (see the README's thresholds). Empty: no expansion."
            ),
            "section": "Advanced",
        },
        "lake": {
            "default": None,
            "type": ["null", "string"],
            **URI_SCHEMA,
            "title": "Lake root",
            "description": f"Lake root URI; empty means the config default ({URI_RULES}).",
            "section": "Advanced",
        },
    }


def _text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"form field {name!r} must be a string")
    return value


def erase_argv(params: Mapping[str, Any], step: str, summary_json: str | Path) -> list[str]:
    """``facelake erase`` arguments for one DAG step: the same request every time (so the erasure id is
    the same and each call resumes), then ``--until STEP --summary-json PATH``.

    Every form value becomes (part of) ONE argv element in ``--option=value`` form: whatever it holds
    (a leading '-', spaces, quotes, ``{{ }}``), argparse reads it as that option's value, never as an
    option, and no shell or template engine sees it. The CLI validates it (exit 2 for a bad request).
    """
    if step not in STEPS:
        raise ValueError(f"step must be one of {', '.join(STEPS)}")
    selector = _text(params, "selector") or "jurisdiction"
    args = ["erase", f"--selector={selector}"]
    value = _text(params, "value")
    if value is not None and selector != "subject_photo":
        args += [f"--value={v}" for v in _SPLIT.split(value) if v]
    photo = _text(params, "photo")
    if photo is not None and selector == "subject_photo":
        args.append(f"--photo={photo}")
    args.append(f"--mode={_text(params, 'mode') or 'dry_run'}")
    # None stays None: the CLI then says the field is required (the form already refuses it).
    args.append(f"--ticket={_text(params, 'ticket') or ''}")
    args.append(f"--requested-by={_text(params, 'requested_by') or ''}")
    expand = params.get("expand_faces")
    if expand is not None and expand != "":
        args.append(f"--expand-faces={float(expand)!r}")
    lake = _text(params, "lake")
    if lake is not None:
        args.append(f"--lake={lake}")
    args += [f"--until={step}", f"--summary-json={summary_json}"]
    too_long = [a.split("=", 1)[0] for a in args if len(a) > MAX_ARG_LENGTH and not a.startswith("--value=")]
    if too_long:
        raise ValueError(f"form value too long for {', '.join(too_long)}")
    return args


def read_summary(path: str | Path) -> dict[str, Any] | None:
    """The JSON object ``--summary-json`` wrote, or None when the command stopped before writing it."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _survival(summary: Mapping[str, Any]) -> str:
    value = summary.get("history_survival")
    return "-" if value is None else f"{float(value):.4f}"


def _verdict(summary: Mapping[str, Any]) -> str:
    if summary.get("mode") != "execute":
        return "n/a (dry run)"
    verified = summary.get("verified")
    return "not yet" if verified is None else ("passed" if verified else "FAILED")


def headline_figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the log, the note and the demo show: ids, counts, survival, verdict, report path."""
    counts = summary.get("counts") or {}
    return {
        "erasure_id": str(summary.get("erasure_id", ""))[:12],
        "mode": summary.get("mode"),
        "status": summary.get("status"),
        "images": int(counts.get("images", 0)),
        "faces": int(counts.get("faces", 0)),
        "image_sources": int(counts.get("image_sources", 0)),
        "index_vectors": int(counts.get("index_vectors_removed", counts.get("index_vectors", 0))),
        "history_survival": _survival(summary),
        "verification": _verdict(summary),
        "report_path": summary.get("report_path") or "-",
    }


def note_text(summary: Mapping[str, Any], step: str = "report") -> str:
    """The DAG run's note (Markdown, ids and counts only): headline figures and the report's path."""
    f = headline_figures(summary)
    vectors = "index vectors removed" if f["mode"] == "execute" else "index vectors"
    failed = "" if step == "report" else f" (stopped at {step})"
    text = (
        f"**Erasure {f['erasure_id']}** · {f['mode']} · {f['status']}{failed} · "
        f"verification {f['verification']}\n\n"
        f"images {f['images']} · faces {f['faces']} · sources {f['image_sources']} · "
        f"{vectors} {f['index_vectors']} · history survival {f['history_survival']}\n\n"
        f"report: `{f['report_path']}`"
    )
    return text[:NOTE_MAX_CHARS]


def failure_note(step: str, returncode: int | None) -> str:
    """The note when a step failed before writing a summary (bad request, crash): step and exit code."""
    meaning = {2: "bad request", 3: "verification failed", 4: "needs an index build"}.get(returncode or 0, "")
    return f"**Erasure failed** at step {step}: exit code {returncode}" + (f" ({meaning})" if meaning else "")


def log_lines(summary: Mapping[str, Any]) -> list[str]:
    """What the report task logs: the report's location and the headline figures, one per line."""
    f = headline_figures(summary)
    return [
        f"erasure report: {f['report_path']}",
        f"erasure {f['erasure_id']} {f['mode']} {f['status']}: images {f['images']}, faces {f['faces']}, "
        f"sources {f['image_sources']}, index vectors {f['index_vectors']}, "
        f"history survival {f['history_survival']}, verification {f['verification']}",
        "seconds per step: " + ", ".join(f"{k} {v:.1f}" for k, v in (summary.get("seconds") or {}).items()),
    ]


def run_step(
    step: str,
    params: Mapping[str, Any],
    push: Callable[[str, Any], None],
    logger: logging.Logger | None = None,
) -> dict[str, Any]:
    """Run one DAG step (``facelake erase ... --until STEP``) with ``runner.run_job``; log the headline,
    ``push`` (the task's ``xcom_push``) the summary and, on failure, the note; return the summary.

    A failed step raises (``CommandFailed``, its exit code kept) after pushing what the run's note
    should say: the summary's figures when the command wrote one (a failed verification does), else
    the step and the exit code.
    """
    from jobs.orchestration.runner import run_job

    logger = logger or log
    with tempfile.TemporaryDirectory(prefix="facelake-erasure-") as scratch:
        path = Path(scratch) / "summary.json"
        try:
            run_job(erase_argv(params, step, path), logger)
        except Exception as exc:
            summary = read_summary(path)
            if summary is not None:
                for line in log_lines(summary):
                    logger.info("%s", line)
            push(NOTE_KEY, note_text(summary, step) if summary else failure_note(step, _returncode(exc)))
            raise
        summary = read_summary(path)
    if summary is None:
        raise RuntimeError(f"facelake erase --until {step} exited 0 without writing its summary")
    for line in log_lines(summary):
        logger.info("%s", line)
    push(SUMMARY_KEY, summary)
    return summary


def _returncode(exc: BaseException) -> int | None:
    code = getattr(exc, "returncode", None)
    return code if isinstance(code, int) else None
