"""The named queries of the operator's commands (``status``, ``reset``,
``dead-letters``), which read and patch the database without holding the
lease: part of :class:`~cwconsumer.store.Store`, kept apart from the fenced
writes of a ``run``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
import anyio

from cwconsumer.model import StreamKey
from cwconsumer.store.files import edge
from cwconsumer.store.rows import DeadLetterRow


class OperatorQueries:
    """Mixed into :class:`~cwconsumer.store.Store` (which sets these attributes)."""

    _db: aiosqlite.Connection
    _lock: anyio.Lock
    path: str

    async def count_dead_letters_pending(self) -> int:
        """Dead letters not replayed yet."""
        with edge(self.path, "cannot read"):
            rows = await self._db.execute_fetchall(
                "SELECT COUNT(*) FROM dead_letters WHERE replayed_ms IS NULL"
            )
        return int(next(iter(rows))[0])

    async def load_dead_letters(
        self, limit: int, *, pending_only: bool = False
    ) -> list[DeadLetterRow]:
        """The first ``limit`` dead letters, oldest first (``pending_only``:
        those not replayed yet)."""
        sql = (
            "SELECT id, group_name, stream_name, event_id, timestamp_ms, status, answer, "
            "created_ms, replayed_ms, document FROM dead_letters"
        )
        if pending_only:
            sql += " WHERE replayed_ms IS NULL"
        with edge(self.path, "cannot read"):
            rows = await self._db.execute_fetchall(sql + " ORDER BY id LIMIT ?", (limit,))
        return [
            DeadLetterRow(r[0], StreamKey(r[1], r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9])
            for r in rows
        ]

    async def mark_replayed(self, dead_letter_id: int, now_ms: int) -> None:
        """Record that the sink confirmed a replayed dead letter. Not fenced:
        it touches nothing a ``run`` writes."""
        await self._unfenced_write(
            "UPDATE dead_letters SET replayed_ms = ? WHERE id = ?", (now_ms, dead_letter_id)
        )

    async def reset_checkpoints(
        self,
        group: str,
        stream: str | None,
        start_ms: int | None,
        *,
        now_ms: int,
        lease_stale_before_ms: int,
    ) -> int:
        """``reset``: the streams of ``group`` (or its one ``stream``) read
        again from ``start_ms`` (None: their beginning), unless a run renewed
        the lease after ``lease_stale_before_ms``. That check is part of the
        statement itself, so a run starting between a separate check and the
        write could not slip in. Returns the number of streams moved (0:
        refused, or nothing matched)."""
        sql = (
            "UPDATE streams SET token = NULL, start_time_ms = ?, skip = 0, last_ts = NULL, "
            "last_ord = -1, state = 'new', checkpoint_ms = ? WHERE group_name = ?"
        )
        params: list[Any] = [start_ms, now_ms, group]
        if stream is not None:
            sql += " AND stream_name = ?"
            params.append(stream)
        sql += (
            " AND NOT EXISTS (SELECT 1 FROM lease WHERE id = 1 AND owner IS NOT NULL "
            "AND heartbeat_ms > ?)"
        )
        params.append(lease_stale_before_ms)
        return await self._unfenced_write(sql, params)

    async def _unfenced_write(self, sql: str, args: Sequence[Any] = ()) -> int:
        """For ``reset`` / ``dead-letters``: one IMMEDIATE transaction, not fenced.
        The lease is the caller's business. Returns the number of rows changed."""
        async with self._lock:
            try:
                with edge(self.path, "cannot write"):
                    await self._db.execute("BEGIN IMMEDIATE")
                    cur = await self._db.execute(sql, args)
                    count = cur.rowcount
                    await self._db.execute("COMMIT")
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await rollback(self._db)
                raise
        return count

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Any read, for tests and benchmarks that look inside (the product
        itself uses the named methods above)."""
        with edge(self.path, "cannot read"):
            return [tuple(r) for r in await self._db.execute_fetchall(sql, args)]


async def rollback(db: aiosqlite.Connection) -> None:
    """Roll back the connection's transaction, if any (never raises)."""
    try:
        await db.execute("ROLLBACK")
    except sqlite3.Error:
        pass
