"""The fast in-process tier: a delivery lane under faults that last.

A real :class:`~cwconsumer.delivery.Lane` with the real budget, health and
metrics, a real SQLite checkpoint database, and a sink and a store that fail on
demand. Sleeping and the clock are injected, so hours of a dead sink or days
of back-off run in well under a second. Every test checks the promises after
the fault: nothing lost (each event delivered or dead-lettered, the
checkpoint at the end of the stream), the checkpoint never passed an event
that was not confirmed, the memory budget back to zero, health back to 200.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import orjson
import pytest

from cwconsumer import delivery
from cwconsumer.delivery import Lane, auth_backoff_s, backoff_s
from cwconsumer.documents import Shaper
from cwconsumer.errors import StoreError
from cwconsumer.flow import Budget
from cwconsumer.health import Health
from cwconsumer.metrics import InFlight, Metrics
from cwconsumer.model import Chunk, Doc, LogEvent, OutBatch, StreamKey
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.sinks.formats import dumps_each
from cwconsumer.sinks.http import poison_items
from cwconsumer.store import Commit, DeadLetter, Store

KEY = StreamKey("/aws/lambda/app", "2026/12/06/[$LATEST]abc")
T0 = 1_765_000_000_000


class Clock:
    """Injected time: ``sleep`` moves it forward at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0
        self.sleeps = 0
        self.on_sleep: Callable[[], None] = lambda: None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.on_sleep()
        self.now += seconds
        self.slept += seconds
        self.sleeps += 1
        await anyio.lowlevel.checkpoint()


def make_chunks(pages: int, per_page: int) -> list[Chunk]:
    """``pages`` pages of one stream, each a chunk; event ids ``p<page>-<i>``."""
    chunks: list[Chunk] = []
    prev_ts: int | None = None
    for p in range(pages):
        docs: list[Doc] = []
        stamps: list[int] = []
        for i in range(per_page):
            ts = T0 + p * per_page + i
            docs.append(orjson.dumps({"message": f"p{p}-{i}", "event": {"id": f"p{p}-{i}"}}))
            stamps.append(ts)
        chunks.append(
            Chunk(
                key=KEY,
                docs=docs,
                timestamps=stamps,
                page_token=None if p == 0 else f"t{p}",
                page_start_time_ms=0 if p == 0 else None,
                offset=0,
                prev_ts=prev_ts,
                prev_ord=-1 if prev_ts is None else 0,
                next_token=f"t{p + 1}",
                ends_page=True,
                nbytes=sum(len(d) + 1 for d in docs if isinstance(d, bytes)),
            )
        )
        prev_ts = stamps[-1]
    return chunks


def event_id(doc: Doc) -> str:
    # The standard library reads a lone surrogate escape; orjson does not.
    fields = json.loads(doc) if isinstance(doc, bytes) else doc
    return str(fields["event"]["id"])


Script = Callable[[OutBatch, int], SendResult]


@dataclass
class ScriptedSink:
    """Answers each request as ``script(batch, call_number)`` says; records
    the ids of the events it accepted (an OK, or an OK item)."""

    script: Script
    name: str = "scripted"
    calls: int = 0
    accepted: list[str] = field(default_factory=list)

    async def send(self, batch: OutBatch) -> SendResult:
        self.calls += 1
        res = self.script(batch, self.calls)
        if res.items is None:
            if res.outcome is Outcome.OK:
                self.accepted.extend(event_id(d) for d in batch.docs)
        else:
            self.accepted.extend(
                event_id(d) for d, o in zip(batch.docs, res.items, strict=True) if o is Outcome.OK
            )
        return res

    async def probe(self) -> tuple[bool, str]:
        return True, "scripted"

    async def aclose(self) -> None:
        return None


