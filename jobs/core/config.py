"""One typed configuration object: defaults < config file < environment < CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from jobs.core.dropfiles import local_root

log = logging.getLogger("facelake.config")

ENV_PREFIX = "FACELAKE_"
CONFIG_FILE_ENV = "FACELAKE_CONFIG"
DEFAULT_CONFIG_FILE = "facelake.toml"
MASK = "***"
# Setting names (Spark/Hadoop keys, URI query parameters) whose values are credentials. Matched on
# the lower-cased name, so camelCase keys (accessKey, keyStorePassword) are caught too.
SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "signature")
# Whole dot/dash/underscore-separated parts: fs.s3a.access.key, fs.azure.account.key.<account>…,
# fs.azure.sas.<container>…, fs.gs.auth.service.account.json.keyfile, URI parameter sig=.
SECRET_PARTS = ("key", "sas", "sig", "pwd")
_PART = re.compile(r"[^a-z0-9]+")
# scheme://userinfo@ — with "user:secret" the secret may hold an unescaped '/', so that form runs to
# the first '@' (a path after a port that holds '@' is over-masked: safe side); else up to '/'.
_URI_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)(?:[^@\s/?#]*:[^@\s]*|[^@\s/?#:]+)@")
_URI_QUERY_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")


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
    """Extra Spark settings (e.g. S3 endpoint); values with secret-looking keys are never logged."""
    jar_cache: str = ""
    """Folder holding Delta's resolved jars; empty means ``<project>/.cache/jars``."""
    model_pack: str = "generated-test-pack"
    models_dir: str | None = None
    onnx_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    shard_count: int = 4
    """FAISS index shards per build (``facelake index build --shards``; ``auto`` there sizes from the data)."""
    index_memory_budget: str = "4G"
    """Memory every shard of an index build may take together at search time; picks the FAISS codes."""
    index_exact_below: int = 50_000
    """Below this many vectors an index is exact (Flat); above, IVF tuned to ``index_recall_target``."""
    index_recall_target: float = 0.95
    """recall@10 vs exact search a build must measure on held-out queries to be published."""
    index_keep_builds: int = 3
    """Published builds kept per pack; older ones are pruned (their files deleted)."""
    erasure_subject_threshold: float = 0.40
    """Cosine similarity at which a face matches an erasure's subject photo (ArcFace packs: same person
    is typically 0.3-0.5 apart from unrelated people, below 0.2; tune per pack with its verification pairs)."""
    erasure_search_k: int = 100
    """Candidates fetched from the FAISS build per query face before the exact similarity check."""
    phash_threshold: int = 8
    """Max pHash Hamming distance at which a new image counts as a copy of suppressed (erased) content."""
    near_dup_radius: int = 12
    """Max Hamming distance between probe hashes for a near-duplicate *candidate*; every candidate is
    then verified geometrically (``jobs.core.neardup``) before it becomes a near duplicate."""
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    vacuum_retention_hours: float | None = None
    """``facelake maintain``: VACUUM retention; unset means each table's
    ``delta.deletedFileRetentionDuration`` (7 days, from ``schemas/*.json``)."""
    policy_file: str = ""
    """Jurisdiction policy; empty means the packaged ``jobs/resources/policies/jurisdiction.toml``."""
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # A relative local lake ("lake", "./lake") would be read by Delta as a table name, and would
        # move with the working directory of each task: pin it to an absolute path once.
        if self.lake and local_root(self.lake) == self.lake and not os.path.isabs(self.lake):
            object.__setattr__(self, "lake", os.path.abspath(self.lake))

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, secrets masked (see ``mask``), fit for a log line."""
        return {f.name: mask(getattr(self, f.name), f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> FacelakeConfig:
        """A copy with some fields changed (values coerced to the field types)."""
        return dataclasses.replace(self, **{k: _coerce(k, v, "replace()") for k, v in changes.items()})


def is_secret_name(name: str) -> bool:
    """Whether a setting (or URI parameter) called ``name`` holds a credential."""
    lowered = name.lower()
    if any(word in lowered for word in SECRET_WORDS):
        return True
    # keyfile, keystore, keytab, accesskey, privatekey, apikey: a part that starts or ends in "key".
    parts = [p for p in _PART.split(lowered) if p]
    return any(p in SECRET_PARTS or p.startswith("key") or p.endswith("key") for p in parts)


def _mask_text(text: str) -> str:
    """``text`` with URI credentials masked: ``s3a://KEY:SECRET@bucket/p`` -> ``s3a://***@bucket/p``."""
    text = _URI_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _URI_QUERY_PARAM.sub(
        lambda m: f"{m.group(1)}{m.group(2)}={MASK}" if is_secret_name(m.group(2)) else m.group(0), text
    )


