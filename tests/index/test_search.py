"""Search: a photo's faces embedded with the build's pack, every shard searched, top-k merged and described."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from facepictures import picture, png
from indexdata import append_faces, face_ids
from PIL import Image, ImageOps
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.faces import testpack
from jobs.faces.embed import embed
from jobs.index import search
from jobs.index.build import build_index
from jobs.index.search import (
    EXIT_NO_FACE,
    EXIT_REFUSED,
    EXIT_UNREADABLE,
    QueryImageError,
    SearchRefusedError,
    open_build,
    search_face_id,
    search_image,
)
from jobs.ingest.job import ingest_drop
from jobs.lake.tables import read_table
from jobs.testdata.vectors import clustered_vectors


@pytest.fixture(scope="module")
def indexed(
    spark: SparkSession, spark_config: FacelakeConfig, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """Three photos ingested, embedded with the generated pack and indexed in 2 shards."""
    root = tmp_path_factory.mktemp("search")
    pack = testpack.build_generated_pack(root / testpack.GENERATED_PACK)
    drop = root / "drop"
    (drop / "images").mkdir(parents=True)
    lines = []
    pictures = {f"p{seed}": picture(seed) for seed in (1, 2, 3)}
    for name, img in pictures.items():
        (drop / "images" / f"{name}.png").write_bytes(png(img))
        lines.append(
            {
                "image_path": f"images/{name}.png",
                "source_url": f"https://img.example.com/{name}.png",
                "crawled_at": "2024-06-01T00:00:00Z",
            }
        )
    (drop / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = spark_config.replace(
        lake=str(root / "lake"), drop=str(drop), model_pack=str(pack), models_dir=None
    )
    ingest_drop(spark, config, RunContext(job="ingest"))
    embed(spark, config, RunContext(job="embed"))
    build = build_index(spark, config, RunContext(job="index-build"), shards=2)
    ids = {
        name: hashlib.sha256((drop / "images" / f"{name}.png").read_bytes()).hexdigest() for name in pictures
    }
    return {"config": config, "pictures": pictures, "ids": ids, "build": build, "root": root}


def test_a_near_duplicate_photo_finds_the_original_faces(spark: SparkSession, indexed: dict) -> None:
    original = indexed["pictures"]["p2"]
    w, h = original.size
    # Cropped and framed: a re-post. Grid-aligned, as the generated recognizer needs (a real ArcFace
    # pack embeds any copy of a face alike; see tests/ingest/test_facelinks.py).
    copy = ImageOps.expand(original.crop((64, 32, w, h)), border=32, fill=(255, 255, 255))

    faces = search_image(spark, indexed["config"], png(copy), k=3)

    faces_of_p2 = {
        r["face_id"]: [float(v) for v in r["bbox"]]
        for r in read_table(spark, indexed["config"].lake, "faces").collect()
        if r["image_id"] == indexed["ids"]["p2"]
    }
    # Every face the detector finds in the copy is searched, and each finds a face of the original.
    assert len(faces) == len(faces_of_p2) >= 1
    tops = [face.matches[0] for face in faces]
    assert {m.face_id for m in tops} == set(faces_of_p2)
    for m in tops:
        assert m.image_id == indexed["ids"]["p2"] and m.score > 0.9
        assert m.bbox == pytest.approx(faces_of_p2[m.face_id])
        assert [s["source_url"] for s in m.sources] == ["https://img.example.com/p2.png"]
    for face in faces:
        scores = [m.score for m in face.matches]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3
        assert face.matches[1].score < face.matches[0].score - 0.05


def test_search_by_face_id_finds_itself_first(spark: SparkSession, indexed: dict) -> None:
    face = next(
        r
        for r in read_table(spark, indexed["config"].lake, "faces").collect()
        if r["image_id"] == indexed["ids"]["p3"]
    )
    [result] = search_face_id(spark, indexed["config"], face["face_id"], k=2)
    assert result.matches[0].face_id == face["face_id"] and result.matches[0].score == pytest.approx(
        1.0, abs=1e-4
    )
    with pytest.raises(QueryImageError, match="no face"):
        search_face_id(spark, indexed["config"], "0" * 64)


def test_a_query_without_a_face_or_unreadable(spark: SparkSession, indexed: dict) -> None:
    blank = png(Image.new("RGB", (320, 240), (90, 90, 90)))
    with pytest.raises(QueryImageError) as no_face:
        search_image(spark, indexed["config"], blank)
    assert no_face.value.exit_code == EXIT_NO_FACE and "no face" in str(no_face.value)
    with pytest.raises(QueryImageError) as unreadable:
        search_image(spark, indexed["config"], b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert unreadable.value.exit_code == EXIT_UNREADABLE


def test_a_build_of_another_pack_is_refused(spark: SparkSession, indexed: dict, tmp_path: Path) -> None:
    config = indexed["config"].replace(lake=str(tmp_path / "lake"))
    append_faces(spark, config.lake, clustered_vectors(30, 512, seed=1), face_ids(30))
    build_index(spark, config, RunContext(job="index-build"))
    query = png(indexed["pictures"]["p1"])
    with pytest.raises(SearchRefusedError, match="not comparable"):
        search_image(spark, config, query)


def test_cli_json_and_exit_codes(
    spark: SparkSession, indexed: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = indexed["config"]
    photo = tmp_path / "q.png"
    photo.write_bytes(png(indexed["pictures"]["p1"]))
    flags = ["--lake", config.lake, "--model-pack", config.model_pack]
    assert search.main(["--image", str(photo), "--k", "2", "--json", *flags]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["build_id"] == indexed["build"].build_id
    tops = [f["matches"][0]["image_id"] for f in doc["query_faces"]]
    assert tops and set(tops) == {indexed["ids"]["p1"]}
    blank = tmp_path / "blank.png"
    blank.write_bytes(png(Image.new("RGB", (320, 240), (90, 90, 90))))
    assert search.main(["--image", str(blank), *flags]) == EXIT_NO_FACE
    assert "no face" in capsys.readouterr().err
    assert search.main(["--image", str(tmp_path / "missing.png"), *flags]) == EXIT_UNREADABLE
    assert search.main(["--image", str(photo), "--lake", str(tmp_path / "empty-lake")]) == EXIT_REFUSED
    assert "no published index build" in capsys.readouterr().err


def test_every_shard_is_searched(spark: SparkSession, indexed: dict) -> None:
    loaded = open_build(spark, indexed["config"].lake)
    faces = read_table(spark, indexed["config"].lake, "faces").collect()
    assert len(loaded.shards) == 2 and sum(s.ntotal for s in loaded.shards) == len(faces) >= 3
    _, found = loaded.search(np.array([r["embedding"] for r in faces], dtype=np.float32), 1)
    assert [loaded.faces_of(f)[0][0] for f in found] == [r["face_id"] for r in faces]
