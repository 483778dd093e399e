"""Months without loss (issue 14): the product as a real process under faults
that last — a full, read-only or removed database, CloudWatch failing for
longer than the stall timeout, a sink that refuses everything.

The promises checked after each fault: the process either keeps going and
reports the fault in ``/healthz``, or exits 1 with the cause on its last log
line (never up-but-not-consuming, never hanging); after the fault is gone and
the process started again, every event is delivered (duplicates allowed,
never a gap) and nothing was dead-lettered that was not poison.

A small file system for the database is a tmpfs mounted by the test; where
the machine does not allow mounting, those tests are skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.fakesinks import RecordingSink
from tests.support.harness import (
    Admin,
    Key,
    Writer,
    free_port,
    log_records,
    parse_message,
    read_checkpoints,
    read_rows,
)

pytestmark = pytest.mark.slow

KEYS: list[Key] = [("/fp/a", "s0"), ("/fp/b", "s0")]


def _mount(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own (skipped where mounting is not allowed)."""
    where = tmp_path / "fs"
    where.mkdir()
    try:
        _mount(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0777", "tmpfs", str(where)])
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=20)


def fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte; returns the filler file."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def delivered_ids(sink: RecordingSink) -> dict[Key, set[int]]:
    out: dict[Key, set[int]] = {}
    for d in sink.docs():
        k, i = parse_message(d["message"])
        out.setdefault(k, set()).add(i)
    return out


def all_delivered(sink: RecordingSink, w: Writer) -> bool:
    got = delivered_ids(sink)
    return all(got.get(k, set()) == set(range(w.count(k))) for k in KEYS)


def all_committed(db: Path, w: Writer) -> bool:
    rows = read_checkpoints(db)
    return all(k in rows and rows[k].delivered >= w.count(k) for k in KEYS)


def last_message(product: Product) -> str:
    records = log_records(product.logs())
    return str(records[-1].get("message", "")) if records else ""


def wait_exit(product: Product, timeout_s: float) -> int:
    assert product.proc is not None
    try:
        return product.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"still running {timeout_s}s after the fault; last lines:\n"
            + "\n".join(product.logs().splitlines()[-5:])
        ) from None


def settle(product: Product, sink: RecordingSink, w: Writer, db: Path) -> None:
    """Every event so far delivered and committed."""
    wait_until(lambda: all_delivered(sink, w), 30, "every event delivered")
    wait_until(lambda: all_committed(db, w), 30, "every checkpoint committed")


@pytest.fixture
def rig(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    make_fake_product: Callable[..., Product],
    sink: RecordingSink,
) -> Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]]:
    def make(**env: str) -> tuple[FakeCloudWatchLogs, Writer, Product]:
        fake = start_fakecwl(14)
        w = Writer(fake, seed=14)
        for k in KEYS:
            w.put(*k, 150)
        product = make_fake_product(
            fake,
            sink.url,
            CWC_LOG_GROUP_PREFIXES="/fp/",
            CWC_BATCH_MAX_EVENTS="50",
            CWC_BATCH_MAX_WAIT="100ms",
            CWC_POLL_INTERVAL="300ms",
            **env,
        )
        return fake, w, product

    return make


# -- the database (items 5, 6, 7, 12) -----------------------------------------------


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_full_database_stops_the_process_with_the_cause_and_loses_nothing(
    rig: Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]],
    sink: RecordingSink,
    small_fs: Path,
    mode: str,
) -> None:
    """Old code, journal mode delete (the EFS setting): the heartbeat's raw
    sqlite3 error stopped the service, releasing the lease raised the same
    error, the database was never closed and the process never exited."""
    db = small_fs / "cwc.db"
    _fake, w, product = rig(CWC_DB_PATH=str(db), CWC_DB_JOURNAL_MODE=mode)
    product.start()
    settle(product, sink, w, db)
    filler = fill(small_fs)
    for k in KEYS:
        w.put(*k, 400)
    # Either the process stays up retrying (WAL may still find room in its
    # log), or it stops: exit 1 with the cause last. A stop request ends it
    # promptly whatever the disk says. In delete mode every write needs a
    # journal file, the heartbeat cannot renew the lease, and the process
    # must stop within the lease TTL (3 s).
    if mode == "delete":
        rc = wait_exit(product, 15)
    else:
        time.sleep(5.0)
        if product.running():
            started = time.monotonic()
            rc = product.terminate(timeout_s=25)
            assert time.monotonic() - started < 15, "a stop with a full disk took too long"
            assert rc in (0, 1)
        else:
            rc = wait_exit(product, 1)
    if rc == 1:
        message = last_message(product)
        assert message.startswith("stopped: ") and "full" in message, product.logs()[-2000:]
    filler.unlink()
    sink.clear()
    product.start()
    wait_until(lambda: all_committed(db, w), 60, "every checkpoint after the disk was freed")
    assert product.terminate() == 0
    rows = read_rows(db, "SELECT COUNT(*) FROM dead_letters")
    assert rows == [(0,)]