class FlakyStore:
    """The real store, whose commits fail on demand before reaching SQLite.
    Every commit that does go through is checked against the promise: its
    checkpoint covers only events the sink accepted or that it dead-letters."""

    def __init__(self, store: Store, sink: ScriptedSink, chunks: Sequence[Chunk]) -> None:
        self.store = store
        self.sink = sink
        self.pages = {c.next_token: i for i, c in enumerate(chunks)}
        self.chunks = chunks
        self.fail = 0
        self.error = StoreError("cannot write cwc.db: database is locked", retriable=True)
        self.failed = 0
        self.on_failure: Callable[[], None] = lambda: None
        self.committed: list[str] = []
        self.dead_so_far: set[str] = set()

    async def commit(self, commits: Sequence[Commit], dead: Sequence[DeadLetter] = ()) -> None:
        if self.fail:
            self.fail -= 1
            self.failed += 1
            self.on_failure()
            raise self.error
        dead_ids = {d.event_id for d in dead}
        accepted = set(self.sink.accepted)
        for c in commits:
            assert c.checkpoint.token is not None
            upto = self.pages[c.checkpoint.token]
            for chunk in self.chunks[: upto + 1]:
                for doc in chunk.docs:
                    eid = event_id(doc)
                    dead_before = eid in self.dead_so_far
                    assert eid in accepted or eid in dead_ids or dead_before, (
                        f"checkpoint {c.checkpoint.token} passes {eid}, never confirmed"
                    )
            self.committed.append(c.checkpoint.token)
        await self.store.commit(commits, dead)
        self.dead_so_far.update(dead_ids)


@dataclass
class Rig:
    lane: Lane
    sink: ScriptedSink
    store: Store
    flaky: FlakyStore
    budget: Budget
    health: Health
    clock: Clock
    chunks: list[Chunk]

    async def run(self, timeout_s: float = 20.0) -> None:
        """Feed every chunk the way a reader does (budget first), then close
        the channel and let the lane drain it."""
        try:
            with anyio.fail_after(timeout_s):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.lane.run)
                    for c in self.chunks:
                        self.budget.settle(0, len(c), c.nbytes)
                        await self.lane.channel.put(c)
                    self.lane.channel.close()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def dead_letter_ids(self) -> list[str]:
        rows = await self.store.fetch("SELECT event_id FROM dead_letters ORDER BY id")
        return [str(r[0]) for r in rows]

    async def checkpoint_token(self) -> str | None:
        rows = await self.store.load_streams()
        return rows[0].checkpoint.token if rows else None


async def make_rig(
    tmp_path: Path, script: Script, *, pages: int = 20, per_page: int = 50, max_events: int = 100
) -> Rig:
    store = await Store.open(str(tmp_path / "cwc.db"), "wal")
    assert await store.acquire_lease("test", int(time.time() * 1000), 60_000, "here", 1)
    chunks = make_chunks(pages, per_page)
    sink = ScriptedSink(script)
    flaky = FlakyStore(store, sink, chunks)
    health = Health(stall_timeout_s=60.0)
    budget = Budget(1_000_000, 1 << 30, on_pending=health.pending)
    clock = Clock()
    lane = Lane(
        0,
        sink,
        flaky,  # type: ignore[arg-type]
        budget,
        health,
        Metrics(),
        max_events=max_events,
        max_bytes=10 << 20,
        max_wait_s=0.0,
        current=lambda c: True,
        on_committed=lambda chunks, dead: None,
        sleep=clock.sleep,
        clock=clock,
    )
    return Rig(lane, sink, store, flaky, budget, health, clock, chunks)


@pytest.fixture
async def closing() -> Any:
    stores: list[Store] = []
    yield stores
    for s in stores:
        await s.aclose()


def all_ids(chunks: Sequence[Chunk]) -> list[str]:
    return [event_id(d) for c in chunks for d in c.docs]


def ok(batch: OutBatch, n: int) -> SendResult:
    return SendResult(Outcome.OK, status=200)


# -- item 2: a long outage --------------------------------------------------------


