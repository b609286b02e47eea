"""The one way facelake touches files through Hadoop's FileSystem (local disk, s3a, …) from the driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession


def hadoop_path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """(org.apache.hadoop.fs.FileSystem, Path) of ``uri``, resolved exactly as Spark resolves it."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def copy_local_tree(spark: SparkSession, local: Path, target: str) -> None:
    """Copy every file under the local folder ``local`` to ``target`` (any Hadoop URI), overwriting."""
    fs, _ = hadoop_path(spark, target)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            relative = path.relative_to(local).as_posix()
            _, source = hadoop_path(spark, path.resolve().as_uri())
            _, destination = hadoop_path(spark, target.rstrip("/") + "/" + relative)
            fs.copyFromLocalFile(False, True, source, destination)
