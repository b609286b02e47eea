"""Erasure selection: a subject's photo reaches the images holding its face; face expansion reaches copies."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from facepictures import picture, png
from indexdata import append_faces, face_ids
from lakedata import rows
from PIL import Image
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.erasure.job import ROW_TABLES, run_erasure
from jobs.erasure.request import build_request
from jobs.erasure.select import confirm_matches, select
from jobs.faces import packs
from jobs.faces.embed import embed
from jobs.faces.testpack import build_generated_pack
from jobs.index.build import build_index
from jobs.index.search import embed_query, open_build
from jobs.ingest.job import ingest_drop
from jobs.lake.tables import latest_version, merge_new_rows, read_table
from jobs.testdata.lfw import LFW_DIR, lfw_photos
from jobs.testdata.reposts import write_subject_drop

REAL_DET = packs.shared_models_dir() / "det_500m" / "det_500m.onnx"
# The generated recognizer scores a face against itself in another picture (same 32-px grid phase)
# 0.99-1.00, and any other of its "faces" 0.5-0.75 (every crop has a bright square in the middle):
# the ArcFace default of 0.40 would match every face, so these tests ask for 0.9.
GENERATED_SUBJECT_THRESHOLD = 0.9
# Face expansion on lfw-dev photos, real det_500m + generated recognizer. This test's copies score
# 0.91-0.98 and the other people 0.04-0.33. Measured wider (60 photos, 299 for pairs): re-encodes,
# borders and 10 % crops >= 0.89, off-centre cuts and canvases median 0.99/0.96 (5th percentile 0.85/0.89,
# worst 0.59/0.71), mirrors ~0.37 (the generated recognizer is no mirror-invariant model; ingest
# pairs mirrors); two photos of different people <= 0.73 over 44,534 pairs. 0.8 splits this data.
EXPANSION_THRESHOLD = 0.8


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _with_face(
    base: Image.Image, source: Image.Image, at: tuple[int, int], to: tuple[int, int]
) -> Image.Image:
    """``base`` with the 128-px neighbourhood of ``source``'s face centred at ``at`` pasted centred at ``to``.

    ``to - at`` is a multiple of 32 px: the generated detector's boxes snap to its 32-px grid, so the
    pasted face is found and aligned exactly as in ``source`` (a real recognizer needs no such care).
    """
    (x, y), (u, v) = at, to
    assert (u - x) % 32 == 0 and (v - y) % 32 == 0
    out = base.copy()
    out.paste(source.crop((x - 64, y - 64, x + 64, y + 64)), (u - 64, v - 64))
    return out


def _write_drop(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    """A drop with one line (and URL) per file; returns name -> image id (content sha256)."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for name, data in files.items():
        (folder / "images" / f"{name}.img").write_bytes(data)
        lines.append(
            {
                "image_path": f"images/{name}.img",
                "source_url": f"https://{name}.example.com/{name}.jpg",
                "crawled_at": "2024-06-01T00:00:00Z",
            }
        )
    (folder / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return {name: _sha(data) for name, data in files.items()}


def _faces(spark: SparkSession, lake: str) -> dict[str, list[tuple[str, np.ndarray]]]:
    """image_id -> [(face_id, unit embedding)] at the latest version."""
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for r in read_table(spark, lake, "faces").select("image_id", "face_id", "embedding").collect():
        v = np.asarray(r["embedding"], dtype=np.float32)
        out.setdefault(r["image_id"], []).append((r["face_id"], v / np.linalg.norm(v)))
    return out


def _versions(spark: SparkSession, lake: str) -> dict[str, int]:
    return {name: latest_version(spark, lake, name) for name in ROW_TABLES}


def _image_ids(spark: SparkSession, lake: str, version: int | None = None) -> set[str]:
    return {r[0] for r in read_table(spark, lake, "images", version=version).select("image_id").collect()}


# --------------------------------------------------------------------- subject photo, generated pack


def test_a_subject_photo_reaches_exactly_the_images_holding_its_face(
    spark: SparkSession, config: FacelakeConfig, tmp_path: Path
) -> None:
    """Lake: A (faces a1, a2), B, C, and D, another scene holding a1 elsewhere; the subject's photo holds a1.

    Over a minute (7 measured on two cores shared with other Spark runs): the real chain a subject erasure
    needs (ingest, embed, index build, two dry runs, then an execute with its independent verification).
    """
    a = picture(1)
    d = _with_face(picture(4), a, (200, 180), (264, 276))
    ids = _write_drop(
        tmp_path / "drop", {"a": png(a), "b": png(picture(2)), "c": png(picture(3)), "d": png(d)}
    )
    config = config.replace(drop=str(tmp_path / "drop"), index_exact_below=10_000)
    ingest_drop(spark, config, RunContext("ingest"))
    embed(spark, config, RunContext("embed"))
    build = build_index(spark, config, RunContext("index-build"))
    lake = config.lake
    assert _image_ids(spark, lake) == set(ids.values())  # four canonical images, nothing merged
    faces = _faces(spark, lake)
    assert {i: len(f) for i, f in faces.items()} == {ids["a"]: 2, ids["b"]: 1, ids["c"]: 2, ids["d"]: 3}
    # The subject's photo: a scene of its own (its second face is in no lake image) holding a1, as a JPEG.
    photo = _jpeg(_with_face(picture(5), a, (200, 180), (200, 180)))
    stranger = _jpeg(picture(6))  # two faces, neither in the lake

    def request(data: bytes, mode: str = "dry_run") -> object:
        return build_request(
            "subject_photo",
            None,
            mode=mode,
            ticket="REQ-14",
            requested_by="dpo",
            photo=data,
            subject_threshold=GENERATED_SUBJECT_THRESHOLD,
        )

    versions = _versions(spark, lake)
    dry = run_erasure(spark, config, request(photo), RunContext("erase"))

    # One face of A and one of D match, each with the exact cosine of its stored embedding against the
    # photo's faces; every other face of the lake scores below the threshold.
    queries = np.stack([v for _, v in embed_query(config, photo, open_build(spark, lake))])
    scores = {f: float((queries @ v).max()) for fs in faces.values() for f, v in fs}
    assert dry.status == "planned" and dry.expansion == []
    assert sorted(m["image_id"] for m in dry.subject) == sorted([ids["a"], ids["d"]])
    matched = {m["face_id"] for m in dry.subject}
    assert all(m["face_id"] in dict(faces[m["image_id"]]) for m in dry.subject)
    for m in dry.subject:
        assert m["score"] == pytest.approx(scores[m["face_id"]], abs=1e-5) and m["score"] >= 0.99
    assert max(s for f, s in scores.items() if f not in matched) < GENERATED_SUBJECT_THRESHOLD
    assert dry.counts["images"] == dry.counts["images.subject"] == 2 and dry.counts["images.expansion"] == 0
    assert dry.counts["faces"] == 5  # every face of the two images goes, not only the matching one
    assert _versions(spark, lake) == versions  # the dry run changed no table
    assert open_build(spark, lake).record.build_id == build.build_id

    # A photo of faces the lake does not hold selects nothing.
    none = run_erasure(spark, config, request(stranger), RunContext("erase"))
    strange = np.stack([v for _, v in embed_query(config, stranger, open_build(spark, lake))])
    assert (
        max(float((strange @ v).max()) for fs in faces.values() for _, v in fs) < GENERATED_SUBJECT_THRESHOLD
    )
    assert none.subject == [] and none.counts["images"] == 0 and none.counts["faces"] == 0
    assert _versions(spark, lake) == versions

    # Executed: exactly A and D are gone, from the latest version, every older one and the current build.
    old = {v: _image_ids(spark, lake, v) for v in range(versions["images"] + 1)}
    done = run_erasure(spark, config, request(photo, "execute"), RunContext("erase"))
    assert done.status == "completed" and done.verified, done.checks
    assert done.counts["images.deleted"] == 2 and done.history_survival == 1.0
    kept = {ids["b"], ids["c"]}
    assert _image_ids(spark, lake) == kept
    for version, before in old.items():
        assert _image_ids(spark, lake, version) == before - {ids["a"], ids["d"]}, version
    assert set(_faces(spark, lake)) == kept
    current = open_build(spark, lake)
    assert set(current.id_map["image_id"]) == kept
    assert sorted(current.id_map["face_id"]) == sorted(f for i in kept for f, _ in faces[i])


def test_confirm_matches_keeps_the_exact_cosine_of_the_best_query(spark: SparkSession, lake: str) -> None:
    """The index only proposes: each candidate is rescored from ``faces`` and dropped below the threshold."""
    vectors = np.eye(4, dtype=np.float32) * 3.0  # stored unnormalised: the cosine is what counts
    vectors[1] = [3.0, 3.0, 0.0, 0.0]
    fids, images = face_ids(4), [f"image-{i}" for i in range(4)]
    append_faces(spark, lake, vectors, fids, image_ids=images)
    queries = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]], dtype=np.float32)
    candidates = [(f, i) for f, i in zip(fids, images, strict=True)] + [("0" * 64, "gone")]

    matches = confirm_matches(spark, lake, queries, candidates, 0.5)

    # face 0 = query 0 and face 3 = query 1 (1.0, ties by face id), face 1 at 45 degrees of query 0
    # (0.707); face 2 is orthogonal to both, and the unknown face is not in the table.
    ones = sorted([(fids[0], images[0]), (fids[3], images[3])])
    assert [(m.face_id, m.image_id) for m in matches] == [*ones, (fids[1], images[1])]
    assert [round(m.score, 4) for m in matches] == [1.0, 1.0, round(1 / np.sqrt(2), 4)]
    assert {m.face_id for m in confirm_matches(spark, lake, queries, candidates, 0.75)} == {fids[0], fids[3]}
    assert confirm_matches(spark, lake, queries[:0], candidates, 0.5) == []