def test_health_is_200_again_soon_after_a_full_disk_is_freed(
    rig: Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]],
    sink: RecordingSink,
    small_fs: Path,
) -> None:
    """Measured by ``bench/faults_db.py diskfull-poison``: the group-info
    task's write failed on the full disk, and nothing ever told /healthz it
    worked again, so it answered 503 for two more minutes after every event
    was delivered and committed (the failure aged out after
    TASK_FAILURE_WINDOW_S) — long enough for ECS's health check (3 failures
    30 s apart) to replace a task that works. A restarted task that completes
    a cycle clears its failure, as discovery's did."""
    port = free_port()
    db = small_fs / "cwc.db"
    fake, w, product = rig(
        CWC_DB_PATH=str(db),
        CWC_DB_JOURNAL_MODE="delete",  # every write needs a journal: every write fails
        CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
        CWC_LEASE_HEARTBEAT="2s",
        CWC_LEASE_TTL="60s",  # stay up through the fault
        CWC_DISCOVERY_INTERVAL="1s",
    )
    admin = Admin(port)
    # Group-info describes each group found with DescribeLogGroups; a slow
    # answer holds its first write back until the disk is full.
    fake.set_latency(4.0, operation="DescribeLogGroups")
    product.start()
    wait_until(lambda: len(sink.docs()) > 0, 30, "the first events")
    filler = fill(small_fs)

    def reasons() -> str:
        got = admin.healthz()
        return "" if got is None else str(got[1].get("reasons"))

    wait_until(lambda: "task group-info failed" in reasons(), 30, "group-info failing")
    filler.unlink()
    fake.set_latency(0.0, operation="DescribeLogGroups")
    settle(product, sink, w, db)
    freed = time.monotonic()

    def healthy() -> bool:
        got = admin.healthz()
        return got is not None and got[0] == 200

    try:
        wait_until(healthy, 30, "/healthz 200 once the disk was freed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; reasons: {reasons()}") from None
    assert time.monotonic() - freed < 30
    assert product.terminate() == 0


def test_a_database_turned_read_only_stops_the_process_at_once_with_the_cause(
    rig: Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]],
    sink: RecordingSink,
    tmp_path: Path,
) -> None:
    """The database's directory becomes read-only under a running process
    (a read-only bind mount over it, as when a file system is remounted):
    in delete mode every write needs a new journal file there and fails for
    good. Old code: the raw sqlite3 error stopped the service, releasing the
    lease raised it again, the database was never closed and the process
    never exited."""
    folder = tmp_path / "efs"
    folder.mkdir()
    db = folder / "cwc.db"
    _fake, w, product = rig(CWC_DB_PATH=str(db), CWC_DB_JOURNAL_MODE="delete")
    product.start()
    settle(product, sink, w, db)
    try:
        _mount(["mount", "--bind", str(folder), str(folder)])
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot bind-mount here (needs root or CAP_SYS_ADMIN): {exc}")
    try:
        _mount(["mount", "-o", "remount,bind,ro", str(folder)])
        for k in KEYS:
            w.put(*k, 100)
        rc = wait_exit(product, 15)
        assert rc == 1
        message = last_message(product)
        assert message.startswith("stopped: ") and str(db) in message, message
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=20)
    product.start()
    wait_until(lambda: all_delivered(sink, w), 30, "every event once writable again")
    wait_until(lambda: all_committed(db, w), 30, "every checkpoint")
    assert product.terminate() == 0


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_a_removed_database_directory_stops_the_process_naming_the_path(
    rig: Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]],
    sink: RecordingSink,
    tmp_path: Path,
    mode: str,
) -> None:
    """Old code (WAL): it kept writing to the deleted files with /healthz 200;
    the restart started from an empty database."""
    db = tmp_path / "efs" / "cwc.db"
    _fake, w, product = rig(CWC_DB_PATH=str(db), CWC_DB_JOURNAL_MODE=mode)
    product.start()
    settle(product, sink, w, db)
    shutil.rmtree(db.parent)
    rc = wait_exit(product, 10)
    assert rc == 1
    message = last_message(product)
    # "was removed" from the file check itself: the test's own directory
    # name holds "removed" too, which any message naming the path would match.
    assert message.startswith("stopped: ") and str(db) in message
    assert "was removed while in use" in message, message


