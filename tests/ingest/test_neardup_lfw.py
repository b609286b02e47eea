"""On real face photos (../shared/data/lfw-dev): ingest never merges different photos and finds transformed copies.

Aligned faces share their low frequencies, so pHash alone merged different people's photos; these
tests run the real ingest (Spark, Delta, the expectations gate) on drops built from lfw-dev.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.ingest.job import ingest_drop
from jobs.lake.tables import read_table
from jobs.testdata.copies import RECALL_TARGETS
from jobs.testdata.lfw import LFW_DIR, LfwDrop, Outcome, lfw_photos, score, write_lfw_drop

PHOTOS = lfw_photos()
pytestmark = pytest.mark.skipif(not PHOTOS, reason=f"lfw-dev photos not found at {LFW_DIR}")


def _ingest_and_score(spark: SparkSession, config: FacelakeConfig, drop: LfwDrop) -> Outcome:
    report = ingest_drop(spark, config.replace(drop=str(drop.path)), RunContext(job="ingest"))
    assert report.counts["quarantined"] == 0, report.quarantine
    lines = (drop.path / "manifest.jsonl").read_text().splitlines()
    path_of_line = {n: json.loads(line)["image_path"] for n, line in enumerate(lines, start=1)}
    image_of_line = {
        r["line_no"]: r["image_id"] for r in read_table(spark, config.lake, "image_sources").collect()
    }
    canonical = {
        r["image_id"]: r["canonical_id"]
        for r in read_table(spark, config.lake, "images").select("image_id", "canonical_id").collect()
    }
    return score(drop, {path_of_line[n]: canonical[i] for n, i in image_of_line.items()})


def test_copies_are_found_per_transform_and_different_photos_never_merge(
    spark: SparkSession, config: FacelakeConfig, tmp_path: Path
) -> None:
    """40 photos with one copy per transform (520 copies), among 260 other photos."""
    photos = random.Random(12).sample(PHOTOS, 300)
    drop = write_lfw_drop(tmp_path / "drop", photos, copied=40, seed=12)
    outcome = _ingest_and_score(spark, config, drop)
    assert outcome.wrong_merges == []
    for transform, target in RECALL_TARGETS.items():
        assert outcome.total[transform] == 40
        assert outcome.recall(transform) >= target, (transform, outcome.found[transform])


@pytest.mark.slow
def test_lfw_dev_photos_ingest_without_a_single_cross_photo_merge(
    spark: SparkSession, config: FacelakeConfig, tmp_path: Path
) -> None:
    """1,000 of the 4,442 photos in one drop (~1.5 min). FACELAKE_LFW_ALL=1 ingests all of them, the
    issue's acceptance drop (~7 min: kept out of CI's time budget; its run is in benchmarks/RESULTS.md,
    "lfw-dev: all 4,442 photos", with the same outcome: no cross-photo merge)."""
    photos = PHOTOS if os.environ.get("FACELAKE_LFW_ALL") == "1" else random.Random(7).sample(PHOTOS, 1000)
    drop = write_lfw_drop(tmp_path / "drop", photos, copied=0)
    outcome = _ingest_and_score(spark, config, drop)
    assert outcome.wrong_merges == []
    assert outcome.known_same_merges <= 4  # lfw-dev files that are one photograph filed twice
