"""Face model packs: identity by checksum, what a pack folder holds, and where a pack comes from."""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.paths import cache_root
from jobs.faces.testpack import EMBEDDING_DIM, GENERATED_PACK, build_generated_pack

log = logging.getLogger("facelake.models")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR_ENV = "FACELAKE_MODELS_DIR"
INSIGHTFACE_ROOT = "~/.insightface"
KNOWN_PACKS = {  # insightface's packs: the files facelake uses from each (for messages only)
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_m": ("det_2.5g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
    "buffalo_sc": ("det_500m.onnx", "w600k_mbf.onnx"),
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
}


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
    """A pack on disk, identified by checksums. Small and picklable: workers load it from ``path``.

    Every file used has a sha256; ``pack_sha256`` is the sha256 over ``role:sha256`` lines and ``pack_id``
    is ``<name>@<first 12 hex of pack_sha256>``, so new weights under an old name are a new pack (and
    trigger re-embedding).
    """

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

    A pack is a folder in insightface's layout (``buffalo_l``: ``det_10g.onnx`` + ``w600k_r50.onnx`` +
    models facelake does not use): the detector is what insightface routes to ``SCRFD``, the recognizer
    what it routes to ``ArcFaceONNX``. A fixed recognizer batch axis or detector input shape is read
    from the graphs (``recognizer_batch``, ``detector_input_size``). Like insightface's FaceAnalysis,
    files are scanned in sorted order and the first model of each role wins. A nested single
    sub-folder (as some pack zips unpack) is looked into.
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
    """The pack called ``name`` (or at path ``name``); the first of these that applies wins.

    1. ``generated-test-pack``: built (``jobs.faces.testpack``) into ``generated_pack_dir()``;
    2. a path to a folder;
    3. ``<models_dir>/<name>`` (``config.models_dir`` / ``FACELAKE_MODELS_DIR``);
    4. ``<insightface_root>/models/<name>`` (``~/.insightface``: where insightface keeps its downloads);
    5. a download by insightface's own helper (``insightface.utils.storage.ensure_available``) when
       ``download`` is on and a network is there; otherwise ``ModelPackError`` says how to provide
       the folder instead.
    """
    name = (name or "").strip()
    if not name:
        raise ModelPackError("no model pack given: set model_pack (--model-pack / FACELAKE_MODEL_PACK)")
    if name == GENERATED_PACK:
        return inspect_pack(build_generated_pack(generated_pack_dir()), GENERATED_PACK, generated=True)
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
# CLI: `facelake models` — show (and fetch or build) a pack
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake models`` flags."""
    from jobs.core.config import add_config_arguments

    parser.add_argument("--model-pack", help="pack name (buffalo_l, generated-test-pack…) or folder")
    parser.add_argument("--models-dir", help="folder holding pack folders (default $FACELAKE_MODELS_DIR)")
    parser.add_argument(
        "--no-download", action="store_true", help="never ask insightface to download the pack"
    )
    parser.add_argument("--build-test-pack", metavar="DIR", help="write the generated test pack into DIR")
    parser.add_argument(
        "--detector-from",
        metavar="ONNX",
        help="with --build-test-pack: a real detector to use instead of the generated one",
    )
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
    parser = argparse.ArgumentParser(
        prog="facelake models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
