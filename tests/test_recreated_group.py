"""A log group deleted and created again (issue 14, item 14): the streams of
the new group must get a generation the old ones never had, or a chunk of the
deleted group still in flight would pass the lane's "is this stream still
current?" check and commit its checkpoint over the new group's. In process:
the real discovery against the CloudWatch Logs stand-in, a real database."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cwconsumer.aws import LogsClient
from cwconsumer.discovery import Discovery, Registry
from cwconsumer.model import StreamKey
from cwconsumer.schedule import Schedule
from cwconsumer.store import Store
from tests.support.fakecwl import FakeCloudWatchLogs

KEY = StreamKey("/regen", "s")


async def test_a_group_created_again_gets_streams_of_a_new_generation(
    start_fakecwl: Callable[..., FakeCloudWatchLogs],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = start_fakecwl(3)
    for k, v in fake.client_env().items():
        monkeypatch.setenv(k, v)
    now = int(time.time() * 1000)
    fake.put(KEY.group, KEY.stream, [(now - 1000, "old incarnation")])
    store = await Store.open(str(tmp_path / "cwc.db"), "wal")
    assert await store.acquire_lease("t", now, 60_000, "here", 1)
    reg = Registry()
    try:
        async with LogsClient("us-east-1", get_rate=50, describe_rate=50, timeout_s=5) as logs:
            discovery = Discovery(
                logs,
                store,
                reg,
                Schedule(),
                groups=[KEY.group],
                prefixes=[],
                start_time_for_new_group=lambda now_ms: None,
                idle_grace_s=60,
            )
            await discovery.load()
            await discovery.cycle()
            old = reg.streams[KEY]
            fake.delete_group(KEY.group)
            await discovery.cycle()
            fake.put(KEY.group, KEY.stream, [(now, "new incarnation")])
            await discovery.cycle()
            new = reg.streams[KEY]
            assert new is not old
            # What the service's lanes check before committing a chunk.
            assert new.generation != old.generation
    finally:
        await store.aclose()
