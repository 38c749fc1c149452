"""``connref-cleanup schedule``: run the job every night at a local time, and keep going.

A thin loop around the ``schedule`` library, which runs the job when it is due. The due time
is computed here with ``zoneinfo`` (see ``next_run``), which also spares the optional pytz
dependency of schedule's own time zones. ``Scheduler`` does not catch a job's exception (it
escapes ``run_pending()`` and would end the loop), so each night is wrapped here: the error
is logged and handed to ``on_failure`` (which mails the admins), and the next night runs as
planned. Each night holds the run lock, so it never overlaps a manual run or an
apply; a night that finds the lock taken is skipped. The night's job applies nothing unless
``[schedule] apply = true`` (see ``nightly_job``).
"""

from __future__ import annotations

import logging
import time
import traceback
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import schedule

from cleanup.lock import LockHeld, run_lock
from cleanup.notify.settings import ScheduleSettings
from cleanup.pipeline import EXIT_FINDINGS

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = "runs"
MAX_SLEEP_SECONDS = 60.0  # wake up at least this often, so a changed clock is noticed
FailureCallback = Callable[[BaseException, str], None]


def nightly_job(
    run_once: Callable[[], int],
    apply_plan: Callable[[], int],
    settings: ScheduleSettings,
) -> Callable[[], int]:
    """Return the night's job: the read-only run, then the apply only if ``settings.apply``."""

    def night() -> int:
        code = run_once()
        if not settings.apply:
            return code
        if code != EXIT_FINDINGS:
            # Only a complete run with findings has a plan worth applying unattended.
            log.info("no unattended apply tonight: the run ended with exit code %d", code)
            return code
        log.warning("[schedule] apply = true: applying tonight's plan unattended")
        return apply_plan()

    return night


def run_night(
    job: Callable[[], int], lock_file: Path, on_failure: FailureCallback | None
) -> int | None:
    """Run one night under the run lock; return its exit code (None: skipped or failed)."""
    try:
        with run_lock(lock_file):
            log.info("nightly run starting")
            code = job()
    except LockHeld as exc:
        log.warning("skipping tonight's run: %s", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - one bad night must not end the schedule
        text = traceback.format_exc()
        log.error("nightly run failed: %s: %s\n%s", type(exc).__name__, exc, text)
        _report_failure(on_failure, exc, text)
        return None
    log.info("nightly run finished with exit code %s", code)
    return code


def run_forever(
    job: Callable[[], int],
    settings: ScheduleSettings,
    *,
    lock_file: str | Path | None = None,
    on_failure: FailureCallback | None = None,
    clock: Callable[[], datetime] = datetime.now,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
    scheduler: schedule.Scheduler | None = None,
) -> None:
    """Run ``job`` daily at ``settings.time`` in ``settings.timezone`` until ``stop()``.

    ``clock`` is the naive local wall clock that ``schedule`` itself reads
    (``datetime.now()``); the two must agree.
    """
    scheduler = scheduler or schedule.Scheduler()
    lock_path = Path(lock_file) if lock_file else settings.lock_path(DEFAULT_RUNS_DIR)
    nightly = scheduler.every().day.at(settings.time).do(run_night, job, lock_path, on_failure)
    nightly.next_run = next_run(settings, clock())
    log.info(
        "scheduled daily at %s %s; first run at %s (local clock)",
        settings.time,
        settings.timezone,
        nightly.next_run,
    )
    while not stop():
        scheduler.run_pending()
        # schedule's own time-zone arithmetic (pytz) fires twice the day after a spring-forward
        # for times inside the gap (02:00 Europe/Amsterdam ran at 01:00 and 02:00 CEST on
        # 2025-03-31), so the next run is always computed here, with zoneinfo.
        nightly.next_run = next_run(settings, clock())
        sleep(_pause(nightly, clock))


def next_run(settings: ScheduleSettings, now: datetime) -> datetime:
    """Return the first scheduled instant after ``now``, as a naive local time like ``now``.

    A configured time that does not exist on a date (inside a spring-forward gap) runs at
    the same distance after the gap (02:30 becomes 03:30); one that exists twice (autumn)
    runs at its first occurrence.
    """
    zone = zoneinfo.ZoneInfo(settings.timezone)
    hour, minute = (int(part) for part in settings.time.split(":"))
    now_utc = now.astimezone(UTC)
    today = now_utc.astimezone(zone).date()
    for days in range(3):
        wall = datetime.combine(today + timedelta(days=days), dtime(hour, minute), tzinfo=zone)
        instant = wall.astimezone(UTC)  # fold=0: the offset in force before a transition
        if instant > now_utc:
            return instant.astimezone().replace(tzinfo=None)
    raise AssertionError("unreachable: a day always has a next occurrence")


def _pause(nightly: schedule.Job, clock: Callable[[], datetime]) -> float:
    if nightly.next_run is None:
        return MAX_SLEEP_SECONDS
    remaining = (nightly.next_run - clock()).total_seconds()
    return max(0.0, min(MAX_SLEEP_SECONDS, remaining))


def _report_failure(on_failure: FailureCallback | None, exc: BaseException, text: str) -> None:
    if on_failure is None:
        return
    try:
        on_failure(exc, text)
    except Exception:  # noqa: BLE001 - a failing mail server must not end the schedule either
        log.exception("could not report the failed night")
