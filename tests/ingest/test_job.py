"""Ingest on the sample drop, checked against its answer key (DESIGN invariants 1-3 and 8)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.core.ids import url_digest
from jobs.core.imaging import hamming
from jobs.core.manifest import drop_id_for
from jobs.core.neardup import VerifyParams
from jobs.core.runs import RunContext
from jobs.ingest.job import WRITE_ORDER, InjectedFailure, ingest_drop, normalize_drop_uri, read_drop_id
from jobs.lake.schemas import schema_differences, schema_of
from jobs.lake.tables import merge_new_rows, read_table, table_uri


def _key(drop: Path) -> dict:
    return json.loads((drop / "answer_key.json").read_text())


def _drop_config(config: FacelakeConfig, drop: Path) -> FacelakeConfig:
    limits = _key(drop)["limits"]
    return config.replace(
        drop=str(drop),
        max_image_bytes=limits["byte_limit_for_tests"],
        max_image_pixels=limits["pixel_limit_for_tests"],
    )


def _versions(spark: SparkSession, lake: str) -> dict[str, int]:
    return {
        name: DeltaTable.forPath(spark, table_uri(lake, name)).history(1).first()["version"]
        for name in WRITE_ORDER
    }


def _ids(spark: SparkSession, lake: str, table: str, col: str) -> set[str]:
    return {r[col] for r in read_table(spark, lake, table).select(col).collect()}


@pytest.fixture(scope="module")
def ingested(spark: SparkSession, spark_config: FacelakeConfig, sample_drop: Path, tmp_path_factory) -> dict:
    """The sample drop ingested once into a lake that the read-only tests below share."""
    lake = str(tmp_path_factory.mktemp("ingested") / "lake")
    config = _drop_config(spark_config.replace(lake=lake), sample_drop)
    report = ingest_drop(spark, config, RunContext(job="ingest"))
    key = _key(sample_drop)
    images = {r["image_id"]: r for r in read_table(spark, lake, "images").drop("content").collect()}
    sources = read_table(spark, lake, "image_sources").collect()
    quarantine = read_table(spark, lake, "quarantine").collect()
    return {
        "lake": lake,
        "config": config,
        "report": report,
        "key": key,
        "images": images,
        "sources": sources,
        "quarantine": quarantine,
        "lines": {ln["line_no"]: ln for ln in key["lines"]},
    }


def test_every_bad_line_and_file_is_quarantined_with_the_right_reason(ingested: dict) -> None:
    expected = {ln["line_no"]: ln["expected"] for ln in ingested["key"]["lines"] if ln["expected"] != "ok"}
    got = {r["line_no"]: r["reason"] for r in ingested["quarantine"]}
    assert got == expected
    assert sum(ingested["report"].quarantine.values()) == len(expected)
    assert all(r["drop_id"] == ingested["report"].drop_id for r in ingested["quarantine"])
    # File-level rows carry the file's hash and size (never its bytes).
    for r in ingested["quarantine"]:
        if r["reason"] in ("truncated_image", "corrupt_image", "not_an_image", "too_many_bytes"):
            assert r["file_sha256"] == ingested["lines"][r["line_no"]]["file_sha256"] and r["byte_size"] > 0


def test_one_row_per_distinct_content(ingested: dict) -> None:
    ok = [ln for ln in ingested["key"]["lines"] if ln["expected"] == "ok"]
    assert set(ingested["images"]) == {ln["file_sha256"] for ln in ok}
    for image in ingested["images"].values():
        line = next(ln for ln in ok if ln["file_sha256"] == image["image_id"])
        size = (line["width"], line["height"])
        if line["exif_orientation"] in (5, 6, 7, 8):  # EXIF rotation by 90 degrees is applied
            size = size[::-1]
        assert (image["width"], image["height"]) == size
        assert len(image["phash"]) == 16


def test_every_source_is_kept_including_aliases_and_exact_duplicates(ingested: dict) -> None:
    ok = [ln for ln in ingested["key"]["lines"] if ln["expected"] == "ok"]
    by_line = {r["line_no"]: r for r in ingested["sources"]}
    assert set(by_line) == {ln["line_no"] for ln in ok}
    for ln in ok:
        assert by_line[ln["line_no"]]["image_id"] == ln["file_sha256"]
        assert by_line[ln["line_no"]]["source_url"] == ln["source_url"]
    same_path = ingested["key"]["scenarios"]["same_path_twice"]["lines"]
    assert len({by_line[n]["source_url"] for n in same_path}) == 2
    assert len({by_line[n]["image_id"] for n in same_path}) == 1


def test_near_duplicates_and_mirrors_fold_into_their_originals_canonical(ingested: dict) -> None:
    images, lines = ingested["images"], ingested["lines"]

    def image_of(line_no: int) -> dict:
        return images[lines[line_no]["file_sha256"]]

    near = [ln for ln in lines.values() if ln["near_dup_of_line"] and ln["expected"] == "ok"]
    assert near
    for ln in near:
        alias, original = image_of(ln["line_no"]), image_of(ln["near_dup_of_line"])
        assert alias["canonical_id"] == original["canonical_id"], ln["transform"]
    for ln in (x for x in lines.values() if x["mirror_of_line"] and x["expected"] == "ok"):
        assert image_of(ln["line_no"])["canonical_id"] == image_of(ln["mirror_of_line"])["canonical_id"]
    # Canonicals point at themselves; aliases record how they were verified against the canonical.
    for image in images.values():
        canonical = images[image["canonical_id"]]
        assert canonical["canonical_id"] == canonical["image_id"]
        if image["canonical_id"] == image["image_id"]:
            assert image["near_dup_distance"] is None and image["near_dup_method"] is None
        else:
            assert image["near_dup_distance"] == hamming(image["phash"], canonical["phash"])
            assert image["near_dup_method"] == "orb_ransac_pixels"
            assert VerifyParams().min_agreement <= image["near_dup_score"] <= 1.0
        assert len(image["probe_hashes"]) == 13
    ok = [ln for ln in lines.values() if ln["expected"] == "ok"]
    copies = {ln["content_id"] for ln in ok if ln["near_dup_of_line"] or ln["mirror_of_line"]}
    families = {ln["content_id"] for ln in ok} - copies
    assert len({i["canonical_id"] for i in images.values()}) == len(families)


def test_uk_image_seen_at_co_uk_and_resized_at_com_is_one_uk_canonical(ingested: dict) -> None:
    scenario = ingested["key"]["scenarios"]["uk_near_dup"]
    images, lines = ingested["images"], ingested["lines"]
    canonical = images[lines[scenario["canonical_line"]]["file_sha256"]]
    alias = images[lines[scenario["near_dup_line"]]["file_sha256"]]
    assert alias["canonical_id"] == canonical["image_id"] == canonical["canonical_id"]
    assert canonical["jurisdiction_tags"] == ["uk"] and alias["jurisdiction_tags"] == ["uk"]
    urls = {
        r["source_url"]
        for r in ingested["sources"]
        if r["image_id"] in (canonical["image_id"], alias["image_id"])
    }
    assert {scenario["canonical_source_url"], scenario["near_dup_source_url"]} <= urls
    # The alias's own source is not UK: the tag comes from the union over the cluster.
    alias_source = next(r for r in ingested["sources"] if r["line_no"] == scenario["near_dup_line"])
    assert alias_source["jurisdiction_tags"] == []


def test_tags_are_the_union_over_each_cluster_per_answer_key(ingested: dict) -> None:
    images, lines = ingested["images"], ingested["lines"]
    cluster_uk: dict[str, bool] = {}
    for ln in lines.values():
        if ln["expected"] == "ok":
            canonical = images[ln["file_sha256"]]["canonical_id"]
            cluster_uk[canonical] = cluster_uk.get(canonical, False) or ln["uk_expected"]
    for image in images.values():
        assert (image["jurisdiction_tags"] == ["uk"]) is cluster_uk[image["canonical_id"]], image["image_id"]
    for r in ingested["sources"]:
        assert (r["jurisdiction_tags"] == ["uk"]) is lines[r["line_no"]]["uk_expected"]
    assert any(cluster_uk.values()) and not all(cluster_uk.values())


def test_written_tables_match_their_schemas(spark: SparkSession, ingested: dict) -> None:
    for name in WRITE_ORDER:
        assert schema_differences(read_table(spark, ingested["lake"], name).schema, schema_of(name)) == [], (
            name
        )


def test_every_commit_names_its_run_drop_and_input_versions(spark: SparkSession, ingested: dict) -> None:
    from jobs.lake.api import Lake, history_records

    lake = Lake(spark, ingested["lake"])
    for name in WRITE_ORDER:
        last = history_records(lake, name, limit=1)[0]
        assert last["job"] == "ingest" and last["operation"] == "MERGE", name
        assert last["inputs"]["drop_id"] == ingested["report"].drop_id
        # Tables were created empty (version 0) and read at that version: one consistent snapshot.
        assert last["inputs"]["read_versions"] == {
            "images": 0,
            "image_sources": 0,
            "image_links": 0,
            "suppression": 0,
        }


def test_second_ingest_of_the_same_drop_is_a_noop(spark: SparkSession, ingested: dict) -> None:
    before = _versions(spark, ingested["lake"])
    images_before = read_table(spark, ingested["lake"], "images").orderBy("image_id").collect()
    report = ingest_drop(spark, ingested["config"], RunContext(job="ingest"))
    assert set(report.inserted.values()) == {0}
    assert _versions(spark, ingested["lake"]) == before
    assert read_table(spark, ingested["lake"], "images").orderBy("image_id").collect() == images_before


def test_every_manifest_and_quarantine_row_records_the_drops_absolute_location(
    spark: SparkSession, ingested: dict, sample_drop: Path
) -> None:
    where = str(sample_drop.resolve())
    manifest = read_table(spark, ingested["lake"], "crawl_manifest").select("drop_uri").collect()
    assert manifest and {r["drop_uri"] for r in manifest} == {where}
    assert ingested["quarantine"] and {r["drop_uri"] for r in ingested["quarantine"]} == {where}


def test_a_drop_given_as_a_relative_path_is_recorded_absolute(
    spark: SparkSession, ingested: dict, sample_drop: Path, tmp_path: Path
) -> None:
    ok = [ln for ln in ingested["key"]["lines"] if ln["expected"] == "ok"][:2]
    missing = {"image_path": "images/gone.jpg", "source_url": "https://x.example/gone.jpg"}
    drop = _mini_drop(
        sample_drop, tmp_path / "drop-rel", ok, [{**missing, "crawled_at": "2026-05-01T00:00:00Z"}]
    )
    # Relative to the working directory the JVM and its Python workers share with this process.
    relative = os.path.relpath(drop, Path.cwd())
    assert not Path(relative).is_absolute()
    lake = str(tmp_path / "lake")
    report = ingest_drop(
        spark, ingested["config"].replace(lake=lake, drop=relative), RunContext(job="ingest")
    )
    assert report.inserted["crawl_manifest"] == 3 and report.inserted["quarantine"] == 1
    for table in ("crawl_manifest", "quarantine"):
        assert {r["drop_uri"] for r in read_table(spark, lake, table).collect()} == {str(drop.resolve())}


def test_drop_uri_normalisation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    here = tmp_path.resolve()
    assert normalize_drop_uri("drops/d1") == str(here / "drops" / "d1")
    assert normalize_drop_uri("./drops/../d2/") == str(here / "d2")
    assert normalize_drop_uri(str(here / "d3") + "/") == str(here / "d3")
    assert normalize_drop_uri((here / "d 4").as_uri()) == str(here / "d 4")  # file: URI, %-escapes decoded
    (here / "link").symlink_to(here / "drops", target_is_directory=True)
    assert normalize_drop_uri("link/d1") == str(here / "drops" / "d1")  # the folder actually read
    for remote in ("s3a://bucket/crawls/d1", "s3a://bucket/crawls/d1/", "gs://b/x"):
        assert normalize_drop_uri(remote) == remote


def test_drop_id_is_read_from_manifest_bytes(spark: SparkSession, sample_drop: Path) -> None:
    assert read_drop_id(spark, str(sample_drop)) == drop_id_for((sample_drop / "manifest.jsonl").read_bytes())


def test_missing_manifest_is_a_clear_error(
    spark: SparkSession, config: FacelakeConfig, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-drop"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no manifest.jsonl in drop"):
        ingest_drop(spark, config.replace(drop=str(empty)), RunContext(job="ingest"))


def _mini_drop(
    sample_drop: Path, target: Path, lines: list[dict], extra_manifest: list[dict] | None = None
) -> Path:
    """A new drop reusing some sample files, with new manifest lines."""
    target.mkdir(parents=True)
    records = []
    for ln in lines:
        src = sample_drop / ln["image_path"]
        dst = target / ln["image_path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        records.append(
            {
                "image_path": ln["image_path"],
                "source_url": ln["source_url"],
                "crawled_at": "2026-05-01T00:00:00Z",
            }
        )
    records += extra_manifest or []
    (target / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return target


def test_overlapping_drop_adds_only_new_sources(
    spark: SparkSession, ingested: dict, sample_drop: Path, tmp_path: Path
) -> None:
    ok = [ln for ln in ingested["key"]["lines"] if ln["expected"] == "ok"][:6]
    renamed = [{**ln, "source_url": ln["source_url"].replace("https://", "https://mirror-")} for ln in ok[:3]]
    drop2 = _mini_drop(sample_drop, tmp_path / "drop2", renamed)
    lake = str(tmp_path / "lake")
    shutil.copytree(ingested["lake"], lake)
    images_before = _ids(spark, lake, "images", "image_id")
    sources_before = _ids(spark, lake, "image_sources", "source_id")
    report = ingest_drop(
        spark, ingested["config"].replace(lake=lake, drop=str(drop2)), RunContext(job="ingest")
    )
    assert report.inserted["images"] == 0 and report.counts["new_images"] == 0
    assert report.inserted["image_sources"] == 3
    assert _ids(spark, lake, "images", "image_id") == images_before
    assert _ids(spark, lake, "image_sources", "source_id") > sources_before


def test_suppressed_content_and_urls_are_not_ingested(
    spark: SparkSession, ingested: dict, sample_drop: Path, tmp_path: Path
) -> None:
    lines = ingested["lines"]
    near = next(
        ln
        for ln in lines.values()
        if ln["near_dup_of_line"] and ln["expected"] == "ok" and ln["transform"].startswith("resize")
    )
    original = lines[near["near_dup_of_line"]]
    exact = next(ln for ln in lines.values() if ln["expected"] == "ok" and ln["kind"] == "unique_nonface")
    by_url = next(
        ln
        for ln in lines.values()
        if ln["expected"] == "ok"
        and ln["kind"] == "unique_face"
        and ln["line_no"] not in (near["line_no"], original["line_no"])
    )
    original_phash = ingested["images"][original["file_sha256"]]["phash"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    lake = str(tmp_path / "lake")
    rows = [
        ("s1", "sha256", exact["file_sha256"], "e1", now),
        ("s2", "phash", original_phash, "e1", now),
        ("s3", "url_sha256", url_digest(by_url["source_url"].upper()), "e1", now),
    ]
    merge_new_rows(
        spark,
        lake,
        "suppression",
        spark.createDataFrame(rows, schema_of("suppression")),
        RunContext(job="test"),
    )
    report = ingest_drop(spark, ingested["config"].replace(lake=lake), RunContext(job="ingest"))
    images = _ids(spark, lake, "images", "image_id")
    urls = _ids(spark, lake, "image_sources", "source_url") | _ids(
        spark, lake, "crawl_manifest", "source_url"
    )
    assert exact["file_sha256"] not in images
    assert (
        original["file_sha256"] not in images and near["file_sha256"] not in images
    )  # near dup of suppressed
    assert by_url["source_url"] not in urls
    suppressed_lines = [
        ln
        for ln in lines.values()
        if ln["expected"] == "ok"
        and (
            ln["file_sha256"] in (exact["file_sha256"], original["file_sha256"], near["file_sha256"])
            or ln["source_url"] == by_url["source_url"]
        )
    ]
    assert report.counts["suppressed"] >= len(suppressed_lines) >= 4
    assert len(images) < len(ingested["images"])


@pytest.mark.parametrize("fail_after", ["image_sources"])
def test_a_crash_between_writes_is_repaired_by_the_rerun(
    spark: SparkSession, ingested: dict, tmp_path: Path, fail_after: str
) -> None:
    lake = str(tmp_path / "lake")
    config = ingested["config"].replace(lake=lake)
    with pytest.raises(InjectedFailure):
        ingest_drop(spark, config, RunContext(job="ingest"), fail_after=fail_after)
    # Never an image without its sources.
    assert _ids(spark, lake, "images", "image_id") <= _ids(spark, lake, "image_sources", "image_id")
    ingest_drop(spark, config, RunContext(job="ingest"))
    for table, key in (
        ("images", "image_id"),
        ("image_sources", "source_id"),
        ("quarantine", "quarantine_id"),
        ("crawl_manifest", "line_no"),
    ):
        assert _ids(spark, lake, table, key) == _ids(spark, ingested["lake"], table, key), table


def test_retag_applies_a_changed_policy_without_the_drop(
    spark: SparkSession, ingested: dict, tmp_path: Path
) -> None:
    from jobs.ingest.retag import retag

    lake = str(tmp_path / "lake")
    shutil.copytree(ingested["lake"], lake)
    # A policy change: the Isle of Man joins "uk" (a deliberate, test-only edit).
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'version = "test-2"\n[tags.uk]\nhost_suffixes = ["uk", "im"]\ncountries = ["GB", "UK"]\n'
        'crawler_tags = ["uk"]\n'
    )
    config = ingested["config"].replace(lake=lake, drop="/nonexistent", policy_file=str(policy))
    counts = retag(spark, config, RunContext(job="retag"))
    sources = read_table(spark, lake, "image_sources").collect()
    im_lines = {
        r["line_no"]
        for r in sources
        if (r["source_host"] or "").endswith(".im") or (r["page_host"] or "").endswith(".im")
    }
    assert im_lines, "the sample drop has .im sources"
    for r in sources:
        uk = ingested["lines"][r["line_no"]]["uk_expected"] or r["line_no"] in im_lines
        assert (r["jurisdiction_tags"] == ["uk"]) is uk
        assert r["policy_version"] == "test-2"
    images = {
        r["image_id"]: r
        for r in read_table(spark, lake, "images")
        .select("image_id", "canonical_id", "jurisdiction_tags")
        .collect()
    }
    for r in sources:
        if r["line_no"] in im_lines:
            assert images[images[r["image_id"]]["canonical_id"]]["jurisdiction_tags"] == ["uk"]
    assert counts["images_retagged"] > 0
    # Same policy again: nothing changes, no commit.
    versions = _versions(spark, lake)
    again = retag(spark, config, RunContext(job="retag"))
    assert again["sources_retagged"] == 0 and again["images_retagged"] == 0
    assert _versions(spark, lake) == versions


def test_a_failed_expectation_publishes_nothing(spark: SparkSession, ingested: dict, tmp_path: Path) -> None:
    from jobs.quality.gate import QualityGateError, publish_gate

    lake = str(tmp_path / "lake")
    config = ingested["config"].replace(lake=lake)
    run = RunContext(job="ingest")
    real_gate = publish_gate(spark, config, run)

    def gate_with_a_broken_image(suite: str, rows, references=None):
        if suite == "images":  # one image claims zero width: the real GX suite must refuse the batch
            first = rows.agg(F.min("image_id")).first()[0]
            rows = rows.withColumn("width", F.when(F.col("image_id") == first, 0).otherwise(F.col("width")))
        return real_gate(suite, rows, references)

    with pytest.raises(QualityGateError, match="width"):
        ingest_drop(spark, config, run, gate=gate_with_a_broken_image)
    for name in WRITE_ORDER:
        assert read_table(spark, lake, name).count() == 0, name
    failed = read_table(spark, lake, "dq_results").where("NOT success").collect()
    assert failed and all(r["suite"] == "images" for r in failed)
