"""Face model packs: find or fetch a pack, identify it by checksum, load it once per process, generate a test pack.

A *pack* is a folder of ONNX files in insightface's layout (``buffalo_l``: ``det_10g.onnx`` +
``w600k_r50.onnx`` + models facelake does not use). facelake uses two of them: the face detector
(insightface routes it to ``SCRFD``) and the recognizer (routed to ``ArcFaceONNX``). Both are loaded
through ``insightface.model_zoo.get_model``, so insightface's own routing, pre- and post-processing run.

Identity: every file used gets a sha256; ``pack_sha256`` is the sha256 over ``role:sha256`` lines;
``pack_id`` is ``<name>@<first 12 hex of pack_sha256>``, so new weights under an old name are a new
pack (and trigger re-embedding).

Where a pack comes from (``resolve_pack``), first match wins:

1. ``generated-test-pack``: built by this module, deterministically, into ``.cache/models/``;
2. a path to a folder;
3. ``<models_dir>/<name>`` (``config.models_dir`` / ``FACELAKE_MODELS_DIR``);
4. ``<insightface root>/models/<name>`` (``~/.insightface``: where insightface keeps its downloads);
5. a download by insightface's own helper (``insightface.utils.storage.ensure_available``) when a
   network is there; offline, ``ModelPackError`` says how to provide the folder instead.

The generated test pack (``build_generated_pack``) holds two small ONNX graphs with exactly the
inputs and outputs of SCRFD (``input.1`` [1,3,?,?] -> scores/boxes/keypoints for strides 8, 16, 32,
two anchors per location) and of ArcFace (``input.1`` [N,3,112,112] -> [N,512]):

* detector: on 16x16-pooled luma it fires, at stride 32 only, where a 32x32 square is brighter than
  the 96x96 square around it (a local maximum, no near-black cell in the window, so boxes stay inside
  the image and the letterbox padding never fires); box = anchor +- 1 stride, five keypoints at the
  ArcFace template positions inside the box. Strides 8 and 16 never fire.
* recognizer: 7x7 average pool of the aligned 112x112 crop (-> 3x16x16), minus its 5x5 local mean
  (high-pass), centred, times a fixed seeded Gaussian projection to 512-d. Close crops give close
  embeddings, different crops do not. The batch axis is dynamic (as in w600k_r50), so
  ``ArcFaceONNX.get_feat`` embeds many aligned crops in one call.

A fixed-shape variant (``build_generated_pack(recognizer_batch=1, detector_input_size=(640, 640))``)
has the same weights but declares what many real exports declare: a recognizer batch axis fixed at N and
a detector input fixed at 1x3xHxW. ``inspect_pack`` reads both from the graphs; the embed job then sends
exactly N crops per recognizer call and runs the detector at its own size, whatever ``det_size`` says.

Weights of real packs are never part of the repository (non-commercial licence); the generated pack
lives under ``.cache/`` (git-ignored) and is rebuilt byte-identically on demand.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.paths import cache_root

log = logging.getLogger("facelake.models")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GENERATED_PACK = "generated-test-pack"
GENERATED_DETECTOR = "det_generated.onnx"
GENERATED_RECOGNIZER = "w_generated.onnx"
GENERATOR_VERSION = 2
GENERATED_SEED = 20250301
EMBEDDING_DIM = 512
MODELS_DIR_ENV = "FACELAKE_MODELS_DIR"
INSIGHTFACE_ROOT = "~/.insightface"
KNOWN_PACKS = {  # insightface's packs: the files facelake uses from each (for messages only)
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_m": ("det_2.5g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
    "buffalo_sc": ("det_500m.onnx", "w600k_mbf.onnx"),
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
}
STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
# ArcFace's five reference points in its 112x112 crop (insightface.utils.face_align.arcface_dst).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


class ModelPackError(FileNotFoundError):
    """A model pack cannot be found, fetched or trusted; the message says what to do."""


# ------------------------------------------------------------------------------------------------
# Identity
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFile:
    role: str  # "detector" | "recognizer"
    file: str  # file name inside the pack folder
    sha256: str


@dataclass(frozen=True)
class ModelPack:
    """A pack on disk, identified by checksums. Small and picklable: workers load it from ``path``."""

    name: str
    path: str
    detector: ModelFile
    recognizer: ModelFile
    embedding_dim: int
    generated: bool = False
    detector_input_size: tuple[int, int] | None = None
    """(width, height) when the detector graph fixes its input size; None when it takes any size."""
    recognizer_batch: int | None = None
    """Crops per call when the recognizer graph fixes its batch axis; None when the axis is dynamic."""

    @property
    def files(self) -> tuple[ModelFile, ModelFile]:
        return (self.detector, self.recognizer)

    @property
    def pack_sha256(self) -> str:
        return pack_sha256(self.files)

    @property
    def pack_id(self) -> str:
        return f"{self.name}@{self.pack_sha256[:12]}"

    def file_path(self, f: ModelFile) -> str:
        return str(Path(self.path) / f.file)

    def describe(self) -> dict[str, Any]:
        """JSON-able identity for commit metadata and logs."""
        return {
            "pack_id": self.pack_id,
            "pack_sha256": self.pack_sha256,
            "files": [{"role": f.role, "file": f.file, "sha256": f.sha256} for f in self.files],
            "embedding_dim": self.embedding_dim,
            "detector_input_size": list(self.detector_input_size) if self.detector_input_size else None,
            "recognizer_batch": self.recognizer_batch,
        }


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_sha256(files: tuple[ModelFile, ...] | list[ModelFile]) -> str:
    """sha256 over ``role:sha256`` lines (file names do not matter, contents do)."""
    text = "".join(f"{f.role}:{f.sha256}\n" for f in sorted(files, key=lambda f: f.role))
    return hashlib.sha256(text.encode()).hexdigest()


GraphRole = tuple[str | None, int | None, tuple[int | str, ...]]


def _graph_role(path: Path) -> GraphRole:
    """(role, embedding dim, first input's dims) of one ONNX file, by insightface's ModelRouter's shape rules.

    Dims are ints where the graph fixes them, names (or "") where they are dynamic.
    """
    stat = path.stat()
    return _graph_role_cached(str(path), stat.st_size, stat.st_mtime_ns)


def fixed_dim(value: Any) -> int | None:
    """A shape entry (ONNX graph or onnxruntime session metadata) as a positive int, or None if dynamic."""
    return int(value) if isinstance(value, int | np.integer) and int(value) > 0 else None


def fixed_input_size(shape: Any) -> tuple[int, int] | None:
    """(width, height) of an NCHW input shape that fixes both spatial axes, else None (as SCRFD reads it)."""
    if shape is None or len(shape) != 4:
        return None
    height, width = fixed_dim(shape[2]), fixed_dim(shape[3])
    return (width, height) if height and width else None


@functools.lru_cache(maxsize=64)
def _graph_role_cached(file: str, size: int, mtime_ns: int) -> GraphRole:
    import onnx

    path = Path(file)

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a broken file is reported, not fatal for the scan
        log.warning("cannot read %s as ONNX: %s", path, exc)
        return None, None, ()
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    shape = inputs[0].type.tensor_type.shape.dim if inputs else []
    dims = tuple(d.dim_value if d.dim_value > 0 else d.dim_param for d in shape)
    if len(graph.output) >= 5:
        return "detector", None, dims
    if len(dims) != 4 or not all(isinstance(d, int) for d in dims[2:]):
        return None, None, dims
    h, w = dims[2], dims[3]
    if (h, w) in ((192, 192), (96, 96)) or (len(inputs) == 2 and h == 128):
        return None, None, dims  # landmark, attribute, swapper models: not used
    if h == w and h >= 112 and h % 16 == 0 and len(graph.output) == 1:
        out = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
        return "recognizer", (out[-1] if out and out[-1] > 0 else None), dims
    return None, None, dims


def inspect_pack(path: str | Path, name: str | None = None, *, generated: bool = False) -> ModelPack:
    """Identify the detector and recognizer in a pack folder and checksum them.

    Like insightface's FaceAnalysis, files are scanned in sorted order and the first model of each
    role wins. A nested single sub-folder (as some pack zips unpack) is looked into.
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ModelPackError(f"model pack folder {folder} does not exist")
    onnx_files = sorted(folder.glob("*.onnx"))
    subdirs = [d for d in folder.iterdir() if d.is_dir()]
    if not onnx_files and len(subdirs) == 1:
        return inspect_pack(subdirs[0], name or folder.name, generated=generated)
    roles: dict[str, tuple[Path, int | None, tuple[int | str, ...]]] = {}
    for file in onnx_files:
        role, dim, dims = _graph_role(file)
        if role and role not in roles:
            roles[role] = (file, dim, dims)
    missing = [r for r in ("detector", "recognizer") if r not in roles]
    if missing:
        raise ModelPackError(
            f"model pack folder {folder} has no {' and no '.join(missing)} ONNX file "
            f"(found: {', '.join(f.name for f in onnx_files) or 'no .onnx files'}); a pack needs an SCRFD "
            "detector and an ArcFace recognizer, e.g. det_10g.onnx + w600k_r50.onnx (buffalo_l)"
        )
    det, _, det_dims = roles["detector"]
    rec, dim, rec_dims = roles["recognizer"]
    return ModelPack(
        name=name or folder.name,
        path=str(folder),
        detector=ModelFile("detector", det.name, file_sha256(det)),
        recognizer=ModelFile("recognizer", rec.name, file_sha256(rec)),
        embedding_dim=int(dim or EMBEDDING_DIM),
        generated=generated,
        detector_input_size=fixed_input_size(det_dims),
        recognizer_batch=fixed_dim(rec_dims[0]) if rec_dims else None,
    )


# ------------------------------------------------------------------------------------------------
# Finding a pack
# ------------------------------------------------------------------------------------------------


def generated_pack_dir() -> Path:
    """Where ``generated-test-pack`` is built by default (git-ignored)."""
    return cache_root() / "models" / GENERATED_PACK


def shared_models_dir() -> Path:
    """Real models provided next to the project: ``$FACELAKE_MODELS_DIR``, else ``<project>/../shared/models``."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "models"


def resolve_pack(
    name: str,
    models_dir: str | None = None,
    *,
    download: bool = True,
    insightface_root: str = INSIGHTFACE_ROOT,
) -> ModelPack:
    """The pack called ``name`` (or at path ``name``), found, built or fetched as the module doc says."""
    name = (name or "").strip()
    if not name:
        raise ModelPackError("no model pack given: set model_pack (--model-pack / FACELAKE_MODEL_PACK)")
    if name == GENERATED_PACK:
        return inspect_pack(build_generated_pack(), GENERATED_PACK, generated=True)
    direct = Path(name).expanduser()
    if direct.is_dir():
        return inspect_pack(direct)
    if "/" in name or name.startswith("."):
        raise ModelPackError(f"model pack folder {direct} does not exist")
    root = Path(insightface_root).expanduser()
    searched = ([Path(models_dir).expanduser() / name] if models_dir else []) + [root / "models" / name]
    for candidate in searched:
        if candidate.is_dir():
            return inspect_pack(candidate, name)
    problem = "downloads are off"
    if download:
        try:
            from insightface.utils.storage import ensure_available

            log.info("model pack %s not found locally: asking insightface to download it into %s", name, root)
            fetched = ensure_available("models", name, root=str(root))
            return inspect_pack(fetched, name)
        except ModelPackError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, HTTP, zip errors: all mean "not available"
            problem = f"insightface could not download it ({type(exc).__name__}: {str(exc)[:160]})"
    files = " + ".join(KNOWN_PACKS.get(name, ("<detector>.onnx", "<recognizer>.onnx")))
    where = Path(models_dir).expanduser() if models_dir else Path("<models_dir>")
    raise ModelPackError(
        f"model pack {name!r} is not available: looked in {', '.join(str(p) for p in searched)} and {problem}. "
        f"Without a network, put a folder holding its detector and recognizer ONNX files ({files}) at "
        f"{where / name} and set FACELAKE_MODELS_DIR (or --models-dir / models_dir) to {where}, or pass the "
        f"folder itself as --model-pack /path/to/{name}. For tests use --model-pack {GENERATED_PACK}."
    )


# ------------------------------------------------------------------------------------------------
# The generated test pack
# ------------------------------------------------------------------------------------------------

_GEN_OPSET = 13
_GEN_IR_VERSION = 7
# Detector constants (normalised pixel units: SCRFD feeds (pixel - 127.5) / 128).
DET_CONTRAST_THRESHOLD = 0.35  # centre brighter than its ring by ~45 grey levels
DET_GAIN = 4.0  # score 0.5 at the threshold, ~0.93 for a contrast of 1
DET_DARK_LEVEL = -0.9  # a 16x16 cell darker than ~12/255 (letterbox padding, edges) blocks a detection
DET_DARK_PENALTY = 1000.0
DET_BOX_HALF = 1.0  # box = anchor +- 1 stride (a 64x64 box in the detector's input)


def _init(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def generated_detector_model(input_size: tuple[int, int] | None = None):  # -> onnx.ModelProto
    """An SCRFD-shaped ONNX graph that fires on bright 32x32 squares (see module doc).

    ``input_size`` (width, height) fixes the input at 1x3xHxW and every output's row count, as an export
    with a fixed input shape does; None (the default pack) leaves height and width dynamic.
    """
    from onnx import TensorProto, helper

    n = helper.make_node
    inits = [
        _init("luma_w", np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)),
        _init("ring_pads", np.array([0, 0, 3, 3, 0, 0, 1, 1], np.int64)),
        _init("black", np.array(-1.0, np.float32)),
        _init("zero", np.array(0.0, np.float32)),
        _init("one", np.array(1.0, np.float32)),
        _init("contrast_t", np.array(DET_CONTRAST_THRESHOLD, np.float32)),
        _init("gain", np.array(DET_GAIN, np.float32)),
        _init("dark_level", np.array(DET_DARK_LEVEL, np.float32)),
        _init("dark_penalty", np.array(DET_DARK_PENALTY, np.float32)),
        _init("peak_penalty", np.array(DET_DARK_PENALTY, np.float32)),
    ]
    # Centre-surround kernel over the 6x6 window of 16-px cells: centre 2x2 mean minus ring mean.
    kernel = np.full((6, 6), -1.0 / 32.0, np.float32)
    kernel[2:4, 2:4] = 0.25
    inits.append(_init("contrast_k", kernel.reshape(1, 1, 6, 6)))
    kps = (ARCFACE_TEMPLATE - 56.0) / 56.0 * DET_BOX_HALF  # template inside the box, in strides
    inits += [
        _init("box_const", np.full((1, 4 * NUM_ANCHORS, 1, 1), DET_BOX_HALF, np.float32)),
        _init("kps_const", np.tile(kps.reshape(-1), NUM_ANCHORS).astype(np.float32).reshape(1, 10 * NUM_ANCHORS, 1, 1)),
        _init("box_zero", np.zeros((1, 4 * NUM_ANCHORS, 1, 1), np.float32)),
        _init("kps_zero", np.zeros((1, 10 * NUM_ANCHORS, 1, 1), np.float32)),
        _init("shape_1", np.array([-1, 1], np.int64)),
        _init("shape_4", np.array([-1, 4], np.int64)),
        _init("shape_10", np.array([-1, 10], np.int64)),
    ]
    nodes = [
        n("Conv", ["input.1", "luma_w"], ["luma"], name="det_luma"),
        n("AveragePool", ["luma"], ["cells"], kernel_shape=[16, 16], strides=[16, 16], name="det_cells"),
        n("Pad", ["cells", "ring_pads", "black"], ["cells_p"], mode="constant", name="det_pad"),
        n("Conv", ["cells_p", "contrast_k"], ["contrast"], strides=[2, 2], name="det_contrast"),
        # Darkest cell of the window: min = -max(-x).
        n("Neg", ["cells_p"], ["neg_cells"], name="det_neg_cells"),
        n("MaxPool", ["neg_cells"], ["neg_min"], kernel_shape=[6, 6], strides=[2, 2], name="det_minpool"),
        n("Neg", ["neg_min"], ["window_min"], name="det_window_min"),
        n("Sub", ["window_min", "dark_level"], ["dark_margin"], name="det_dark_margin"),
        n("Neg", ["dark_margin"], ["neg_margin"], name="det_neg_margin"),
        n("Relu", ["neg_margin"], ["darkness"], name="det_darkness"),
        n("Mul", ["darkness", "dark_penalty"], ["dark_term"], name="det_dark_term"),
        # Only local maxima of the contrast map fire.
        n("MaxPool", ["contrast"], ["contrast_max"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
          name="det_peak_pool"),
        n("Equal", ["contrast", "contrast_max"], ["is_peak_b"], name="det_is_peak"),
        n("Cast", ["is_peak_b"], ["is_peak"], to=TensorProto.FLOAT, name="det_peak_f"),
        n("Sub", ["one", "is_peak"], ["not_peak"], name="det_not_peak"),
        n("Mul", ["not_peak", "peak_penalty"], ["peak_term"], name="det_peak_term"),
        n("Sub", ["contrast", "contrast_t"], ["excess"], name="det_excess"),
        n("Mul", ["excess", "gain"], ["logit_a"], name="det_gain"),
        n("Sub", ["logit_a", "dark_term"], ["logit_b"], name="det_minus_dark"),
        n("Sub", ["logit_b", "peak_term"], ["logit"], name="det_minus_peak"),
        n("Sigmoid", ["logit"], ["score32_a0"], name="det_sigmoid"),
        n("Mul", ["score32_a0", "zero"], ["zeros32"], name="det_zeros32"),
        # Stride 8 and 16 maps: right shapes, never fire.
        n("AveragePool", ["luma"], ["cells8"], kernel_shape=[8, 8], strides=[8, 8], name="det_cells8"),
        n("Mul", ["cells8", "zero"], ["zeros8"], name="det_zeros8"),
        n("AveragePool", ["luma"], ["cells16"], kernel_shape=[16, 16], strides=[16, 16], name="det_cells16"),
        n("Mul", ["cells16", "zero"], ["zeros16"], name="det_zeros16"),
    ]
    outputs: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}

    def head(kind: str, stride: int, src: str, const: str, width: int) -> None:
        """NCHW map -> (H*W*anchors, width), anchors innermost: SCRFD's permute(0,2,3,1).reshape(-1, width)."""
        nchw = f"{kind}{stride}_nchw"
        nodes.append(n("Add", [src, const], [nchw], name=f"det_{kind}{stride}_fill"))
        nodes.append(n("Transpose", [nchw], [f"{kind}{stride}_nhwc"], perm=[0, 2, 3, 1], name=f"det_{kind}{stride}_t"))
        name = f"{kind}_{stride}"
        shape = {1: "shape_1", 4: "shape_4", 10: "shape_10"}[width]
        nodes.append(n("Reshape", [f"{kind}{stride}_nhwc", shape], [name], name=f"det_{kind}{stride}_r"))
        outputs[kind].append(name)

    # Scores: anchor 0 carries the detection, anchor 1 never fires.
    nodes.append(n("Concat", ["score32_a0", "zeros32"], ["score32_pair"], axis=1, name="det_score32_pair"))
    nodes.append(n("Concat", ["zeros8", "zeros8"], ["score8_pair"], axis=1, name="det_score8_pair"))
    nodes.append(n("Concat", ["zeros16", "zeros16"], ["score16_pair"], axis=1, name="det_score16_pair"))
    inits.append(_init("no_score", np.zeros((1, NUM_ANCHORS, 1, 1), np.float32)))
    for stride, pair in ((8, "score8_pair"), (16, "score16_pair"), (32, "score32_pair")):
        head("score", stride, pair, "no_score", 1)
    for stride, z in ((8, "zeros8"), (16, "zeros16"), (32, "zeros32")):
        head("bbox", stride, z, "box_const" if stride == 32 else "box_zero", 4)
    for stride, z in ((8, "zeros8"), (16, "zeros16"), (32, "zeros32")):
        head("kps", stride, z, "kps_const" if stride == 32 else "kps_zero", 10)

    if input_size is None:
        height_width: list[int | str] = ["?", "?"]
    else:
        w, h = (int(v) for v in input_size)
        if w <= 0 or h <= 0 or w % 32 or h % 32:
            raise ValueError(f"detector input size must be two positive multiples of 32, got {input_size}")
        height_width = [h, w]
    graph_in = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, *height_width])
    graph_out = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride, name in zip(STRIDES, outputs[kind], strict=True):
            rows = f"anchors_{stride}" if input_size is None else (h // stride) * (w // stride) * NUM_ANCHORS
            graph_out.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, width]))
    graph = helper.make_graph(nodes, "facelake_generated_scrfd", [graph_in], graph_out, inits)
    return _finish(graph, "facelake generated SCRFD-shaped test detector")


