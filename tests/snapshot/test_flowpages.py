"""Flow pages parsed in worker processes give the very rows the reading thread would."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import threading
from pathlib import Path

import pytest

from cleanup.clients.platform import build_clients
from cleanup.config import Settings
from cleanup.errors import ApiError, ConfigError
from cleanup.simulator.generator import generate_tenant
from cleanup.snapshot import flowpages
from cleanup.snapshot.clientdata import decode_flow_file
from cleanup.snapshot.collect import take_snapshot
from cleanup.snapshot.flowpages import FlowPageParser, parse_flow_page
from cleanup.snapshot.settings import AUTO_PARSE_PROCESSES, SnapshotSettings
from cleanup.snapshot.tables import BadAnswer, flow_rows
from tests.conftest import settings_for
from tests.snapshot.test_incremental import assert_same_tables, mutate, night


def corpus_page(corpus_dir: Path, count: int, seed: int, link: str | None = None) -> bytes:
    """A ``workflows`` page of real corpus clientdata (odd encodings and shapes included)."""
    files = sorted((corpus_dir / "flows").glob("*.json"))
    rows = []
    for n, path in enumerate(random.Random(seed).sample(files, count)):
        try:
            text = decode_flow_file(path.read_bytes())
        except ValueError:
            text = path.read_bytes().decode("latin-1")  # undecodable files still make a row
        rows.append({"workflowid": f"flow-{seed}-{n}", "name": path.stem, "clientdata": text})
    page = {"value": rows, **({"@odata.nextLink": link} if link else {})}
    return json.dumps(page).encode()


def test_page_rows_are_the_rows_of_each_flow(corpus_dir):
    body = corpus_page(corpus_dir, 40, seed=1, link="https://org/next")
    page = parse_flow_page("env", body)
    expected = [flow_rows("env", row) for row in json.loads(body)["value"]]
    assert page.flows == [flow for flow, _ in expected]
    assert page.usages == [use for _, uses in expected for use in uses]
    assert page.next_link == "https://org/next"
    assert page.usages, "the sample must exercise usages"


def test_workers_give_the_same_pages_as_the_thread(corpus_dir):
    bodies = [corpus_page(corpus_dir, 60, seed=s) for s in range(4)]
    with FlowPageParser(2, min_bytes=0) as parser:
        pages = [parser("env", body) for body in bodies]
        assert parser.counts.pages_in_workers == 4 and parser.counts.pages_in_thread == 0
    assert pages == [parse_flow_page("env", body) for body in bodies]


def test_small_pages_stay_in_the_thread(corpus_dir):
    body = corpus_page(corpus_dir, 3, seed=2)
    with FlowPageParser(2, min_bytes=len(body) + 1) as parser:
        assert parser("env", body) == parse_flow_page("env", body)
        assert parser.counts.pages_in_thread == 1
        assert parser._workers == [], "no process is started for small pages"
    assert parser.counts.processes == 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_workers_do_not_get_the_secrets_variables(corpus_dir, monkeypatch):
    canary = "canary-7c1f-not-for-workers"
    monkeypatch.setenv("CONNREF_CLIENT_SECRET", canary)
    monkeypatch.setenv("CONNREF_HARMLESS", "kept")
    withheld = Settings().secret_variables()
    body = corpus_page(corpus_dir, 5, seed=12)
    with FlowPageParser(2, min_bytes=0, withheld_variables=withheld) as parser:
        assert parser("env", body) == parse_flow_page("env", body)
        environments = [
            Path(f"/proc/{worker.process.pid}/environ").read_bytes() for worker in parser._workers
        ]
    assert parser.counts.processes == len(environments) == 2
    for environment in environments:
        assert canary.encode() not in environment
        assert b"CONNREF_HARMLESS=kept\0" in environment, "the rest of the environment is kept"


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b'{"value": [{"name": "no id"}]}', BadAnswer, "has no 'workflowid'"),
        (b'{"valu": []}', ValueError, "without a 'value' list"),
        (b"<html>busy</html>", ValueError, "not valid JSON"),
        (b'{"value": [], "@odata.nextLink": 5}', ValueError, "not a string"),
    ],
)
def test_a_bad_page_raises_here_and_the_worker_goes_on(body, error, message):
    good = json.dumps({"value": [{"workflowid": "f1", "clientdata": "{}"}]}).encode()
    with FlowPageParser(1, min_bytes=0) as parser:
        with pytest.raises(error, match=message) as raised:
            parser("env", body)
        assert type(raised.value) is error
        assert parser("env", good) == parse_flow_page("env", good)
        assert parser.counts.worker_failures == 0 and parser.counts.pages_in_workers == 1


def warm_worker(parser: FlowPageParser, body: bytes) -> flowpages._Worker:
    """Have ``parser`` start its (only) worker by parsing ``body``; return that worker."""
    assert parser("env", body) == parse_flow_page("env", body)
    return parser._workers[0]


def kill(worker: flowpages._Worker) -> None:
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait()


def test_a_killed_worker_costs_time_not_rows_and_is_replaced(corpus_dir):
    body = corpus_page(corpus_dir, 20, seed=3)
    with FlowPageParser(1, min_bytes=0) as parser:
        first = warm_worker(parser, body)
        kill(first)
        assert parser("env", body) == parse_flow_page("env", body)  # in the thread
        replacement = parser._workers[0]
        assert replacement is not first
        assert parser("env", body) == parse_flow_page("env", body)  # in the new worker
        assert parser.counts.pages_in_workers == 2 and parser.counts.pages_in_thread == 1
        kill(replacement)  # replaced once per worker: from now on, pages stay in the thread
        assert parser("env", body) == parse_flow_page("env", body)
        assert parser("env", body) == parse_flow_page("env", body)
        assert parser._workers == []
    assert parser.counts.worker_failures == 2 and parser.counts.processes == 2
    assert parser.counts.pages_in_thread == 3 and parser.counts.pages_in_workers == 2


def test_a_stuck_worker_is_killed_after_the_deadline(corpus_dir):
    body = corpus_page(corpus_dir, 5, seed=8)
    with FlowPageParser(1, min_bytes=0) as parser:
        worker = warm_worker(parser, body)  # started under the default deadline
        parser.deadline_seconds = 1.0
        os.kill(worker.process.pid, signal.SIGSTOP)  # alive, and silent for good
        assert parser("env", body) == parse_flow_page("env", body)
        assert parser.counts.worker_failures == 1 and parser.counts.pages_in_thread == 1
    assert worker.process.returncode == -signal.SIGKILL


def test_threads_waiting_for_the_last_worker_parse_themselves_when_it_is_lost(corpus_dir):
    bodies = [corpus_page(corpus_dir, 5, seed=s) for s in range(8)]
    with FlowPageParser(1, min_bytes=0) as parser:
        kill(warm_worker(parser, bodies[0]))
        parser("env", bodies[0])  # lost: replaced once
        worker = warm_worker(parser, bodies[0])
        parser.deadline_seconds = 1.0
        os.kill(worker.process.pid, signal.SIGSTOP)  # the last worker
        results: dict[int, object] = {}
        threads = [
            threading.Thread(target=lambda i=i: results.update({i: parser("env", bodies[i])}))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "a thread waits for ever"
    assert results == {i: parse_flow_page("env", body) for i, body in enumerate(bodies)}
    assert parser.counts.worker_failures == 2 and parser.counts.pages_in_thread == 1 + 8


def test_what_a_worker_prints_cannot_corrupt_its_answers(corpus_dir, tmp_path, monkeypatch):
    # A site hook that writes to stdout as every Python starts, as some distributions' do.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys, os\nos.write(1, b'Hello world from a site hook\\n')\nprint('and print')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    body = corpus_page(corpus_dir, 5, seed=9)
    with FlowPageParser(1, min_bytes=0) as parser:
        assert parser("env", body) == parse_flow_page("env", body)
    assert parser.counts.pages_in_workers == 1 and parser.counts.worker_failures == 0


def test_ctrl_c_is_left_to_the_job(corpus_dir):
    body = corpus_page(corpus_dir, 5, seed=7)
    with FlowPageParser(1, min_bytes=0) as parser:
        worker = warm_worker(parser, body)
        os.kill(worker.process.pid, signal.SIGINT)  # what Ctrl-C sends the process group
        assert parser("env", body) == parse_flow_page("env", body)
        assert parser.counts.worker_failures == 0 and parser.counts.pages_in_workers == 2
    assert worker.process.returncode == 0, "the worker left when its input closed"


def test_threads_share_the_workers_and_close_stops_them(corpus_dir):
    bodies = [corpus_page(corpus_dir, 10, seed=s) for s in range(24)]
    expected = [parse_flow_page("env", body) for body in bodies]
    results: dict[int, object] = {}
    parser = FlowPageParser(2, min_bytes=0)

    def read(indexes: range) -> None:
        for i in indexes:
            results[i] = parser("env", bodies[i])

    threads = [threading.Thread(target=read, args=(range(n, 24, 6),)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    workers = list(parser._workers)
    parser.close()
    assert [results[i] for i in range(24)] == expected
    assert parser.counts.pages_in_workers == 24
    assert len(workers) == 2 and all(w.process.returncode == 0 for w in workers)
    assert parser("env", bodies[0]) == expected[0]  # after close: parsed in the thread
    assert parser.counts.pages_in_thread == 1


def test_snapshot_with_workers_equals_the_one_without(start_simulator, secret_env, tmp_path):
    tenant = generate_tenant(seed=31, environments=4, flows_per_environment=20)
    sim = start_simulator(tenant)
    runs = tmp_path / "runs"
    first, _ = night(sim, runs, flow_pages=FlowPageParser(0))
    assert first.metadata["flow_pages"]["pages_in_workers"] == 0
    mutate(tenant, random.Random(5))
    with FlowPageParser(1, min_bytes=0) as parser:
        incremental, _ = night(sim, runs, flow_pages=parser)
        full, _ = night(sim, runs, flow_pages=parser, full=True)
    in_thread, _ = night(sim, runs, flow_pages=FlowPageParser(0), full=True)
    assert_same_tables(full, in_thread)
    assert_same_tables(incremental, in_thread)
    # Each night's metadata counts its own pages: every flow page of the full night, and those
    # of the incremental night but its id listings (which carry no clientdata).
    pages, requests = full.metadata["flow_pages"], full.metadata["requests"]["by_table"]
    assert pages == {
        "processes": 1,
        "pages_in_workers": requests["workflows"],
        "pages_in_thread": 0,
        "worker_failures": 0,
    }
    pages, requests = incremental.metadata["flow_pages"], incremental.metadata["requests"]
    assert 1 <= pages["pages_in_workers"] < requests["by_table"]["workflows"]
    assert pages["pages_in_thread"] == 0


def test_an_unreadable_page_in_a_worker_marks_the_environment_incomplete(
    start_simulator, secret_env, tmp_path
):
    tenant = generate_tenant(seed=32, environments=2, flows_per_environment=5)
    broken = tenant.environments[0]
    next(f for f in broken.flows if f.category == 5 and f.type == 1).id = ""
    sim = start_simulator(tenant)
    clients = build_clients(settings_for(sim, tmp_path))
    with FlowPageParser(1, min_bytes=0) as parser:
        snapshot = take_snapshot(clients, run_id="t", flow_pages=parser)
    rows = snapshot.environments.set_index("environment_id")
    assert rows.loc[broken.id, "status"] == "incomplete"
    assert "has no 'workflowid'" in rows.loc[broken.id, "status_reason"]
    assert set(rows["status"]) == {"incomplete", "complete"}


def test_parse_processes_setting():
    assert SnapshotSettings(parse_processes=3).processes() == 3
    assert SnapshotSettings(parse_processes=0).processes() == 0
    assert 0 <= SnapshotSettings().processes() <= AUTO_PARSE_PROCESSES
    for wrong in (-2, 65):
        with pytest.raises(ConfigError, match="parse_processes"):
            SnapshotSettings(parse_processes=wrong)


def test_api_errors_survive_the_trip_from_a_worker():
    error = ApiError("Busy", status=503, code="X", method="GET", url="https://u", request_id="r")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ApiError and str(copy) == str(error)
    assert (copy.status, copy.code, copy.url, copy.request_id) == (503, "X", "https://u", "r")


def test_a_start_that_fails_half_way_leaves_no_worker_running(corpus_dir, monkeypatch):
    real_init, started = flowpages._Worker.__init__, []

    def second_fails(self, environment):
        if started:
            raise OSError("Resource temporarily unavailable")
        real_init(self, environment)
        started.append(self)

    monkeypatch.setattr(flowpages._Worker, "__init__", second_fails)
    body = corpus_page(corpus_dir, 5, seed=10)
    with FlowPageParser(2, min_bytes=0) as parser:
        assert parser("env", body) == parse_flow_page("env", body)
        assert parser.counts.pages_in_thread == 1 and parser._workers == []
        assert started[0].process.returncode == 0, "the worker that did start was stopped"
    assert parser.counts.processes == 0, "the metadata counts workers that ran, not wanted"


def test_no_processes_to_start_means_parsing_in_the_thread(corpus_dir, monkeypatch):
    def refuse(self, environment):
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(flowpages._Worker, "__init__", refuse)
    body = corpus_page(corpus_dir, 5, seed=4)
    with FlowPageParser(2, min_bytes=0) as parser:
        assert parser("env", body) == parse_flow_page("env", body)
        assert parser("env", body) == parse_flow_page("env", body)
    assert parser.counts.pages_in_thread == 2 and parser.counts.pages_in_workers == 0


def test_workers_import_this_package_whatever_the_working_folder_holds(
    corpus_dir, tmp_path, monkeypatch
):
    # Decoys in the working folder and on PYTHONPATH: a worker that imported one would die.
    for folder in (tmp_path / "cwd", tmp_path / "path"):
        (folder / "cleanup").mkdir(parents=True)
        (folder / "cleanup" / "__init__.py").write_text("raise SystemExit('decoy package')\n")
    (tmp_path / "cwd" / "orjson.py").write_text("raise SystemExit('decoy module')\n")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "path"))
    body = corpus_page(corpus_dir, 5, seed=6)
    with FlowPageParser(1, min_bytes=0) as parser:
        assert parser("env", body) == parse_flow_page("env", body)
    assert parser.counts.pages_in_workers == 1 and parser.counts.worker_failures == 0
