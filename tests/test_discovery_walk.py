"""Streams delivered while discovery is still walking their group keep their
checkpoints (rows are stored before a stream can be read)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.fakesinks import RecordingSink
from tests.support.harness import fake_env

STREAMS, PER_STREAM = 400, 3  # 8 DescribeLogStreams pages at 2/s: a walk of ~4 s


def test_checkpoints_of_streams_delivered_during_a_long_walk_survive_a_restart(
    tmp_path: Path,
) -> None:
    now = int(time.time() * 1000)
    total = STREAMS * PER_STREAM
    with FakeCloudWatchLogs() as fake, RecordingSink() as sink:
        for k in range(STREAMS):
            fake.put(
                "/big",
                f"s{k:04d}",
                [(now - k * 10 - i, f"s{k:04d} {i}") for i in range(PER_STREAM)],
            )
        db = tmp_path / "db" / "cwc.db"
        env = fake_env(
            fake,
            sink.url,
            db,
            CWC_LOG_GROUPS="/big",
            CWC_DESCRIBE_RATE="2",
            CWC_API_RATE="200",
            CWC_BATCH_MAX_WAIT="100ms",
        )
        product = Product(env, tmp_path / "product.log").start()
        try:
            wait_until(lambda: len(sink.docs()) >= total, 60, "every event")
            assert product.terminate() == 0
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows = conn.execute("SELECT COUNT(*), SUM(delivered) FROM streams").fetchone()
                unread = conn.execute(
                    "SELECT COUNT(*) FROM streams WHERE token IS NULL OR delivered = 0"
                ).fetchone()[0]
            assert rows == (STREAMS, total), rows
            assert unread == 0, f"{unread} streams lost their checkpoint"
            product.start()
            time.sleep(4)  # a restart that re-read anything would deliver it by now
            assert product.terminate() == 0
            assert len(sink.docs()) == total, "a clean restart re-delivered events"
        finally:
            product.stop_quietly()
