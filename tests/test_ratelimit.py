"""The shared call rate: spacing by reservation, and the check at departure
that keeps any one second at or under the rate (cwconsumer.ratelimit)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from bench.run import max_in_any
from cwconsumer.aws import LogsClient
from cwconsumer.ratelimit import DEPARTURE_WINDOW_S, AdaptiveRate

EPS = 1e-6  # a departure time is an earlier one + the window, in floating point


def most_in_any_window(times: list[float], window: float) -> int:
    """The benchmark's own count (bench/run.py), over the times in order."""
    return max_in_any(sorted(times), window)


async def depart_all(rate: AdaptiveRate, n: int) -> list[float]:
    """``n`` requests arriving one after the other; their departure times,
    in order of arrival."""
    times: list[float] = [0.0] * n

    async def one(i: int) -> None:
        times[i] = await rate.depart()

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
            await anyio.lowlevel.checkpoint()  # each reaches depart() before the next starts
    return times


@pytest.mark.anyio
async def test_bunched_requests_leave_at_most_the_rate_in_any_window() -> None:
    """Requests that all want to leave at once (slots bunched by a busy event
    loop) are held so that no window of DEPARTURE_WINDOW_S holds more than
    the rate; they are not held longer than that needs."""
    rate = AdaptiveRate(10)
    started = time.monotonic()
    times = await depart_all(rate, 25)
    assert len(times) == 25
    assert most_in_any_window(times, DEPARTURE_WINDOW_S) == 10
    # First come, first served: a request held back is never overtaken by a
    # later one (the tail latency of a stream depends on it).
    assert times == sorted(times)
    # 25 at 10 per window: the first 10 at once, then two more windows.
    assert max(times) - started >= 2 * DEPARTURE_WINDOW_S - EPS
    assert max(times) - started < 2 * DEPARTURE_WINDOW_S + 1.0


@pytest.mark.anyio
async def test_a_rate_cut_by_throttling_lowers_the_cap_at_once() -> None:
    rate = AdaptiveRate(8)
    first = await depart_all(rate, 8)
    assert rate.on_throttle() and rate.rate == 4
    later = await depart_all(rate, 4)
    # After the cut, 4 per window counting the 8 that already left.
    assert min(later) - min(first) >= DEPARTURE_WINDOW_S - EPS
    assert most_in_any_window(later, DEPARTURE_WINDOW_S) == 4


@pytest.mark.anyio
async def test_a_request_let_go_late_pushes_the_next_window_back() -> None:
    """A held request whose wait ends late (the event loop was busy shaping a
    page) counts from when it was let go, not from when it was due: the
    request a window later keeps a full window from it."""
    rate = AdaptiveRate(1)
    first = await rate.depart()
    busy_s = 0.3

    async def busy_loop() -> None:
        await anyio.sleep(DEPARTURE_WINDOW_S / 2)
        # Blocks the event loop on purpose, past the held request's time.
        time.sleep(DEPARTURE_WINDOW_S / 2 + busy_s)  # noqa: ASYNC251

    async with anyio.create_task_group() as tg:
        tg.start_soon(busy_loop)
        second = await rate.depart()  # due one window after the first, let go late
    assert second - first >= DEPARTURE_WINDOW_S + busy_s - 0.05
    third = await rate.depart()
    assert third - second >= DEPARTURE_WINDOW_S - EPS
    assert [first, second, third] == sorted([first, second, third])


@pytest.mark.anyio
@pytest.mark.parametrize("per_s, cap", [(0.5, 1), (2.5, 3), (3.0, 3)])
async def test_a_fractional_rate_is_capped_at_the_next_whole_number(per_s: float, cap: int) -> None:
    """2.5/s means 3 calls in some seconds (calls 0.4 s apart), so the cap at
    departure is the next whole number: the reservations keep the average."""
    rate = AdaptiveRate(per_s)
    times = await depart_all(rate, cap + 1)
    assert most_in_any_window(times, DEPARTURE_WINDOW_S) == cap
    assert times[cap] - times[0] >= DEPARTURE_WINDOW_S - EPS


@pytest.mark.anyio
async def test_every_paced_call_is_checked_as_its_request_leaves(
    start_fakecwl: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs from botocore's before-send event for each paced
    operation, through the real client against the stand-in."""
    fake = start_fakecwl()
    fake.put("/g", "s", [(1_795_255_200_000 + i, f"m{i}") for i in range(3)])
    for name, value in fake.client_env().items():
        monkeypatch.setenv(name, value)
    async with LogsClient(fake.region, get_rate=1000, describe_rate=1000, timeout_s=10) as logs:
        page = await logs.get_log_events("/g", "s", None, None)
        assert len(page.events) == 3
        await logs.describe_log_streams("/g", None)
        await logs.describe_log_groups(None, None)
        for op in ("GetLogEvents", "DescribeLogStreams", "DescribeLogGroups"):
            assert len(logs.rates[op]._departures) == 1, op


@pytest.mark.anyio
async def test_the_reservations_alone_keep_within_the_departure_window() -> None:
    """Slots are DEPARTURE_WINDOW_S / rate apart: reserved back to back, no
    window holds more than the rate, so with a backlog the requests are not
    queued at departure (each holding the stream a reader picked at its slot,
    up to workers / rate seconds before it could leave)."""
    rate = AdaptiveRate(50)
    times = []
    for _ in range(60):
        await rate.acquire()
        times.append(time.monotonic())
    # (2 ms short of the window: a timer may fire a little early.)
    assert most_in_any_window(times, DEPARTURE_WINDOW_S - 0.002) <= 50
