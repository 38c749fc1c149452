"""The HTML report of a run and the pac-style deployment settings.

``render_report(ReportInput) -> str`` is pure; ``write_report`` and
``write_deployment_settings`` write into the run folder. ``template_environment()`` is the one
Jinja environment, shared with the owner emails.
"""

from cleanup.report.context import ReportHistory, ReportInput, build_context
from cleanup.report.render import render_report, template_environment, write_report
from cleanup.report.settings_json import (
    deployment_settings,
    settings_file_name,
    write_deployment_settings,
)
from cleanup.report.trend import load_trend

__all__ = [
    "ReportHistory",
    "ReportInput",
    "build_context",
    "deployment_settings",
    "load_trend",
    "render_report",
    "settings_file_name",
    "template_environment",
    "write_deployment_settings",
    "write_report",
]
