"""The checkpoint database: the single-writer lease, checkpoints, dead letters.

Every write made by a ``run`` is *fenced*: it happens in one ``BEGIN IMMEDIATE``
transaction that first checks the lease still names this process and epoch, so
a process that lost the lease (it stalled, another took over) can never move a
checkpoint again.

Every sqlite3 error is translated here, at the edge, into :class:`StoreError`
with ``retriable`` set where trying again may help (``database is locked``,
busy, ``database or disk is full``, I/O errors): the caller retries those
within a bound and stops the process (exit 1, the cause logged) after it. A
read-only or corrupt database is not retriable. No raw ``sqlite3`` exception
leaves this module.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite
import anyio

from cwconsumer.errors import LeaseLost, SchemaTooNew, StoreError, StoreGone
from cwconsumer.model import Checkpoint, Commit, DeadLetter, StreamKey
from cwconsumer.store.files import (
    detect_journal_mode,
    edge,
    file_id,
    journal_mode_of,
    load_migrations,
    prepare_path,
    split_sql,
    translate,
)
from cwconsumer.store.operator import OperatorQueries, rollback
from cwconsumer.store.rows import GroupInfoRow, GroupRow, LeaseInfo, StreamMeta, StreamRow

_STREAM_COLS = (
    "group_name, stream_name, created_ms, token, start_time_ms, skip, last_ts, last_ord, "
    "delivered, dead_lettered, state, last_event_seen_ms, last_ingestion_seen_ms, "
    "last_read_ms, checkpoint_ms"
)


def _stream_row(r: Sequence[Any]) -> StreamRow:
    return StreamRow(
        key=StreamKey(r[0], r[1]),
        created_ms=r[2],
        checkpoint=Checkpoint(r[3], r[4], r[5], r[6], r[7]),
        delivered=r[8],
        dead_lettered=r[9],
        state=r[10],
        last_event_seen_ms=r[11],
        last_ingestion_seen_ms=r[12],
        last_read_ms=r[13],
        checkpoint_ms=r[14],
    )


class Store(OperatorQueries):
    """The checkpoint database. Open with :meth:`open`; close with :meth:`aclose`.

    Writes from a consuming ``run`` pass ``owner``/``epoch`` obtained from
    :meth:`acquire_lease`; commands that do not consume (``reset``,
    ``dead-letters``) write only while no live lease exists.
    """

    def __init__(self, conn: aiosqlite.Connection, path: str, journal_mode: str) -> None:
        self._db = conn
        self.path = path
        self.journal_mode = journal_mode
        self._lock = anyio.Lock()
        self._owner: str | None = None
        self._epoch = 0
        self._file_id = file_id(path)
        self.renewed_mono = 0.0
        """``time.monotonic()`` of the last write that proved the lease ours."""

    # -- opening -----------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str,
        journal_mode: str | None = None,
        *,
        create: bool = True,
        migrate: bool = True,
    ) -> Store:
        """Open (creating directories and the file when ``create``), check it is
        ours, apply pending migrations. A foreign or corrupt file is refused,
        never overwritten; a database newer than this code is refused."""
        path = prepare_path(path, create)
        # Commands that only look or patch (status, dead-letters, reset: migrate
        # False) keep the file's journal mode unless told one: switching it under
        # a running `run`, or to WAL on EFS, would do harm.
        mode = journal_mode or (detect_journal_mode(path) if migrate else "")
        try:
            conn = await aiosqlite.connect(path, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        store = cls(conn, path, mode)
        try:
            with edge(path, "cannot open database"):
                await store._setup(migrate)
        except BaseException:
            await conn.close()
            raise
        return store

    @classmethod
    async def open_existing(cls, path: str) -> Store:
        """Open an existing database as it is, for the operator's commands:
        same journal mode (read from the file header), no migrations."""
        return await cls.open(path, journal_mode_of(path), create=False, migrate=False)

    async def _setup(self, migrate: bool) -> None:
        # Only reads until the file is known to be ours and not too new: even
        # `PRAGMA journal_mode = WAL` rewrites the header of a foreign file.
        try:
            await self._db.execute("PRAGMA busy_timeout = 30000")
            tables = {
                r[0]
                for r in await self._db.execute_fetchall(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a usable SQLite database ({exc}); left untouched"
            ) from exc
        if tables and "schema_version" not in tables:
            raise StoreError(
                f"{self.path} is an SQLite database of another program "
                f"(tables: {', '.join(sorted(tables)[:5])}); left untouched"
            )
        known = load_migrations()
        latest = known[-1][0] if known else 0
        current = 0
        if "schema_version" in tables:
            rows = await self._db.execute_fetchall("SELECT MAX(version) FROM schema_version")
            current = int(next(iter(rows))[0] or 0)
        if current > latest:
            raise SchemaTooNew(
                f"{self.path} was written by a newer cwconsumer (schema {current}, "
                f"this version knows up to {latest}); upgrade cwconsumer"
            )
        if current < latest and not migrate:
            raise StoreError(f"{self.path} needs migrations; start `cwconsumer run` once")
        try:
            if self.journal_mode:
                await self._db.execute(f"PRAGMA journal_mode = {self.journal_mode.upper()}")
            # What the file really uses (a switch can be refused while others read it).
            rows = await self._db.execute_fetchall("PRAGMA journal_mode")
            self.journal_mode = str(next(iter(rows))[0]).lower()
            # NORMAL is durable against a crashed process (SIGKILL) in WAL mode;
            # FULL is kept for the rollback journal where NORMAL is not.
            sync = "NORMAL" if self.journal_mode == "wal" else "FULL"
            await self._db.execute(f"PRAGMA synchronous = {sync}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot set the journal mode of {self.path}: {exc}") from exc
        for version, name, sql in known:
            if version <= current:
                continue
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                if version == 1:
                    await self._db.execute(
                        "CREATE TABLE IF NOT EXISTS schema_version "
                        "(version INTEGER NOT NULL, applied_ms INTEGER NOT NULL, name TEXT)"
                    )
                await _run_script(self._db, sql)
                await self._db.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)", (version, _now_ms(), name)
                )
                await self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                await rollback(self._db)
                raise translate(exc, self.path, f"migration {name} failed on") from exc

    async def aclose(self) -> None:
        """Close the connection."""
        await self._db.close()

    # -- lease -------------------------------------------------------------

    async def lease_info(self) -> LeaseInfo:
        """The lease row as it is now (not fenced: any process may look)."""
        with edge(self.path, "cannot read the lease in"):
            rows = list(
                await self._db.execute_fetchall(
                    "SELECT owner, epoch, heartbeat_ms, host, pid FROM lease WHERE id = 1"
                )
            )
        r = rows[0]
        return LeaseInfo(r[0], r[1], r[2], r[3], r[4])

    async def acquire_lease(
        self, owner: str, now_ms: int, ttl_ms: int, host: str, pid: int
    ) -> int | None:
        """Take the lease if it is free or its holder stopped heart-beating for
        ``ttl_ms``. Returns the new epoch, or None while another holds it."""
        async with self._lock:
            try:
                with edge(self.path, "cannot take the lease in"):
                    await self._db.execute("BEGIN IMMEDIATE")
                    info = await self.lease_info()
                    if info.live(now_ms, ttl_ms) and info.owner != owner:
                        await self._db.execute("ROLLBACK")
                        return None
                    epoch = info.epoch + 1
                    await self._db.execute(
                        "UPDATE lease SET owner = ?, epoch = ?, heartbeat_ms = ?, host = ?, "
                        "pid = ? WHERE id = 1",
                        (owner, epoch, now_ms, host, pid),
                    )
                    await self._db.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await rollback(self._db)
                raise
        self._owner, self._epoch = owner, epoch
        self.renewed_mono = time.monotonic()
        return epoch

    async def heartbeat(self, now_ms: int) -> None:
        """Renew the lease; raises :class:`LeaseLost` if another took it."""
        started = time.monotonic()
        async with self._fenced() as db:
            await db.execute("UPDATE lease SET heartbeat_ms = ? WHERE id = 1", (now_ms,))
        self.renewed_mono = started

    async def prove_lease(self, fresh_s: float, now_ms: int | None = None) -> None:
        """Before an action that must not happen without the lease (sending a
        batch): if the lease was not renewed within ``fresh_s`` (the process
        was frozen, or its heartbeat is failing), renew it now, which raises
        :class:`LeaseLost` when another process took it meanwhile."""
        if time.monotonic() - self.renewed_mono <= fresh_s:
            return
        await self.heartbeat(_now_ms() if now_ms is None else now_ms)

    def check_file(self) -> None:
        """Raise :class:`StoreGone` when the path no longer names the open file
        (its directory or file was removed or replaced: every later write would
        go to a deleted file and a restart would start from an empty database),
        and a not-retriable :class:`StoreError` when WAL's ``-shm`` file became
        unwritable (SQLite would die of SIGBUS on its next use)."""
        now = file_id(self.path)
        if self._file_id is not None and now != self._file_id:
            what = "removed" if now is None else "replaced by another file"
            raise StoreGone(
                f"the database {self.path} was {what} while in use; stopping "
                "(restore it or point CWC_DB_PATH at the right file)"
            )
        if self.journal_mode == "wal":
            shm = self.path + "-shm"
            if os.path.exists(shm) and not os.access(shm, os.W_OK):
                raise StoreError(f"{shm} is no longer writable; stopping")

    async def release_lease(self) -> None:
        """Give the lease up at a clean stop so a standby takes over at once."""
        if self._owner is None:
            return
        try:
            async with self._fenced() as db:
                await db.execute("UPDATE lease SET owner = NULL, heartbeat_ms = 0 WHERE id = 1")
        except LeaseLost:
            pass
        finally:
            self._owner = None

    def _fenced(self) -> _Fenced:
        if self._owner is None:
            raise LeaseLost("this process does not hold the lease")
        return _Fenced(self)

    # -- groups and streams -------------------------------------------------

    async def load_groups(self) -> dict[str, GroupRow]:
        """Every known group by name."""
        with edge(self.path, "cannot read"):
            rows = await self._db.execute_fetchall(
                "SELECT name, first_seen_ms, start_time_ms, deleted_ms, walked_ms FROM groups"
            )
        return {r[0]: GroupRow(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def save_group_walked(self, name: str, walked_ms: int | None) -> None:
        """Record when the last complete deep walk of a group started."""
        async with self._fenced() as db:
            await db.execute("UPDATE groups SET walked_ms = ? WHERE name = ?", (walked_ms, name))

    async def prune_streams(self, keys: Sequence[StreamKey]) -> None:
        """Forget streams (fully delivered and gone, or idle beyond
        ``CWC_FORGET_AFTER``): their rows are deleted."""
        if not keys:
            return
        async with self._fenced() as db:
            await db.executemany(
                "DELETE FROM streams WHERE group_name = ? AND stream_name = ?",
                [(k.group, k.stream) for k in keys],
            )

    async def load_streams(self, group: str | None = None) -> list[StreamRow]:
        """Every known stream (of ``group``), by group and stream name."""
        sql = f"SELECT {_STREAM_COLS} FROM streams"
        args: tuple[Any, ...] = ()
        if group is not None:
            sql += " WHERE group_name = ?"
            args = (group,)
        with edge(self.path, "cannot read"):
            rows = await self._db.execute_fetchall(sql + " ORDER BY group_name, stream_name", args)
        return [_stream_row(r) for r in rows]

    async def save_group(self, row: GroupRow) -> None:
        """Insert or replace a group's row."""
        async with self._fenced() as db:
            await db.execute(
                "INSERT INTO groups (name, first_seen_ms, start_time_ms, deleted_ms, walked_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "first_seen_ms = excluded.first_seen_ms, start_time_ms = excluded.start_time_ms, "
                "deleted_ms = excluded.deleted_ms, walked_ms = excluded.walked_ms",
                (row.name, row.first_seen_ms, row.start_time_ms, row.deleted_ms, row.walked_ms),
            )

    async def load_group_info(self) -> dict[str, GroupInfoRow]:
        """What DescribeLogGroups last said about each group read."""
        with edge(self.path, "cannot read"):
            rows = await self._db.execute_fetchall(
                "SELECT name, log_class, data_protection, retention_days, checked_ms "
                "FROM group_info"
            )
        return {r[0]: GroupInfoRow(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def save_group_info(self, rows: Sequence[GroupInfoRow], keep: Iterable[str]) -> None:
        """Write ``rows`` and drop the rows of groups not in ``keep`` (no
        longer read): the table is bounded by the groups read."""
        keep = set(keep)
        async with self._fenced() as db:
            await db.executemany(
                "INSERT INTO group_info (name, log_class, data_protection, retention_days, "
                "checked_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "log_class = excluded.log_class, data_protection = excluded.data_protection, "
                "retention_days = excluded.retention_days, checked_ms = excluded.checked_ms",
                [
                    (r.name, r.log_class, r.data_protection, r.retention_days, r.checked_ms)
                    for r in rows
                ],
            )
            gone = [
                (name,)
                for (name,) in await db.execute_fetchall("SELECT name FROM group_info")
                if name not in keep
            ]
            await db.executemany("DELETE FROM group_info WHERE name = ?", gone)

    async def forget_streams(self, group: str, streams: Iterable[str] | None = None) -> None:
        """Drop checkpoints (a deleted group or stream that was created again)."""
        async with self._fenced() as db:
            if streams is None:
                await db.execute("DELETE FROM streams WHERE group_name = ?", (group,))
            else:
                await db.executemany(
                    "DELETE FROM streams WHERE group_name = ? AND stream_name = ?",
                    [(group, s) for s in streams],
                )

    async def add_streams(
        self, rows: Sequence[StreamRow], *, replace: Iterable[StreamKey] = ()
    ) -> None:
        """Insert newly found streams. An existing row is kept (its checkpoint
        may already have moved), except for keys in ``replace``: streams created
        again, whose old checkpoint means nothing."""
        if not rows:
            return
        replace = set(replace)
        async with self._fenced() as db:
            if replace:
                await db.executemany(
                    "DELETE FROM streams WHERE group_name = ? AND stream_name = ?",
                    [(k.group, k.stream) for k in replace],
                )
            await db.executemany(
                f"INSERT OR IGNORE INTO streams ({_STREAM_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.key.group,
                        r.key.stream,
                        r.created_ms,
                        r.checkpoint.token,
                        r.checkpoint.start_time_ms,
                        r.checkpoint.skip,
                        r.checkpoint.last_ts,
                        r.checkpoint.last_ord,
                        r.delivered,
                        r.dead_lettered,
                        r.state,
                        r.last_event_seen_ms,
                        r.last_ingestion_seen_ms,
                        r.last_read_ms,
                        r.checkpoint_ms,
                    )
                    for r in rows
                ],
            )

    async def save_meta(self, metas: Sequence[StreamMeta]) -> None:
        """Update streams' discovery/reader facts (not their checkpoints)."""
        if not metas:
            return
        async with self._fenced() as db:
            await db.executemany(
                "UPDATE streams SET state = ?, last_event_seen_ms = ?, "
                "last_ingestion_seen_ms = ?, last_read_ms = ? "
                "WHERE group_name = ? AND stream_name = ?",
                [
                    (
                        m.state,
                        m.last_event_seen_ms,
                        m.last_ingestion_seen_ms,
                        m.last_read_ms,
                        m.key.group,
                        m.key.stream,
                    )
                    for m in metas
                ],
            )

    async def commit(
        self, commits: Sequence[Commit], dead: Sequence[DeadLetter] = (), now_ms: int | None = None
    ) -> None:
        """Move checkpoints and record dead letters in ONE fenced transaction."""
        now = now_ms if now_ms is not None else _now_ms()
        async with self._fenced() as db:
            if dead:
                await db.executemany(
                    "INSERT INTO dead_letters (group_name, stream_name, event_id, timestamp_ms, "
                    "document, status, answer, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            d.key.group,
                            d.key.stream,
                            d.event_id,
                            d.timestamp_ms,
                            d.document,
                            d.status,
                            d.answer,
                            now,
                        )
                        for d in dead
                    ],
                )
            if commits:
                await db.executemany(
                    # An upsert: a checkpoint is never dropped, even if its row
                    # were not there (yet).
                    "INSERT INTO streams (group_name, stream_name, token, start_time_ms, "
                    "skip, last_ts, last_ord, delivered, dead_lettered, checkpoint_ms, state) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reading') "
                    "ON CONFLICT (group_name, stream_name) DO UPDATE SET "
                    "token = excluded.token, start_time_ms = excluded.start_time_ms, "
                    "skip = excluded.skip, last_ts = excluded.last_ts, "
                    "last_ord = excluded.last_ord, "
                    "delivered = delivered + excluded.delivered, "
                    "dead_lettered = dead_lettered + excluded.dead_lettered, "
                    "checkpoint_ms = excluded.checkpoint_ms",
                    [
                        (
                            c.key.group,
                            c.key.stream,
                            c.checkpoint.token,
                            c.checkpoint.start_time_ms,
                            c.checkpoint.skip,
                            c.checkpoint.last_ts,
                            c.checkpoint.last_ord,
                            c.delivered,
                            c.dead_lettered,
                            now,
                        )
                        for c in commits
                    ],
                )


