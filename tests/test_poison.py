"""Poison events and refused credentials.

- 413 for a batch: the batch is split until the sink takes it;
- 400 (a permanent refusal): bisected down to the events the sink refuses,
  which go to the dead-letter table with the sink's status and answer, and
  the stream moves on; ``cwconsumer dead-letters`` lists them and
  ``--replay`` sends them again;
- 401/403 are not poison: nothing advances, the log and ``/healthz`` say
  the credentials are wrong, retries are slow, and delivery resumes by
  itself once the sink accepts the credentials again.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.harness import (
    Admin,
    PickySink,
    StreamTruth,
    Writer,
    delivered_indexes,
    free_port,
    read_checkpoints,
    read_rows,
    run_cli,
)

SEED = 4242
MAPPING_ERROR = '{"error":"mapper_parsing_exception: failed to parse field [level] of type [long]"}'


def test_a_refused_event_is_dead_lettered_and_the_stream_moves_on_then_replayed(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    make_fake_product: Callable[..., Product],
) -> None:
    fake = start_fakecwl(SEED)
    w = Writer(fake, seed=SEED)
    bad, good = ("/p", "bad"), ("/p", "good")
    # Two neighbours and a loner the sink refuses (400), one it finds too large
    # even alone (413), in a stream whose later events must still flow.
    refused = {50: " POISON", 51: " POISON", 333: " POISON", 420: " HUGE"}
    w.put(*bad, 600, suffixes=refused)
    w.put(*good, 300)
    sink = PickySink()
    sink.start()
    sink.refuse("POISON", 400, MAPPING_ERROR)
    sink.refuse("HUGE", 413, "request entity too large")
    sink.max_docs = 40  # any bigger request is answered 413: batches of 200 get split
    try:
        product = make_fake_product(
            fake, sink.url, CWC_LOG_GROUPS="/p", CWC_BATCH_MAX_EVENTS="200"
        ).start()
        db = Path(product.env["CWC_DB_PATH"])

        def settled() -> bool:
            rows = read_checkpoints(db)
            return bad in rows and rows[bad].delivered + rows[bad].dead_lettered == 600

        wait_until(settled, 60, "the poisoned stream to get past its refused events")
        wait_until(lambda: len(sink.docs()) >= 896, 30, "every other event")

        listed = run_cli(product.env, "dead-letters", "--json")  # readable while `run` runs
        assert listed.returncode == 0, listed.stderr
        assert product.terminate() == 0

        got = delivered_indexes(sink.docs())
        assert got[bad] == [i for i in range(600) if i not in refused], "not exactly once, in order"
        assert got[good] == list(range(300))
        assert max(a.docs for a in sink.answers() if a.status == 200) <= 40
        assert any(a.status == 413 and a.docs > 40 for a in sink.answers()), "no batch was split"

        truth = StreamTruth.read(fake, *bad)
        dead = json.loads(listed.stdout)
        assert sorted(d["document"]["message"] for d in dead) == sorted(
            truth.messages[i] for i in refused
        )
        for d in dead:
            i = truth.messages.index(d["document"]["message"])
            assert (d["group"], d["stream"]) == bad
            assert d["event_id"] == d["document"]["event"]["id"] == truth.ids[i]
            assert d["timestamp_ms"] == truth.timestamps[i]
            assert d["replayed_ms"] is None
            if i == 420:
                assert d["status"] == 413 and "too large" in d["answer"]
            else:
                assert d["status"] == 400 and "mapper_parsing_exception" in d["answer"]
        rows = read_checkpoints(db)
        assert (rows[bad].delivered, rows[bad].dead_lettered) == (596, 4)

        text = run_cli(product.env, "dead-letters")
        assert text.returncode == 0
        assert text.stdout.count(" pending ") == 4 and "status=400" in text.stdout

        # Still refused: replay stops at the first refusal and says so.
        again = run_cli(product.env, "dead-letters", "--replay")
        assert again.returncode == 1 and "still refused: HTTP 400" in again.stdout

        # The mapping was fixed: replay delivers them, with their ids, once.
        sink.accept_all()
        sink.clear()
        replay = run_cli(product.env, "dead-letters", "--replay")
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "replayed 4 dead letter(s)" in replay.stdout
        assert sorted(d["event"]["id"] for d in sink.docs()) == sorted(d["event_id"] for d in dead)
        done = read_rows(db, "SELECT COUNT(*) FROM dead_letters WHERE replayed_ms IS NOT NULL")
        assert done == [(4,)]
        once_more = run_cli(product.env, "dead-letters", "--replay")
        assert "replayed 0 dead letter(s)" in once_more.stdout and len(sink.docs()) == 4
        assert run_cli(product.env, "dead-letters").stdout.count(" replayed ") == 4
    finally:
        sink.stop()


def test_refused_credentials_stop_the_pipeline_loudly_and_slowly_until_fixed(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    make_fake_product: Callable[..., Product],
) -> None:
    fake = start_fakecwl(SEED)
    w = Writer(fake, seed=SEED)
    w.put("/p", "s", 500)
    sink = PickySink()
    sink.start()
    sink.fail_next(403, "forbidden")
    sink.fail_next(401, "invalid token")
    port = free_port()
    admin = Admin(port)
    try:
        product = make_fake_product(
            fake,
            sink.url,
            CWC_LOG_GROUPS="/p",
            CWC_SINK_CONCURRENCY="1",  # one lane: the requests below are one retry sequence
            CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
        ).start()
        db = Path(product.env["CWC_DB_PATH"])
        wait_until(lambda: len(sink.answers()) >= 2, 30, "two refused attempts", every_s=0.02)

        # While the lane waits before its third attempt: nothing moved, nothing
        # was dead-lettered, and both /healthz and the log say why.
        health = admin.healthz()
        assert health is not None and health[0] == 503, health
        assert any("sink rejects the credentials" in r for r in health[1]["reasons"]), health
        assert "sink rejects the credentials; not advancing" in product.logs()
        assert read_checkpoints(db)[("/p", "s")].delivered == 0, "moved past refused events"
        assert read_rows(db, "SELECT COUNT(*) FROM dead_letters") == [(0,)], "401 is not poison"
        assert sink.docs() == []

        wait_until(lambda: len(sink.docs()) == 500, 30, "delivery once the credentials work")
        wait_until(lambda: (admin.healthz() or (0, {}))[0] == 200, 10, "healthy again")
        assert product.terminate() == 0
    finally:
        sink.stop()

    answers = sink.answers()
    assert [a.status for a in answers[:3]] == [403, 401, 200]
    # Slow retries: at least 1.5 s, then 3 s (2 and 4 s minus a quarter of jitter).
    gaps = [b.at - a.at for a, b in itertools.pairwise(answers[:3])]
    assert gaps[0] >= 1.45 and gaps[1] >= 2.95, f"retried too fast: {gaps}"
    assert read_rows(db, "SELECT COUNT(*) FROM dead_letters") == [(0,)]
    assert read_checkpoints(db)[("/p", "s")].delivered == 500
    assert delivered_indexes(sink.docs())[("/p", "s")] == list(range(500))
