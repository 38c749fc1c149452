"""The one Jinja environment (report and emails) and the report renderer.

Templates live in ``reports/templates/`` in a source checkout and in ``cleanup/_templates`` in an
installed wheel (hatchling force-includes them). Every template is autoescaped, whatever its
extension, and a typo in a variable name fails the render instead of printing nothing.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from cleanup.errors import CleanupError
from cleanup.interpreter import gc_paused
from cleanup.report.charts import SEVERITIES
from cleanup.report.context import ReportInput, build_context

REPORT_TEMPLATE = "report.html.j2"
REPORT_FILE = "report.html"
PACKAGED_DIR = "_templates"


def template_dirs() -> list[Path]:
    """Return the template folders that exist: the packaged copy first, then the checkout's."""
    packaged = Path(str(resources.files("cleanup").joinpath(PACKAGED_DIR)))
    checkout = Path(__file__).resolve().parents[2] / "reports" / "templates"
    return [path for path in (packaged, checkout) if path.is_dir()]


def template_environment(search_path: list[Path] | None = None) -> Environment:
    """Return the Jinja environment shared by the report and the emails."""
    dirs = template_dirs() if search_path is None else search_path
    if not dirs:
        raise CleanupError(
            "Report templates not found (neither cleanup/_templates nor reports/templates). "
            "Reinstall connref-cleanup or run from a complete source checkout."
        )
    env = Environment(
        loader=FileSystemLoader([str(d) for d in dirs]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    env.globals["severities"] = list(SEVERITIES)
    return env


def format_number(value: object) -> str:
    """Format a count with thousands separators ("—" when unknown)."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"  # type: ignore[call-overload]


# The report makes tens of thousands of small dicts and lists that form no cycles; after the
# rules and the plan, an automatic collection would walk millions of live objects (seconds).
@gc_paused()
def render_report(inp: ReportInput, env: Environment | None = None) -> str:
    """Render the report of one run to an HTML string."""
    env = env or template_environment()
    return env.get_template(REPORT_TEMPLATE).render(**build_context(inp))


@gc_paused()
def write_report(inp: ReportInput, run_folder: str | Path) -> Path:
    """Render the report and write it atomically as ``<run_folder>/report.html``."""
    template = template_environment().get_template(REPORT_TEMPLATE)
    path = Path(run_folder) / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    # Streamed, so a large tenant's report never exists twice in memory as one string.
    with tmp.open("w", encoding="utf-8") as out:
        out.writelines(template.generate(**build_context(inp)))
    os.replace(tmp, path)
    return path
