"""Config parsing: every mistake names the key and, where it can, suggests the right one."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleanup.config import Settings, load_settings, settings_from_dict
from cleanup.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_runs_the_demo_tenant() -> None:
    settings = load_settings(REPO / "config.toml")
    assert settings.simulator.enabled is True
    assert settings.simulator.tenant == "demo"
    assert settings.http.page_size == 5000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"htp": {}}, "Unknown setting 'htp'. Did you mean 'http'?"),
        ({"http": {"page_sze": 10}}, "Unknown setting 'http.page_sze'. Did you mean 'page_size'?"),
        ({"http": {"page_size": "big"}}, "'http.page_size' must be an integer, got str 'big'"),
        ({"http": {"page_size": 6000}}, "between 1 and 5000"),
        ({"http": {"concurrency_per_environment": 60}}, "at most 52"),
        ({"http": {"timeout_seconds": True}}, "'http.timeout_seconds' must be a number"),
        ({"tenant": {"auth": "secret"}}, "Did you mean 'client-secret'?"),
        ({"environments": {"include": "prod"}}, "'environments.include' must be a list"),
        ({"environments": {"include": ["prod", 3]}}, "'environments.include[1]' must be a string"),
        ({"endpoints": {"bap": "http://insecure"}}, "'endpoints.bap' must be an https:// URL"),
        ({"tenant": 3}, "[tenant] must be a table"),
        ({"rules": {"disable": ["unsued"]}}, "unknown rule 'unsued'. Did you mean 'unused'?"),
    ],
)
def test_bad_config_is_named(raw: dict, expected: str) -> None:
    raw = {"simulator": {"enabled": True}, **raw}
    with pytest.raises(ConfigError) as err:
        settings_from_dict(raw)
    assert expected in str(err.value)


def test_real_tenant_needs_ids() -> None:
    with pytest.raises(ConfigError, match="tenant.tenant_id' and 'tenant.client_id' are required"):
        settings_from_dict({})


def test_settings_are_immutable_and_fingerprinted() -> None:
    one = settings_from_dict({"simulator": {"enabled": True}})
    two = settings_from_dict({"simulator": {"enabled": True}, "http": {"page_size": 100}})
    with pytest.raises(AttributeError):
        one.http.page_size = 1  # type: ignore[misc]
    assert one.fingerprint() == Settings(simulator=one.simulator).fingerprint()
    assert one.fingerprint() != two.fingerprint()


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[http\npage_size = 3", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
