"""What a generated drop holds, counted from its answer-key entries."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from jobs.testdata.plan import NEAR_KINDS, OK


@dataclass(frozen=True)
class SampleDropSummary:
    """What a generated drop holds; every count comes from the answer key's point of view."""

    out_dir: str
    n: int
    seed: int
    lines: int
    files: int
    total_bytes: int
    ok_lines: int
    quarantined_lines: int
    distinct_contents: int
    face_expected_contents: int
    unique_face: int
    unique_nonface: int
    exact_dup_lines: int
    exact_dup_same_path_lines: int
    near_dup_lines: int
    mirror_lines: int
    uk_lines: int
    uk_ok_lines: int
    by_expected: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    near_dups_by_transform: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict with sorted nested mappings."""
        out = asdict(self)
        for key in ("by_expected", "by_kind", "near_dups_by_transform"):
            out[key] = dict(sorted(out[key].items()))
        return out


@dataclass
class Tally:
    """Running counts over answer-key entries, added one line at a time."""

    by_expected: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    transforms: Counter[str] = field(default_factory=Counter)
    uk_lines: int = 0
    uk_ok_lines: int = 0
    exact_dups: int = 0
    exact_dup_same_path: int = 0
    distinct: int = 0
    distinct_face: int = 0

    def add(self, entry: dict[str, Any]) -> None:
        self.by_kind[entry["kind"]] += 1
        self.by_expected[entry["expected"]] += 1
        if entry["near_dup_of_line"] is not None:
            self.transforms[entry["transform"].split(":")[0]] += 1
        if entry["uk_expected"]:
            self.uk_lines += 1
            if entry["expected"] == OK:
                self.uk_ok_lines += 1
        if entry["expected"] == OK:
            if entry["exact_dup_of_line"] is not None:
                self.exact_dups += 1
                if entry["kind"] == "exact_dup_same_path":
                    self.exact_dup_same_path += 1
            elif entry["near_dup_of_line"] is None and entry["mirror_of_line"] is None:
                self.distinct += 1
                self.distinct_face += bool(entry["has_face_expected"])

    def summary(self, out_dir: str, n: int, seed: int, files: int, total_bytes: int) -> SampleDropSummary:
        ok = self.by_expected.get(OK, 0)
        return SampleDropSummary(
            out_dir=out_dir,
            n=n,
            seed=seed,
            lines=n,
            files=files,
            total_bytes=total_bytes,
            ok_lines=ok,
            quarantined_lines=n - ok,
            distinct_contents=self.distinct,
            face_expected_contents=self.distinct_face,
            unique_face=self.by_kind["unique_face"],
            unique_nonface=self.by_kind["unique_nonface"],
            exact_dup_lines=self.exact_dups,
            exact_dup_same_path_lines=self.exact_dup_same_path,
            near_dup_lines=sum(self.by_kind[k] for k in NEAR_KINDS),
            mirror_lines=self.by_kind["mirror"],
            uk_lines=self.uk_lines,
            uk_ok_lines=self.uk_ok_lines,
            by_expected=dict(sorted(self.by_expected.items())),
            by_kind=dict(sorted(self.by_kind.items())),
            near_dups_by_transform=dict(sorted(self.transforms.items())),
        )
