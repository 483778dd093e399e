"""Per-stream state machine and the poll policy: which stream is read next.

States (one enum, shown by ``status`` and ``/stats``)::

    new ──first page──▶ reading ──same token back──▶ tailing ──quiet for
     ▲                    ▲  ▲                         │     CWC_IDLE_GRACE──▶ idle ──idle for
     │                    │  └────events again─────────┘                        │  CWC_FORGET_AFTER──▶ forgotten
     │                    └──────discovery sees a newer lastEventTime/Ingestion─┘       (row pruned)
     └── re-created after deletion ◀── deleted (ResourceNotFoundException; no polling)

The policy follows the data (see docs/freshness.md):

- two tiers (the heaps are :class:`cwconsumer.schedule.Schedule`). ``HOT``: new streams, streams discovery reports with unread
  activity, and streams whose last page had events; ``QUIET``: caught-up
  streams (their last answer was "end of stream"). A due hot stream is
  always taken before a due quiet one, except that quiet streams are
  guaranteed :data:`cwconsumer.schedule.QUIET_SHARE` of the takes while hot ones wait, so a
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
from dataclasses import dataclass, field

from cwconsumer.model import Checkpoint, StreamKey

QUIET_FRACTION = 0.5
"""A caught-up stream is re-checked after this fraction of its quiet time."""
MIN_RECHECK_S = 0.5
"""No caught-up stream is re-polled sooner than this."""


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


def news_wait_s(st: StreamState, now_ms: int) -> float:
    """How long the news of a stream may have waited (since it was last read,
    created, or since its last ingestion reported before this one): discovery
    puts its due time that far back, so news jumps ahead of routine re-polls,
    the oldest news first."""
    since = st.last_read_ms or st.created_ms or now_ms
    return min(600.0, max(0.0, (now_ms - since) / 1000))
