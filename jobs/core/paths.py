"""Where facelake finds its packaged data and keeps its caches, in a checkout or installed from a wheel."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def resource_dir(name: str) -> Path:
    """A folder of package data (``schemas``, ``expectations``, ``policies``, ``conf``) via importlib.resources.

    setuptools installs package data as plain files, so the folder is a real path on disk in a
    checkout, an editable install and a wheel alike.
    """
    return Path(str(files("jobs.resources") / name))


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None when it is installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "jobs").is_dir() else None


def cache_root() -> Path:
    """Where jars, generated model packs and the embedded Airflow home are cached.

    ``$FACELAKE_CACHE`` if set, else ``<checkout>/.cache`` (what ``./dev`` uses), else
    ``~/.cache/facelake`` for an installed package.
    """
    env = os.environ.get("FACELAKE_CACHE")
    if env:
        return Path(env)
    root = checkout_root()
    return root / ".cache" if root else Path.home() / ".cache" / "facelake"
