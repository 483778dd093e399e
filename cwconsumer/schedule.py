"""The due-stream heaps the readers take from: which stream is read next
(the policy is described in :mod:`cwconsumer.streams`). Waiting for the next
due stream is the only async part of the stream machinery."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

import anyio

from cwconsumer.streams import State, StreamState, Tier

QUIET_SHARE = 0.02
"""Share of the takes guaranteed to due quiet streams while hot ones wait."""
_QUIET_CREDIT = QUIET_SHARE / (1.0 - QUIET_SHARE)


class Schedule:
    """Two min-heaps of (due time, sequence) → stream, one per :class:`Tier`.
    A stream is in at most one of them at a time (older entries are skipped
    lazily). Workers take the earliest due hot stream, else the earliest due
    quiet one, with :data:`QUIET_SHARE` of the takes kept for due quiet
    streams while hot ones wait.

    ``fade(st)`` is asked about every quiet stream as it comes up; when it
    returns True the stream was retired (made idle) and is not handed out.
    """

    def __init__(self, fade: Callable[[StreamState], bool] = lambda st: False) -> None:
        self._heaps: tuple[list[tuple[float, int, StreamState]], ...] = ([], [])
        self._seq = itertools.count()
        self._changed = anyio.Event()
        self._credit = 0.0
        self.fade = fade
        self.taken = [0, 0]  # per tier, for /stats and the benchmarks
        self.faded = 0

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps)

    def add(self, st: StreamState, delay_s: float = 0.0) -> None:
        """Make ``st`` due after ``delay_s`` in its tier (``st.tier``); an
        earlier due time in an equal or hotter tier wins over a later one
        already scheduled. Busy or deleted streams are left alone (the
        worker holding one reschedules it when done)."""
        if st.busy or st.state is State.DELETED:
            return
        due = time.monotonic() + delay_s
        if st.scheduled and st.sched_due <= due and st.sched_tier <= st.tier:
            return
        st.scheduled = True
        st.sched_due = due
        st.sched_tier = st.tier
        st.sched_seq = next(self._seq)
        heap = self._heaps[st.tier]
        heapq.heappush(heap, (due, st.sched_seq, st))
        if heap[0][2] is st:
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _top(self, tier: int) -> tuple[float, int, StreamState] | None:
        heap = self._heaps[tier]
        while heap and (not heap[0][2].scheduled or heap[0][1] != heap[0][2].sched_seq):
            heapq.heappop(heap)  # cancelled or superseded entries
        return heap[0] if heap else None

    def _pick(self, now: float) -> StreamState | float:
        """The stream to hand out now, or how long until one is due."""
        while True:
            hot, quiet = self._top(Tier.HOT), self._top(Tier.QUIET)
            hot_due = hot is not None and hot[0] <= now
            quiet_due = quiet is not None and quiet[0] <= now
            if quiet_due and (not hot_due or self._credit >= 1.0):
                assert quiet is not None
                if hot_due:
                    self._credit -= 1.0
                tier = Tier.QUIET
            elif hot_due:
                self._credit = min(1.0, self._credit + _QUIET_CREDIT) if quiet_due else 0.0
                tier = Tier.HOT
            else:
                dues = [e[0] for e in (hot, quiet) if e is not None]
                return min(dues) - now if dues else 60.0
            _, _, st = heapq.heappop(self._heaps[tier])
            st.scheduled = False
            if tier is Tier.QUIET and self.fade(st):
                self.faded += 1
                continue
            st.busy = True
            self.taken[tier] += 1
            return st

    async def take(self) -> StreamState:
        """Wait for the next stream to read (bounded sleeps; wakes on changes)."""
        while True:
            event = self._changed
            got = self._pick(time.monotonic())
            if isinstance(got, StreamState):
                return got
            with anyio.move_on_after(min(got, 60.0)):
                await event.wait()

    def cancel(self, st: StreamState) -> None:
        """Forget a scheduled stream (it is skipped when it reaches the top)."""
        st.scheduled = False

    def sizes(self) -> dict[str, int]:
        """Heap entries per tier (superseded entries included until popped)."""
        return {tier.name.lower(): len(self._heaps[tier]) for tier in Tier}
