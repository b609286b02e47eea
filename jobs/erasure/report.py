"""The erasure's human-readable report: one static HTML page, every value escaped, ids and counts only."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from jobs.erasure.history import TableFolder


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(request: Any, outcome: Any, *, rerun: bool = False) -> str:
    """The report's HTML. Names the request by its digest and ticket, never by its selector values
    (a domain or a subject's photo is personal data); lists ids, hashes, versions and counts."""
    survival = "-" if outcome.history_survival is None else f"{outcome.history_survival:.6f}"
    verdict = (
        "not run (dry run)"
        if outcome.mode == "dry_run"
        else ("passed" if outcome.verified else "FAILED: something remains, see the checks")
    )
    request_rows = [
        ["erasure id", outcome.erasure_id],
        ["mode", outcome.mode + (" (rerun: verified again, nothing changed)" if rerun else "")],
        ["status", outcome.status],
        ["selector kind", request.kind],
        [
            "selector",
            ", ".join(request.values) if request.kind == "jurisdiction" else "(recorded by digest only)",
        ],
        ["selector digest", request.digest],
        ["expand faces", request.expand_faces if request.expand_faces is not None else "no"],
        ["ticket", request.ticket],
        ["requested by", request.requested_by],
        ["written at", datetime.now(UTC).isoformat(timespec="seconds")],
    ]
    counts = [[k, v] for k, v in sorted(outcome.counts.items())]
    versions = [
        [t, outcome.versions_before.get(t, "-"), outcome.versions_after.get(t, "-")]
        for t in sorted(set(outcome.versions_before) | set(outcome.versions_after))
    ]
    checks = [[n, "passed" if p else "FAILED", d] for n, p, d in outcome.checks]
    matches = [[m["image_id"], m["face_id"], f"{m['score']:.4f}"] for m in outcome.subject]
    expansion = [
        [m["image_id"], m["face_id"] or "(same cluster)", f"{m['score']:.4f}"] for m in outcome.expansion
    ]
    samples = [[store, ", ".join(ids)] for store, ids in sorted(outcome.samples.items()) if ids]
    timings = [[step, f"{s:.1f}"] for step, s in outcome.seconds.items()]
    parts = [
        f"<h1>facelake erasure {_e(outcome.erasure_id[:12])} — {_e(outcome.mode)}</h1>",
        f"<p class=headline>History survival <b>{_e(survival)}</b>; verification <b>{_e(verdict)}</b></p>",
        "<h2>Request</h2>",
        _table(["field", "value"], request_rows),
        "<h2>Counts per table and store</h2>",
        _table(["what", "count"], counts),
        "<h2>Delta versions</h2>",
        _table(["table", "before", "after"], versions),
    ]
    if matches:
        parts += [
            "<h2>Faces matching the subject photo (exact similarity)</h2>",
            _table(["image", "face", "score"], matches),
        ]
    if expansion:
        parts += [
            "<h2>Added by face expansion — review before executing</h2>",
            _table(["image", "matched face", "score"], expansion),
        ]
    if samples:
        parts += ["<h2>Sample ids (dry run)</h2>", _table(["store", "ids"], samples)]
    if checks:
        parts += ["<h2>Independent verification</h2>", _table(["check", "result", "detail"], checks)]
    if timings:
        parts += ["<h2>Timings (seconds)</h2>", _table(["step", "seconds"], timings)]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}"
        ".headline{font-size:1.2em}"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>facelake erasure</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_report(lake: str, request: Any, outcome: Any, *, rerun: bool = False) -> str:
    """Write ``<lake>/_erasure/<erasure_id>/<mode>-report.html``; returns its location."""
    uri = lake.rstrip("/") + f"/_erasure/{outcome.erasure_id}"
    folder = TableFolder(uri)
    folder.fs.create_dir(folder.base, recursive=True)
    name = f"{outcome.mode}-report.html"
    folder.write(name, render(request, outcome, rerun=rerun).encode("utf-8"))
    return folder.full(name) if folder.local else uri + "/" + name
