"""Everything refused before the first write: nothing is written, not even an apply folder."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from cleanup.apply import ApplyCancelled, ApplyRefused, ApplySettings, executor
from cleanup.apply import checks as checks_module
from cleanup.apply.session import apply_folders, lock_path
from cleanup.config import PlanSettings
from cleanup.errors import PlanError, SafetyLimitExceeded
from cleanup.lock import LockHeld, run_lock
from tests.apply.conftest import HR_LIMITS, Demo, server_state, writes


def assert_nothing_written(demo: Demo) -> None:
    assert writes(demo.sim) == []
    assert server_state(demo.sim.tenant) == demo.before
    assert apply_folders(demo.run_folder) == []


def test_a_tampered_plan_is_refused(demo: Demo) -> None:
    path = demo.run_folder / "plan.json"
    document = json.loads(path.read_text())
    document["actions"][-1]["logical_name"] = "hr_AbsenceDataverseSP"  # delete the survivor!
    path.write_text(json.dumps(document))
    with pytest.raises(PlanError, match="altered"):
        demo.apply()
    assert_nothing_written(demo)


def test_a_plan_with_a_forged_hash_is_refused_by_its_action_ids(demo: Demo) -> None:
    from cleanup.plan import compute_content_hash

    path = demo.run_folder / "plan.json"
    document = json.loads(path.read_text())
    document["actions"][-1]["reason"] = "forged"
    document["content_hash"] = compute_content_hash(document)
    path.write_text(json.dumps(document))
    with pytest.raises(PlanError, match="id that does not match"):
        demo.apply()
    assert_nothing_written(demo)


def test_a_plan_from_another_config_is_refused(demo: Demo) -> None:
    other = dataclasses.replace(demo.settings, plan=PlanSettings(propose_renames=True))
    demo.settings = other
    with pytest.raises(PlanError, match="another configuration"):
        demo.apply()
    assert_nothing_written(demo)


def test_a_plan_from_another_tool_version_is_refused(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks_module, "__version__", "9.9.9")
    with pytest.raises(PlanError, match="written by connref-cleanup 0.1.0, this is 9.9.9"):
        demo.apply()
    assert_nothing_written(demo)


def test_a_stale_plan_is_refused(demo: Demo) -> None:
    demo.limits = dataclasses.replace(HR_LIMITS, max_plan_age_hours=1e-9)
    with pytest.raises(PlanError, match="max_plan_age_hours"):
        demo.apply()
    assert_nothing_written(demo)


def test_an_action_type_without_a_handler_fails_closed(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = {k: v for k, v in executor.HANDLERS.items() if k != "delete-reference"}
    monkeypatch.setattr(executor, "HANDLERS", handlers)
    with pytest.raises(PlanError, match="does not know the action type.*delete-reference"):
        demo.apply()
    assert_nothing_written(demo)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (dict(max_actions_per_run=4), r"5 actions exceed apply.max_actions_per_run \(4\)"),
        (dict(max_actions_per_environment=3), r"5 actions exceed apply.max_actions_per_environ"),
        (dict(allow_delete=False), "deletes 2 reference.*allow_delete is false"),
        (dict(protected_patterns=("hr_shared*_9c3e7",)), "protected reference"),
    ],
)
def test_limits_are_checked_before_the_first_write(demo: Demo, limits: dict, message: str) -> None:
    demo.limits = dataclasses.replace(HR_LIMITS, **limits)
    with pytest.raises(SafetyLimitExceeded, match=message):
        demo.apply()
    assert_nothing_written(demo)


def test_every_limit_problem_is_listed_at_once(demo: Demo) -> None:
    demo.limits = ApplySettings(max_actions_per_run=1, allow_all_environments=True)
    with pytest.raises(SafetyLimitExceeded) as err:
        demo.apply()
    assert "max_actions_per_run" in str(err.value) and "allow_delete" in str(err.value)


def test_an_environment_not_allowed_is_refused(demo: Demo) -> None:
    demo.limits = dataclasses.replace(HR_LIMITS, environments=("Contoso Finance",))
    with pytest.raises(SafetyLimitExceeded, match="not in apply.environments"):
        demo.apply()
    assert_nothing_written(demo)


def test_the_default_settings_allow_no_environment(demo: Demo) -> None:
    demo.limits = ApplySettings(allow_delete=True)
    with pytest.raises(SafetyLimitExceeded, match="not in apply.environments"):
        demo.apply()
    assert_nothing_written(demo)


def test_an_environment_can_be_allowed_by_id(demo: Demo) -> None:
    demo.limits = dataclasses.replace(HR_LIMITS, environments=(demo.hr.id.upper(),))
    assert demo.apply().exit_code == 0


def test_a_declined_prompt_writes_nothing(demo: Demo) -> None:
    shown: list[str] = []

    def decline(text: str) -> bool:
        shown.append(text)
        return False

    with pytest.raises(ApplyCancelled, match="cancelled"):
        demo.apply(assume_yes=False, interactive=True, confirm=decline)
    assert_nothing_written(demo)
    lines = shown[0].splitlines()
    assert any(line.lstrip().startswith("Would rewire flow") for line in lines)
    assert any("Would delete connection reference" in line for line in lines)
    assert lines[-1] == "Apply these changes?"


def test_an_accepted_prompt_applies(demo: Demo) -> None:
    result = demo.apply(assume_yes=False, interactive=True, confirm=lambda text: True)
    assert result.exit_code == 0


def test_without_a_terminal_and_without_yes_apply_refuses(demo: Demo) -> None:
    with pytest.raises(ApplyRefused, match="--yes"):
        demo.apply(assume_yes=False, interactive=False)
    assert_nothing_written(demo)


def test_the_default_prompt_reads_the_terminal(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or "no")
    with pytest.raises(ApplyCancelled):
        demo.apply(assume_yes=False, interactive=True)
    assert "Would delete connection reference" in prompts[0]
    assert prompts[0].endswith("Apply these changes? [y/N] ")
    assert_nothing_written(demo)


def test_a_held_run_lock_refuses_the_apply(demo: Demo) -> None:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread: the lock is re-entrant only within one thread
        with run_lock(lock_path(demo.settings)):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        with pytest.raises(LockHeld):
            demo.apply()
    finally:
        release.set()
        holder.join()
    assert_nothing_written(demo)
    assert demo.apply().exit_code == 0  # free again


def test_lock_file_is_the_one_the_nightly_run_uses(demo: Demo) -> None:
    assert lock_path(demo.settings) == Path(demo.settings.run.runs_dir) / ".connref-cleanup.lock"
