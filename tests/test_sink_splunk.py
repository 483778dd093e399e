"""The Splunk HEC sink against a fake HEC, including indexer acknowledgement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome, Sink
from cwconsumer.sinks.factory import build_sink
from cwconsumer.sinks.http import HttpOptions, HttpPoster
from cwconsumer.sinks.splunk import SplunkHecSink, collector_base
from tests.support.fakesinks import (
    PlainSecret,
    SinkTestSettings,
    SplunkHecFake,
    sample_batch,
    split_concatenated_json,
)

TOKEN = "5f1c4a9e-0d7b-4c3e-9a61-2b8f7e6d5c4b"


@pytest.fixture
def hec() -> Iterator[SplunkHecFake]:
    with SplunkHecFake(token=TOKEN) as server:
        yield server


def make(sinks: list[Sink], url: str, token: str = TOKEN, **overrides: Any) -> Sink:
    settings = SinkTestSettings(
        sink_url=url, sink_format="splunk-hec", sink_token=PlainSecret(token), **overrides
    )
    sink = build_sink(settings)
    sinks.append(sink)
    return sink


def acking_sink(
    sinks: list[Sink], url: str, *, ack_timeout_s: float = 5.0, interval_s: float = 0.05
) -> SplunkHecSink:
    """A sink with indexer acks and a short poll interval (the default is 0.5 s)."""
    poster = HttpPoster(HttpOptions(timeout_s=2.0, authorization=f"Splunk {TOKEN}"))
    sink = SplunkHecSink(
        url,
        poster,
        sourcetype="aws:cloudwatchlogs",
        ack=True,
        ack_timeout_s=ack_timeout_s,
        ack_interval_s=interval_s,
    )
    sinks.append(sink)
    return sink


@pytest.mark.parametrize(
    "url",
    [
        "https://splunk:8088",
        "https://splunk:8088/",
        "https://splunk:8088/services/collector",
        "https://splunk:8088/services/collector/event",
        "https://splunk:8088/services/collector/event/1.0/",
    ],
)
def test_collector_urls(url: str) -> None:
    assert collector_base(url) == "https://splunk:8088/services/collector"


async def test_event_envelopes(hec: SplunkHecFake, sinks: list[Sink]) -> None:
    sink = make(sinks, hec.url, splunk_index="cloudwatch", splunk_sourcetype="aws:cwl")
    batch = sample_batch(3)
    result = await sink.send(batch)
    assert result.outcome is Outcome.OK and result.status == 200
    (req,) = hec.requests()
    assert req.path == "/services/collector/event"
    assert req.header("Authorization") == f"Splunk {TOKEN}"
    assert req.header("X-Splunk-Request-Channel") is None
    envelopes, bad = split_concatenated_json(req.body.decode())
    assert bad is None
    assert envelopes[0] == {
        "time": 1732183200.123,
        "host": "cwconsumer",
        "source": "/aws/lambda/orders",
        "sourcetype": "aws:cwl",
        "index": "cloudwatch",
        "event": batch.docs[0],
        "fields": {"log_stream": "2026/11/21/[$LATEST]abc"},
    }
    assert envelopes[1]["time"] == 1732183200.124
    assert hec.docs() == batch.docs


async def test_index_only_when_set(hec: SplunkHecFake, sinks: list[Sink]) -> None:
    sink = make(sinks, hec.url + "/services/collector")
    assert (await sink.send(sample_batch(1))).outcome is Outcome.OK
    assert "index" not in hec.events()[0]


async def test_wrong_token_is_auth_and_secret_free(hec: SplunkHecFake, sinks: list[Sink]) -> None:
    wrong = "0badc0de-0000-4000-8000-000000000000"
    result = await make(sinks, hec.url, token=wrong).send(sample_batch(1))
    assert (result.outcome, result.status) == (Outcome.AUTH, 403)
    assert "Invalid token" in result.detail and wrong not in result.detail
    ok, why = await make(sinks, hec.url, token=wrong).probe()
    assert not ok and wrong not in why


async def test_busy_is_retry(hec: SplunkHecFake, sinks: list[Sink]) -> None:
    sink = make(sinks, hec.url)
    hec.set_fault(503, retry_after=5, body={"text": "Server is busy", "code": 9})
    busy = await sink.send(sample_batch(2))
    assert (busy.outcome, busy.retry_after_s) == (Outcome.RETRY, 5.0)
    assert (await sink.send(sample_batch(2))).outcome is Outcome.OK


async def test_invalid_event_is_poison_alone(sinks: list[Sink]) -> None:
    with SplunkHecFake(token=TOKEN, invalid=lambda env: "bad" in env["event"]) as hec:
        sink = make(sinks, hec.url)
        batch = sample_batch(4)
        batch.docs[2]["bad"] = True
        result = await sink.send(batch)
        assert result.outcome is Outcome.RETRY
        assert result.items == [Outcome.RETRY, Outcome.RETRY, Outcome.POISON, Outcome.RETRY]
        assert "Invalid data format" in result.item_detail[2]
        single = await sink.send(batch.pick([2]))
        assert (single.outcome, single.status) == (Outcome.POISON, 400)


async def test_configuration_refusals_are_not_poison(sinks: list[Sink]) -> None:
    with SplunkHecFake(token=TOKEN, ack=True) as hec:
        no_channel = await make(sinks, hec.url).send(sample_batch(1))
        assert no_channel.outcome is Outcome.AUTH
        assert "CWC_SPLUNK_ACK=true" in no_channel.detail
        hec.set_fault(400, body={"text": "Incorrect index", "code": 7})
        wrong_index = await make(sinks, hec.url, splunk_ack=True).send(sample_batch(1))
        assert wrong_index.outcome is Outcome.AUTH


async def test_ack_flow_ok_only_after_indexed(sinks: list[Sink]) -> None:
    with SplunkHecFake(token=TOKEN, ack=True, ack_delay_s=0.3) as hec:
        sink = acking_sink(sinks, hec.url)
        batch = sample_batch(3)
        result = await sink.send(batch)
        assert result.outcome is Outcome.OK and "ackId 0" in result.detail
        # When send returns OK (and the checkpoint may move), HEC has reported the ack.
        assert hec.acked == [(sink.channel, 0)]
        assert hec.docs() == batch.docs
        event_req, *polls = hec.requests()
        assert event_req.header("X-Splunk-Request-Channel") == sink.channel
        assert polls and all(p.path == "/services/collector/ack" for p in polls)
        assert all(p.header("X-Splunk-Request-Channel") == sink.channel for p in polls)
        assert polls[-1].json() == {"acks": [0]}


async def test_ack_that_never_comes_is_retried(sinks: list[Sink]) -> None:
    with SplunkHecFake(token=TOKEN, ack=True, ack_delay_s=3600) as hec:
        sink = acking_sink(sinks, hec.url, ack_timeout_s=0.3)
        result = await sink.send(sample_batch(2))
        assert result.outcome is Outcome.RETRY
        assert "no indexer acknowledgement for ackId 0" in result.detail
        assert len(hec.events()) == 2 and hec.docs() == []


async def test_ack_poll_failures_end_in_retry(sinks: list[Sink]) -> None:
    with SplunkHecFake(token=TOKEN, ack=True) as hec:
        sink = acking_sink(sinks, hec.url, ack_timeout_s=0.3)
        hec.set_fault(503, times=-1, path="/services/collector/ack")
        result = await sink.send(sample_batch(1))
        assert result.outcome is Outcome.RETRY and "HTTP 503" in result.detail


async def test_concurrent_batches_share_ack_polls(sinks: list[Sink]) -> None:
    with SplunkHecFake(token=TOKEN, ack=True, ack_delay_s=0.3) as hec:
        sink = acking_sink(sinks, hec.url)
        batches = [sample_batch(2, start_ms=1_732_183_200_000 + k * 10) for k in range(4)]
        results: list[Outcome] = []

        async def one(batch: OutBatch) -> None:
            results.append((await sink.send(batch)).outcome)

        async with anyio.create_task_group() as tg:
            for batch in batches:
                tg.start_soon(one, batch)
        assert results == [Outcome.OK] * 4
        assert sorted(ack for _, ack in hec.acked) == [0, 1, 2, 3]
        polled = [json.loads(r.body)["acks"] for r in hec.requests() if r.path.endswith("/ack")]
        assert max(len(ids) for ids in polled) > 1


async def test_ack_requested_but_token_without_ack(hec: SplunkHecFake, sinks: list[Sink]) -> None:
    sink = make(sinks, hec.url, splunk_ack=True)
    result = await sink.send(sample_batch(1))
    assert result.outcome is Outcome.OK and "without ackId" in result.detail


async def test_gzip_and_empty_batch(hec: SplunkHecFake, sinks: list[Sink]) -> None:
    sink = make(sinks, hec.url, sink_gzip=True)
    assert (await sink.send(OutBatch([], []))).outcome is Outcome.OK
    assert (await sink.send(sample_batch(20))).outcome is Outcome.OK
    assert hec.requests()[0].gzip and len(hec.docs()) == 20


async def test_probe(hec: SplunkHecFake, sinks: list[Sink]) -> None:
    ok, why = await make(sinks, hec.url).probe()
    assert ok and "token accepted" in why
    with SplunkHecFake(token=TOKEN, ack=True) as acking:
        ok, why = await make(sinks, acking.url).probe()
        assert not ok and "CWC_SPLUNK_ACK=true" in why
        ok, _ = await make(sinks, acking.url, splunk_ack=True).probe()
        assert ok