def generated_recognizer_model(batch: int | None = None):  # -> onnx.ModelProto
    """An ArcFace-shaped ONNX graph: pooled aligned crop, centred, times a seeded random projection.

    ``batch`` fixes the batch axis (onnxruntime then refuses any other number of crops per call), as
    many MobileFaceNet/ArcFace exports do with 1; None (the default pack) leaves it dynamic.
    """
    from onnx import TensorProto, helper

    n = helper.make_node
    features = 3 * 16 * 16
    rng = np.random.RandomState(GENERATED_SEED)  # legacy generator: its stream is frozen across numpy versions
    projection = (rng.standard_normal((features, EMBEDDING_DIM)) / np.sqrt(features)).astype(np.float32)
    inits = [_init("projection", projection)]
    nodes = [
        n("AveragePool", ["input.1"], ["pooled"], kernel_shape=[7, 7], strides=[7, 7], name="rec_pool"),
        # High-pass (minus a 5x5 local mean): the layout every face crop shares weighs less than its detail.
        n("AveragePool", ["pooled"], ["local_mean"], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2],
          count_include_pad=0, name="rec_local_mean"),
        n("Sub", ["pooled", "local_mean"], ["detail"], name="rec_highpass"),
        n("Flatten", ["detail"], ["flat"], axis=1, name="rec_flatten"),
        n("ReduceMean", ["flat"], ["flat_mean"], axes=[1], keepdims=1, name="rec_mean"),
        n("Sub", ["flat", "flat_mean"], ["centred"], name="rec_centre"),
        n("MatMul", ["centred", "projection"], ["683"], name="rec_project"),
    ]
    if batch is not None and int(batch) <= 0:
        raise ValueError(f"recognizer batch must be positive, got {batch}")
    rows: int | str = "None" if batch is None else int(batch)
    graph_in = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [rows, 3, 112, 112])
    graph_out = helper.make_tensor_value_info("683", TensorProto.FLOAT, [rows, EMBEDDING_DIM])
    graph = helper.make_graph(nodes, "facelake_generated_arcface", [graph_in], [graph_out], inits)
    return _finish(graph, "facelake generated ArcFace-shaped test recognizer")


