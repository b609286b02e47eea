"""Model packs: the generated test pack through insightface's own routing and processing, pack identity,
finding packs, loading once per process, thread caps, and the real det_500m detector where provided."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from jobs.faces import packs as models
from jobs.faces import runtime, testpack
from jobs.faces.packs import ModelPackError, inspect_pack, resolve_pack
from jobs.faces.runtime import (
    FaceStatus,
    FailureReason,
    RuntimeSettings,
    analyse_images,
    compute_threads,
    select_providers,
)
from jobs.faces.testpack import GENERATED_DETECTOR, GENERATED_RECOGNIZER, build_generated_pack

INSIGHTFACE_IMAGES = Path(__import__("insightface").__file__).parent / "data" / "images"
REAL_DET = models.shared_models_dir() / "det_500m" / "det_500m.onnx"
needs_real_det = pytest.mark.skipif(
    not REAL_DET.is_file(), reason=f"real detector not available at {REAL_DET}"
)
# What the real det_500m finds in insightface's group photo t1.jpg at det_size 640 (same for thresholds 0.3-0.7).
T1_FACES_DET_500M = 6


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_generated_pack(tmp_path_factory.mktemp("packs") / "generated-test-pack")


@pytest.fixture(scope="module")
def loaded(pack_dir: Path) -> runtime.LoadedPack:
    return runtime.load_pack(inspect_pack(pack_dir, generated=True), RuntimeSettings(threads=1))


@pytest.fixture(scope="module")
def fixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixed-shape variant: recognizer batch axis fixed at 1, detector input fixed at 1x3x640x640."""
    folder = tmp_path_factory.mktemp("packs") / "generated-fixed"
    return build_generated_pack(folder, recognizer_batch=1, detector_input_size=(640, 640))


@pytest.fixture(scope="module")
def fixed_loaded(fixed_dir: Path) -> runtime.LoadedPack:
    return runtime.load_pack(inspect_pack(fixed_dir, generated=True), RuntimeSettings(threads=1))


def face_image(
    centres: list[tuple[int, int]], size: tuple[int, int] = (640, 480), seed: int = 0
) -> np.ndarray:
    """BGR grey image with a bright textured 32x32 square (a "face" for the generated detector) per centre."""
    w, h = size
    img = np.full((h, w, 3), 100, np.uint8)
    rng = np.random.default_rng(seed)
    for x, y in centres:
        # A coarse pattern of its own (4x4 blocks of 8 px) so different faces embed differently.
        img[y - 16 : y + 16, x - 16 : x + 16] = np.kron(
            rng.integers(150, 256, (4, 4, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)
        )
    return img


def encode(img_bgr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img_bgr[:, :, ::-1])).save(buf, fmt, **kw)
    return buf.getvalue()


