"""One typed configuration object: defaults < config file < environment < CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("facelake.config")

ENV_PREFIX = "FACELAKE_"
CONFIG_FILE_ENV = "FACELAKE_CONFIG"
DEFAULT_CONFIG_FILE = "facelake.toml"
# Field names whose values are never logged (credentials for object stores, DB URLs).
SECRET_MARKERS = ("secret", "password", "token", "key_id", "access_key")


@dataclass(frozen=True)
class FacelakeConfig:
    """Every setting a facelake job reads.

    Precedence, lowest first: the defaults below, a TOML file (``--config``, ``$FACELAKE_CONFIG``
    or ``./facelake.toml``), ``FACELAKE_<FIELD>`` environment variables, then CLI flags.
    """

    lake: str = "./lake"
    """Lake root URI: a local path, ``file://…`` or ``s3a://bucket/prefix``."""
    drop: str | None = None
    """Crawl drop folder (or URI) to ingest."""
    spark_master: str = "local[*]"
    spark_ui: bool = False
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    """spark.driver.memory (in local mode the driver also runs the tasks)."""
    spark_conf: dict[str, str] = field(default_factory=dict)
    """Extra Spark settings (e.g. S3 endpoint); values with secret-looking keys are not logged."""
    jar_cache: str = ""
    """Folder holding Delta's resolved jars; empty means ``<project>/.cache/jars``."""
    model_pack: str = "generated-test-pack"
    models_dir: str | None = None
    onnx_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    shard_count: int = 4
    phash_threshold: int = 8
    """Max Hamming distance between 64-bit perceptual hashes for a near duplicate."""
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    vacuum_retention_hours: float | None = None
    """``facelake maintain``: VACUUM retention; unset means each table's
    ``delta.deletedFileRetentionDuration`` (7 days, from ``schemas/*.json``)."""
    policy_file: str = ""
    """Jurisdiction policy; empty means the repository's ``policies/jurisdiction.toml``."""
    log_level: str = "INFO"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, with secret-looking values masked, fit for a log line."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "spark_conf":
                value = {
                    k: ("***" if any(m in k.lower() for m in SECRET_MARKERS) else v)
                    for k, v in value.items()
                }
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> FacelakeConfig:
        """A copy with some fields changed (values coerced to the field types)."""
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})


_FIELDS = {f.name: f for f in fields(FacelakeConfig)}


def _field_type(name: str) -> str:
    return str(_FIELDS[name].type)


def _coerce(name: str, value: Any) -> Any:
    """Turn a value from a file, env var or flag into the field's declared type."""
    if name not in _FIELDS:
        raise ValueError(f"unknown config setting {name!r}; known: {', '.join(sorted(_FIELDS))}")
    kind = _field_type(name)
    if value is None:
        if "None" in kind:
            return None
        raise ValueError(f"config setting {name!r} cannot be empty")
    try:
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if kind.startswith("dict"):
            if isinstance(value, str):
                value = json.loads(value)
            return {str(k): str(v) for k, v in dict(value).items()}
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config setting {name!r}: cannot read {value!r} as {kind}") from exc


def _read_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    # Settings may sit at top level or under [facelake].
    data = dict(data.get("facelake", data))
    return {k: _coerce(k, v) for k, v in data.items()}


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in environ and environ[key] != "":
            out[name] = _coerce(name, environ[key])
    return out


def load_config(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> FacelakeConfig:
    """Build the config from defaults, an optional TOML file, the environment and overrides.

    ``overrides`` are the CLI flags: keys are field names; ``None`` values mean "flag not given".
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get(CONFIG_FILE_ENV)
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        values.update(_read_file(Path(path)))
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        values.update(_read_file(Path(DEFAULT_CONFIG_FILE)))
    values.update(_read_env(environ))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)
    return FacelakeConfig(**values)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every job shares; each maps onto a config field and defaults to 'not given'."""
    g = parser.add_argument_group("lake and runtime (override config file and FACELAKE_* env)")
    g.add_argument("--lake", help="lake root URI (default ./lake)")
    g.add_argument("--config", dest="config_file", help="TOML config file (default ./facelake.toml)")
    g.add_argument("--spark-master", help="Spark master, e.g. local[2] or spark://host:7077")
    g.add_argument("--shuffle-partitions", type=int, help="spark.sql.shuffle.partitions")
    g.add_argument("--log-level", help="DEBUG, INFO, WARNING…")


def config_from_args(args: argparse.Namespace) -> FacelakeConfig:
    """Resolve the config for a parsed command line (flags not given fall through)."""
    overrides = {name: getattr(args, name) for name in _FIELDS if hasattr(args, name)}
    return load_config(getattr(args, "config_file", None), overrides)


def log_config(config: FacelakeConfig, job: str) -> None:
    """Log the effective settings once at job start, secrets masked."""
    log.info("%s config %s", job, json.dumps(config.redacted(), sort_keys=True))
