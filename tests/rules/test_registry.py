"""The rule registry, config handling of rules, and the settings sections' TOML form."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pandas as pd
import pytest

from cleanup import schemas
from cleanup.config import _build
from cleanup.errors import ConfigError
from cleanup.rules import REGISTRY, Rule, register, rule_summaries, run_rules
from cleanup.rules.settings import (
    ExclusionSettings,
    HistorySettings,
    NamingSettings,
    RulesSettings,
)

EXPECTED = {
    "bad-name",
    "broken-connection",
    "cross-solution",
    "duplicate",
    "expired-exclusion",
    "personal-connection",
    "unbound",
    "unused",
    "usage-unknown",
}


def test_every_rule_is_registered_kebab_case_and_documented() -> None:
    assert set(REGISTRY) == EXPECTED
    for name, summary in rule_summaries().items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
        assert summary.endswith(".") and len(summary) < 100


def test_registering_a_name_twice_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register("unused")
        class Again(Rule):
            """Again."""

            def evaluate(self, ctx):  # pragma: no cover - never runs
                return pd.DataFrame()


def test_unknown_rule_name_in_config_suggests_the_right_one(build) -> None:
    settings = SimpleNamespace(rules=RulesSettings(disable=("unsued",)))
    with pytest.raises(ConfigError) as err:
        run_rules(build.snapshot(), settings)
    assert "Did you mean 'unused'?" in str(err.value)
    assert "Valid rules: bad-name," in str(err.value)


def test_disable_and_severity_override(build) -> None:
    snap = build.snapshot(references=[build.ref("r1", "new_a", "a")])
    settings = SimpleNamespace(
        rules=RulesSettings(disable=("bad-name",), severity={"unbound": "high"})
    )
    found = run_rules(snap, settings)
    assert "bad-name" not in set(found["rule"])
    assert set(build.of_rule(found, "unbound")["severity"]) == {"high"}


def test_rules_settings_validation() -> None:
    with pytest.raises(ConfigError, match="must be one of info, low, medium, high"):
        RulesSettings(severity={"unused": "critical"})
    with pytest.raises(ConfigError, match="both disabled and given a severity"):
        RulesSettings(disable=("unused",), severity={"unused": "low"})
    with pytest.raises(ConfigError, match="unknown placeholder"):
        NamingSettings(convention="{area} – {colour}")
    with pytest.raises(ConfigError, match="grace_days"):
        HistorySettings(grace_days=-1)


def test_sections_parse_with_the_config_loader() -> None:
    rules = _build(
        RulesSettings,
        {"disable": ["bad-name"], "severity": {"unused": "medium"}, "production_skus": ["Prod"]},
        prefix="rules.",
    )
    assert rules == RulesSettings(("bad-name",), {"unused": "medium"}, ("Prod",))
    naming = _build(NamingSettings, {"area_map": {"CoECore": "CoE"}}, prefix="naming.")
    assert naming.area_map == {"CoECore": "CoE"}
    exclusions = _build(
        ExclusionSettings,
        {"items": [{"environment": "Prod*", "reason": "vendor managed", "expires": "2026-01-31"}]},
        prefix="exclusions.",
    )
    assert exclusions.items[0].environment == "Prod*"
    with pytest.raises(ConfigError, match="Did you mean 'logical_name'"):
        _build(ExclusionSettings, {"items": [{"logicalname": "x", "reason": "r"}]}, "exclusions.")
    assert _build(HistorySettings, {"grace_days": 30}, prefix="history.").grace_days == 30


def test_output_conforms_and_is_sorted(build) -> None:
    snap = build.snapshot(
        environments=[build.env("env2"), build.env("env1")],
        references=[build.ref("r2", "new_b", env="env2"), build.ref("r1", "new_a")],
    )
    found = run_rules(snap)
    assert list(found.columns) == list(schemas.FINDINGS)
    assert {c: str(t) for c, t in found.dtypes.items()} == dict(schemas.FINDINGS)
    keys = list(zip(found["environment_id"], found["rule"], found["object_id"], strict=True))
    assert keys == sorted(keys)


def test_empty_snapshot_gives_empty_conforming_findings(build) -> None:
    found = run_rules(build.snapshot(environments=[]))
    assert found.empty
    assert list(found.columns) == list(schemas.FINDINGS)
