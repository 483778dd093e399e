"""A lane above the edge, with the in-memory checkpoint store
(tests/support/memstore.py) instead of SQLite: several streams in one lane,
an event refused for good, commits refused for a while. Milliseconds, and
the promises are the product's: every stream's checkpoint after its last
event, the refused event dead-lettered in the same commit, the budget back
to zero, and a commit refused for good stops the lane with nothing moved."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import orjson
import pytest

from cwconsumer.delivery import Lane
from cwconsumer.errors import StoreError
from cwconsumer.flow import Budget
from cwconsumer.health import Health
from cwconsumer.metrics import Metrics
from cwconsumer.model import Chunk, Doc, OutBatch, StreamKey
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.store import CheckpointStore
from tests.support.memstore import MemoryStore

KEYS = [StreamKey("/g", s) for s in ("a", "b", "c")]
POISON = b"poison"


def chunks_of(key: StreamKey, pages: int, per_page: int) -> list[Chunk]:
    out: list[Chunk] = []
    prev: int | None = None
    for p in range(pages):
        docs: list[Doc] = []
        for i in range(per_page):
            tag = POISON if (key.stream, p, i) == ("b", 1, 3) else b"fine"
            docs.append(orjson.dumps({"event": {"id": f"{key.stream}{p}-{i}"}, "m": tag.decode()}))
        stamps = [1000 + p * per_page + i for i in range(per_page)]
        out.append(
            Chunk(
                key=key,
                docs=docs,
                timestamps=stamps,
                page_token=None if p == 0 else f"{key.stream}{p}",
                page_start_time_ms=0 if p == 0 else None,
                offset=0,
                prev_ts=prev,
                prev_ord=-1 if prev is None else 0,
                next_token=f"{key.stream}{p + 1}",
                ends_page=True,
                nbytes=sum(len(d) for d in docs if isinstance(d, bytes)),
            )
        )
        prev = stamps[-1]
    return out


class PerItemSink:
    """Refuses, per item, the documents that say ``poison``; takes the rest."""

    name = "per-item"

    def __init__(self) -> None:
        self.accepted: list[bytes] = []

    async def send(self, batch: OutBatch) -> SendResult:
        items = [Outcome.POISON if POISON in d else Outcome.OK for d in batch.docs]  # type: ignore[operator]
        self.accepted.extend(
            d
            for d, o in zip(batch.docs, items, strict=True)
            if o is Outcome.OK  # type: ignore[misc]
        )
        return SendResult(Outcome.OK, status=200, items=items, item_detail={})

    async def probe(self) -> tuple[bool, str]:
        return True, "ok"

    async def aclose(self) -> None:
        return None


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


async def run_lane(store: CheckpointStore, chunks: Sequence[Chunk]) -> tuple[Budget, PerItemSink]:
    health = Health(stall_timeout_s=60.0)
    budget = Budget(1_000_000, 1 << 30, on_pending=health.pending)
    sink = PerItemSink()
    lane = Lane(
        0,
        sink,
        store,
        budget,
        health,
        Metrics(),
        max_events=7,
        max_bytes=1 << 20,
        max_wait_s=0.0,
        current=lambda c: True,
        on_committed=lambda chunks, dead: None,
        sleep=no_sleep,
    )
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lane.run)
                for c in chunks:
                    budget.settle(0, len(c), c.nbytes)
                    await lane.channel.put(c)
                lane.channel.close()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return budget, sink


def interleaved() -> list[Chunk]:
    per_stream = [chunks_of(k, pages=4, per_page=5) for k in KEYS]
    return [c for page in zip(*per_stream, strict=True) for c in page]


async def test_streams_sharing_a_lane_end_at_their_last_event_with_the_refused_one_dead() -> None:
    store = MemoryStore()
    store.fail_commits = 3  # retriable: tried again, never dropped
    chunks = interleaved()
    budget, sink = await run_lane(store, chunks)
    rows = {r.key: r for r in await store.load_streams()}
    for key in KEYS:
        last = [c for c in chunks if c.key == key][-1]
        assert rows[key].checkpoint == last.checkpoint_after()
    assert {k.stream: (rows[k].delivered, rows[k].dead_lettered) for k in KEYS} == {
        "a": (20, 0),
        "b": (19, 1),
        "c": (20, 0),
    }
    [dead] = store.dead_letters
    assert (dead.key, dead.event_id) == (KEYS[1], "b1-3")
    assert len(sink.accepted) == 59 and all(POISON not in d for d in sink.accepted)
    assert budget.events == 0 and budget.bytes == 0


async def test_a_commit_refused_for_good_stops_the_lane_and_moves_nothing() -> None:
    store = MemoryStore()
    store.fail_commits = 1
    store.error = StoreError("cannot write memory: attempt to write a readonly database")
    with pytest.raises(StoreError, match="readonly"):
        await run_lane(store, interleaved())
    assert await store.load_streams() == [] and store.dead_letters == []
