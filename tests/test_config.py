"""Config precedence (defaults < file < env < CLI), coercion and redaction."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from jobs.config import FacelakeConfig, add_config_arguments, config_from_args, load_config


def test_defaults_when_nothing_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./facelake.toml here
    config = load_config(environ={})
    assert config == FacelakeConfig()
    assert config.spark_master == "local[*]"
    assert config.phash_threshold == 8


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        '[facelake]\nlake = "/from/file"\nshard_count = 3\nphash_threshold = 6\nspark_master = "local[1]"\n'
    )
    env = {"FACELAKE_SHARD_COUNT": "5", "FACELAKE_PHASH_THRESHOLD": "7"}
    config = load_config(file, overrides={"phash_threshold": 9, "lake": None}, environ=env)
    assert config.lake == "/from/file"  # file beats default; flag not given (None) falls through
    assert config.spark_master == "local[1]"
    assert config.shard_count == 5  # env beats file
    assert config.phash_threshold == 9  # flag beats env


def test_config_file_from_environment(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('lake = "s3a://bucket/lake"\nspark_ui = true\nonnx_providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]\n')
    config = load_config(environ={"FACELAKE_CONFIG": str(file), "FACELAKE_SPARK_UI": "false"})
    assert config.lake == "s3a://bucket/lake"
    assert config.spark_ui is False
    assert config.onnx_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_env_types_are_coerced() -> None:
    config = load_config(
        environ={
            "FACELAKE_MAX_IMAGE_BYTES": "1024",
            "FACELAKE_ONNX_PROVIDERS": "CPUExecutionProvider",
            "FACELAKE_SPARK_CONF": '{"spark.hadoop.fs.s3a.endpoint": "http://minio:9000"}',
        }
    )
    assert config.max_image_bytes == 1024
    assert config.onnx_providers == ("CPUExecutionProvider",)
    assert config.spark_conf == {"spark.hadoop.fs.s3a.endpoint": "http://minio:9000"}


def test_bad_values_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shard_count"):
        load_config(environ={"FACELAKE_SHARD_COUNT": "many"})
    file = tmp_path / "c.toml"
    file.write_text('lakes = "/typo"\n')
    with pytest.raises(ValueError, match="unknown config setting 'lakes'"):
        load_config(file, environ={})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.toml", environ={})


def test_cli_flags_map_onto_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACELAKE_CONFIG", raising=False)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--lake", "/x", "--spark-master", "local[2]", "--shuffle-partitions", "3"]))
    assert (config.lake, config.spark_master, config.shuffle_partitions) == ("/x", "local[2]", 3)


def test_redacted_masks_secrets() -> None:
    config = FacelakeConfig(spark_conf={"spark.hadoop.fs.s3a.secret.key": "hunter2", "spark.hadoop.fs.s3a.endpoint": "e"})
    shown = config.redacted()
    assert shown["spark_conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert shown["spark_conf"]["spark.hadoop.fs.s3a.endpoint"] == "e"
    assert "hunter2" not in repr(shown)