def mask(value: Any, name: str = "") -> Any:
    """``value`` of setting ``name`` made fit for a log line or an error message.

    The one masking rule: everything under a secret-looking name (``is_secret_name``) becomes
    ``***``, mappings are masked entry by entry under their own keys, and credentials inside any
    string (URI user info, secret query parameters) are masked wherever they appear. Tuples come
    back as lists (JSON-ready).
    """
    if value is None:
        return None
    if name and is_secret_name(name):
        return MASK
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask(v) for v in value]
    return _mask_text(str(value))


_FIELDS = {f.name: f for f in fields(FacelakeConfig)}


def _field_type(name: str) -> str:
    return str(_FIELDS[name].type)


def _describe(value: Any) -> str:
    """What a rejected value looked like, without any of its content (it may hold a secret)."""
    if isinstance(value, str | bytes):
        return f"a {len(value)}-character {type(value).__name__}"
    if isinstance(value, Mapping | list | tuple):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return f"a {type(value).__name__}"


def _coerce(name: str, value: Any, source: str = "") -> Any:
    """Turn a value from a file, env var or flag into the field's declared type.

    Errors name the setting, where it came from and the expected type, never the value: a
    malformed ``spark_conf`` is exactly where credentials sit, unparsed and so unmaskable.
    """
    where = f" (from {mask(source)})" if source else ""
    if name not in _FIELDS:
        raise ValueError(f"unknown config setting {name!r}{where}; known: {', '.join(sorted(_FIELDS))}")
    kind = _field_type(name)
    if value is None:
        if "None" in kind:
            return None
        raise ValueError(f"config setting {name!r}{where} cannot be empty")
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
            if not isinstance(value, Mapping):
                raise TypeError("not a JSON object")
            return {str(k): str(v) for k, v in value.items()}
        return str(value)
    except json.JSONDecodeError as exc:
        # The parser's message and position, not exc itself: its .doc is the raw text.
        problem = f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except (TypeError, ValueError):
        problem = f"cannot read {_describe(value)} as {kind}"
    # "from None": a chained int()/float() error would print the value in every traceback.
    raise ValueError(f"config setting {name!r}{where}: {problem}; the value is not shown") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages name a position, never the text; drop the chain all the same.
        raise ValueError(f"config file {mask(str(path))} is not valid TOML: {exc}") from None
    # Settings may sit at top level or under [facelake].
    data = dict(data.get("facelake", data))
    return {k: _coerce(k, v, f"config file {path}") for k, v in data.items()}


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in environ and environ[key] != "":
            out[name] = _coerce(name, environ[key], f"environment variable {key}")
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
            raise FileNotFoundError(f"config file {mask(str(path))} does not exist")
        values.update(_read_file(Path(path)))
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        values.update(_read_file(Path(DEFAULT_CONFIG_FILE)))
    values.update(_read_env(environ))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, "command line")
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


def command_main(
    name: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """The ``main()`` of every job module: parse ``argv`` with the module's flags and run it."""
    parser = argparse.ArgumentParser(prog=f"facelake {name}", description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def log_config(config: FacelakeConfig, job: str) -> None:
    """Log the effective settings once at job start, secrets masked (``mask``)."""
    log.info("%s config %s", job, json.dumps(config.redacted(), sort_keys=True))
