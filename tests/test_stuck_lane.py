"""One stuck lane must not capture every worker (issue 14, item 14).

In process: the real :class:`~cwconsumer.reader.Reader` workers, schedule and
budget, with a stand-in for the CloudWatch Logs client that always has a full
page for every stream, and two lanes: lane 0 never drains (its sink hangs),
lane 1 drains. The streams of lane 1 must keep flowing.

The control runs the wiring of the old code (``await channel.put`` into a
full lane, no ``ready`` check) and shows what it did: with at least as many
streams on the stuck lane as workers, every worker ends up waiting on lane 0
and lane 1 starves.

The last test checks the same promise through the service's own wiring,
against the CloudWatch Logs stand-in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import anyio
import anyio.lowlevel
import msgspec
import pytest

from cwconsumer import delivery
from cwconsumer.aws import Page
from cwconsumer.config import load_config
from cwconsumer.delivery import lane_of
from cwconsumer.flow import Budget, Channel, Router
from cwconsumer.model import Checkpoint, Chunk, LogEvent, OutBatch, StreamKey
from cwconsumer.reader import Reader
from cwconsumer.schedule import Schedule
from cwconsumer.service import Service
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.streams import StreamState
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.harness import Writer, parse_message

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


async def run(old_wiring: bool, budget_events: int = 1_000_000) -> tuple[int, int]:
    """Events of lane-1 streams delivered in the first and in the second
    half second after lane 0 has filled up."""
    budget = Budget(budget_events, 1 << 30)
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


async def test_a_stuck_lane_holds_its_channel_not_the_whole_memory_budget() -> None:
    """With a memory budget the stuck lane could fill: a reader that handed
    every chunk over whatever its lane's room (never parking) would let lane 0
    take all of it, every reader would then wait for memory and lane 1
    starve just the same. Parking bounds lane 0 to its channel (plus one
    page per reader)."""
    _, later = await run(old_wiring=False, budget_events=200)
    assert later > 100, f"lane 1 got only {later} events in half a second"


# -- the service's own wiring -----------------------------------------------------


class HangingSink:
    """Never answers a batch of a lane-0 stream (a stuck lane: a sink
    partition that hangs); accepts every other batch."""

    name = "hanging"

    def __init__(self) -> None:
        self.accepted: dict[tuple[str, str], set[int]] = {}
        self.hanging = 0

    async def send(self, batch: OutBatch) -> SendResult:
        docs = [json.loads(d) for d in batch.docs]  # type: ignore[arg-type]
        keys = [parse_message(d["message"]) for d in docs]
        if lane_of(StreamKey(*keys[0][0]), LANES) == 0:
            self.hanging += 1
            await anyio.sleep_forever()
        for key, i in keys:
            self.accepted.setdefault(key, set()).add(i)
        return SendResult(Outcome.OK, status=200)

    async def probe(self) -> tuple[bool, str]:
        return True, ""

    async def aclose(self) -> None:
        return None


async def test_the_service_keeps_the_other_lanes_flowing_while_one_is_stuck(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same promise through :class:`~cwconsumer.service.Service`'s own
    wiring of readers, router and lanes (the tests above wire them by hand):
    lane 0's sink never answers, its streams have long backlogs; every event
    of lane 1's streams is still delivered. Lane channels are made small so
    that a stuck lane fills its channel within a few pages."""
    monkeypatch.setattr(delivery, "LANE_CHANNEL_CHUNKS", 2)
    fake = start_fakecwl(21)
    for k, v in fake.client_env().items():
        monkeypatch.setenv(k, v)
    w = Writer(fake, seed=21)
    stuck = keys_on(0, WORKERS + 1)
    flowing = keys_on(1, 2)
    for key, n, cap in [*((k, 200, 5) for k in stuck), *((k, 100, 20) for k in flowing)]:
        w.put(key.group, key.stream, n)
        fake.page_cap(key.group, key.stream, cap)  # backlogs of many pages
    env = {
        **fake.client_env(),
        "CWC_LOG_GROUPS": "/stuck",
        "CWC_SINK_URL": "http://127.0.0.1:9/unused",
        "CWC_DB_PATH": str(tmp_path / "cwc.db"),
        "CWC_ADMIN_ADDR": "off",
        "CWC_SINK_CONCURRENCY": str(LANES),
        "CWC_WORKERS": str(WORKERS),
        "CWC_BATCH_MAX_EVENTS": "5",
        "CWC_BATCH_MAX_WAIT": "20ms",
        "CWC_POLL_INTERVAL": "200ms",
        "CWC_SHUTDOWN_TIMEOUT": "1s",
    }
    sink = HangingSink()
    svc = Service(load_config(env), sink=sink)  # type: ignore[arg-type]
    want = {(k.group, k.stream): set(range(100)) for k in flowing}
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.run)
        deadline = time.monotonic() + 20
        while {k: sink.accepted.get(k, set()) for k in want} != want:
            assert time.monotonic() < deadline, (
                f"lane 1 starved: { ({k: len(v) for k, v in sink.accepted.items()}) } "
                f"delivered, {sink.hanging} lane-0 batch(es) hanging"
            )
            await anyio.sleep(0.05)
        svc.stop()
    assert sink.hanging >= 1  # lane 0 really was stuck
