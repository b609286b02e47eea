"""The line loop of a sample drop: each line's category, its builder, and the manifest and key it writes."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from jobs.testdata import bad_lines, ok_lines
from jobs.testdata.answer_key import AnswerKeyWriter, new_entry
from jobs.testdata.plan import LinePlan, builder_for, expected_for
from jobs.testdata.state import DropState
from jobs.testdata.summary import SampleDropSummary, Tally

# A builder returns the line as text, or as raw bytes when the bytes themselves are the point (not UTF-8).
LineBuilder = Callable[[DropState, random.Random, int, dict[str, Any]], str | bytes]

BUILDERS: dict[str, LineBuilder] = {
    "unique": ok_lines.unique,
    "exact_dup": ok_lines.exact_dup,
    "near_dup": ok_lines.near_dup,
    "mirror": ok_lines.mirror,
    "special": ok_lines.special,
    "bad_file": bad_lines.bad_file,
    "bad_path": bad_lines.bad_path,
    "bad_line": bad_lines.bad_line,
    "bad_entry": bad_lines.bad_entry,
    "raw_line": bad_lines.raw_line,
}


class Generator:
    """Makes the ``n`` lines of one drop in order; same (n, seed), same bytes."""

    def __init__(self, out_dir: Path, n: int, seed: int) -> None:
        self.out_dir = out_dir
        self.n = n
        self.seed = seed
        self.plan = LinePlan(seed)
        self.state = DropState(out_dir, seed)
        self.tally = Tally()

    def line(self, line_no: int) -> tuple[bytes, dict[str, Any]]:
        """(manifest line bytes, answer-key entry) for ``line_no``; lines must be made in order."""
        kind = self.plan.kind_for(line_no)
        # A stream per line: how many draws one line takes never shifts the next line's.
        rng = random.Random(f"facelake-sample-drop/{self.seed}/line/{line_no}")
        entry = new_entry(line_no, kind)
        made = BUILDERS[builder_for(kind)](self.state, rng, line_no, entry)
        data = made if isinstance(made, bytes) else made.encode("utf-8")
        if entry["kind"] != kind:  # a builder fell back to a simpler category
            entry["expected"] = expected_for(entry["kind"])
        self.tally.add(entry)
        return data, entry

    def run(
        self, manifest: IO[bytes], key: AnswerKeyWriter, progress: Callable[[int, int], None] | None
    ) -> None:
        step = max(1, self.n // 10)
        for line_no in range(1, self.n + 1):
            data, entry = self.line(line_no)
            manifest.write(data + b"\n")
            key.line(entry)
            if progress and line_no % step == 0:
                progress(line_no, self.n)

    def summary(self) -> SampleDropSummary:
        files = self.state.files
        return self.tally.summary(str(self.out_dir), self.n, self.seed, files.files, files.total_bytes)

    def finish_key(self, key: AnswerKeyWriter, summary: SampleDropSummary) -> None:
        stored = summary.to_dict()
        stored.pop("out_dir")  # so the key, like the rest of the drop, is identical wherever it is written
        key.finish(
            n=self.n,
            seed=self.seed,
            policy_cases=self.state.sources.policy_cases(),
            scenarios=self.state.scenarios,
            summary=stored,
        )
