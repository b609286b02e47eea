"""Shared fixtures: one tuned local SparkSession with Delta per test run, a fresh lake per test."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from jobs.core.config import FacelakeConfig, load_config


@pytest.fixture(scope="session")
def spark_config(tmp_path_factory: pytest.TempPathFactory) -> FacelakeConfig:
    # The environment must not leak into tests (a developer's FACELAKE_LAKE, say).
    base = load_config(environ={})
    return base.replace(
        lake=str(tmp_path_factory.mktemp("unused-lake")),
        spark_master="local[2]",
        shuffle_partitions=2,
        spark_ui=False,
    )


@pytest.fixture(scope="session")
def spark(spark_config: FacelakeConfig):
    """The one SparkSession of the test run (local[2], 2 shuffle partitions, UI off)."""
    from jobs.lake.session import get_spark

    session = get_spark(spark_config, "facelake-tests")
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """A fresh, empty lake root for one test."""
    path = tmp_path / "lake"
    path.mkdir()
    return str(path)


@pytest.fixture
def config(spark_config: FacelakeConfig, lake: str) -> FacelakeConfig:
    return spark_config.replace(lake=lake)


@pytest.fixture(scope="session")
def sample_drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small deterministic sample drop shared by the tests that only read it."""
    from jobs.testdata.sample_drop import generate_sample_drop

    drop = tmp_path_factory.mktemp("sample") / "drop"
    generate_sample_drop(drop, n=120, seed=7)
    return drop


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    # py4j logs at INFO while the JVM shuts down, after pytest has closed its capture streams.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # Airflow reads its home at import time: give the test run its own SQLite home, never ~/airflow.
    from jobs.orchestration.airflow_local import airflow_env

    home = Path(tempfile.mkdtemp(prefix="facelake-airflow-"))
    for key, value in airflow_env(home).items():
        if key.startswith("AIRFLOW"):
            os.environ[key] = value
