"""The fake CloudWatch Logs endpoint, driven by the real aiobotocore client over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.support.fakecwl import (
    EVENT_OVERHEAD_BYTES,
    INVALID_TOKEN_MESSAGE,
    MAX_PAGE_BYTES,
    FakeCloudWatchLogs,
)

NO_RETRIES = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
G = "/aws/lambda/orders"
S = "2026/11/21/[$LATEST]abc"
SESSION = get_session()  # one session: its loader caches the service model across tests


class ManualClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeCloudWatchLogs]:
    with FakeCloudWatchLogs(seed=7, clock=clock) as server:
        yield server


@pytest.fixture
async def logs(fake: FakeCloudWatchLogs) -> AsyncIterator[Any]:
    client_cm = SESSION.create_client("logs", config=NO_RETRIES, **fake.client_kwargs())
    async with client_cm as client:
        yield client


async def get_page(client: Any, token: str | None = None, **params: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"logGroupName": G, "logStreamName": S, "startFromHead": True}
    kwargs.update(params)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if token is not None:
        kwargs["nextToken"] = token
    page: dict[str, Any] = await client.get_log_events(**kwargs)
    return page


async def read_forward(
    client: Any, token: str | None = None, max_pages: int = 500, **params: Any
) -> tuple[list[tuple[int, str]], str, list[dict[str, Any]]]:
    """Page forward until the token comes back unchanged: (events, last token, pages)."""
    events: list[tuple[int, str]] = []
    pages: list[dict[str, Any]] = []
    for _ in range(max_pages):
        page = await get_page(client, token, **params)
        pages.append(page)
        events.extend((e["timestamp"], e["message"]) for e in page["events"])
        if page["nextForwardToken"] == token:
            return events, page["nextForwardToken"], pages
        token = page["nextForwardToken"]
    raise AssertionError("forward paging did not reach the end of the stream")


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = exc.value.response["Error"]["Code"]
    return code


async def test_paging_returns_every_event_once_in_timestamp_then_ingestion_order(
    fake: FakeCloudWatchLogs, logs: Any, clock: ManualClock
) -> None:
    first = [(1_000 + i // 3, f"a{i}") for i in range(1_200)]  # three events per millisecond
    second = [(1_100, "same"), (1_100, "same"), (1_050, "early"), (2_000, "late")]
    fake.put(G, S, first)
    fake.put(G, S, second)
    ingested = first + second
    expected = [ev for _, ev in sorted(enumerate(ingested), key=lambda p: (p[1][0], p[0]))]

    events, last, pages = await read_forward(logs, limit=250)

    assert events == expected
    assert [len(p["events"]) for p in pages] == [250, 250, 250, 250, 204, 0]
    assert pages[-1]["nextForwardToken"] == last == pages[-2]["nextForwardToken"]
    assert last.startswith("f/") and last.endswith("/s")
    assert all(e["ingestionTime"] == int(clock.now * 1000) for e in pages[0]["events"])


async def test_end_of_stream_returns_same_token_and_later_events_with_it(
    fake: FakeCloudWatchLogs, logs: Any
) -> None:
    fake.put(G, S, [(100, "one"), (200, "two")])
    events, token, _ = await read_forward(logs)
    assert events == [(100, "one"), (200, "two")]

    again = await get_page(logs, token)
    assert again["events"] == []
    assert again["nextForwardToken"] == token

    fake.put(G, S, [(200, "two-bis"), (300, "three"), (150, "late, older timestamp")])
    page = await get_page(logs, token)
    # The token is a position in timestamp order: an event put later with an older
    # timestamp than the position is never returned by forward paging.
    assert [e["message"] for e in page["events"]] == ["two-bis", "three"]
    done = await get_page(logs, page["nextForwardToken"])
    assert done["events"] == [] and done["nextForwardToken"] == page["nextForwardToken"]


async def test_empty_stream_token_returns_events_put_later(
    fake: FakeCloudWatchLogs, logs: Any
) -> None:
    fake.add_stream(G, S)
    page = await get_page(logs, startTime=500)
    assert page["events"] == []
    fake.put(G, S, [(400, "before start"), (500, "at start"), (900, "after")])
    events, _, _ = await read_forward(logs, page["nextForwardToken"], startTime=500)
    assert events == [(500, "at start"), (900, "after")]


async def test_start_time_inclusive_end_time_exclusive(fake: FakeCloudWatchLogs, logs: Any) -> None:
    fake.put(G, S, [(100, "a"), (200, "b"), (200, "c"), (299, "d"), (300, "e"), (301, "f")])
    events, _, _ = await read_forward(logs, startTime=200, endTime=300)
    assert events == [(200, "b"), (200, "c"), (299, "d")]
    tail = await get_page(logs, startFromHead=False, startTime=200, endTime=301)
    assert [e["message"] for e in tail["events"]] == ["b", "c", "d", "e"]


async def test_backward_paging_from_the_latest_page(fake: FakeCloudWatchLogs, logs: Any) -> None:
    fake.put(G, S, [(i, str(i)) for i in range(10)])
    page = await get_page(logs, startFromHead=False, limit=4)
    assert [e["message"] for e in page["events"]] == ["6", "7", "8", "9"]
    seen = [e["message"] for e in page["events"]]
    token = page["nextBackwardToken"]
    while True:
        back = await get_page(logs, token, startFromHead=False, limit=4)
        if back["nextBackwardToken"] == token:
            break
        seen = [e["message"] for e in back["events"]] + seen
        token = back["nextBackwardToken"]
    assert seen == [str(i) for i in range(10)]
    # The forward token of the latest page sees only what comes after it.
    fake.put(G, S, [(10, "10")])
    nxt = await get_page(logs, page["nextForwardToken"])
    assert [e["message"] for e in nxt["events"]] == ["10"]


async def test_injected_empty_pages_make_progress_with_new_tokens(
    fake: FakeCloudWatchLogs, logs: Any
) -> None:
    fake.put(G, S, [(1_000 + i, f"m{i}") for i in range(20)])
    fake.empty_pages(G, S, next_n=2, every=3)
    fake.page_cap(G, S, 3)

    events, _, pages = await read_forward(logs)

    assert events == [(1_000 + i, f"m{i}") for i in range(20)]
    assert all(len(p["events"]) <= 3 for p in pages)
    empties = [i for i, p in enumerate(pages[:-1]) if not p["events"]]
    assert empties[:2] == [0, 1] and len(empties) >= 4
    tokens = [p["nextForwardToken"] for p in pages[:-1]]
    assert len(set(tokens)) == len(tokens), "every page before the end brings a new token"
    calls = fake.get_calls(G, S)
    assert [c.note for c in calls[:2]] == ["injected-empty", "injected-empty"]
    assert calls[1].token == pages[0]["nextForwardToken"]
    assert calls[0].token is None and calls[0].start_from_head


async def test_endless_empty_stream_counts_calls(fake: FakeCloudWatchLogs, logs: Any) -> None:
    fake.put(G, S, [(1, "expired by retention")])
    fake.endless_empty(G, S)
    token: str | None = None
    seen: set[str] = set()
    for _ in range(15):
        page = await get_page(logs, token)
        assert page["events"] == []
        assert page["nextForwardToken"] != token
        token = page["nextForwardToken"]
        seen.add(token)
    assert len(seen) == 15
    assert fake.stream_calls(G, S) == 15
    fake.endless_empty(G, S, enabled=False)
    page = await get_page(logs, token)
    assert [e["message"] for e in page["events"]] == ["expired by retention"]


async def test_page_is_capped_at_one_megabyte_like_aws(fake: FakeCloudWatchLogs, logs: Any) -> None:
    big = "x" * 100_000
    wide = "é" * 50_000  # 100,000 bytes in UTF-8, 50,000 characters
    fake.put(G, S, [(i, big if i % 2 else wide) for i in range(25)])

    events, _, pages = await read_forward(logs)

    sizes = [len(p["events"]) for p in pages]
    assert sizes == [10, 10, 5, 0]  # 10 x 100,026 bytes fit in 1 MiB, 11 do not
    for page in pages:
        used = sum(len(e["message"].encode()) + EVENT_OVERHEAD_BYTES for e in page["events"])
        assert used <= MAX_PAGE_BYTES
    assert [ts for ts, _ in events] == list(range(25))
    latest = await get_page(logs, startFromHead=False)
    assert [e["timestamp"] for e in latest["events"]] == list(range(15, 25))


async def test_rejected_and_expired_tokens(
    fake: FakeCloudWatchLogs, logs: Any, clock: ManualClock
) -> None:
    fake.put(G, S, [(i, str(i)) for i in range(6)])
    fake.put(G, "other", [(1, "x")])
    first = await get_page(logs, limit=2)
    token = first["nextForwardToken"]

    fake.reject_tokens(G, S, 1)
    with pytest.raises(ClientError) as exc:
        await get_page(logs, token, limit=2)
    assert error_code(exc) == "InvalidParameterException"
    assert exc.value.response["Error"]["Message"] == INVALID_TOKEN_MESSAGE
    second = await get_page(logs, token, limit=2)  # only the next call was rejected
    assert [e["message"] for e in second["events"]] == ["2", "3"]

    fake.set_token_max_age(60)
    clock.now += 61
    with pytest.raises(ClientError) as exc:
        await get_page(logs, second["nextForwardToken"])
    assert error_code(exc) == "InvalidParameterException"
    fake.set_token_max_age(None)

    fresh = await get_page(logs, limit=1)
    fake.expire_tokens()
    with pytest.raises(ClientError) as exc:
        await get_page(logs, fresh["nextForwardToken"])
    assert error_code(exc) == "InvalidParameterException"

    current = (await get_page(logs, limit=1))["nextForwardToken"]
    tampered = current[:-4] + ("0" if current[-4] != "0" else "1") + current[-3:]
    for bad in ["f/123/s", "garbage", tampered]:
        with pytest.raises(ClientError) as exc:
            await get_page(logs, bad)
        assert error_code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        await get_page(logs, current, logStreamName="other")
    assert error_code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:  # AWS requires startFromHead with a forward token
        await get_page(logs, current, startFromHead=False)
    assert error_code(exc) == "InvalidParameterException"

    notes = [c.note for c in fake.get_calls(G) if c.error]
    assert notes == [
        "token-rejected",
        "token-expired-age",
        "token-expired-generation",
        "token-malformed",
        "token-malformed",
        "token-malformed",
        "token-other-stream",
        "forward-token-without-startFromHead",
    ]
    assert fake.counts("GetLogEvents").errors == {"InvalidParameterException": 8}


async def test_throttling_and_service_unavailable(fake: FakeCloudWatchLogs, logs: Any) -> None:
    fake.put(G, S, [(1, "a")])
    fake.set_throttle(1.0, operation="GetLogEvents")
    with pytest.raises(ClientError) as exc:
        await get_page(logs)
    assert error_code(exc) == "ThrottlingException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    await logs.describe_log_streams(logGroupName=G)  # other operations unaffected

    fake.set_throttle(0.0, operation="GetLogEvents", unavailable=1.0)
    with pytest.raises(ClientError) as exc:
        await get_page(logs)
    assert error_code(exc) == "ServiceUnavailableException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    fake.set_throttle(0.5, operation="GetLogEvents")
    outcomes = []
    for _ in range(30):
        try:
            await get_page(logs)
            outcomes.append("ok")
        except ClientError as err:
            outcomes.append(err.response["Error"]["Code"])
    assert set(outcomes) == {"ok", "ThrottlingException"}

    fake.set_throttle(0.0, operation="GetLogEvents")
    fake.throttle_next(2)  # any operation
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            await logs.describe_log_groups()
        assert error_code(exc) == "ThrottlingException"
    assert (await get_page(logs))["events"]

    counts = fake.counts("GetLogEvents")
    assert counts.total == counts.ok + counts.failed == 33
    assert counts.errors["ThrottlingException"] == outcomes.count("ThrottlingException") + 1
    assert counts.errors["ServiceUnavailableException"] == 1
    assert fake.counts("DescribeLogGroups").errors == {"ThrottlingException": 2}


async def test_describe_log_streams_by_last_event_time_descending_in_pages_of_50(
    fake: FakeCloudWatchLogs, logs: Any
) -> None:
    names = [f"s-{i:03d}" for i in range(120)]
    last_ts = {name: 10_000 + (i * 37) % 120 for i, name in enumerate(names)}
    for name in names:
        fake.put(G, name, [(last_ts[name] - 5, "first"), (last_ts[name], "last")])
    fake.add_stream(G, "zz-empty")

    async def walk(**params: Any) -> tuple[list[dict[str, Any]], list[int]]:
        streams: list[dict[str, Any]] = []
        sizes = []
        token = None
        while True:
            kwargs = {"logGroupName": G, **params}
            if token:
                kwargs["nextToken"] = token
            page = await logs.describe_log_streams(**kwargs)
            streams += page["logStreams"]
            sizes.append(len(page["logStreams"]))
            token = page.get("nextToken")
            if not token:
                return streams, sizes

    streams, sizes = await walk(orderBy="LastEventTime", descending=True)
    assert sizes == [50, 50, 21]
    want = [*sorted(names, key=lambda n: last_ts[n], reverse=True), "zz-empty"]
    assert [s["logStreamName"] for s in streams] == want
    top = streams[0]
    assert top["lastEventTimestamp"] == 10_119
    assert top["firstEventTimestamp"] == 10_114
    assert top["arn"] == (
        f"arn:aws:logs:us-east-1:123456789012:log-group:{G}:log-stream:{top['logStreamName']}"
    )
    assert "lastEventTimestamp" not in streams[-1]

    by_name, _ = await walk(logStreamNamePrefix="s-11", limit=3)
    assert [s["logStreamName"] for s in by_name] == [f"s-11{i}" for i in range(10)]

    with pytest.raises(ClientError) as exc:
        await logs.describe_log_streams(
            logGroupName=G, orderBy="LastEventTime", logStreamNamePrefix="s-"
        )
    assert error_code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        await logs.describe_log_streams(logGroupName=G, limit=51)
    assert error_code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        await logs.describe_log_streams(logGroupName=G, nextToken="0000000050999999")
    assert error_code(exc) == "InvalidParameterException"

    # Eventual consistency: a frozen stream keeps reporting (and sorting by) old times.
    stale = want[-2]
    fake.freeze_stream_stats(G, stale)
    fake.put(G, stale, [(99_999, "new")], ingestion_time_ms=123)
    page = await logs.describe_log_streams(
        logGroupIdentifier=f"arn:aws:logs:us-east-1:123456789012:log-group:{G}",
        orderBy="LastEventTime",
        descending=True,
    )
    assert page["logStreams"][0]["logStreamName"] == want[0]
    fake.unfreeze_stream_stats(G, stale)
    page = await logs.describe_log_streams(logGroupName=G, orderBy="LastEventTime", descending=True)
    assert page["logStreams"][0]["logStreamName"] == stale
    assert page["logStreams"][0]["lastEventTimestamp"] == 99_999


async def test_describe_log_groups_sorted_with_prefix_and_paging(
    fake: FakeCloudWatchLogs, logs: Any
) -> None:
    for name in ["/ecs/web", "/aws/lambda/b", "/aws/lambda/a", "/aws/rds/x", "A-upper"]:
        fake.add_group(name)
    page = await logs.describe_log_groups()
    assert [g["logGroupName"] for g in page["logGroups"]] == [
        "/aws/lambda/a",
        "/aws/lambda/b",
        "/aws/rds/x",
        "/ecs/web",
        "A-upper",
    ]
    group = page["logGroups"][0]
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/a"
    assert group["arn"] == f"{arn}:*" and group["logGroupArn"] == arn
    assert isinstance(group["creationTime"], int)

    first = await logs.describe_log_groups(logGroupNamePrefix="/aws/", limit=2)
    assert [g["logGroupName"] for g in first["logGroups"]] == ["/aws/lambda/a", "/aws/lambda/b"]
    rest = await logs.describe_log_groups(
        logGroupNamePrefix="/aws/", limit=2, nextToken=first["nextToken"]
    )
    assert [g["logGroupName"] for g in rest["logGroups"]] == ["/aws/rds/x"]
    assert "nextToken" not in rest
    with pytest.raises(ClientError) as exc:
        await logs.describe_log_groups(logGroupNamePrefix="/aws/", logGroupNamePattern="lambda")
    assert error_code(exc) == "InvalidParameterException"


async def test_deleted_stream_and_group_answer_resource_not_found(
    fake: FakeCloudWatchLogs, logs: Any
) -> None:
    fake.put(G, S, [(1, "a")])
    fake.put(G, "keep", [(1, "b")])
    arn = f"arn:aws:logs:us-east-1:123456789012:log-group:{G}"
    page = await get_page(logs, logGroupName=None, logGroupIdentifier=arn)
    assert page["events"][0]["message"] == "a"
    assert [c.group for c in fake.get_calls(G, S)] == [G]
    with pytest.raises(ClientError) as exc:  # the ARN form with ":*" is not an identifier
        await get_page(logs, logGroupName=None, logGroupIdentifier=f"{arn}:*")
    assert error_code(exc) == "InvalidParameterException"

    fake.delete_stream(G, S)
    with pytest.raises(ClientError) as exc:
        await get_page(logs, page["nextForwardToken"])
    assert error_code(exc) == "ResourceNotFoundException"
    listed = await logs.describe_log_streams(logGroupName=G)
    assert [s["logStreamName"] for s in listed["logStreams"]] == ["keep"]

    fake.delete_group(G)
    with pytest.raises(ClientError) as exc:
        await logs.describe_log_streams(logGroupName=G)
    assert error_code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        await get_page(logs, logStreamName="keep")
    assert error_code(exc) == "ResourceNotFoundException"


async def test_setup_operations_over_http(fake: FakeCloudWatchLogs, logs: Any) -> None:
    await logs.create_log_group(logGroupName=G)
    await logs.create_log_stream(logGroupName=G, logStreamName=S)
    await logs.put_log_events(
        logGroupName=G,
        logStreamName=S,
        logEvents=[{"timestamp": 5, "message": "a"}, {"timestamp": 5, "message": "b"}],
    )
    assert [(ts, msg) for ts, msg, _ in fake.events(G, S)] == [(5, "a"), (5, "b")]
    with pytest.raises(ClientError) as exc:
        await logs.put_log_events(
            logGroupName=G,
            logStreamName=S,
            logEvents=[{"timestamp": 9, "message": "c"}, {"timestamp": 8, "message": "d"}],
        )
    assert error_code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        await logs.create_log_stream(logGroupName=G, logStreamName=S)
    assert error_code(exc) == "ResourceAlreadyExistsException"
    await logs.delete_log_stream(logGroupName=G, logStreamName=S)
    with pytest.raises(ClientError) as exc:
        await logs.delete_log_stream(logGroupName=G, logStreamName=S)
    assert error_code(exc) == "ResourceNotFoundException"
    await logs.delete_log_group(logGroupName=G)
    assert (await logs.describe_log_groups())["logGroups"] == []


async def test_latency_injection_delays_answers(fake: FakeCloudWatchLogs) -> None:
    fake.put(G, S, [(1, "a")])
    fake.set_latency(0.5, operation="GetLogEvents")
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=0.05, connect_timeout=1
    )
    async with SESSION.create_client("logs", config=config, **fake.client_kwargs()) as c:
        with pytest.raises(ReadTimeoutError):
            await get_page(c)
        fake.set_latency(0.0, operation="GetLogEvents")
        assert (await get_page(c))["events"][0]["message"] == "a"


async def test_async_variant_serves_on_the_running_loop() -> None:
    async with FakeCloudWatchLogs() as fake:
        fake.put(G, S, [(1, "a"), (2, "b")])
        client_cm = SESSION.create_client("logs", config=NO_RETRIES, **fake.client_kwargs())
        async with client_cm as client:
            events, _, _ = await read_forward(client)
    assert events == [(1, "a"), (2, "b")]


def test_subprocess_reads_through_endpoint_environment(fake: FakeCloudWatchLogs) -> None:
    fake.put(G, S, [(i, f"m{i}") for i in range(7)])
    script = textwrap.dedent(
        f"""
        import asyncio, json
        from aiobotocore.session import get_session

        async def main():
            async with get_session().create_client("logs") as client:
                page = await client.get_log_events(
                    logGroupName={G!r}, logStreamName={S!r}, startFromHead=True
                )
                print(json.dumps([e["message"] for e in page["events"]]))

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(fake.client_env())
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [f"m{i}" for i in range(7)]
    assert fake.counts("GetLogEvents").ok == 1
