"""Runs racing an erasure: an ingest, an embed and an index build that read the lake before an erasure and
commit after it bring nothing erased back (real runs, the erasure run in between their steps)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.erasure.job import run_erasure
from jobs.erasure.request import build_request
from jobs.erasure.verify import ErasureVerificationError
from jobs.faces.embed import embed
from jobs.index.build import build_index
from jobs.index.registry import current_build
from jobs.index.search import open_build
from jobs.ingest.job import ingest_drop
from jobs.lake.tables import read_table
from jobs.quality.gate import QualityGateError, publish_gate
from jobs.testdata.sample_drop import generate_sample_drop

TABLES = ("images", "image_sources", "faces", "face_status")

# Five real erasures (each verifying every version of every table) between eight ingests, three embeds
# and an index build: ~20 minutes on 2 cores, more than CI's 90-minute budget leaves. Opt in.
pytestmark = pytest.mark.skipif(
    os.environ.get("FACELAKE_RACE_TESTS") != "1",
    reason="~20 min on 2 cores, outside CI's time budget: run with "
    "FACELAKE_RACE_TESTS=1 ./dev test tests/erasure/test_races.py",
)


def _erase(spark: SparkSession, config: FacelakeConfig, ticket: str):  # -> ErasureOutcome
    request = build_request("jurisdiction", ["uk"], mode="execute", ticket=ticket, requested_by="dpo")
    return run_erasure(spark, config, request, RunContext("erase"))


def _drop(root: Path, seed: int) -> tuple[Path, dict]:
    drop = root / f"drop-{seed}"
    generate_sample_drop(drop, n=24, seed=seed)
    key = drop.parent / f"answer_key-{seed}.json"
    (drop / "answer_key.json").rename(key)  # test tooling, not part of a crawl drop
    return drop, json.loads(key.read_text())["limits"]


def _uk_left(spark: SparkSession, lake: str, erased: set[str]) -> dict[str, int]:
    ids = sorted(erased)
    return {t: read_table(spark, lake, t).where(F.col("image_id").isin(ids)).count() for t in TABLES}


def _erased_ids(spark: SparkSession, lake: str, erasure_id: str) -> set[str]:
    rows = read_table(spark, lake, "suppression").where(
        (F.col("erasure_id") == erasure_id) & (F.col("kind") == "sha256")
    )
    return {r[0] for r in rows.select("value").collect()}


@pytest.fixture
def base(spark: SparkSession, spark_config: FacelakeConfig, tmp_path: Path) -> FacelakeConfig:
    drop, limits = _drop(tmp_path, 21)
    return spark_config.replace(
        lake=str(tmp_path / "lake"),
        drop=str(drop),
        max_image_bytes=limits["byte_limit_for_tests"],
        max_image_pixels=limits["pixel_limit_for_tests"],
        index_exact_below=10_000,
    )


def _repost(drop: Path, to: Path, tag: str) -> Path:
    """The same files re-posted: every line's URL changed (a new drop, new sources, the same content)."""
    shutil.copytree(drop, to)
    lines = []
    for raw in (to / "manifest.jsonl").read_bytes().split(b"\n"):
        try:
            record = json.loads(raw)
        except ValueError:
            lines.append(raw)
            continue
        if isinstance(record, dict) and isinstance(record.get("source_url"), str):
            record["source_url"] += f"?repost={tag}"
        lines.append(json.dumps(record).encode())
    (to / "manifest.jsonl").write_bytes(b"\n".join(lines))
    return to


def _lines_naming(spark: SparkSession, lake: str, drop: Path, key_file: Path, erased: set[str]) -> int:
    """crawl_manifest rows of ``drop`` whose file holds erased content."""
    from jobs.core.manifest import drop_id_for

    key = json.loads(key_file.read_text())
    lines = [ln["line_no"] for ln in key["lines"] if ln.get("file_sha256") in erased]
    drop_id = drop_id_for((drop / "manifest.jsonl").read_bytes())
    rows = read_table(spark, lake, "crawl_manifest").where(F.col("drop_id") == drop_id)
    return rows.where(F.col("line_no").isin(lines)).count() if lines else 0


