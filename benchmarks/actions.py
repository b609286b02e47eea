"""Attribute a job's wall time to the lines of its module that trigger Spark actions (counts, collects, MERGEs)."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# DataFrame methods that run Spark jobs and return to Python.
DATAFRAME_ACTIONS = ("count", "collect", "first", "take", "toPandas")


class ActionProfiler:
    """Wall seconds per (module line, action), outermost call only (a collect inside a MERGE counts once)."""

    def __init__(self, module_file: str) -> None:
        self.module_file = module_file
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth = 0

    def _site(self, what: str) -> str:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename.endswith(self.module_file):
                return f"{self.module_file}:{frame.f_lineno} {frame.f_code.co_name}() {what}"
            frame = frame.f_back
        return f"(outside {self.module_file}) {what}"

    def wrap(self, fn: Callable[..., Any], what: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return fn(*args, **kwargs)
            site = self._site(what)
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                self.seconds[site] += time.perf_counter() - t0
                self.calls[site] += 1

        return timed

    def rows(self, total: float) -> list[list[Any]]:
        """(site, calls, seconds, share of total) sorted by time, plus the unattributed remainder."""
        out = [
            [site, self.calls[site], sec, f"{sec / total:.0%}"]
            for site, sec in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        ]
        rest = total - sum(self.seconds.values())
        out.append(["(no Spark action: planning, driver-side Python)", "-", rest, f"{rest / total:.0%}"])
        return out


def _dataframe_classes() -> list[type]:
    """pyspark's DataFrame and, on Spark 4, the classic implementation that overrides its actions."""
    from pyspark.sql import DataFrame

    classes: list[type] = [DataFrame]
    try:
        from pyspark.sql.classic.dataframe import DataFrame as ClassicDataFrame

        classes.append(ClassicDataFrame)
    except ImportError:
        pass
    return classes


@contextmanager
def profile_actions(
    module: Any, functions: tuple[str, ...] = (), factories: tuple[str, ...] = ()
) -> Iterator[ActionProfiler]:
    """Patch DataFrame actions and ``module``'s named functions (e.g. its MERGE helpers) for the duration.

    ``factories`` name functions of ``module`` that return a callable (e.g. ``publish_gate``): the
    callables they return are timed instead.
    """
    profiler = ActionProfiler(module.__file__.rsplit("/", 2)[-2] + "/" + module.__file__.rsplit("/", 1)[-1])
    saved: list[tuple[Any, str, Any]] = []
    for cls in _dataframe_classes():
        for name in DATAFRAME_ACTIONS:
            if name in vars(cls):
                saved.append((cls, name, vars(cls)[name]))
                setattr(cls, name, profiler.wrap(vars(cls)[name], name))
    for name in functions:
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, profiler.wrap(getattr(module, name), name))
    for name in factories:
        factory = getattr(module, name)
        saved.append((module, name, factory))

        def make(*args: Any, _factory: Any = factory, _name: str = name, **kwargs: Any) -> Any:
            return profiler.wrap(_factory(*args, **kwargs), f"{_name}(…)(…)")

        setattr(module, name, make)
    try:
        yield profiler
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)
