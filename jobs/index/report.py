"""The HTML report of one FAISS index build: headline facts, shard table and PNG plots."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SHARDS_PNG = "shard_sizes.png"
RECALL_PNG = "recall_latency.png"
TIMINGS_PNG = "timings.png"
_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
)


def _e(value: Any) -> str:
    return "—" if value is None else html.escape(str(value))


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _plot(path: Path, size: tuple[float, float], draw: Callable[[Axes], None]) -> None:
    # A bare Figure on the Agg canvas leaves pyplot's global backend and figure list alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig.add_subplot())
    fig.savefig(path, format="png", dpi=100)


def _table(header: Iterable[str] | None, rows: Iterable[Iterable[Any]]) -> str:
    head = "" if header is None else "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _img(name: str, alt: str) -> str:
    return f'<p><img src="{_e(name)}" alt="{_e(alt)}"></p>'


def write_report(manifest: dict[str, Any], out_dir: Path) -> Path:
    """Write report.html plus its PNG plots into out_dir (created if missing); return the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = manifest
    shards = m.get("shards") or []
    curve = m.get("curve") or []
    durations = m.get("durations") or {}
    params = m.get("search_params") or {}
    # A Flat index has no nprobe; its single curve point carries nprobe 0.
    chosen = params.get("nprobe", 0)

    recall, target = m.get("recall_at_10"), m.get("recall_target")
    if recall is None:
        recall_text = "not measured"
    else:
        verdict = "PASS" if target is None or recall >= target else "BELOW TARGET"
        recall_text = f"{recall:.4f} vs target {target} — {verdict}"
    budget, estimate = m.get("memory_budget_bytes"), m.get("estimated_memory_bytes")
    facts = [
        ("kind", m.get("kind")),
        ("parent build", m.get("parent_build_id")),
        ("pack id", m.get("pack_id")),
        ("pack sha256", (m.get("pack_sha256") or "")[:12]),
        ("faces version", m.get("faces_version")),
        ("dim", m.get("dim")),
        ("metric", m.get("metric")),
        ("factory", m.get("factory")),
        ("search params", ", ".join(f"{k}={v}" for k, v in params.items()) or "none"),
        ("vectors", m.get("n_vectors")),
        ("shards", m.get("n_shards")),
        ("recall@10", recall_text),
        ("queries", m.get("queries")),
        ("memory estimate", f"{_human_bytes(estimate)} of {_human_bytes(budget)} budget"),
        ("created at", m.get("created_at")),
        ("run id", m.get("run_id")),
    ]
    shard_rows = [
        (
            s.get("shard"),
            s.get("vectors"),
            _human_bytes((s.get("index_bytes") or 0) + (s.get("ids_bytes") or 0)),
            f"{s.get('seconds') or 0:.2f}",
            (s.get("index_sha256") or "")[:12],
        )
        for s in shards
    ]

    def draw_shards(ax: Axes) -> None:
        ax.bar([str(s.get("shard")) for s in shards], [s.get("vectors") or 0 for s in shards])
        ax.set(xlabel="shard", ylabel="vectors", title="Vectors per shard")

    def draw_recall(ax: Axes) -> None:
        xs = [p["ms_per_query"] for p in curve]
        ys = [p["recall_at_10"] for p in curve]
        ax.plot(xs, ys, marker="o")
        for p in curve:
            xy = (p["ms_per_query"], p["recall_at_10"])
            ax.annotate(f"nprobe {p['nprobe']}", xy, textcoords="offset points", xytext=(4, -10), fontsize=8)
        if target is not None:
            ax.axhline(target, color="tab:red", linestyle="--", label=f"target {target}")
        picked = [p for p in curve if p["nprobe"] == chosen]
        if picked:
            ax.scatter(
                [p["ms_per_query"] for p in picked],
                [p["recall_at_10"] for p in picked],
                s=160,
                facecolors="none",
                edgecolors="tab:green",
                linewidths=2,
                label="chosen",
                zorder=3,
            )
        ax.set(xlabel="ms / query", ylabel="recall@10", title="Recall@10 vs latency")
        ax.legend(loc="lower right")

    def draw_timings(ax: Axes) -> None:
        # Keys come from the manifest; an escaped "$" keeps matplotlib from reading them as mathtext.
        ax.barh([str(k).replace("$", r"\$") for k in durations], [float(v or 0) for v in durations.values()])
        ax.invert_yaxis()
        ax.set(xlabel="seconds", title="Build timings")

    sections = []
    plots = [
        ("Shard sizes", SHARDS_PNG, bool(shards), draw_shards, (6, 3.5), "no shards"),
        ("Recall@10 vs latency", RECALL_PNG, bool(curve), draw_recall, (6, 4), "not measured"),
        ("Build timings", TIMINGS_PNG, bool(durations), draw_timings, (6, 3), "no timings recorded"),
    ]
    for title, name, present, draw, size, missing in plots:
        path = out_dir / name
        if present:
            _plot(path, size, draw)
            sections.append(f"<h2>{_e(title)}</h2>{_img(name, title)}")
        else:
            # A re-render into the same directory must not leave a stale plot behind.
            path.unlink(missing_ok=True)
            sections.append(f"<h2>{_e(title)}</h2><p>{_e(missing)}</p>")

    title = f"FAISS index build {m.get('build_id')}"
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>"
        + _table(None, facts)
        + "<h2>Shards</h2>"
        + _table(("shard", "vectors", "bytes", "seconds", "sha256"), shard_rows)
        + "".join(sections)
        + "</body></html>\n"
    )
    out = out_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