def test_backoff_never_overflows_however_long_the_failure() -> None:
    """Old code: ``0.5 * 2 ** (attempt - 1)`` raised OverflowError from
    attempt 1,025 (about 4 h of a dead sink) and the lane lost its chunks."""
    for attempt in (1, 10, 1_025, 2_000, 10**6, 10**12):
        assert 0 <= backoff_s(attempt) <= delivery.BACKOFF_CAP_S
        assert auth_backoff_s(attempt) <= delivery.AUTH_BACKOFF_CAP_S
    for attempt in (1_025, 10**12):
        assert 0.75 * delivery.AUTH_BACKOFF_CAP_S <= auth_backoff_s(attempt)
    assert backoff_s(10**6, retry_after=5.0) >= 5.0


async def test_sink_fails_2000_times_then_recovers_nothing_lost(
    tmp_path: Path, closing: list[Store]
) -> None:
    def script(batch: OutBatch, n: int) -> SendResult:
        if n <= 2000:
            return SendResult(Outcome.RETRY, status=503, detail="HTTP 503: down")
        return ok(batch, n)

    during: list[dict[str, object]] = []

    def watching(batch: OutBatch, n: int) -> SendResult:
        if n == 1500:  # well inside the outage (hours of it)
            during.append(rig.health.verdict(rig.budget.events)[1])
        return script(batch, n)

    rig = await make_rig(tmp_path, watching)
    closing.append(rig.store)
    await rig.run()
    assert rig.sink.calls > 2000
    assert rig.clock.slept > 4 * 3600  # the outage lasted hours of back-off
    assert rig.sink.accepted == all_ids(rig.chunks)  # each once, in order
    assert await rig.checkpoint_token() == rig.chunks[-1].next_token
    assert rig.budget.events == 0 and rig.budget.bytes == 0
    assert during[0]["sink_retrying"] == {"error": "HTTP 503: down", "attempt": 1499}
    healthy, body = rig.health.verdict(rig.budget.events)
    assert healthy and "sink_retrying" not in body


# -- items 1 and 5: failing commits ---------------------------------------------


async def test_commit_fails_50_times_then_succeeds_nothing_lost_and_nothing_leaks(
    tmp_path: Path, closing: list[Store]
) -> None:
    """Old code: the first failed commit raised out of the lane; the service
    restarted it with its taken chunks gone, and their budget never returned."""
    rig = await make_rig(tmp_path, ok)
    closing.append(rig.store)
    rig.flaky.fail = 50
    during: list[tuple[bool, dict[str, object]]] = []
    rig.flaky.on_failure = lambda: during.append(rig.health.verdict(rig.budget.events))
    await rig.run()
    assert rig.flaky.failed == 50
    assert rig.sink.accepted == all_ids(rig.chunks)  # the batch was never sent twice
    assert await rig.checkpoint_token() == rig.chunks[-1].next_token
    assert rig.budget.events == 0 and rig.budget.bytes == 0 and rig.budget.reserved == 0
    # While a commit is refused /healthz says so; afterwards it is 200 again.
    assert not during[-1][0]
    assert "database is locked" in str(during[-1][1]["reasons"])
    assert rig.health.verdict(rig.budget.events)[0]


async def test_commit_failures_keep_the_dead_letters_with_their_checkpoint(
    tmp_path: Path, closing: list[Store]
) -> None:
    """Issue 14, item 1: disk full while a sink refused some events as poison.
    The dead letters and the checkpoint that passes them commit together,
    after the retries, and no event is neither delivered nor dead-lettered."""
    poison = {f"p{p}-{i}" for p in range(20) for i in (7, 31)}

    def script(batch: OutBatch, n: int) -> SendResult:
        bad = {
            j: "mapper_parsing_exception" for j, d in enumerate(batch.docs) if event_id(d) in poison
        }
        if not bad:
            return ok(batch, n)
        items = [Outcome.POISON if j in bad else Outcome.OK for j in range(len(batch))]
        return SendResult(Outcome.RETRY, status=200, items=items, item_detail=bad)

    rig = await make_rig(tmp_path, script)
    closing.append(rig.store)
    rig.flaky.fail = 30
    await rig.run()
    dead = await rig.dead_letter_ids()
    assert sorted(dead) == sorted(poison)
    assert sorted(rig.sink.accepted + dead) == sorted(all_ids(rig.chunks))
    assert await rig.checkpoint_token() == rig.chunks[-1].next_token
    assert rig.budget.events == 0


