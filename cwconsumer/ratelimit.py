"""A shared, adaptive call rate for one AWS API (all readers together).

The CloudWatch Logs quotas are per account and Region and shared with every
other tool, so the limit is enforced here, not left to botocore: calls are
spaced by reservation (never above the current rate, no bursts), the rate is
halved at most once a second on throttling, and it climbs back linearly to
the configured target (10 % of the target per second without throttling).
"""

from __future__ import annotations

import time

import anyio


class AdaptiveRate:
    """Reservation-based pacing: ``await acquire()`` before every call."""

    def __init__(self, target_per_s: float, *, floor_per_s: float | None = None) -> None:
        self.target = float(target_per_s)
        self.floor = floor_per_s if floor_per_s is not None else min(0.5, self.target)
        self.rate = self.target
        self._next_slot = 0.0
        self._last_cut = -1e9
        self._last_update = time.monotonic()
        self.throttles = 0

    def _recover(self, now: float) -> None:
        if self.rate < self.target:
            self.rate = min(self.target, self.rate + 0.1 * self.target * (now - self._last_update))
        self._last_update = now

    async def acquire(self) -> None:
        now = time.monotonic()
        self._recover(now)
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self.rate
        if slot > now:
            await anyio.sleep(slot - now)

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
        self._next_slot = max(self._next_slot, now + 1.0 / self.rate)
        return True
