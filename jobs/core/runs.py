"""Run identity and progress: who wrote a Delta commit, from what, and a short summary at the end."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("facelake")


def configure_logging(level: str = "INFO") -> None:
    """One log format for every job; Spark's, py4j's, FAISS's and matplotlib's chatter kept at WARNING."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("py4j", "pyspark", "faiss", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def start_run(args: Any, job: str) -> tuple[Any, RunContext]:
    """What every job does first: resolve its config from the parsed flags, set up logging, log the config once.

    Returns ``(FacelakeConfig, RunContext)``.
    """
    from jobs.core.config import config_from_args, log_config

    config = config_from_args(args)
    configure_logging(config.log_level)
    log_config(config, job)
    return config, RunContext(job=job)


@dataclass
class RunContext:
    """Identity of one job run, written into every Delta commit the run makes (``userMetadata``)."""

    job: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    inputs: dict[str, Any] = field(default_factory=dict)
    # Airflow exports AIRFLOW_CTX_* to task processes; jobs never import Airflow themselves.
    dag_run_id: str | None = field(default_factory=lambda: os.environ.get("AIRFLOW_CTX_DAG_RUN_ID"))
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    counts: dict[str, int] = field(default_factory=dict)

    def commit_metadata(self) -> str:
        """JSON for Delta's commitInfo.userMetadata: which run made this version, from what."""
        return json.dumps(
            {"job": self.job, "run_id": self.run_id, "dag_run_id": self.dag_run_id, "inputs": self.inputs},
            sort_keys=True,
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self, message: str, *args: Any) -> None:
        """A progress line with the time since the run started."""
        log.info("[%s %6.1fs] " + message, self.job, self.elapsed(), *args)

    def count(self, name: str, value: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(value)

    def summary(self) -> str:
        """Short end-of-run summary: counts and wall time (ids and counts only, never content)."""
        parts = [f"{k}={v}" for k, v in self.counts.items()]
        return f"{self.job} run {self.run_id[:12]} done in {self.elapsed():.1f}s: " + (
            ", ".join(parts) or "nothing to do"
        )
