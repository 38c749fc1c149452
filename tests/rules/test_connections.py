"""``personal-connection``, ``unbound`` and ``broken-connection``."""

from __future__ import annotations

import json
from types import SimpleNamespace

from cleanup.rules import run_rules
from cleanup.rules.settings import RulesSettings


def test_personal_connection_is_high_in_production_medium_elsewhere(build) -> None:
    snap = build.snapshot(
        environments=[build.env("prod", sku="Production"), build.env("dev")],
        connections=[
            build.conn("c1", identity="user", env="prod", created_by_name="Bo Person"),
            build.conn("c2", identity="user", env="dev"),
            build.conn("c3", identity="service-principal", env="dev"),
        ],
        references=[
            build.ref("r1", "new_a", connection_id="c1", env="prod"),
            build.ref("r2", "new_b", connection_id="c2", env="dev"),
            build.ref("r3", "new_c", connection_id="c3", env="dev"),
        ],
    )
    personal = build.of_rule(run_rules(snap), "personal-connection").set_index("object_id")
    assert personal["severity"].to_dict() == {"r1": "high", "r2": "medium"}
    assert "Bo Person" in personal.at["r1", "detail"]
    assert json.loads(personal.at["r1", "extra"])["production"] is True


def test_production_skus_are_configurable(build) -> None:
    snap = build.snapshot(
        environments=[build.env("env1", sku="Sandbox")],
        connections=[build.conn("c1", identity="user")],
        references=[build.ref("r1", "new_a", connection_id="c1")],
    )
    settings = SimpleNamespace(rules=RulesSettings(production_skus=("sandbox",)))
    personal = build.of_rule(run_rules(snap, settings), "personal-connection")
    assert list(personal["severity"]) == ["high"]


def test_unbound_used_by_flows_is_high_and_lists_them(build) -> None:
    snap = build.snapshot(
        references=[build.ref("r1", "new_used"), build.ref("r2", "new_idle")],
        flows=[build.flow("f1", name="Approve leave"), build.flow("f2", name="Nightly", state=0)],
        usages=[build.use("f1", "new_used"), build.use("f2", "NEW_USED")],
    )
    unbound = build.of_rule(run_rules(snap), "unbound").set_index("object_id")
    assert unbound["severity"].to_dict() == {"r1": "high", "r2": "low"}
    assert json.loads(unbound.at["r1", "extra"])["flows"] == ["Approve leave", "Nightly"]
    assert "cannot be turned on" in unbound.at["r1", "detail"]


def test_broken_connection_error_and_missing(build) -> None:
    snap = build.snapshot(
        connections=[
            build.conn("c1", status="Error", error="The token expired"),
            build.conn("c2"),
            build.conn("c4", status="Unknown"),
        ],
        references=[
            build.ref("r1", "new_err", connection_id="c1"),
            build.ref("r2", "new_ok", connection_id="C2"),
            build.ref("r3", "new_gone", connection_id="c3"),
            build.ref("r4", "new_unknown", connection_id="c4"),
        ],
        flows=[build.flow("f1")],
        usages=[build.use("f1", "new_gone")],
    )
    broken = build.of_rule(run_rules(snap), "broken-connection").set_index("object_id")
    assert set(broken.index) == {"r1", "r3"}
    assert "token expired" in broken.at["r1", "detail"]
    assert "does not exist" in broken.at["r3", "detail"]
    assert broken["severity"].to_dict() == {"r1": "medium", "r3": "high"}


def test_broken_is_not_claimed_where_connections_were_not_read(build) -> None:
    snap = build.snapshot(
        environments=[build.env(status="incomplete", status_reason="connections: HTTP 403")],
        references=[build.ref("r1", "new_a", connection_id="c1")],
    )
    assert build.ids(run_rules(snap), "broken-connection") == set()
