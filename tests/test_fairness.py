"""One huge backlog cannot starve the other streams, also when the memory
budget is what limits reading (a slow sink)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.fakesinks import RecordingSink
from tests.support.harness import fake_env

BIG = 40_000
SMALL = 60


@pytest.mark.parametrize("buffer_events", ["40000", "3000"], ids=["roomy", "tight-budget"])
def test_small_streams_are_not_starved_by_a_huge_backlog(
    tmp_path: Path, buffer_events: str
) -> None:
    now = int(time.time() * 1000)
    with FakeCloudWatchLogs() as fake, RecordingSink() as sink:
        fake.add_group("/g")
        # The big stream has the newest events, so discovery lists it first.
        fake.put("/g", "big", [(now - 60_000 + i // 100, f"big {i}") for i in range(BIG)])
        fake.page_cap("/g", "big", 1000)  # 40 pages at CWC_API_RATE=10: about 4 s
        small = [f"s{k}" for k in range(6)]
        for k, name in enumerate(small):
            fake.put("/g", name, [(now - 3_600_000 - k, f"{name} {i}") for i in range(SMALL)])
        env = fake_env(
            fake,
            sink.url,
            tmp_path / "db" / "cwc.db",
            CWC_LOG_GROUPS="/g",
            CWC_API_RATE="10",
            CWC_WORKERS="16",
            CWC_BATCH_MAX_EVENTS="1000",
            CWC_BUFFER_MAX_EVENTS=buffer_events,
        )
        product = Product(env, tmp_path / "product.log").start()
        try:

            def small_done() -> bool:
                got = {d["aws"]["cloudwatch"]["log_stream"] for d in sink.docs()}
                return set(small) <= got and sum(
                    d["aws"]["cloudwatch"]["log_stream"] != "big" for d in sink.docs()
                ) >= SMALL * len(small)

            wait_until(small_done, 60, "every small stream")
            big_then = sum(d["aws"]["cloudwatch"]["log_stream"] == "big" for d in sink.docs())
            assert big_then < BIG // 2, (
                f"the small streams waited for {big_then} of {BIG} backlog events"
            )
            wait_until(lambda: len(sink.docs()) >= BIG + SMALL * len(small), 90, "the backlog")
            assert product.terminate() == 0
        finally:
            product.stop_quietly()
