"""The index build report: HTML facts, escaping, and the PNG plots it references."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from jobs.index.report import RECALL_PNG, SHARDS_PNG, TIMINGS_PNG, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert(1)</script>"


def _manifest(**overrides: Any) -> dict[str, Any]:
    shards = [
        {
            "shard": i,
            "vectors": n,
            "index_file": f"shard-{i}.faiss",
            "ids_file": f"shard-{i}.ids.npy",
            "index_sha256": f"{i}" * 64,
            "ids_sha256": "f" * 64,
            "index_bytes": n * 512,
            "ids_bytes": n * 8,
            "seconds": 1.25 * (i + 1),
        }
        for i, n in enumerate([4000, 3500, 2500])
    ]
    manifest = {
        "build_id": "b-20240501-abc",
        "kind": "full",
        "parent_build_id": None,
        "pack_id": "pack-7",
        "pack_sha256": "a1b2c3d4e5f6" + "9" * 52,
        "faces_version": 12,
        "dim": 512,
        "metric": "inner_product",
        "factory": "IVF1024,Flat",
        "search_params": {"nprobe": 16},
        "n_vectors": 10000,
        "n_shards": 3,
        "shards": shards,
        "recall_at_10": 0.9512,
        "recall_target": 0.95,
        "queries": 500,
        "curve": [
            {"nprobe": 4, "recall_at_10": 0.81, "ms_per_query": 0.2},
            {"nprobe": 8, "recall_at_10": 0.90, "ms_per_query": 0.35},
            {"nprobe": 16, "recall_at_10": 0.9512, "ms_per_query": 0.6},
            {"nprobe": 32, "recall_at_10": 0.98, "ms_per_query": 1.1},
        ],
        "durations": {"read": 2.0, "train": 5.5, "add": 3.0, "measure": 1.0, "verify": 0.5, "total": 12.0},
        "memory_budget_bytes": 4 * 1024**3,
        "estimated_memory_bytes": 3 * 1024**2,
        "created_at": "2024-05-01T12:00:00+00:00",
        "run_id": "run-42",
    }
    manifest.update(overrides)
    return manifest


def _empty_manifest() -> dict[str, Any]:
    shards = [
        {
            "shard": 0,
            "vectors": 0,
            "index_file": "shard-0.faiss",
            "ids_file": "shard-0.ids.npy",
            "index_sha256": "0" * 64,
            "ids_sha256": "0" * 64,
            "index_bytes": 45,
            "ids_bytes": 128,
            "seconds": 0.01,
        }
    ]
    return _manifest(
        factory="IDMap2,Flat",
        search_params={},
        n_vectors=0,
        n_shards=1,
        shards=shards,
        recall_at_10=None,
        curve=[],
        queries=0,
        estimated_memory_bytes=0,
    )


def _images(html_path: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html_path.read_text(encoding="utf-8"))


def test_full_build_writes_html_with_its_facts_and_referenced_pngs(tmp_path: Path) -> None:
    out_dir = tmp_path / "reports" / "b1"
    path = write_report(_manifest(), out_dir)

    assert path == out_dir / "report.html"
    assert path.is_file()
    assert sorted(_images(path)) == sorted([SHARDS_PNG, RECALL_PNG, TIMINGS_PNG])
    for name in _images(path):
        assert (out_dir / name).read_bytes()[:8] == PNG_MAGIC
    text = path.read_text(encoding="utf-8")
    assert "<title>FAISS index build b-20240501-abc</title>" in text
    assert "IVF1024,Flat" in text
    assert "nprobe=16" in text
    assert "0.9512 vs target 0.95 — PASS" in text
    assert "BELOW TARGET" not in text
    # The pack hash is shortened to 12 characters, in the facts and in the shard table.
    assert "<td>a1b2c3d4e5f6</td>" in text
    assert "a1b2c3d4e5f69" not in text
    assert "<td>111111111111</td>" in text and "1111111111111" not in text
    assert "3.0 MiB of 4.0 GiB budget" in text
    # Shard 0: 4000 vectors, 4000 * 520 bytes, 1.25 s.
    assert "<tr><td>0</td><td>4000</td><td>2.0 MiB</td><td>1.25</td>" in text
    assert "not measured" not in text
    assert "http" not in text and "<script" not in text


def test_recall_below_target_is_flagged(tmp_path: Path) -> None:
    text = write_report(_manifest(recall_at_10=0.9), tmp_path).read_text(encoding="utf-8")

    assert "0.9000 vs target 0.95 — BELOW TARGET" in text
    assert "PASS" not in text


def test_hostile_values_are_escaped_never_raw(tmp_path: Path) -> None:
    manifest = _manifest(
        build_id=HOSTILE,
        factory=f"IVF1024,Flat{HOSTILE}",
        parent_build_id='"><img src=x onerror=alert(1)>',
        durations={HOSTILE: 1.0, r"a $\nosuchcmd$ b": 2.0},
    )
    path = write_report(manifest, tmp_path)
    text = path.read_text(encoding="utf-8")

    assert "<script" not in text
    assert "onerror=alert(1)>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "IVF1024,Flat&lt;script&gt;" in text
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    # A timing named like broken mathtext is drawn literally instead of failing the render.
    assert (tmp_path / TIMINGS_PNG).read_bytes()[:8] == PNG_MAGIC


def test_empty_build_says_not_measured_and_writes_no_recall_plot(tmp_path: Path) -> None:
    path = write_report(_empty_manifest(), tmp_path)
    text = path.read_text(encoding="utf-8")

    assert "<td>recall@10</td><td>not measured</td>" in text
    assert "<h2>Recall@10 vs latency</h2><p>not measured</p>" in text
    assert "IDMap2,Flat" in text
    assert "<td>search params</td><td>none</td>" in text
    assert "<td>vectors</td><td>0</td>" in text
    assert not (tmp_path / RECALL_PNG).exists()
    assert sorted(_images(path)) == sorted([SHARDS_PNG, TIMINGS_PNG])
    for name in _images(path):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_rerender_into_the_same_directory_drops_a_stale_recall_plot(tmp_path: Path) -> None:
    write_report(_manifest(), tmp_path)
    assert (tmp_path / RECALL_PNG).exists()

    write_report(_empty_manifest(), tmp_path)

    assert not (tmp_path / RECALL_PNG).exists()


def test_flat_single_point_curve_is_plotted(tmp_path: Path) -> None:
    curve = [{"nprobe": 0, "recall_at_10": 1.0, "ms_per_query": 0.9}]
    manifest = _manifest(factory="IDMap2,Flat", search_params={}, curve=curve, recall_at_10=1.0)
    path = write_report(manifest, tmp_path)

    assert RECALL_PNG in _images(path)
    assert (tmp_path / RECALL_PNG).read_bytes()[:8] == PNG_MAGIC
    assert "1.0000 vs target 0.95 — PASS" in path.read_text(encoding="utf-8")


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = "import sys, jobs.index.report; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"
