"""A shared, adaptive call rate for one AWS API (all readers together).

The CloudWatch Logs quotas are per account and Region and shared with every
other tool, so the limit is enforced here, not left to botocore: calls are
spaced by reservation (never above the current rate, no bursts), the rate is
halved at most once a second on throttling, and it climbs back linearly to
the configured target (10 % of the target per second without throttling).

Spacing happens when a worker reserves its slot (``DEPARTURE_WINDOW_S / rate``
apart, so the reservations alone keep within the check below and a request
is rarely held there: the stream a reader picks at its slot is read right
then, not after a queue of held requests); the request leaves a little
later (botocore builds and signs it; the event loop may be busy shaping a
page), by a delay that varies, so two calls can leave closer together than
their slots were. A second check at departure (:meth:`AdaptiveRate.depart`,
run from botocore's ``before-send`` event) holds a request while the rate's
worth of calls already left within the last :data:`DEPARTURE_WINDOW_S`, so
the API never sees more than the rate in any second, not just on average.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import anyio
import anyio.lowlevel

DEPARTURE_WINDOW_S = 1.03
"""At most ``ceil(rate)`` requests leave within any window this long: one
second plus a margin for what still varies after departure (the network, the
server's own scheduling and clock). 30 ms of margin costs 3 % of the rate
when there is a backlog; 20 ms proved too little on a loaded machine (a
server counted 26 calls in one second at rate 25)."""


@dataclass(slots=True)
class _Departure:
    at: float
    """When it was let go, or when it is due while it waits."""
    done: bool = False
    """Let go, or given up (cancelled while held): no longer ahead of anyone."""


class AdaptiveRate:
    """Reservation-based pacing: ``await acquire()`` before every call."""

    def __init__(self, target_per_s: float, *, floor_per_s: float | None = None) -> None:
        self.target = float(target_per_s)
        self.floor = floor_per_s if floor_per_s is not None else min(0.5, self.target)
        self.rate = self.target
        self._next_slot = 0.0
        self._last_cut = -1e9
        self._last_update = time.monotonic()
        # The requests let go (or waiting) in order of arrival; the oldest are
        # dropped as they fall out of the window, counted in _gone.
        self._departures: deque[_Departure] = deque()
        self._gone = 0
        self.throttles = 0

    def _recover(self, now: float) -> None:
        if self.rate < self.target:
            self.rate = min(self.target, self.rate + 0.1 * self.target * (now - self._last_update))
        self._last_update = now

    async def acquire(self) -> None:
        """Reserve the next call's slot at the current rate and sleep until it is due.

        Slots are :data:`DEPARTURE_WINDOW_S` / rate apart, not 1 / rate: at
        1 / rate the reservations ran 3 % ahead of what :meth:`depart` lets go,
        so with a backlog every worker ended up held at departure, each with
        the stream it had picked up to ``workers / rate`` seconds earlier
        (1.5 s at 16 workers and 10 calls/s). The same calls per second
        leave either way."""
        now = time.monotonic()
        self._recover(now)
        slot = max(now, self._next_slot)
        self._next_slot = slot + DEPARTURE_WINDOW_S / self.rate
        if slot > now:
            await anyio.sleep(slot - now)

    async def depart(self) -> float:
        """Just before a reserved call's request leaves: wait until its
        departure time and return the time it was let go
        (``time.monotonic()``).

        The departure time is the earliest, no earlier than the previous
        request's (first come, first served), at which fewer than
        ``ceil(rate)`` requests left within the last
        :data:`DEPARTURE_WINDOW_S`: the rate itself when it is whole; a
        fractional rate (2.5, or one climbing back after throttling) is kept
        on average by the reservations, which this must not slow down. Rarely
        waits, and then by milliseconds: the reservations already space the
        calls.

        What is remembered is when the request was actually let go: a wait
        ends late when the event loop is busy (shaping a page takes
        milliseconds), and a request let go 20 ms after its time must push
        the one a window later back by as much, or the two land closer than
        a second apart."""
        left = self._departures
        now = time.monotonic()
        while left and now - left[0].at >= DEPARTURE_WINDOW_S:
            left.popleft()
            self._gone += 1
        mine = _Departure(now)
        seq = self._gone + len(left)  # this request's place, counting every one before it
        left.append(mine)
        try:
            while True:
                i = seq - self._gone  # its index now (older ones are dropped meanwhile)
                at = now
                if i > 0:
                    at = max(at, left[i - 1].at)  # in order of arrival
                cap = max(1, math.ceil(self.rate - 1e-9))
                if i >= cap:
                    at = max(at, left[i - cap].at + DEPARTURE_WINDOW_S)
                if at <= now:
                    if i > 0 and not left[i - 1].done:
                        # Due, but the one ahead is not let go yet: requests
                        # woken at the same instant resume in no set order,
                        # and first come must leave first.
                        await anyio.lowlevel.checkpoint()
                        now = time.monotonic()
                        continue
                    break
                mine.at = at
                # Looked at again on waking: one ahead may have been let go later
                # than it was due, and this one must then keep its distance.
                await anyio.sleep(at - now)
                now = time.monotonic()
            mine.at = now
            return now
        finally:
            mine.done = True

    def on_throttle(self) -> bool:
        """Record a throttling answer; returns True when the rate was cut."""
        self.throttles += 1
        now = time.monotonic()
        self._recover(now)
        if now - self._last_cut < 1.0:
            return False
        self._last_cut = now
        self.rate = max(self.floor, self.rate / 2)
        # Calls already reserved at the old spacing keep their slots; new ones
        # are spaced at the new rate from now on.
        self._next_slot = max(self._next_slot, now + DEPARTURE_WINDOW_S / self.rate)
        return True
