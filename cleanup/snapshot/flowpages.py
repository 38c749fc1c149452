"""Turn pages of cloud flows into snapshot rows, in worker processes when the pages are big.

Parsing is most of a large snapshot's CPU: every page body and every flow's clientdata JSON
inside it (1.5 GB for 100,000 flows). In one process it all runs under one GIL, beside the
threads that are receiving; so a page of a megabyte or more goes to a worker process
(``python -m cleanup.snapshot.flowpages``, fed over a pipe), which sends back the page's rows:
kilobytes for megabytes. Small pages (every test tenant, most environments) are parsed in the
reading thread, because shipping them would cost more than parsing them. Either way the rows
are the same: ``parse_flow_page`` is pure.

Workers are plain child processes, not ``multiprocessing``: nothing forks a process full of
threads, and no caller's ``__main__`` is imported again. A worker that dies (killed, out of
memory) costs time, not rows: its page and every later one are parsed in the reading thread.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cleanup import json_text
from cleanup.snapshot import tables

__all__ = ["FlowPage", "FlowPageParser", "parse_flow_page"]

PROCESS_PAGE_BYTES = 1 << 20  # below this, shipping a page to a worker costs more than parsing


@dataclass(frozen=True, slots=True)
class FlowPage:
    """One page of cloud flows as ``flows`` and ``usages`` rows, and the next page's link."""

    flows: list[dict[str, Any]]
    usages: list[dict[str, Any]]
    next_link: str | None


def parse_flow_page(environment_id: str, body: bytes) -> FlowPage:
    """Parse one ``workflows`` page body into snapshot rows (pure: runs in any process).

    Raises ValueError for a body that is not a collection page and ``BadAnswer`` for a flow
    row without an id, like reading the page in the thread would.
    """
    rows, next_link = json_text.odata_page(body)
    flows: list[dict[str, Any]] = []
    usages: list[dict[str, Any]] = []
    for row in rows:
        flow, uses = tables.flow_rows(environment_id, row)
        flows.append(flow)
        usages.extend(uses)
    return FlowPage(flows, usages, next_link)


@dataclass
class ParseCounts:
    """Where the flow pages were parsed."""

    processes: int = 0
    pages_in_workers: int = 0
    pages_in_thread: int = 0
    worker_failures: int = 0

    def copy(self) -> ParseCounts:
        """These counts, frozen as they are now."""
        return dataclasses.replace(self)

    def since(self, before: ParseCounts) -> dict[str, int]:
        """What was parsed where since ``before``, as metadata."""
        now, then = dataclasses.asdict(self), dataclasses.asdict(before)
        return {
            key: value if key == "processes" else value - then[key] for key, value in now.items()
        }


class FlowPageParser:
    """Parses flow pages: big ones in worker processes, the rest in the calling thread.

    Thread-safe; the workers start with the first big page and stop with ``close`` (or at the
    end of the ``with`` block). ``processes=0`` parses everything in the calling thread.
    """

    def __init__(self, processes: int, *, min_bytes: int = PROCESS_PAGE_BYTES) -> None:
        self.min_bytes = min_bytes
        self.counts = ParseCounts(processes=max(0, processes))
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._usable = processes > 0

    def __call__(self, environment_id: str, body: bytes) -> FlowPage:
        """Parse one page body of ``environment_id``'s flows into rows."""
        worker = self._take_worker(len(body))
        if worker is not None:
            try:
                page = worker.parse(environment_id, body)
            except _WorkerLost:
                self._lost(worker)
            except BaseException:
                self._idle.put(worker)  # the page was bad, not the worker
                raise
            else:
                self._idle.put(worker)
                self._count("pages_in_workers")
                return page
        page = parse_flow_page(environment_id, body)
        self._count("pages_in_thread")
        return page

    def __enter__(self) -> FlowPageParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers; pages parsed afterwards are parsed in the calling thread."""
        with self._lock:
            self._usable = False
            workers, self._workers = self._workers, []
        self._idle.put(None)  # wakes the threads waiting for a worker: they parse themselves
        for worker in workers:
            worker.stop()

    def _take_worker(self, size: int) -> _Worker | None:
        if size < self.min_bytes:
            return None
        with self._lock:
            if not self._usable:
                return None
            if not self._workers:
                self._start_workers()
        worker = self._idle.get()
        if worker is None:
            self._idle.put(None)  # pass the news on to the next waiting thread
        return worker

    def _start_workers(self) -> None:
        try:
            for _ in range(self.counts.processes):
                worker = _Worker()
                self._workers.append(worker)
                self._idle.put(worker)
        except OSError:
            self._usable = False  # no processes here (limits, sandbox): parse in the threads
            self._idle.put(None)

    def _lost(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self.counts.worker_failures += 1
            if worker in self._workers:
                self._workers.remove(worker)
            if not self._workers:
                self._usable = False
        if not self._usable:
            self._idle.put(None)  # whoever waits for a worker now parses in its own thread

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.counts, name, getattr(self.counts, name) + 1)


class _WorkerLost(Exception):
    """A worker process stopped answering."""


class _Worker:
    """One ``python -m cleanup.snapshot.flowpages`` child, one page at a time."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def parse(self, environment_id: str, body: bytes) -> FlowPage:
        """Have the worker parse a page; its exception is raised here if it raised one."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            _send_page(self.process.stdin, environment_id, body)
            ok, answer = pickle.loads(_receive(self.process.stdout))  # our own child: trusted
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, struct.error) as exc:
            # ValueError: its pipe was closed by close(); the rest: it died or garbled.
            raise _WorkerLost(str(exc)) from exc
        if not ok:
            raise answer
        return answer

    def stop(self) -> None:
        """Close the worker's input (it exits) and wait for it briefly, then kill it."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


_LENGTH = struct.Struct("!Q")


def _send(stream: IO[bytes], *parts: bytes) -> None:
    """Write one message: its length, then its parts as they are (a page is not copied)."""
    stream.write(_LENGTH.pack(sum(len(part) for part in parts)))
    for part in parts:
        stream.write(part)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the pipe was closed")
    (length,) = _LENGTH.unpack(head)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError("the message was cut short")
    return data


def _send_page(stream: IO[bytes], environment_id: str, body: bytes) -> None:
    name = environment_id.encode()
    _send(stream, _LENGTH.pack(len(name)), name, body)


def _receive_page(stream: IO[bytes]) -> tuple[str, bytes]:
    message = memoryview(_receive(stream))
    (size,) = _LENGTH.unpack(message[: _LENGTH.size])
    start = _LENGTH.size + size
    return bytes(message[_LENGTH.size : start]).decode(), message[start:].tobytes()


def _serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """A worker's loop: parse each page sent until the input closes."""
    while True:
        try:
            environment_id, body = _receive_page(requests)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, parse_flow_page(environment_id, body))
        except Exception as exc:  # sent back and raised in the reading thread, as if parsed there
            answer = (False, exc)
        _send(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def _main() -> None:
    answers = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    _serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    # Run the imported module's code, so the pages pickle as cleanup.snapshot.flowpages.FlowPage.
    from cleanup.snapshot import flowpages

    flowpages._main()
