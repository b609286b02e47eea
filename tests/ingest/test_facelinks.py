"""Post-embed links: a copy that ingest did not catch is found through its faces, verified, linked, and tagged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from facepictures import picture, png
from PIL import ImageOps
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.faces import testpack
from jobs.faces.embed import embed
from jobs.ingest.facelinks import link_by_faces
from jobs.ingest.job import ingest_drop
from jobs.lake.tables import read_table


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testpack.build_generated_pack(tmp_path_factory.mktemp("packs") / testpack.GENERATED_PACK)


def test_a_copy_missed_at_ingest_is_linked_through_its_faces_and_shares_the_tags(
    spark: SparkSession, config: FacelakeConfig, pack_dir: Path, tmp_path: Path
) -> None:
    original = picture(1)
    w, h = original.size
    # Cropped on two sides and framed: the probe hashes at radius 0 cannot meet it. The net shift is a
    # multiple of the generated detector's largest stride: its boxes snap to a 32-px grid and its
    # recognizer is a plain projection, so only a grid-aligned copy embeds alike (a real ArcFace pack
    # embeds any copy of a face alike; that is the model's property, not this job's).
    copy = ImageOps.expand(original.crop((64, 32, w, h)), border=32, fill=(255, 255, 255))
    other = picture(2)
    drop = tmp_path / "drop"
    (drop / "images").mkdir(parents=True)
    lines, names = [], ("original", "copy", "other")
    for name, img, url in (
        ("original", original, "https://news.example.co.uk/a.png"),
        ("copy", copy, "https://img.example.com/b.png"),
        ("other", other, "https://img.example.com/c.png"),
    ):
        (drop / "images" / f"{name}.png").write_bytes(png(img))
        lines.append(
            {"image_path": f"images/{name}.png", "source_url": url, "crawled_at": "2024-06-01T00:00:00Z"}
        )
    (drop / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = config.replace(drop=str(drop), near_dup_radius=0, model_pack=str(pack_dir), models_dir=None)
    ingest_drop(spark, config, RunContext(job="ingest"))

    ids = {name: hashlib.sha256((drop / "images" / f"{name}.png").read_bytes()).hexdigest() for name in names}

    def images() -> dict[str, dict]:
        rows = {r["image_id"]: r.asDict() for r in read_table(spark, config.lake, "images").collect()}
        return {name: rows[image_id] for name, image_id in ids.items()}

    before = images()
    assert before["copy"]["canonical_id"] == before["copy"]["image_id"]  # ingest missed it (radius 0)
    assert before["copy"]["jurisdiction_tags"] == [] and before["original"]["jurisdiction_tags"] == ["uk"]

    embed(spark, config, RunContext(job="embed"))
    counts = link_by_faces(spark, config, RunContext(job="link-faces"))
    assert counts["face_links_written"] == 1, counts

    links = [r.asDict() for r in read_table(spark, config.lake, "image_links").collect()]
    assert len(links) == 1 and links[0]["stage"] == "faces"
    assert {links[0]["image_id"], links[0]["other_image_id"]} == {
        before["original"]["image_id"],
        before["copy"]["image_id"],
    }
    after = images()
    assert after["copy"]["jurisdiction_tags"] == ["uk"]  # the UK original's tag reaches its copy
    assert after["other"]["jurisdiction_tags"] == []
    copy_faces = [
        r
        for r in read_table(spark, config.lake, "faces").collect()
        if r["image_id"] == after["copy"]["image_id"]
    ]
    assert copy_faces and all(r["jurisdiction_tags"] == ["uk"] for r in copy_faces)
    # A rerun finds nothing new and writes nothing.
    assert link_by_faces(spark, config, RunContext(job="link-faces"))["face_links_written"] == 0
