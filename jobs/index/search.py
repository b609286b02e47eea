"""`facelake search`: embed a query photo's faces with the build's pack, search every shard, merge top-k.

The current build of ``index_builds`` is loaded with every file checked against its manifest (and the
manifest against its registry row); its shards are searched in parallel threads (FAISS releases the
GIL) and the per-shard top-k merged. Results carry face and image ids, scores, the face's box at the
build's pinned ``faces`` version and the image's sources (its own and its aliases').
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import FacelakeConfig, add_config_arguments, command_main
from jobs.core.runs import start_run
from jobs.index import mechanics
from jobs.index.registry import BuildRecord, NoIndexBuildError, current_build, find_build
from jobs.index.store import BuildStore, IndexIntegrityError
from jobs.lake.tables import read_table

EXIT_NO_FACE = 3
EXIT_UNREADABLE = 4
EXIT_REFUSED = 5


class SearchRefusedError(ValueError):
    """The query and the build are not comparable (other pack or dimension), or the build is unusable."""


class QueryImageError(ValueError):
    """The query image cannot be read, or holds no face."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Match:
    face_id: str
    image_id: str
    score: float
    bbox: list[float] | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class QueryFace:
    """One face of the query and its matches, best first."""

    face_index: int
    bbox: list[float] | None
    det_score: float | None
    matches: list[Match]


