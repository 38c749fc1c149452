"""Offline linting of a source-controlled (unpacked) solution: ``connref-cleanup lint-solution``.

``lint_solution`` reads ``Other/Customizations.xml`` (or a root ``customizations.xml``) and
``Workflows/*.json``, plus any pac deployment settings files given explicitly, and returns
findings; ``main_lint`` prints them and returns the exit code:

* 0 nothing found (info notes do not count),
* 1 something found,
* 2 the solution folder or a settings file cannot be read.

Settings files are never discovered on their own: pass each with ``--settings FILE``. A value
with glob characters (``--settings 'config/*/deploymentSettings.json'``, quoted so the shell
leaves it alone; ``**`` recurses) is expanded, sorted, and must match at least one file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from cleanup.lint.checks import LintFinding, LintResult, run_checks
from cleanup.lint.output import render_json, render_json_error, render_text
from cleanup.lint.solution import (
    FLOW_OK,
    LintInputError,
    expand_settings_paths,
    read_settings_file,
    read_solution,
)
from cleanup.rules.settings import NamingSettings

__all__ = ["LintFinding", "LintInputError", "LintResult", "lint_solution", "main_lint"]

FORMATS = ("text", "json")


def lint_solution(
    path: str | Path,
    *,
    settings_files: Iterable[str | Path] = (),
    naming: NamingSettings | None = None,
) -> LintResult:
    """Lint an unpacked solution folder; raise LintInputError if it cannot be read."""
    solution = read_solution(path)
    settings = [read_settings_file(p) for p in expand_settings_paths(settings_files)]
    findings = run_checks(solution, settings, naming or NamingSettings())
    return LintResult(
        solution=str(path),
        solution_name=solution.unique_name,
        customizations_file=solution.customizations_file,
        declared=len(solution.declarations),
        flows_read=sum(1 for f in solution.flows if f.kind == FLOW_OK),
        settings_files=tuple(s.file for s in settings),
        findings=findings,
    )


def main_lint(
    path: str | Path,
    settings_files: Iterable[str | Path] = (),
    fmt: str = "text",
    naming: NamingSettings | None = None,
    *,
    fail_on: str = "low",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Lint, print the result in ``fmt`` (text or json) and return the exit code (0, 1 or 2)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    try:
        result = lint_solution(path, settings_files=settings_files, naming=naming)
    except LintInputError as exc:
        err.write(f"Error: {exc}\n")
        if fmt == "json":
            out.write(render_json_error(str(path), str(exc)) + "\n")
        return LintInputError.exit_code
    out.write(render_json(result) + "\n" if fmt == "json" else render_text(result))
    return result.exit_code_at(fail_on)
