"""One stuck lane must not capture every worker (issue 14, item 14).

In process: the real :class:`~cwconsumer.reader.Reader` workers, schedule and
budget, with a stand-in for the CloudWatch Logs client that always has a full
page for every stream, and two lanes: lane 0 never drains (its sink hangs),
lane 1 drains. The streams of lane 1 must keep flowing.

The control runs the wiring of the old code (``await channel.put`` into a
full lane, no ``ready`` check) and shows what it did: with at least as many
streams on the stuck lane as workers, every worker ends up waiting on lane 0
and lane 1 starves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count

import anyio
import anyio.lowlevel
import msgspec

from cwconsumer.aws import Page
from cwconsumer.delivery import lane_of
from cwconsumer.flow import Budget, Channel, Router
from cwconsumer.model import Checkpoint, Chunk, LogEvent, StreamKey
from cwconsumer.reader import Reader
from cwconsumer.schedule import Schedule
from cwconsumer.streams import StreamState

LANES = 2
WORKERS = 3


def keys_on(lane: int, n: int) -> list[StreamKey]:
    out: list[StreamKey] = []
    for i in count():
        k = StreamKey("/stuck", f"s{i}")
        if lane_of(k, LANES) == lane:
            out.append(k)
            if len(out) == n:
                return out
    raise AssertionError


@dataclass
class EndlessLogs:
    """Every GetLogEvents call: 5 events and a new token (a backlog)."""

    calls: int = 0

    async def pace(self, op: str) -> None:
        """No rate here: the test is about workers, not the quota."""
        await anyio.lowlevel.checkpoint()

    async def get_log_events(
        self,
        group: str,
        stream: str,
        token: str | None,
        start: int | None,
        limit: int = 10000,
        *,
        paced: bool = True,
    ) -> Page:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        base = self.calls * 10
        events = [LogEvent(base + i, msgspec.Raw(b'"m"'), base + i) for i in range(5)]
        return Page(events, f"tok{self.calls}")


async def run(
    old_wiring: bool,
) -> tuple[int, int]:
    """Events of lane-1 streams delivered in the first and in the second
    half second after lane 0 has filled up."""
    budget = Budget(1_000_000, 1 << 30)
    schedule = Schedule()
    channels: list[Channel[Chunk]] = [Channel(8) for _ in range(LANES)]
    stuck = keys_on(0, WORKERS + 1)
    flowing = keys_on(1, 2)
    for k in [*stuck, *flowing]:
        cp = Checkpoint(None, 0)
        schedule.add(StreamState(key=k, committed=cp, read_pos=cp))

    router = Router(channels, schedule, lambda k: lane_of(k, LANES))

    async def route_new(chunk: Chunk) -> None:
        router.push(chunk)

    async def route_old(chunk: Chunk) -> None:
        await channels[lane_of(chunk.key, LANES)].put(chunk)

    route: Callable[[Chunk], Awaitable[None]] = route_old if old_wiring else route_new
    reader = Reader(
        EndlessLogs(),  # type: ignore[arg-type]
        schedule,
        budget,
        route,
        region="us-east-1",
        parse_mode="none",
        poll_interval_s=1.0,
        idle_grace_s=60.0,
        ready=(lambda st: True) if old_wiring else router.ready,
        park=router.park,
    )
    delivered = [0]

    async def lane_1() -> None:
        ch = channels[1]
        while True:
            await ch.wait_readable()
            c = ch.take()
            delivered[0] += len(c)
            budget.release(len(c), c.nbytes)
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        for _ in range(WORKERS):
            tg.start_soon(reader.worker)
        tg.start_soon(lane_1)
        with anyio.fail_after(10):
            while not channels[0].full:  # noqa: ASYNC110 (polling a plain flag)
                await anyio.sleep(0.01)
        await anyio.sleep(0.3)  # every worker has had time to get stuck, if it does
        before = delivered[0]
        await anyio.sleep(0.5)
        after = delivered[0]
        tg.cancel_scope.cancel()
    return before, after - before


async def test_a_stuck_lane_does_not_hold_the_workers_of_the_other_lanes() -> None:
    _, later = await run(old_wiring=False)
    assert later > 100, f"lane 1 got only {later} events in half a second"


async def test_control_the_old_wiring_lets_one_stuck_lane_capture_every_worker() -> None:
    _, later = await run(old_wiring=True)
    assert later == 0