def _finish(graph, doc: str):
    from onnx import checker, helper

    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _GEN_OPSET)],
        producer_name="facelake",
        producer_version=str(GENERATOR_VERSION),
        doc_string=doc,
    )
    model.ir_version = _GEN_IR_VERSION
    checker.check_model(model)
    return model


def generated_pack_bytes(
    *, recognizer_batch: int | None = None, detector_input_size: tuple[int, int] | None = None
) -> dict[str, bytes]:
    """File name -> bytes of the generated pack (deterministic); the arguments make the fixed-shape one."""
    detector = generated_detector_model(detector_input_size)
    recognizer = generated_recognizer_model(recognizer_batch)
    return {
        GENERATED_DETECTOR: detector.SerializeToString(deterministic=True),
        GENERATED_RECOGNIZER: recognizer.SerializeToString(deterministic=True),
    }


_BUILD_LOCK = threading.Lock()


def build_generated_pack(
    target: str | Path | None = None,
    *,
    detector_from: str | Path | None = None,
    recognizer_batch: int | None = None,
    detector_input_size: tuple[int, int] | None = None,
) -> Path:
    """Write the generated pack into ``target`` (default ``.cache/models/generated-test-pack``); returns it.

    Idempotent and safe with concurrent builders: files are rewritten (atomically) only when their
    bytes differ. ``detector_from`` copies a real detector (e.g. det_500m.onnx) in place of the
    generated one: a mixed pack with a real SCRFD and the generated recognizer. ``recognizer_batch``
    (e.g. 1) and ``detector_input_size`` (width, height) build the fixed-shape variant (module doc).
    """
    folder = Path(target) if target is not None else generated_pack_dir()
    files = generated_pack_bytes(recognizer_batch=recognizer_batch, detector_input_size=detector_input_size)
    if detector_from is not None:
        source = Path(detector_from)
        del files[GENERATED_DETECTOR]
        files = {source.name: source.read_bytes(), **files}
    with _BUILD_LOCK:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            path = folder / name
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                continue
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
    return folder


