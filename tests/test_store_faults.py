"""The checkpoint database failing under a running store (in process, real
SQLite files): every sqlite3 error leaves ``store/`` as the project's
:class:`~cwconsumer.errors.StoreError`, ``retriable`` where trying again may
help; a removed database is noticed; a frozen holder proves its lease before
it sends. The process-level behaviour (exit 1 with the cause, nothing lost)
is in ``test_failure_paths.py``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
import pytest

from cwconsumer.delivery import Lane
from cwconsumer.errors import LeaseLost, StoreError, StoreGone
from cwconsumer.flow import Budget
from cwconsumer.health import Health
from cwconsumer.metrics import Metrics
from cwconsumer.model import Checkpoint, Chunk, OutBatch, StreamKey
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.store import Commit, DeadLetter, Store, translate

KEY = StreamKey("/g", "s")
TTL_MS = 3_000


def now_ms() -> int:
    return int(time.time() * 1000)


async def held_store(path: Path, mode: str = "wal", owner: str = "a") -> Store:
    store = await Store.open(str(path), mode)
    assert await store.acquire_lease(owner, now_ms(), TTL_MS, "here", 1) is not None
    return store


def dead_rows(n: int, size: int) -> list[DeadLetter]:
    blob = orjson.dumps({"message": "x" * size})
    return [DeadLetter(KEY, f"id{i}", i, blob, 400, "refused") for i in range(n)]


def commit_of(token: str) -> Commit:
    return Commit(KEY, Checkpoint(token, None, 0, 1, 0), 1, 0)


# -- translation ------------------------------------------------------------------


def test_real_sqlite_errors_translate_with_the_right_retriable_flag(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    a = sqlite3.connect(db, isolation_level=None, timeout=0)
    b = sqlite3.connect(db, isolation_level=None, timeout=0)
    a.execute("CREATE TABLE t (v BLOB)")
    a.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as locked:
        b.execute("BEGIN IMMEDIATE")
    a.execute("ROLLBACK")
    a.execute("PRAGMA max_page_count = 3")
    with pytest.raises(sqlite3.OperationalError) as full:
        a.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES (1)")
    for c in (a, b, ro):
        c.close()
    (tmp_path / "junk.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    junk = sqlite3.connect(tmp_path / "junk.db")
    with pytest.raises(sqlite3.DatabaseError) as corrupt:
        junk.execute("SELECT * FROM sqlite_master")
    junk.close()

    cases = {
        "locked": (locked.value, True),
        "full": (full.value, True),
        "readonly": (readonly.value, False),
        "corrupt": (corrupt.value, False),
    }
    for name, (exc, retriable) in cases.items():
        err = translate(exc, str(db), "cannot write")
        assert isinstance(err, StoreError), name
        assert err.retriable is retriable, (name, exc, getattr(exc, "sqlite_errorname", ""))
        assert str(db) in str(err) and str(exc) in str(err)


async def test_a_full_database_is_a_retriable_store_error_and_the_store_works_after(
    tmp_path: Path,
) -> None:
    """Item 7: the raw ``sqlite3.OperationalError: database or disk is full``
    left the store edge. Disk full by a size-limited database (max_page_count)."""
    store = await held_store(tmp_path / "cwc.db")
    try:
        await store.commit([commit_of("t1")])
        pages = int((await store.fetch("PRAGMA page_count"))[0][0])
        await store.fetch(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StoreError) as caught:
            await store.commit([commit_of("t2")], dead_rows(40, 4000))
        assert caught.value.retriable
        assert "full" in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        # Nothing of the refused transaction stayed; the connection is usable.
        assert (await store.load_streams())[0].checkpoint.token == "t1"
        assert await store.fetch("SELECT COUNT(*) FROM dead_letters") == [(0,)]
        await store.fetch("PRAGMA max_page_count = 1000000")
        await store.commit([commit_of("t2")], dead_rows(40, 4000))
        assert (await store.load_streams())[0].checkpoint.token == "t2"
        await store.heartbeat(now_ms())
    finally:
        await store.aclose()


async def test_a_database_locked_by_another_process_is_retriable(tmp_path: Path) -> None:
    store = await held_store(tmp_path / "cwc.db")
    other = sqlite3.connect(tmp_path / "cwc.db", isolation_level=None)
    try:
        await store.fetch("PRAGMA busy_timeout = 50")  # not 30 s for a test
        other.execute("BEGIN IMMEDIATE")
        for attempt in (store.heartbeat(now_ms()), store.commit([commit_of("t1")])):
            with pytest.raises(StoreError) as caught:
                await attempt
            assert caught.value.retriable and "locked" in str(caught.value)
        other.execute("ROLLBACK")
        await store.commit([commit_of("t1")])
        await store.release_lease()
    finally:
        other.close()
        await store.aclose()


# -- a removed database (item 12) -----------------------------------------------


@pytest.mark.parametrize("mode", ["wal", "delete"])
async def test_a_removed_database_directory_is_noticed(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "state"
    store = await held_store(folder / "cwc.db", mode)
    try:
        store.check_file()  # the file is there: nothing to say
        await store.commit([commit_of("t1")])
        shutil.rmtree(folder)
        with pytest.raises(StoreGone, match=str(folder / "cwc.db")):
            store.check_file()
    finally:
        await store.aclose()


async def test_a_replaced_database_file_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "cwc.db"
    store = await held_store(path)
    try:
        path.rename(tmp_path / "moved.db")
        shutil.copy(tmp_path / "moved.db", path)
        with pytest.raises(StoreGone, match="replaced"):
            store.check_file()
    finally:
        await store.aclose()


# -- a frozen holder (item 11) --------------------------------------------------------


async def test_a_holder_frozen_past_its_lease_sends_nothing_more(tmp_path: Path) -> None:
    """SIGSTOP past the TTL, a standby took over, SIGCONT: the old holder's
    lane had a batch ready. Old code sent it (duplicates) before its fenced
    commit failed; now the lane proves the lease before sending."""
    path = tmp_path / "cwc.db"
    old = await held_store(path, owner="old")
    new = await Store.open(str(path), "wal")
    sent: list[int] = []

    class Sink:
        name = "count"

        async def send(self, batch: OutBatch) -> SendResult:
            sent.append(len(batch))
            return SendResult(Outcome.OK, status=200)

        async def probe(self) -> tuple[bool, str]:
            return True, ""

        async def aclose(self) -> None:
            return None

    try:
        await anyio.sleep(0.3)  # "frozen": no renewal for longer than fresh_s below
        # The standby, seeing no heartbeat for the TTL, takes over.
        assert await new.acquire_lease("new", now_ms() + TTL_MS + 1, TTL_MS, "there", 2)
        budget = Budget(1000, 1 << 20)
        lane = Lane(
            0,
            Sink(),
            old,
            budget,
            Health(60.0),
            Metrics(),
            max_events=10,
            max_bytes=1 << 20,
            max_wait_s=0.0,
            current=lambda c: True,
            on_committed=lambda c, d: None,
            guard=lambda: old.prove_lease(0.2),
        )
        docs: list[bytes | dict[str, object]] = [b'{"event":{"id":"a"}}']
        budget.settle(0, 1, 20)
        await lane.channel.put(Chunk(KEY, docs, [1], None, 0, 0, None, -1, "t1", True, 20))
        lane.channel.close()
        with pytest.raises(LeaseLost):
            await lane.run()
        assert sent == []
        assert budget.events == 0
    finally:
        await old.aclose()
        await new.aclose()


async def test_a_recently_renewed_lease_costs_no_database_call(tmp_path: Path) -> None:
    path = tmp_path / "cwc.db"
    store = await held_store(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # any write would now wait
        with anyio.fail_after(1):
            await store.prove_lease(60.0)
        other.execute("ROLLBACK")
    finally:
        other.close()
        await store.aclose()


# -- commit together or not at all (item 1), every error translated (item 7) ------


async def test_a_commit_refused_at_commit_keeps_neither_its_checkpoint_nor_its_dead_letters(
    tmp_path: Path,
) -> None:
    """A checkpoint and the dead letters it depends on commit together or not
    at all. Here the transaction is refused by its COMMIT itself (a deferred
    constraint that every checkpoint write breaks; a full disk or an I/O
    error at COMMIT in WAL mode does the same): the error is translated
    (items 1 and 7), neither the checkpoint nor one dead letter stays, the
    connection is not left inside the transaction, and the same commit goes
    through once the cause is gone. Dead letters written in a transaction of
    their own would stay here without their checkpoint."""
    store = await held_store(tmp_path / "cwc.db")
    try:
        await store.commit([commit_of("t1")])
        await store.fetch("PRAGMA foreign_keys = ON")
        await store.fetch("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await store.fetch(
            "CREATE TABLE orphan (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        for when in ("INSERT", "UPDATE"):
            await store.fetch(
                f"CREATE TRIGGER refuse_{when.lower()} AFTER {when} ON streams "
                "BEGIN INSERT INTO orphan VALUES (1); END"
            )
        with pytest.raises(StoreError) as caught:
            await store.commit([commit_of("t2")], dead_rows(3, 100))
        assert "FOREIGN KEY" in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        assert (await store.load_streams())[0].checkpoint.token == "t1"
        assert await store.fetch("SELECT COUNT(*) FROM dead_letters") == [(0,)]
        await store.heartbeat(now_ms())  # a new transaction can begin

        for when in ("insert", "update"):
            await store.fetch(f"DROP TRIGGER refuse_{when}")
        await store.commit([commit_of("t2")], dead_rows(3, 100))
        assert (await store.load_streams())[0].checkpoint.token == "t2"
        assert await store.fetch("SELECT COUNT(*) FROM dead_letters") == [(3,)]
    finally:
        await store.aclose()


async def test_every_read_of_a_locked_database_is_a_retriable_store_error(tmp_path: Path) -> None:
    """Item 7 for the reads: journal mode ``delete`` (the EFS setting), another
    process holding an exclusive lock (a long write, ``reset`` from a shell):
    every read the service and the commands make raises the project's
    retriable error, never a raw ``sqlite3`` one, and works once the lock is
    gone."""
    path = tmp_path / "cwc.db"
    store = await held_store(path, "delete")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.fetch("PRAGMA busy_timeout = 50")  # not 30 s for a test
        reads = {
            "lease_info": store.lease_info,
            "load_groups": store.load_groups,
            "load_streams": store.load_streams,
            "load_group_info": store.load_group_info,
            "count_dead_letters_pending": store.count_dead_letters_pending,
            "load_dead_letters": lambda: store.load_dead_letters(10),
        }
        other.execute("BEGIN EXCLUSIVE")
        for name, read in reads.items():
            with pytest.raises(StoreError) as caught:
                await read()
            assert caught.value.retriable and "locked" in str(caught.value), name
            assert isinstance(caught.value.__cause__, sqlite3.Error), name
        other.execute("ROLLBACK")
        for read in reads.values():
            await read()
    finally:
        other.close()
        await store.aclose()


# -- an unwritable WAL shared-memory file (item 13) ---------------------------------


def _unwritable(path: Path) -> Callable[[], None] | None:
    """Make ``path`` unwritable for this process; returns how to undo it, or
    None where that cannot be done (root ignores the mode: the immutable
    attribute is tried then)."""
    path.chmod(0o444)
    if not os.access(path, os.W_OK):
        return lambda: path.chmod(0o644)
    try:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, timeout=10)
    except OSError:
        done = None
    if done is not None and done.returncode == 0 and not os.access(path, os.W_OK):

        def undo() -> None:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, timeout=10)
            path.chmod(0o644)

        return undo
    path.chmod(0o644)
    return None


async def test_an_unwritable_wal_shared_memory_file_is_noticed(tmp_path: Path) -> None:
    """Item 13: SQLite dies of SIGBUS on its next use of a ``-shm`` file it can
    no longer write. The heartbeat's file check says so first (not
    retriable: the process stops with the cause)."""
    path = tmp_path / "cwc.db"
    store = await held_store(path, "wal")
    try:
        await store.commit([commit_of("t1")])
        shm = tmp_path / "cwc.db-shm"
        assert shm.exists()
        store.check_file()  # writable: nothing to say
        undo = _unwritable(shm)
        if undo is None:
            pytest.skip("cannot make a file unwritable here (the mode is ignored, no chattr)")
        try:
            with pytest.raises(StoreError, match="no longer writable") as caught:
                store.check_file()
            assert not caught.value.retriable
            assert str(shm) in str(caught.value)
        finally:
            undo()
    finally:
        await store.aclose()