async def test_a_commit_failing_for_good_stops_the_lane_with_the_cause_and_moves_nothing(
    tmp_path: Path, closing: list[Store]
) -> None:
    rig = await make_rig(tmp_path, ok, pages=3)
    closing.append(rig.store)
    rig.flaky.fail = 10**9
    with pytest.raises(StoreError, match="database is locked") as caught:
        await rig.run()
    assert "checkpoint commit failed" in str(caught.value)
    assert rig.clock.slept >= delivery.COMMIT_RETRY_S  # bounded, but not at once
    assert await rig.checkpoint_token() is None  # nothing passed the unconfirmed batch
    assert rig.budget.events < sum(len(c) for c in rig.chunks)  # the held batch was released


async def test_a_store_error_that_is_not_retriable_stops_the_lane_at_once(
    tmp_path: Path, closing: list[Store]
) -> None:
    rig = await make_rig(tmp_path, ok, pages=2)
    closing.append(rig.store)
    rig.flaky.fail = 10**9
    rig.flaky.error = StoreError("cannot write cwc.db: attempt to write a readonly database")
    with pytest.raises(StoreError, match="readonly"):
        await rig.run()
    assert rig.flaky.failed == 1
    assert await rig.checkpoint_token() is None


# -- item 10: a sink refusing everything ----------------------------------------


async def test_a_sink_answering_404_to_everything_dead_letters_nothing_and_is_unhealthy(
    tmp_path: Path, closing: list[Store]
) -> None:
    """Old code: every batch was bisected to single events and every event
    dead-lettered while checkpoints moved on and /healthz said 200."""
    seen: list[tuple[bool, dict[str, object]]] = []
    rig_box: list[Rig] = []

    def script(batch: OutBatch, n: int) -> SendResult:
        if n <= 200:
            if n == 150:
                rig = rig_box[0]
                seen.append(rig.health.verdict(rig.budget.events))
            return SendResult(Outcome.POISON, status=404, detail="HTTP 404: Not Found")
        return ok(batch, n)

    rig = await make_rig(tmp_path, script)
    rig_box.append(rig)
    closing.append(rig.store)
    await rig.run()
    assert await rig.dead_letter_ids() == []
    assert rig.sink.accepted == all_ids(rig.chunks)
    assert rig.sink.calls == 200 + 10  # no bisecting: 10 batches of 100 once it answered
    assert not seen[0][0]
    assert "HTTP 404" in str(seen[0][1]["reasons"])
    assert rig.health.verdict(rig.budget.events)[0]


async def test_every_event_refused_the_same_way_is_the_sinks_problem_not_poison(
    tmp_path: Path, closing: list[Store]
) -> None:
    """A 400 with one answer for every event (an index that does not
    exist, a broken pipeline): bisected once, then no dead letters; the
    batch waits, slowly retried, until the sink takes it."""
    fixed = [False]

    def script(batch: OutBatch, n: int) -> SendResult:
        if not fixed[0]:
            if n >= 400:
                fixed[0] = True
            return SendResult(Outcome.POISON, status=400, detail="HTTP 400: no such index [logs]")
        return ok(batch, n)

    rig = await make_rig(tmp_path, script, pages=4, per_page=25)
    closing.append(rig.store)
    # The first wait comes right after the batch was found refused alike
    # (bisecting does not wait): /healthz already says why, from then on.
    waits: list[tuple[bool, dict[str, object]]] = []
    rig.clock.on_sleep = lambda: waits.append(rig.health.verdict(rig.budget.events))
    await rig.run()
    assert await rig.dead_letter_ids() == []
    assert rig.sink.accepted == all_ids(rig.chunks)
    assert rig.clock.slept > 60  # slow retries, not a tight loop
    assert waits and all(not healthy for healthy, _ in waits)
    assert "no such index" in str(waits[0][1]["reasons"])
    assert rig.health.verdict(rig.budget.events)[0]


