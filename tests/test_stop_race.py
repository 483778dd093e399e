"""A stop that lands while readers are between a page and its hand-off.

A reader whose GetLogEvents answer has just arrived is ready to run but not
yet running when the stop sequence runs: cancelling its scope is delivered
only at its next wait, so it still routes that page. The old stop closed the
lanes' channels right after cancelling the readers; the late page then hit a
closed channel, the reader raised ``ChannelClosed``, and a clean SIGTERM
ended with exit status 1 (seen in CI on
``test_sigterm_exits_zero_and_restart_redelivers_nothing``).

In process: the real :class:`~cwconsumer.service.Service` against the
CloudWatch Logs stand-in, many workers paging a backlog in small pages, and
stops at spread-out moments. Every stop must return cleanly, and nothing
delivered may be past the checkpoints' promise.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from cwconsumer.config import load_config
from cwconsumer.model import OutBatch
from cwconsumer.service import Service
from cwconsumer.sinks.base import Outcome, SendResult
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.harness import Writer, parse_message

STREAMS = 12


class MemorySink:
    """Accepts everything at once; records (stream, index) of each event."""

    name = "memory"

    def __init__(self) -> None:
        self.accepted: list[tuple[str, int]] = []

    async def send(self, batch: OutBatch) -> SendResult:
        for d in batch.docs:
            (_, stream), index = parse_message(json.loads(d)["message"])
            self.accepted.append((stream, index))
        await anyio.lowlevel.checkpoint()
        return SendResult(Outcome.OK, status=200)

    async def probe(self) -> tuple[bool, str]:
        return True, ""

    async def aclose(self) -> None:
        return None


async def test_stops_at_any_moment_of_reading_end_cleanly(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = start_fakecwl(11)
    for k, v in fake.client_env().items():
        monkeypatch.setenv(k, v)
    w = Writer(fake, seed=11)
    for i in range(STREAMS):
        w.put("/stop-race", f"s{i}", 4000)
        fake.page_cap("/stop-race", f"s{i}", 7)
    db = tmp_path / "cwc.db"
    env = {
        **fake.client_env(),
        "CWC_LOG_GROUPS": "/stop-race",
        "CWC_SINK_URL": "http://127.0.0.1:9/unused",
        "CWC_DB_PATH": str(db),
        "CWC_ADMIN_ADDR": "off",
        "CWC_WORKERS": "8",
        "CWC_API_RATE": "1000",
        "CWC_BATCH_MAX_EVENTS": "50",
        "CWC_BATCH_MAX_WAIT": "20ms",
        "CWC_SINK_CONCURRENCY": "2",
    }
    rng = random.Random(5)
    sink = MemorySink()
    for _ in range(25):
        svc = Service(load_config(env), sink=sink)  # type: ignore[arg-type]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(svc.run)
                await anyio.sleep(rng.uniform(0.15, 0.5))
                svc.stop()  # svc.run raising here fails the test
    assert sink.accepted, "nothing was read: the stops never met a reader"
    per_stream: dict[str, list[int]] = {}
    for stream, index in sink.accepted:
        per_stream.setdefault(stream, []).append(index)
    for stream, got in per_stream.items():
        # A clean stop re-delivers nothing: each stream resumes where it stopped.
        assert got == list(range(len(got))), f"{stream}: re-read or skipped after a clean stop"
