"""CPU of one GetLogEvents call through the product's client, apart from its events.

    .venv/bin/python bench/percall.py

Starts the stand-in (``bench/standin.py``) with a small backlog, then makes
1,000 one-event GetLogEvents calls through ``cwconsumer.aws.LogsClient``
(aiobotocore, the product's parser, its rate and timeout wrapping) and prints
this process's user and system CPU per call. Divided by the events of a full
page (about 4,600 of 200 bytes), it is what each call adds per event.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BACKLOG_DATA, Standin
from cwconsumer.aws import LogsClient

CALLS = 1000
EVENTS_PER_PAGE = 4600


async def measure(standin: Standin) -> None:
    os.environ.update(standin.aws_env())
    async with LogsClient("us-east-1", get_rate=1e6, describe_rate=1e6, timeout_s=10) as logs:
        groups, _ = await logs.describe_log_groups(None, None)
        group = groups[0]["logGroupName"]
        streams, _ = await logs.describe_log_streams(group, None)
        stream = streams[0]["logStreamName"]
        for _ in range(50):  # warm-up: connections, caches
            await logs.get_log_events(group, stream, None, None, limit=1)
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(CALLS):
            page = await logs.get_log_events(group, stream, None, None, limit=1)
            assert len(page.events) == 1
        after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / CALLS * 1e6
    system = (after.ru_stime - before.ru_stime) / CALLS * 1e6
    print(
        f"per GetLogEvents call: {user:.0f} µs user + {system:.0f} µs system CPU; "
        f"{(user + system) / EVENTS_PER_PAGE:.2f} µs per event of a {EVENTS_PER_PAGE}-event page"
    )


def main() -> None:
    standin = Standin({**BACKLOG_DATA, "events": 4000})
    try:
        asyncio.run(measure(standin))
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