def near_duplicate(img_bgr: np.ndarray, scale: float = 0.8, quality: int = 85) -> bytes:
    h, w = img_bgr.shape[:2]
    small = cv2.resize(img_bgr, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    return encode(small, "JPEG", quality=quality)


def inside(points: np.ndarray, box: np.ndarray) -> bool:
    return bool(
        (
            (points[:, 0] >= box[0])
            & (points[:, 0] <= box[2])
            & (points[:, 1] >= box[1])
            & (points[:, 1] <= box[3])
        ).all()
    )


# ------------------------------------------------------------------------------------ generated pack


def test_generated_pack_is_byte_identical_on_every_build(tmp_path: Path, pack_dir: Path) -> None:
    again = build_generated_pack(tmp_path / "again")
    for name in (GENERATED_DETECTOR, GENERATED_RECOGNIZER):
        assert (again / name).read_bytes() == (pack_dir / name).read_bytes()
    # Rebuilding in place rewrites nothing; a damaged file is repaired.
    stamp = (again / GENERATED_RECOGNIZER).stat().st_mtime_ns
    build_generated_pack(again)
    assert (again / GENERATED_RECOGNIZER).stat().st_mtime_ns == stamp
    (again / GENERATED_DETECTOR).write_bytes(b"broken")
    build_generated_pack(again)
    assert inspect_pack(again).pack_sha256 == inspect_pack(pack_dir).pack_sha256


def test_generated_graphs_have_the_real_models_inputs_and_outputs(pack_dir: Path) -> None:
    det = onnx.load(str(pack_dir / GENERATED_DETECTOR))
    dims = [d.dim_value or d.dim_param for d in det.graph.input[0].type.tensor_type.shape.dim]
    assert det.graph.input[0].name == "input.1" and dims == [1, 3, "?", "?"]
    assert len(det.graph.output) == 9
    assert [o.type.tensor_type.shape.dim[1].dim_value for o in det.graph.output] == [1] * 3 + [4] * 3 + [
        10
    ] * 3
    rec = onnx.load(str(pack_dir / GENERATED_RECOGNIZER))
    assert [d.dim_value or d.dim_param for d in rec.graph.input[0].type.tensor_type.shape.dim] == [
        "None",
        3,
        112,
        112,
    ]
    assert [d.dim_value or d.dim_param for d in rec.graph.output[0].type.tensor_type.shape.dim] == [
        "None",
        512,
    ]


def test_insightface_routes_the_generated_pack_to_scrfd_and_arcface(loaded: runtime.LoadedPack) -> None:
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    assert isinstance(loaded.detector, SCRFD) and isinstance(loaded.recognizer, ArcFaceONNX)
    assert loaded.detector.use_kps and loaded.detector.fmc == 3 and loaded.detector._num_anchors == 2
    assert loaded.recognizer.input_size == (112, 112) and loaded.recognizer.input_mean == 127.5
    # At 640x640, SCRFD-0.5GF's declared output shapes: 2 anchors per location at strides 8, 16, 32.
    outputs = loaded.detector.session.run(None, {"input.1": np.zeros((1, 3, 640, 640), np.float32)})
    assert [o.shape for o in outputs] == [
        (12800, 1),
        (3200, 1),
        (800, 1),
        (12800, 4),
        (3200, 4),
        (800, 4),
        (12800, 10),
        (3200, 10),
        (800, 10),
    ]


@needs_real_det
def test_generated_detector_outputs_match_the_real_det_500m() -> None:
    real = onnx.load(str(REAL_DET))
    ours = testpack.generated_detector_model()
    assert [i.name for i in ours.graph.input] == [i.name for i in real.graph.input]
    real_shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in real.graph.output]
    assert real_shapes == [
        [12800, 1],
        [3200, 1],
        [800, 1],
        [12800, 4],
        [3200, 4],
        [800, 4],
        [12800, 10],
        [3200, 10],
        [800, 10],
    ]


def test_generated_detector_fires_where_the_face_is_through_insightface_post_processing(
    loaded: runtime.LoadedPack,
) -> None:
    # 800x600 -> letterboxed into 640x640 at scale 0.8; anchor (320, 256) in detector space = (400, 320).
    img = face_image([(400, 320)], size=(800, 600))
    boxes, kpss = loaded.detector.detect(img)
    assert boxes.shape == (1, 5) and kpss.shape == (1, 5, 2)
    np.testing.assert_allclose(boxes[0, :4], [360, 280, 440, 360], atol=1e-3)  # anchor +- 1 stride / 0.8
    assert 0.5 < boxes[0, 4] <= 1.0
    assert inside(kpss[0], boxes[0])
    # Keypoints sit where ArcFace's template puts them inside the box, so the aligned crop is the box.
    expected = np.array([360, 280]) + (testpack.ARCFACE_TEMPLATE / 112.0) * 80
    np.testing.assert_allclose(kpss[0], expected, atol=1e-3)
    assert loaded.detector.detect(np.full((600, 800, 3), 100, np.uint8))[0].shape[0] == 0


