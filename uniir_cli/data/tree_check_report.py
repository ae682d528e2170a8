"""The result of `uniir validate`: rows of counts and issues, one per query set, union pool or instructions.

The library returns a `ValidationReport` and never prints; the command renders it. Problems
are collected per row so one run reports everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uniir_cli.errors import DataError

ERROR, WARNING, NOTE = "error", "warning", "note"


@dataclass
class Issue:
    severity: str  # error | warning | note
    message: str


@dataclass
class RowReport:
    """One row of the summary: a query set with its pool and qrels, a union pool, or the instructions."""

    split: str
    name: str
    required: bool = False
    queries: int | None = None
    pool: int | None = None
    qrels: int | None = None
    images_checked: int = 0
    images_bad: int = 0
    detail: str = ""
    absent: bool = False
    errors: int = 0
    warnings: int = 0
    issues: list[Issue] = field(default_factory=list)
    hidden: int = 0  # issues counted but not kept (beyond `max_messages`)
    max_messages: int = 20

    def add(self, severity: str, message: str) -> None:
        if severity == ERROR:
            self.errors += 1
        elif severity == WARNING:
            self.warnings += 1
        if len(self.issues) < self.max_messages:
            self.issues.append(Issue(severity, message))
        else:
            self.hidden += 1

    def error(self, problem: DataError | str) -> None:
        self.add(ERROR, str(problem))

    @property
    def status(self) -> str:
        if self.absent:
            return "absent"
        if self.errors:
            return f"{self.errors} error{'s' * (self.errors != 1)}"
        if self.warnings:
            return f"{self.warnings} warning{'s' * (self.warnings != 1)}"
        return "ok"


@dataclass
class ValidationReport:
    root: Path
    splits: tuple[str, ...]
    rows: list[RowReport] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rows)

    @property
    def warnings(self) -> int:
        return sum(r.warnings for r in self.rows)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def issues(self) -> Iterable[tuple[RowReport, Issue]]:
        return ((row, issue) for row in self.rows for issue in row.issues)