def test_expansion_is_complete_beyond_k_and_the_build_and_stays_in_the_builds_pack(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    """Synthetic faces: 6 matches of the seed's face with k = 2, one embedded after the build; another pack.

    Up to a minute and a half on two busy cores (an index build and a selection; no detector).
    """
    rng = np.random.default_rng(14)
    names = ["seed", *(f"match{i}" for i in range(5)), *(f"other{i}" for i in range(6)), "late", "foreign"]
    ids = {n: _sha(n.encode()) for n in names}
    image_rows = [{"image_id": i, "canonical_id": i, "jurisdiction_tags": []} for i in ids.values()]
    merge_new_rows(spark, config.lake, "images", rows(spark, "images", image_rows), RunContext("ingest"))
    seed = np.eye(16, dtype=np.float32)[0]
    # Matches of the seed's face (cosine ~0.97): five in the build, one embedded after it.
    nears = seed + 0.06 * rng.standard_normal((6, 16)).astype(np.float32)
    expected = {
        ids[n]: float(v @ seed / np.linalg.norm(v)) for n, v in zip([*names[1:6], "late"], nears, strict=True)
    }
    built = names[:12]
    vectors = np.concatenate([seed[None], nears[:5], np.eye(16, dtype=np.float32)[1:7]])
    append_faces(spark, config.lake, vectors, face_ids(12), image_ids=[ids[n] for n in built])
    config = config.replace(erasure_search_k=2, index_exact_below=10_000)
    build_index(spark, config, RunContext("index-build"))
    append_faces(spark, config.lake, nears[5:], face_ids(1, salt="late"), image_ids=[ids["late"]])
    # Another pack's faces (another space): on the seed image, equal to other0's vector; on an image of
    # their own, equal to the seed's. Neither may take part.
    append_faces(
        spark,
        config.lake,
        np.stack([vectors[6], seed]),
        face_ids(2, salt="foreign"),
        image_ids=[ids["seed"], ids["foreign"]],
        pack_id="foreign@ba9876543210",
    )

    request = build_request(
        "image_hashes", [ids["seed"]], mode="dry_run", ticket="REQ-14", requested_by="dpo", expand_faces=0.9
    )
    selection = select(spark, config, request)

    assert min(expected.values()) >= 0.9  # every match is one, at the threshold asked for
    assert selection.direct == {ids["seed"]} and selection.subject == []
    assert {m.image_id: round(m.score, 5) for m in selection.expansion} == {
        i: round(v, 5) for i, v in expected.items()
    }


# ------------------------------------------------------------ face expansion, real photos, real detector


LFW = lfw_photos()


def test_face_expansion_reaches_every_copy_of_a_photo_and_no_other_person(
    spark: SparkSession, config: FacelakeConfig, tmp_path: Path
) -> None:
    """An lfw-dev photo, 6 copies of it (4 ingest merges, 2 re-posts it cannot pair) and 5 other people.

    Over a minute (2-5 measured on two busy cores): ingest, embed with the real detector and an index
    build of 12 photos, then one dry run; it is the issue's acceptance test on real photos.
    """
    if not REAL_DET.is_file():
        pytest.skip(f"real detector not available at {REAL_DET} (set FACELAKE_MODELS_DIR)")
    if not LFW:
        pytest.skip(f"lfw-dev photos not found at {LFW_DIR} (set FACELAKE_LFW_DIR)")
    picked = random.Random(14).sample(LFW, 12)
    subject, people = picked[0], {picked[0].parent.name}
    others = []
    for p in picked[1:]:
        if p.parent.name not in people and len(others) < 5:
            others.append(p)
            people.add(p.parent.name)
    # Copies ingest's pixel matching pairs (the mirror only through it: its face scores ~0.25 here).
    merged = ("reencode", "border", "crop_10", "mirror")
    beyond = ("offcut_frame", "canvas")  # re-posts it cannot: only the face links them
    drop = write_subject_drop(tmp_path / "drop", subject, others, merged + beyond, seed=14)
    pack = build_generated_pack(tmp_path / "det500m-generated", detector_from=REAL_DET)
    config = config.replace(
        drop=str(drop.path), model_pack=str(pack), models_dir=None, index_exact_below=10_000
    )
    ingest_drop(spark, config, RunContext("ingest"))
    embed(spark, config, RunContext("embed"))
    build_index(spark, config, RunContext("index-build"))
    lake = config.lake

    id_of = {rel: _sha((drop.path / rel).read_bytes()) for rel in drop.files}
    original = id_of["images/000.jpg"]
    copies = {t: id_of[rel] for rel, (_, t) in drop.files.items() if t is not None}
    strangers = {id_of[rel] for rel, (photo, _) in drop.files.items() if photo != subject.stem}
    assert len(strangers) == len(others) == 5
    canonical = {
        r[0]: r[1] for r in read_table(spark, lake, "images").select("image_id", "canonical_id").collect()
    }
    cluster = {i for i, c in canonical.items() if c == canonical[original]}
    assert {copies[t] for t in merged} <= cluster  # ingest merged these with the original
    assert not {copies[t] for t in beyond} & cluster  # and kept these apart

    # The scores that decide, from the stored embeddings: the original's face vs every other image's.
    faces = _faces(spark, lake)
    query = [v for _, v in faces[canonical[original]]]

    def best(image_id: str) -> float:
        return max(float(q @ v) for q in query for _, v in faces.get(image_id, []))

    assert strangers <= set(faces)  # every other person's photo has a face that could have matched
    copy_scores = {t: best(copies[t]) for t in beyond}
    stranger_scores = sorted(best(i) for i in strangers)
    assert min(copy_scores.values()) >= EXPANSION_THRESHOLD, copy_scores
    assert stranger_scores and max(stranger_scores) < EXPANSION_THRESHOLD, stranger_scores

    versions = _versions(spark, lake)
    dry = run_erasure(
        spark,
        config,
        build_request(
            "image_hashes",
            [original],
            mode="dry_run",
            ticket="REQ-14",
            requested_by="dpo",
            expand_faces=EXPANSION_THRESHOLD,
        ),
        RunContext("erase"),
    )
    expansion = {m["image_id"]: m for m in dry.expansion}
    # Every copy is reached: the merged ones through the cluster, the re-posts through their faces.
    assert set(expansion) == {copies[t] for t in beyond}
    for t in beyond:
        assert expansion[copies[t]]["score"] == pytest.approx(copy_scores[t], abs=1e-5)
        assert expansion[copies[t]]["face_id"] in dict(faces[copies[t]])
    assert dry.counts["images"] == len(cluster) + len(beyond) == 1 + len(merged) + len(beyond)
    assert dry.counts["images.direct"] == len(cluster) and dry.counts["images.expansion"] == len(beyond)
    assert set(copies.values()) <= cluster | set(expansion)
    assert not strangers & (cluster | set(expansion))  # no other person's photo
    assert dry.subject == [] and _versions(spark, lake) == versions
