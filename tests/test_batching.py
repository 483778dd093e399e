"""A lane's batching rules on their own (pure, no I/O): what part of a chunk
joins a batch, the halving of a refused request down to the events refused,
per-item retries in order, refusals that are the sink's problem, and the
checkpoint plan after confirmation. The lane that uses them is tested with
faults in tests/test_lane_faults.py."""

from __future__ import annotations

import random

import orjson
import pytest

from cwconsumer.batching import (
    SendPlan,
    batch_full,
    dead_letter_document,
    event_id_of,
    plan_checkpoints,
    refused_alike,
    sink_wide,
    take_from_head,
)
from cwconsumer.model import Checkpoint, Chunk, Doc, StreamKey
from cwconsumer.sinks.base import Outcome

A, B = StreamKey("/g", "a"), StreamKey("/g", "b")


def take(
    head: tuple[int, int], held: tuple[int, int], started: bool, limits: tuple[int, int]
) -> int | None:
    return take_from_head(
        head[0],
        head[1],
        events=held[0],
        nbytes=held[1],
        started=started,
        max_events=limits[0],
        max_bytes=limits[1],
    )


# -- collecting ---------------------------------------------------------------------


def test_a_chunk_that_fits_joins_whole() -> None:
    assert take((10, 1000), (0, 0), False, (100, 10_000)) == 10
    assert take((90, 9000), (10, 1000), True, (100, 10_000)) == 90
    assert take((0, 0), (99, 9999), True, (100, 10_000)) == 0  # an empty chunk joins as it is


def test_a_chunk_too_many_events_is_cut_at_the_room_left() -> None:
    assert take((50, 500), (80, 800), True, (100, 1_000_000)) == 20


def test_a_chunk_too_many_bytes_is_cut_at_its_mean_event_size() -> None:
    # 100-byte events, 450 bytes of room: 4 of them.
    assert take((10, 1000), (5, 9550), True, (1000, 10_000)) == 4


def test_a_started_batch_ships_rather_than_take_an_event_that_does_not_fit() -> None:
    assert take((3, 3000), (5, 9550), True, (1000, 10_000)) is None
    # A batch holding only empty chunks (no events) has begun all the same.
    assert take((3, 60_000), (0, 0), True, (1000, 10_000)) is None


def test_a_batch_not_started_takes_one_event_however_large() -> None:
    assert take((3, 30_000), (0, 0), False, (1000, 10_000)) == 1
    assert take((1, 30_000), (0, 0), False, (1000, 10_000)) == 1


def test_batch_full_at_either_limit() -> None:
    assert not batch_full(99, 9_999, max_events=100, max_bytes=10_000)
    assert batch_full(100, 0, max_events=100, max_bytes=10_000)
    assert batch_full(1, 10_000, max_events=100, max_bytes=10_000)


def test_collecting_random_chunks_never_loses_or_reorders_an_event() -> None:
    rnd = random.Random(7)
    for _ in range(200):
        max_events, max_bytes = rnd.randint(1, 50), rnd.randint(50, 5000)
        queue = [(rnd.randint(0, 40), rnd.randint(1, 300)) for _ in range(rnd.randint(1, 20))]
        total = sum(n for n, _ in queue)
        shipped: list[int] = []
        while queue:
            events = nbytes = 0
            started = False
            while queue and not batch_full(
                events, nbytes, max_events=max_events, max_bytes=max_bytes
            ):
                n, per = queue[0]
                k = take((n, n * per), (events, nbytes), started, (max_events, max_bytes))
                if k is None:
                    break
                assert 0 < k <= n or k == n == 0
                queue[0] = (n - k, per)
                if k == n:
                    queue.pop(0)
                events, nbytes, started = events + k, nbytes + k * per, True
            assert started, "a batch always makes progress"
            assert events <= max_events
            # Over the byte limit only by the last event taken (never held back).
            assert nbytes <= max_bytes or nbytes - per < max_bytes
            shipped.append(events)
        assert sum(shipped) == total


# -- sending ------------------------------------------------------------------------


def run_plan(size: int, poison: set[int], too_large_above: int = 10**9) -> tuple[list[int], int]:
    """Play a sink that refuses any request holding a ``poison`` event (400)
    or more than ``too_large_above`` events (413); returns the rejected
    indexes and the number of requests."""
    plan = SendPlan(size)
    requests = 0
    confirmed: list[int] = []
    while (idx := plan.next()) is not None:
        requests += 1
        if len(idx) > too_large_above:
            plan.refused(413, "too large")
        elif poison & set(idx):
            plan.refused(400, "bad event")
        else:
            confirmed.extend(idx)
            plan.confirmed()
    rejected = [r.index for r in plan.rejected]
    assert sorted(confirmed + rejected) == list(range(size))
    assert confirmed == sorted(confirmed), "confirmed in order"
    return rejected, requests


def test_a_refused_batch_is_halved_down_to_exactly_the_refused_events() -> None:
    rejected, requests = run_plan(64, {5, 40})
    assert rejected == [5, 40]
    assert requests <= 2 * 2 * 7 + 1  # about 2·k·log2(n)


def test_a_single_refused_event_is_rejected_with_the_sinks_answer() -> None:
    plan = SendPlan(1)
    assert plan.refused(400, "mapper_parsing_exception")
    assert plan.next() is None
    assert [(r.index, r.status, r.detail) for r in plan.rejected] == [
        (0, 400, "mapper_parsing_exception")
    ]


