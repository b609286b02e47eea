"""A UK erasure end to end on a real ingested, embedded and indexed sample drop: dry run, execute, rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.erasure.job import DAG_STEPS, STEPS, ErasureStepFailed, run_erasure
from jobs.erasure.request import build_request
from jobs.faces.embed import embed
from jobs.index.build import build_index
from jobs.index.search import open_build
from jobs.ingest.job import ingest_drop
from jobs.lake.api import Lake
from jobs.lake.tables import latest_version, read_table
from jobs.testdata.sample_drop import generate_sample_drop

TABLES = ("images", "image_sources", "faces", "face_status", "crawl_manifest", "quarantine")


def _uk(request_mode: str, ticket: str = "REG-1") -> object:
    return build_request("jurisdiction", ["uk"], mode=request_mode, ticket=ticket, requested_by="dpo")


def _rows(spark: SparkSession, lake: str, table: str, version: int) -> set[tuple]:
    cols = {"images": ["image_id", "canonical_id"], "faces": ["face_id", "image_id"]}[table]
    return {tuple(r) for r in read_table(spark, lake, table, version=version).select(*cols).collect()}


@pytest.fixture(scope="module")
def lake_before(
    spark: SparkSession, spark_config: FacelakeConfig, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """A sample drop ingested, embedded and indexed; the drop kept twice (landing copy, original copy)."""
    root = tmp_path_factory.mktemp("erasure")
    original = root / "original"
    generate_sample_drop(original, n=60, seed=11)
    landing = root / "landing"
    shutil.copytree(original, landing)
    (landing / "answer_key.json").unlink()  # test tooling, not part of a crawl drop
    limits = json.loads((original / "answer_key.json").read_text())["limits"]
    config = spark_config.replace(
        lake=str(root / "lake"),
        drop=str(landing),
        max_image_bytes=limits["byte_limit_for_tests"],
        max_image_pixels=limits["pixel_limit_for_tests"],
        index_exact_below=10_000,
    )
    ingest_drop(spark, config, RunContext("ingest"))
    embed(spark, config, RunContext("embed"))
    build_index(spark, config, RunContext("index-build"), shards=2)
    lake = config.lake
    images = (
        read_table(spark, lake, "images").select("image_id", "canonical_id", "jurisdiction_tags").collect()
    )
    uk = {r["image_id"] for r in images if "uk" in (r["jurisdiction_tags"] or [])}
    faces = read_table(spark, lake, "faces").select("face_id", "image_id", "embedding").collect()
    return {
        "config": config,
        "original": original,
        "landing": landing,
        "uk": uk,
        "all": {r["image_id"] for r in images},
        "faces": faces,
        "versions": {t: latest_version(spark, lake, t) for t in TABLES},
    }


def test_uk_erasure_dry_run_execute_and_rerun(spark: SparkSession, lake_before: dict) -> None:
    config: FacelakeConfig = lake_before["config"]
    lake, uk = config.lake, lake_before["uk"]
    assert uk and uk != lake_before["all"]
    # A UK picture reached only through a non-UK alias: the alias's own sources are all non-UK.
    sources = read_table(spark, lake, "image_sources").select("image_id", "jurisdiction_tags").collect()
    alias_only = {
        i
        for i in uk
        if not any("uk" in (s["jurisdiction_tags"] or []) for s in sources if s["image_id"] == i)
    }
    assert alias_only, "the sample drop has a UK cluster member with no UK source of its own"
    old = {
        t: {v: _rows(spark, lake, t, v) for v in range(lake_before["versions"][t] + 1)}
        for t in ("images", "faces")
    }

    dry = run_erasure(spark, config, _uk("dry_run"), RunContext("erase"))
    assert dry.status == "planned" and dry.counts["images"] == len(uk)
    assert set(dry.samples["images"]) <= uk and Path(dry.report_path).is_file()
    assert {t: latest_version(spark, lake, t) for t in TABLES} == lake_before["versions"]  # nothing changed

    done = run_erasure(spark, config, _uk("execute"), RunContext("erase"))
    assert done.status == "completed" and done.verified, done.checks
    assert done.history_survival == 1.0 and done.counts["history_rows_lost"] == 0
    assert done.counts["images.deleted"] == len(uk)

    # Every pre-erasure version: no UK row, every non-UK row still there (two-way).
    for table, by_version in old.items():
        for version, rows in by_version.items():
            now = _rows(spark, lake, table, version)
            expected = (
                {r for r in rows if r[-1] not in uk}
                if table == "faces"
                else {r for r in rows if r[0] not in uk}
            )
            assert now == expected, (table, version)
    for table in TABLES:
        for version in range(lake_before["versions"][table] + 1):
            df = read_table(spark, lake, table, version=version)
            if "image_id" in df.columns:
                assert df.where(F.col("image_id").isin(sorted(uk))).count() == 0

    # Search with a UK face returns nothing erased.
    uk_faces = [f for f in lake_before["faces"] if f["image_id"] in uk]
    build = open_build(spark, lake)
    if uk_faces:
        _, ids = build.search(np.asarray([f["embedding"] for f in uk_faces], dtype=np.float32), 5)
        found = {m[1] for m in build.faces_of(np.unique(ids[ids >= 0])) if m}
        assert not found & uk

    # Landing: no erased file left in the drop; the manifest keeps its other lines.
    import hashlib

    left = {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in lake_before["landing"].rglob("*") if p.is_file()
    }
    assert not left & uk

    # Audit and history show it.
    audit = read_table(spark, lake, "erasure_audit").where("mode = 'execute'").collect()
    assert len(audit) == 1 and audit[0]["status"] == "completed" and audit[0]["history_survival"] == 1.0
    assert Lake(spark, lake).erasures("images")[0].erasure_id == done.erasure_id

    # A rerun is a no-op that verifies again.
    versions = {t: latest_version(spark, lake, t) for t in TABLES}
    again = run_erasure(spark, config, _uk("execute"), RunContext("erase"))
    assert again.verified and {t: latest_version(spark, lake, t) for t in TABLES} == versions

    # Re-ingesting the original drop brings nothing erased back and does not fail.
    ingest_drop(spark, config.replace(drop=str(lake_before["original"])), RunContext("ingest"))
    back = read_table(spark, lake, "images").where(F.col("image_id").isin(sorted(uk))).count()
    assert back == 0


def _synthetic_lake(spark: SparkSession, config: FacelakeConfig) -> tuple[list[str], set[str], int]:
    """12 images (every third UK) with one face each and an index build; returns ids, UK ids, version."""
    import hashlib

    from indexdata import append_faces, face_ids
    from lakedata import rows

    from jobs.lake.tables import merge_new_rows
    from jobs.testdata.vectors import clustered_vectors

    lake = config.lake
    ids = [hashlib.sha256(f"image {i}".encode()).hexdigest() for i in range(12)]
    image_rows = [
        {"image_id": v, "canonical_id": v, "jurisdiction_tags": ["uk"] if i % 3 == 0 else []}
        for i, v in enumerate(ids)
    ]
    merge_new_rows(spark, lake, "images", rows(spark, "images", image_rows), RunContext("ingest"))
    append_faces(spark, lake, clustered_vectors(12, 8, seed=3), face_ids(12), image_ids=ids)
    build_index(spark, config, RunContext("index-build"))
    uk = {r["image_id"] for r in image_rows if r["jurisdiction_tags"]}
    return ids, uk, latest_version(spark, lake, "images")


def _assert_uk_erased(spark: SparkSession, lake: str, ids: list[str], uk: set[str], versions: int) -> None:
    for version in range(versions + 1):
        got = {r[0] for r in read_table(spark, lake, "images", version=version).select("image_id").collect()}
        assert got in (set(), set(ids) - uk)  # the table's creation, then the one insert
    assert {r[0] for r in read_table(spark, lake, "images").select("image_id").collect()} == set(ids) - uk
    assert not {f for f in open_build(spark, lake).id_map["image_id"]} & uk


def test_an_erasure_interrupted_after_each_step_finishes_on_rerun(
    spark: SparkSession, spark_config: FacelakeConfig, tmp_path: Path
) -> None:
    config = spark_config.replace(lake=str(tmp_path / "lake"), index_exact_below=1_000)
    ids, uk, versions = _synthetic_lake(spark, config)
    # Each run stops after one more step; the next resumes from the stored plan and goes one further.
    for step in STEPS[1:-2]:
        with pytest.raises(ErasureStepFailed):
            run_erasure(spark, config, _uk("execute"), RunContext("erase"), fail_after=step)
    done = run_erasure(spark, config, _uk("execute"), RunContext("erase"))
    assert done.status == "completed" and done.verified and done.history_survival == 1.0
    # The counts of steps done by earlier (interrupted) runs reach the outcome.
    assert done.counts["suppression_added"] > 0 and done.counts["index_vectors_removed"] == len(uk)
    _assert_uk_erased(spark, config.lake, ids, uk, versions)


def test_the_dag_steps_run_one_call_each_and_the_summary_says_where_it_stands(
    spark: SparkSession, spark_config: FacelakeConfig, tmp_path: Path
) -> None:
    from jobs.erasure.job import main

    config = spark_config.replace(lake=str(tmp_path / "lake"), index_exact_below=1_000)
    ids, uk, versions = _synthetic_lake(spark, config)
    summaries = []
    for step in DAG_STEPS:
        out = tmp_path / f"{step}.json"
        argv = ["--lake", config.lake, "--selector", "jurisdiction", "--mode", "execute"]
        argv += ["--ticket", "REG-9", "--requested-by", "dpo", "--until", step, "--summary-json", str(out)]
        assert main(argv) == 0
        summaries.append(json.loads(out.read_text()))
    assert [s["status"] for s in summaries] == ["in_progress"] * 5 + ["completed"]
    assert summaries[1]["steps_done"] == ["suppress", "delete"]
    assert summaries[2]["steps_done"][-2:] == ["history", "landing"]
    assert summaries[3]["steps_done"][-2:] == ["index", "settle"] and summaries[3]["verified"] is None
    assert summaries[4]["steps_done"][-1] == "verify" and summaries[4]["verified"] is True
    last = summaries[-1]
    assert (
        last["verified"] is True and last["history_survival"] == 1.0 and Path(last["report_path"]).is_file()
    )
    assert last["counts"]["images"] == len(uk) and last["counts"]["index_vectors_removed"] == len(uk)
    # Each call did only its own step: the history purge ran once, in the purge call.
    assert "history" in summaries[2]["seconds"] and "history" not in summaries[3]["seconds"]
    _assert_uk_erased(spark, config.lake, ids, uk, versions)


def test_a_domain_erasure_reaches_sources_pages_and_quarantined_lines_of_its_subdomains(
    spark: SparkSession, spark_config: FacelakeConfig, tmp_path: Path
) -> None:
    import hashlib

    from lakedata import rows

    from jobs.core.ids import host_digest
    from jobs.lake.tables import merge_new_rows

    config = spark_config.replace(lake=str(tmp_path / "lake"))
    lake = config.lake
    ids = [hashlib.sha256(f"photo {i}".encode()).hexdigest() for i in range(4)]
    hosts = ["img.shop.example.co.uk", "other.org", "other.org", "evil-example.co.uk"]
    pages = ["https://other.org/p", "https://shop.example.co.uk/p", "https://other.org/q", "https://x.org/"]
    images = [{"image_id": i, "canonical_id": i, "phash": f"{n:016x}"} for n, i in enumerate(ids)]
    sources = [
        {
            "source_id": f"s{n}",
            "image_id": i,
            "source_url": f"https://{h}/{n}.jpg",
            "source_host": h,
            "page_url": p,
            "page_host": p.split("/")[2],
            "drop_id": "d1",
            "line_no": n + 1,
        }
        for n, (i, h, p) in enumerate(zip(ids, hosts, pages, strict=True))
    ]
    manifest = [
        {"drop_id": "d1", "line_no": s["line_no"], "source_url": s["source_url"], "page_url": s["page_url"]}
        for s in sources
    ]
    quarantine = [
        {
            "quarantine_id": "q-hit",
            "drop_id": "d1",
            "line_no": 9,
            "source_url": "https://a.example.co.uk/x.jpg",
        },
        {
            "quarantine_id": "q-page",
            "drop_id": "d1",
            "line_no": 10,
            "source_url": "https://z.org/y.jpg",
            "raw_line": '{"page_url": "https://example.co.uk/page"}',
        },
        {
            "quarantine_id": "q-kept",
            "drop_id": "d1",
            "line_no": 11,
            "source_url": "https://notexample.co.uk/z.jpg",
        },
    ]
    run = RunContext("ingest")
    for name, items in (
        ("images", images),
        ("image_sources", sources),
        ("crawl_manifest", manifest),
        ("quarantine", quarantine),
    ):
        merge_new_rows(spark, lake, name, rows(spark, name, items), run)

    request = build_request(
        "source_domain", ["EXAMPLE.co.uk"], mode="dry_run", ticket="D-1", requested_by="dpo"
    )
    dry = run_erasure(spark, config, request, RunContext("erase"))
    assert dry.counts["images"] == 2 and dry.counts["image_sources"] == 2
    assert dry.counts["quarantine"] == 2 and dry.counts["crawl_manifest"] == 2

    executed = build_request(
        "source_domain", ["example.co.uk"], mode="execute", ticket="D-1", requested_by="dpo"
    )
    done = run_erasure(spark, config, executed, RunContext("erase"))
    assert done.verified and done.history_survival == 1.0
    left = {r[0] for r in read_table(spark, lake, "images").select("image_id").collect()}
    assert left == {ids[2], ids[3]}  # evil-example.co.uk is not under example.co.uk
    kept = {r[0] for r in read_table(spark, lake, "quarantine").select("quarantine_id").collect()}
    assert kept == {"q-kept"}
    suppressed = {(r["kind"], r["value"]) for r in read_table(spark, lake, "suppression").collect()}
    assert ("host", host_digest("example.co.uk")) in suppressed
    assert not any("example" in value for _, value in suppressed)  # hashes only


def test_landing_cleanup_never_follows_links_out_of_the_drop_or_twice_into_it(tmp_path: Path) -> None:
    import hashlib

    from jobs.erasure.job import ErasurePlan, clean_landing

    erased, kept = b"erased picture bytes", b"kept picture bytes"
    erased_id = hashlib.sha256(erased).hexdigest()
    drop, outside = tmp_path / "drop", tmp_path / "outside"
    (drop / "images" / "ab").mkdir(parents=True)
    outside.mkdir()
    (drop / "images" / "ab" / "1.jpg").write_bytes(erased)
    (drop / "images" / "ab" / "2.jpg").write_bytes(kept)
    (outside / "3.jpg").write_bytes(erased)  # same content, outside the drop: never touched
    (drop / "images" / "alias").symlink_to("ab")  # a second way to the same folder
    (drop / "images" / "escape").symlink_to(outside)
    (drop / "images" / "4.jpg").symlink_to(outside / "3.jpg")
    lines = [
        {"image_path": p, "source_url": f"https://e.example/{n}"}
        for n, p in enumerate(
            ["images/ab/1.jpg", "images/ab/2.jpg", "images/escape/3.jpg", "images/alias/1.jpg"]
        )
    ]
    (drop / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    plan = ErasurePlan(
        erasure_id="e" * 64,
        selector_kind="image_hashes",
        selector_digest="d" * 64,
        image_ids=[erased_id],
        subject=[],
        expansion=[],
        face_ids=[],
        source_ids=[],
        lines=[],
        quarantine_ids=[],
        link_ids=[],
        phashes=[],
        url_hashes=[],
        host_digests=[],
        drop_uris=[str(drop)],
        counts={},
        versions_before={},
    )
    counts = clean_landing(plan)
    assert counts == {"landing_files_deleted": 1, "landing_lines_blanked": 1, "landing_drops_missing": 0}
    assert not (drop / "images" / "ab" / "1.jpg").exists() and (drop / "images" / "ab" / "2.jpg").exists()
    assert (outside / "3.jpg").read_bytes() == erased
    kept_lines = (drop / "manifest.jsonl").read_text().split("\n")
    assert kept_lines[0] == "" and json.loads(kept_lines[1])["image_path"] == "images/ab/2.jpg"
