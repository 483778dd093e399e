"""Crash consistency: SIGKILL at random moments, measured.

The product runs as a real process against the CloudWatch Logs stand-in
while events keep being appended, and a sink fails at random (500, 429,
hangs longer than the request timeout, connection resets). It is killed with
SIGKILL more than 20 times at seeded random moments (during start-up, lease
take-over, reading, sending, committing), then started once more and
stopped with SIGTERM.

What "re-deliveries come only from batches that were in flight" means here,
made exact with the checkpoints read (read-only) right after every kill:

- C(e) is a stream's committed position when run ``e`` starts (the event
  after the last one its checkpoint names); the sink tells which run
  delivered each accepted request (the sink's epoch when it arrived);
- run ``e`` delivers, per stream, one contiguous run of events starting
  exactly at C(e) — never anything before it (that would be a re-delivery
  of a committed event), never a gap, never out of order;
- everything up to C(e+1) was delivered by then (a checkpoint never runs
  ahead of the sink);
- what run ``e`` delivered beyond C(e+1) was in flight when it died: per
  sink lane at most one batch, ``CWC_BATCH_MAX_EVENTS`` events;
- every event arrives in the end, every copy with the same ``event.id``.

``CWC_CRASH_SEED`` picks another seed; the seed is in every failure message.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from cwconsumer.delivery import lane_of
from cwconsumer.model import StreamKey
from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.harness import (
    ChaosSink,
    Key,
    StreamRowView,
    StreamTruth,
    Writer,
    check_ids,
    parse_message,
    read_checkpoints,
)

SEED = int(os.environ.get("CWC_CRASH_SEED", "20261121"))
KILLS = 22
BATCH = 100
LANES = 2


def test_sigkill_at_random_moments_loses_nothing_and_redelivers_only_batches_in_flight(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    make_fake_product: Callable[..., Product],
) -> None:
    rng = random.Random(SEED)
    fake = start_fakecwl(SEED)
    w = Writer(fake, seed=SEED)
    keys: list[Key] = [
        ("/crash/a", "s0"),
        ("/crash/a", "s1"),
        ("/crash/b", "s0"),
        ("/crash/b", "s1"),
    ]
    for k in keys:
        w.put(*k, 600)
    fake.page_cap(*keys[0], 150)  # pages cut by batches: checkpoints inside a page (skip)
    fake.page_cap(*keys[1], 37)
    fake.empty_pages(*keys[2], every=4)  # empty pages with new tokens, checkpointed too
    sink = ChaosSink(seed=SEED)
    sink.start()
    product = make_fake_product(
        fake,
        sink.url,
        CWC_LOG_GROUP_PREFIXES="/crash/",
        CWC_BATCH_MAX_EVENTS=str(BATCH),
        CWC_BATCH_MAX_WAIT="100ms",
        CWC_SINK_CONCURRENCY=str(LANES),
        CWC_SINK_TIMEOUT="2s",
        CWC_API_RATE="50",
        CWC_POLL_INTERVAL="300ms",
        CWC_LEASE_HEARTBEAT="200ms",
        CWC_LEASE_TTL="1s",
    )
    sink.hang_s = 3.0  # longer than CWC_SINK_TIMEOUT: the product gives up and retries
    db = Path(product.env["CWC_DB_PATH"])
    snapshots: list[dict[Key, StreamRowView]] = [{}]  # before run 0: nothing committed
    kill_after: list[float] = []
    try:
        w.start_appending(keys, every_s=0.1, per_tick=(0, 8))
        for epoch in range(KILLS):
            if rng.random() < 0.2:
                fake.expire_tokens()  # the stored tokens die too: resume by time
            sink.epoch = epoch
            product.start()
            kill_after.append(round(rng.uniform(0.6, 3.0), 2))
            time.sleep(kill_after[-1])
            product.kill()
            time.sleep(0.3)  # let the sink finish reading what the dead process sent
            snapshots.append(read_checkpoints(db))
        w.stop()
        sink.epoch = KILLS
        product.start()

        def caught_up() -> bool:
            rows = read_checkpoints(db)
            return all(k in rows and rows[k].delivered >= w.count(k) for k in keys)

        # Until every event is committed (the checks below then tell whether
        # the sink really has them).
        wait_until(caught_up, 90, f"every event committed after {KILLS} kills (seed={SEED})")
        assert product.terminate() == 0, f"final clean stop failed (seed={SEED})"
        snapshots.append(read_checkpoints(db))
    finally:
        w.stop()
        sink.stop()

    truths = {k: StreamTruth.read(fake, *k) for k in keys}
    where = f"(seed={SEED}, kill delays {kill_after})"

    def position(rows: dict[Key, StreamRowView], k: Key) -> int:
        r = rows.get(k)
        return 0 if r is None else truths[k].position_after(r.last_ts, r.last_ord)

    committed = [{k: position(rows, k) for k in keys} for rows in snapshots]
    for rows, pos in zip(snapshots, committed, strict=True):
        for k, r in rows.items():
            assert r.delivered == pos[k], (
                f"{k}: delivered counter {r.delivered} != {pos[k]} {where}"
            )

    by_epoch: dict[int, dict[Key, list[int]]] = {}
    for epoch, docs in sink.accepted():
        for d in docs:
            k, i = parse_message(d["message"])
            by_epoch.setdefault(epoch, {}).setdefault(k, []).append(i)

    redelivered = 0
    in_flight_kills = 0
    high = dict.fromkeys(keys, 0)  # per stream: 1 + the highest index any run delivered so far
    for e in range(KILLS + 1):
        start, end = committed[e], committed[e + 1]
        got = by_epoch.get(e, {})
        lane_in_flight = [0] * LANES
        for k in keys:
            seq = got.get(k, [])
            run = list(range(start[k], start[k] + len(seq)))
            assert seq == run, (
                f"run {e}, {k}: delivered {seq[:5]}...{seq[-5:]} (n={len(seq)}), expected one "
                f"contiguous run from the checkpoint {start[k]} {where}"
            )
            assert end[k] >= start[k], f"run {e}, {k}: checkpoint went back {where}"
            assert start[k] + len(seq) >= end[k], (
                f"run {e}, {k}: checkpoint {end[k]} ahead of the sink "
                f"({start[k] + len(seq)} delivered) {where}"
            )
            lane_in_flight[lane_of(StreamKey(*k), LANES)] += start[k] + len(seq) - end[k]
            # Copies of events an earlier run delivered without committing them.
            redelivered += max(0, min(high[k], start[k] + len(seq)) - start[k])
            high[k] = max(high[k], start[k] + len(seq))
        if e < KILLS:
            assert max(lane_in_flight) <= BATCH, (
                f"run {e}: {lane_in_flight} events delivered but not committed per lane; "
                f"more than one batch of {BATCH} was in flight {where}"
            )
            in_flight_kills += any(lane_in_flight)
        else:
            assert not any(lane_in_flight), f"a clean stop left deliveries uncommitted {where}"

    for k in keys:
        assert committed[-1][k] == len(truths[k]), f"{k}: not everything committed {where}"
    docs = sink.docs()
    assert {d["message"] for d in docs} == {m for t in truths.values() for m in t.messages}
    check_ids(docs, truths.values())
    assert in_flight_kills >= 3, (
        f"only {in_flight_kills} kills caught a batch in flight: the test proves little {where}"
    )
    assert redelivered > 0 and len(docs) - sum(map(len, truths.values())) == redelivered, (
        f"{len(docs)} documents for {sum(map(len, truths.values()))} events: copies must be "
        f"exactly the {redelivered} re-deliveries of uncommitted batches {where}"
    )
