"""Erasure at 10k/100k/1M faces: facelake's run_erasure vs DELETE + VACUUM RETAIN 0 (time, bytes, history survival)."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.common import (
    BENCH_DIR,
    PROJECT_ROOT,
    Recorder,
    add_spark_arguments,
    command_line,
    facelake_config,
    loadavg,
    machine,
    markdown_table,
    save_result,
    spark_facts,
)

IMAGE_TABLES = ("images", "image_sources", "faces", "face_status")
ROW_TABLES = (*IMAGE_TABLES, "crawl_manifest")
"""Tables the synthetic lake fills (image_links and quarantine exist, empty)."""
KEYS: dict[str, tuple[str, ...]] = {name: ("image_id",) for name in IMAGE_TABLES} | {
    "crawl_manifest": ("drop_id", "line_no")
}
"""The columns an erased row is recognised by, in this benchmark's own counting (not jobs.erasure's)."""
DIM = 512
PACK_SHA = hashlib.sha256(b"erasure-scale-bench-pack").hexdigest()
PACK_ID = f"generated-test-pack@{PACK_SHA[:12]}"
POLICY_VERSION = "2026-11-30.1"
UK_HOSTS = ("bbc.co.uk", "dailymail.co.uk", "flickr.co.uk", "photos.example.co.uk", "news.gov.uk")
OTHER_HOSTS = (
    "cdn.example.com",
    "images.example.de",
    "media.example.fr",
    "pics.example.net",
    "x.example.org",
)
OTHER_COUNTRIES = ("US", "DE", "FR", "NL", "IE", None)
SEP = "\x1f"
GIB = 1024**3


# ------------------------------------------------------------------------------------------- data


def _hex(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    return [b.hex() for b in np.frombuffer(rng.bytes(n * nbytes), dtype=f"S{nbytes}")] if n else []


def _ts(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype("datetime64[s]").astype("datetime64[us]"), pa.timestamp("us", tz="UTC"))


def _float_lists(values: np.ndarray) -> pa.Array:
    n, width = values.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), pa.float32()))


def _tags(uk: np.ndarray) -> pa.Array:
    return pa.array([["uk"] if u else [] for u in uk], pa.list_(pa.string()))


def generate_batch(
    rng: np.random.Generator, batch: int, uk: np.ndarray, content_bytes: int, run_id: str
) -> dict[str, pa.Table]:
    """One crawl drop's rows of the five tables, as ingest and embed would have written them."""
    n = len(uk)
    drop_id = hashlib.sha256(f"bench-drop-{batch}".encode()).hexdigest()[:16]
    base = np.datetime64("2026-10-01T00:00:00", "s").astype(np.int64) + batch * 86_400
    lengths = rng.integers(content_bytes // 2, content_bytes * 3 // 2 + 1, n)
    blob = rng.bytes(int(lengths.sum()))
    ends = np.cumsum(lengths)
    contents = [blob[e - ln : e] for e, ln in zip(ends.tolist(), lengths.tolist(), strict=True)]
    image_ids = [hashlib.sha256(c).hexdigest() for c in contents]
    crawled = base + rng.integers(0, 86_400, n)
    ingested = np.full(n, base + 90_000)
    tags = _tags(uk)
    images = pa.table(
        {
            "image_id": image_ids,
            "phash": _hex(rng, n, 8),
            "canonical_id": image_ids,
            "near_dup_distance": pa.nulls(n, pa.int32()),
            "width": pa.array(rng.choice([480, 640, 800, 1024], n).astype(np.int32)),
            "height": pa.array(rng.choice([360, 480, 600, 768], n).astype(np.int32)),
            "format": pa.array(["JPEG"] * n),
            "byte_size": pa.array(lengths.astype(np.int64)),
            "content": pa.array(contents, pa.binary()),
            "jurisdiction_tags": tags,
            "policy_version": pa.array([POLICY_VERSION] * n),
            "first_crawled_at": _ts(crawled),
            "first_drop_id": pa.array([drop_id] * n),
            "ingested_at": _ts(ingested),
            "run_id": pa.array([run_id] * n),
            "near_dup_method": pa.nulls(n, pa.string()),
            "near_dup_score": pa.nulls(n, pa.float64()),
            "probe_hashes": pa.ListArray.from_arrays(
                pa.array(np.arange(0, 13 * n + 1, 13, dtype=np.int32)), pa.array(_hex(rng, 13 * n, 8))
            ),
        }
    )
    # Sources: 1 or 2 per image, one manifest line each; UK images are seen on .uk hosts only.
    per = 1 + (rng.random(n) < 0.5).astype(np.int64)
    owner = np.repeat(np.arange(n), per)
    m = len(owner)
    order = rng.permutation(m)  # manifest lines in crawl order, not grouped by image
    owner = owner[order]
    src_uk = uk[owner]
    host_idx = rng.integers(0, len(UK_HOSTS), m)
    hosts = [
        (UK_HOSTS if u else OTHER_HOSTS)[h] for u, h in zip(src_uk.tolist(), host_idx.tolist(), strict=True)
    ]
    names = _hex(rng, m, 10)
    source_urls = [f"https://{h}/img/{x}.jpg" for h, x in zip(hosts, names, strict=True)]
    page_urls = [f"https://{h}/story/{x[:12]}" for h, x in zip(hosts, names, strict=True)]
    src_crawled = crawled[owner] + rng.integers(0, 3_600, m)
    src_ts = _ts(src_crawled)
    iso = [str(t) for t in src_crawled.astype("datetime64[s]")]
    ids = [image_ids[i] for i in owner.tolist()]
    countries = [
        "GB" if u else OTHER_COUNTRIES[c]
        for u, c in zip(src_uk.tolist(), rng.integers(0, len(OTHER_COUNTRIES), m).tolist(), strict=True)
    ]
    line_no = pa.array(np.arange(1, m + 1, dtype=np.int32))
    src_ingested = _ts(np.full(m, base + 90_000))
    platforms = pa.array(["web"] * m)
    sources = pa.table(
        {
            "source_id": [
                hashlib.sha256(SEP.join((i, s, p, t)).encode()).hexdigest()
                for i, s, p, t in zip(ids, source_urls, page_urls, iso, strict=True)
            ],
            "image_id": ids,
            "source_url": source_urls,
            "source_host": hosts,
            "page_url": page_urls,
            "page_host": hosts,
            "crawled_at": src_ts,
            "country": pa.array(countries, pa.string()),
            "tags": pa.array([[] for _ in range(m)], pa.list_(pa.string())),
            "platform": platforms,
            "extra": pa.nulls(m, pa.string()),
            "drop_id": pa.array([drop_id] * m),
            "line_no": line_no,
            "jurisdiction_tags": _tags(src_uk),
            "policy_version": pa.array([POLICY_VERSION] * m),
            "ingested_at": src_ingested,
            "run_id": pa.array([run_id] * m),
        }
    )
    manifest = pa.table(
        {
            "drop_id": pa.array([drop_id] * m),
            "line_no": line_no,
            "image_path": [f"images/{x}.jpg" for x in names],
            "source_url": source_urls,
            "page_url": page_urls,
            "crawled_at": src_ts,
            "country": pa.array(countries, pa.string()),
            "tags": pa.array([[] for _ in range(m)], pa.list_(pa.string())),
            "platform": platforms,
            "extra": pa.nulls(m, pa.string()),
            "ingested_at": src_ingested,
            "run_id": pa.array([run_id] * m),
            "drop_uri": pa.nulls(m, pa.string()),  # the drop is gone: landing has nothing to clean
        }
    )
    emb = rng.standard_normal((n, DIM), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    boxes = rng.uniform(20, 400, (n, 4)).astype(np.float32)
    embedded = _ts(np.full(n, base + 100_000))
    faces = pa.table(
        {
            "face_id": [hashlib.sha256(SEP.join((i, PACK_ID, "0")).encode()).hexdigest() for i in image_ids],
            "image_id": image_ids,
            "face_index": pa.array(np.zeros(n, np.int32)),
            "bbox": _float_lists(boxes),
            "landmarks": _float_lists(rng.uniform(20, 400, (n, 10)).astype(np.float32)),
            "det_score": pa.array(rng.uniform(0.5, 1.0, n).astype(np.float32)),
            "embedding": _float_lists(emb),
            "embedding_dim": pa.array(np.full(n, DIM, np.int32)),
            "pack_id": pa.array([PACK_ID] * n),
            "pack_sha256": pa.array([PACK_SHA] * n),
            "jurisdiction_tags": tags,
            "embedded_at": embedded,
            "run_id": pa.array([run_id] * n),
        }
    )
    model_file = pa.struct([("role", pa.string()), ("file", pa.string()), ("sha256", pa.string())])
    files = [
        {"role": "detection", "file": "det.onnx", "sha256": PACK_SHA},
        {"role": "recognition", "file": "rec.onnx", "sha256": PACK_SHA[::-1]},
    ]
    status = pa.table(
        {
            "image_id": image_ids,
            "pack_id": pa.array([PACK_ID] * n),
            "status": pa.array(["ok"] * n),
            "reason": pa.nulls(n, pa.string()),
            "detail": pa.nulls(n, pa.string()),
            "face_count": pa.array(np.ones(n, np.int32)),
            "pack_sha256": pa.array([PACK_SHA] * n),
            "model_files": pa.array([files] * n, pa.list_(model_file)),
            "det_size": pa.array(["640x640"] * n),
            "det_thresh": pa.array(np.full(n, 0.5, np.float32)),
            "jurisdiction_tags": tags,
            "processed_at": embedded,
            "run_id": pa.array([run_id] * n),
        }
    )
    return {
        "images": images,
        "image_sources": sources,
        "faces": faces,
        "face_status": status,
        "crawl_manifest": manifest,
    }


@dataclass
class BaseLake:
    """A synthetic lake built once per (size, fraction, seed, layout) and copied for every case."""

    n: int
    fraction: float
    folder: Path

    @property
    def lake(self) -> Path:
        return self.folder / "lake"

    @property
    def ids_file(self) -> Path:
        """image_id, uk, batch of every image."""
        return self.folder / "image_ids.parquet"

    @property
    def lines_file(self) -> Path:
        """image_id, drop_id, line_no of every manifest line."""
        return self.folder / "lines.parquet"

    @property
    def meta_file(self) -> Path:
        return self.folder / "built.json"


def build_lake(
    spark: Any, config: Any, n: int, fraction: float, args: argparse.Namespace, rec: Recorder
) -> BaseLake:
    """Generate with numpy/pyarrow, write through Spark + Delta in ``--batches`` appends (cached)."""
    from jobs.core.runs import RunContext
    from jobs.lake.tables import commit_metadata, conform, init_lake, table_uri

    tag = f"n{n}-f{fraction:g}-b{args.batches}-p{args.files_per_batch}-c{args.content_bytes}-s{args.seed}"
    base = BaseLake(n, fraction, args.out / "lakes" / tag)
    if base.meta_file.is_file():
        print(f"[bench] reusing {base.folder.relative_to(PROJECT_ROOT)}", file=sys.stderr)
        return base
    shutil.rmtree(base.folder, ignore_errors=True)
    base.folder.mkdir(parents=True)
    staging = base.folder / "staging"
    rng = np.random.default_rng([args.seed, n, round(fraction * 10_000)])
    uk_all = np.zeros(n, bool)
    uk_all[rng.choice(n, round(n * fraction), replace=False)] = True
    bounds = np.linspace(0, n, args.batches + 1).astype(int)
    lake = str(base.lake)
    id_parts, line_parts, gen_s, write_s = [], [], 0.0, 0.0
    with rec.phase(f"build n={n:,} uk={fraction:.0%} (not counted)") as ph:
        init_lake(spark, lake)
        for b in range(args.batches):
            t0 = time.perf_counter()
            run = RunContext("bench-build")
            uk = uk_all[bounds[b] : bounds[b + 1]]
            tables = generate_batch(rng, b, uk, args.content_bytes, run.run_id)
            id_parts.append(
                pa.table(
                    {
                        "image_id": tables["images"].column("image_id"),
                        "uk": pa.array(uk),
                        "batch": pa.array(np.full(len(uk), b, np.int32)),
                    }
                )
            )
            src = tables["image_sources"]
            line_parts.append(src.select(["image_id", "drop_id", "line_no"]))
            for name, table in tables.items():
                folder = staging / f"b{b}" / name
                folder.mkdir(parents=True)
                pq.write_table(table, folder / "part.parquet", compression="snappy")
            del tables
            t1 = time.perf_counter()
            gen_s += t1 - t0
            with commit_metadata(spark, run):
                for name in ROW_TABLES:
                    df = spark.read.parquet(str(staging / f"b{b}" / name))
                    # Round-robin: every file of the batch gets its share of UK rows, as MERGE's shuffle does.
                    conform(df, name).repartition(args.files_per_batch).write.format("delta").mode(
                        "append"
                    ).save(table_uri(lake, name))
            shutil.rmtree(staging / f"b{b}")
            write_s += time.perf_counter() - t1
            print(f"[bench]   batch {b + 1}/{args.batches} written", file=sys.stderr, flush=True)
        shutil.rmtree(staging, ignore_errors=True)
        pq.write_table(pa.concat_tables(id_parts), base.ids_file)
        pq.write_table(pa.concat_tables(line_parts), base.lines_file)
        ph.extra = {"generate_s": round(gen_s, 1), "spark_write_s": round(write_s, 1)}
    sizes = {name: folder_bytes(Path(lake) / "tables" / name) for name in ROW_TABLES}
    meta = {
        "n": n,
        "fraction": fraction,
        "uk_images": int(uk_all.sum()),
        "batches": args.batches,
        "files_per_batch": args.files_per_batch,
        "content_bytes_mean": args.content_bytes,
        "build_seconds": round(ph.seconds, 1),
        "generate_seconds": round(gen_s, 1),
        "spark_write_seconds": round(write_s, 1),
        "table_bytes": sizes,
        "lake_bytes": sum(sizes.values()),
        "rows": {name: spark.read.format("delta").load(table_uri(lake, name)).count() for name in ROW_TABLES},
    }
    base.meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    return base


# ----------------------------------------------------------------------------------------- measures


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def listing(lake: Path) -> dict[str, tuple[int, str | None]]:
    """Every file under ``tables/``: relative path -> (size, sha256 for log files, None for data files)."""
    out = {}
    root = lake / "tables"
    for p in root.rglob("*"):
        if p.is_file():
            rel = str(p.relative_to(root))
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if "/_delta_log/" in f"/{rel}" else None
            out[rel] = (p.stat().st_size, digest)
    return out


def _kind(rel: str) -> str:
    parts = rel.split("/")
    if parts[0] not in ROW_TABLES and parts[0] not in ("image_links", "quarantine"):
        return "bookkeeping"  # suppression, erasure_audit, dq_results, index_builds
    if "_delta_log" in parts:
        return "log"
    if parts[-1].startswith(".") and parts[-1].endswith(".crc"):
        return "sidecar"
    return "data"


def diff_listings(
    before: dict[str, tuple[int, str | None]], after: dict[str, tuple[int, str | None]]
) -> dict:
    """Bytes written (new files), deleted (gone files) and rewritten in place (log files), by kind."""
    out: dict[str, int] = {}

    def add(key: str, value: int) -> None:
        out[key] = out.get(key, 0) + value

    for rel, (size, digest) in after.items():
        kind = _kind(rel)
        if rel not in before:
            add(f"{kind}.bytes_written", size)
            add(f"{kind}.files_written", 1)
            if kind == "data" and ".erased-" in rel:
                add("data.bytes_written_history", size)
            elif kind == "data":
                add("data.bytes_written_current", size)
        elif before[rel] != (size, digest):
            add(f"{kind}.bytes_rewritten_in_place", size)
            add(f"{kind}.files_rewritten_in_place", 1)
    for rel, (size, _) in before.items():
        if rel not in after:
            kind = _kind(rel)
            add(f"{kind}.bytes_deleted", size)
            add(f"{kind}.files_deleted", 1)
    return out


@dataclass
class Erased:
    """What a case erases: image ids and manifest lines (the benchmark's own truth, from generation)."""

    name: str
    image_ids: pa.Array
    lines: pa.Table  # drop_id, line_no

    def keys(self, table: str) -> pa.Array:
        if table == "crawl_manifest":
            return pc.binary_join_element_wise(
                self.lines.column("drop_id"), pc.cast(self.lines.column("line_no"), pa.string()), SEP
            )
        return self.image_ids


def erased_sets(base: BaseLake, args: argparse.Namespace) -> list[Erased]:
    ids = pq.read_table(base.ids_file)
    lines = pq.read_table(base.lines_file)
    uk = ids.filter(ids.column("uk")).column("image_id").combine_chunks()
    out = [Erased("jurisdiction uk", uk, _lines_of(lines, uk))] if "jurisdiction" in args.selectors else []
    if "hashes" in args.selectors and base.fraction <= 0.01 + 1e-9:
        rng = np.random.default_rng([args.seed, base.n, 7])
        pick = rng.choice(ids.num_rows, round(ids.num_rows * 0.01), replace=False)
        chosen = ids.column("image_id").take(pa.array(np.sort(pick))).combine_chunks()
        out.append(Erased("image_hashes 1%", chosen, _lines_of(lines, chosen)))
    return out


def _lines_of(lines: pa.Table, image_ids: pa.Array) -> pa.Table:
    mask = pc.is_in(lines.column("image_id"), value_set=image_ids)
    return lines.filter(mask).select(["drop_id", "line_no"])


def file_shares(lake: Path, erased: Erased) -> dict[str, dict[str, int]]:
    """Per table, over every data file of every version (pyarrow, key columns only): the bytes of the
    files holding an erased row (S), the erased rows' share of file bytes (E), all data bytes."""
    out = {}
    for table in ROW_TABLES:
        root = lake / "tables" / table
        keys = erased.keys(table)
        total = shared = share = files = files_shared = rows = rows_erased = 0
        for path in sorted(root.rglob("*.parquet")):
            if "_delta_log" in path.parts or path.name.startswith("."):
                continue
            size = path.stat().st_size
            t = pq.read_table(path, columns=list(KEYS[table]))
            if table == "crawl_manifest":
                col = pc.binary_join_element_wise(
                    t.column("drop_id"), pc.cast(t.column("line_no"), pa.string()), SEP
                )
            else:
                col = t.column("image_id")
            hit = int(pc.sum(pc.is_in(col, value_set=keys)).as_py() or 0)
            total += size
            files += 1
            rows += t.num_rows
            rows_erased += hit
            if hit:
                shared += size
                files_shared += 1
                share += round(size * hit / max(t.num_rows, 1))
        out[table] = {
            "data_files": files,
            "data_bytes": total,
            "rows_in_files": rows,
            "erased_rows_in_files": rows_erased,
            "files_shared": files_shared,
            "bytes_files_shared": shared,
            "bytes_erased_rows": share,
        }
    return out


def version_counts(spark: Any, lake: Path, erased_frames: dict[str, Any], versions: dict[str, int]) -> dict:
    """For every table and version up to ``versions``: (rows kept, erased rows) read through Spark
    ``versionAsOf``; a version that fails to read counts as None.

    All versions of a table are counted in one Spark job; when that fails (a purged version), each
    version is counted on its own to find which ones still read.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    from jobs.lake.tables import table_uri

    def frame(uri: str, table: str, v: int) -> Any:
        df = spark.read.format("delta").option("versionAsOf", v).load(uri).select(*KEYS[table])
        return df.join(F.broadcast(erased_frames[table]), list(KEYS[table]), "left").select(
            F.lit(v).alias("v"), F.col("_erased").isNotNull().alias("erased")
        )

    def counted(df: Any) -> dict[int, tuple[int, int]]:
        got: dict[int, list[int]] = {}
        for r in df.groupBy("v", "erased").count().collect():
            got.setdefault(int(r["v"]), [0, 0])[1 if r["erased"] else 0] = int(r["count"])
        return {v: (c[0], c[1]) for v, c in got.items()}

    out: dict[str, dict[int, tuple[int, int] | None]] = {}
    sc = spark.sparkContext
    sc.setLogLevel("OFF")  # a purged version is an expected failure here, not worth a stack trace
    try:
        for table in ROW_TABLES:
            uri = table_uri(str(lake), table)
            wanted = range(versions[table] + 1)
            try:
                got = counted(reduce(lambda a, b: a.unionByName(b), (frame(uri, table, v) for v in wanted)))
                out[table] = {v: got.get(v, (0, 0)) for v in wanted}
                continue
            except Exception:  # noqa: BLE001 - some version does not read: count them one by one
                pass
            out[table] = {}
            for v in wanted:
                try:
                    out[table][v] = counted(frame(uri, table, v)).get(v, (0, 0))
                except Exception:  # noqa: BLE001 - an unreadable version is the measured outcome
                    out[table][v] = None
            bad = [v for v, c in out[table].items() if c is None]
            print(f"[bench]   {table}: versions {bad} unreadable", file=sys.stderr)
    finally:
        sc.setLogLevel("WARN")
    return out


def survival(before: dict, after: dict) -> dict[str, Any]:
    """Non-erased (version, row) pairs still read after ÷ before; erased rows still readable."""
    kept = total = visible = unreadable = versions = 0
    for table, by_version in before.items():
        for v, counts in by_version.items():
            if counts is None:
                continue
            versions += 1
            total += counts[0]
            now = after[table].get(v)
            if now is None:
                unreadable += 1
                continue
            kept += min(counts[0], now[0])
            visible += now[1]
    return {
        "survival": kept / total if total else 1.0,
        "rows_before": total,
        "rows_kept": kept,
        "erased_rows_still_readable": visible,
        "versions": versions,
        "versions_unreadable": unreadable,
    }


def erased_frames(spark: Any, erased: Erased) -> dict[str, Any]:
    from pyspark.sql import functions as F

    ids = spark.createDataFrame(pa.table({"image_id": erased.image_ids}).to_pandas()).withColumn(
        "_erased", F.lit(True)
    )
    lines = spark.createDataFrame(erased.lines.to_pandas()).withColumn("_erased", F.lit(True))
    frames = {t: ids for t in IMAGE_TABLES} | {"crawl_manifest": lines}
    for df in {id(f): f for f in frames.values()}.values():
        df.cache().count()
    return frames


# -------------------------------------------------------------------------------------------- cases


def copy_lake(base: BaseLake, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(base.lake), str(dest)], check=True)


def run_facelake(spark: Any, config: Any, lake: Path, erased: Erased, case: str) -> dict[str, Any]:
    """``jobs.erasure.job.run_erasure`` in execute mode; wall time, its step times and counts."""
    from jobs.core.runs import RunContext
    from jobs.erasure.job import run_erasure
    from jobs.erasure.request import build_request

    if erased.name.startswith("jurisdiction"):
        request = build_request(
            "jurisdiction", ["uk"], mode="execute", ticket=case.replace("%", " pct"), requested_by="bench"
        )
    else:
        values = erased.image_ids.to_pylist()
        request = build_request(
            "image_hashes", values, mode="execute", ticket=case.replace("%", " pct"), requested_by="bench"
        )
    cfg = config.replace(lake=str(lake))
    t0 = time.perf_counter()
    error = None
    try:
        outcome = run_erasure(spark, cfg, request, RunContext("erase"))
    except Exception as exc:  # noqa: BLE001 - recorded: a failed erasure is a result too
        error = f"{type(exc).__name__}: {str(exc)[:400]}"
        outcome = None
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": wall, "error": error}
    if outcome is not None:
        out.update(
            {
                "status": outcome.status,
                "verified": outcome.verified,
                "failed_checks": [(n, d) for n, p, d in outcome.checks if not p],
                "history_survival": outcome.history_survival,
                "steps_s": outcome.seconds,
                "counts": outcome.counts,
                "versions_before": outcome.versions_before,
                "versions_after": outcome.versions_after,
            }
        )
    return out


def run_naive(spark: Any, lake: Path, erased: Erased) -> dict[str, Any]:
    """Delta's own answer: MERGE … WHEN MATCHED THEN DELETE on every table, then VACUUM RETAIN 0 HOURS.

    The erased ids are found by the same query an operator would write (tag, or the given hashes);
    that lookup is timed with the rest.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from jobs.lake.tables import table_uri

    steps: dict[str, float] = {}
    t0 = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        steps[name] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    def uri(name: str) -> str:
        return table_uri(str(lake), name)

    images = spark.read.format("delta").load(uri("images"))
    if erased.name.startswith("jurisdiction"):
        ids_pd = images.where(F.array_contains("jurisdiction_tags", "uk")).select("image_id").toPandas()
    else:
        wanted = spark.createDataFrame(pa.table({"image_id": erased.image_ids}).to_pandas())
        ids_pd = images.join(wanted, "image_id", "left_semi").select("image_id").toPandas()
    ids = spark.createDataFrame(ids_pd, "image_id string")
    lines_pd = (
        spark.read.format("delta")
        .load(uri("image_sources"))
        .join(ids, "image_id", "left_semi")
        .select("drop_id", "line_no")
        .toPandas()
    )
    lines = spark.createDataFrame(lines_pd, "drop_id string, line_no int")
    lap("select")
    deleted = {}
    for name in ROW_TABLES:
        source, cond = (
            (lines, "t.drop_id = s.drop_id AND t.line_no = s.line_no")
            if name == "crawl_manifest"
            else (
                ids,
                "t.image_id = s.image_id",
            )
        )
        table = DeltaTable.forPath(spark, uri(name))
        table.alias("t").merge(source.alias("s"), cond).whenMatchedDelete().execute()
        metrics = table.history(1).select("operationMetrics").first()["operationMetrics"] or {}
        deleted[name] = int(metrics.get("numTargetRowsDeleted", 0))
    lap("delete")
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(key, "false")
    try:
        for name in ROW_TABLES:
            spark.sql(f"VACUUM delta.`{uri(name)}` RETAIN 0 HOURS")
    finally:
        spark.conf.unset(key)
    lap("vacuum")
    return {
        "wall_s": time.perf_counter() - t0,
        "steps_s": steps,
        "deleted": deleted,
        "erased_images_found": len(ids_pd),
        "error": None,
    }


def run_case(
    spark: Any,
    config: Any,
    base: BaseLake,
    erased: Erased,
    method: str,
    before_counts: dict | None,
    frames: dict | None,
    args: argparse.Namespace,
    rec: Recorder,
) -> dict[str, Any]:
    from jobs.erasure.history import clear_delta_cache

    work = args.out / "work" / f"{method}"
    copy_lake(base, work)
    clear_delta_cache(spark)
    files_before = listing(work)
    label = f"n={base.n:,} uk={base.fraction:.0%} {erased.name}: {method}"
    with rec.phase(label) as ph:
        result = (
            run_facelake(spark, config, work, erased, f"BENCH {base.n} {base.fraction:g} {erased.name}")
            if method == "facelake"
            else run_naive(spark, work, erased)
        )
    result["load"] = {
        "start": ph.load_start,
        "end": ph.load_end,
        "own_cores": ph.own_cores,
        "others_cores": ph.other_cores,
    }
    clear_delta_cache(spark)
    result["bytes"] = diff_listings(files_before, listing(work))
    if before_counts is not None and frames is not None:
        with rec.phase(f"{label}: survival check (not counted)"):
            versions = {t: max(v) for t, v in before_counts.items()}
            after = version_counts(spark, work, frames, versions)
        result["spark_survival"] = survival(before_counts, after)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------------------ report


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} B"


def summarise(n: int, fraction: float, erased: Erased, shares: dict, method: str, r: dict) -> dict[str, Any]:
    b = r["bytes"]
    shared = sum(s["bytes_files_shared"] for s in shares.values())
    erased_bytes = sum(s["bytes_erased_rows"] for s in shares.values())
    written = b.get("data.bytes_written", 0)
    deleted = b.get("data.bytes_deleted", 0)
    spark_surv = r.get("spark_survival", {})
    steps = r.get("steps_s", {})
    return {
        "n": n,
        "fraction": fraction,
        "selector": erased.name,
        "method": method,
        "erased_images": len(erased.image_ids),
        "wall_s": round(r["wall_s"], 1),
        "cpu_s": round(r["load"]["own_cores"] * r["wall_s"], 1),
        "others_cores": round(r["load"]["others_cores"], 2),
        "wall_without_verify_s": round(r["wall_s"] - steps.get("verify", 0.0), 1)
        if method == "facelake"
        else None,
        "data_bytes_written": written,
        "data_bytes_deleted": deleted,
        "log_bytes_rewritten": b.get("log.bytes_rewritten_in_place", 0),
        "bytes_files_shared": shared,
        "bytes_erased_rows": erased_bytes,
        "written_over_shared": written / shared if shared else None,
        "survival_outcome": r.get("history_survival"),
        "survival_spark": spark_surv.get("survival"),
        "versions_unreadable": spark_surv.get("versions_unreadable"),
        "erased_rows_readable": spark_surv.get("erased_rows_still_readable"),
        "error": r.get("error"),
    }


def report(rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    headers = [
        "faces",
        "erased",
        "selector",
        "method",
        "wall s",
        "CPU s",
        "others' cores",
        "wall s w/o verify",
        "data written",
        "data deleted",
        "log rewritten",
        "files shared (S)",
        "erased rows (E)",
        "written / S",
        "survival (job)",
        "survival (Spark)",
        "old versions unreadable",
        "erased rows readable",
    ]
    table = [
        [
            f"{r['n']:,}",
            f"{r['erased_images']:,} ({r['fraction']:.0%})"
            if r["selector"].startswith("juris")
            else f"{r['erased_images']:,}",
            r["selector"],
            r["method"] + (" FAILED" if r["error"] else ""),
            r["wall_s"],
            r["cpu_s"],
            r["others_cores"],
            "–" if r["wall_without_verify_s"] is None else r["wall_without_verify_s"],
            fmt_bytes(r["data_bytes_written"]),
            fmt_bytes(r["data_bytes_deleted"]),
            fmt_bytes(r["log_bytes_rewritten"]),
            fmt_bytes(r["bytes_files_shared"]),
            fmt_bytes(r["bytes_erased_rows"]),
            "–" if r["written_over_shared"] is None else f"{r['written_over_shared']:.2f}",
            "–" if r["survival_outcome"] is None else f"{r['survival_outcome']:.4f}",
            "–" if r["survival_spark"] is None else f"{r['survival_spark']:.4f}",
            "–" if r["versions_unreadable"] is None else r["versions_unreadable"],
            "–" if r["erased_rows_readable"] is None else r["erased_rows_readable"],
        ]
        for r in rows
    ]
    print()
    print(markdown_table(headers, table))
    for r in rows:
        if r["error"]:
            print(f"\n{r['n']:,} {r['selector']} {r['method']}: {r['error']}")


# -------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(float(v)) for v in text.split(",") if v]

    def floats(text: str) -> list[float]:
        return [float(v) for v in text.split(",") if v]

    parser = argparse.ArgumentParser(prog="./dev bench erasure_scale", description=__doc__)
    parser.add_argument(
        "--sizes", type=ints, default=[10_000, 100_000, 1_000_000], help="faces (= images) per lake"
    )
    parser.add_argument("--fractions", type=floats, default=[0.01, 0.10], help="share of images tagged uk")
    parser.add_argument(
        "--batches", type=int, default=5, help="appends (crawl drops) per lake: versions 1..N"
    )
    parser.add_argument("--files-per-batch", type=int, default=8, help="files per table per append")
    parser.add_argument("--content-bytes", type=int, default=1024, help="mean image payload (uniform ±50%%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods",
        default="facelake,naive",
        help="comma-separated: facelake (run_erasure), naive (DELETE+VACUUM)",
    )
    parser.add_argument(
        "--selectors",
        default="jurisdiction,hashes",
        help="comma-separated: jurisdiction (uk), hashes (image_hashes of a random 1%% of images, on 1%% lakes)",
    )
    parser.add_argument(
        "--skip-verify",
        action="store_true",
        help="skip the benchmark's own Spark versionAsOf survival count (the job's own figure stays)",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the erased copies under OUT/work")
    parser.add_argument(
        "--out",
        type=Path,
        default=BENCH_DIR / "erasure_scale",
        help="lakes, copies and results go here (default .cache/bench/erasure_scale)",
    )
    add_spark_arguments(parser)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.methods = [m for m in args.methods.split(",") if m]
    args.selectors = [m for m in args.selectors.split(",") if m]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from jobs.lake.session import get_spark
    from jobs.lake.tables import latest_version

    rec = Recorder()
    info: dict[str, Any] = {
        "command": command_line("erasure_scale", argv),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "uptime_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    config = facelake_config(args)
    with rec.phase("spark session start"):
        spark = get_spark(config, "facelake-bench-erasure-scale")
    info["spark"] = spark_facts(spark)
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    lakes: dict[str, Any] = {}
    for n in args.sizes:
        for fraction in args.fractions:
            base = build_lake(spark, config, n, fraction, args, rec)
            meta = json.loads(base.meta_file.read_text())
            lakes[f"{n}/{fraction:g}"] = meta
            versions = {t: latest_version(spark, str(base.lake), t) for t in ROW_TABLES}
            for erased in erased_sets(base, args):
                with rec.phase(
                    f"n={n:,} uk={fraction:.0%} {erased.name}: file shares + versions before (not counted)"
                ):
                    shares = file_shares(base.lake, erased)
                    frames = before = None
                    if not args.skip_verify:
                        frames = erased_frames(spark, erased)
                        before = version_counts(spark, base.lake, frames, versions)
                for method in args.methods:
                    result = run_case(spark, config, base, erased, method, before, frames, args, rec)
                    summary = summarise(n, fraction, erased, shares, method, result)
                    rows.append(summary)
                    details.append({"summary": summary, "shares": shares, "result": result})
                    # A run killed later (shared machine) keeps the cases finished so far.
                    partial = {**info, "lakes": lakes, "rows": rows, "details": details}
                    (args.out / "partial.json").write_text(json.dumps(partial, indent=2, default=str) + "\n")
                    print(
                        f"[bench] {summary['method']}: {summary['wall_s']} s, written {fmt_bytes(summary['data_bytes_written'])}, "
                        f"survival {summary['survival_outcome']} / {summary['survival_spark']}, "
                        f"steps {result.get('steps_s')}, error {summary['error']}",
                        file=sys.stderr,
                        flush=True,
                    )
                if frames is not None:
                    for df in {id(f): f for f in frames.values()}.values():
                        df.unpersist()
    info["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    info["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    info["load_end"] = loadavg()
    report(rows, info)
    sizes = "-".join(str(n) for n in args.sizes)
    path = save_result(
        f"erasure_scale-n{sizes}",
        {**info, "lakes": lakes, "phases": rec.phases, "rows": rows, "details": details},
    )
    print(f"\nresult JSON: {path.relative_to(PROJECT_ROOT)}")
    spark.stop()
    return 0 if not any(r["error"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
