"""The generated test pack: deterministic SCRFD- and ArcFace-shaped ONNX graphs (dynamic or fixed shapes)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np

GENERATED_PACK = "generated-test-pack"  # the --model-pack name that resolves to this pack
GENERATED_DETECTOR = "det_generated.onnx"
GENERATED_RECOGNIZER = "w_generated.onnx"
GENERATOR_VERSION = 2
GENERATED_SEED = 20250301
EMBEDDING_DIM = 512  # ArcFace's (w600k_r50, glintr100)
STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
# ArcFace's five reference points in its 112x112 crop (insightface.utils.face_align.arcface_dst).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

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
    """An SCRFD-shaped ONNX graph: ``input.1`` [1,3,H,W] -> scores, boxes, keypoints at strides 8, 16, 32.

    On 16x16-pooled luma it fires, at stride 32 only, where a 32x32 square is brighter than the 96x96
    square around it (a local maximum, no near-black cell in the window, so boxes stay inside the image
    and the letterbox padding never fires); box = anchor +- 1 stride, five keypoints at the ArcFace
    template positions inside the box, two anchors per location as SCRFD has. Strides 8 and 16 never fire.

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
        _init(
            "kps_const",
            np.tile(kps.reshape(-1), NUM_ANCHORS).astype(np.float32).reshape(1, 10 * NUM_ANCHORS, 1, 1),
        ),
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
        n(
            "MaxPool",
            ["contrast"],
            ["contrast_max"],
            kernel_shape=[3, 3],
            strides=[1, 1],
            pads=[1, 1, 1, 1],
            name="det_peak_pool",
        ),
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
        nodes.append(
            n("Transpose", [nchw], [f"{kind}{stride}_nhwc"], perm=[0, 2, 3, 1], name=f"det_{kind}{stride}_t")
        )
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
    """An ArcFace-shaped ONNX graph: ``input.1`` [N,3,112,112] -> [N,512].

    7x7 average pool of the aligned crop (-> 3x16x16), minus its 5x5 local mean (high-pass), centred,
    times a fixed seeded Gaussian projection: close crops give close embeddings, different crops do not.
    ``batch`` fixes the batch axis (onnxruntime then refuses any other number of crops per call), as
    many MobileFaceNet/ArcFace exports do with 1; None (the default pack) leaves it dynamic, as in
    w600k_r50, so ``ArcFaceONNX.get_feat`` embeds many crops in one call.
    """
    from onnx import TensorProto, helper

    n = helper.make_node
    features = 3 * 16 * 16
    rng = np.random.RandomState(
        GENERATED_SEED
    )  # legacy generator: its stream is frozen across numpy versions
    projection = (rng.standard_normal((features, EMBEDDING_DIM)) / np.sqrt(features)).astype(np.float32)
    inits = [_init("projection", projection)]
    nodes = [
        n("AveragePool", ["input.1"], ["pooled"], kernel_shape=[7, 7], strides=[7, 7], name="rec_pool"),
        # High-pass (minus a 5x5 local mean): the layout every face crop shares weighs less than its detail.
        n(
            "AveragePool",
            ["pooled"],
            ["local_mean"],
            kernel_shape=[5, 5],
            strides=[1, 1],
            pads=[2, 2, 2, 2],
            count_include_pad=0,
            name="rec_local_mean",
        ),
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
    target: str | Path,
    *,
    detector_from: str | Path | None = None,
    recognizer_batch: int | None = None,
    detector_input_size: tuple[int, int] | None = None,
) -> Path:
    """Write the generated pack into the folder ``target``; returns it.

    Idempotent and safe with concurrent builders: files are rewritten (atomically) only when their
    bytes differ. ``detector_from`` copies a real detector (e.g. det_500m.onnx) in place of the
    generated one: a mixed pack with a real SCRFD and the generated recognizer. ``recognizer_batch``
    (e.g. 1) and ``detector_input_size`` (width, height) build the fixed-shape variant: same weights,
    but the recognizer's batch axis and the detector's input shape fixed, as many real exports have them.
    """
    folder = Path(target)
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
