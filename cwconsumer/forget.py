"""Forgetting streams: the pruning rule that keeps state bounded as streams churn.

A stream is forgotten (its row deleted, then it leaves the registry) when it
is gone for AWS (deleted) or idle beyond its group's *forget window* — the
shorter of ``CWC_FORGET_AFTER`` and the group's retention — by every clock,
and in either case has nothing read and undelivered and nothing reported
unread (:meth:`cwconsumer.registry.Registry.forgettable`).

Pruning runs in discovery's task (never beside a walk): every 1/50 of the
shortest window (:data:`PRUNE_SLICES`), between discovery's ticks and
between the pages of a walk too, so the streams waiting to be forgotten at
any time are a small, steady share of those known and the known count does
not saw-tooth with the passes or with the length of a walk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
import anyio.lowlevel

from cwconsumer.model import StreamKey
from cwconsumer.registry import Registry
from cwconsumer.schedule import Schedule
from cwconsumer.store import CheckpointStore
from cwconsumer.streams import Tier

log = logging.getLogger("cwconsumer.discovery")

PRUNE_EVERY_S = 300.0
PRUNE_SLICES = 50
"""Pruning runs every forget window / this (at most every PRUNE_EVERY_S, at
least every MIN_PRUNE_EVERY_S), so the streams waiting to be forgotten at
any time are at most ~1/50 of those known: the known count does not
saw-tooth with the passes."""
MIN_PRUNE_EVERY_S = 0.5
PRUNE_BATCH = 500
DAY_MS = 86_400_000


class Forgetter:
    """The forget windows and the pruning passes (called by discovery:
    :meth:`settle` once a tick, :meth:`if_due` between walks and pages,
    :meth:`sleep` between ticks)."""

    def __init__(
        self,
        store: CheckpointStore,
        registry: Registry,
        schedule: Schedule,
        *,
        forget_after_s: float | None,
        retention_days: Callable[[str], int | None],
    ) -> None:
        self._store = store
        self._reg = registry
        self._schedule = schedule
        self._forget_ms = None if forget_after_s is None else int(forget_after_s * 1000)
        self._retention_days = retention_days
        self._pruned_ms = _now_ms()
        self._every_ms: float | None = None  # (worked out at each tick: retention may change)

    def window_ms(self, group: str) -> int | None:
        """After how long idle a settled stream of ``group`` is forgotten: the
        shorter of ``CWC_FORGET_AFTER`` and the group's retention (past it,
        AWS has deleted or is deleting every event the stream held). None:
        never (no window configured and no retention)."""
        days = self._retention_days(group)
        if not days or days <= 0:
            return self._forget_ms
        retention = days * DAY_MS
        return retention if self._forget_ms is None else min(self._forget_ms, retention)

    def settle(self) -> None:
        """Work out the pass interval from the current windows (once a tick)."""
        windows = [w for w in map(self.window_ms, self._reg.groups) if w is not None]
        if self._forget_ms is not None:
            windows.append(self._forget_ms)
        if not windows:
            self._every_ms = None
            return
        every = min(PRUNE_EVERY_S * 1000, min(windows) / PRUNE_SLICES)
        self._every_ms = max(MIN_PRUNE_EVERY_S * 1000, every)

    async def if_due(self) -> None:
        """A pass, if one is due."""
        every_ms = self._every_ms
        if every_ms is not None and _now_ms() - self._pruned_ms >= every_ms:
            await self.prune()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, with a pass whenever one is due meanwhile."""
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            every = self._every_ms
            due_in = left if every is None else (self._pruned_ms + every - _now_ms()) / 1000
            await anyio.sleep(max(0.0, min(left, due_in)))
            await self.if_due()

    async def prune(self) -> int:
        """Forget streams that are gone, or idle beyond their group's forget
        window, with nothing undelivered: their rows are deleted, then they
        leave the registry. Yields to the event loop every few thousand
        streams. Returns how many were forgotten."""
        now = _now_ms()
        self._pruned_ms = now
        candidates: list[StreamKey] = []
        windows: dict[str, int | None] = {}
        for i, st in enumerate(list(self._reg.streams.values())):
            if st.tier is Tier.QUIET and not st.busy and self._schedule.fade(st):
                # Quiet past the grace with nothing reported, but its turn in
                # a busy quiet tier has not come: idle now, without a call.
                self._schedule.cancel(st)
            group = st.key.group
            window = (
                windows[group]
                if group in windows
                else windows.setdefault(group, self.window_ms(group))
            )
            if self._reg.forgettable(st, now, window):
                candidates.append(st.key)
            if i % 5000 == 4999:
                await anyio.lowlevel.checkpoint()
        done = 0
        for i in range(0, len(candidates), PRUNE_BATCH):
            batch = candidates[i : i + PRUNE_BATCH]
            await self._store.prune_streams(batch)
            for key in batch:
                again = self._reg.streams.get(key)
                # Looked at again: discovery is this task, but a worker may
                # have taken a deleted stream meanwhile.
                if again is not None and self._reg.forgettable(again, now, windows[key.group]):
                    self._reg.remove(key)
                    done += 1
        self._reg.forgotten += done
        if done:
            log.info("streams forgotten", extra={"count": done, "known": len(self._reg)})
        return done


def _now_ms() -> int:
    return int(time.time() * 1000)
