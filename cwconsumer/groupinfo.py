"""What CloudWatch Logs says about each group read: log class, data protection, retention.

DescribeLogGroups reports per group its ``logGroupClass`` (STANDARD,
INFREQUENT_ACCESS or DELIVERY: GetLogEvents may be refused for the latter
two), its ``dataProtectionStatus`` (messages arrive masked unless
``CWC_UNMASK`` is on) and its ``retentionInDays``. This stage reads them for
every group the service reads — at once for a group just found, then hourly
— keeps them for ``/stats`` and the reader, and writes them to the database,
where ``cwconsumer status`` shows them without calling AWS.

It holds no events: a failure is said in the log and retried at the next
tick; the table holds one row per group read and drops the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from cwconsumer.aws import LogsClient
from cwconsumer.errors import AwsError
from cwconsumer.store import CheckpointStore, GroupInfoRow

log = logging.getLogger("cwconsumer.groupinfo")

REFRESH_S = 3600.0
"""How old a group's facts may grow before they are read again."""

RETRY_S = 300.0
"""How soon a group that was not described (a failed call, not listed) is asked again."""

PROTECTED = frozenset({"ACTIVATED", "ARCHIVED"})
"""dataProtectionStatus values under which GetLogEvents masks messages."""


def row_of(key: str, listed: dict[str, Any], now_ms: int) -> GroupInfoRow:
    """The stored facts of one DescribeLogGroups entry."""
    retention = listed.get("retentionInDays")
    return GroupInfoRow(
        key,
        str(listed["logGroupClass"]) if listed.get("logGroupClass") else None,
        str(listed["dataProtectionStatus"]) if listed.get("dataProtectionStatus") else None,
        int(retention) if isinstance(retention, int) else None,
        now_ms,
    )


def masked(row: GroupInfoRow | None, unmask: bool) -> bool:
    """Whether this group's messages arrive masked."""
    return row is not None and row.data_protection in PROTECTED and not unmask


class GroupInfo:
    """Keeps :attr:`rows` (group key → facts) fresh for the groups read."""

    def __init__(
        self,
        logs: LogsClient,
        store: CheckpointStore,
        groups: Callable[[], Iterable[str]],
        *,
        tick_s: float,
        refresh_s: float = REFRESH_S,
        unmask: bool = False,
    ) -> None:
        self._logs = logs
        self._store = store
        self._groups = groups
        self._tick_s = tick_s
        self._refresh_ms = int(refresh_s * 1000)
        self._unmask = unmask
        self._failing: set[str] = set()
        self._tried: dict[str, int] = {}  # key -> when last asked without an answer
        self.rows: dict[str, GroupInfoRow] = {}

    async def load(self) -> None:
        self.rows = await self._store.load_group_info()

    async def run(self, ok: Callable[[], None] | None = None) -> None:
        """Runs until cancelled; ``ok()`` after every refresh that completed
        (a failure reported in /healthz is cleared by the next one that works)."""
        while True:
            await self.refresh()
            if ok is not None:
                ok()
            await anyio.sleep(self._tick_s)

    async def refresh(self, now_ms: int | None = None) -> None:
        """Read the facts of every group read that is new or older than the
        refresh interval; store them; drop those of groups no longer read."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        keys = sorted(set(self._groups()))
        fresh: list[GroupInfoRow] = []
        for key in keys:
            known = self.rows.get(key)
            if known is not None and now - known.checked_ms < self._refresh_ms:
                continue
            if now - self._tried.get(key, -(10**15)) < RETRY_S * 1000:
                continue
            self._tried[key] = now
            try:
                listed = await self._logs.describe_group(key)
            except AwsError as exc:
                if key not in self._failing:
                    self._failing.add(key)
                    log.warning(
                        "cannot read the group's class and data protection (DescribeLogGroups)",
                        extra={"group": key, "error": str(exc)},
                    )
                continue
            self._failing.discard(key)
            if listed is None:
                continue  # gone, or not listed yet: discovery tells
            del self._tried[key]
            row = row_of(key, listed, now)
            if masked(row, self._unmask) and not masked(known, self._unmask):
                log.warning(
                    "the group has data protection on: its messages arrive masked "
                    "(CWC_UNMASK=true reads them unmasked; needs logs:Unmask)",
                    extra={"group": key, "data_protection": row.data_protection},
                )
            fresh.append(row)
        read = set(keys)
        for k in [k for k in self._tried if k not in read]:
            del self._tried[k]
        self._failing &= read
        gone = [k for k in self.rows if k not in read]
        if not fresh and not gone:
            return
        await self._store.save_group_info(fresh, keys)
        for row in fresh:
            self.rows[row.name] = row
        for k in gone:
            del self.rows[k]
