"""Per-stream state machine and the fair "which stream is due" schedule.

States (one enum, shown by ``status`` and ``/stats``)::

    new ──first page──▶ reading ──same token back──▶ tailing ──quiet for the
     ▲                    ▲  ▲                         │        grace window──▶ idle
     │                    │  └────events again─────────┘                          │
     │                    └──────discovery sees a newer lastEventTime/Ingestion───┘
     └── re-created after deletion ◀── deleted (ResourceNotFoundException; no polling)

``reading``: a backlog; the stream is due again at once (behind every other
due stream, so a huge backlog cannot starve the rest). ``tailing``: caught up;
polled with a back-off up to ``CWC_POLL_INTERVAL``. ``idle``: caught up and
quiet beyond the grace window, not polled until discovery reports activity
(stream timestamps are eventually consistent, hence the grace window).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from dataclasses import dataclass, field

import anyio

from cwconsumer.model import Checkpoint, StreamKey


class State(enum.Enum):
    NEW = "new"
    READING = "reading"
    TAILING = "tailing"
    IDLE = "idle"
    DELETED = "deleted"


@dataclass(slots=True, eq=False)
class StreamState:
    key: StreamKey
    committed: Checkpoint
    read_pos: Checkpoint
    state: State = State.NEW
    created_ms: int | None = None
    last_event_seen_ms: int | None = None
    last_ingestion_seen_ms: int | None = None
    last_read_ms: int | None = None  # wall clock of the last page with events
    idle_polls: int = 0  # consecutive end-of-stream answers
    empty_pages: int = 0  # consecutive empty pages with a new token
    scheduled: bool = False
    busy: bool = False  # a worker holds it
    pending_events: int = 0  # read, not yet confirmed
    events_in: int = 0
    events_out: int = 0
    dead_lettered: int = 0
    delivered_total: int = 0
    last_error: str | None = None
    checkpoint_ms: int | None = None
    shaper: object | None = field(default=None, repr=False)
    generation: int = 0  # bumped when checkpoints are forgotten (stream re-created)
    sched_seq: int = -1  # the schedule entry that is current
    sched_due: float = 0.0

    @property
    def last_activity_ms(self) -> int:
        return max(self.last_read_ms or 0, self.last_ingestion_seen_ms or 0, self.created_ms or 0)

    def has_unread_activity(self) -> bool:
        """Discovery reports an event later than anything we have read."""
        seen = self.last_event_seen_ms
        if seen is None:
            return False
        last = self.read_pos.last_ts
        if last is None:
            start = self.read_pos.start_time_ms
            return start is None or seen >= start
        return seen > last


class Schedule:
    """Min-heap of (due time, sequence) → stream. A stream is in it at most
    once; workers take the earliest due one. Ties are served in the order they
    became due, which makes backlogged streams take turns."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, StreamState]] = []
        self._seq = itertools.count()
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, st: StreamState, delay_s: float = 0.0) -> None:
        """Make ``st`` due after ``delay_s``; an earlier due time wins over a
        later one already scheduled. Busy or deleted streams are left alone
        (the worker holding one reschedules it when done)."""
        if st.busy or st.state is State.DELETED:
            return
        due = time.monotonic() + delay_s
        if st.scheduled and st.sched_due <= due:
            return
        st.scheduled = True
        st.sched_due = due
        st.sched_seq = next(self._seq)
        heapq.heappush(self._heap, (due, st.sched_seq, st))
        if self._heap[0][2] is st:
            self._changed.set()
            self._changed = anyio.Event()

    async def take(self) -> StreamState:
        """Wait for the earliest due stream (bounded sleeps; wakes on changes)."""
        while True:
            while self._heap and (
                not self._heap[0][2].scheduled or self._heap[0][1] != self._heap[0][2].sched_seq
            ):
                heapq.heappop(self._heap)  # cancelled or superseded entries
            event = self._changed
            if self._heap:
                due, _, st = self._heap[0]
                wait = due - time.monotonic()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    st.scheduled = False
                    st.busy = True
                    return st
                with anyio.move_on_after(min(wait, 60.0)):
                    await event.wait()
            else:
                with anyio.move_on_after(60.0):
                    await event.wait()

    def put_back(self, st: StreamState) -> None:
        """Return a stream just taken, in the very place it had (same due time
        and sequence), e.g. because there is no memory budget to read it now."""
        st.busy = False
        st.scheduled = True
        heapq.heappush(self._heap, (st.sched_due, st.sched_seq, st))
        if self._heap[0][2] is st:
            self._changed.set()
            self._changed = anyio.Event()

    def cancel(self, st: StreamState) -> None:
        """Forget a scheduled stream (it is skipped when it reaches the top)."""
        st.scheduled = False
