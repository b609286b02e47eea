"""The embed job on a tiny lake of directly written images: faces + face_status rows, incremental reruns,
pack changes, failures recorded, tags refreshed, suppressed content skipped."""

from __future__ import annotations

import hashlib
import io
import shutil
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from delta.tables import DeltaTable
from PIL import Image
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.faces import packs as models
from jobs.faces import testpack
from jobs.faces.embed import EmbedOptions, IncompletePackError, drop_other_packs, embed, main
from jobs.lake.schemas import schema_differences, schema_of
from jobs.lake.tables import merge_new_rows, read_table, table_uri, upsert_rows

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def face_image(centres: list[tuple[int, int]], size: tuple[int, int], seed: int) -> np.ndarray:
    """RGB grey image with a bright textured 32x32 square per centre (what the generated detector finds)."""
    w, h = size
    img = np.full((h, w, 3), 100, np.uint8)
    rng = np.random.default_rng(seed)
    for x, y in centres:
        # A coarse pattern of its own (4x4 blocks of 8 px) so different faces embed differently.
        img[y - 16 : y + 16, x - 16 : x + 16] = np.kron(
            rng.integers(150, 256, (4, 4, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)
        )
    return img


def encode(rgb: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def image_rows(images: dict[str, tuple[bytes, list[str], str | None]]) -> list[tuple]:
    """images table rows: name -> (bytes, tags, canonical name or None)."""
    rows = []
    for name, (data, tags, canonical) in images.items():
        image_id = sha(data)
        try:
            w, h = Image.open(io.BytesIO(data)).size
        except Exception:  # noqa: BLE001 - the corrupt one
            w, h = 10, 10
        canonical_id = sha(images[canonical][0]) if canonical else image_id
        rows.append(
            (
                image_id,
                "0" * 16,
                canonical_id,
                3 if canonical else None,
                w,
                h,
                "PNG",
                len(data),
                data,
                tags,
                "test",
                NOW,
                "d" * 16,
                NOW,
                f"seed-{name}",
                "orb_ransac_pixels" if canonical else None,
                0.95 if canonical else None,
                None,
            )
        )
    return rows


def write_images(spark: SparkSession, lake: str, images: dict) -> None:
    df = spark.createDataFrame(image_rows(images), schema_of("images"))
    merge_new_rows(spark, lake, "images", df, RunContext(job="test"))


def version(spark: SparkSession, lake: str, name: str) -> int:
    return DeltaTable.forPath(spark, table_uri(lake, name)).history(1).first()["version"]


def statuses(spark: SparkSession, lake: str) -> dict[tuple[str, str], tuple]:
    return {
        (r["image_id"], r["pack_id"]): (r["status"], r["reason"], r["face_count"], r["jurisdiction_tags"])
        for r in read_table(spark, lake, "face_status").collect()
    }


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testpack.build_generated_pack(tmp_path_factory.mktemp("packs") / testpack.GENERATED_PACK)


@pytest.fixture(scope="module")
def images() -> dict[str, tuple[bytes, list[str], str | None]]:
    two = face_image([(160, 128), (480, 320)], (640, 480), seed=1)
    small = cv2.resize(two, (512, 384), interpolation=cv2.INTER_AREA)
    return {
        "two": (encode(two), ["uk"], None),  # two faces, UK
        "alias": (encode(small, "JPEG", quality=85), ["uk"], "two"),  # near duplicate of "two": not embedded
        "one": (encode(face_image([(400, 320)], (800, 600), seed=2)), [], None),  # one face, scale 0.8
        "blank": (encode(np.full((200, 300, 3), 90, np.uint8)), [], None),  # no face
        "corrupt": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, [], None),  # undecodable
    }


@pytest.fixture(scope="module")
def embedded(
    spark: SparkSession,
    spark_config: FacelakeConfig,
    pack_dir: Path,
    images: dict,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """The tiny lake embedded once (one image per Arrow batch, so each task sees several batches)."""
    lake = str(tmp_path_factory.mktemp("embedded") / "lake")
    config = spark_config.replace(lake=lake, model_pack=str(pack_dir), models_dir=None)
    write_images(spark, lake, images)
    report = embed(spark, config, RunContext(job="embed"), EmbedOptions(images_per_batch=1))
    ids = {name: sha(data) for name, (data, _, _) in images.items()}
    faces = read_table(spark, lake, "faces").collect()
    return {
        "lake": lake,
        "config": config,
        "report": report,
        "ids": ids,
        "faces": faces,
        "pack": models.inspect_pack(pack_dir),
    }


def copy_lake(embedded: dict, tmp_path: Path) -> tuple[str, FacelakeConfig]:
    lake = str(tmp_path / "lake")
    shutil.copytree(embedded["lake"], lake)
    return lake, embedded["config"].replace(lake=lake)


def test_faces_rows_are_schema_exact_deterministic_and_normalised(
    spark: SparkSession, embedded: dict
) -> None:
    lake, pack, ids = embedded["lake"], embedded["pack"], embedded["ids"]
    assert schema_differences(read_table(spark, lake, "faces").schema, schema_of("faces")) == []
    faces = {(r["image_id"], r["face_index"]): r for r in embedded["faces"]}
    assert set(faces) == {(ids["two"], 0), (ids["two"], 1), (ids["one"], 0)}
    for (image_id, index), r in faces.items():
        assert r["face_id"] == sha(f"{image_id}\x1f{pack.pack_id}\x1f{index}")
        assert (r["pack_id"], r["pack_sha256"]) == (pack.pack_id, pack.pack_sha256)
        embedding = np.asarray(r["embedding"], np.float32)
        assert r["embedding_dim"] == len(embedding) == 512
        assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-5
        assert 0.5 < r["det_score"] <= 1.0 and len(r["bbox"]) == 4 and len(r["landmarks"]) == 10
        x1, y1, x2, y2 = r["bbox"]
        xs, ys = r["landmarks"][0::2], r["landmarks"][1::2]
        assert all(x1 <= x <= x2 for x in xs) and all(y1 <= y <= y2 for y in ys)
        assert r["embedded_at"] is not None and r["run_id"]
    # Boxes where the faces are, in image pixels (the 800x600 image went through the detector at scale 0.8).
    assert sorted(list(faces[(ids["two"], i)]["bbox"]) for i in (0, 1)) == [
        [128, 96, 192, 160],
        [448, 288, 512, 352],
    ]
    assert list(faces[(ids["one"], 0)]["bbox"]) == pytest.approx([360, 280, 440, 360], abs=1e-3)
    assert faces[(ids["two"], 0)]["det_score"] >= faces[(ids["two"], 1)]["det_score"]
    assert (
        faces[(ids["two"], 0)]["jurisdiction_tags"] == ["uk"]
        and faces[(ids["one"], 0)]["jurisdiction_tags"] == []
    )
    # Different faces, different embeddings (the two in "two" share their layout, hence the loose bound).
    e = [np.asarray(r["embedding"]) for r in faces.values()]
    assert max(float(e[i] @ e[j]) for i in range(3) for j in range(i + 1, 3)) < 0.9


def test_one_status_row_per_canonical_image_with_reasons(spark: SparkSession, embedded: dict) -> None:
    lake, pack, ids = embedded["lake"], embedded["pack"], embedded["ids"]
    table = read_table(spark, lake, "face_status")
    assert schema_differences(table.schema, schema_of("face_status")) == []
    got = statuses(spark, lake)
    assert got == {
        (ids["two"], pack.pack_id): ("ok", None, 2, ["uk"]),
        (ids["one"], pack.pack_id): ("ok", None, 1, []),
        (ids["blank"], pack.pack_id): ("no_face", None, 0, []),
        (ids["corrupt"], pack.pack_id): ("failed", "decode_failed", 0, []),
    }  # the alias is not embedded: its canonical is
    row = table.where(f"image_id = '{ids['corrupt']}'").first()
    assert row["detail"] and "Error" in row["detail"]
    assert [(f["role"], f["file"], f["sha256"]) for f in row["model_files"]] == [
        ("detector", pack.detector.file, models.file_sha256(Path(pack.path) / pack.detector.file)),
        ("recognizer", pack.recognizer.file, models.file_sha256(Path(pack.path) / pack.recognizer.file)),
    ]
    assert row["pack_sha256"] == models.pack_sha256(pack.files)
    assert (row["det_size"], row["det_thresh"]) == ("640x640", 0.5)
    report = embedded["report"]
    assert (
        report["images_pending"],
        report["images_ok"],
        report["images_no_face"],
        report["images_failed"],
        report["faces_inserted"],
    ) == (4, 2, 1, 1, 3)


def test_fixed_batch_recognizer_and_fixed_size_detector_embed_like_the_dynamic_pack(
    spark: SparkSession, embedded: dict, images: dict, tmp_path: Path
) -> None:
    # Issue #10: a recognizer exported with a batch axis fixed at 1 failed every image of 2+ faces.
    fixed_dir = tmp_path / "fixed"
    testpack.build_generated_pack(fixed_dir, recognizer_batch=1, detector_input_size=(640, 640))
    pack, ids = models.inspect_pack(fixed_dir), embedded["ids"]
    lake = str(tmp_path / "lake")
    config = embedded["config"].replace(lake=lake, model_pack=str(fixed_dir))
    write_images(spark, lake, images)
    # det_size 320 cannot apply to a detector fixed at 640x640 (at 320 these faces are too small to find).
    options = EmbedOptions(images_per_batch=2, det_size=(320, 320))
    report = embed(spark, config, RunContext(job="embed"), options)
    assert report["pack_id"] == pack.pack_id != embedded["pack"].pack_id
    got = {image_id: row for (image_id, _), row in statuses(spark, lake).items()}
    expected = {image_id: row for (image_id, _), row in statuses(spark, embedded["lake"]).items()}
    assert got == expected and got[ids["two"]] == ("ok", None, 2, ["uk"])
    assert {r["det_size"] for r in read_table(spark, lake, "face_status").collect()} == {"640x640"}
    faces = {(r["image_id"], r["face_index"]): r for r in read_table(spark, lake, "faces").collect()}
    dynamic = {(r["image_id"], r["face_index"]): r for r in embedded["faces"]}
    assert set(faces) == set(dynamic) == {(ids["two"], 0), (ids["two"], 1), (ids["one"], 0)}
    for key, row in faces.items():
        assert list(row["bbox"]) == pytest.approx(list(dynamic[key]["bbox"]), abs=1e-3)
        np.testing.assert_allclose(row["embedding"], dynamic[key]["embedding"], rtol=1e-5, atol=1e-6)


def test_pack_loaded_once_per_worker_and_threads_fit_the_cores(embedded: dict) -> None:
    report = embedded["report"]
    assert report["workers"] >= 1 and report["max_pack_loads_per_worker"] == 1
    assert report["threads"] == 1  # local[2] with 2 concurrent tasks: 2 // 2


def test_rerun_is_a_noop(spark: SparkSession, embedded: dict, tmp_path: Path) -> None:
    lake, config = copy_lake(embedded, tmp_path)
    before = {name: version(spark, lake, name) for name in ("faces", "face_status")}
    report = embed(spark, config, RunContext(job="embed"))
    assert report["images_pending"] == 0 and "faces_inserted" not in report
    assert {name: version(spark, lake, name) for name in ("faces", "face_status")} == before
    # Retrying failures processes the corrupt image again: same outcome, still no new version.
    report = embed(spark, config, RunContext(job="embed"), EmbedOptions(retry_failed=True))
    assert report["images_pending"] == 1 and report["images_failed"] == 1
    assert {name: version(spark, lake, name) for name in ("faces", "face_status")} == before


def test_new_pack_reembeds_everything_then_old_pack_can_be_dropped(
    spark: SparkSession, embedded: dict, pack_dir: Path, tmp_path: Path
) -> None:
    lake, config = copy_lake(embedded, tmp_path)
    old = embedded["pack"]
    # New weights under the same name: another pack id.
    new_dir = testpack.build_generated_pack(tmp_path / "v2" / testpack.GENERATED_PACK)
    rec = onnx.load(str(new_dir / testpack.GENERATED_RECOGNIZER))
    rec.doc_string = "retrained"
    onnx.save(rec, str(new_dir / testpack.GENERATED_RECOGNIZER))
    new = models.inspect_pack(new_dir)
    assert new.name == old.name and new.pack_id != old.pack_id
    with pytest.raises(IncompletePackError, match="4 canonical image"):
        drop_other_packs(spark, lake, new.pack_id, RunContext(job="embed"))
    faces_before = version(spark, lake, "faces")
    report = embed(
        spark,
        config.replace(model_pack=str(new_dir)),
        RunContext(job="embed"),
        EmbedOptions(drop_other_packs=True),
    )
    assert (
        report["pack_id"] == new.pack_id and report["images_pending"] == 4 and report["faces_inserted"] == 3
    )
    assert (report["faces_dropped"], report["face_status_dropped"]) == (3, 4)
    assert report["max_pack_loads_per_worker"] == 1  # the new pack, once per worker too
    assert {r["pack_id"] for r in read_table(spark, lake, "faces").collect()} == {new.pack_id}
    assert {k[1] for k in statuses(spark, lake)} == {new.pack_id}
    assert len(statuses(spark, lake)) == 4
    # The old pack's rows stay readable by time travel (a pack change is not an erasure).
    assert {r["pack_id"] for r in read_table(spark, lake, "faces", version=faces_before).collect()} == {
        old.pack_id
    }


def test_changed_tags_are_refreshed_and_suppressed_content_is_skipped(
    spark: SparkSession, embedded: dict, tmp_path: Path
) -> None:
    lake, config = copy_lake(embedded, tmp_path)
    ids = embedded["ids"]
    # A retag made "one" UK after it was embedded; a new image arrived whose content was since erased.
    one = read_table(spark, lake, "images").where(f"image_id = '{ids['one']}'")
    upsert_rows(
        spark,
        lake,
        "images",
        one.withColumn("jurisdiction_tags", F.array(F.lit("uk"))),
        update_columns=("jurisdiction_tags",),
        run=RunContext(job="retag"),
    )
    late = encode(face_image([(320, 240)], (640, 480), seed=9))
    write_images(spark, lake, {"late": (late, [], None)})
    suppression = spark.createDataFrame(
        [(sha("sha256" + sha(late)), "sha256", sha(late), "e1", NOW)], schema_of("suppression")
    )
    merge_new_rows(spark, lake, "suppression", suppression, RunContext(job="erasure"))
    report = embed(spark, config, RunContext(job="embed"))
    assert report["images_pending"] == 0
    assert report["faces_retagged"] == 1 and report["face_status_retagged"] == 1
    assert statuses(spark, lake)[(ids["one"], embedded["pack"].pack_id)][3] == ["uk"]
    faces = read_table(spark, lake, "faces").where(f"image_id = '{ids['one']}'").collect()
    assert [r["jurisdiction_tags"] for r in faces] == [["uk"]]
    assert not read_table(spark, lake, "faces").where(f"image_id = '{sha(late)}'").count()
    assert (sha(late), embedded["pack"].pack_id) not in statuses(spark, lake)


def test_cli_main_runs_the_job(embedded: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake, config = copy_lake(embedded, tmp_path)
    code = main(
        [
            "--lake",
            lake,
            "--model-pack",
            config.model_pack,
            "--spark-master",
            "local[2]",
            "--shuffle-partitions",
            "2",
            "--det-size",
            "640",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert embedded["pack"].pack_id in out and "images_pending=0" in out


def test_both_suites_recorded_in_one_dq_results_commit(spark: SparkSession, embedded: dict) -> None:
    lake = embedded["lake"]
    results = read_table(spark, lake, "dq_results").collect()
    assert {r["suite"] for r in results} == {"faces", "face_status"} and all(r["success"] for r in results)
    merges = (
        DeltaTable.forPath(spark, table_uri(lake, "dq_results"))
        .history()
        .where("operation = 'MERGE'")
        .count()
    )
    assert merges == 1


def test_a_failed_expectation_publishes_nothing_and_is_recorded(
    spark: SparkSession, embedded: dict, images: dict, tmp_path: Path
) -> None:
    from jobs.quality.gate import QualityGateError, publish_gate

    lake = str(tmp_path / "lake")
    config = embedded["config"].replace(lake=lake)
    write_images(spark, lake, images)
    run = RunContext(job="embed")
    wrong_dim = publish_gate(spark, config, run, embedding_dim=16)  # the pack embeds in 512-d
    with pytest.raises(QualityGateError, match="embedding_dim"):
        embed(spark, config, run, gate=wrong_dim)
    assert (
        read_table(spark, lake, "faces").count() == 0 and read_table(spark, lake, "face_status").count() == 0
    )
    results = read_table(spark, lake, "dq_results").collect()
    assert {r["suite"] for r in results} == {"faces"}  # face_status was not checked after faces failed
    assert any(not r["success"] and "embedding_dim" in r["expectation_id"] for r in results)


def test_content_erased_while_the_gate_runs_is_not_written(
    spark: SparkSession, embedded: dict, images: dict, tmp_path: Path
) -> None:
    from jobs.quality.gate import publish_gate

    lake = str(tmp_path / "lake")
    config = embedded["config"].replace(lake=lake)
    write_images(spark, lake, images)
    run = RunContext(job="embed")
    real_gate = publish_gate(spark, config, run, embedding_dim=512)
    one = embedded["ids"]["one"]

    def gate_then_erase(suite: str, rows) -> None:
        real_gate(suite, rows)
        if suite == "face_status":  # both suites passed; an erasure of "one" commits before the MERGEs
            suppression = spark.createDataFrame(
                [(sha("sha256" + one), "sha256", one, "e1", NOW)], schema_of("suppression")
            )
            merge_new_rows(spark, lake, "suppression", suppression, RunContext(job="erasure"))

    embed(spark, config, run, gate=gate_then_erase)
    assert not read_table(spark, lake, "faces").where(f"image_id = '{one}'").count()
    assert (one, embedded["pack"].pack_id) not in statuses(spark, lake)
    assert read_table(spark, lake, "faces").where(f"image_id = '{embedded['ids']['two']}'").count() == 2


def test_worker_allocator_tuning_takes_on_glibc() -> None:
    import platform

    from jobs.faces.runtime import tune_allocator

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert tune_allocator() and tune_allocator()  # idempotent
