"""Exclusions: set findings aside with a reason; expired ones stop applying and are reported."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cleanup.errors import ConfigError
from cleanup.rules import evaluate_rules
from cleanup.rules.settings import Exclusion, ExclusionSettings


def _snapshot(build):
    return build.snapshot(
        environments=[build.env("env1", display_name="Contoso (Prod)"), build.env("env2")],
        references=[
            build.ref("r1", "admin_CoECore", "x"),
            build.ref("r2", "new_other", "y"),
            build.ref("r3", "admin_CoECore", "z", env="env2"),
        ],
        solutions=[build.solution("s1", "CoECore")],
        solution_components=[build.member("s1", "r2")],
    )


def _run(build, *items: Exclusion):
    return evaluate_rules(_snapshot(build), SimpleNamespace(exclusions=ExclusionSettings(items)))


def _keys(frame):
    return set(zip(frame["rule"], frame["object_id"], strict=True))


def test_logical_name_glob_and_environment_display_name(build) -> None:
    result = _run(
        build,
        Exclusion(reason="CoE names its own", environment="contoso*", logical_name="ADMIN_*"),
    )
    assert "r1" not in set(result.findings["object_id"])
    assert {"r2", "r3"} <= set(result.findings["object_id"])
    assert set(result.excluded["object_id"]) == {"r1"}
    assert set(result.excluded["exclusion_reason"]) == {"CoE names its own"}
    assert "logical_name='ADMIN_*'" in result.excluded.at[0, "exclusion"]


def test_solution_membership_and_rule(build) -> None:
    result = _run(build, Exclusion(reason="shared kit", solution="coe*", rule="bad-name"))
    assert _keys(result.excluded) == {("bad-name", "r2")}
    assert ("unbound", "r2") in _keys(result.findings)


def test_environment_by_id_excludes_every_finding_there(build) -> None:
    result = _run(build, Exclusion(reason="sandbox of a vendor", environment="env2"))
    assert "env2" not in set(result.findings["environment_id"])
    assert set(result.excluded["environment_id"]) == {"env2"}


def test_expired_exclusion_does_not_apply_and_is_reported(build) -> None:
    lapsed = Exclusion(reason="until the migration", logical_name="admin_*", expires="2025-02-28")
    today = Exclusion(reason="last day", logical_name="new_*", expires="2025-03-01")
    result = _run(build, lapsed, today)
    assert {"r1", "r3"} <= set(result.findings["object_id"])
    assert set(result.excluded["object_id"]) == {"r2"}
    expired = build.of_rule(result.findings, "expired-exclusion")
    assert len(expired) == 1
    assert expired.at[0, "object_type"] == "exclusion"
    assert "2025-02-28" in expired.at[0, "detail"]
    assert json.loads(expired.at[0, "extra"])["reason"] == "until the migration"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": "", "logical_name": "x"}, "needs a 'reason'"),
        ({"reason": "r"}, "would hide every finding"),
        ({"reason": "r", "rule": "unused", "expires": "next week"}, "ISO date"),
    ],
)
def test_bad_exclusions_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Exclusion(**kwargs)
