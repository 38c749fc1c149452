"""Grouping findings into digests: one per owner across environments, fallbacks, test mode."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from cleanup import schemas
from cleanup.notify.digest import (
    ROUTE_ADMINS,
    ROUTE_DIRECT,
    ROUTE_FALLBACK,
    ROUTE_OPTED_OUT,
    Digest,
    PlannedStep,
    build_digests,
    slugify,
    unique_addresses,
)
from cleanup.snapshot.model import Snapshot
from tests.notify.conftest import ADMINS, DEV, FALLBACK, PROD, make_settings


def by_owner(digests: list[Digest]) -> dict[str, Digest]:
    return {d.owner.name: d for d in digests if d.owner is not None}


def test_one_digest_per_owner_across_environments(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    digests = build_digests(findings, snapshot, make_settings())
    alice = by_owner(digests)["Alice Adams"]
    assert alice.kind == "owner"
    assert alice.to == ("Alice.Adams@Contoso.com",)
    assert {(i.environment_id, i.logical_name) for i in alice.items} == {
        (PROD, "new_alice_sp"),
        (DEV, "new_alice_dv"),
    }
    assert alice.environment_count == 2
    assert [d.kind for d in digests].count("admin") == 1
    assert digests[-1].kind == "admin"


def test_problems_flows_and_severity_of_an_item(findings: pd.DataFrame, snapshot: Snapshot) -> None:
    alice = by_owner(build_digests(findings, snapshot, make_settings()))["Alice Adams"]
    item = next(i for i in alice.items if i.environment_id == PROD)
    assert [p.rule for p in item.problems] == ["personal-connection", "unused"]
    assert item.severity == "high"
    # Matched case-insensitively on the logical name; a flow using it under two keys is one flow.
    assert [(f.name, f.state) for f in item.flows] == [
        ("<b>Nightly</b> sync", "Off"),
        ("Invoice approval", "On"),
    ]


def test_owners_without_mailbox_go_to_the_fallback(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    owners = by_owner(build_digests(findings, snapshot, make_settings()))
    expected = {
        "Flow Bot": ("application user", "application user without a mailbox"),
        "Dave Disabled": ("user", "disabled user"),
        "Finance Team": ("team", "team without a mailbox"),
        "Former Employee": ("unknown", "owner not found in the environment"),
    }
    for name, (kind, reason) in expected.items():
        digest = owners[name]
        assert digest.kind == "fallback", name
        assert digest.to == (FALLBACK,), name
        assert (digest.owner.kind, digest.owner.reason) == (kind, reason)


def test_fallback_goes_to_the_admins_without_a_fallback_address(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    owners = by_owner(build_digests(findings, snapshot, make_settings(fallback_address="")))
    assert owners["Flow Bot"].to == ADMINS


def test_opted_out_owner_gets_nothing_and_admins_see_it(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    digests = build_digests(findings, snapshot, make_settings())
    assert "Oscar Optout" not in by_owner(digests)
    routes = {s.owner.name: s.route for s in digests[-1].sections}
    assert routes["Oscar Optout"] == ROUTE_OPTED_OUT
    assert routes["Alice Adams"] == ROUTE_DIRECT
    assert routes["Flow Bot"] == ROUTE_FALLBACK


def test_environment_findings_reach_only_the_admins(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    digests = build_digests(findings, snapshot, make_settings())
    owner_items = [i for d in digests[:-1] for i in d.items]
    assert all(i.object_type == "reference" for i in owner_items)
    admin = digests[-1]
    section = next(s for s in admin.sections if s.route == ROUTE_ADMINS)
    assert [i.object_type for i in section.items] == ["environment"]
    assert len(admin.items) == len(
        {(f["environment_id"], f["object_id"]) for _, f in findings.iterrows()}
    )


def test_test_mode_sends_everything_to_the_admins(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    normal = build_digests(findings, snapshot, make_settings())
    test = build_digests(findings, snapshot, make_settings(test_mode=True))
    assert [d.key for d in test] == [d.key for d in normal]
    for before, after in zip(normal, test, strict=True):
        assert after.test_mode
        assert after.to == ADMINS
        assert after.intended_to == before.to


def test_recipients_are_sorted_and_unique() -> None:
    assert unique_addresses(["b@x.com", "A@x.com", "a@X.com"]) == ("A@x.com", "b@x.com")


def test_digest_keys_and_file_names_are_stable_and_safe(
    findings: pd.DataFrame, snapshot: Snapshot
) -> None:
    first = build_digests(findings, snapshot, make_settings())
    again = build_digests(findings.iloc[::-1], snapshot, make_settings())
    assert [d.key for d in first] == [d.key for d in again]
    assert len({d.key for d in first}) == len(first)
    for digest in first:
        assert re.fullmatch(r"(owner|fallback|admin)-[a-z0-9-]+-[0-9a-f]{10}\.eml", digest.filename)
    evil = next(d for d in first if d.owner and d.owner.email == "evil@contoso.com")
    assert "\n" not in evil.owner.name and "\r" not in evil.owner.name


@pytest.mark.parametrize(
    ("text", "slug"),
    [("../../etc/passwd", "etc-passwd"), ("Zoë 🚀", "zoe"), ("🚀", "owner"), ("", "owner")],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_plan_steps_are_attached_to_their_items(findings: pd.DataFrame, snapshot: Snapshot) -> None:
    steps = {
        (DEV, "id-new_alice_dv"): [PlannedStep("Delete new_alice_dv", "not before 2025-01-15")],
        (PROD, "id-new_alice_sp"): ["Rebind to the service principal connection"],
    }
    alice = by_owner(build_digests(findings, snapshot, make_settings(), plan_steps=steps))[
        "Alice Adams"
    ]
    planned = {i.logical_name: i.planned for i in alice.items}
    assert planned["new_alice_dv"] == (PlannedStep("Delete new_alice_dv", "not before 2025-01-15"),)
    assert planned["new_alice_sp"] == (PlannedStep("Rebind to the service principal connection"),)


def test_owner_reachable_in_one_environment_is_reachable(snapshot: Snapshot) -> None:
    owners = snapshot.owners.copy()
    # Dave is disabled in Prod but active in Dev: his mailbox is tenant-wide.
    dev_dave = owners[owners["owner_id"] == "u-dave"].assign(
        environment_id=DEV, owner_id="u-dave-d", is_disabled=False, can_receive_mail=True
    )
    owners = pd.concat([owners, dev_dave], ignore_index=True)
    snap = Snapshot.from_tables({**snapshot.tables(), "owners": owners}, snapshot.metadata)
    rows = [
        {
            "rule": "unused",
            "severity": "low",
            "environment_id": env,
            "object_type": "reference",
            "object_id": f"r-{env}",
            "logical_name": f"ref_{env}",
            "owner_id": owner,
        }
        for env, owner in ((PROD, "u-dave"), (DEV, "u-dave-d"))
    ]
    findings = schemas.frame_from_rows(rows, schemas.FINDINGS)
    dave = by_owner(build_digests(findings, snap, make_settings()))["Dave Disabled"]
    assert dave.kind == "owner"
    assert dave.to == ("dave@contoso.com",)
    assert len(dave.items) == 2


def test_no_findings_still_sends_the_admin_summary(snapshot: Snapshot) -> None:
    digests = build_digests(schemas.empty_frame(schemas.FINDINGS), snapshot, make_settings())
    assert [d.kind for d in digests] == ["admin"]
    assert digests[0].items == ()
