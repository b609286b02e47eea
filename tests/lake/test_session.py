"""Spark session factory: settings, Java detection, jar cache (pure parts without starting Spark)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.lake.session import (
    _ships_with_spark,
    cached_jars,
    delta_package,
    java_major_version,
    spark_settings,
)


def test_settings_configure_delta_and_quiet_local_runs() -> None:
    settings = spark_settings(FacelakeConfig(shuffle_partitions=3), ["/j/a.jar", "/j/b.jar"])
    assert settings["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert settings["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert settings["spark.sql.shuffle.partitions"] == "3"
    assert settings["spark.ui.enabled"] == "false"
    assert settings["spark.jars"] == "/j/a.jar,/j/b.jar"
    assert settings["spark.databricks.delta.properties.defaults.enableDeletionVectors"] == "false"


def test_config_spark_conf_wins() -> None:
    settings = spark_settings(FacelakeConfig(spark_conf={"spark.sql.shuffle.partitions": "64"}), [])
    assert settings["spark.sql.shuffle.partitions"] == "64"
    assert "spark.jars" not in settings


def test_delta_package_matches_installed_versions() -> None:
    import pyspark

    assert (
        delta_package() == f"io.delta:delta-spark_{'.'.join(pyspark.__version__.split('.')[:2])}_2.13:4.4.0"
    )


def test_java_17_or_newer_is_present() -> None:
    major = java_major_version()
    assert major is not None and major >= 17


def test_jars_spark_already_ships_are_not_passed_again() -> None:
    assert _ships_with_spark(Path("org.apache.hadoop_hadoop-client-api-3.4.2.jar"))
    assert _ships_with_spark(Path("com.fasterxml.jackson.core_jackson-core-2.13.5.jar"))
    assert not _ships_with_spark(Path("io.delta_delta-spark_4.2_2.13-4.4.0.jar"))


def test_unresolved_cache_is_empty(tmp_path: Path) -> None:
    assert cached_jars(tmp_path) == []


def test_session_is_local_with_delta_and_this_interpreter(
    spark: SparkSession, spark_config: FacelakeConfig
) -> None:
    conf = spark.sparkContext.getConf()
    assert spark.sparkContext.master == "local[2]"
    assert conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert any("delta-spark" in j for j in conf.get("spark.jars").split(","))
    # Python workers run this interpreter.
    assert spark.sparkContext.pythonExec == sys.executable


@pytest.mark.parametrize("name", ["crawl_manifest", "images"])
def test_delta_sql_works(spark: SparkSession, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    spark.range(3).write.format("delta").save(str(path))
    assert spark.sql(f"SELECT count(*) AS n FROM delta.`{path}`").first()["n"] == 3
