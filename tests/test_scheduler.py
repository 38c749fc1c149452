"""The nightly scheduler under a controlled clock: time zones, failing nights, held locks, apply."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import threading
import types
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schedule

from cleanup.errors import CleanupError, ConfigError
from cleanup.lock import LockHeld, run_lock
from cleanup.notify.settings import ScheduleSettings
from cleanup.scheduler import nightly_job, run_forever

HOLDER = """
import fcntl, os, sys
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
f.write(f"pid {os.getpid()} (test holder)"); f.flush()
print("locked", flush=True)
sys.stdin.read()
"""


class FakeClock:
    """Time that moves only when the scheduler sleeps."""

    def __init__(self, start: datetime) -> None:
        self.utc = start
        self.slept: list[float] = []

    def local(self) -> datetime:
        """The naive local wall clock, as ``datetime.now()`` returns it."""
        return self.utc.astimezone().replace(tzinfo=None)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.utc += timedelta(seconds=seconds)

    def until(self, end: datetime) -> Callable[[], bool]:
        return lambda: self.utc >= end


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """Freeze ``schedule``'s notion of time: it reads ``datetime.datetime.now()`` directly."""
    fake = FakeClock(datetime(2025, 1, 10, 12, 0, tzinfo=UTC))

    class FakeDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return fake.utc.astimezone(tz) if tz is not None else fake.local()

    shim = types.SimpleNamespace(
        datetime=FakeDatetime, timedelta=dt.timedelta, time=dt.time, date=dt.date
    )
    monkeypatch.setattr(schedule, "datetime", shim)
    yield fake


def run_nights(
    clock: FakeClock,
    job: Callable[[], int],
    settings: ScheduleSettings,
    lock: Path,
    days: float,
    **kw: object,
) -> None:
    end = clock.utc + timedelta(days=days)
    run_forever(
        job,
        settings,
        lock_file=lock,
        clock=clock.local,
        sleep=clock.sleep,
        stop=clock.until(end),
        **kw,  # type: ignore[arg-type]
    )


def recording_job(clock: FakeClock, runs: list[datetime], code: int = 0) -> Callable[[], int]:
    def job() -> int:
        runs.append(clock.utc)
        return code

    return job


def test_runs_daily_at_the_local_time_of_the_configured_zone(
    clock: FakeClock, tmp_path: Path
) -> None:
    runs: list[datetime] = []
    settings = ScheduleSettings(time="02:00", timezone="Europe/Amsterdam")
    run_nights(clock, recording_job(clock, runs), settings, tmp_path / "lock", days=3)
    # 02:00 in Amsterdam in winter (CET, UTC+1) is 01:00 UTC.
    assert runs == [datetime(2025, 1, d, 1, 0, tzinfo=UTC) for d in (11, 12, 13)]
    assert max(clock.slept) <= 60  # wakes up regularly, never oversleeps a change of clock


AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")


@pytest.mark.parametrize(
    ("start", "at", "expected"),
    [
        # Spring forward on 2025-03-30: 02:00-02:59 do not exist that night.
        ("2025-03-28", "02:00", ["03-29 02:00+0100", "03-30 03:00+0200", "03-31 02:00+0200"]),
        ("2025-03-28", "02:30", ["03-29 02:30+0100", "03-30 03:30+0200", "03-31 02:30+0200"]),
        ("2025-03-28", "01:30", ["03-29 01:30+0100", "03-30 01:30+0100", "03-31 01:30+0200"]),
        ("2025-03-28", "03:00", ["03-29 03:00+0100", "03-30 03:00+0200", "03-31 03:00+0200"]),
        # Fall back on 2025-10-26: 02:00-02:59 happen twice; run once, the first time.
        ("2025-10-24", "02:30", ["10-25 02:30+0200", "10-26 02:30+0200", "10-27 02:30+0100"]),
        ("2025-10-24", "03:00", ["10-25 03:00+0200", "10-26 03:00+0100", "10-27 03:00+0100"]),
    ],
)
def test_one_run_per_night_across_daylight_saving_changes(
    clock: FakeClock, tmp_path: Path, start: str, at: str, expected: list[str]
) -> None:
    # schedule 1.2.2's own time zones fire twice on 03-31 for 02:00/02:30; this must not.
    clock.utc = datetime.fromisoformat(start).replace(hour=12, tzinfo=UTC)
    runs: list[datetime] = []
    settings = ScheduleSettings(time=at, timezone="Europe/Amsterdam")
    run_nights(clock, recording_job(clock, runs), settings, tmp_path / "lock", days=3)
    assert [r.astimezone(AMSTERDAM).strftime("%m-%d %H:%M%z") for r in runs] == expected


