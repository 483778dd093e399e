"""Flow control between stages: the memory budget and the lane channels.

:class:`Budget` bounds everything read but not yet confirmed (events and
bytes). Readers reserve before they fetch, so a slow or dead sink makes them
wait instead of growing the buffer. :class:`Channel` is a bounded FIFO whose
*waiting* is separate from *taking*: a lane can wait for data with a deadline
and then take it without any risk of an item being lost to a cancellation
(anyio's ``receive()`` under ``move_on_after`` can drop an item handed over
in the same instant the deadline fires). :class:`Router` hands chunks to the
lanes without ever making a reader wait for one lane: a stream whose lane is
full is parked until that lane has room, so a stuck lane holds its own
streams, never the workers every other lane needs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio

from cwconsumer.model import Chunk, StreamKey
from cwconsumer.schedule import Schedule
from cwconsumer.streams import StreamState

T = TypeVar("T")


class Budget:
    """Events and bytes in the pipeline: read and not yet confirmed (``events``,
    ``bytes``) plus reservations of fetches in progress (``reserved``).

    ``on_pending(events)`` is called whenever ``events`` goes from zero to
    more or back to zero, so health can tell "pending since" exactly.
    """

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        on_pending: Callable[[int], None] | None = None,
    ) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.events = 0
        self.bytes = 0
        self.reserved = 0
        self._on_pending = on_pending or (lambda n: None)
        self._changed = anyio.Event()

    @property
    def free_events(self) -> int:
        """Events that may still be reserved: the bound less those read and those reserved."""
        return self.max_events - self.events - self.reserved

    @property
    def full(self) -> bool:
        """No event may be reserved, or the bytes are at their bound."""
        return self.free_events <= 0 or self.bytes >= self.max_bytes

    def _floor(self, wanted: int) -> int:
        # A useful page: a quarter of the budget or ``wanted``, whichever is
        # less; tiny pages would waste the scarce API calls.
        return max(1, min(wanted, self.max_events // 4))

    def has_room(self, wanted: int) -> bool:
        """Whether a fetch of ``wanted`` events may reserve now: room for a useful page
        (a quarter of the budget at most) and bytes under their bound."""
        return self.free_events >= self._floor(wanted) and self.bytes < self.max_bytes

    async def wait_room(self, wanted: int) -> None:
        """Wait until :meth:`try_reserve` would succeed (without reserving)."""
        while not self.has_room(wanted):
            event = self._changed
            await event.wait()

    def try_reserve(self, wanted: int) -> int:
        """Reserve up to ``wanted`` events now, or return 0 if there is no room."""
        if not self.has_room(wanted):
            return 0
        n = min(wanted, self.free_events)
        self.reserved += n
        return n

    def settle(self, reserved: int, events: int, nbytes: int) -> None:
        """After a fetch: ``events``/``nbytes`` of a reservation of ``reserved``
        stay in the pipeline; the rest is given back."""
        before = self.events
        self.reserved -= reserved
        self.events += events
        self.bytes += nbytes
        if before == 0 and events > 0:
            self._on_pending(self.events)
        if events < reserved:
            self._notify()

    def release(self, events: int, nbytes: int) -> None:
        """``events``/``nbytes`` leave the pipeline (confirmed, or given back at shutdown); wakes the
        waiters."""
        self.events -= events
        self.bytes -= nbytes
        if events and self.events == 0:
            self._on_pending(0)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class ChannelClosed(Exception):
    """Raised by :meth:`Channel.put` after :meth:`Channel.close`."""


class Channel(Generic[T]):
    """Bounded FIFO for one consumer. ``put`` waits while full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.on_room: Callable[[], None] | None = None
        """Called when a take leaves room (see :class:`Router`)."""
        self._items: deque[T] = deque()
        self._closed = False
        self._readable = anyio.Event()
        self._writable = anyio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (items may still be waiting)."""
        return self._closed

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the channel is full; :class:`ChannelClosed` once closed."""
        while len(self._items) >= self.capacity and not self._closed:
            event = self._writable
            await event.wait()
        if self._closed:
            raise ChannelClosed
        self._items.append(item)
        self._readable.set()

    @property
    def full(self) -> bool:
        """At ``capacity``: a reader does not read a stream of this lane now."""
        return len(self._items) >= self.capacity

    def push(self, item: T) -> None:
        """Append without waiting, even past ``capacity`` (the memory budget,
        not the channel, bounds what is held; readers look at :attr:`full`
        before they read for a lane, so this overshoots by at most one page
        per reader)."""
        if self._closed:
            raise ChannelClosed
        self._items.append(item)
        self._readable.set()

    def close(self) -> None:
        """No more puts; the consumer drains what is left."""
        self._closed = True
        self._readable.set()
        self._writable.set()

    async def wait_readable(self) -> None:
        """Return when an item is available or the channel is closed.
        Safe to cancel: nothing is taken."""
        while not self._items and not self._closed:
            event = self._readable
            await event.wait()
            if not self._items:
                self._readable = anyio.Event()

    def peek(self) -> T | None:
        """The item at the front without taking it, or None when empty."""
        return self._items[0] if self._items else None

    def take(self) -> T:
        """Remove and return the front item (call only when one is there); wakes a waiting put."""
        item = self._items.popleft()
        self._after_take()
        return item

    def replace_head(self, item: T) -> None:
        """Put back the unsent remainder of a split item at the front."""
        self._items.appendleft(item)
        self._readable.set()

    def _after_take(self) -> None:
        if not self._items and not self._closed:
            self._readable = anyio.Event()
        self._writable.set()
        self._writable = anyio.Event()
        if self.on_room is not None and len(self._items) < self.capacity:
            self.on_room()

    def drained(self) -> bool:
        """Closed and empty: the consumer has nothing more to do."""
        return self._closed and not self._items