class LoadedBuild:
    """A published build's shards and id maps in memory, every file verified against its manifest."""

    def __init__(self, store: BuildStore, record: BuildRecord) -> None:
        import pandas as pd

        self.record = record
        self.manifest = store.read_manifest(record.build_id, record.manifest_sha256)
        self.params = dict(self.manifest.get("search_params") or {})
        self.shards: list[Any] = []
        maps = []
        for entry in self.manifest["shards"]:
            index_blob = store.read_verified(record.build_id, entry, "index")
            self.shards.append(mechanics.from_bytes(index_blob))
            maps.append(pd.read_parquet(io.BytesIO(store.read_verified(record.build_id, entry, "ids"))))
        id_map = pd.concat(maps, ignore_index=True) if maps else pd.DataFrame(columns=["faiss_id"])
        self.id_map = id_map.set_index("faiss_id")

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, faiss ids) over every shard, shards searched in parallel threads."""
        queries = mechanics.as_matrix(queries, self.dim)
        with ThreadPoolExecutor(max_workers=max(1, min(len(self.shards), 8))) as pool:
            parts = list(
                pool.map(lambda shard: mechanics.search(shard, queries, k, self.params), self.shards)
            )
        return mechanics.merge_topk(parts, k)

    def faces_of(self, faiss_ids: np.ndarray) -> list[tuple[str, str] | None]:
        out = []
        for fid in faiss_ids:
            if fid < 0 or fid not in self.id_map.index:
                out.append(None)
            else:
                row = self.id_map.loc[fid]
                out.append((str(row["face_id"]), str(row["image_id"])))
        return out


def open_build(
    spark: SparkSession, lake: str, *, pack_id: str | None = None, build_id: str | None = None
) -> LoadedBuild:
    """The current build (of ``pack_id``), or the build ``build_id``, loaded and verified."""
    if build_id:
        record = find_build(spark, lake, build_id)
        if record is None or record.status != "published":
            raise NoIndexBuildError(f"no published index build {build_id[:12]} in this lake")
    else:
        record = current_build(spark, lake, pack_id)
    return LoadedBuild(BuildStore(lake), record)


def embed_query(config: FacelakeConfig, image: bytes, build: LoadedBuild) -> list[tuple[Any, np.ndarray]]:
    """Detect and embed every face of ``image`` with the configured pack, the same code as `embed`.

    Refuses when the configured pack is not the build's (another pack embeds into another space), and
    raises ``QueryImageError`` for an unreadable image or one without a face.
    """
    from jobs.faces.embed import EmbedOptions
    from jobs.faces.packs import resolve_pack
    from jobs.faces.runtime import FaceStatus, RuntimeSettings, analyse_images, cached_pack

    pack = resolve_pack(config.model_pack, config.models_dir)
    if pack.pack_id != build.record.pack_id or pack.pack_sha256 != build.record.pack_sha256:
        raise SearchRefusedError(
            f"the query would be embedded with pack {pack.pack_id} but build {build.record.build_id[:12]} holds "
            f"{build.record.pack_id}: vectors of different packs are not comparable; use --model-pack "
            f"{build.record.pack_id.split('@', 1)[0]} (the same files) or build an index of this pack"
        )
    if pack.embedding_dim and int(pack.embedding_dim) != build.dim:
        raise SearchRefusedError(f"pack dimension {pack.embedding_dim} differs from the build's {build.dim}")
    options = EmbedOptions()
    settings = RuntimeSettings(tuple(config.onnx_providers), 2, options.det_size, options.det_thresh)
    [result] = analyse_images(
        cached_pack(pack, settings), [("query", image)], max_pixels=config.max_image_pixels
    )
    if result.status == FaceStatus.FAILED:
        raise QueryImageError(f"the query image cannot be used: {result.reason}", EXIT_UNREADABLE)
    if not result.faces:
        raise QueryImageError("no face found in the query image", EXIT_NO_FACE)
    return [(f, np.asarray(f.embedding, dtype=np.float32)) for f in result.faces]


def describe(
    spark: SparkSession, lake: str, build: LoadedBuild, hits: list[list[tuple[float, int]]]
) -> list[list[Match]]:
    """Turn (score, faiss id) hits into matches with boxes (at the build's faces version) and sources."""
    matches: list[list[Match]] = []
    wanted: set[str] = set()
    for row in hits:
        found = []
        for (score, _fid), ids in zip(
            row, build.faces_of(np.array([f for _, f in row], dtype=np.int64)), strict=True
        ):
            if ids is not None:
                found.append(Match(ids[0], ids[1], round(float(score), 6)))
                wanted.add(ids[0])
        matches.append(found)
    if not wanted:
        return matches
    faces = read_table(spark, lake, "faces", build.record.faces_version).where(
        F.col("face_id").isin(sorted(wanted))
    )
    boxes = {r["face_id"]: [float(v) for v in r["bbox"]] for r in faces.select("face_id", "bbox").collect()}
    image_ids = sorted({m.image_id for row in matches for m in row})
    images = read_table(spark, lake, "images").select("image_id", "canonical_id")
    family = images.where(F.col("canonical_id").isin(image_ids) | F.col("image_id").isin(image_ids))
    sources = (
        read_table(spark, lake, "image_sources")
        .join(family, "image_id")
        .select(
            F.coalesce(
                F.when(F.col("canonical_id").isin(image_ids), F.col("canonical_id")), F.col("image_id")
            ).alias("hit"),
            "image_id",
            "source_url",
            "page_url",
            "crawled_at",
        )
        .collect()
    )
    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in sources:
        by_image.setdefault(r["hit"], []).append(
            {
                "image_id": r["image_id"],
                "source_url": r["source_url"],
                "page_url": r["page_url"],
                "crawled_at": r["crawled_at"].isoformat() if r["crawled_at"] else None,
            }
        )
    for row in matches:
        for m in row:
            m.bbox = boxes.get(m.face_id)
            m.sources = sorted(
                by_image.get(m.image_id, []), key=lambda s: (s["source_url"] or "", s["image_id"])
            )
    return matches


def search_image(
    spark: SparkSession,
    config: FacelakeConfig,
    image: bytes,
    *,
    k: int = 10,
    build: LoadedBuild | None = None,
) -> list[QueryFace]:
    """Search with every face of a photo: each query face's top-k matches, best first."""
    build = build or open_build(spark, config.lake)
    faces = embed_query(config, image, build)
    scores, ids = build.search(np.stack([v for _, v in faces]), k)
    hits = [list(zip(s.tolist(), i.tolist(), strict=True)) for s, i in zip(scores, ids, strict=True)]
    described = describe(spark, config.lake, build, hits)
    return [
        QueryFace(n, [float(v) for v in face.bbox], float(face.det_score), found)
        for n, ((face, _), found) in enumerate(zip(faces, described, strict=True))
    ]


def search_face_id(
    spark: SparkSession,
    config: FacelakeConfig,
    face_id: str,
    *,
    k: int = 10,
    build: LoadedBuild | None = None,
) -> list[QueryFace]:
    """Search with a face already in the lake (its vector at the build's faces version)."""
    build = build or open_build(spark, config.lake)
    rows = (
        read_table(spark, config.lake, "faces", build.record.faces_version)
        .where(F.col("face_id") == face_id)
        .select("pack_id", "bbox", "det_score", "embedding")
        .collect()
    )
    if not rows:
        raise QueryImageError(f"no face {face_id[:12]} in faces v{build.record.faces_version}", EXIT_NO_FACE)
    [row] = rows
    if row["pack_id"] != build.record.pack_id:
        raise SearchRefusedError(
            f"face {face_id[:12]} is of pack {row['pack_id']}, the build of {build.record.pack_id}"
        )
    scores, ids = build.search(np.asarray([row["embedding"]], dtype=np.float32), k)
    hits = [list(zip(scores[0].tolist(), ids[0].tolist(), strict=True))]
    [found] = describe(spark, config.lake, build, hits)
    return [QueryFace(0, [float(v) for v in row["bbox"]], float(row["det_score"]), found)]


# -- CLI ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``facelake search`` flags."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="query photo (every face in it is searched)")
    what.add_argument("--face-id", help="search with a face already in the lake")
    parser.add_argument("--k", type=int, default=10, help="matches per query face (default 10)")
    parser.add_argument("--build-id", help="search this published build instead of the current one")
    parser.add_argument("--model-pack", help="pack to embed the query with (must be the build's)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout, for scripts")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run a search for parsed CLI arguments; prints the matches, returns the exit code.

    Exit codes: 0 matches (possibly none), 3 no face in the query, 4 unreadable query image,
    5 refused (other pack or dimension, no build, a build failing its checksums).
    """
    from jobs.lake.session import get_spark

    if not 1 <= args.k <= 1000:
        print("facelake search: --k must be between 1 and 1000", file=sys.stderr)
        return 2
    config, _ = start_run(args, "search")
    image = None
    if args.image:
        path = Path(args.image)
        if not path.is_file():
            print("facelake search: the query image is not a readable file", file=sys.stderr)
            return EXIT_UNREADABLE
        image = path.read_bytes()
    spark = get_spark(config, "facelake-search")
    try:
        build = open_build(spark, config.lake, build_id=args.build_id)
        if image is not None:
            faces = search_image(spark, config, image, k=args.k, build=build)
        else:
            faces = search_face_id(spark, config, args.face_id, k=args.k, build=build)
    except QueryImageError as exc:
        print(f"facelake search: {exc}", file=sys.stderr)
        return exc.exit_code
    except (SearchRefusedError, NoIndexBuildError, IndexIntegrityError) as exc:
        print(f"facelake search: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        doc = {
            "build_id": build.record.build_id,
            "faces_version": build.record.faces_version,
            "query_faces": [asdict(f) for f in faces],
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"build {build.record.build_id[:12]} (faces v{build.record.faces_version}, {build.record.pack_id})")
    for face in faces:
        print(
            f"query face {face.face_index} at {[round(v) for v in face.bbox or []]}: {len(face.matches)} match(es)"
        )
        for m in face.matches:
            first = m.sources[0]["source_url"] if m.sources else "-"
            print(
                f"  {m.score:.4f}  face {m.face_id[:12]}  image {m.image_id[:12]}  {len(m.sources)} source(s)  {first}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.index.search --image photo.jpg``."""
    return command_main("search", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
