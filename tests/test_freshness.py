"""The poll policy that follows the data, bounded discovery and pruning
(issue 13), in process: the real Reader, Schedule, Discovery, Registry and
SQLite Store, the real aiobotocore client against the stand-in
(``tests/support/fakecwl.py``), deliveries confirmed at once by a fake lane
that moves checkpoints the way the service does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from cwconsumer.aws import LogsClient
from cwconsumer.discovery import Discovery
from cwconsumer.flow import Budget
from cwconsumer.groupinfo import GroupInfo
from cwconsumer.model import Checkpoint, Chunk, StreamKey
from cwconsumer.reader import Reader
from cwconsumer.registry import Registry
from cwconsumer.schedule import QUIET_SHARE, Schedule
from cwconsumer.store import Commit, Store
from cwconsumer.streams import (
    MIN_RECHECK_S,
    State,
    StreamState,
    Tier,
    quiet_delay_s,
)
from tests.support.fakecwl import FakeCloudWatchLogs

pytestmark = pytest.mark.anyio
HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def quiet_since(st: StreamState, at_ms: int) -> None:
    """Make every clock of the stream's activity say ``at_ms`` (the stream
    was created long before)."""
    st.last_read_ms = st.last_ingestion_seen_ms = at_ms


# ----------------------------------------------------------------------------- pure policy


def test_a_quiet_streams_recheck_interval_grows_with_its_quiet_time_and_is_capped() -> None:
    assert quiet_delay_s(0.0, 600) == MIN_RECHECK_S
    assert quiet_delay_s(4.0, 600) == 2.0
    assert quiet_delay_s(10.0, 600) == 5.0  # active within 2 x CWC_POLL_INTERVAL: <= 5 s
    assert quiet_delay_s(120.0, 600) == 60.0
    assert quiet_delay_s(7200.0, 600) == 600  # the worst-case bound
    delays = [quiet_delay_s(q, 600) for q in (1, 10, 100, 1000, 10_000)]
    assert delays == sorted(delays)


def _st(name: str, **kw: Any) -> StreamState:
    cp = Checkpoint(None, None, 0, None, -1)
    return StreamState(key=StreamKey("/g", name), committed=cp, read_pos=cp, **kw)


async def test_hot_streams_go_first_and_quiet_ones_keep_their_guaranteed_share() -> None:
    sched = Schedule()
    hot = [_st(f"h{i}") for i in range(20)]
    quiet = [_st(f"q{i}", tier=Tier.QUIET) for i in range(20)]
    for st in quiet + hot:
        sched.add(st)
    taken: list[StreamState] = []
    for _ in range(400):  # every stream due again at once: the hot ones saturate
        st = await sched.take()
        taken.append(st)
        st.busy = False
        sched.add(st)
    share = sum(st.tier is Tier.QUIET for st in taken) / len(taken)
    assert share == pytest.approx(QUIET_SHARE, abs=0.01), share
    assert all(st.tier is Tier.HOT for st in taken[:10]), "a quiet stream went before due hot ones"


async def test_quiet_streams_use_what_hot_ones_leave() -> None:
    sched = Schedule()
    a, q = _st("hot"), _st("quiet", tier=Tier.QUIET)
    sched.add(a, 10.0)  # not due
    sched.add(q)
    assert await sched.take() is q


async def test_a_quiet_stream_past_the_grace_fades_to_idle_without_a_call() -> None:
    faded: list[StreamState] = []

    def fade(st: StreamState) -> bool:
        faded.append(st)
        return st.key.stream == "old"

    sched = Schedule(fade)
    old, young = _st("old", tier=Tier.QUIET), _st("young", tier=Tier.QUIET)
    sched.add(old)
    sched.add(young, 0.01)
    assert await sched.take() is young
    assert faded == [old, young] and sched.faded == 1


# ----------------------------------------------------------------------------- the rig


class Rig:
    """Reader workers + discovery against the stand-in; deliveries confirmed
    at once (checkpoint moved and committed to SQLite, like the lanes)."""

    def __init__(self, fake: FakeCloudWatchLogs, store: Store, logs: LogsClient, **kw: Any):
        self.fake, self.store, self.logs = fake, store, logs
        self.reg = Registry()
        self.budget = Budget(100_000, 1 << 30)
        grace = kw.pop("idle_grace_s", 7200.0)
        self.reader = Reader(
            logs,
            Schedule(),
            self.budget,
            self.route,
            region="us-east-1",
            parse_mode="none",
            poll_interval_s=kw.pop("poll_interval_s", 5.0),
            idle_grace_s=grace,
            quiet_poll_interval_s=kw.pop("quiet_poll_interval_s", 600.0),
            on_state=self.reg.moved,
            ready=kw.pop("ready", lambda st: True),
            park=kw.pop("park", lambda st: None),
        )
        self.schedule = self.reader._schedule
        self.schedule.fade = self.reader.fade
        self.discovery = Discovery(
            logs,
            store,
            self.reg,
            self.schedule,
            groups=kw.pop("groups", ("/g",)),
            prefixes=kw.pop("prefixes", ()),
            start_time_for_new_group=kw.pop("start", lambda now: None),
            idle_grace_s=grace,
            discovery_interval_s=kw.pop("discovery_interval_s", 30.0),
            forget_after_s=kw.pop("forget_after_s", None),
            retention_days=self._retention_days,
        )
        # Each group's facts (retention) as the service reads them, every time asked.
        self.info = GroupInfo(logs, store, lambda: list(self.reg.groups), tick_s=1, refresh_s=0)
        self.docs: list[dict[str, Any]] = []

    def _retention_days(self, group: str) -> int | None:
        row = self.info.rows.get(group)
        return row.retention_days if row is not None else None

    async def route(self, chunk: Chunk) -> None:
        st = self.reg.streams.get(chunk.key)
        for d in chunk.docs:
            self.docs.append(orjson.loads(d) if isinstance(d, bytes) else d)
        self.budget.release(len(chunk.docs), chunk.nbytes)
        if st is None or st.generation != chunk.generation:
            return
        st.committed = chunk.checkpoint_after()
        st.pending_events -= len(chunk)
        st.checkpoint_ms = now_ms()
        await self.store.commit([Commit(chunk.key, st.committed, len(chunk), 0)])

    def messages(self, stream: str | None = None) -> list[str]:
        return [
            d["message"]
            for d in self.docs
            if stream is None or d["aws"]["cloudwatch"]["log_stream"] == stream
        ]


@pytest.fixture
async def rig_factory(
    start_fakecwl: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    fake = start_fakecwl()
    for name, value in fake.client_env().items():
        monkeypatch.setenv(name, value)
    store = await Store.open(str(tmp_path / "db" / "cwc.db"))
    assert await store.acquire_lease("test", now_ms(), 10_000, "h", 1) is not None
    rates: dict[str, float] = {}
    async with LogsClient(
        fake.region,
        get_rate=1000,
        describe_rate=1000,
        timeout_s=10,
    ) as logs:

        def make(get_rate: float = 1000, **kw: Any) -> Rig:
            logs.rates["GetLogEvents"].target = logs.rates["GetLogEvents"].rate = get_rate
            rates["get"] = get_rate
            return Rig(fake, store, logs, **kw)

        yield make
    await store.aclose()


async def poll_until(pred: Callable[[], bool], limit_s: float) -> None:
    for _ in range(int(limit_s / 0.02)):
        if pred():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"not within {limit_s} s")


async def run_workers(rig: Rig, n: int, until: Callable[[], bool], limit_s: float) -> None:
    with anyio.fail_after(limit_s + 5):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(rig.reader.worker)
            await poll_until(until, limit_s)
            tg.cancel_scope.cancel()


# ----------------------------------------------------------------------------- behaviour


async def test_backoff_then_prompt_again_when_events_come_or_discovery_reports_them(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory()
    t = now_ms()
    rig.fake.add_stream("/g", "s", creation_time_ms=t - 24 * HOUR_MS)
    rig.fake.put("/g", "s", [(t, "one")])
    await rig.discovery.cycle()
    st = rig.reg.streams[StreamKey("/g", "s")]
    await run_workers(rig, 1, lambda: rig.messages() == ["one"], 10)
    # Caught up: the answers are end of stream, the stream goes quiet and its
    # next check moves further out as its quiet time grows.
    st.busy = True  # as a worker holds it
    delay = await rig.reader.poll(st, 100)
    assert st.state is State.TAILING and st.tier is Tier.QUIET
    quiet_since(st, now_ms() - 60_000)
    later = await rig.reader.poll(st, 100)
    assert (
        delay is not None
        and later is not None
        and later > delay
        and later == pytest.approx(30, abs=1)
    )
    # Events again: the next page has them and the stream is due at once, hot.
    rig.fake.put("/g", "s", [(now_ms(), "two")])
    assert await rig.reader.poll(st, 100) == 0.0
    assert st.tier is Tier.HOT and rig.messages() == ["one", "two"]
    # Quiet again, then discovery reports activity not read: hot and due at once.
    quiet_since(st, now_ms() - 600_000)
    assert await rig.reader.poll(st, 100) == pytest.approx(300, abs=5)
    st.busy = False
    rig.schedule.add(st, 300)
    rig.fake.put("/g", "s", [(now_ms() + 5, "three")])
    await rig.discovery.cycle()
    assert st.tier is Tier.HOT and st.sched_due <= time.monotonic()
    await run_workers(rig, 1, lambda: len(rig.messages()) == 3, 5)


async def test_a_stream_with_stale_metadata_is_still_read_within_the_worst_case_bound(
    rig_factory: Callable[..., Rig],
) -> None:
    """Discovery cannot see its new events (metadata frozen), yet polling
    finds them within CWC_QUIET_POLL_INTERVAL (here 1 s)."""
    rig = rig_factory(quiet_poll_interval_s=1.0, poll_interval_s=1.0)
    old = now_ms() - 1_800_000
    rig.fake.add_stream("/g", "s", creation_time_ms=old)
    rig.fake.put("/g", "s", [(old, "old")], ingestion_time_ms=old)
    await rig.discovery.cycle()
    st = rig.reg.streams[StreamKey("/g", "s")]
    await run_workers(rig, 2, lambda: rig.messages() == ["old"], 10)
    rig.fake.freeze_stream_stats("/g", "s")
    quiet_since(st, old)  # quiet for half an hour: uncapped, the next check would be in 15 min
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(rig.reader.worker)
            await anyio.sleep(1.5)  # the stream is quiet and checked at the cap
            rig.fake.put("/g", "s", [(now_ms(), "new")])
            put_at = time.monotonic()
            await rig.discovery.cycle()
            assert not st.has_unread_activity()  # discovery is blind to it
            await poll_until(lambda: rig.messages() == ["old", "new"], 5)
            waited = time.monotonic() - put_at
            tg.cancel_scope.cancel()
    assert waited <= 1.0 + 0.5, waited


async def test_a_thousand_churned_streams_lose_nothing_and_end_of_stream_answers_stay_bounded(
    rig_factory: Callable[..., Rig],
) -> None:
    """Streams appear in waves, get three events each and end (Lambda
    environments); the quota (100 calls/s) is the limit. Every event arrives,
    and finished streams cost about one end-of-stream answer each plus the
    quiet share, not one every few seconds."""
    rig = rig_factory(get_rate=100, discovery_interval_s=0.6)
    rig.fake.add_group("/g")
    await rig.discovery.cycle()
    expected: set[str] = set()
    waves, per_wave = 20, 50
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(rig.reader.worker)
            for w in range(waves):
                t = now_ms()
                for k in range(per_wave):
                    name = f"env-{w:02d}-{k:02d}"
                    msgs = [f"{name} {i}" for i in range(3)]
                    rig.fake.put("/g", name, [(t, m) for m in msgs])
                    expected |= set(msgs)
                await rig.discovery.cycle()
                await anyio.sleep(0.2)
            while set(rig.messages()) != expected:
                await rig.discovery.cycle()
                await anyio.sleep(0.2)
            tg.cancel_scope.cancel()
    assert len(rig.messages()) == len(expected) == waves * per_wave * 3
    calls = rig.fake.get_calls()
    eos = sum(
        1
        for c in calls
        if c.returned == 0 and c.token is not None and c.next_forward_token == c.token
    )
    streams = waves * per_wave
    assert eos <= 1.5 * streams, (eos, len(calls))
    assert eos / len(calls) <= 0.6, (eos, len(calls))
    # Memory per known stream: a finished (caught-up) stream keeps no Shaper.
    finished = [st for st in rig.reg.of_group("/g") if st.idle_polls]  # last answer: the end
    assert len(finished) >= streams * 0.1
    assert [st.key.stream for st in finished if st.shaper is not None] == []


# ----------------------------------------------------------------------------- pruning


async def test_pruning_never_forgets_a_stream_with_undelivered_events(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory(forget_after_s=3 * 3600, idle_grace_s=3600)
    old = now_ms() - 10 * 24 * HOUR_MS
    for name in ("done", "pending", "unread", "read-not-confirmed"):
        rig.fake.put("/g", name, [(old, f"{name} 1")], ingestion_time_ms=old)
        rig.fake.add_stream("/g", name)  # (exists)
    await rig.discovery.cycle()
    states = {k.stream: st for k, st in rig.reg.streams.items()}
    for st in states.values():
        rig.schedule.cancel(st)
        rig.reg.set_state(st, State.IDLE)
        st.last_read_ms = st.created_ms = st.last_ingestion_seen_ms = old
        st.committed = st.read_pos = Checkpoint("f/1/s", None, 0, old, 0)
    states["pending"].pending_events = 1
    states["unread"].last_event_seen_ms = old + 1  # discovery reports more than was read
    states["read-not-confirmed"].read_pos = Checkpoint("f/2/s", None, 0, old + 5, 0)
    forgotten = await rig.discovery.forgetter.prune()
    assert forgotten == 1
    assert set(k.stream for k in rig.reg.streams) == {"pending", "unread", "read-not-confirmed"}
    rows = {r.key.stream for r in await rig.store.load_streams()}
    assert rows == {"pending", "unread", "read-not-confirmed"}


async def test_a_forgotten_stream_that_shows_activity_again_is_read_from_its_beginning(
    rig_factory: Callable[..., Rig],
) -> None:
    """Re-delivery with the same event.id, documented: forgetting keeps state
    bounded; a stream that comes back is a new stream to discovery."""
    rig = rig_factory(forget_after_s=3.0, idle_grace_s=1.0)
    rig.fake.add_group("/g")
    await rig.discovery.cycle()  # the group is known before the stream exists
    t = now_ms()
    rig.fake.put("/g", "s", [(t, "a"), (t + 1, "b")])
    await rig.discovery.cycle()
    await run_workers(rig, 1, lambda: rig.messages() == ["a", "b"], 10)
    first_ids = [d["event"]["id"] for d in rig.docs]
    st = rig.reg.streams[StreamKey("/g", "s")]
    rig.schedule.cancel(st)
    rig.reg.set_state(st, State.IDLE)
    rig.fake.freeze_stream_stats("/g", "s")
    await anyio.sleep(3.2)
    assert await rig.discovery.forgetter.prune() == 1
    assert StreamKey("/g", "s") not in rig.reg.streams
    assert await rig.store.load_streams() == []
    # Unchanged, it stays forgotten: a deep walk sees it and leaves it alone.
    rig.discovery._reg.groups["/g"].walked_ms = now_ms() - 10 * 3600_000
    await rig.discovery.cycle()
    assert StreamKey("/g", "s") not in rig.reg.streams
    # Activity again: read from its beginning, the old events with their ids.
    rig.fake.unfreeze_stream_stats("/g", "s")
    rig.fake.put("/g", "s", [(now_ms(), "c")])
    await rig.discovery.cycle()
    back = rig.reg.streams[StreamKey("/g", "s")]
    assert back.read_pos.token is None and back.read_pos.start_time_ms is None
    await run_workers(rig, 1, lambda: len(rig.messages()) == 5, 10)
    assert rig.messages() == ["a", "b", "a", "b", "c"]
    assert [d["event"]["id"] for d in rig.docs[2:4]] == first_ids


# ----------------------------------------------------------------------------- discovery cost


async def test_discovery_of_a_large_group_stops_early_and_stays_within_its_call_budget(
    rig_factory: Callable[..., Rig],
) -> None:
    """5,000 finished streams (100 pages) older than the start position, 10
    live ones: the first walk, the feed walks and a deep walk each read a
    page or two, and the old streams are never read."""
    now = now_ms()
    fake = None
    rig = rig_factory(start=lambda n: n - 2 * HOUR_MS, idle_grace_s=2 * 3600)
    fake = rig.fake
    for k in range(5000):
        at = now - 5 * HOUR_MS - k * 60_000
        fake.put("/g", f"old-{k:05d}", [(at, "x")], ingestion_time_ms=at)
    for k in range(10):
        fake.put("/g", f"live-{k}", [(now - k, f"live {k}")])
    before = fake.counts("DescribeLogStreams").total
    await rig.discovery.cycle()
    first = fake.counts("DescribeLogStreams").total - before
    assert first <= 2, first
    assert {k.stream for k in rig.reg.streams} == {f"live-{k}" for k in range(10)}
    for _ in range(5):  # feed walks
        await rig.discovery.cycle()
    feed = fake.counts("DescribeLogStreams").total - before - first
    assert feed <= 5, feed
    # A deep walk after a restart: from the stored walk time minus the grace.
    row = (await rig.store.load_groups())["/g"]
    assert row.walked_ms is not None and row.walked_ms >= now - 1000
    rig.discovery._feed_mark.clear()
    deep_before = fake.counts("DescribeLogStreams").total
    await rig.discovery.cycle()
    assert fake.counts("DescribeLogStreams").total - deep_before <= 2
    await run_workers(rig, 2, lambda: len(rig.messages()) == 10, 10)
    assert sum(fake.stream_calls("/g", f"old-{k:05d}") for k in range(5000)) == 0


# ----------------------------------------------------------------------------- views


def test_registry_aggregates_follow_every_change_and_pages_are_in_name_order() -> None:
    removed: list[StreamKey] = []
    reg = Registry(on_remove=removed.append)  # the service drops its in-flight figures
    streams = [_st(f"s{i:05d}") for i in range(2500)]
    for st in streams:
        reg.add(st)
    for st in streams[:2000]:
        reg.set_state(st, State.IDLE)
    reg.set_state(streams[0], State.DELETED)
    reg.remove(streams[1].key)
    assert reg.group_counts("/g") == {
        "new": 500, "reading": 0, "tailing": 0, "idle": 1998, "deleted": 1,
    }  # fmt: skip
    assert len(reg.awake) == 500 and len(reg) == 2499 and removed == [streams[1].key]
    first = [st.key.stream for st in reg.page("/g", None, 1000)]
    second = [st.key.stream for st in reg.page("/g", first[-1], 1000)]
    assert first == sorted(first) and second == sorted(second) and first[-1] < second[0]
    assert first[0] == "s00000" and len(first) == len(second) == 1000


# ----------------------------------------------------------------------------- pacing


async def test_a_slot_is_not_wasted_on_a_stream_whose_lane_is_full(
    rig_factory: Callable[..., Rig],
) -> None:
    """The reader takes its rate slot, then a stream; a stream it cannot read
    now (its lane full: parked) leaves the slot to the next stream. At 2 calls
    a second, a wasted slot would put the next read 0.5 s later."""
    parked: list[StreamState] = []
    rig = rig_factory(get_rate=2, ready=lambda st: st.key.stream != "blocked", park=parked.append)
    t = now_ms()
    rig.fake.put("/g", "blocked", [(t, "b")])
    rig.fake.put("/g", "free", [(t, "f")])
    await rig.discovery.cycle()
    sched = rig.schedule
    for name, delay in (("blocked", -2.0), ("free", -1.0)):  # blocked first
        st = rig.reg.streams[StreamKey("/g", name)]
        sched.cancel(st)
        sched.add(st, delay)
    started = time.monotonic()
    await run_workers(rig, 1, lambda: rig.messages() == ["f"], 5)
    took = time.monotonic() - started
    assert [st.key.stream for st in parked] == ["blocked"]
    assert took < 0.3, took


# ----------------------------------------------------------------------------- forgetting


async def test_streams_are_forgotten_soon_after_their_window_not_in_big_sweeps(
    rig_factory: Callable[..., Rig],
) -> None:
    """Pruning runs every 1/50 of the forget window (at least every 0.5 s), as
    part of discovery's ticks: a stream is forgotten within about that of
    becoming forgettable, so the known count does not saw-tooth."""
    rig = rig_factory(forget_after_s=40.0, idle_grace_s=5.0)
    t = now_ms() - 41_000
    rig.fake.add_stream("/g", "s", creation_time_ms=t)
    rig.fake.put("/g", "s", [(t, "one")], ingestion_time_ms=t)
    await rig.discovery.cycle()
    await run_workers(rig, 1, lambda: rig.messages() == ["one"], 10)
    # Every clock of the stream 41 s back (it was read just now): forgettable.
    await _idle_delivered(rig, "s", t)
    await anyio.sleep(1.0)  # > 40 s / 50; a tenth of the 10 s a quarter-window pass waited
    await rig.discovery.cycle()
    assert StreamKey("/g", "s") not in rig.reg.streams
    assert await rig.store.load_streams() == []


async def test_pruning_keeps_its_cadence_while_discovery_waits_for_its_next_tick(
    rig_factory: Callable[..., Rig],
) -> None:
    """Forgetting runs every 1/50 of the window (0.8 s here) also while
    discovery sleeps between ticks (10 s here): it did not, and the known
    count swung by what churned in a tick (months scenario)."""
    rig = rig_factory(forget_after_s=40.0, idle_grace_s=5.0, discovery_interval_s=30.0)
    t = now_ms() - 41_000
    rig.fake.add_stream("/g", "s", creation_time_ms=t)
    rig.fake.put("/g", "s", [(t, "one")], ingestion_time_ms=t)
    key = StreamKey("/g", "s")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(rig.discovery.run)  # first tick done: the stream is known
            assert key in rig.reg.streams and rig.discovery.tick_s == 10.0
            await _idle_delivered(rig, "s", t)  # forgettable from now on
            await poll_until(lambda: key not in rig.reg.streams, 2.0)
            tg.cancel_scope.cancel()
    assert await rig.store.load_streams() == []


async def test_pruning_keeps_its_cadence_during_a_long_walk(
    rig_factory: Callable[..., Rig],
) -> None:
    """Between the pages of a walk too: a walk of 11 slow pages (2.2 s) does
    not hold forgetting back by its length."""
    rig = rig_factory(forget_after_s=40.0, idle_grace_s=5.0, groups=("/h", "/g"))
    t = now_ms() - 41_000
    rig.fake.add_stream("/g", "s", creation_time_ms=t)
    rig.fake.put("/g", "s", [(t, "one")], ingestion_time_ms=t)
    rig.fake.put("/h", "first", [(now_ms(), "x")])
    await rig.discovery.cycle()
    key = StreamKey("/g", "s")
    await _idle_delivered(rig, "s", t)
    now = now_ms()
    for i in range(520):  # newer than the feed's line: the feed walk reads them all
        rig.fake.put("/h", f"n-{i:03d}", [(now, "x")], ingestion_time_ms=now)
    rig.fake.set_latency(0.2, operation="DescribeLogStreams")
    await anyio.sleep(0.8)  # a pass is due from now on
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(rig.discovery.cycle)
            await poll_until(lambda: key not in rig.reg.streams, 1.0)
            assert len([k for k in rig.reg.streams if k.group == "/h"]) < 500  # mid-walk
    assert key not in rig.reg.streams


async def _idle_delivered(rig: Rig, name: str, at_ms: int) -> StreamState:
    st = rig.reg.streams[StreamKey("/g", name)]
    rig.schedule.cancel(st)
    rig.reg.set_state(st, State.IDLE)
    st.created_ms = st.last_read_ms = st.last_ingestion_seen_ms = st.checkpoint_ms = at_ms
    st.last_event_seen_ms = at_ms
    st.committed = st.read_pos = Checkpoint("f/1/s", None, 0, at_ms, 0)
    return st


async def test_streams_past_the_groups_retention_are_forgotten_once_delivered(
    rig_factory: Callable[..., Rig],
) -> None:
    """retentionInDays (DescribeLogGroups, read by the group-facts stage)
    shortens the forget window of its group: a delivered idle stream whose
    last event is past retention holds nothing AWS keeps and is forgotten,
    well before CWC_FORGET_AFTER; one with events not delivered is kept; it
    is not recorded again by a deep walk."""
    rig = rig_factory(forget_after_s=7 * 86400, idle_grace_s=3600)
    old, recent = now_ms() - 2 * 24 * HOUR_MS, now_ms() - 2 * HOUR_MS
    at = {"expired": old, "expired-pending": old, "recent": recent}
    for name, t in at.items():
        rig.fake.add_stream("/g", name, creation_time_ms=t)
        rig.fake.put("/g", name, [(t, f"{name} 1")], ingestion_time_ms=t)
    rig.fake.set_retention("/g", 1)
    await rig.discovery.cycle()
    await rig.info.refresh()
    assert rig.discovery.forgetter.window_ms("/g") == 24 * HOUR_MS
    for name, t in at.items():
        await _idle_delivered(rig, name, t)
    rig.reg.streams[StreamKey("/g", "expired-pending")].pending_events = 1
    assert await rig.discovery.forgetter.prune() == 1
    assert {k.stream for k in rig.reg.streams} == {"expired-pending", "recent"}
    assert {r.key.stream for r in await rig.store.load_streams()} == {
        "expired-pending",
        "recent",
    }
    rig.reg.groups["/g"].walked_ms = now_ms() - 10 * 24 * HOUR_MS  # a deep walk to the end
    await rig.discovery.cycle()
    assert StreamKey("/g", "expired") not in rig.reg.streams
    # Retention removed (never expire): the window is CWC_FORGET_AFTER again.
    rig.fake.set_retention("/g", None)
    await rig.info.refresh()
    assert rig.discovery.forgetter.window_ms("/g") == 7 * 86400 * 1000


async def test_a_deep_walk_longer_than_its_page_budget_goes_on_where_it_stopped(
    rig_factory: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first walk to the end of a group larger than a tick's page budget
    (here 3 pages, 150 streams): each tick walks the top (what changed since
    the walk began) and then the next pages, until the walk ends and is
    recorded; it never starts again from the top."""
    import cwconsumer.discovery as discovery

    monkeypatch.setattr(discovery, "MAX_PAGES", 3)
    rig = rig_factory(idle_grace_s=3600)
    now = now_ms()
    for k in range(400):  # 8 pages
        at = now - 10_000 - k * 1000
        rig.fake.add_stream("/g", f"s-{k:03d}", creation_time_ms=at)
        rig.fake.put("/g", f"s-{k:03d}", [(at, f"m{k}")], ingestion_time_ms=at)
    await rig.discovery.cycle()
    first_done = now_ms()
    assert rig.reg.groups["/g"].walked_ms is None and len(rig.reg) == 150
    rig.fake.put("/g", "new", [(now_ms(), "fresh")])  # while the walk goes on
    pages = rig.fake.counts("DescribeLogStreams").total
    await rig.discovery.cycle()  # the top (1 page, with "new") + 3 pages
    # (Paging is positional: "new" on top moved every stream down one place,
    # so the walk sees one of them twice: that is what the walk's line is for.)
    assert len(rig.reg) == 300 and StreamKey("/g", "new") in rig.reg.streams
    assert rig.fake.counts("DescribeLogStreams").total - pages == 4
    await rig.discovery.cycle()  # the top + the last 3 pages (the last one short)
    assert len(rig.reg) == 401
    walked = rig.reg.groups["/g"].walked_ms
    assert walked is not None and walked <= first_done  # when the walk began
    assert (await rig.store.load_groups())["/g"].walked_ms == walked
    pages = rig.fake.counts("DescribeLogStreams").total
    await rig.discovery.cycle()  # done: a feed walk, one page
    assert rig.fake.counts("DescribeLogStreams").total - pages == 1