# ------------------------------------------------------------------------------------------------
# Loading (on the workers)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeSettings:
    """How to run a pack: execution providers, threads per session, detector input size and thresholds."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1
    det_size: tuple[int, int] = (640, 640)
    det_thresh: float = 0.5
    nms_thresh: float = 0.4

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        if len(self.det_size) != 2 or any(int(v) <= 0 or int(v) % 32 for v in self.det_size):
            raise ValueError(f"det_size must be two positive multiples of 32, got {self.det_size}")
        if not 0.0 < self.det_thresh <= 1.0:
            raise ValueError(f"det_thresh must be in (0, 1], got {self.det_thresh}")


@dataclass
class LoadedPack:
    """A pack's insightface models, ready to run in this process."""

    pack: ModelPack
    detector: Any  # insightface.model_zoo.scrfd.SCRFD
    recognizer: Any  # insightface.model_zoo.arcface_onnx.ArcFaceONNX
    providers: tuple[str, ...]
    threads: int
    recognizer_batch: int | None = None
    """Crops per recognizer call the session accepts when its batch axis is fixed; None when dynamic."""
    det_size: tuple[int, int] | None = None
    """(width, height) the detector was prepared with: the detector's own fixed size when it has one."""


def compute_threads(cores: int, concurrent_tasks: int) -> int:
    """onnxruntime intra-op threads per task so that threads x concurrent tasks <= cores."""
    return max(1, int(cores) // max(1, int(concurrent_tasks)))


def select_providers(requested: tuple[str, ...] | list[str], available: list[str] | None = None) -> tuple[str, ...]:
    """Requested execution providers that this onnxruntime has, CPU always last as the fallback.

    ``("auto",)`` picks insightface's default (CUDA or CoreML when present, then CPU).
    """
    import onnxruntime

    available = list(onnxruntime.get_available_providers() if available is None else available)
    wanted = [str(p) for p in requested] or ["CPUExecutionProvider"]
    if wanted == ["auto"]:
        from insightface.model_zoo.onnxruntime_utils import get_default_providers

        wanted = list(get_default_providers(available))
    chosen = [p for p in dict.fromkeys(wanted) if p in available]
    dropped = [p for p in wanted if p not in available]
    if dropped:
        log.warning("execution providers %s are not available here (have %s); using the rest", dropped, available)
    if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return tuple(chosen)


def session_options(threads: int):  # -> onnxruntime.SessionOptions
    """Session options capping onnxruntime's CPU threads at ``threads`` (one inter-op thread)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options


def load_pack(pack: ModelPack, settings: RuntimeSettings) -> LoadedPack:
    """Load the pack's detector and recognizer through insightface's model zoo (checksums verified first)."""
    import onnxruntime
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    folder = Path(pack.path)
    if pack.generated and not all((folder / f.file).is_file() for f in pack.files):
        # A worker without the driver's disk rebuilds it (the fixed-shape variant too), byte-identical.
        build_generated_pack(
            folder, recognizer_batch=pack.recognizer_batch, detector_input_size=pack.detector_input_size
        )
    for f in pack.files:
        path = folder / f.file
        if not path.is_file():
            raise ModelPackError(
                f"model file {path} of pack {pack.pack_id} is missing on this machine: put the pack folder "
                "at the same path on every worker (shared storage or the worker image)"
            )
        actual = file_sha256(path)
        if actual != f.sha256:
            raise ModelPackError(f"model file {path} changed: sha256 {actual[:12]}… != {f.sha256[:12]}… of {pack.pack_id}")
    onnxruntime.set_default_logger_severity(3)
    providers = select_providers(settings.providers)
    options = session_options(settings.threads)
    detector = get_model(pack.file_path(pack.detector), providers=list(providers), sess_options=options)
    recognizer = get_model(pack.file_path(pack.recognizer), providers=list(providers), sess_options=options)
    if not isinstance(detector, SCRFD):
        raise ModelPackError(f"{pack.detector.file} was routed to {type(detector).__name__}, not SCRFD")
    if not isinstance(recognizer, ArcFaceONNX):
        raise ModelPackError(f"{pack.recognizer.file} was routed to {type(recognizer).__name__}, not ArcFaceONNX")
    ctx_id = 0 if providers and providers[0] != "CPUExecutionProvider" else -1
    # A detector exported with a fixed input shape runs at that size only: never ask it for another.
    # (insightface's SCRFD keeps its fixed size too; saying so here makes det_size what really ran.)
    det_size = fixed_input_size(detector.input_shape) or tuple(settings.det_size)
    if det_size != tuple(settings.det_size):
        log.warning(
            "detector %s has a fixed input of %dx%d: it runs at that size, not det_size %dx%d",
            pack.detector.file,
            *det_size,
            *settings.det_size,
        )
    detector.prepare(
        ctx_id, input_size=det_size, det_thresh=settings.det_thresh, nms_thresh=settings.nms_thresh
    )
    recognizer.prepare(ctx_id)
    # onnxruntime refuses any other number of crops than a fixed batch axis declares (issue #10).
    recognizer_batch = fixed_dim(recognizer.input_shape[0]) if recognizer.input_shape else None
    try:
        import cv2

        cv2.setNumThreads(int(settings.threads))  # resize / warpAffine share the same budget
    except Exception:  # noqa: BLE001 - OpenCV without threading support
        pass
    return LoadedPack(pack, detector, recognizer, providers, settings.threads, recognizer_batch, det_size)


_CACHE: dict[tuple[Any, ...], LoadedPack] = {}
_CACHE_LOCK = threading.Lock()
_LOADS: dict[str, int] = {}  # pack_sha256 -> loads in this process


def cached_pack(pack: ModelPack, settings: RuntimeSettings) -> LoadedPack:
    """The loaded pack for this process: loaded once per (folder, checksum, settings), then reused."""
    key = (pack.path, pack.pack_sha256, settings)
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = load_pack(pack, settings)
            _CACHE[key] = loaded
            _LOADS[pack.pack_sha256] = _LOADS.get(pack.pack_sha256, 0) + 1
            log.info("loaded model pack %s in process %d (%s, %d thread(s))", pack.pack_id, os.getpid(),
                     ",".join(loaded.providers), settings.threads)
        return loaded


def load_count(pack_sha256: str | None = None) -> int:
    """How many times this process has loaded that pack (any pack when None); tests check it stays at one."""
    return _LOADS.get(pack_sha256, 0) if pack_sha256 else sum(_LOADS.values())


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# ------------------------------------------------------------------------------------------------
# CLI: `facelake models` — show (and fetch or build) a pack
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake models`` flags."""
    from jobs.core.config import add_config_arguments

    parser.add_argument("--model-pack", help="pack name (buffalo_l, generated-test-pack…) or folder")
    parser.add_argument("--models-dir", help="folder holding pack folders (default $FACELAKE_MODELS_DIR)")
    parser.add_argument("--no-download", action="store_true", help="never ask insightface to download the pack")
    parser.add_argument("--build-test-pack", metavar="DIR", help="write the generated test pack into DIR")
    parser.add_argument("--detector-from", metavar="ONNX",
                        help="with --build-test-pack: a real detector to use instead of the generated one")
    parser.add_argument(
        "--recognizer-batch",
        type=int,
        metavar="N",
        help="with --build-test-pack: fix the recognizer's batch axis at N (real exports often fix it at 1)",
    )
    parser.add_argument(
        "--detector-input-size",
        type=int,
        metavar="PX",
        help="with --build-test-pack: fix the generated detector's input at 1x3xPXxPX (e.g. 640)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Resolve (find, build or download) the configured pack and print its identity as JSON."""
    from jobs.core.config import config_from_args
    from jobs.core.runs import configure_logging

    config = config_from_args(args)
    configure_logging(config.log_level)
    if args.build_test_pack:
        size = (args.detector_input_size, args.detector_input_size) if args.detector_input_size else None
        folder = build_generated_pack(
            args.build_test_pack,
            detector_from=args.detector_from,
            recognizer_batch=args.recognizer_batch,
            detector_input_size=size,
        )
        pack = inspect_pack(folder, generated=args.detector_from is None)
    else:
        pack = resolve_pack(config.model_pack, config.models_dir, download=not args.no_download)
    print(json.dumps({**pack.describe(), "path": pack.path}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.faces.packs [--model-pack NAME | --build-test-pack DIR]``."""
    parser = argparse.ArgumentParser(prog="facelake models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
