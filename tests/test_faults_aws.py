"""CloudWatch Logs misbehaving: rejected and expired tokens, empty / capped /
endless pages, throttling and service errors, deleted streams and groups.

The product runs as a real process through the real aiobotocore client
against the stand-in of ``tests/support/fakecwl.py``, which speaks the AWS
protocol and can do what moto cannot (empty pages, page caps, token
rejection, throttling). Every test checks the outcome that matters — each
event delivered exactly once (no crash here), in stream order, with the id
it must carry — and the mechanism that gets there, from the stand-in's call
log or the product's metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs, GetLogEventsCall
from tests.support.fakesinks import RecordingSink
from tests.support.harness import (
    Admin,
    Key,
    StreamTruth,
    Writer,
    check_ids,
    delivered_indexes,
    free_port,
    log_records,
    message,
)

SEED = 20261121
REJECTED = ("token-rejected", "token-expired-generation")


def all_delivered(sink: RecordingSink, counts: dict[Key, int]) -> Callable[[], bool]:
    def done() -> bool:
        got = delivered_indexes(sink.docs())
        return all(len(set(got.get(k, []))) >= n for k, n in counts.items())

    return done


def wait_delivered(
    sink: RecordingSink, counts: dict[Key, int], timeout_s: float, what: str
) -> None:
    """Wait for every event; on time-out, say which are missing or doubled."""
    try:
        wait_until(all_delivered(sink, counts), timeout_s, what)
    except AssertionError:
        assert_exactly_once_in_order(sink, counts)
        raise


def assert_exactly_once_in_order(sink: RecordingSink, counts: dict[Key, int]) -> None:
    got = delivered_indexes(sink.docs())
    for key, n in counts.items():
        seq = got.get(key, [])
        assert seq == list(range(n)), (
            f"{key}: expected events 0..{n - 1} once each, in order; got {len(seq)} "
            f"({len(seq) - len(set(seq))} duplicates, {n - len(set(seq))} missing) seed={SEED}"
        )


def replay_reader(truth: StreamTruth, calls: list[GetLogEventsCall], pos: int) -> int:
    """Walk one stream's GetLogEvents calls as the reader made them, from the
    position ``pos`` (events already consumed), checking that every call after
    a rejected token is a time fallback with ``startTime`` = the timestamp of
    the last event read (inclusive), never ``+1 ms``. Returns the position
    reached and counts nothing else: loss and duplicates are checked at the sink."""
    ts = truth.timestamps
    fetched = pos  # where the next page of the current token starts
    expect_fallback = False
    for n, c in enumerate(calls):
        where = f"{truth.key} call {n} (seed={SEED})"
        if c.error is not None:
            assert c.note in REJECTED, f"{where}: unexpected error {c.error} {c.note}"
            expect_fallback = True
            continue
        if expect_fallback:
            assert c.token is None and c.start_time is not None, f"{where}: not a time fallback"
            assert pos > 0, f"{where}: a fallback before anything was read"
            assert c.start_time == ts[pos - 1], (
                f"{where}: fallback startTime {c.start_time}, last event read was at "
                f"{ts[pos - 1]} (startTime must be that millisecond, inclusive)"
            )
            fetched = ts.index(c.start_time)
            expect_fallback = False
        elif c.token is None:
            fetched = 0 if c.start_time is None else ts.index(c.start_time)
        fetched += c.returned
        pos = max(pos, fetched)
    return pos


def test_rejected_and_expired_tokens_resume_by_time_without_loss_or_duplicates(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    sink: RecordingSink,
    make_fake_product: Callable[..., Product],
) -> None:
    fake = start_fakecwl(SEED)
    w = Writer(fake, seed=SEED)
    keys = [("/tok", "a"), ("/tok", "b")]
    for g, s in keys:
        # 3-9 events share each millisecond and pages hold 5: page boundaries fall
        # inside a millisecond, where `+1 ms` loses events and no skip duplicates
        # them. Milliseconds 10 apart: `last + 1` is never an event's time.
        w.put(g, s, 1200, burst=(3, 9), step_ms=(10, 10))
        fake.page_cap(g, s, 5)
    product = make_fake_product(fake, sink.url, CWC_LOG_GROUPS="/tok", CWC_API_RATE="150")

    stop = threading.Event()

    def inject() -> None:
        # Tokens die while the product reads: one-off rejections on both streams
        # every 70 ms, and every token ever issued invalidated every 400 ms.
        tick = 0
        while not stop.wait(0.07):
            tick += 1
            for g, s in keys:
                fake.reject_tokens(g, s, 1)
            if tick % 6 == 0:
                fake.expire_tokens()

    injector = threading.Thread(target=inject, daemon=True)
    product.start()
    injector.start()
    try:
        wait_delivered(sink, w.counts(), 45, "every event despite dying tokens")
    finally:
        stop.set()
        injector.join()
    assert product.terminate() == 0
    first_run = w.counts()
    for g, s in keys:
        truth = StreamTruth.read(fake, g, s)
        calls = fake.get_calls(g, s)
        rejected = sum(1 for c in calls if c.note in REJECTED)
        assert rejected >= 15, f"{(g, s)}: only {rejected} rejected tokens; the test proves nothing"
        assert replay_reader(truth, calls, 0) == len(truth)
    assert_exactly_once_in_order(sink, first_run)

    # The stored checkpoints' tokens expire while the product is stopped (the
    # 24-hour case); more events arrive; the restart resumes by time from the
    # last delivered event and delivers exactly the new ones.
    fake.expire_tokens()
    fake.clear_calls()
    for g, s in keys:
        w.put(g, s, 300, burst=(3, 9), step_ms=(10, 10))
    product.start()
    wait_delivered(sink, w.counts(), 60, "the events appended while stopped")
    assert product.terminate() == 0
    assert_exactly_once_in_order(sink, w.counts())
    truths = [StreamTruth.read(fake, g, s) for g, s in keys]
    for truth in truths:
        calls = fake.get_calls(*truth.key)
        assert calls[0].note == "token-expired-generation", "the restart did not use its token"
        assert replay_reader(truth, calls, first_run[truth.key]) == len(truth)
    check_ids(sink.docs(), truths)
    assert "forward token rejected; resuming by time" in product.logs()


def test_empty_capped_and_endless_pages_lose_nothing_and_never_starve_other_streams(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    sink: RecordingSink,
    make_fake_product: Callable[..., Product],
) -> None:
    fake = start_fakecwl(SEED)
    w = Writer(fake, seed=SEED)
    empty, capped, big, endless = ("/pg", "empty"), ("/pg", "capped"), ("/pg", "big"), ("/pg", "x")
    w.put(*empty, 400)
    fake.empty_pages(*empty, next_n=5, every=3)  # empty pages with new tokens, mid-stream
    fake.page_cap(*empty, 30)
    w.put(*capped, 400)
    fake.page_cap(*capped, 7)  # partial pages
    # 60 KB events: the 1 MB page cap cuts pages at 16 events.
    w.put(*big, 60, suffixes={i: " " + "x" * 60_000 for i in range(60)})
    fake.add_stream(*endless)  # events past retention: empty pages, new token, for ever
    fake.endless_empty(*endless)
    poll_s = 2.0
    product = make_fake_product(
        fake,
        sink.url,
        CWC_LOG_GROUPS="/pg",
        CWC_WORKERS="1",  # one reader: an unbounded read of any stream would starve the rest
        CWC_API_RATE="50",
        CWC_POLL_INTERVAL="2s",
    ).start()
    counts = {k: w.count(k) for k in (empty, capped, big)}
    wait_delivered(sink, counts, 60, "the backlog of the finite streams")

    # While the endless stream keeps answering empty pages, new events keep flowing.
    window_s = 8.0
    before = fake.stream_calls(*endless)
    started = time.monotonic()
    for _ in range(4):
        w.put(*capped, 25, now=True)
        w.put(*empty, 25, now=True)
        time.sleep(window_s / 4)
    counts = {k: w.count(k) for k in (empty, capped, big)}
    wait_delivered(sink, counts, 30, "events appended while the endless stream spins")
    elapsed = time.monotonic() - started
    polls = fake.stream_calls(*endless) - before
    assert product.terminate() == 0

    assert_exactly_once_in_order(sink, counts)
    check_ids(sink.docs(), [StreamTruth.read(fake, *k) for k in counts])
    # Backed off to the poll interval, not 50 calls/s of the shared budget.
    assert 1 <= polls <= elapsed / poll_s + 2, f"endless stream polled {polls}× in {elapsed:.1f}s"
    notes = [c.note for c in fake.get_calls(*empty)]
    assert notes.count("injected-empty") >= 8, "the stand-in served too few empty pages"
    pages_of_big = [c.returned for c in fake.get_calls(*big) if c.returned]
    assert max(pages_of_big) < 60, "the 1 MB page cap was not hit"


def metric(admin: Admin, name: str, **labels: str) -> float:
    value = admin.metric(name, **labels)
    assert value is not None, f"no metric {name}{labels}"
    return value


def test_half_of_all_calls_throttled_for_a_minute_loses_nothing_and_throughput_recovers(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    sink: RecordingSink,
    make_fake_product: Callable[..., Product],
) -> None:
    fake = start_fakecwl(SEED)  # the throttling RNG is seeded
    w = Writer(fake, seed=SEED)
    keys = [("/thr", f"s{i}") for i in range(4)]
    for k in keys:
        w.put(*k, 4200)
        fake.page_cap(*k, 50)  # a steady backlog: events/s = successful calls/s × 50
    port = free_port()
    admin = Admin(port)
    rate = 10.0
    product = make_fake_product(
        fake,
        sink.url,
        CWC_LOG_GROUPS="/thr",
        CWC_API_RATE=f"{rate:g}",
        CWC_WORKERS="8",
        CWC_BATCH_MAX_EVENTS="1000",
        CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
    ).start()

    def delivered_in(seconds: float) -> tuple[float, int]:
        n0, c0 = len(sink.docs()), fake.counts("GetLogEvents").total
        time.sleep(seconds)
        return (len(sink.docs()) - n0) / seconds, fake.counts("GetLogEvents").total - c0

    wait_until(lambda: len(sink.docs()) >= 500, 30, "the first deliveries")
    window_s = 6.0
    before, calls = delivered_in(window_s)
    # One rate for all 8 readers: the stand-in never sees more than CWC_API_RATE.
    assert calls <= rate * window_s * 1.1 + 2, f"{calls} GetLogEvents calls in {window_s}s"

    fake.set_throttle(0.4, unavailable=0.1)  # every operation, seeded
    lowest = rate
    throttled_until = time.monotonic() + 60
    while time.monotonic() < throttled_until:
        time.sleep(2)
        assert product.running(), "the product died under throttling"
        health = admin.healthz()
        assert health is not None and health[0] == 200, f"unhealthy while throttled: {health}"
        lowest = min(
            lowest, metric(admin, "cwconsumer_aws_rate_per_second", operation="GetLogEvents")
        )
    fake.set_throttle(0.0)
    assert lowest <= rate / 4, f"the shared rate never went down (lowest {lowest}/s)"

    wait_until(
        lambda: admin.metric("cwconsumer_aws_rate_per_second", operation="GetLogEvents") == rate,
        30,
        "the adaptive rate to climb back to CWC_API_RATE",
        every_s=0.5,
    )
    after, _ = delivered_in(window_s)
    left = sum(w.counts().values()) - len(sink.docs())
    assert left > 0, "the backlog ran out during the measurement; make it larger"
    assert after >= 0.7 * before, (
        f"throughput {after:.0f}/s after throttling vs {before:.0f}/s before"
    )

    wait_delivered(sink, w.counts(), 90, "the rest of the backlog")
    for op in ("GetLogEvents", "DescribeLogStreams"):
        errors = fake.counts(op).errors
        answered = errors.get("ThrottlingException", 0) + errors.get(
            "ServiceUnavailableException", 0
        )
        counted = metric(admin, "cwconsumer_aws_throttles_total", operation=op)
        assert answered > 10 and counted == answered, f"{op}: {counted} counted, {answered} sent"
    assert product.terminate() == 0
    assert_exactly_once_in_order(sink, w.counts())
    check_ids(sink.docs(), [StreamTruth.read(fake, *k) for k in keys])
    logs = product.logs()
    assert "throttled: rate lowered" in logs
    assert "task failed" not in logs


def stream_state(admin: Admin, key: Key) -> str | None:
    stats = admin.stats()
    if stats is None:
        return None
    group = stats["groups"].get(key[0])
    stream = None if group is None else group["streams"].get(key[1])
    return None if stream is None else str(stream["state"])


def test_deleted_streams_and_groups_stop_being_polled_and_come_back_when_created_again(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    sink: RecordingSink,
    make_fake_product: Callable[..., Product],
) -> None:
    fake = start_fakecwl(SEED)
    w = Writer(fake, seed=SEED)
    a, b, gone, x, y = (
        ("/named", "a"),
        ("/named", "b"),
        ("/gone", "g"),
        ("/pre/x", "c"),
        ("/pre/y", "d"),
    )
    quick = ("/named", "quick")
    for k in (a, b, gone, x, y, quick):
        w.put(*k, 200)
    port = free_port()
    admin = Admin(port)
    product = make_fake_product(
        fake,
        sink.url,
        CWC_LOG_GROUPS="/named,/gone",  # by name: a deleted one answers ResourceNotFound
        CWC_LOG_GROUP_PREFIXES="/pre/",  # by prefix: a deleted one is no longer listed
        CWC_WORKERS="1",  # a deleted group must not hold the only reader
        CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
    ).start()
    wait_delivered(sink, w.counts(), 60, "the initial events")
    old = [StreamTruth.read(fake, *k) for k in (a, b, gone, x, y, quick)]

    # Deleted and created again faster than the consumer looks, then filled
    # with events older than the last one delivered from the old incarnation
    # (a backfill): the old token and checkpoint mean nothing for it.
    backfill = [(ts, message(*quick, 200 + i)) for i, ts in enumerate(old[-1].timestamps[:100])]
    fake.delete_stream(*quick)
    fake.put(*quick, backfill)

    calls_before = {k: len(fake.get_calls(*k)) for k in (a, gone, x)}
    fake.delete_stream(*a)
    fake.delete_group(gone[0])
    fake.delete_group(x[0])
    for k in (b, y):
        w.put(*k, 100, now=True)
    for k in (a, gone, x):
        wait_until(lambda k=k: stream_state(admin, k) == "deleted", 20, f"{k} marked deleted")  # type: ignore[misc]
    wait_delivered(sink, w.counts(), 30, "the other streams, still flowing")
    time.sleep(3)  # six poll intervals: a deleted stream still polled would show up
    for k in (a, gone, x):
        # At most the one call that found it gone (a group's deletion may be seen first).
        since = [c.error for c in fake.get_calls(*k)[calls_before[k] :]]
        assert since in ([], ["ResourceNotFoundException"]), f"{k} polled after deletion: {since}"

    # Created again: a stream in a live group, a named group, a prefixed group.
    # Each new incarnation is read from its first event.
    for k in (a, gone, x):
        w.put(*k, 150, now=True)
    for k in (a, gone, x):
        wait_until(lambda k=k: stream_state(admin, k) not in ("deleted", None), 20, f"{k} back")  # type: ignore[misc]
    counts = {**w.counts(), quick: 300}
    wait_delivered(sink, counts, 30, "the re-created streams")
    assert product.terminate() == 0

    new = [StreamTruth.read(fake, *k) for k in (a, gone, x, b, y, quick)]
    check_ids(sink.docs(), old + new)
    got = delivered_indexes(sink.docs())
    for k in (a, b, gone, x, y):
        assert got[k] == list(range(w.count(k))), f"{k}: not every event exactly once, in order"
    # The quick one: its old events once; every event of the new incarnation, in order
    # (an old-incarnation page still in flight when the change was seen may repeat).
    assert got[quick][:200] == list(range(200))
    assert sorted(set(got[quick][200:])) == list(range(200, 300))
    warnings = [r["message"] for r in log_records(product.logs()) if r.get("level") == "WARNING"]
    assert "stream deleted; no longer polled" in warnings
    assert "log group deleted; its streams are no longer polled" in warnings


def test_garbled_answers_are_retried_without_loss_and_the_product_keeps_running(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    sink: RecordingSink,
    make_fake_product: Callable[..., Product],
) -> None:
    """A GetLogEvents answer that is not JSON (a proxy cut it short) is an
    error of that call, retried like any other, not the end of the reader."""
    fake = start_fakecwl(SEED)
    w = Writer(fake, seed=SEED)
    keys = [("/garbled", f"s{i}") for i in range(3)]
    for k in keys:
        w.put(*k, 900)
        fake.page_cap(*k, 100)
    fake.garble_next(6)
    product = make_fake_product(fake, sink.url, CWC_LOG_GROUPS="/garbled").start()
    wait_delivered(sink, w.counts(), 90, "every event despite the garbled answers")
    garbled = [c for c in fake.get_calls() if c.note == "garbled"]
    assert len(garbled) == 6
    assert product.running()
    assert product.terminate() == 0
    assert_exactly_once_in_order(sink, w.counts())
    check_ids(sink.docs(), [StreamTruth.read(fake, *k) for k in keys])
    logs = product.logs()
    assert logs.count("malformed response") >= 6
    assert "task failed" not in logs