def test_ingest_embed_and_index_racing_an_erasure_bring_nothing_back(
    spark: SparkSession, base: FacelakeConfig, tmp_path: Path
) -> None:
    lake = base.lake
    first = Path(base.drop)
    originals = tmp_path / "originals"
    shutil.copytree(first, originals / "first")
    ingest_drop(spark, base, RunContext("ingest"))

    # 1. A re-post of the same content: the erasure runs after that ingest read the lake (at its gate)
    # and before its first commit.
    erasures: list = []

    def erase_at_gate(suite: str, rows, references=None, **kw):  # noqa: ANN001 - the gate's signature
        if not erasures:
            erasures.append(_erase(spark, base, "RACE-INGEST"))
        return publish_gate(spark, base, RunContext("ingest"))(suite, rows, references, **kw)

    repost = _repost(originals / "first", tmp_path / "repost-1", "1")
    # The erasure rewrote the files of the snapshot this run read: it may fail before writing anything
    # (it is retried below, as the next night would); what matters is that nothing erased comes back.
    with contextlib.suppress(Exception):
        ingest_drop(spark, base.replace(drop=str(repost)), RunContext("ingest"), gate=erase_at_gate)
    erased = _erased_ids(spark, lake, erasures[0].erasure_id)
    assert erased and _uk_left(spark, lake, erased) == dict.fromkeys(TABLES, 0)
    ingest_drop(spark, base.replace(drop=str(repost)), RunContext("ingest"))  # its retry, the next night
    assert _uk_left(spark, lake, erased) == dict.fromkeys(TABLES, 0)
    assert _lines_naming(spark, lake, repost, tmp_path / "answer_key-21.json", erased) == 0

    # 2. Between two commits of an ingest: its sources are written, the erasure runs, then the rest.
    third, _ = _drop(tmp_path, 23)
    shutil.copytree(third, originals / "third")
    ingest_drop(spark, base.replace(drop=str(third)), RunContext("ingest"))
    repost = _repost(originals / "third", tmp_path / "repost-3", "3")
    mid: list = []

    def erase_after(table: str) -> None:
        if table == "image_sources" and not mid:
            mid.append(_erase(spark, base, "RACE-INGEST-MID"))

    ingest_drop(spark, base.replace(drop=str(repost)), RunContext("ingest"), after_write=erase_after)
    erased_mid = _erased_ids(spark, lake, mid[0].erasure_id)
    assert erased_mid and _uk_left(spark, lake, erased | erased_mid) == dict.fromkeys(TABLES, 0)
    assert _lines_naming(spark, lake, repost, tmp_path / "answer_key-23.json", erased_mid) == 0
    erased |= erased_mid

    # 3. Embed pins the images, the erasure runs, then embed publishes faces.
    fourth, _ = _drop(tmp_path, 24)
    ingest_drop(spark, base.replace(drop=str(fourth)), RunContext("ingest"))
    at_embed: list = []

    gates: list = []

    def erase_before_faces(suite: str, rows, references=None, **kw):  # noqa: ANN001
        if not at_embed:
            at_embed.append(_erase(spark, base, "RACE-EMBED"))
            first = rows.select("embedding_dim").first()  # faces are gated first
            dim = first[0] if first else 512
            gates.append(publish_gate(spark, base, RunContext("embed"), embedding_dim=dim))
        return gates[0](suite, rows, references, **kw)

    # The gate sees faces of images erased meanwhile (image gone, content suppressed) and refuses them all,
    # or (no face of an erased image in this batch) the run publishes: either way nothing erased is written.
    with contextlib.suppress(QualityGateError):
        embed(spark, base, RunContext("embed"), gate=erase_before_faces)
    assert at_embed, "the erasure ran inside embed's gate"
    erased |= _erased_ids(spark, lake, at_embed[0].erasure_id)
    assert _uk_left(spark, lake, erased) == dict.fromkeys(TABLES, 0)
    embed(spark, base, RunContext("embed"))  # its retry publishes the rest
    assert _uk_left(spark, lake, erased) == dict.fromkeys(TABLES, 0)

    # 4. An index build: the erasure runs while the build publishes (inside its registry gate).
    fifth, _ = _drop(tmp_path, 25)
    ingest_drop(spark, base.replace(drop=str(fifth)), RunContext("ingest"))
    embed(spark, base, RunContext("embed"))
    import jobs.quality.gate as gate_module

    real_gate = gate_module.publish_gate
    at_build: list = []

    def gate_with_erasure(spark_: SparkSession, config: FacelakeConfig, run: RunContext, **kw):  # noqa: ANN001
        inner = real_gate(spark_, config, run, **kw)

        def check(suite: str, rows, references=None, **kw2):  # noqa: ANN001
            if suite == "index_builds" and not at_build:
                at_build.append("ran")
                # Its verifier sees the in-flight build's files (erased faces, not yet published): it
                # fails loudly, and its rerun below, once the build has cleaned itself, verifies.
                with contextlib.suppress(ErasureVerificationError):
                    _erase(spark, base, "RACE-INDEX")
            return inner(suite, rows, references, **kw2)

        return check

    gate_module.publish_gate = gate_with_erasure
    try:
        build_index(spark, base, RunContext("index-build"))
    finally:
        gate_module.publish_gate = real_gate
    assert _erase(spark, base, "RACE-INDEX").verified
    index_request = build_request(
        "jurisdiction", ["uk"], mode="execute", ticket="RACE-INDEX", requested_by="dpo"
    )
    erased |= _erased_ids(spark, lake, index_request.erasure_id)
    assert _uk_left(spark, lake, erased) == dict.fromkeys(TABLES, 0)
    build = open_build(spark, lake)
    assert build.record.build_id == current_build(spark, lake).build_id
    assert not set(build.id_map["image_id"]) & erased

    # 5. Re-ingesting the original drops afterwards brings nothing back and does not fail.
    for name in ("first",):
        ingest_drop(spark, base.replace(drop=str(originals / name)), RunContext("ingest"))
    assert _uk_left(spark, lake, erased) == dict.fromkeys(TABLES, 0)