async def test_refusals_that_single_out_events_are_still_poison(
    tmp_path: Path, closing: list[Store]
) -> None:
    """The control: a 400 for a batch holding one bad event is bisected and
    only that event is dead-lettered."""

    def script(batch: OutBatch, n: int) -> SendResult:
        if any(event_id(d) == "p1-3" for d in batch.docs):
            return SendResult(Outcome.POISON, status=400, detail="HTTP 400: bad field")
        return ok(batch, n)

    rig = await make_rig(tmp_path, script, pages=3, per_page=10)
    closing.append(rig.store)
    await rig.run()
    assert await rig.dead_letter_ids() == ["p1-3"]
    assert len(rig.sink.accepted) == 29
    assert await rig.checkpoint_token() == rig.chunks[-1].next_token


# -- items 3 and 4: poison in odd shapes ------------------------------------------


def shaped(messages: list[bytes]) -> Chunk:
    shaper = Shaper(KEY.group, KEY.stream, "us-east-1", "auto")
    events = [LogEvent(T0 + i, msgspec.Raw(m), T0 + i + 100) for i, m in enumerate(messages)]
    docs, stamps, _, _, nbytes = shaper.shape(events, None, -1)
    return Chunk(KEY, docs, stamps, None, 0, 0, None, -1, "t1", True, nbytes)


async def test_a_report_line_with_an_integer_beyond_64_bits_is_dead_lettered_not_lost(
    tmp_path: Path, closing: list[Store]
) -> None:
    """Old code: writing its dead-letter row raised ``TypeError: Integer
    exceeds 64-bit range``; the event was lost, its neighbours pending for ever.
    The shaper of the time made this document of such a line (today's leaves
    the number out); any document orjson cannot encode must take this path."""
    chunk = shaped([b'"before"', b'"REPORT"', b'"after"'])
    report = orjson.loads(chunk.docs[1])
    report["aws"]["lambda"] = {"type": "report", "max_memory_used_mb": 10**26 - 1}
    chunk.docs[1] = report

    def script(batch: OutBatch, n: int) -> SendResult:
        _, bad = dumps_each(batch.docs)  # what every HTTP sink does first
        if bad:
            return poison_items(len(batch), bad)
        return ok(batch, n)

    rig = await make_rig(tmp_path, script, pages=0)
    closing.append(rig.store)
    rig.chunks = [chunk]
    rig.flaky.chunks = [chunk]
    rig.flaky.pages = {"t1": 0}
    await rig.run()
    rows = await rig.store.fetch("SELECT event_id, document FROM dead_letters")
    assert len(rows) == 1
    assert b"99999999999999999999999999" in rows[0][1]  # the number kept exactly
    assert rows[0][0] == event_id(chunk.docs[1])
    assert len(rig.sink.accepted) == 2
    assert await rig.checkpoint_token() == "t1"
    assert rig.budget.events == 0


LONE_SURROGATE = b'"start \\ud800 end"'


def test_a_lone_surrogate_escape_does_not_break_the_in_flight_metrics() -> None:
    """Old code: the metrics step parsed the page's first document, raised
    JSONDecodeError, and the reader was restarted after its read position had
    moved on: the whole page was lost."""
    chunk = shaped([LONE_SURROGATE, b'"two"', b'"three"', b'"four"'])
    flight = InFlight()
    flight.read(chunk)
    assert flight.has_pending(KEY)
    flight.confirmed([chunk])
    assert not flight.has_pending(KEY)


