"""Config precedence (defaults < file < env < CLI), coercion and redaction."""

from __future__ import annotations

import argparse
import json
import logging
import traceback
from pathlib import Path

import pytest

from jobs.core.config import FacelakeConfig, add_config_arguments, config_from_args, load_config, log_config


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
    file.write_text(
        'lake = "s3a://bucket/lake"\nspark_ui = true\nonnx_providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]\n'
    )
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
    config = config_from_args(
        parser.parse_args(["--lake", "/x", "--spark-master", "local[2]", "--shuffle-partitions", "3"])
    )
    assert (config.lake, config.spark_master, config.shuffle_partitions) == ("/x", "local[2]", 3)


def test_redacted_masks_secrets() -> None:
    config = FacelakeConfig(
        spark_conf={"spark.hadoop.fs.s3a.secret.key": "hunter2", "spark.hadoop.fs.s3a.endpoint": "e"}
    )
    shown = config.redacted()
    assert shown["spark_conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert shown["spark_conf"]["spark.hadoop.fs.s3a.endpoint"] == "e"
    assert "hunter2" not in repr(shown)


# Every credential-bearing key shape issue #10 names; each value is a unique string the log must not hold.
SECRET_CONF = {
    "spark.hadoop.fs.s3a.access.key": "AKIA-s3a-access-0001",
    "spark.hadoop.fs.s3a.secret.key": "s3a-secret-0002",
    "fs.s3a.secret.key": "bare-secret-0003",
    "spark.hadoop.fs.s3a.session.token": "session-token-0004",
    "spark.hadoop.fs.s3a.bucket.media.secret.key": "per-bucket-secret-0005",
    "spark.hadoop.fs.azure.account.key.acct.blob.core.windows.net": "azure-account-key-0006",
    "spark.hadoop.fs.azure.sas.container.acct.blob.core.windows.net": "azure-sas-0007",
    "spark.hadoop.fs.azure.sas.fixed.token": "azure-fixed-sas-0008",
    "spark.hadoop.fs.azure.account.oauth2.client.secret": "azure-client-secret-0009",
    "spark.hadoop.google.cloud.auth.service.account.json.keyfile": "/secrets/gcs-keyfile-0010.json",
    "spark.hadoop.fs.gs.auth.service.account.private.key": "gcs-private-key-0011",
    "spark.hadoop.fs.gs.auth.service.account.private.key.id": "gcs-private-key-id-0012",
    "spark.hadoop.fs.s3a.aws.credentials.provider": "credential-provider-0013",
    "spark.hadoop.javax.jdo.option.ConnectionPassword": "metastore-password-0014",
    "spark.ssl.keyStorePassword": "keystore-password-0015",
    "spark.hadoop.fs.s3a.accessKey": "camel-access-key-0016",
    "spark.authenticate.secret": "spark-auth-secret-0017",
}
PUBLIC_CONF = {
    "spark.hadoop.fs.s3a.endpoint": "http://minio:9000",
    "spark.hadoop.fs.s3a.path.style.access": "true",
    "spark.sql.shuffle.partitions": "4",
}


def credentials_config() -> FacelakeConfig:
    """Secrets under secret keys, inside URIs of every string field and inside spark_conf values."""
    return FacelakeConfig(
        lake="s3a://AKIALAKEKEY:lake/secret+0020@bucket/lake",
        drop="https://dropuser:drop-pass-0021@crawler.example/drops/7",
        spark_master="spark://master-user:master-pass-0022@spark-host:7077",
        models_dir="https://models.example/packs?sv=2024-01-01&sig=sas-signature-0023",
        spark_conf={
            **SECRET_CONF,
            **PUBLIC_CONF,
            "spark.hadoop.fs.s3a.endpoint.proxy": "http://proxy-user:proxy-pass-0024@proxy:3128",
            "spark.eventLog.dir": "wasbs://container:event-log-key-0025@acct.blob.core.windows.net/logs",
        },
    )


SECRETS = [
    *SECRET_CONF.values(),
    "AKIALAKEKEY",
    "lake/secret+0020",
    "dropuser",
    "drop-pass-0021",
    "master-user",
    "master-pass-0022",
    "sas-signature-0023",
    "proxy-user",
    "proxy-pass-0024",
    "event-log-key-0025",
]


def test_config_log_line_masks_every_credential(caplog: pytest.LogCaptureFixture) -> None:
    config = credentials_config()
    with caplog.at_level(logging.INFO, logger="facelake.config"):
        log_config(config, "ingest")
    line = caplog.text
    assert "ingest config" in line
    for secret in SECRETS:
        assert secret not in line, f"{secret!r} reached the log"
    shown = config.redacted()
    assert all(shown["spark_conf"][k] == "***" for k in SECRET_CONF)
    # What an operator needs to debug stays readable: where things are, only the credentials go.
    assert shown["lake"] == "s3a://***@bucket/lake"
    assert shown["drop"] == "https://***@crawler.example/drops/7"
    assert shown["spark_master"] == "spark://***@spark-host:7077"
    assert shown["models_dir"] == "https://models.example/packs?sv=2024-01-01&sig=***"
    assert shown["spark_conf"]["spark.hadoop.fs.s3a.endpoint.proxy"] == "http://***@proxy:3128"
    assert shown["spark_conf"]["spark.eventLog.dir"] == "wasbs://***@acct.blob.core.windows.net/logs"
    assert {k: shown["spark_conf"][k] for k in PUBLIC_CONF} == PUBLIC_CONF
    assert shown["shuffle_partitions"] == config.shuffle_partitions
    assert json.loads(json.dumps(shown)) == shown  # the log line is plain JSON


def test_masking_leaves_uris_without_credentials_alone() -> None:
    config = FacelakeConfig(
        lake="s3a://bucket/lake",
        drop="/data/drops/user@host/7",
        spark_master="k8s://https://api:6443",
        spark_conf={"spark.hadoop.fs.s3a.endpoint": "http://minio:9000/?region=eu&x=1"},
    )
    shown = config.redacted()
    assert (shown["lake"], shown["drop"], shown["spark_master"]) == (
        config.lake,
        config.drop,
        config.spark_master,
    )
    assert shown["spark_conf"] == config.spark_conf


def error_text(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """The messages a traceback of the error would print, chained exceptions included."""
    parts: list[str] = []
    exc: BaseException | None = excinfo.value
    while exc is not None:
        parts += traceback.format_exception_only(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "".join(parts)


@pytest.mark.parametrize(
    "raw",
    [
        '{"spark.hadoop.fs.s3a.secret.key": "hunter2-0030",}',  # trailing comma
        "spark.hadoop.fs.s3a.secret.key=hunter2-0030",  # not JSON at all
        '["s3a://AKIA:hunter2-0030@bucket"]',  # JSON, but not an object
    ],
)
def test_malformed_spark_conf_fails_without_echoing_it(raw: str) -> None:
    with pytest.raises(ValueError, match="spark_conf") as excinfo:
        load_config(environ={"FACELAKE_SPARK_CONF": raw})
    text = error_text(excinfo)
    assert "FACELAKE_SPARK_CONF" in text  # says where to look ...
    assert "hunter2-0030" not in text and "AKIA" not in text  # ... but not what it holds


def test_malformed_settings_never_echo_their_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shard_count.*FACELAKE_SHARD_COUNT") as excinfo:
        load_config(environ={"FACELAKE_SHARD_COUNT": "pass-0031"})
    assert "pass-0031" not in error_text(excinfo)
    file = tmp_path / "c.toml"
    file.write_text('spark_ui = "token-0032"\nspark_conf = "{not json token-0033"\n')
    with pytest.raises(ValueError, match=f"spark_ui.*config file {file}") as excinfo:
        load_config(file, environ={})
    assert "token-0032" not in error_text(excinfo)
    with pytest.raises(ValueError, match="spark_conf.*invalid JSON") as excinfo:
        FacelakeConfig().replace(spark_conf="{not json token-0033")
    assert "token-0033" not in error_text(excinfo)


def test_a_relative_local_lake_is_pinned_to_an_absolute_path(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    assert load_config(overrides={"lake": "lake"}, environ={}).lake == str(tmp_path / "lake")
    assert load_config(overrides={"lake": "./lake"}, environ={}).lake == str(tmp_path / "lake")
    assert load_config(environ={}).lake == str(tmp_path / "lake")  # the default, ./lake
    assert load_config(overrides={"lake": "s3a://b/lake"}, environ={}).lake == "s3a://b/lake"
    assert load_config(overrides={"lake": "file:///x/lake"}, environ={}).lake == "file:///x/lake"
