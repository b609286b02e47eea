"""Spark session factory: local by default, Delta configured, Delta's jars resolved once then offline."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from jobs.core.config import FacelakeConfig
from jobs.core.paths import cache_root, resource_dir

log = logging.getLogger("facelake.spark")

MIN_JAVA = 17


class SetupError(RuntimeError):
    """The machine lacks something facelake needs (Java, Delta's jars); the message says what to do."""


def java_major_version() -> int | None:
    """Major version of the ``java`` on PATH (or $JAVA_HOME), None if there is none."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    text = out.stderr + out.stdout
    # e.g. 'openjdk version "17.0.15" 2025-04-15' or 'java version "1.8.0_392"'
    for token in text.split('"')[1:2]:
        parts = token.split(".")
        major = parts[1] if parts[0] == "1" else parts[0]
        digits = "".join(ch for ch in major if ch.isdigit())
        return int(digits) if digits else None
    return None


def require_java() -> None:
    """Fail early and clearly when Java 17+ is not installed."""
    major = java_major_version()
    if major is None:
        raise SetupError(
            "Java was not found: install a JDK/JRE 17 or newer and put `java` on PATH (or set JAVA_HOME)."
        )
    if major < MIN_JAVA:
        raise SetupError(
            f"Java {major} found but Spark 4 needs Java {MIN_JAVA} or newer: install it and set JAVA_HOME."
        )


def delta_package() -> str:
    """Maven coordinate of the delta-spark build matching the installed Python package."""
    import pyspark

    scala = "2.13"  # Spark 4 ships only Scala 2.13 builds
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    version = metadata.version("delta-spark")
    # Same artifact naming as delta's own pip_utils (one Delta build per Spark minor).
    return f"io.delta:delta-spark_{spark_minor}_{scala}:{version}"


def jar_cache_dir(config: FacelakeConfig) -> Path:
    return Path(config.jar_cache) if config.jar_cache else cache_root() / "jars"


def _marker(cache: Path) -> Path:
    return cache / "RESOLVED"


def cached_jars(cache: Path) -> list[str]:
    """The resolved jars for the installed Delta version, or [] when not resolved yet."""
    marker = _marker(cache)
    if not marker.is_file() or marker.read_text().strip() != delta_package():
        return []
    return [str(p) for p in sorted((cache / "ivy" / "jars").glob("*.jar")) if not _ships_with_spark(p)]


def _ships_with_spark(jar: Path) -> bool:
    """True when pyspark already bundles this artifact (some version of it).

    Ivy also lands Delta's transitive Hadoop, Jackson, Parquet and log4j jars; Spark brings its
    own, and passing older copies next to them only invites class conflicts.
    """
    import pyspark

    # Ivy names jars '<group>_<artifact>-<version>.jar'; pyspark's are '<artifact>-<version>.jar'.
    artifact = jar.name.split("_", 1)[-1].rsplit("-", 1)[0]
    return any(Path(pyspark.__file__).parent.joinpath("jars").glob(f"{artifact}-[0-9]*.jar"))


def resolve_delta_jars(config: FacelakeConfig) -> list[str]:
    """Fetch Delta's jars from Maven Central into the jar cache once; later calls are offline.

    Spark's own Ivy resolver does the fetching (no Maven install needed); the jars it lands are
    then passed with ``spark.jars`` so sessions never touch the network again.
    """
    cache = jar_cache_dir(config)
    jars = cached_jars(cache)
    if jars:
        return jars
    require_java()
    cache.mkdir(parents=True, exist_ok=True)
    ivy = cache / "ivy"
    package = delta_package()
    log.info("resolving %s from Maven Central into %s (once)", package, cache)
    # A child process does the resolving so its JVM, started without our classpath, goes away.
    script = (
        "from pyspark.sql import SparkSession\n"
        f"s = SparkSession.builder.master('local[1]').config('spark.jars.packages', {package!r})"
        f".config('spark.jars.ivy', {str(ivy)!r}).config('spark.ui.enabled', 'false').getOrCreate()\n"
        "s.stop()\n"
    )
    _prepare_environment()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not list((ivy / "jars").glob("*.jar")):
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SetupError(f"Resolving {package} from Maven Central failed (is it reachable?):\n{tail}")
    _marker(cache).write_text(package + "\n")
    return cached_jars(cache)


def _prepare_environment() -> None:
    # Workers must run the interpreter that has facelake's dependencies.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


def spark_settings(config: FacelakeConfig, jars: list[str]) -> dict[str, str]:
    """All Spark settings facelake sets, as a plain dict (tested without starting Spark)."""
    settings = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(config.shuffle_partitions),
        "spark.driver.memory": config.driver_memory,
        "spark.ui.enabled": str(config.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Small lakes: Delta's log replay and file listing default to 50 and 10,000 tasks.
        "spark.databricks.delta.snapshotPartitions": str(config.shuffle_partitions),
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(config.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # Arrow speeds up pandas UDFs and toPandas.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.ansi.enabled": "false",
        # Deletion vectors leave deleted rows in data files until purge; erasure must purge them.
        "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
        "spark.driver.extraJavaOptions": " ".join(
            [
                "-Dderby.system.home=" + str(cache_root() / "derby"),
                # Quiet JVM logs unless debugging (Spark's own WARN lines are noise for operators).
                *(
                    []
                    if config.log_level.upper() == "DEBUG"
                    else [
                        "-Dlog4j2.configurationFile=" + (resource_dir("conf") / "log4j2.properties").as_uri()
                    ]
                ),
            ]
        ),
    }
    if jars:
        settings["spark.jars"] = ",".join(jars)
    settings.update(config.spark_conf)
    return settings


def get_spark(config: FacelakeConfig, app_name: str = "facelake"):  # -> SparkSession
    """A SparkSession with Delta configured, created once per process and reused.

    Local (``local[*]``) unless ``config.spark_master`` names a cluster. On a cluster the jars
    may instead come from the image (set ``spark.jars`` in ``spark_conf``); then none are passed.
    """
    from pyspark.sql import SparkSession

    _prepare_environment()
    jars = [] if "spark.jars" in config.spark_conf else resolve_delta_jars(config)
    builder = SparkSession.builder.master(config.spark_master).appName(app_name)
    for key, value in spark_settings(config, jars).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR" if config.log_level.upper() != "DEBUG" else "WARN")
    return spark
