"""The Loki push sink against a fake Loki with ordered writes per stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome, Sink
from cwconsumer.sinks.factory import build_sink
from cwconsumer.sinks.http import Response
from cwconsumer.sinks.loki import classify_push, encode_push, is_final_refusal, push_url, ready_url
from tests.support.fakesinks import LokiFake, SinkTestSettings, sample_batch, sample_doc

T0 = 1_732_183_200_123
NS = 1_000_000


@pytest.fixture
def loki() -> Iterator[LokiFake]:
    with LokiFake() as server:
        yield server


def make(sinks: list[Sink], url: str, **overrides: Any) -> Sink:
    sink = build_sink(SinkTestSettings(sink_url=url, sink_format="loki", **overrides))
    sinks.append(sink)
    return sink


def two_groups() -> OutBatch:
    """Interleaved events of two groups, one of them out of time order."""
    a, b = "/aws/lambda/a", "/aws/ecs/b"
    times = [T0 + 5, T0 + 1, T0 + 3, T0 + 2, T0 + 2]
    groups = [a, b, a, b, a]
    docs = [
        sample_doc(i, t, group=g, stream=f"s{i}")
        for i, (t, g) in enumerate(zip(times, groups, strict=True))
    ]
    return OutBatch(docs, times)


def test_urls() -> None:
    assert push_url("http://loki:3100") == "http://loki:3100/loki/api/v1/push"
    assert push_url("http://loki:3100/") == "http://loki:3100/loki/api/v1/push"
    assert push_url("http://gw/loki/api/v1/push") == "http://gw/loki/api/v1/push"
    assert ready_url("http://gw/tenant/loki/api/v1/push") == "http://gw/tenant/ready"


def test_encoding_groups_by_label_set_and_sorts_by_time() -> None:
    batch = two_groups()
    body, bad = encode_push(batch, (("env", "prod"),))
    assert bad == {}
    streams = orjson.loads(body)["streams"]
    assert [s["stream"] for s in streams] == [
        {"env": "prod", "log_group": "/aws/lambda/a"},
        {"env": "prod", "log_group": "/aws/ecs/b"},
    ]
    a_values = streams[0]["values"]
    assert [v[0] for v in a_values] == [str((T0 + d) * NS) for d in (2, 3, 5)]
    assert [json.loads(v[1])["message"] for v in a_values] == [
        "event 4 of s4",
        "event 2 of s2",
        "event 0 of s0",
    ]
    assert a_values[0][2] == {"log_stream": "s4", "event_id": batch.docs[4]["event"]["id"]}
    assert json.loads(a_values[2][1]) == batch.docs[0]


def test_final_refusal_text() -> None:
    text = (
        "entry with timestamp 2024-11-21 10:00:00 +0000 UTC ignored, reason: 'entry out of "
        'order\' for stream: {log_group="/a"},\ntotal ignored: 1 out of 3'
    )
    assert is_final_refusal(text)
    too_old = (
        "entry for stream '{log_group=\"/a\"}' has timestamp too old: 2020-01-01T00:00:00Z, "
        "oldest acceptable timestamp is: 2024-11-14T00:00:00Z"
    )
    assert is_final_refusal(too_old)
    assert not is_final_refusal("error at least one label pair is required per stream")
    assert not is_final_refusal(too_old + "\nMax entry size '262144' bytes exceeded")
    assert classify_push(Response(400, {}, text.encode())).outcome is Outcome.OK
    assert classify_push(Response(400, {}, b"line too long")).outcome is Outcome.POISON


async def test_push_round_trip(loki: LokiFake, sinks: list[Sink]) -> None:
    sink = make(sinks, loki.url, loki_labels=(("env", "prod"), ("log_group", "ignored")))
    batch = two_groups()
    result = await sink.send(batch)
    assert result.outcome is Outcome.OK and result.status == 204
    (req,) = loki.requests()
    assert req.path == "/loki/api/v1/push" and req.header("Content-Type") == "application/json"
    stored = loki.stored()
    assert len(stored) == 5
    labels = {tuple(sorted(entry[0].items())) for entry in stored}
    assert labels == {
        (("env", "prod"), ("log_group", "/aws/lambda/a")),
        (("env", "prod"), ("log_group", "/aws/ecs/b")),
    }
    assert all(entry[1].isdigit() and len(entry[1]) == 19 for entry in stored)
    assert {entry[3]["log_stream"] for entry in stored} == {f"s{i}" for i in range(5)}
    assert sorted(d["event"]["id"] for d in loki.docs()) == sorted(
        d["event"]["id"] for d in batch.docs
    )


async def test_out_of_order_across_batches_is_handled(loki: LokiFake, sinks: list[Sink]) -> None:
    sink = make(sinks, loki.url)
    assert (await sink.send(sample_batch(2, start_ms=T0 + 1000))).outcome is Outcome.OK
    late = sample_batch(3, start_ms=T0)
    late.timestamps_ms[2] = T0 + 5000  # this one is still in order
    result = await sink.send(late)
    assert (result.outcome, result.status) == (Outcome.OK, 400)
    assert "entry out of order" in result.detail
    assert len(loki.stored()) == 3


async def test_too_far_behind_is_handled(sinks: list[Sink]) -> None:
    with LokiFake(oldest_ns=(T0 + 10) * NS) as loki:
        result = await make(sinks, loki.url).send(sample_batch(2, start_ms=T0))
        assert result.outcome is Outcome.OK and "too far behind" in result.detail


async def test_other_refusals(sinks: list[Sink]) -> None:
    with LokiFake(max_labels=1) as loki:
        sink = make(sinks, loki.url, loki_labels=(("env", "prod"),))
        refused = await sink.send(sample_batch(1))
        assert (refused.outcome, refused.status) == (Outcome.POISON, 400)
        assert "label names; limit 1" in refused.detail
        loki.set_fault(429, body="Ingestion rate limit exceeded", retry_after=2)
        limited = await sink.send(sample_batch(1))
        assert (limited.outcome, limited.retry_after_s) == (Outcome.RETRY, 2.0)
        loki.set_fault(500, body="internal")
        assert (await sink.send(sample_batch(1))).outcome is Outcome.RETRY
        loki.set_fault(401, body="no org id")
        assert (await sink.send(sample_batch(1))).outcome is Outcome.AUTH


async def test_gzip_push(loki: LokiFake, sinks: list[Sink]) -> None:
    sink = make(sinks, loki.url, sink_gzip=True)
    assert (await sink.send(sample_batch(30))).outcome is Outcome.OK
    assert loki.requests()[0].gzip and len(loki.stored()) == 30


async def test_probe_and_empty_batch(loki: LokiFake, sinks: list[Sink]) -> None:
    sink = make(sinks, loki.url)
    ok, why = await sink.probe()
    assert ok and "/ready" in why
    assert (await sink.send(OutBatch([], []))).outcome is Outcome.OK
    assert [r.path for r in loki.requests()] == ["/ready"]
