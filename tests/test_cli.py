"""The command line, tested as a user runs it (click's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cleanup.cli import cli

REPO = Path(__file__).resolve().parents[1]


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("words", all_commands(cli), ids=lambda w: " ".join(w) or "root")
def test_every_command_has_help(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 10, f"{' '.join(words)} has no real description"


def test_demo_prints_the_run_folder_last(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    folder = Path(last)
    assert folder.parent == tmp_path
    for name in ("report.html", "plan.json", "findings.csv", "findings.json", "run.json"):
        assert (folder / name).is_file(), name
    summary = json.loads((folder / "run.json").read_text())
    assert summary["exit_code"] == 3  # the demo has an environment the app cannot read
    assert summary["planned_actions"] > 0


def test_run_with_shipped_config_exits_partial_and_plan_show_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('runs_dir = "runs"', f'runs_dir = "{tmp_path / "runs"}"'))
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "run"])
    assert result.exit_code == 3, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    shown = runner.invoke(cli, ["plan", "show", str(folder)])
    assert shown.exit_code == 0, shown.output
    assert "Would rewire flow" in shown.output
    assert "Would delete connection reference" in shown.output
    as_json = runner.invoke(cli, ["plan", "show", "--format", "json", str(folder / "plan.json")])
    assert json.loads(as_json.output)["format"] == "connref-cleanup-plan"
    rerendered = runner.invoke(cli, ["--config", str(config), "report", str(folder)])
    assert rerendered.exit_code == 0, rerendered.output
    assert (folder / "report.html").stat().st_size > 10_000


def test_bad_config_exits_2_with_the_key_named(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[http]\npage_sze = 10\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 2
    assert "Unknown setting 'http.page_sze'. Did you mean 'page_size'?" in result.output


def test_config_check_describes_the_target() -> None:
    result = CliRunner().invoke(cli, ["--config", str(REPO / "config.toml"), "config", "check"])
    assert result.exit_code == 0, result.output
    assert "built-in simulator" in result.output


def test_tampered_plan_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = Path(runner.invoke(cli, ["demo", "--runs-dir", str(tmp_path)]).stdout.split()[-1])
    plan = folder / "plan.json"
    plan.write_text(plan.read_text().replace("rewire", "rewirE", 1), encoding="utf-8")
    result = runner.invoke(cli, ["plan", "show", str(plan)])
    assert result.exit_code == 1
    assert "Error:" in result.output


def test_lint_solution_gates_on_severity(tmp_path: Path) -> None:
    solution = tmp_path / "sol"
    (solution / "Other").mkdir(parents=True)
    (solution / "Workflows").mkdir()
    (solution / "Other" / "Customizations.xml").write_text(
        "<ImportExportXml><connectionreferences>"
        '<connectionreference connectionreferencelogicalname="hr_Unused">'
        "<connectionreferencedisplayname>HR – Dataverse – Service Principal"
        "</connectionreferencedisplayname>"
        "<connectorid>/providers/Microsoft.PowerApps/apis/shared_commondataserviceforapps"
        "</connectorid></connectionreference></connectionreferences></ImportExportXml>",
        encoding="utf-8",
    )
    runner = CliRunner()
    found = runner.invoke(cli, ["lint-solution", str(solution), "--format", "json"])
    assert found.exit_code == 1, found.output
    checks = {f["check"] for f in json.loads(found.stdout)["findings"]}
    assert "unused" in checks
    gated = runner.invoke(cli, ["lint-solution", str(solution), "--fail-on", "high"])
    assert gated.exit_code == 0, gated.output
    missing = runner.invoke(cli, ["lint-solution", str(tmp_path)])
    assert missing.exit_code == 2


def config_with_runs(tmp_path: Path, name: str, runs: Path) -> Path:
    """The shipped config (demo tenant, mail to the simulator) writing runs under ``runs``."""
    config = tmp_path / name
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('runs_dir = "runs"', f'runs_dir = "{runs}"'))
    return config


def finding_keys(folder: Path) -> set[tuple[str, str, str]]:
    rows = json.loads((folder / "findings.json").read_text())["findings"]
    return {(f["rule"], f["environment_id"], f["object_id"]) for f in rows}


def test_shard_runs_merge_into_the_findings_of_one_run(tmp_path: Path) -> None:
    shard_config = config_with_runs(tmp_path, "shard.toml", tmp_path / "shards")
    merge_config = config_with_runs(tmp_path, "merge.toml", tmp_path / "runs")
    runner = CliRunner()
    shard_folders = []
    for index in (0, 1):
        shard = runner.invoke(cli, ["--config", str(shard_config), "run", "--shard", f"{index}/2"])
        assert shard.exit_code in (0, 3), shard.output
        folder = Path(shard.stdout.strip().splitlines()[-1])
        assert not (folder / "report.html").exists() and not (folder / "emails").exists()
        shard_folders.append(folder)
    merged = runner.invoke(
        cli,
        [
            "--config",
            str(merge_config),
            "merge",
            "--from",
            str(tmp_path / "shards"),
            "--shards",
            "2",
        ],
    )
    assert merged.exit_code == 3, merged.output  # the demo's unreadable environment
    merged_folder = Path(merged.stdout.strip().splitlines()[-1])
    meta = json.loads((merged_folder / "snapshot" / "metadata.json").read_text())
    assert sorted(m["run_id"] for m in meta["merged_from"]) == sorted(f.name for f in shard_folders)
    assert list((merged_folder / "emails").glob("*.eml"))

    single = runner.invoke(
        cli, ["--config", str(config_with_runs(tmp_path, "one.toml", tmp_path / "one")), "run"]
    )
    single_folder = Path(single.stdout.strip().splitlines()[-1])
    assert finding_keys(merged_folder) == finding_keys(single_folder)
    assert len(finding_keys(single_folder)) > 10


def test_merge_without_a_shard_leaves_its_environments_unknown(tmp_path: Path) -> None:
    shard_config = config_with_runs(tmp_path, "shard.toml", tmp_path / "shards")
    runner = CliRunner()
    shard = runner.invoke(cli, ["--config", str(shard_config), "run", "--shard", "0/2"])
    folder = shard.stdout.strip().splitlines()[-1]
    merge_config = config_with_runs(tmp_path, "merge.toml", tmp_path / "runs")
    merged = runner.invoke(cli, ["--config", str(merge_config), "merge", "--no-mail", folder])
    assert merged.exit_code == 3, merged.output
    merged_folder = Path(merged.stdout.strip().splitlines()[-1])
    meta = json.loads((merged_folder / "snapshot" / "metadata.json").read_text())
    missing = [
        e for e in meta["environments"].values() if "was not merged" in str(e.get("reason", e))
    ]
    assert missing, meta["environments"]
    assert not (merged_folder / "emails").exists()


@pytest.mark.parametrize(
    "args",
    [["merge"], ["merge", "--from", "x"], ["run", "--shard", "2/2"], ["run", "--shard", "one"]],
)
def test_bad_shard_and_merge_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    config = config_with_runs(tmp_path, "c.toml", tmp_path / "runs")
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 2, result.output
    assert "shard" in result.output.lower()


def test_second_run_is_incremental_and_full_reads_every_flow(tmp_path: Path) -> None:
    config = config_with_runs(tmp_path, "c.toml", tmp_path / "runs")
    runner = CliRunner()

    def modes(*args: str) -> set[str | None]:
        result = runner.invoke(cli, ["--config", str(config), "snapshot", *args])
        folder = Path(result.stdout.strip().splitlines()[-1])
        meta = json.loads((folder / "snapshot" / "metadata.json").read_text())
        return {e.get("mode") for e in meta["environments"].values() if e["status"] == "complete"}

    assert modes() == {"full"}
    assert modes() == {"incremental"}
    assert modes("--full") == {"full"}
