"""Crash-only stages (issue 14, the principle): an unexpected exception in a
stage that holds events never restarts it in place. The service stops with
the cause (the command then exits 1 with it on the last log line); the
checkpoints, which never passed an unconfirmed event, make the restart safe.

In process: the real :class:`~cwconsumer.service.Service` against the
CloudWatch Logs stand-in, with a sink that raises (a bug, not an answer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from cwconsumer.config import load_config
from cwconsumer.errors import StageFailed
from cwconsumer.metrics import InFlight
from cwconsumer.model import Chunk, OutBatch
from cwconsumer.service import Service
from cwconsumer.sinks.base import Outcome, SendResult
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.harness import Writer, parse_message, read_checkpoints


class BuggySink:
    """Raises on the ``fail_on``-th request; records what it accepted."""

    name = "buggy"

    def __init__(self, fail_on: int | None) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.accepted: list[int] = []

    async def send(self, batch: OutBatch) -> SendResult:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("a bug in a sink")
        self.accepted.extend(parse_message(json.loads(d)["message"])[1] for d in batch.docs)  # type: ignore[arg-type]
        return SendResult(Outcome.OK, status=200)

    async def probe(self) -> tuple[bool, str]:
        return True, ""

    async def aclose(self) -> None:
        return None


def service(fake: FakeCloudWatchLogs, db: Path, sink: BuggySink) -> Service:
    env = {
        **fake.client_env(),
        "CWC_LOG_GROUPS": "/crash-only",
        "CWC_SINK_URL": "http://127.0.0.1:9/unused",
        "CWC_DB_PATH": str(db),
        "CWC_ADMIN_ADDR": "off",
        "CWC_BATCH_MAX_EVENTS": "20",
        "CWC_BATCH_MAX_WAIT": "50ms",
        "CWC_POLL_INTERVAL": "200ms",
        "CWC_SINK_CONCURRENCY": "1",
    }
    return Service(load_config(env), sink=sink)  # type: ignore[arg-type]


def stage_failure(raised: BaseException) -> BaseException:
    """What ended the service, out of the task groups' exception groups."""
    cause = raised
    while isinstance(cause, BaseExceptionGroup):
        cause = next(
            e for e in cause.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())
        )
    return cause


async def restart_delivers_everything(
    fake: FakeCloudWatchLogs, db: Path, first: BuggySink
) -> BuggySink:
    """Start the service again (as ECS would) until the two runs together
    delivered all 100 events; returns the second run's sink."""
    second = BuggySink(fail_on=None)
    svc = service(fake, db, second)
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.run)
        deadline = time.monotonic() + 30
        while sorted(set(first.accepted + second.accepted)) != list(range(100)):
            assert time.monotonic() < deadline, "not every event delivered after the restart"
            await anyio.sleep(0.05)
        svc.stop()
    return second


async def test_a_stage_that_raises_stops_the_service_and_the_restart_loses_nothing(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Old code: the lane was restarted in place after a back-off, the chunks
    it had taken were gone, and the next batch's checkpoint passed them."""
    fake = start_fakecwl(7)
    for k, v in fake.client_env().items():
        monkeypatch.setenv(k, v)
    w = Writer(fake, seed=7)
    w.put("/crash-only", "s", 100)
    db = tmp_path / "cwc.db"

    first = BuggySink(fail_on=2)
    with anyio.fail_after(30):
        with pytest.raises(BaseException) as caught:
            await service(fake, db, first).run()
    cause = stage_failure(caught.value)
    assert isinstance(cause, StageFailed)
    assert "lane-0" in str(cause) and "a bug in a sink" in str(cause)
    assert first.accepted == list(range(20))  # the first batch only
    rows = read_checkpoints(db)
    assert all(r.delivered <= 20 for r in rows.values())  # nothing passed the lost batch

    second = await restart_delivers_everything(fake, db, first)
    assert sorted(set(second.accepted)) == list(range(20, 100))


async def test_a_reader_that_raises_stops_the_service_and_the_restart_loses_nothing(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader holds events too (a page read and not yet handed over). Old
    code restarted it in place: issue 14, item 4, where the in-flight metrics
    step raised on a page after the read position had moved on, and the page
    was lost. The fault is injected at that very step (its second page)."""
    fake = start_fakecwl(8)
    for k, v in fake.client_env().items():
        monkeypatch.setenv(k, v)
    w = Writer(fake, seed=8)
    w.put("/crash-only", "s", 100)
    fake.page_cap("/crash-only", "s", 20)
    db = tmp_path / "cwc.db"
    failing = [True]
    pages = [0]
    real_read = InFlight.read

    def read(self: InFlight, chunk: Chunk) -> None:
        pages[0] += 1
        if failing[0] and pages[0] == 2:
            raise RuntimeError("a bug on a page")
        real_read(self, chunk)

    monkeypatch.setattr(InFlight, "read", read)

    first = BuggySink(fail_on=None)
    with anyio.fail_after(15):
        with pytest.raises(BaseException) as caught:
            await service(fake, db, first).run()
    cause = stage_failure(caught.value)
    assert isinstance(cause, StageFailed), repr(cause)
    assert "reader-" in str(cause) and "a bug on a page" in str(cause)
    rows = read_checkpoints(db)
    assert all(r.delivered <= 20 for r in rows.values())  # nothing passed the lost page

    failing[0] = False
    await restart_delivers_everything(fake, db, first)
