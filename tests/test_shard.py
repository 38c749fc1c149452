"""Sharding: a stable split of environments, and shard runs merged into one run folder."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cleanup.clients.platform import build_clients
from cleanup.config import EnvironmentSelection
from cleanup.errors import ConfigError, SnapshotError
from cleanup.pipeline import analyse
from cleanup.shard import Shard, latest_shard_runs, merge_runs, parse_shard, shard_of
from cleanup.simulator.generator import generate_tenant
from cleanup.snapshot.collect import select_environments, take_snapshot
from cleanup.snapshot.model import Snapshot
from cleanup.snapshot.store import load_snapshot, new_run_folder, save_snapshot
from tests.conftest import settings_for

REPO = Path(__file__).resolve().parents[1]
VOLATILE = {"requests", "seconds"}


def env_row(env_id: str) -> dict:
    return {
        "environment_id": env_id,
        "display_name": env_id,
        "sku": "Sandbox",
        "is_default": False,
        "has_dataverse": True,
        "instance_url": "https://x/",
    }


def test_shard_of_is_pinned_so_workers_and_versions_agree():
    # Changing the hash would move environments between shards of a running fleet.
    assert shard_of("Default-72f988bf-86f1-41af-91ab-2d7cd011db47", 4) == shard_of(
        "default-72F988BF-86F1-41AF-91AB-2D7CD011DB47", 4
    )
    pinned = [shard_of(f"00000000-0000-0000-0000-00000000000{i}", 3) for i in range(6)]
    assert pinned == [2, 0, 0, 2, 2, 1]
    assert [shard_of(x, 5) for x in ("a", "b", "c", "d")] == [0, 1, 0, 4]


def test_split_is_a_partition_independent_of_order_and_balanced():
    rng = random.Random(4)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2000)]
    count = 4
    parts = [{i for i in ids if Shard(k, count).owns(i)} for k in range(count)]
    assert set().union(*parts) == set(ids)
    assert sum(len(p) for p in parts) == len(ids)
    assert all(350 < len(p) < 650 for p in parts)
    shuffled = ids[:]
    rng.shuffle(shuffled)
    assert [{i for i in shuffled if Shard(k, count).owns(i)} for k in range(count)] == parts


@pytest.mark.parametrize("text", ["0/1", "3/4", " 2 / 5 "])
def test_parse_shard(text):
    shard = parse_shard(text)
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["", "4/4", "1/0", "-1/3", "a/b", "1", "1/2/3"])
def test_parse_shard_refuses_nonsense(text):
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(text)


def test_selection_skips_other_shards_with_the_reason():
    rows = [env_row(f"env-{i}") for i in range(20)]
    shard = Shard(1, 3)
    selected = select_environments(rows, EnvironmentSelection(), shard=shard)
    for row in selected:
        owner = shard_of(row["environment_id"], 3)
        if owner == 1:
            assert row["status"] == "pending"
        else:
            assert row["status"] == "skipped"
            assert row["status_reason"] == f"in shard {owner}/3"


def comparable(snapshot: Snapshot) -> dict[str, pd.DataFrame]:
    out = {}
    for name, frame in snapshot.tables().items():
        cols = [c for c in frame.columns if c not in VOLATILE]
        out[name] = frame[cols].astype(str).sort_values(cols).reset_index(drop=True)
    return out


def shard_runs(sim, tmp_path: Path, count: int, indexes=None) -> list[Path]:
    folders = []
    for index in range(count) if indexes is None else indexes:
        runs = tmp_path / "shards" / str(index)
        clients = build_clients(settings_for(sim, runs))
        folder = new_run_folder(runs)
        snapshot = take_snapshot(clients, run_id=folder.name, shard=Shard(index, count))
        save_snapshot(snapshot, folder)
        folders.append(folder)
    return folders


@pytest.fixture
def tenant():
    return generate_tenant(
        seed=31, environments=7, flows_per_environment=10, no_dataverse_environments=1
    )


def test_merged_shards_equal_one_unsharded_run(start_simulator, secret_env, tmp_path, tenant):
    sim = start_simulator(tenant)
    whole = take_snapshot(build_clients(settings_for(sim, tmp_path / "one")), run_id="one")
    folders = shard_runs(sim, tmp_path, 3)
    merged_folder = tmp_path / "runs" / "merged"
    merge_runs(folders, merged_folder)
    merged = load_snapshot(merged_folder)
    a, b = comparable(whole), comparable(merged)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    meta = merged.metadata
    assert meta["complete"] is True
    assert meta["run_id"] == "merged"
    assert [m["shard"]["index"] for m in meta["merged_from"]] == [0, 1, 2]
    shard_meta = [load_snapshot(f).metadata for f in folders]
    assert meta["requests"]["total"] == sum(m["requests"]["total"] for m in shard_meta)
    assert set(meta["environments"]) == {e.id for e in tenant.environments}
    # Each environment was read by exactly one shard.
    read = [
        env_id
        for m in shard_meta
        for env_id, info in m["environments"].items()
        if info["status"] != "skipped"
    ]
    assert sorted(read) == sorted(e.id for e in tenant.environments if e.has_dataverse)


def test_missing_shard_leaves_its_environments_unknown(
    start_simulator, secret_env, tmp_path, tenant
):
    sim = start_simulator(tenant)
    folders = shard_runs(sim, tmp_path, 3, indexes=[0, 2])
    merge_runs(folders, tmp_path / "merged")
    merged = load_snapshot(tmp_path / "merged")
    assert merged.metadata["complete"] is False
    envs = merged.environments.set_index("environment_id")
    lost = [e.id for e in tenant.environments if e.has_dataverse and shard_of(e.id, 3) == 1]
    assert lost, "the fixture must put an environment in shard 1"
    for env_id in lost:
        assert envs.at[env_id, "status"] == "incomplete"
        assert "shard (1/3) was not merged" in envs.at[env_id, "status_reason"]
    assert not merged.flows["environment_id"].isin(lost).any()


def test_the_same_shard_twice_is_refused(start_simulator, secret_env, tmp_path, tenant):
    sim = start_simulator(tenant)
    folders = shard_runs(sim, tmp_path, 2, indexes=[0])
    again = shard_runs(sim, tmp_path / "again", 2, indexes=[0])
    with pytest.raises(SnapshotError, match="0/2 appears twice"):
        merge_runs(folders + again, tmp_path / "merged")


def test_runs_of_different_versions_are_refused(start_simulator, secret_env, tmp_path, tenant):
    sim = start_simulator(tenant)
    folders = shard_runs(sim, tmp_path, 2)
    meta_path = folders[1] / "snapshot" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["tool_version"] = "0.0.1"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SnapshotError, match="tool_version"):
        merge_runs(folders, tmp_path / "merged")


def test_rules_and_plan_run_on_the_merged_folder(start_simulator, secret_env, tmp_path, tenant):
    sim = start_simulator(tenant)
    folders = shard_runs(sim, tmp_path, 2)
    runs = tmp_path / "runs"
    merged_folder = new_run_folder(runs)
    merge_runs(folders, merged_folder)
    settings = settings_for(sim, runs)
    analysis = analyse(load_snapshot(merged_folder), settings, merged_folder)
    assert not analysis.findings.empty
    assert set(analysis.findings["environment_id"].dropna()) <= {e.id for e in tenant.environments}


def test_nothing_to_merge():
    with pytest.raises(SnapshotError, match="Nothing to merge"):
        merge_runs([], "out")


def test_kubernetes_example_parses_and_wires_the_index():
    text = (REPO / "deploy" / "kubernetes" / "indexed-job.yaml").read_text(encoding="utf-8")
    assert "--shard" in text and "JOB_COMPLETION_INDEX" in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    jobs = [d for d in docs if d.get("kind") == "Job"]
    indexed = [j for j in jobs if j["spec"].get("completionMode") == "Indexed"]
    assert len(indexed) == 1
    spec = indexed[0]["spec"]
    assert spec["completions"] == spec["parallelism"]
    container = spec["template"]["spec"]["containers"][0]
    command = " ".join(container.get("command", []) + container.get("args", []))
    assert f"$(JOB_COMPLETION_INDEX)/{spec['completions']}" in command
    merge = [j for j in jobs if j is not indexed[0]]
    assert merge and "merge" in " ".join(
        merge[0]["spec"]["template"]["spec"]["containers"][0].get("args", [])
        + merge[0]["spec"]["template"]["spec"]["containers"][0].get("command", [])
    )


def fake_run(runs: Path, name: str, index: int, count: int, started: str) -> Path:
    folder = runs / name / "snapshot"
    folder.mkdir(parents=True)
    meta = {"shard": {"index": index, "count": count}, "started_at": started}
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder.parent


def test_latest_shard_runs_takes_tonights_folder_of_each_shard(tmp_path):
    runs = tmp_path / "shards"
    fake_run(runs, "20250101T010000Z", 0, 3, "2025-01-01T01:00:00+00:00")
    fake_run(runs, "20250101T010001Z", 1, 3, "2025-01-01T01:00:01+00:00")
    fake_run(runs, "20250101T010002Z", 2, 3, "2025-01-01T01:00:02+00:00")
    tonight = [
        fake_run(runs, "20250102T010000Z", 0, 3, "2025-01-02T01:00:00+00:00"),
        fake_run(runs, "20250102T010003Z", 2, 3, "2025-01-02T01:00:03+00:00"),
    ]
    fake_run(runs, "20250102T020000Z", 0, 4, "2025-01-02T02:00:00+00:00")  # another split
    # Shard 1 failed tonight: yesterday's folder is not a stand-in for it.
    assert latest_shard_runs(runs, 3) == tonight
    assert latest_shard_runs(tmp_path / "nowhere", 3) == []
