"""Per-stream state machine and the poll policy: which stream is read next.

States (one enum, shown by ``status`` and ``/stats``)::

    new ──first page──▶ reading ──same token back──▶ tailing ──quiet for
     ▲                    ▲  ▲                         │     CWC_IDLE_GRACE──▶ idle ──idle for
     │                    │  └────events again─────────┘                        │  CWC_FORGET_AFTER──▶ forgotten
     │                    └──────discovery sees a newer lastEventTime/Ingestion─┘       (row pruned)
     └── re-created after deletion ◀── deleted (ResourceNotFoundException; no polling)

The policy follows the data (see docs/freshness.md):

- two tiers. ``HOT``: new streams, streams discovery reports with unread
  activity, and streams whose last page had events; ``QUIET``: caught-up
  streams (their last answer was "end of stream"). A due hot stream is
  always taken before a due quiet one, except that quiet streams are
  guaranteed :data:`QUIET_SHARE` of the takes while hot ones wait, so a
  quiet stream is never starved for good;
- a quiet stream's re-check interval is :data:`QUIET_FRACTION` of the time
  it has been quiet (last events read, last ingestion reported, creation),
  at least :data:`MIN_RECHECK_S` and at most ``CWC_QUIET_POLL_INTERVAL``
  (the worst-case re-check time while its metadata may be stale). So a
  stream active within 2 x ``CWC_POLL_INTERVAL`` is re-polled within
  ``CWC_POLL_INTERVAL``, and a finished one fades geometrically;
- a quiet stream reaching its turn after ``CWC_IDLE_GRACE`` of quiet, with
  no activity reported by discovery, becomes ``idle`` without a call: from
  then on only discovery wakes it (stream metadata lags by up to an hour,
  less than the grace);
- within a tier, the earliest due first; ties in the order they became due,
  so backlogged streams take turns.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from cwconsumer.model import Checkpoint, StreamKey

QUIET_FRACTION = 0.5
"""A caught-up stream is re-checked after this fraction of its quiet time."""
MIN_RECHECK_S = 0.5
"""No caught-up stream is re-polled sooner than this."""
QUIET_SHARE = 0.02
"""Share of the takes guaranteed to due quiet streams while hot ones wait."""
_QUIET_CREDIT = QUIET_SHARE / (1.0 - QUIET_SHARE)


class State(enum.Enum):
    NEW = "new"
    READING = "reading"
    TAILING = "tailing"
    IDLE = "idle"
    DELETED = "deleted"


class Tier(enum.IntEnum):
    HOT = 0
    QUIET = 1


def quiet_delay_s(quiet_s: float, max_s: float) -> float:
    """When to re-check a caught-up stream that has been quiet ``quiet_s``
    (pure): a fraction of its quiet time, within [MIN_RECHECK_S, max_s]."""
    return min(max_s, max(MIN_RECHECK_S, QUIET_FRACTION * quiet_s))


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
    tier: Tier = Tier.HOT
    sched_tier: Tier = Tier.HOT

    @property
    def last_activity_ms(self) -> int:
        return max(self.last_read_ms or 0, self.last_ingestion_seen_ms or 0, self.created_ms or 0)

    def quiet_s(self, now_ms: int) -> float:
        return max(0.0, (now_ms - self.last_activity_ms) / 1000)

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

    def settled(self) -> bool:
        """Nothing read and undelivered, nothing known unread, no worker on it."""
        return (
            self.pending_events == 0
            and not self.busy
            and self.committed == self.read_pos
            and not self.has_unread_activity()
        )


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


def news_wait_s(st: StreamState, now_ms: int) -> float:
    """How long the news of a stream may have waited (since it was last read,
    created, or since its last ingestion reported before this one): discovery
    puts its due time that far back, so news jumps ahead of routine re-polls,
    the oldest news first."""
    since = st.last_read_ms or st.created_ms or now_ms
    return min(600.0, max(0.0, (now_ms - since) / 1000))
