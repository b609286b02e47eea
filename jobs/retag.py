"""Re-apply the jurisdiction policy to existing rows without re-reading any image or re-crawling."""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.config import FacelakeConfig, add_config_arguments, config_from_args, log_config
from jobs.ingest import tags_udf, union_cluster_tags
from jobs.policy import load_policy
from jobs.runs import RunContext, configure_logging
from jobs.tables import pin_read_versions, read_table, upsert_rows

TAG_COLUMNS = ("jurisdiction_tags", "policy_version")


def retag(spark: SparkSession, config: FacelakeConfig, run: RunContext) -> dict[str, int]:
    """Recompute every source's tags under the current policy, then every cluster's union.

    Touches only the tag columns, and only rows whose tags or policy version change: a rerun with
    the same policy makes no commit.
    """
    policy = load_policy(config.policy_file or None)
    run.inputs.update({"policy_version": policy.version})
    tag = tags_udf(policy)
    read_versions = pin_read_versions(spark, config.lake, ("image_sources", "images"), run)
    sources = read_table(spark, config.lake, "image_sources", read_versions["image_sources"])
    retagged_sources = sources.withColumn(
        "jurisdiction_tags", tag("source_url", "page_url", "country", "tags")
    ).withColumn("policy_version", F.lit(policy.version)).persist()
    run.progress("policy %s: re-tagging %d source(s)", policy.version, retagged_sources.count())
    changed_sources = upsert_rows(spark, config.lake, "image_sources", retagged_sources, TAG_COLUMNS, run)

    images = read_table(spark, config.lake, "images", read_versions["images"])
    cluster = union_cluster_tags(
        retagged_sources.select("image_id", "jurisdiction_tags"), images.select("image_id", "canonical_id")
    ).withColumnRenamed("jurisdiction_tags", "cluster_tags")
    retagged_images = (
        images.join(cluster, "canonical_id", "left")
        .withColumn("jurisdiction_tags", F.coalesce("cluster_tags", F.array().cast("array<string>")))
        .withColumn("policy_version", F.lit(policy.version))
        .drop("cluster_tags")
    )
    changed_images = upsert_rows(spark, config.lake, "images", retagged_images, TAG_COLUMNS, run)
    retagged_sources.unpersist()
    run.count("sources_retagged", changed_sources)
    run.count("images_retagged", changed_images)
    return dict(run.counts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-file", help="jurisdiction policy TOML (default policies/jurisdiction.toml)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Re-tag the lake under the configured policy and print a summary."""
    from jobs.spark import get_spark

    config = config_from_args(args)
    configure_logging(config.log_level)
    ctx = RunContext(job="retag")
    log_config(config, "retag")
    retag(get_spark(config, "facelake-retag"), config, ctx)
    print(ctx.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facelake retag", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