def test_too_large_splits_until_requests_fit_and_rejects_nothing() -> None:
    rejected, requests = run_plan(100, set(), too_large_above=30)
    assert rejected == []
    assert requests == 1 + 2 + 4  # 100 refused, 50 and 50 refused, four 25s sent


@pytest.mark.parametrize("seed", range(20))
def test_random_refusals_are_found_exactly(seed: int) -> None:
    rnd = random.Random(seed)
    size = rnd.randint(1, 300)
    poison = {rnd.randrange(size) for _ in range(rnd.randint(0, 5))}
    rejected, _ = run_plan(size, poison, too_large_above=rnd.randint(1, 400))
    assert rejected == sorted(poison)


def test_per_item_answers_reject_refused_and_resend_the_rest_in_order() -> None:
    plan = SendPlan(5)
    again = plan.answered_per_item(
        [Outcome.OK, Outcome.RETRY, Outcome.POISON, Outcome.RETRY, Outcome.OK],
        207,
        "partial",
        {2: "bad field"},
    )
    assert again
    assert list(plan.next() or []) == [1, 3]
    assert [(r.index, r.detail) for r in plan.rejected] == [(2, "bad field")]
    assert not plan.answered_per_item([Outcome.OK, Outcome.OK], 200, "", {})
    assert plan.next() is None


def test_refused_alike_is_the_sinks_problem_only_for_a_whole_batch_of_two_or_more() -> None:
    plan = SendPlan(3)
    plan.answered_per_item([Outcome.POISON] * 3, 400, "index closed", {})
    assert refused_alike(3, plan.rejected)
    assert not refused_alike(4, plan.rejected)
    assert not refused_alike(1, plan.rejected[:1])
    other = SendPlan(2)
    other.answered_per_item([Outcome.POISON] * 2, 400, "x", {0: "a", 1: "b"})
    assert not refused_alike(2, other.rejected)


def test_sink_wide_refusals() -> None:
    assert sink_wide(404, "Not Found", None)
    assert not sink_wide(400, "bad", None)
    assert sink_wide(400, "bad", (400, "bad"))
    assert not sink_wide(400, "other", (400, "bad"))


# -- after confirmation ---------------------------------------------------------------


def chunk(key: StreamKey, start: int, n: int, *, next_token: str = "t-next") -> Chunk:
    docs: list[Doc] = [
        orjson.dumps({"message": f"{key.stream}{i}", "event": {"id": f"{key.stream}{i}"}})
        for i in range(start, start + n)
    ]
    return Chunk(
        key=key,
        docs=docs,
        timestamps=[1000 + i for i in range(start, start + n)],
        page_token="t-page",
        page_start_time_ms=None,
        offset=start,
        prev_ts=None if start == 0 else 999 + start,
        prev_ord=0,
        next_token=next_token,
        ends_page=False,
        nbytes=sum(len(d) for d in docs),
    )


def test_checkpoints_move_past_each_streams_last_event_with_its_dead_letters() -> None:
    chunks = [chunk(A, 0, 3), chunk(B, 0, 2), chunk(A, 3, 2)]
    docs = [d for c in chunks for d in c.docs]
    plan = SendPlan(len(docs))
    items = [Outcome.OK] * 4 + [Outcome.POISON] + [Outcome.OK] * 2
    plan.answered_per_item(items, 400, "", {4: "refused"})
    result = plan_checkpoints(chunks, docs, plan.rejected, lambda c: True)
    assert [(c.key, c.delivered, c.dead_lettered) for c in result.commits] == [
        (A, 5, 0),
        (B, 1, 1),
    ]
    assert result.commits[0].checkpoint == Checkpoint("t-page", None, 5, 1004, 0)
    [dead] = result.dead
    assert (dead.key, dead.event_id, dead.timestamp_ms, dead.answer) == (B, "b1", 1001, "refused")
    assert result.dead_per == {B: 1}


def test_a_stream_no_longer_current_moves_nothing_and_keeps_no_dead_letter() -> None:
    chunks = [chunk(A, 0, 2), chunk(B, 0, 2)]
    docs = [d for c in chunks for d in c.docs]
    plan = SendPlan(len(docs))
    plan.answered_per_item([Outcome.POISON, Outcome.OK, Outcome.POISON, Outcome.OK], 400, "x", {})
    result = plan_checkpoints(chunks, docs, plan.rejected, lambda c: c.key == A)
    assert [c.key for c in result.commits] == [A]
    assert [d.key for d in result.dead] == [A]
    assert result.dead_per == {A: 1, B: 1}  # counted (metrics), not stored


def test_a_dead_letter_answer_is_bounded_and_an_unencodable_document_still_stored() -> None:
    chunks = [chunk(A, 0, 1)]
    plan = SendPlan(1)
    plan.refused(400, "x" * 5000)
    result = plan_checkpoints(chunks, chunks[0].docs, plan.rejected, lambda c: True)
    assert len(result.dead[0].answer) == 2000
    huge = {"n": 2**70, "event": {"id": "e1"}}
    assert orjson.loads(dead_letter_document(huge).replace(b"1180591620717411303424", b"0")) == {
        "n": 0,
        "event": {"id": "e1"},
    }
    assert event_id_of(huge) == "e1"
    assert event_id_of(b"not json") == ""
