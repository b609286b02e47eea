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


def arrow_uri(uri: str) -> str:
    """The location pyarrow.fs reads for a Hadoop-style URI: scheme names mapped (s3a -> s3), local paths absolute."""
    for hadoop, arrow in (("s3a://", "s3://"), ("s3n://", "s3://"), ("gcs://", "gs://")):
        if uri.startswith(hadoop):
            return arrow + uri[len(hadoop) :]
    if uri.startswith("file:") and not uri.startswith("file://"):
        uri = "file://" + uri[len("file:") :]  # Hadoop's file:/path
    if uri.startswith("file://"):
        return str(Path(uri[len("file://") :]).resolve())
    if "://" not in uri:
        return str(Path(uri).resolve())
    return uri
