"""``[apply]`` settings, and the write methods added to ``DataverseClient``."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from cleanup.apply import ApplySettings
from cleanup.clients.platform import build_clients
from cleanup.config import _build
from cleanup.errors import ApiError, ConfigError, ReadOnlyViolation
from cleanup.simulator.demo import ENV_HR, demo_tenant
from cleanup.simulator.server import Simulator
from tests.conftest import settings_for

TOML = """
[apply]
allow_delete = true
max_actions_per_run = 50
max_actions_per_environment = 20
environments = ["Contoso HR", "e7857a56-9825-5acb-ae40-816562d82981"]
allow_all_environments = false
protected_patterns = ["*_core_*", "hr_Payroll*"]
max_plan_age_hours = 24
verify_timeout_seconds = 10
concurrency = 2
rescan_flows_before_delete = true
"""


def test_the_documented_toml_form_loads_with_the_config_loader() -> None:
    raw = tomllib.loads(TOML)["apply"]
    limits = _build(ApplySettings, raw, prefix="apply.")
    assert limits.environments == ("Contoso HR", "e7857a56-9825-5acb-ae40-816562d82981")
    assert limits.max_plan_age_hours == 24.0 and limits.allow_delete


def test_defaults_are_the_safe_side() -> None:
    limits = ApplySettings()
    assert not limits.allow_delete and not limits.allows_environment("any", "Any")


def test_environments_match_by_id_or_name_case_insensitively() -> None:
    limits = ApplySettings(environments=("Contoso HR", "ABC-123"))
    assert limits.allows_environment("x", "contoso hr")
    assert limits.allows_environment("abc-123", None)
    assert not limits.allows_environment("other", "Contoso Finance")
    assert ApplySettings(allow_all_environments=True).allows_environment("any")


def test_protected_patterns_are_case_insensitive_globs() -> None:
    limits = ApplySettings(protected_patterns=("hr_Payroll*",))
    assert limits.is_protected("HR_PAYROLLSQL") and not limits.is_protected("hr_other")


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_actions_per_run=0),
        dict(max_actions_per_environment=0),
        dict(concurrency=0),
        dict(concurrency=53),
        dict(max_plan_age_hours=-1),
        dict(protected_patterns=(" ",)),
    ],
)
def test_invalid_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError, match="apply"):
        ApplySettings(**bad)


@pytest.fixture
def hr(start_simulator: Callable[..., Simulator], secret_env: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    sim = start_simulator(demo_tenant())
    clients = build_clients(settings_for(sim, tmp_path))
    env = sim.tenant.environment(ENV_HR)
    return sim, clients, clients.dataverse(sim.instance_url(env), ENV_HR), env


def test_get_row_returns_the_row_and_etag_or_none(hr) -> None:  # type: ignore[no-untyped-def]
    _sim, _clients, dv, env = hr
    ref = env.references[0]
    row, etag = dv.get_row("connectionreferences", ref.id, "connectionreferencelogicalname")
    assert row is not None and row["connectionreferencelogicalname"] == ref.logical_name
    assert etag == f'W/"{ref.version}"'
    missing = "00000000-0000-4000-8000-000000000000"
    assert dv.get_row("connectionreferences", missing, "connectionreferenceid") == (None, None)
    with pytest.raises(ApiError, match="not a GUID"):
        dv.get_row("connectionreferences", "x) or (1", "connectionreferenceid")


def test_a_wrong_organisation_is_an_error_not_a_missing_row(hr) -> None:  # type: ignore[no-untyped-def]
    _sim, _clients, dv, env = hr
    wrong = dv.__class__(dv.http, dv.api.split("/api/")[0], ENV_HR)
    wrong.api = wrong.api.replace("/dv/", "/dv/nosuchorg-")  # same token, unknown organisation
    with pytest.raises(ApiError, match="404"):
        wrong.get_row("connectionreferences", env.references[0].id, "connectionreferenceid")


def test_writes_need_the_etag_and_apply_mode(hr) -> None:  # type: ignore[no-untyped-def]
    sim, clients, dv, env = hr
    ref = env.references[0]
    body = {"description": "x"}
    with pytest.raises(ReadOnlyViolation):
        dv.patch("connectionreferences", ref.id, body, f'W/"{ref.version}"')
    with clients.http.writes_enabled():
        for etag in ("", "*"):
            with pytest.raises(ApiError, match="ETag"):
                dv.patch("connectionreferences", ref.id, body, etag)
        stale = f'W/"{ref.version - 1}"'
        with pytest.raises(ApiError, match="412"):
            dv.patch("connectionreferences", ref.id, body, stale)
        row = dv.patch(
            "connectionreferences",
            ref.id,
            body,
            f'W/"{ref.version}"',
            select="description",
        )
        assert row is not None and row["description"] == "x"
        assert row["@odata.etag"] == f'W/"{ref.version}"'
    assert [r.status for r in sim.request_log if r.method == "PATCH"] == [412, 200]


def test_create_inside_a_solution_and_delete(hr) -> None:  # type: ignore[no-untyped-def]
    _sim, clients, dv, env = hr
    template = env.references[0]
    new_id = "11111111-2222-4333-8444-555555555555"
    body = {
        "connectionreferenceid": new_id,
        "connectionreferencelogicalname": "hr_NewOne",
        "connectionreferencedisplayname": "New",
        "connectorid": template.connector_id,
    }
    with clients.http.writes_enabled():
        row = dv.create("connectionreferences", body, "HRAbsence", select="connectionreferenceid")
        assert row is not None and row["connectionreferenceid"] == new_id
        created = next(r for r in env.references if r.id == new_id)
        assert created.solution_ids == [env.solutions[0].id]
        dv.delete("connectionreferences", new_id, f'W/"{created.version}"')
    assert all(r.id != new_id for r in env.references)
