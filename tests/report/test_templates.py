"""The shared Jinja environment: where templates come from, autoescape and strictness."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError

from cleanup.report import render as render_module
from cleanup.report import render_report, template_environment
from cleanup.report.render import format_number, template_dirs
from tests.report.conftest import make_input

REPO = Path(__file__).resolve().parents[2]


def test_source_checkout_templates_are_found():
    assert REPO / "reports" / "templates" in template_dirs()
    env = template_environment()
    for name in ("base.html.j2", "report.html.j2", "_macros.html.j2", "_style.css.j2"):
        env.get_template(name)


def test_packaged_templates_are_found_first(tmp_path, monkeypatch):
    # An installed wheel has the templates in cleanup/_templates (pyproject force-include).
    packaged = tmp_path / "cleanup" / "_templates"
    packaged.mkdir(parents=True)
    (packaged / "report.html.j2").write_text("packaged {{ run_id }}", encoding="utf-8")
    monkeypatch.setattr(render_module.resources, "files", lambda _pkg: tmp_path / "cleanup")
    assert template_dirs()[0] == packaged
    assert render_report(make_input()) == "packaged 20240501T020000Z"


def test_missing_templates_fail_clearly(tmp_path):
    from cleanup.errors import CleanupError

    with pytest.raises(CleanupError, match="templates not found"):
        template_environment(search_path=[])


@pytest.mark.parametrize("name", ["t.html", "t.txt.j2", "t.j2", "subject.txt"])
def test_every_template_is_autoescaped(tmp_path, name):
    (tmp_path / name).write_text("{{ value }}", encoding="utf-8")
    env = template_environment(search_path=[tmp_path])
    assert env.get_template(name).render(value="<b>&") == "&lt;b&gt;&amp;"
    assert env.from_string("{{ value }}").render(value="<i>") == "&lt;i&gt;"


def test_undefined_names_fail_the_render():
    env = template_environment()
    with pytest.raises(UndefinedError):
        env.from_string("{{ summmary.findings }}").render(summary={"findings": 1})
    with pytest.raises(UndefinedError):
        env.from_string("{{ row.owner }}").render(row={"owner_name": "x"})


def test_macros_are_reusable_by_other_templates():
    env = template_environment()
    template = env.from_string(
        '{% import "_macros.html.j2" as m %}{{ m.severity_badge("high") }}'
        "{{ m.findings_table([], empty='Nothing for you.') }}"
    )
    html = template.render()
    assert 'class="badge sev-high"' in html and "Nothing for you." in html


def test_format_number():
    assert format_number(1234567) == "1,234,567"
    assert format_number(None) == "—"
    assert format_number(2.5) == "2.5"
    assert format_number(3.0) == "3"
