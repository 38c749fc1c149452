"""Turn pages of cloud flows into snapshot rows, in worker processes when the pages are big.

Parsing is most of a large snapshot's CPU: every page body and every flow's clientdata JSON
inside it (1.5 GB for 100,000 flows). In one process it all runs under one GIL, beside the
threads that are receiving; so a page of a megabyte or more goes to a worker process (a
child Python running ``serve_stdio``, fed over pipes), which sends back the page's rows:
kilobytes for megabytes. Small pages (every test tenant, most environments) are parsed in the
reading thread, because shipping them would cost more than parsing them. Either way the rows
are the same: ``parse_flow_page`` is pure.

Workers are plain child processes, not ``multiprocessing``: nothing forks a process full of
threads, and no caller's ``__main__`` is imported again. A worker that dies (killed, out of
memory) costs time, not rows: its page is parsed in the reading thread and a new worker takes
its place (as many times as there are workers; after that, pages stay in the reading threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cleanup import json_text
from cleanup.snapshot import tables

__all__ = ["FlowPage", "FlowPageParser", "parse_flow_page"]

PROCESS_PAGE_BYTES = 1 << 20  # below this, shipping a page to a worker costs more than parsing
# A 5,000-flow page parses in about a second; a worker silent this long is stuck (stopped from
# outside, swapping) and is killed, so its reading thread parses the page itself.
WORKER_DEADLINE_SECONDS = 120.0


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
    """Where the flow pages were parsed, and how many worker processes started."""

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

    def __init__(
        self,
        processes: int,
        *,
        min_bytes: int = PROCESS_PAGE_BYTES,
        deadline_seconds: float = WORKER_DEADLINE_SECONDS,
        withheld_variables: Iterable[str] = (),
    ) -> None:
        self.min_bytes = min_bytes
        self.deadline_seconds = deadline_seconds
        self.counts = ParseCounts()  # processes: how many workers started, not how many wanted
        self._wanted = max(0, processes)
        # Workers parse pages and need no credentials: the secrets' variables stay here.
        self._withheld = frozenset(withheld_variables)
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._usable = self._wanted > 0

    def __call__(self, environment_id: str, body: bytes) -> FlowPage:
        """Parse one page body of ``environment_id``'s flows into rows."""
        worker = self._take_worker(len(body))
        if worker is not None:
            try:
                parsed, answer = worker.parse(environment_id, body, self.deadline_seconds)
            except _WorkerLost:
                self._lost(worker)
            except BaseException:
                self._lost(worker)  # interrupted halfway through an exchange: out of step
                raise
            else:
                self._idle.put(worker)
                if parsed is False:
                    raise answer  # the page's own error, as the reading thread would raise it
                if parsed:
                    self._count("pages_in_workers")
                    return answer
                # None: the worker could not send its answer back; this thread parses the page.
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
        if not sys.executable:  # an embedded interpreter: no Python to start
            self._usable = False
            self._idle.put(None)
            return
        started: list[_Worker] = []
        try:
            for _ in range(self._wanted):
                started.append(self._spawn())
        except Exception:  # no (more) processes here (limits, sandbox): parse in the threads
            for worker in started:
                worker.stop()
            self._usable = False
            self._idle.put(None)
            return
        for worker in started:
            self._add(worker)

    def _spawn(self) -> _Worker:
        return _Worker({k: v for k, v in os.environ.items() if k not in self._withheld})

    def _add(self, worker: _Worker) -> None:
        self.counts.processes += 1
        self._workers.append(worker)
        self._idle.put(worker)

    def _lost(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self.counts.worker_failures += 1
            if worker in self._workers:
                self._workers.remove(worker)
            # One lost worker (killed by an operator or the OOM killer, stuck) is replaced, as
            # many times as there are workers; past that the pages are parsed in the threads.
            if self._usable and self.counts.worker_failures <= self._wanted:
                with contextlib.suppress(Exception):
                    self._add(self._spawn())
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
    """One child Python serving pages (``serve_stdio``), one page at a time.

    Pages go in on its stdin; answers come back on a pipe of their own, so nothing the child
    prints (a site hook at start-up, a library) can corrupt them. Its stdout is discarded.
    """

    def __init__(self, environment: dict[str, str]) -> None:
        read_end, write_end = os.pipe()  # POSIX: elsewhere pass_fds fails and pages stay here
        try:
            # -P: nothing from the working directory shadows what the worker imports.
            folder = str(Path(__file__).parents[1])
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOTSTRAP, folder, str(write_end)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                pass_fds=(write_end,),
                env=environment,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.answers = os.fdopen(read_end, "rb")

    def parse(self, environment_id: str, body: bytes, deadline: float) -> tuple[bool | None, Any]:
        """Have the worker parse a page: (True, the page), (False, the page's exception), or
        (None, None) when it could not send its answer.

        A worker that has not answered within ``deadline`` seconds is killed (and so lost).
        """
        assert self.process.stdin is not None
        watchdog = threading.Timer(deadline, self.process.kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            _send_page(self.process.stdin, environment_id, body)
            return pickle.loads(_receive(self.answers))  # type: ignore[no-any-return]
        except Exception as exc:
            # It died, was killed or closed, or garbled the pipe (even a MemoryError from a
            # nonsense length): whatever it was, the page is parsed here instead.
            raise _WorkerLost(f"{type(exc).__name__}: {exc}") from exc
        finally:
            watchdog.cancel()

    def stop(self) -> None:
        """Close the worker's input (it exits) and wait for it briefly, then kill it."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.answers.close()


_LENGTH = struct.Struct("!Q")
MAX_MESSAGE_BYTES = 1 << 32  # far above any page (5,000 flows ~ 100 MB): beyond it, garbage


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
    if length > MAX_MESSAGE_BYTES:
        raise EOFError(f"a message of {length} bytes is not one of ours")
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
        try:
            message = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle: the reader parses it itself
            message = pickle.dumps((None, None))
        _send(answers, message)


def serve_stdio(answers: IO[bytes]) -> None:
    """Run as a worker: parse the pages sent on stdin, answer on ``answers``."""
    # Ctrl-C reaches the whole process group: the job decides, and its exit closes our input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(sys.stdin.buffer, answers)


# A worker imports the very files of this process's package (argv[1] is its folder), wherever
# they were found, without putting their folder ahead of anything else on its import path;
# argv[2] is the pipe its answers go to.
_BOOTSTRAP = """
import importlib.util, os, sys
folder, answers = sys.argv[1], os.fdopen(int(sys.argv[2]), "wb")
init = os.path.join(folder, "__init__.py")
spec = importlib.util.spec_from_file_location("cleanup", init, submodule_search_locations=[folder])
package = importlib.util.module_from_spec(spec)
sys.modules["cleanup"] = package
spec.loader.exec_module(package)
from cleanup.snapshot.flowpages import serve_stdio
serve_stdio(answers)
"""