# -- CloudWatch unreachable (item 9) ----------------------------------------------------


def test_cloudwatch_failing_for_longer_than_the_stall_timeout_is_unhealthy(
    rig: Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]],
    sink: RecordingSink,
) -> None:
    """Old code: nothing read, so nothing pending, so /healthz said 200 while
    every GetLogEvents answer was garbage."""
    port = free_port()
    fake, w, product = rig(CWC_ADMIN_ADDR=f"127.0.0.1:{port}", CWC_STALL_TIMEOUT="2s")
    admin = Admin(port)
    product.start()
    wait_until(lambda: all_delivered(sink, w), 30, "the first events")
    fake.garble_next(10**6)  # a proxy answering truncated 200s from now on
    time.sleep(1.0)

    def unhealthy() -> bool:
        got = admin.healthz()
        return got is not None and got[0] == 503

    wait_until(unhealthy, 15, "/healthz 503 while every read fails")
    got = admin.healthz()
    assert got is not None
    assert "GetLogEvents" in str(got[1].get("reasons")), got
    fake.stop_garbling()
    for k in KEYS:
        w.put(*k, 20)
    wait_until(lambda: all_delivered(sink, w), 30, "events once CloudWatch answers again")

    def healthy() -> bool:
        got = admin.healthz()
        return got is not None and got[0] == 200

    wait_until(healthy, 15, "/healthz 200 again")
    assert product.terminate() == 0


# -- a sink refusing everything (item 10) --------------------------------------------


def test_a_sink_answering_404_to_everything_dead_letters_nothing(
    rig: Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]],
    sink: RecordingSink,
) -> None:
    port = free_port()
    _fake, w, product = rig(CWC_ADMIN_ADDR=f"127.0.0.1:{port}")
    db = Path(product.env["CWC_DB_PATH"])
    admin = Admin(port)
    sink.set_fault(status=404, times=-1, body="Not Found")
    product.start()

    def refusing() -> bool:
        got = admin.healthz()
        return got is not None and got[0] == 503 and "refuses" in str(got[1].get("reasons"))

    wait_until(refusing, 20, "/healthz 503 naming the sink's refusal")
    time.sleep(2.0)
    requests = len(sink.requests())
    assert requests < 20, f"{requests} requests: bisected instead of retried slowly"
    assert read_rows(db, "SELECT COUNT(*) FROM dead_letters") == [(0,)]
    assert not read_checkpoints(db) or not any(r.delivered for r in read_checkpoints(db).values())
    sink.clear_faults()
    wait_until(lambda: all_committed(db, w), 90, "every event once the sink takes them")
    assert all_delivered(sink, w)
    assert read_rows(db, "SELECT COUNT(*) FROM dead_letters") == [(0,)]
    assert product.terminate() == 0


# -- a fatal signal (item 13) -----------------------------------------------------------


def test_a_fatal_signal_leaves_its_cause_and_the_stacks_on_stderr(
    rig: Callable[..., tuple[FakeCloudWatchLogs, Writer, Product]],
    sink: RecordingSink,
) -> None:
    """SQLite dies of SIGBUS when its WAL shared-memory file goes away under
    it; old code died without a word. Now the signal's name and every
    thread's stack are written to stderr (faulthandler) before the process
    ends, where the container's log driver catches them."""
    _fake, w, product = rig()
    product.start()
    wait_until(lambda: all_delivered(sink, w), 30, "the first events")
    assert product.proc is not None
    product.proc.send_signal(signal.SIGBUS)
    rc = wait_exit(product, 10)
    assert rc == -signal.SIGBUS
    logs = product.logs()
    assert "Fatal Python error: Bus error" in logs
    assert "Thread 0x" in logs or "Current thread" in logs