def test_a_failing_night_is_reported_once_and_the_loop_goes_on(
    clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[datetime] = []
    failures: list[tuple[BaseException, str]] = []

    def job() -> int:
        runs.append(clock.utc)
        if len(runs) == 1:
            raise RuntimeError("Dataverse said no")
        return 0

    settings = ScheduleSettings(time="02:00", timezone="UTC")
    with caplog.at_level(logging.INFO, logger="cleanup.scheduler"):
        run_nights(
            clock,
            job,
            settings,
            tmp_path / "lock",
            days=2,
            on_failure=lambda exc, text: failures.append((exc, text)),
        )
    assert len(runs) == 2
    assert len(failures) == 1
    exc, text = failures[0]
    assert isinstance(exc, RuntimeError) and "Traceback" in text and "Dataverse said no" in text
    assert "nightly run failed: RuntimeError: Dataverse said no" in caplog.text
    assert "nightly run finished with exit code 0" in caplog.text


def test_a_failing_failure_report_does_not_end_the_loop(clock: FakeClock, tmp_path: Path) -> None:
    runs: list[datetime] = []

    def job() -> int:
        runs.append(clock.utc)
        raise ValueError("every night")

    def on_failure(exc: BaseException, text: str) -> None:
        raise OSError("mail server down")

    settings = ScheduleSettings(time="02:00", timezone="UTC")
    run_nights(clock, job, settings, tmp_path / "lock", days=3, on_failure=on_failure)
    assert len(runs) == 3


def start_holder(lock: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_held_lock_skips_the_night_and_a_killed_holder_does_not_block(
    clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = tmp_path / "runs" / ".connref-cleanup.lock"
    lock.parent.mkdir()
    runs: list[datetime] = []
    settings = ScheduleSettings(time="02:00", timezone="UTC")
    holder = start_holder(lock)
    try:
        with caplog.at_level(logging.WARNING, logger="cleanup.scheduler"):
            run_nights(clock, recording_job(clock, runs), settings, lock, days=1)
    finally:
        holder.kill()  # like a crashed manual run: the lock file stays behind
        holder.wait()
    assert runs == []
    assert "skipping tonight's run" in caplog.text
    assert f"pid {holder.pid} (test holder)" in caplog.text
    assert lock.exists()
    run_nights(clock, recording_job(clock, runs), settings, lock, days=1)
    assert len(runs) == 1


def test_run_lock_is_exclusive_across_processes_and_threads(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    holder = start_holder(lock)
    try:
        with pytest.raises(LockHeld) as err, run_lock(lock):
            pass
        assert isinstance(err.value, CleanupError)
        assert "Wait for it to finish" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    errors: list[BaseException] = []
    with run_lock(lock):
        other = threading.Thread(target=lambda: _try_lock(lock, errors))
        other.start()
        other.join()
        with run_lock(lock):  # re-entrant in the holding thread (the night's job calls apply)
            pass
    assert len(errors) == 1 and isinstance(errors[0], LockHeld)
    with run_lock(lock):  # released: free again
        pass


def _try_lock(lock: Path, errors: list[BaseException]) -> None:
    try:
        with run_lock(lock):
            pass
    except LockHeld as exc:
        errors.append(exc)


@pytest.mark.parametrize(
    ("apply", "run_code", "applied", "result"),
    [
        (False, 4, False, 4),  # findings, but apply is off: never applies
        (False, 0, False, 0),
        (True, 4, True, 0),  # findings and apply on: applies, returns the apply's code
        (True, 3, False, 3),  # partial snapshot: no unattended apply
        (True, 1, False, 1),
    ],
)
def test_apply_only_when_configured(apply: bool, run_code: int, applied: bool, result: int) -> None:
    calls: list[str] = []

    def run_once() -> int:
        calls.append("run")
        return run_code

    def apply_plan() -> int:
        calls.append("apply")
        return 0

    night = nightly_job(run_once, apply_plan, ScheduleSettings(apply=apply))
    assert night() == result
    assert calls == (["run", "apply"] if applied else ["run"])


def test_scheduled_nights_never_apply_by_default(clock: FakeClock, tmp_path: Path) -> None:
    calls: list[str] = []
    settings = ScheduleSettings(time="03:15", timezone="America/New_York")
    night = nightly_job(
        lambda: calls.append("run") or 4, lambda: calls.append("apply") or 0, settings
    )
    run_nights(clock, night, settings, tmp_path / "lock", days=2)
    assert calls == ["run", "run"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time": "2:00"}, "HH:MM"),
        ({"time": "24:00"}, "HH:MM"),
        ({"time": "02:00\n"}, "HH:MM"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"timezone": "../etc/passwd"}, "IANA"),
        ({"timezone": ""}, "IANA"),
    ],
)
def test_schedule_settings_are_validated(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScheduleSettings(**kwargs)  # type: ignore[arg-type]


def test_lock_path_defaults_to_the_runs_folder() -> None:
    assert ScheduleSettings().lock_path("runs") == Path("runs/.connref-cleanup.lock")
    assert ScheduleSettings(lock_file="/var/lock/x").lock_path("runs") == Path("/var/lock/x")