def test_generated_detector_boxes_stay_inside_the_image(loaded: runtime.LoadedPack) -> None:
    h, w = 360, 500
    rng = np.random.default_rng(3)
    # Blocky noise (every 16x16 block a random grey) with bright borders: peaks everywhere, edges included.
    blocks = rng.integers(30, 256, (h // 16 + 1, w // 16 + 1), dtype=np.uint8)
    grey = np.kron(blocks, np.ones((16, 16), np.uint8))[:h, :w]
    grey[:, :24] = 255
    grey[-24:, :] = 255
    img = np.repeat(grey[:, :, None], 3, axis=2)
    boxes, kpss = loaded.detector.detect(img)
    assert len(boxes) >= 5
    for box, kps in zip(boxes, kpss, strict=True):
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h, box
        assert inside(kps, box)


def test_embeddings_are_normalised_near_duplicates_close_distinct_far(loaded: runtime.LoadedPack) -> None:
    t1 = cv2.imread(str(INSIGHTFACE_IMAGES / "t1.jpg"))
    hanks = cv2.imread(str(INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png"))
    synthetic = face_image([(320, 256)], seed=1)
    items = [
        ("t1", encode(t1, "JPEG", quality=95)),
        ("t1-near", near_duplicate(t1)),
        ("hanks", encode(hanks)),
        ("hanks-near", near_duplicate(hanks, 0.9, 90)),
        ("syn", encode(synthetic)),
        ("syn-near", near_duplicate(synthetic, 0.75, 80)),
    ]
    results = {r.image_id: r for r in analyse_images(loaded, items)}
    assert all(r.status is FaceStatus.OK for r in results.values())
    for r in results.values():
        for f in r.faces:
            assert f.embedding.dtype == np.float32 and f.embedding.shape == (512,)
            assert abs(float(np.linalg.norm(f.embedding)) - 1.0) < 1e-5

    def top(name: str) -> np.ndarray:
        return results[name].faces[0].embedding

    for name in ("t1", "hanks", "syn"):
        assert float(top(name) @ top(f"{name}-near")) > 0.93, name
    for a, b in (("t1", "hanks"), ("t1", "syn"), ("hanks", "syn")):
        assert float(top(a) @ top(b)) < 0.5, (a, b)


def test_faces_of_many_images_share_recognizer_calls(loaded: runtime.LoadedPack, monkeypatch) -> None:
    calls: list[int] = []
    real = loaded.recognizer.get_feat

    def spy(imgs):
        calls.append(len(imgs))
        return real(imgs)

    monkeypatch.setattr(loaded.recognizer, "get_feat", spy)
    items = [(f"img{i}", encode(face_image([(160, 128), (480, 320)], seed=i))) for i in range(4)]
    results = analyse_images(loaded, items, rec_batch=32)
    assert [len(r.faces) for r in results] == [2, 2, 2, 2]
    assert calls == [8]
    calls.clear()
    analyse_images(loaded, items, rec_batch=4)
    assert calls == [4, 4]


def test_bad_images_are_marked_failed_or_no_face_never_raised(
    loaded: runtime.LoadedPack, monkeypatch
) -> None:
    good = encode(face_image([(320, 256)]))
    items = [
        ("corrupt", b"\xff\xd8\xff\xe0 not really a jpeg"),
        ("empty", b""),
        ("none", None),
        ("blank", encode(np.full((200, 300, 3), 90, np.uint8))),
        ("huge", good),
        ("good", good),
    ]
    results = {r.image_id: r for r in analyse_images(loaded, items[:5], max_pixels=640 * 480 - 1)}
    results["good"] = analyse_images(loaded, items[5:])[0]
    assert {k: (r.status, r.reason) for k, r in results.items()} == {
        "corrupt": (FaceStatus.FAILED, FailureReason.DECODE_FAILED),
        "empty": (FaceStatus.FAILED, FailureReason.DECODE_FAILED),
        "none": (FaceStatus.FAILED, FailureReason.DECODE_FAILED),
        "blank": (FaceStatus.NO_FACE, None),
        "huge": (FaceStatus.FAILED, FailureReason.TOO_MANY_PIXELS),
        "good": (FaceStatus.OK, None),
    }
    assert "Error" in results["corrupt"].detail

    # A detector or recognizer error fails that image only.
    def broken_detect(img, *a, **k):
        if img.shape[0] == 111:
            raise RuntimeError("boom")
        return real_detect(img, *a, **k)

    real_detect = loaded.detector.detect
    monkeypatch.setattr(loaded.detector, "detect", broken_detect)
    odd = encode(np.full((111, 200, 3), 90, np.uint8))
    out = analyse_images(loaded, [("odd", odd), ("good", good)])
    assert [(r.status, r.reason) for r in out] == [
        (FaceStatus.FAILED, FailureReason.DETECT_FAILED),
        (FaceStatus.OK, None),
    ]
    real_feat = loaded.recognizer.get_feat

    def broken_feat(imgs):
        if any(int(c.mean()) == 0 for c in imgs):
            raise RuntimeError("bad crop")
        return real_feat(imgs)

    monkeypatch.setattr(loaded.recognizer, "get_feat", broken_feat)
    dark_face = np.zeros((480, 640, 3), np.uint8)  # detected (monkeypatched) but its crop is all black
    monkeypatch.setattr(
        loaded.detector,
        "detect",
        lambda img, *a, **k: real_detect(img if img.any() else face_image([(320, 256)]), *a, **k),
    )
    out = analyse_images(loaded, [("good", good), ("dark", encode(dark_face)), ("good2", good)])
    assert [(r.image_id, r.status, r.reason) for r in out] == [
        ("good", FaceStatus.OK, None),
        ("dark", FaceStatus.FAILED, FailureReason.EMBED_FAILED),
        ("good2", FaceStatus.OK, None),
    ]


# ---------------------------------------------------------------------------- fixed batch and input size


def spy_on_recognizer(loaded: runtime.LoadedPack, monkeypatch) -> list[int]:
    """Records the number of crops of every recognizer call."""
    calls: list[int] = []
    real = loaded.recognizer.get_feat

    def spy(imgs):
        calls.append(len(imgs))
        return real(imgs)

    monkeypatch.setattr(loaded.recognizer, "get_feat", spy)
    return calls


def multi_face_items() -> list[tuple[str, bytes]]:
    """Images of 3, 2 and 1 faces (a 3-face image alone exceeds a fixed batch of 1 or 2)."""
    layouts = [[(160, 128), (480, 320), (320, 240)], [(160, 352), (480, 96)], [(320, 256)]]
    return [(f"img{i}", encode(face_image(centres, seed=10 + i))) for i, centres in enumerate(layouts)]


def assert_same_faces(got: list, expected: list) -> None:
    """Same statuses, boxes and (allclose) embeddings, face for face."""

    def outcome(results: list) -> list[tuple]:
        return [(r.image_id, r.status, r.reason) for r in results]

    assert outcome(got) == outcome(expected)
    for g, e in zip(got, expected, strict=True):
        assert len(g.faces) == len(e.faces)
        for gf, ef in zip(g.faces, e.faces, strict=True):
            np.testing.assert_allclose(gf.bbox, ef.bbox, atol=1e-3)
            np.testing.assert_allclose(gf.embedding, ef.embedding, rtol=1e-5, atol=1e-6)


def test_fixed_shape_variant_declares_its_batch_and_input_size(
    tmp_path: Path, pack_dir: Path, fixed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def dims(value) -> list:
        return [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]

    rec = onnx.load(str(fixed_dir / GENERATED_RECOGNIZER))
    assert dims(rec.graph.input[0]) == [1, 3, 112, 112] and dims(rec.graph.output[0]) == [1, 512]
    det = onnx.load(str(fixed_dir / GENERATED_DETECTOR))
    assert dims(det.graph.input[0]) == [1, 3, 640, 640]
    assert [dims(o)[0] for o in det.graph.output] == [12800, 3200, 800] * 3  # SCRFD's rows at 640x640
    fixed, default = inspect_pack(fixed_dir), inspect_pack(pack_dir)
    assert (fixed.recognizer_batch, fixed.detector_input_size) == (1, (640, 640))
    assert (default.recognizer_batch, default.detector_input_size) == (None, None)
    assert fixed.pack_id != default.pack_id  # other bytes, another pack
    assert fixed.describe()["recognizer_batch"] == 1 and fixed.describe()["detector_input_size"] == [640, 640]
    # Rebuilt byte for byte; a worker without the folder rebuilds the variant, not the default pack.
    again_dir = build_generated_pack(tmp_path / "again", recognizer_batch=1, detector_input_size=(640, 640))
    again = inspect_pack(again_dir, generated=True)
    assert again.pack_sha256 == fixed.pack_sha256
    shutil.rmtree(again.path)
    assert runtime.load_pack(again, RuntimeSettings()).recognizer_batch == 1
    assert inspect_pack(again.path).pack_sha256 == fixed.pack_sha256
    # `facelake models --build-test-pack DIR --recognizer-batch 1 --detector-input-size 640` builds it too.
    import json

    argv = ["--build-test-pack", str(tmp_path / "cli"), "--recognizer-batch", "1", "--detector-input-size"]
    assert models.main([*argv, "640"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["pack_sha256"], shown["recognizer_batch"], shown["detector_input_size"]) == (
        fixed.pack_sha256,
        1,
        [640, 640],
    )


def test_fixed_batch_one_recognizer_embeds_every_face_like_the_dynamic_one(
    loaded: runtime.LoadedPack, fixed_loaded: runtime.LoadedPack, monkeypatch
) -> None:
    items = multi_face_items()
    dynamic_calls = spy_on_recognizer(loaded, monkeypatch)
    expected = analyse_images(loaded, items, rec_batch=32)
    assert [(r.status, len(r.faces)) for r in expected] == [(FaceStatus.OK, n) for n in (3, 2, 1)]
    assert dynamic_calls == [6]  # a dynamic batch axis still gets the faces of many images per call
    fixed_calls = spy_on_recognizer(fixed_loaded, monkeypatch)
    stats: dict[str, int] = {}
    got = analyse_images(fixed_loaded, items, rec_batch=32, stats=stats)
    assert_same_faces(got, expected)  # every face embedded, none of the images failed
    assert fixed_calls == [1] * 6 and stats["recognizer_calls"] == 6


def test_fixed_batch_above_one_gets_full_calls_only(
    tmp_path: Path, loaded: runtime.LoadedPack, monkeypatch
) -> None:
    folder = build_generated_pack(tmp_path / "b4", recognizer_batch=4)
    four = runtime.load_pack(inspect_pack(folder), RuntimeSettings(threads=1))
    assert four.recognizer_batch == 4
    calls = spy_on_recognizer(four, monkeypatch)
    items = multi_face_items()
    expected = analyse_images(loaded, items)
    # 6 crops: a call of 4, then 2 padded to 4 (the padding's rows dropped).
    assert_same_faces(analyse_images(four, items, rec_batch=32), expected)
    assert calls == [4, 4]
    calls.clear()
    assert_same_faces(analyse_images(four, items, rec_batch=2), expected)
    assert calls and set(calls) == {4}  # a smaller rec_batch never makes a call the model refuses


def test_a_fixed_detector_input_size_wins_over_det_size(
    loaded: runtime.LoadedPack, fixed_dir: Path, pack_dir: Path
) -> None:
    # Asked for 320x320, the 640x640 detector still runs at 640x640 (same boxes as the dynamic one at 640);
    # at 320 the 32x32 squares would shrink to 16x16 and not be found at all.
    fixed = runtime.load_pack(inspect_pack(fixed_dir), RuntimeSettings(threads=1, det_size=(320, 320)))
    assert fixed.det_size == (640, 640) and tuple(fixed.detector.input_size) == (640, 640)
    small = runtime.load_pack(inspect_pack(pack_dir), RuntimeSettings(threads=1, det_size=(320, 320)))
    assert small.det_size == (320, 320)
    img = face_image([(160, 128), (480, 320)])
    boxes, _ = fixed.detector.detect(img)
    expected, _ = loaded.detector.detect(img)
    assert len(boxes) == 2
    np.testing.assert_allclose(boxes, expected, atol=1e-4)
    assert small.detector.detect(img)[0].shape[0] == 0


# ------------------------------------------------------------------------------------ identity and finding


def test_pack_identity_is_the_checksum_of_its_files(tmp_path: Path, pack_dir: Path) -> None:
    pack = inspect_pack(pack_dir, "generated-test-pack")
    assert pack.detector.file == GENERATED_DETECTOR and pack.recognizer.file == GENERATED_RECOGNIZER
    assert pack.detector.sha256 == models.file_sha256(pack_dir / GENERATED_DETECTOR)
    assert pack.pack_id == f"generated-test-pack@{pack.pack_sha256[:12]}" and pack.embedding_dim == 512
    # Renaming files keeps the identity; other bytes make another pack.
    renamed = tmp_path / "generated-test-pack"
    renamed.mkdir()
    shutil.copy(pack_dir / GENERATED_DETECTOR, renamed / "det_x.onnx")
    shutil.copy(pack_dir / GENERATED_RECOGNIZER, renamed / "w_x.onnx")
    assert inspect_pack(renamed).pack_id == pack.pack_id
    other = build_generated_pack(tmp_path / "other")
    rec = onnx.load(str(other / GENERATED_RECOGNIZER))
    rec.producer_version = "changed"
    onnx.save(rec, str(other / GENERATED_RECOGNIZER))
    assert inspect_pack(other, "generated-test-pack").pack_id != pack.pack_id


def test_a_buffalo_style_folder_ignores_models_facelake_does_not_use(tmp_path: Path, pack_dir: Path) -> None:
    folder = tmp_path / "buffalo_x"
    folder.mkdir()
    shutil.copy(pack_dir / GENERATED_DETECTOR, folder / "det_10g.onnx")
    shutil.copy(pack_dir / GENERATED_RECOGNIZER, folder / "w600k_r50.onnx")
    for name, size in (("1k3d68.onnx", 192), ("genderage.onnx", 96)):  # landmark / attribute shaped
        x = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size])
        y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, size, size])
        graph = helper.make_graph([helper.make_node("Identity", ["data"], ["out"])], "g", [x], [y])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(folder / name))
    pack = resolve_pack("buffalo_x", str(tmp_path), download=False)
    assert (pack.name, pack.detector.file, pack.recognizer.file) == (
        "buffalo_x",
        "det_10g.onnx",
        "w600k_r50.onnx",
    )
    assert resolve_pack(str(folder)).pack_id == pack.pack_id  # a folder path works too
    (folder / "w600k_r50.onnx").unlink()
    with pytest.raises(ModelPackError, match="no recognizer"):
        resolve_pack(str(folder))


def test_offline_a_named_pack_fails_with_instructions(tmp_path: Path, monkeypatch) -> None:
    import insightface.utils.storage as storage

    def no_network(url, path=None, overwrite=False, sha1_hash=None):
        raise ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(storage, "download_file", no_network)
    with pytest.raises(ModelPackError) as err:
        resolve_pack("buffalo_l", str(tmp_path / "models"), insightface_root=str(tmp_path / "if"))
    message = str(err.value)
    assert "could not download" in message and "ConnectionError" in message
    for hint in (
        "FACELAKE_MODELS_DIR",
        "det_10g.onnx",
        "w600k_r50.onnx",
        str(tmp_path / "models" / "buffalo_l"),
        "--model-pack",
    ):
        assert hint in message
    assert isinstance(err.value, FileNotFoundError)  # the CLI prints it as one line


def test_the_generated_pack_resolves_by_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(models, "generated_pack_dir", lambda: tmp_path / "cache" / models.GENERATED_PACK)
    pack = resolve_pack(models.GENERATED_PACK, None)
    assert pack.generated and pack.path == str((tmp_path / "cache" / models.GENERATED_PACK).resolve())
    # A worker without the folder rebuilds it, byte for byte, before verifying checksums.
    shutil.rmtree(pack.path)
    runtime.load_pack(pack, RuntimeSettings())
    assert inspect_pack(pack.path, generated=True).pack_sha256 == pack.pack_sha256


# ------------------------------------------------------------------------------------ loading


def test_loaded_once_per_process_and_checksums_verified(tmp_path: Path, pack_dir: Path, monkeypatch) -> None:
    folder = build_generated_pack(tmp_path / "p")
    pack = inspect_pack(folder)
    monkeypatch.setattr(runtime, "_CACHE", {})  # a process that has loaded nothing yet
    before = runtime.load_count()
    first = runtime.cached_pack(pack, RuntimeSettings())
    assert runtime.cached_pack(pack, RuntimeSettings()) is first
    assert runtime.load_count() == before + 1
    monkeypatch.setattr(runtime, "_CACHE", {})  # a new worker process: it loads, so it verifies
    rec = onnx.load(str(folder / GENERATED_RECOGNIZER))
    rec.doc_string = "tampered"
    onnx.save(rec, str(folder / GENERATED_RECOGNIZER))
    with pytest.raises(ModelPackError, match="changed"):
        runtime.cached_pack(pack, RuntimeSettings())


def test_threads_cap_every_onnxruntime_session(pack_dir: Path) -> None:
    assert [compute_threads(c, t) for c, t in ((2, 2), (8, 2), (2, 5), (1, 1), (16, 3))] == [1, 4, 1, 1, 5]
    loaded = runtime.load_pack(inspect_pack(pack_dir), RuntimeSettings(threads=2))
    loaded.detector.detect(np.full((100, 100, 3), 90, np.uint8))  # creates SCRFD's 640x640 session
    sessions = [
        loaded.recognizer.session,
        loaded.detector.session,
        *loaded.detector.resolution_sessions.values(),
    ]
    assert len(sessions) == 3
    for s in sessions:
        options = s.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_providers_fall_back_to_cpu() -> None:
    assert select_providers(("CUDAExecutionProvider", "CPUExecutionProvider"), ["CPUExecutionProvider"]) == (
        "CPUExecutionProvider",
    )
    assert select_providers(
        ("CUDAExecutionProvider",), ["CUDAExecutionProvider", "CPUExecutionProvider"]
    ) == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert select_providers(("auto",), ["CUDAExecutionProvider", "CPUExecutionProvider"]) == (
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    )
    assert select_providers((), ["CPUExecutionProvider"]) == ("CPUExecutionProvider",)
    with pytest.raises(ValueError, match="multiples of 32"):
        RuntimeSettings(det_size=(600, 600))


# ------------------------------------------------------------------------------------ real detector


@needs_real_det
def test_real_det_500m_finds_the_faces_of_t1() -> None:
    from insightface.model_zoo import get_model
    from insightface.model_zoo.scrfd import SCRFD

    detector = get_model(
        str(REAL_DET), providers=["CPUExecutionProvider"], sess_options=runtime.session_options(1)
    )
    assert isinstance(detector, SCRFD)
    detector.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    img = cv2.imread(str(INSIGHTFACE_IMAGES / "t1.jpg"))
    boxes, kpss = detector.detect(img)
    assert len(boxes) == T1_FACES_DET_500M
    h, w = img.shape[:2]
    for box, kps in zip(boxes, kpss, strict=True):
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
        assert 0.5 <= box[4] <= 1.0
        assert inside(kps, box)


@needs_real_det
def test_mixed_pack_real_detector_generated_recognizer_end_to_end(tmp_path: Path, pack_dir: Path) -> None:
    folder = build_generated_pack(tmp_path / "det500m-generated", detector_from=REAL_DET)
    pack = inspect_pack(folder)
    assert pack.detector.file == "det_500m.onnx" and pack.detector.sha256 == models.file_sha256(REAL_DET)
    assert pack.recognizer.sha256 == inspect_pack(pack_dir).recognizer.sha256
    loaded = runtime.load_pack(pack, RuntimeSettings())
    t1 = cv2.imread(str(INSIGHTFACE_IMAGES / "t1.jpg"))
    original, near = analyse_images(
        loaded, [("t1", encode(t1, "JPEG", quality=95)), ("near", near_duplicate(t1))]
    )
    assert original.status is FaceStatus.OK and len(original.faces) == T1_FACES_DET_500M
    assert len(near.faces) == T1_FACES_DET_500M
    scores = [f.det_score for f in original.faces]
    assert scores == sorted(scores, reverse=True)
    for face in original.faces:
        assert inside(face.landmarks, face.bbox)
        assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
    # Same person in the near duplicate (matched by box centre) embeds close; other people do not.
    centres = np.array([(f.bbox[:2] + f.bbox[2:]) / 2 for f in near.faces]) / 0.8
    for face in original.faces:
        match = near.faces[
            int(np.argmin(np.linalg.norm(centres - (face.bbox[:2] + face.bbox[2:]) / 2, axis=1)))
        ]
        assert float(face.embedding @ match.embedding) > 0.9
    others = [
        float(a.embedding @ b.embedding)
        for i, a in enumerate(original.faces)
        for b in original.faces[i + 1 :]
    ]
    assert max(others) < 0.9


def test_models_dir_env_names_the_shared_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACELAKE_MODELS_DIR", str(tmp_path))
    assert models.shared_models_dir() == tmp_path
    monkeypatch.delenv("FACELAKE_MODELS_DIR")
    assert models.shared_models_dir() == models.PROJECT_ROOT.parent / "shared" / "models"
    assert os.fspath(models.generated_pack_dir()).endswith(".cache/models/generated-test-pack")


def test_models_cli_builds_and_shows_packs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pack_dir: Path, monkeypatch
) -> None:
    import json

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.insightface to find packs in

    assert models.main(["--build-test-pack", str(tmp_path / "built")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["pack_id"] == inspect_pack(pack_dir, "built").pack_id
    assert [f["role"] for f in shown["files"]] == ["detector", "recognizer"] and shown["embedding_dim"] == 512
    assert models.main(["--model-pack", str(pack_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(pack_dir.resolve())
    with pytest.raises(ModelPackError, match="not available"):
        models.main(["--model-pack", "buffalo_s", "--models-dir", str(tmp_path), "--no-download"])