async def test_a_lone_surrogate_escape_is_shipped_or_dead_lettered_never_raised(
    tmp_path: Path, closing: list[Store]
) -> None:
    """Through a format that must read every document's fields (Loki)."""
    from cwconsumer.sinks.loki import encode_push

    chunk = shaped([b'"one"', LONE_SURROGATE, b'"three"'])

    def script(batch: OutBatch, n: int) -> SendResult:
        _, bad = encode_push(batch)
        return poison_items(len(batch), bad) if bad else ok(batch, n)

    rig = await make_rig(tmp_path, script, pages=0)
    closing.append(rig.store)
    rig.chunks = [chunk]
    rig.flaky.chunks = [chunk]
    rig.flaky.pages = {"t1": 0}
    await rig.run()
    dead = await rig.dead_letter_ids()
    assert sorted(rig.sink.accepted + dead) == sorted(event_id(d) for d in chunk.docs)
    assert await rig.checkpoint_token() == "t1"
    assert rig.budget.events == 0


# -- the reader: a chunk not handed over gives back its position -----------------


async def test_a_chunk_that_cannot_be_handed_over_is_read_again_not_skipped() -> None:
    """Old code moved the stream's read position before handing the chunk
    over; when the hand-over raised, the worker was restarted past the page:
    every event of it was lost (item 4's second half)."""
    from cwconsumer.aws import Page
    from cwconsumer.model import Checkpoint
    from cwconsumer.reader import Reader
    from cwconsumer.schedule import Schedule
    from cwconsumer.streams import StreamState

    class Logs:
        async def get_log_events(
            self,
            group: str,
            stream: str,
            token: str | None,
            start: int | None,
            limit: int = 0,
            *,
            paced: bool = True,
        ) -> Page:
            events = [LogEvent(T0 + i, msgspec.Raw(b'"m"'), T0 + i) for i in range(4)]
            return Page(events, "next-token")

    async def broken_route(chunk: Chunk) -> None:
        raise RuntimeError("hand-over failed")

    budget = Budget(1000, 1 << 20)
    reader = Reader(
        Logs(),  # type: ignore[arg-type]
        Schedule(),
        budget,
        broken_route,
        region="us-east-1",
        parse_mode="auto",
        poll_interval_s=1.0,
        idle_grace_s=60.0,
    )
    start = Checkpoint(None, 0)
    st = StreamState(key=KEY, committed=start, read_pos=start)
    reserved = budget.try_reserve(10)
    with pytest.raises(RuntimeError):
        await reader.poll(st, reserved)
    assert st.read_pos == start  # the page is read again, not skipped
    assert budget.events == 0 and budget.reserved == 0 and st.pending_events == 0


async def test_a_worker_stopped_while_waiting_for_a_stream_gives_its_memory_back() -> None:
    """A worker reserves memory before it takes a stream; when it is stopped
    (or fails) before it reads, the reservation is given back, not held for
    ever out of the budget every reader shares."""
    from cwconsumer.reader import Reader
    from cwconsumer.schedule import Schedule

    class Logs:
        async def pace(self, op: str) -> None:
            return None

    async def route(chunk: Chunk) -> None:
        raise AssertionError("nothing is read")

    budget = Budget(1000, 1 << 20)
    reader = Reader(
        Logs(),  # type: ignore[arg-type]
        Schedule(),  # no stream: the worker waits for one
        budget,
        route,
        region="us-east-1",
        parse_mode="auto",
        poll_interval_s=1.0,
        idle_grace_s=60.0,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(reader.worker)
        await anyio.sleep(0.1)
        assert budget.reserved > 0  # waiting for a stream, with its reservation
        tg.cancel_scope.cancel()
    assert budget.reserved == 0 and budget.events == 0
