"""Embed worker side: a pack loaded once per process within a thread budget; detect, align, embed faces."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.imaging import TooManyPixels, load_rgb
from jobs.faces.packs import ModelPack, ModelPackError, file_sha256, fixed_dim, fixed_input_size
from jobs.faces.testpack import build_generated_pack

log = logging.getLogger("facelake.models")


# ------------------------------------------------------------------------------------------------
# Loading: once per process, threads capped
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


def select_providers(
    requested: tuple[str, ...] | list[str], available: list[str] | None = None
) -> tuple[str, ...]:
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
        log.warning(
            "execution providers %s are not available here (have %s); using the rest", dropped, available
        )
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
            raise ModelPackError(
                f"model file {path} changed: sha256 {actual[:12]}… != {f.sha256[:12]}… of {pack.pack_id}"
            )
    onnxruntime.set_default_logger_severity(3)
    providers = select_providers(settings.providers)
    options = session_options(settings.threads)
    detector = get_model(pack.file_path(pack.detector), providers=list(providers), sess_options=options)
    recognizer = get_model(pack.file_path(pack.recognizer), providers=list(providers), sess_options=options)
    if not isinstance(detector, SCRFD):
        raise ModelPackError(f"{pack.detector.file} was routed to {type(detector).__name__}, not SCRFD")
    if not isinstance(recognizer, ArcFaceONNX):
        raise ModelPackError(
            f"{pack.recognizer.file} was routed to {type(recognizer).__name__}, not ArcFaceONNX"
        )
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
# Loads in this process, keyed like _CACHE (folder, checksum, settings): a reused Python worker that ran
# an earlier job with other settings (threads, det_size), or the same pack from another folder,
# legitimately holds a second copy.
_LOADS: dict[tuple[Any, ...], int] = {}


def cached_pack(pack: ModelPack, settings: RuntimeSettings) -> LoadedPack:
    """The loaded pack for this process: loaded once per (folder, checksum, settings), then reused."""
    key = (pack.path, pack.pack_sha256, settings)
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = load_pack(pack, settings)
            _CACHE[key] = loaded
            _LOADS[key] = _LOADS.get(key, 0) + 1
            log.info(
                "loaded model pack %s in process %d (%s, %d thread(s))",
                pack.pack_id,
                os.getpid(),
                ",".join(loaded.providers),
                settings.threads,
            )
        return loaded


def load_count(pack: ModelPack | None = None, settings: RuntimeSettings | None = None) -> int:
    """How many times this process loaded that pack (its folder and checksum) with those settings (any,
    when None); tests check one."""
    return sum(
        n
        for (path, sha, with_settings), n in _LOADS.items()
        if (pack is None or (path, sha) == (pack.path, pack.pack_sha256))
        and settings in (None, with_settings)
    )


_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """glibc only, once per process: serve blocks up to 32 MiB from the heap instead of fresh mmaps.

    Decoded images and detector inputs (~1-10 MB each) are above glibc's initial 128 KiB mmap
    threshold, so a fresh Python worker maps, page-faults and unmaps them for every image (~20% more
    CPU per image on the sample drop, mostly system time), while a long-lived process that once freed
    large blocks has had its threshold raised by glibc itself. Returns whether the setting took.
    """
    global _ALLOCATOR_TUNED
    if not _ALLOCATOR_TUNED:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
            _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
                libc.mallopt(m_trim_threshold, 128 << 20)
            )
        except (OSError, AttributeError):  # not glibc
            _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


# ------------------------------------------------------------------------------------------------
# Detect, align, embed: plain Python on numpy arrays (tested without Spark)
# ------------------------------------------------------------------------------------------------


class FaceStatus(StrEnum):
    OK = "ok"
    NO_FACE = "no_face"
    FAILED = "failed"


class FailureReason(StrEnum):
    DECODE_FAILED = "decode_failed"
    TOO_MANY_PIXELS = "too_many_pixels"
    DETECT_FAILED = "detect_failed"
    ALIGN_FAILED = "align_failed"
    EMBED_FAILED = "embed_failed"


@dataclass
class FaceResult:
    bbox: np.ndarray  # (4,) float32
    landmarks: np.ndarray  # (5, 2) float32
    det_score: float
    embedding: np.ndarray | None = None  # (dim,) float32, L2-normalised


@dataclass
class ImageResult:
    image_id: str
    status: FaceStatus
    reason: FailureReason | None = None
    detail: str | None = None
    faces: list[FaceResult] = field(default_factory=list)

    def fail(self, reason: FailureReason, exc: BaseException | str) -> None:
        self.status, self.reason, self.faces = FaceStatus.FAILED, reason, []
        self.detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc)[:200]}"


def detect_faces(loaded: LoadedPack, img: np.ndarray) -> list[FaceResult]:
    """SCRFD detection (insightface's post-processing), ranked by score, then x, then y."""
    bboxes, kpss = loaded.detector.detect(img)
    if bboxes.shape[0] == 0:
        return []
    if kpss is None:
        raise RuntimeError("the detector gives no keypoints: alignment needs the 5-point SCRFD variant")
    if not (np.isfinite(bboxes).all() and np.isfinite(kpss).all()):
        raise FloatingPointError("non-finite box or keypoint")
    order = np.lexsort((bboxes[:, 1], bboxes[:, 0], -bboxes[:, 4]))
    return [
        FaceResult(bboxes[i, :4].astype(np.float32), kpss[i].astype(np.float32), float(bboxes[i, 4]))
        for i in order
    ]


def _normalised(feature: np.ndarray) -> np.ndarray:
    """insightface's Face.normed_embedding, as float32; refuses zero or non-finite vectors."""
    from insightface.app.common import Face

    face = Face(embedding=np.asarray(feature, dtype=np.float32).ravel())
    norm = face.embedding_norm
    if not np.isfinite(norm) or norm < 1e-12:
        raise FloatingPointError(f"embedding norm {norm}")
    return np.asarray(face.normed_embedding, dtype=np.float32)


def _features(loaded: LoadedPack, crops: list[np.ndarray], rec_batch: int) -> tuple[np.ndarray, int]:
    """Recognizer outputs for ``crops`` in calls of up to ``rec_batch`` (ArcFaceONNX.get_feat takes a list).

    A recognizer exported with a fixed batch axis (often 1) is refused any other number of crops by
    onnxruntime, so it gets calls of exactly its declared size, the last one padded with copies of its
    last crop whose rows are dropped (rows of a batch do not depend on each other).
    """
    fixed = loaded.recognizer_batch
    step = fixed or rec_batch
    parts = []
    for start in range(0, len(crops), step):
        chunk = crops[start : start + step]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = chunk + [chunk[-1]] * (fixed - n)
        parts.append(np.asarray(loaded.recognizer.get_feat(chunk))[:n])
    features = np.concatenate(parts, axis=0)
    if features.shape[0] != len(crops):
        raise RuntimeError(f"recognizer returned {features.shape[0]} rows for {len(crops)} crops")
    return features, len(parts)


def _embed_group(
    loaded: LoadedPack, group: list[tuple[ImageResult, list[np.ndarray]]], rec_batch: int
) -> int:
    """Embed the crops of several images together; returns the number of recognizer calls.

    If a shared call fails, each image is retried alone, so only the culprit is marked failed.
    """
    try:
        features, calls = _features(loaded, [c for _, crops in group for c in crops], rec_batch)
    except Exception as exc:  # noqa: BLE001
        if len(group) > 1:
            return sum(_embed_group(loaded, [item], rec_batch) for item in group)
        group[0][0].fail(FailureReason.EMBED_FAILED, exc)
        return 1
    row = 0
    for result, crops in group:
        try:
            embeddings = [_normalised(features[row + i]) for i in range(len(crops))]
            for face, embedding in zip(result.faces, embeddings, strict=True):
                face.embedding = embedding
        except Exception as exc:  # noqa: BLE001
            result.fail(FailureReason.EMBED_FAILED, exc)
        row += len(crops)
    return calls


def analyse_images(
    loaded: LoadedPack,
    items: list[tuple[str, bytes | None]],
    *,
    rec_batch: int = 32,
    max_pixels: int = 50_000_000,
    stats: dict[str, int] | None = None,
) -> list[ImageResult]:
    """Decode, detect, align and embed a batch of images. Never raises for a bad image: it is marked failed."""
    from insightface.utils.face_align import norm_crop

    size = int(loaded.recognizer.input_size[0])
    fixed = loaded.recognizer_batch
    # With a fixed batch axis, groups are whole calls' worth of crops: only a group's last call is padded.
    flush_at = -(-rec_batch // fixed) * fixed if fixed else rec_batch
    results: list[ImageResult] = []
    group: list[tuple[ImageResult, list[np.ndarray]]] = []
    pending = 0
    calls = 0
    for image_id, data in items:
        result = ImageResult(image_id, FaceStatus.NO_FACE)
        results.append(result)
        try:
            # insightface works on BGR, as OpenCV decodes.
            img = np.ascontiguousarray(load_rgb(data, max_pixels)[:, :, ::-1])
        except TooManyPixels as exc:
            result.fail(FailureReason.TOO_MANY_PIXELS, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - any decoder error is this image's problem
            result.fail(FailureReason.DECODE_FAILED, exc)
            continue
        try:
            result.faces = detect_faces(loaded, img)
        except Exception as exc:  # noqa: BLE001
            result.fail(FailureReason.DETECT_FAILED, exc)
            continue
        if not result.faces:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # scikit-image's estimate() deprecation
                crops = [norm_crop(img, landmark=f.landmarks, image_size=size) for f in result.faces]
        except Exception as exc:  # noqa: BLE001
            result.fail(FailureReason.ALIGN_FAILED, exc)
            continue
        result.status = FaceStatus.OK
        group.append((result, crops))
        pending += len(crops)
        if pending >= flush_at:
            calls += _embed_group(loaded, group, rec_batch)
            group, pending = [], 0
    if group:
        calls += _embed_group(loaded, group, rec_batch)
    if stats is not None:
        stats["recognizer_calls"] = stats.get("recognizer_calls", 0) + calls
    return results
