"""The report in a real browser: headless Chromium (Debian's ``chromium``) renders it cleanly.

In CI (``CI`` set) a missing Chromium fails the test; elsewhere it is skipped with the reason.
Set ``CONNREF_UPDATE_SCREENSHOT=1`` to copy the screenshot to ``docs/report.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cleanup.report import write_report
from tests.report.conftest import (
    HOSTILE_ENV_NAME,
    HOSTILE_FLOW_NAME,
    HOSTILE_REF_NAME,
    SCRIPT,
    TITLE_SCRIPT,
    make_input,
)
from tests.report.test_report_render import SECTIONS

REPO = Path(__file__).resolve().parents[2]
TITLE = "Connection reference report · 20240501T020000Z"
# Chromium logs page console messages as "CONSOLE(n)" (older) or "CONSOLE:n]" (newer).
PAGE_TROUBLE = re.compile(
    r"CONSOLE[(:]|Uncaught|Refused to|violates the following Content Security Policy"
    r"|Failed to load resource"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium_path() -> str:
    """Return the Chromium binary, failing in CI and skipping elsewhere when it is missing."""
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if found:
        return found
    reason = "chromium is not installed (Debian: apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must install it (.ci/run).", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class BrowserRun:
    dom: str
    stderr: str
    screenshot: Path


def run_chromium(binary: str, page: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once on ``page`` with a fresh profile."""
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, (
        f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}"
    )
    return result


def page_trouble(stderr: str) -> list[str]:
    """Return the stderr lines that report a console message, script error or blocked load."""
    return [line for line in stderr.splitlines() if PAGE_TROUBLE.search(line)]


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory: pytest.TempPathFactory) -> BrowserRun:
    binary = chromium_path()
    work = tmp_path_factory.mktemp("browser")
    page = write_report(make_input(), work)
    shot = work / "report.png"
    dom = run_chromium(binary, page, work, "--dump-dom", "--window-size=1280,2000")
    pic = run_chromium(binary, page, work, f"--screenshot={shot}", "--window-size=1280,2000")
    if os.environ.get("CONNREF_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "report.png")
    return BrowserRun(dom=dom.stdout, stderr=dom.stderr + pic.stderr, screenshot=shot)


class Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        # Only the document title: SVG charts carry <title> tooltips too.
        self._in_title = tag == "title" and "body" not in self.tags
        self.ids += [v for k, v in attrs if k == "id" and v]

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.title.append(data)


def parsed(dom: str) -> Dom:
    parser = Dom()
    parser.feed(dom)
    return parser


def test_screenshot_is_taken(browser_run):
    data = browser_run.screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a blank page compresses to a few KB


def test_every_section_is_in_the_rendered_dom(browser_run):
    ids = parsed(browser_run.dom).ids
    assert [i for i in ids if i in SECTIONS] == SECTIONS


def test_hostile_names_render_as_text(browser_run):
    dom = parsed(browser_run.dom)
    text = "".join(dom.text)
    for hostile in (SCRIPT, TITLE_SCRIPT, HOSTILE_ENV_NAME, HOSTILE_REF_NAME, HOSTILE_FLOW_NAME):
        assert hostile in text
    assert "script" not in dom.tags and "img" not in dom.tags
    assert SCRIPT not in browser_run.dom  # the serialised DOM holds it escaped


def test_no_script_ran(browser_run):
    # The hostile flow name sets document.title if it ever runs.
    assert "".join(parsed(browser_run.dom).title) == TITLE
    assert "pwned" not in "".join(parsed(browser_run.dom).title)


def test_no_console_errors(browser_run):
    assert page_trouble(browser_run.stderr) == []


def test_console_errors_would_be_seen(tmp_path):
    # Guards the check above: this Chromium does log a page's errors where we look for them.
    binary = chromium_path()
    page = tmp_path / "canary.html"
    page.write_text(
        "<!DOCTYPE html><title>t</title><script>throw new Error('canary')</script>",
        encoding="utf-8",
    )
    result = run_chromium(binary, page, tmp_path, "--dump-dom")
    assert any("canary" in line for line in page_trouble(result.stderr)), result.stderr[-2000:]
