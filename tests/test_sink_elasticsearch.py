"""The Elasticsearch/OpenSearch ``_bulk`` sink against a fake answering like Elasticsearch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cwconsumer.errors import ConfigError
from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome, Sink
from cwconsumer.sinks.elasticsearch import IndexNamer, bulk_url, cluster_url, parse_bulk_answer
from cwconsumer.sinks.factory import build_sink
from tests.support.fakesinks import ElasticsearchFake, PlainSecret, SinkTestSettings, sample_batch

DAY_MS = 86_400_000
T0 = 1_732_183_200_123  # 2024-11-21T10:00:00.123Z


@pytest.fixture
def es() -> Iterator[ElasticsearchFake]:
    with ElasticsearchFake() as server:
        yield server


def make(sinks: list[Sink], url: str, **overrides: Any) -> Sink:
    sink = build_sink(SinkTestSettings(sink_url=url, sink_format="elasticsearch", **overrides))
    sinks.append(sink)
    return sink


# -- URLs and index names (pure) ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://es:9200", "https://es:9200/_bulk"),
        ("https://es:9200/", "https://es:9200/_bulk"),
        ("https://es:9200/_bulk", "https://es:9200/_bulk"),
        ("https://proxy/es/", "https://proxy/es/_bulk"),
        ("https://proxy/es/_bulk/", "https://proxy/es/_bulk"),
    ],
)
def test_bulk_url(url: str, expected: str) -> None:
    assert bulk_url(url) == expected + "?filter_path=errors,items.*.status,items.*.error"


def test_bulk_url_keeps_query_and_an_explicit_filter_path() -> None:
    assert bulk_url("https://es/_bulk?pipeline=cw") == (
        "https://es/_bulk?pipeline=cw&filter_path=errors,items.*.status,items.*.error"
    )
    assert bulk_url("https://es?filter_path=took") == "https://es/_bulk?filter_path=took"
    assert cluster_url("https://proxy/es/_bulk") == "https://proxy/es/"


def test_index_names() -> None:
    assert IndexNamer("logs-aws.cloudwatch-default")(T0) == "logs-aws.cloudwatch-default"
    assert IndexNamer("cw-%{+yyyy.MM.dd}")(T0) == "cw-2024.11.21"
    assert IndexNamer("cw-%{+yyyy.MM.dd.HH}")(T0) == "cw-2024.11.21.10"
    assert IndexNamer("cw-%Y.%m.%d")(T0) == "cw-2024.11.21"
    assert IndexNamer("cw-%G-w%V")(T0) == "cw-2024-w47"
    namer = IndexNamer("cw-%{+yyyy.MM.dd}")
    assert namer(T0 + DAY_MS) == "cw-2024.11.22"
    assert namer(T0 - 10 * 3_600_000 - 124) == "cw-2024.11.20"  # UTC, not local time


@pytest.mark.parametrize("pattern", ["", "cw-%Q", "cw-%{+yyyy.MMM}", "cw-%{+ww}", "cw-%"])
def test_bad_index_patterns(pattern: str) -> None:
    with pytest.raises(ConfigError):
        IndexNamer(pattern)


# -- bulk answers (pure), golden cases from the Bulk API reference -----------------

GOLDEN_OK = {
    "took": 30,
    "errors": False,
    "items": [
        {
            "index": {
                "_index": "test",
                "_id": "1",
                "_version": 1,
                "result": "created",
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "status": 201,
                "_seq_no": 0,
                "_primary_term": 1,
            }
        },
        {
            "create": {
                "_index": "test",
                "_id": "3",
                "_version": 1,
                "result": "created",
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "status": 201,
                "_seq_no": 2,
                "_primary_term": 3,
            }
        },
    ],
}

GOLDEN_ERRORS = {
    "took": 486,
    "errors": True,
    "items": [
        {
            "update": {
                "_index": "index1",
                "_id": "5",
                "status": 404,
                "error": {
                    "type": "document_missing_exception",
                    "reason": "[5]: document missing",
                    "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA",
                    "shard": "0",
                    "index": "index1",
                },
            }
        },
        {
            "update": {
                "_index": "index1",
                "_id": "6",
                "_version": 2,
                "result": "updated",
                "_shards": {"total": 2, "successful": 1, "failed": 0},
                "_seq_no": 4,
                "_primary_term": 1,
                "status": 200,
            }
        },
    ],
}


def test_golden_answers() -> None:
    assert parse_bulk_answer(orjson.dumps(GOLDEN_OK), 2).outcome is Outcome.OK
    result = parse_bulk_answer(orjson.dumps(GOLDEN_ERRORS), 2)
    assert result.outcome is Outcome.RETRY
    assert result.items == [Outcome.POISON, Outcome.OK]
    assert result.item_detail == {0: "404 document_missing_exception: [5]: document missing"}


def item(op: str, status: int, kind: str = "", reason: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"_index": "i", "_id": "x", "status": status}
    if kind:
        entry["error"] = {"type": kind, "reason": reason}
    return {op: entry}


def test_item_outcomes() -> None:
    items = [
        item("create", 201),
        item("create", 409, "version_conflict_engine_exception", "[x]: version conflict"),
        item("create", 429, "es_rejected_execution_exception", "rejected execution"),
        item("create", 503, "unavailable_shards_exception", "primary shard is not active"),
        item("create", 400, "document_parsing_exception", "failed to parse field [n]"),
        item("create", 400, "mapper_parsing_exception", "failed to parse"),
        item("index", 409, "version_conflict_engine_exception", "conflict"),
    ]
    body = orjson.dumps({"errors": True, "items": items})
    result = parse_bulk_answer(body, len(items))
    assert result.outcome is Outcome.RETRY
    ok, retry, poison = Outcome.OK, Outcome.RETRY, Outcome.POISON
    assert result.items == [ok, ok, retry, retry, poison, poison, poison]
    assert result.item_detail[4] == "400 document_parsing_exception: failed to parse field [n]"
    assert set(result.item_detail) == {2, 3, 4, 5, 6}


def test_configuration_errors_are_auth_not_poison() -> None:
    for kind, status in [
        ("security_exception", 403),
        ("invalid_index_name_exception", 400),
        ("index_not_found_exception", 404),
    ]:
        body = orjson.dumps({"errors": True, "items": [item("create", status, kind, "no")]})
        assert parse_bulk_answer(body, 1).outcome is Outcome.AUTH


@pytest.mark.parametrize(
    "body",
    [b"<html>gateway</html>", b"[]", b'{"errors": true}', b'{"errors": true, "items": [1]}'],
)
def test_unusable_answers_are_retried(body: bytes) -> None:
    assert parse_bulk_answer(body, 2).outcome is Outcome.RETRY


# -- against the fake -------------------------------------------------------------


async def test_bulk_round_trip(es: ElasticsearchFake, sinks: list[Sink]) -> None:
    sink = make(sinks, es.url + "/")
    batch = sample_batch(4)
    result = await sink.send(batch)
    assert result.outcome is Outcome.OK and result.status == 200
    stored = es.index_docs("logs-aws.cloudwatch-default")
    assert stored == {doc["event"]["id"]: doc for doc in batch.docs}
    (req,) = es.requests()
    assert (req.method, req.path) == ("POST", "/_bulk")
    assert req.query["filter_path"] == "errors,items.*.status,items.*.error"
    assert req.header("Content-Type") == "application/x-ndjson"
    lines = req.body.decode().splitlines()
    assert json.loads(lines[0]) == {
        "create": {"_index": "logs-aws.cloudwatch-default", "_id": batch.docs[0]["event"]["id"]}
    }
    assert json.loads(lines[1]) == batch.docs[0]


async def test_events_go_to_the_index_of_their_own_date(
    es: ElasticsearchFake, sinks: list[Sink]
) -> None:
    sink = make(sinks, es.url, sink_index="cw-%{+yyyy.MM.dd}")
    batch = sample_batch(3, start_ms=T0, step_ms=DAY_MS)
    assert (await sink.send(batch)).outcome is Outcome.OK
    assert [len(es.index_docs(f"cw-2024.11.{d}")) for d in (21, 22, 23)] == [1, 1, 1]


async def test_redelivery_conflicts_count_as_delivered(
    es: ElasticsearchFake, sinks: list[Sink]
) -> None:
    sink = make(sinks, es.url)
    batch = sample_batch(5)
    assert (await sink.send(batch.slice(0, 3))).outcome is Outcome.OK
    again = await sink.send(batch)  # three already there: 409 on create
    assert again.outcome is Outcome.OK and again.items is None
    assert len(es.docs()) == 5


async def test_partial_failure_marks_only_the_refused_items(sinks: list[Sink]) -> None:
    def mapping_error(doc: dict[str, Any]) -> str | None:
        if isinstance(doc.get("duration"), str):
            return (
                "[1:15] failed to parse field [duration] of type [long] in document with id "
                f"'{doc['event']['id']}'. Preview of field's value: '{doc['duration']}'"
            )
        return None

    with ElasticsearchFake(mapping_error=mapping_error) as es:
        sink = make(sinks, es.url)
        batch = sample_batch(4)
        batch.docs[2]["duration"] = "fast"
        result = await sink.send(batch)
        assert result.outcome is Outcome.RETRY
        assert result.items == [Outcome.OK, Outcome.OK, Outcome.POISON, Outcome.OK]
        assert result.item_detail[2].startswith(
            "400 document_parsing_exception: [1:15] failed to parse field [duration]"
        )
        assert len(es.docs()) == 3


async def test_rejected_items_are_retried_alone(es: ElasticsearchFake, sinks: list[Sink]) -> None:
    sink = make(sinks, es.url)
    batch = sample_batch(5)
    es.reject_items(2)
    first = await sink.send(batch)
    assert first.items == [Outcome.RETRY] * 2 + [Outcome.OK] * 3
    assert "es_rejected_execution_exception" in first.item_detail[0]
    retry = [i for i, o in enumerate(first.items) if o is Outcome.RETRY]
    assert (await sink.send(batch.pick(retry))).outcome is Outcome.OK
    assert sorted(d["event"]["id"] for d in es.docs()) == sorted(
        d["event"]["id"] for d in batch.docs
    )


async def test_whole_request_refusals(sinks: list[Sink]) -> None:
    with ElasticsearchFake(username="elastic", password="s3cr3t-pw") as es:
        anonymous = await make(sinks, es.url).send(sample_batch(1))
        assert anonymous.outcome is Outcome.AUTH and anonymous.status == 401
        assert "security_exception" in anonymous.detail

        sink = make(sinks, es.url, sink_username="elastic", sink_password=PlainSecret("s3cr3t-pw"))
        assert (await sink.send(sample_batch(2))).outcome is Outcome.OK

        es.set_fault(413, body="")
        assert (await sink.send(sample_batch(2))).outcome is Outcome.TOO_LARGE
        es.set_fault(429, retry_after=3, body={"error": "circuit_breaking_exception"})
        throttled = await sink.send(sample_batch(2))
        assert (throttled.outcome, throttled.retry_after_s) == (Outcome.RETRY, 3.0)


async def test_gzip_bulk(es: ElasticsearchFake, sinks: list[Sink]) -> None:
    sink = make(sinks, es.url, sink_gzip=True)
    assert (await sink.send(sample_batch(50))).outcome is Outcome.OK
    assert es.requests()[0].gzip
    assert len(es.docs()) == 50


async def test_empty_and_unencodable_batches(es: ElasticsearchFake, sinks: list[Sink]) -> None:
    sink = make(sinks, es.url)
    assert (await sink.send(OutBatch([], []))).outcome is Outcome.OK
    batch = sample_batch(2)
    batch.docs[0]["n"] = 2**65
    result = await sink.send(batch)
    assert result.items == [Outcome.POISON, Outcome.RETRY]
    assert es.requests() == []


async def test_probe(sinks: list[Sink]) -> None:
    with ElasticsearchFake(username="elastic", password="pw-123456") as es:
        ok, why = await make(
            sinks, es.url, sink_username="elastic", sink_password=PlainSecret("pw-123456")
        ).probe()
        assert ok and "elasticsearch 8.15.0" in why
        ok, why = await make(sinks, es.url + "/_bulk").probe()
        assert not ok and "401" in why
        es.set_fault(403)
        ok, why = await make(sinks, es.url).probe()
        assert ok and "monitor" in why
