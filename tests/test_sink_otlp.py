"""The OTLP/HTTP logs sink against a local receiver that decodes every request
with opentelemetry-proto (tests/support/otlpfake.py), in both encodings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from cwconsumer.documents import Shaper
from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import CountsRejected, Outcome, Sink
from cwconsumer.sinks.factory import build_sink
from cwconsumer.sinks.http import Response
from cwconsumer.sinks.otlp import OtlpSink, classify_export, logs_url
from cwconsumer.sinks.otlp_encode import encode, group_identity, identified, severity_number
from tests.support.fakesinks import SinkTestSettings
from tests.support.otlpfake import OtlpFake, decode_request

T0 = 1_732_183_200_123
LAMBDA = "/aws/lambda/orders"
STREAM = "2026/11/21/[$LATEST]abc"
REPORT = (
    "REPORT RequestId: 7dea2e7a-1111-2222-3333-444455556666\tDuration: 584.64 ms\t"
    "Billed Duration: 600 ms\tMemory Size: 128 MB\tMax Memory Used: 19 MB\t\n"
    "XRAY TraceId: 1-5759e988-bd862e3fe1be46a994272793\tSegmentId: 53995c3f42cd8ad8\t"
    "Sampled: true\t"
)
NODE_ERROR = "2026-11-21T10:00:00.123Z\t7dea2e7a-1111-2222-3333-444455556666\tERROR\tboom"


def shaped(
    messages: list[str], group: str = LAMBDA, stream: str = STREAM, account: str = ""
) -> OutBatch:
    """Documents exactly as the product shapes them."""
    shaper = Shaper(group, stream, "eu-west-1", "auto", account=account)
    events = [
        {"timestamp": T0 + i, "message": m, "ingestionTime": T0 + i + 500}
        for i, m in enumerate(messages)
    ]
    docs, stamps, _, _, _ = shaper.shape(events, None, -1)
    return OutBatch(docs, stamps)


@pytest.fixture
def receiver() -> Iterator[OtlpFake]:
    with OtlpFake(partial_reject="REJECT-ME") as server:
        yield server


def make(sinks: list[Sink], url: str, **overrides: Any) -> Sink:
    sink = build_sink(SinkTestSettings(sink_url=url, sink_format="otlp", **overrides))
    sinks.append(sink)
    return sink


def test_url_gets_v1_logs_only_when_the_path_is_empty() -> None:
    assert logs_url("http://collector:4318") == "http://collector:4318/v1/logs"
    assert logs_url("http://collector:4318/") == "http://collector:4318/v1/logs"
    assert logs_url("https://loki:3100/otlp/v1/logs") == "https://loki:3100/otlp/v1/logs"
    assert logs_url("https://es:9200/_otlp/v1/logs?x=1") == "https://es:9200/_otlp/v1/logs?x=1"


def test_group_identity_and_severity() -> None:
    arn = "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/x"
    assert group_identity(arn, "", "") == ("/aws/lambda/x", "eu-west-1", "111122223333", arn)
    assert group_identity("/a", "cn-north-1", "111122223333")[3] == (
        "arn:aws-cn:logs:cn-north-1:111122223333:log-group:/a"
    )
    assert group_identity("/a", "eu-west-1", "")[3] == ""
    assert severity_number("warn") == severity_number("WARNING") == 13
    assert severity_number("ERROR") == 17
    assert severity_number("chatty") == 0


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_mapping_through_a_real_receiver(
    receiver: OtlpFake, sinks: list[Sink], encoding: str
) -> None:
    batch = shaped(
        ["plain text", REPORT, NODE_ERROR, '{"user": "ann", "n": 3}'], account="123456789012"
    )
    other = shaped(["from another group"], group="/ecs/web", stream="web/1")
    both = OutBatch(batch.docs + other.docs, batch.timestamps_ms + other.timestamps_ms)
    sink = make(sinks, receiver.url, otlp_encoding=encoding)
    result = await sink.send(both)
    assert result.outcome is Outcome.OK, result.detail
    got = receiver.received()
    assert [r.body for r in got] == [
        "plain text",
        REPORT,
        NODE_ERROR,
        '{"user": "ann", "n": 3}',
        "from another group",
    ], "body is the original message, unchanged, in order"
    request = receiver.requests()[0]
    assert request.path == "/v1/logs"
    assert request.header("content-type") == (
        "application/json" if encoding == "json" else "application/x-protobuf"
    )
    plain, report, node, obj, ecs = got
    assert plain.resource == {
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
        "cloud.account.id": "123456789012",
        "aws.log.group.names": [LAMBDA],
        "aws.log.group.arns": [f"arn:aws:logs:eu-west-1:123456789012:log-group:{LAMBDA}"],
        "faas.name": "orders",
    }
    assert ecs.resource == {
        "cloud.provider": "aws",
        "cloud.region": "eu-west-1",
        "aws.log.group.names": ["/ecs/web"],
    }, "no account known: no account id, no ARN, no faas.name outside Lambda"
    assert plain.scope == "cwconsumer"
    assert plain.time_unix_nano == T0 * 1_000_000
    assert plain.observed_time_unix_nano == (T0 + 500) * 1_000_000
    docs = [orjson.loads(d) if isinstance(d, bytes) else d for d in both.docs]
    assert [r.uid for r in got] == [d["event"]["id"] for d in docs], "log.record.uid = event.id"
    assert plain.attributes["aws.log.stream.names"] == [STREAM]
    assert plain.attributes["faas.instance"] == STREAM
    assert "faas.instance" not in ecs.attributes
    assert report.attributes["aws.lambda.duration_ms"] == 584.64
    assert report.attributes["aws.lambda.billed_duration_ms"] == 600
    assert report.attributes["aws.lambda.xray_sampled"] is True
    assert report.attributes["faas.invocation_id"] == "7dea2e7a-1111-2222-3333-444455556666"
    assert report.trace_id == "5759e988bd862e3fe1be46a994272793"
    assert report.span_id == "53995c3f42cd8ad8"
    assert (node.severity_text, node.severity_number) == ("ERROR", 17)
    assert plain.severity_number == 0 and plain.trace_id == ""
    assert obj.attributes["json"] == {"user": "ann", "n": 3}


def test_json_encoding_follows_the_otlp_json_mapping() -> None:
    body, bad, _ = encode(shaped([REPORT, NODE_ERROR]), "json")
    assert bad == {}
    data = orjson.loads(body)
    record = data["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["timeUnixNano"] == str(T0 * 1_000_000), "64-bit integers as decimal strings"
    assert record["traceId"] == "5759e988bd862e3fe1be46a994272793", "trace ids as hex"
    assert record["spanId"] == "53995c3f42cd8ad8"
    second = data["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]
    assert second["severityNumber"] == 17, "enums as integers"
    # And it reads back as the same request the protobuf encoding carries.
    as_pb, _, _ = encode(shaped([REPORT, NODE_ERROR]), "protobuf")
    assert decode_request(body, "application/json") == decode_request(
        as_pb, "application/x-protobuf"
    )


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_partial_success_is_final_named_records_dead_lettered(
    receiver: OtlpFake, sinks: list[Sink], encoding: str
) -> None:
    batch = shaped(["keep 0", "REJECT-ME 1", "keep 2", "REJECT-ME 3"])
    counted: list[int] = []
    sink = make(sinks, receiver.url, otlp_encoding=encoding)
    assert isinstance(sink, OtlpSink)
    sink.on_rejected = counted.append
    result = await sink.send(batch)
    assert result.items == [Outcome.OK, Outcome.POISON, Outcome.OK, Outcome.POISON]
    assert "2 record(s) rejected" in result.detail
    assert counted == [], "every rejected record was named, so none is only counted"
    assert [r.body for r in receiver.received()] == ["keep 0", "keep 2"]
    assert len(receiver.requests()) == 1, "a partial success is never retried"


async def test_partial_success_without_names_is_counted_and_confirmed(sinks: list[Sink]) -> None:
    with OtlpFake(partial_reject="REJECT-ME", name_rejected=False) as receiver:
        counted: list[int] = []
        sink = make(sinks, receiver.url)
        assert isinstance(sink, OtlpSink)
        sink.on_rejected = counted.append
        result = await sink.send(shaped(["keep", "REJECT-ME", "REJECT-ME"]))
        assert result.outcome is Outcome.OK and result.items is None
        assert counted == [2]
        assert "2 record(s) rejected" in result.detail


def test_only_the_otlp_sink_counts_unnamed_rejections(sinks: list[Sink]) -> None:
    """The service points ``on_rejected`` at its counter for sinks that are
    CountsRejected (OTLP is imported only when configured, so the service
    cannot name its class)."""
    otlp = make(sinks, "http://127.0.0.1:9/v1/logs")
    assert isinstance(otlp, CountsRejected)
    for fmt in ("ndjson", "elasticsearch", "loki"):
        other = build_sink(SinkTestSettings(sink_url="http://127.0.0.1:9/x", sink_format=fmt))
        sinks.append(other)
        assert not isinstance(other, CountsRejected), fmt


def _answer(status: int, body: bytes = b"", **headers: str) -> Response:
    return Response(status, headers, body)


def test_answers_per_the_otlp_specification() -> None:
    uids = ["a" * 32, "b" * 32]
    ident: Any = lambda t: t  # noqa: E731
    none: Any = lambda n: None  # noqa: E731
    for status in (429, 502, 503, 504):
        res = classify_export(_answer(status, Retry_After="7"), uids, ident, none)
        assert res.outcome is Outcome.RETRY, status
    res = classify_export(_answer(503, **{"Retry-After": "7"}), uids, ident, none)
    assert res.retry_after_s == 7.0
    assert classify_export(_answer(400, b"bad"), uids, ident, none).outcome is Outcome.POISON
    assert classify_export(_answer(413), uids, ident, none).outcome is Outcome.TOO_LARGE
    assert classify_export(_answer(401), uids, ident, none).outcome is Outcome.AUTH
    for status in (404, 408, 500, 501):
        assert classify_export(_answer(status), uids, ident, none).outcome is Outcome.POISON, status
    assert classify_export(_answer(200), uids, ident, none).outcome is Outcome.OK
    response = ExportLogsServiceResponse()
    response.partial_success.rejected_log_records = 1
    response.partial_success.error_message = f"dropped {'b' * 32}"
    res = classify_export(
        _answer(200, response.SerializeToString(), **{"Content-Type": "application/x-protobuf"}),
        uids,
        ident,
        none,
    )
    assert res.items == [Outcome.OK, Outcome.POISON]
    assert identified("nothing named here", uids) == []


def test_a_2xx_whose_body_is_not_an_export_response_is_delivered() -> None:
    """A proxy or a plain receiver answering ``200 ok`` (or an HTML page): the
    spec says a 2xx is a success; the old code raised protobuf's DecodeError
    (not a ValueError) and the lane stopped the process, for ever."""
    uids = ["a" * 32]
    ident: Any = lambda t: t  # noqa: E731
    none: Any = lambda n: None  # noqa: E731
    for body, kind in (
        (b"ok", "text/plain"),
        (b"<html>fine</html>", "text/html"),
        (b"\xff\xff\xff", "application/x-protobuf"),
        (b"{not json", "application/json"),
    ):
        res = classify_export(_answer(200, body, **{"Content-Type": kind}), uids, ident, none)
        assert res.outcome is Outcome.OK, (body, kind)


async def test_refused_request_is_bisected_by_the_lane_rules(sinks: list[Sink]) -> None:
    with OtlpFake(refuse_marker="POISON") as receiver:
        sink = make(sinks, receiver.url)
        res = await sink.send(shaped(["fine", "POISON here"]))
        assert res.outcome is Outcome.POISON and res.status == 400
        assert (await sink.send(shaped(["fine"]))).outcome is Outcome.OK


async def test_a_large_batch_is_encoded_off_the_loop_and_arrives_whole(
    receiver: OtlpFake, sinks: list[Sink]
) -> None:
    batch = shaped([f"line {i}" for i in range(1200)])
    sink = make(sinks, receiver.url, sink_gzip=True)
    assert (await sink.send(batch)).outcome is Outcome.OK
    assert [r.body for r in receiver.received()] == [f"line {i}" for i in range(1200)]
    assert receiver.requests()[0].gzip


async def test_probe_posts_an_empty_export(receiver: OtlpFake, sinks: list[Sink]) -> None:
    ok, text = await make(sinks, receiver.url).probe()
    assert ok, text
    assert receiver.received() == []


async def test_undecodable_message_is_poison_alone(sinks: list[Sink], receiver: OtlpFake) -> None:
    batch = shaped(["fine", "lone \ud800 surrogate"])
    res = await make(sinks, receiver.url).send(batch)
    assert res.items == [Outcome.RETRY, Outcome.POISON]
    assert receiver.requests() == []


async def test_api_key_header_travels_and_is_masked_in_details(sinks: list[Sink]) -> None:
    key = "collector-key-0123456789"
    with OtlpFake() as receiver:
        receiver.set_fault(400, body=f"bad request; your key was {key}")
        sink = make(sinks, receiver.url, sink_headers=(("x-api-key", key),))
        res = await sink.send(shaped(["one"]))
        assert res.outcome is Outcome.POISON
        assert key not in res.detail and "***" in res.detail
        assert receiver.requests()[0].header("x-api-key") == key
