"""``connref-cleanup apply / resume / restore`` end to end on the built-in demo tenant.

With ``[simulator] enabled = true`` every command starts a fresh, deterministic demo tenant, so
a plan written by ``run`` applies cleanly in the next command.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cleanup.cli import cli

CONFIG = """
[simulator]
enabled = true
tenant = "demo"

[run]
runs_dir = "{runs}"

[apply]
allow_delete = true
environments = ["Contoso HR"]
"""


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "--no-progress", *args])
    return result.exit_code, result.output


def planned(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(runs=tmp_path / "runs"))
    code, output = invoke(config, "run")
    assert code in (0, 3, 4), output
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return config, run


def test_apply_with_yes_then_resume_and_restore_run(tmp_path: Path) -> None:
    config, run = planned(tmp_path)
    code, output = invoke(config, "apply", str(run), "--yes")
    assert code == 0, output
    assert "apply: 5 done" in output
    (folder,) = run.glob("apply-*")
    assert json.loads((folder / "apply-report.json").read_text())["exit_code"] == 0
    code, output = invoke(config, "resume", str(run))  # nothing left to do
    assert code == 0, output
    # each command gets a fresh demo tenant, which is already as before: nothing to put back
    code, output = invoke(config, "restore", str(run), "--yes")
    assert code == 0 and "4 already-done" in output, output


def test_apply_without_yes_and_without_a_terminal_refuses(tmp_path: Path) -> None:
    config, run = planned(tmp_path)
    code, output = invoke(config, "apply", str(run))
    assert code == 2 and "--yes" in output
    assert not list(run.glob("apply-*"))
