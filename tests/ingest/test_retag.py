"""Retag after embed: every publish is gated first, and faces and face_status carry the images' new tags."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.faces import testpack as models
from jobs.faces.embed import embed
from jobs.ingest.job import ingest_drop
from jobs.ingest.retag import retag
from jobs.lake.schemas import schema_of, table_names
from jobs.lake.tables import merge_new_rows, read_table, table_uri, upsert_rows
from jobs.quality.gate import QualityGateError
from jobs.testdata.sample_drop import generate_sample_drop

PUBLISHED = ("image_sources", "images", "faces", "face_status", "crawl_manifest", "quarantine")


def versions(spark: SparkSession, lake: str, names=None) -> dict[str, int]:
    """Latest version of each table that exists in the lake."""
    out = {}
    for name in names or table_names():
        if DeltaTable.isDeltaTable(spark, table_uri(lake, name)):
            out[name] = DeltaTable.forPath(spark, table_uri(lake, name)).history(1).first()["version"]
    return out


def com_policy(tmp_path: Path) -> Path:
    """A policy change (test-only): `.com` hosts count as UK too, and the version is bumped."""
    path = tmp_path / "policy.toml"
    path.write_text(
        'version = "test-com"\n[tags.uk]\nhost_suffixes = ["uk", "com"]\n'
        'countries = ["GB", "UK"]\ncrawler_tags = ["uk"]\n'
    )
    return path


@pytest.fixture(scope="module")
def embedded(
    spark: SparkSession, spark_config: FacelakeConfig, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """A small sample drop ingested and embedded with the generated test pack, once for this module."""
    root = tmp_path_factory.mktemp("retag")
    # 40 lines: untagged faces seen at .com hosts (one of them example.co.uk.evil.com), and few enough to embed fast.
    generate_sample_drop(root / "drop", n=40, seed=3)
    pack = models.build_generated_pack(root / models.GENERATED_PACK)
    config = spark_config.replace(
        lake=str(root / "lake"), drop=str(root / "drop"), model_pack=str(pack), models_dir=None
    )
    ingest_drop(spark, config, RunContext(job="ingest"))
    report = embed(spark, config, RunContext(job="embed"))
    assert report["faces_inserted"] > 0, report
    return {"lake": config.lake, "config": config}


@pytest.fixture
def lake_copy(embedded: dict, tmp_path: Path) -> tuple[str, FacelakeConfig]:
    lake = str(tmp_path / "lake")
    shutil.copytree(embedded["lake"], lake)
    return lake, embedded["config"].replace(
        lake=lake, drop="/nonexistent", policy_file=str(com_policy(tmp_path))
    )


def embedded_image_turning_uk(spark: SparkSession, lake: str) -> str:
    """An untagged image with faces and a `.com` source: the `.com` policy makes it UK."""
    com = F.col("source_host").endswith(".com") | F.col("page_host").endswith(".com")
    with_com = read_table(spark, lake, "image_sources").where(com).select("image_id")
    untagged = read_table(spark, lake, "images").where(
        "size(jurisdiction_tags) = 0 AND canonical_id = image_id"
    )
    with_faces = read_table(spark, lake, "faces").select("image_id")
    row = (
        untagged.join(with_com, "image_id", "left_semi")
        .join(with_faces, "image_id", "left_semi")
        .select("image_id")
        .orderBy("image_id")
        .first()
    )
    assert row is not None, "the drop has an untagged image with faces and a .com source"
    return row["image_id"]


def tags_by_image(spark: SparkSession, lake: str) -> dict[str, list[str]]:
    return {
        r["image_id"]: r["jurisdiction_tags"]
        for r in read_table(spark, lake, "images").select("image_id", "jurisdiction_tags").collect()
    }


def test_retag_refreshes_faces_and_face_status_tags_and_a_rerun_commits_nothing(
    spark: SparkSession, lake_copy: tuple[str, FacelakeConfig]
) -> None:
    lake, config = lake_copy
    turning = embedded_image_turning_uk(spark, lake)
    before = {
        name: read_table(spark, lake, name).select("image_id", "jurisdiction_tags").collect()
        for name in ("faces", "face_status")
    }
    run = RunContext(job="retag")
    counts = retag(spark, config, run)

    images = tags_by_image(spark, lake)
    assert images[turning] == ["uk"]
    for name in ("faces", "face_status"):
        rows = read_table(spark, lake, name).select("image_id", "jurisdiction_tags").collect()
        assert rows and all(r["jurisdiction_tags"] == images[r["image_id"]] for r in rows), name
        assert any(r["image_id"] == turning and r["jurisdiction_tags"] == ["uk"] for r in rows), name
        # Only the rows whose tags changed were rewritten.
        stale = sum(r["jurisdiction_tags"] != images[r["image_id"]] for r in before[name])
        assert counts[f"{name}_retagged"] == stale > 0, name
    # All four publishes went through the expectations gate, under this run.
    gated = {
        r["suite"]
        for r in read_table(spark, lake, "dq_results")
        .where(F.col("run_id") == run.run_id)
        .select("suite")
        .distinct()
        .collect()
    }
    assert gated == {"image_sources", "images", "faces", "face_status"}

    # Same policy again: nothing changes, no table (dq_results included) gets a new version.
    settled = versions(spark, lake)
    again = retag(spark, config, RunContext(job="retag"))
    assert again == {
        "sources_retagged": 0,
        "images_retagged": 0,
        "faces_retagged": 0,
        "face_status_retagged": 0,
    }
    assert versions(spark, lake) == settled


def test_retag_of_suppressed_content_publishes_nothing(
    spark: SparkSession, lake_copy: tuple[str, FacelakeConfig]
) -> None:
    lake, config = lake_copy
    # An erasure put this content on the suppression list; its rows are not purged yet.
    image_id = embedded_image_turning_uk(spark, lake)
    entry = spark.createDataFrame(
        [
            (
                hashlib.sha256(("sha256" + image_id).encode()).hexdigest(),
                "sha256",
                image_id,
                "erasure-0001",
                datetime(2026, 1, 1, tzinfo=UTC),
            )
        ],
        schema_of("suppression"),
    )
    merge_new_rows(spark, lake, "suppression", entry, RunContext(job="erasure"))
    published = versions(spark, lake, PUBLISHED)
    tags = tags_by_image(spark, lake)
    run = RunContext(job="retag")
    with pytest.raises(QualityGateError, match="suppressed"):
        retag(spark, config, run)
    assert versions(spark, lake, PUBLISHED) == published
    assert tags_by_image(spark, lake) == tags
    failed = read_table(spark, lake, "dq_results").where(F.col("run_id") == run.run_id).where("NOT success")
    assert failed.count() > 0  # the refusal is recorded


def test_a_failing_faces_suite_stops_the_sources_and_images_too(
    spark: SparkSession, lake_copy: tuple[str, FacelakeConfig]
) -> None:
    lake, config = lake_copy
    # A face published without L2 normalisation (say, by an older embed): its tags must change, and
    # the faces suite refuses it, after image_sources and images have passed theirs.
    image_id = embedded_image_turning_uk(spark, lake)
    face = read_table(spark, lake, "faces").where(F.col("image_id") == image_id).limit(1)
    upsert_rows(
        spark,
        lake,
        "faces",
        face.withColumn("embedding", F.transform("embedding", lambda x: x * 2)),
        ("embedding",),
        RunContext(job="embed"),
    )
    published = versions(spark, lake, PUBLISHED)
    with pytest.raises(QualityGateError, match="embedding_norm"):
        retag(spark, config, RunContext(job="retag"))
    assert versions(spark, lake, PUBLISHED) == published