class Router:
    """Chunks to lane channels by stream (``lane_for``), never waiting.

    Readers ask :meth:`ready` before reading a stream; when its lane's
    channel is full the stream is :meth:`park`-ed (held here, not in the
    schedule, not by a worker) and put back in the schedule as soon as that
    lane takes a chunk. :meth:`push` never waits either: a reader that found
    room may overshoot the channel by its one page; the memory budget bounds
    the total. Parked streams are at most the streams of the lane.
    """

    def __init__(
        self,
        channels: Sequence[Channel[Chunk]],
        schedule: Schedule,
        lane_for: Callable[[StreamKey], int],
    ) -> None:
        self._channels = channels
        self._schedule = schedule
        self._lane_for = lane_for
        self._parked: list[dict[StreamKey, StreamState]] = [{} for _ in channels]
        for i, ch in enumerate(channels):
            ch.on_room = self._unparker(i)

    def ready(self, st: StreamState) -> bool:
        """Whether ``st``'s lane has room for another chunk."""
        return not self._channels[self._lane_for(st.key)].full

    def park(self, st: StreamState) -> None:
        """Hold ``st`` out of the schedule until its lane has room again."""
        lane = self._lane_for(st.key)
        if not self._channels[lane].full:  # room came meanwhile
            self._schedule.add(st)
        else:
            self._parked[lane][st.key] = st

    def push(self, chunk: Chunk) -> None:
        """Hand ``chunk`` to its stream's lane, without waiting."""
        self._channels[self._lane_for(chunk.key)].push(chunk)

    def parked(self) -> int:
        """How many streams wait for room in their lane."""
        return sum(len(p) for p in self._parked)

    def _unparker(self, lane: int) -> Callable[[], None]:
        def unpark() -> None:
            parked = self._parked[lane]
            if parked:
                self._parked[lane] = {}
                for st in parked.values():
                    self._schedule.add(st)

        return unpark