class _Fenced:
    """``async with store._fenced() as db``: one IMMEDIATE transaction that
    first proves this process still holds the lease at its epoch."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __aenter__(self) -> aiosqlite.Connection:
        s = self._store
        await s._lock.acquire()
        try:
            try:
                with edge(s.path, "cannot write"):
                    await s._db.execute("BEGIN IMMEDIATE")
                    rows = list(
                        await s._db.execute_fetchall("SELECT owner, epoch FROM lease WHERE id = 1")
                    )
            except BaseException:
                # Even when cancelled while BEGIN waits for the database lock,
                # aiosqlite's thread still completes it: roll back (queued after
                # it) or the connection stays inside a transaction for good.
                with anyio.CancelScope(shield=True):
                    await rollback(s._db)
                raise
            if rows[0][0] != s._owner or rows[0][1] != s._epoch:
                with anyio.CancelScope(shield=True):
                    await rollback(s._db)
                raise LeaseLost(
                    f"the lease on {s.path} was taken by {rows[0][0] or 'nobody'} "
                    f"(epoch {rows[0][1]}); this process stops writing"
                )
        except BaseException:
            s._lock.release()
            raise
        return s._db

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        s = self._store
        try:
            if exc is None:
                # Shielded: a cancellation here could leave the transaction open
                # on the connection, and every later write would fail.
                with anyio.CancelScope(shield=True):
                    try:
                        await s._db.execute("COMMIT")
                    except sqlite3.Error as e:
                        await rollback(s._db)
                        raise translate(e, s.path, "cannot write") from e
            else:
                with anyio.CancelScope(shield=True):
                    await rollback(s._db)
                if isinstance(exc, sqlite3.Error):  # a statement of the body
                    raise translate(exc, s.path, "cannot write") from exc
        finally:
            s._lock.release()


async def _run_script(db: aiosqlite.Connection, sql: str) -> None:
    """Run a migration's statements inside the current transaction
    (``executescript`` would COMMIT first)."""
    for stmt in split_sql(sql):
        await db.execute(stmt)


def _now_ms() -> int:
    return int(time.time() * 1000)
