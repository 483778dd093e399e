"""Shipped documents: shape, event.id, ordinals across calls, parse modes, ISO times."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import xxhash

from cwconsumer.aws import decode_get_log_events
from cwconsumer.documents import PARSE_MODES
from cwconsumer.documents import Shaper as _Shaper
from cwconsumer.eventid import event_id
from cwconsumer.isotime import iso_ms
from cwconsumer.model import LogEvent, doc_fields
from cwconsumer.sinks.formats import dumps_doc

GROUP = "/aws/lambda/orders"
STREAM = "2026/11/21/[$LATEST]0123456789abcdef0123456789abcdef"
RID = "7dea2e7a-1c7e-4f0b-9a1a-8f0e6d2c3b4a"
T0 = 1795255200123  # 2026-11-21T10:00:00.123Z

REPORT = (
    f"REPORT RequestId: {RID}\tDuration: 584.64 ms\tBilled Duration: 600 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 19 MB\t\n"
)
JSON_REPORT = (
    '{"time":"2026-11-21T10:00:00.456Z","type":"platform.report","record":{'
    f'"requestId":"{RID}","metrics":{{"durationMs":693.92,"billedDurationMs":694,'
    '"memorySizeMB":128,"maxMemoryUsedMB":84,"initDurationMs":397.68},"status":"success"}}\n'
)


class Shaper(_Shaper):
    """The product's Shaper on the product's path: the items a test writes
    as dicts go through a real GetLogEvents answer body and the product's
    decoder first (:class:`LogEvent`, messages kept as raw bytes), as the
    reader hands them over; every document is read back as a dict (most come
    serialized; tests/test_serialized_docs.py checks those bytes). The dict
    path, which only tests and tools use, is compared with this one in
    :func:`test_api_events_give_the_documents_of_dict_items`."""

    def shape(self, events: Any, *args: Any) -> Any:
        if events and not isinstance(events[0], LogEvent):
            events = _from_api(list(events))
        docs, *rest = super().shape(events, *args)
        return ([doc_fields(d) for d in docs], *rest)


def ev(message: str, ts: int = T0, ingested: int | None = T0 + 333) -> dict[str, Any]:
    item: dict[str, Any] = {"timestamp": ts, "message": message}
    if ingested is not None:
        item["ingestionTime"] = ingested
    return item


def one(message: str, group: str = GROUP, mode: str = "auto") -> dict[str, Any]:
    docs, *_ = Shaper(group, STREAM, "us-east-1", mode).shape([ev(message)], None, -1)
    assert docs[0]["message"] == message
    return docs[0]


# --- the document -------------------------------------------------------------------------


def test_lambda_report_document_matches_the_spec() -> None:
    docs, timestamps, last_ts, last_ord, nbytes = Shaper(GROUP, STREAM, "us-east-1", "auto").shape(
        [ev(REPORT)], None, -1
    )
    assert docs == [
        {
            "@timestamp": "2026-11-21T10:00:00.123Z",
            "message": REPORT,
            "event": {
                "id": event_id(GROUP, STREAM, T0, 0, region="us-east-1"),
                "ingested": "2026-11-21T10:00:00.456Z",
            },
            "aws": {
                "cloudwatch": {"log_group": GROUP, "log_stream": STREAM},
                "lambda": {
                    "type": "report",
                    "request_id": RID,
                    "duration_ms": 584.64,
                    "billed_duration_ms": 600,
                    "memory_size_mb": 128,
                    "max_memory_used_mb": 19,
                },
            },
            "cloud": {"provider": "aws", "region": "us-east-1"},
        }
    ]
    assert (timestamps, last_ts, last_ord) == ([T0], T0, 0)
    assert nbytes > len(REPORT)


def test_plain_document_has_no_parsed_fields() -> None:
    doc = one("hello from print()\n", group="/ecs/web")
    assert doc == {
        "@timestamp": "2026-11-21T10:00:00.123Z",
        "message": "hello from print()\n",
        "event": {
            "id": event_id("/ecs/web", STREAM, T0, 0, region="us-east-1"),
            "ingested": iso_ms(T0 + 333),
        },
        "aws": {"cloudwatch": {"log_group": "/ecs/web", "log_stream": STREAM}},
        "cloud": {"provider": "aws", "region": "us-east-1"},
    }


def test_missing_ingestion_time_omits_event_ingested() -> None:
    docs, *_ = Shaper(GROUP, STREAM, "eu-west-1", "auto").shape(
        [ev("a\n", ingested=None), ev("b\n", ts=T0 + 1)], None, -1
    )
    assert docs[0]["event"] == {"id": event_id(GROUP, STREAM, T0, 0, region="eu-west-1")}
    assert docs[1]["event"]["ingested"] == iso_ms(T0 + 333)


@pytest.mark.parametrize(
    "message",
    [
        "line\n",
        "no newline",
        "\n",
        "windows\r\n",
        "tabs\tand  spaces  \n\n",
        "unicode é 日本 🎉\n",
        REPORT,
        JSON_REPORT,
        f"2019-06-07T19:11:20.562Z\t{RID}\tINFO\tmulti\rline\n",
    ],
)
def test_message_is_kept_unchanged(message: str) -> None:
    for mode in PARSE_MODES:
        doc = one(message, mode=mode)
        assert doc["message"] == message
        assert orjson.loads(dumps_doc(doc))["message"] == message


def test_level_and_request_id_from_runtime_lines() -> None:
    node = one(f"2019-06-07T19:11:20.562Z\t{RID}\tWARN\tslow downstream\n")
    assert node["aws"]["lambda"] == {"request_id": RID}
    assert node["log"] == {"level": "WARN"}
    python = one(f"[ERROR]\t2023-08-31T22:12:58.534Z\t{RID}\tboom\n")
    assert python["aws"]["lambda"] == {"request_id": RID}
    assert python["log"] == {"level": "ERROR"}


def test_init_phase_line_has_a_level_but_no_aws_lambda() -> None:
    doc = one("2019-06-07T19:11:20.562Z\tundefined\tINFO\tcold start\n")
    assert "lambda" not in doc["aws"]
    assert doc["log"] == {"level": "INFO"}


def test_start_end_and_timeout_documents() -> None:
    start = one(f"START RequestId: {RID} Version: $LATEST\n")
    assert start["aws"]["lambda"] == {"type": "start", "request_id": RID, "version": "$LATEST"}
    end = one(f"END RequestId: {RID}\n")
    assert end["aws"]["lambda"] == {"type": "end", "request_id": RID}
    timeout = one(f"2023-11-08T20:18:38.939Z {RID} Task timed out after 3.01 seconds\n")
    assert timeout["aws"]["lambda"]["status"] == "timeout"
    assert timeout["aws"]["lambda"]["timeout_s"] == 3.01
    assert "log" not in start and "json" not in start


def test_json_platform_report_document() -> None:
    doc = one(JSON_REPORT)
    assert doc["aws"]["lambda"] == {
        "type": "report",
        "request_id": RID,
        "status": "success",
        "duration_ms": 693.92,
        "init_duration_ms": 397.68,
        "billed_duration_ms": 694,
        "memory_size_mb": 128,
        "max_memory_used_mb": 84,
    }
    assert doc["json"] == orjson.loads(JSON_REPORT)


def test_json_application_line_document() -> None:
    message = (
        '{"timestamp":"2026-11-21T10:00:00.123Z","level":"ERROR",'
        f'"requestId":"{RID}","message":"payment failed"}}\n'
    )
    doc = one(message)
    assert doc["aws"]["lambda"] == {"request_id": RID}
    assert doc["log"] == {"level": "ERROR"}
    assert doc["json"]["message"] == "payment failed"


def test_json_logged_behind_a_runtime_prefix_is_parsed_too() -> None:
    doc = one(f'2019-06-07T19:11:20.562Z\t{RID}\tINFO\t{{"order": 42, "ok": true}}\n')
    assert doc["json"] == {"order": 42, "ok": True}
    assert doc["aws"]["lambda"] == {"request_id": RID}


@pytest.mark.parametrize(
    "message", ["[1, 2]\n", "42\n", '"text"\n', "null\n", "{oops}\n", '{"a": 1} tail\n']
)
def test_json_array_scalar_or_invalid_stays_text(message: str) -> None:
    for group in (GROUP, "/ecs/web"):
        doc = one(message, group=group)
        assert "json" not in doc
        assert "lambda" not in doc["aws"]
        assert doc["message"] == message


def test_json_object_in_any_group() -> None:
    doc = one('{"user": "alice", "n": [1, 2]}\n', group="/ecs/web")
    assert doc["json"] == {"user": "alice", "n": [1, 2]}
    assert "lambda" not in doc["aws"]


# --- parse modes --------------------------------------------------------------------------


def test_parse_mode_none_parses_nothing() -> None:
    for message in (REPORT, JSON_REPORT, '{"a": 1}\n'):
        doc = one(message, mode="none")
        assert set(doc) == {"@timestamp", "message", "event", "aws", "cloud"}
        assert doc["aws"] == {"cloudwatch": {"log_group": GROUP, "log_stream": STREAM}}


def test_parse_mode_json_parses_objects_but_no_lambda_lines() -> None:
    assert "lambda" not in one(REPORT, mode="json")["aws"]
    doc = one(JSON_REPORT, mode="json")
    assert "lambda" not in doc["aws"]
    assert doc["json"]["type"] == "platform.report"


def test_parse_mode_lambda_parses_every_group() -> None:
    doc = one(REPORT, group="/ecs/web", mode="lambda")
    assert doc["aws"]["lambda"]["duration_ms"] == 584.64
    assert one('{"a": 1}\n', group="/ecs/web", mode="lambda")["json"] == {"a": 1}


def test_parse_mode_auto_parses_lambda_lines_only_in_lambda_groups() -> None:
    assert one(REPORT, mode="auto")["aws"]["lambda"]["type"] == "report"
    assert "lambda" not in one(REPORT, group="/ecs/web", mode="auto")["aws"]
    assert "lambda" not in one(REPORT, group="/aws/lambdax/f", mode="auto")["aws"]
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/orders"
    assert one(REPORT, group=arn, mode="auto")["aws"]["lambda"]["type"] == "report"


def test_unknown_parse_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="parse_mode"):
        Shaper(GROUP, STREAM, "us-east-1", "yaml")


# --- event.id and ordinals ----------------------------------------------------------------


def test_event_id_is_deterministic_and_pinned() -> None:
    eid = event_id(GROUP, STREAM, T0, 0, account="123456789012", region="eu-west-1")
    assert re.fullmatch(r"[0-9a-f]{32}", eid)
    assert eid == event_id(GROUP, STREAM, T0, 0, account="123456789012", region="eu-west-1")
    # The documented encoding; ids are stored by sinks, so it must never change.
    parts = [n.encode() for n in ("123456789012", "eu-west-1", GROUP, STREAM)]
    encoded = (
        b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        + T0.to_bytes(8, "big", signed=True)
        + (0).to_bytes(8, "big", signed=True)
    )
    assert eid == xxhash.xxh3_128_hexdigest(encoded)
    assert event_id("g", "s", 1, 2, account="1", region="r") == "ce05efee131b91c8418f54e9067cb363"


def test_event_id_differs_across_accounts_and_regions() -> None:
    ids = {
        event_id(GROUP, STREAM, T0, 0, account=a, region=r)
        for a in ("", "111122223333", "444455556666")
        for r in ("", "us-east-1", "eu-west-1")
    }
    assert len(ids) == 9
    shaped = [
        Shaper(GROUP, STREAM, "us-east-1", "auto", account=a).shape([ev("x\n")], None, -1)[0]
        for a in ("111122223333", "444455556666")
    ]
    first, second = (doc_fields(docs[0]) for docs in shaped)
    assert first["event"]["id"] == event_id(
        GROUP, STREAM, T0, 0, account="111122223333", region="us-east-1"
    )
    assert first["event"]["id"] != second["event"]["id"]
    assert first["cloud"] == {
        "provider": "aws",
        "region": "us-east-1",
        "account": {"id": "111122223333"},
    }


def test_event_id_names_cannot_collide() -> None:
    variants = [
        ("a\0b", "c", 1, 0),
        ("a", "b\0c", 1, 0),
        ("ab", "c", 1, 0),
        ("a", "bc", 1, 0),
        ("a1", "", 1, 0),
        ("a", "1", 1, 0),
        ("a", "", 11, 0),
        ("a", "", 1, 10),
        ("a", "", 110, 0),
        ("a", "", 1, 1),
        ("a", "", 11, 1),
        ("é", "", 1, 0),
        ("e\u0301", "", 1, 0),
    ]
    ids = {event_id(*v) for v in variants}
    assert len(ids) == len(variants)


def test_same_time_and_text_get_distinct_ids() -> None:
    events = [ev("same\n") for _ in range(5)]
    docs, _, last_ts, last_ord, _ = Shaper(GROUP, STREAM, "us-east-1", "auto").shape(
        events, None, -1
    )
    ids = [d["event"]["id"] for d in docs]
    assert len(set(ids)) == 5
    assert ids == [event_id(GROUP, STREAM, T0, k, region="us-east-1") for k in range(5)]
    assert (last_ts, last_ord) == (T0, 4)


def test_ordinal_continues_across_calls() -> None:
    rng = random.Random(7)
    events = []
    ts = T0
    for i in range(300):
        ts += rng.choice([0, 0, 0, 1, 2, 1000])  # long runs of equal milliseconds
        events.append(ev(f"event {i % 3}\n", ts=ts, ingested=ts + 50))
    shaper = Shaper(GROUP, STREAM, "us-east-1", "auto")
    whole = shaper.shape(events, None, -1)
    for cuts in ([150], [1, 2, 3], [10, 11, 200, 299], list(range(1, 300, 17))):
        docs: list[dict[str, Any]] = []
        stamps: list[int] = []
        prev: tuple[int | None, int] = (None, -1)
        nbytes = 0
        for start, stop in zip([0, *cuts], [*cuts, len(events)], strict=True):
            part = shaper.shape(events[start:stop], *prev)
            docs += part[0]
            stamps += part[1]
            prev = (part[2], part[3])
            nbytes += part[4]
        assert docs == whole[0]
        assert stamps == whole[1]
        assert prev == (whole[2], whole[3])
        assert nbytes == whole[4]
    assert len({d["event"]["id"] for d in whole[0]}) == len(events)


def test_ordinal_resumes_from_a_checkpoint_in_the_same_millisecond() -> None:
    docs, _, last_ts, last_ord, _ = Shaper(GROUP, STREAM, "us-east-1", "auto").shape(
        [ev("x\n"), ev("y\n", ts=T0 + 1)], T0, 6
    )
    assert docs[0]["event"]["id"] == event_id(GROUP, STREAM, T0, 7, region="us-east-1")
    assert docs[1]["event"]["id"] == event_id(GROUP, STREAM, T0 + 1, 0, region="us-east-1")
    assert (last_ts, last_ord) == (T0 + 1, 0)


def test_no_events() -> None:
    shaper = Shaper(GROUP, STREAM, "us-east-1", "auto")
    assert shaper.shape([], T0, 3) == ([], [], T0, 3, 0)
    assert shaper.shape([], None, -1) == ([], [], None, -1, 0)


def test_ids_differ_between_streams_and_groups() -> None:
    a = Shaper(GROUP, STREAM, "us-east-1", "auto").shape([ev("x\n")], None, -1)[0]
    b = Shaper(GROUP, STREAM + "x", "us-east-1", "auto").shape([ev("x\n")], None, -1)[0]
    c = Shaper(GROUP + "x", STREAM, "us-east-1", "auto").shape([ev("x\n")], None, -1)[0]
    assert len({a[0]["event"]["id"], b[0]["event"]["id"], c[0]["event"]["id"]}) == 3


# --- size estimate ------------------------------------------------------------------------


def test_nbytes_estimates_the_serialized_size() -> None:
    messages = [
        "GET /api/orders/12345 200 12ms\n",
        "x" * 5000 + "\n",
        "日本語のログ 🎉 " * 40 + "\n",
        REPORT,
        JSON_REPORT,
        f"2019-06-07T19:11:20.562Z\t{RID}\tINFO\tprocessing\n",
        '{"a": {"b": [1, 2, 3]}, "c": "d"}\n',
    ]
    shaper = Shaper(GROUP, STREAM, "us-east-1", "auto")
    for message in messages:
        docs, *_, nbytes = shaper.shape([ev(message)] * 50, None, -1)
        real = sum(len(dumps_doc(d)) + 1 for d in docs)
        assert 0.85 * real <= nbytes <= 1.3 * real, (message[:30], nbytes, real)


# --- ISO times ----------------------------------------------------------------------------


def _expected_iso(ts_ms: int) -> str:
    t = datetime(1970, 1, 1) + timedelta(milliseconds=ts_ms)
    return t.isoformat(timespec="milliseconds") + "Z"


@pytest.mark.parametrize(
    ("ts_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (T0, "2026-11-21T10:00:00.123Z"),
        (1798761599999, "2026-12-31T23:59:59.999Z"),
        (1798761600000, "2027-01-01T00:00:00.000Z"),
        (951782400000, "2000-02-29T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (253402300799999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_iso_ms_known_values(ts_ms: int, text: str) -> None:
    assert iso_ms(ts_ms) == text


def test_iso_ms_matches_datetime() -> None:
    rng = random.Random(42)
    values = [rng.randrange(-62135596800000, 253402300800000) for _ in range(3000)]
    values += [rng.randrange(0, 4102444800000) for _ in range(3000)]
    values += [s * 1000 for s in rng.sample(range(0, 4102444800), 500)]  # ms = 0
    # Year boundaries, each ms around midnight of Jan 1st.
    for year in (1971, 2000, 2024, 2025, 2026, 2027, 2100):
        midnight = int((datetime(year, 1, 1) - datetime(1970, 1, 1)).total_seconds()) * 1000
        values += range(midnight - 3, midnight + 3)
    for ts_ms in values:  # also more distinct seconds than the prefix cache holds
        assert iso_ms(ts_ms) == _expected_iso(ts_ms), ts_ms


def test_document_times_match_iso_ms() -> None:
    rng = random.Random(3)
    events = [ev("x\n", ts=t, ingested=t + rng.randrange(0, 5000)) for t in range(T0, T0 + 3000, 7)]
    docs, *_ = Shaper(GROUP, STREAM, "us-east-1", "auto").shape(events, None, -1)
    for item, doc in zip(events, docs, strict=True):
        assert doc["@timestamp"] == _expected_iso(item["timestamp"])
        assert doc["event"]["ingested"] == _expected_iso(item["ingestionTime"])


def test_any_message_gives_a_serializable_document() -> None:
    pieces = [
        "REPORT RequestId: ",
        "START RequestId: ",
        RID,
        "\tDuration: ",
        "1.5 ms",
        "\tMemory Size: ",
        "[INFO]\t",
        "2019-06-07T19:11:20.562Z\t",
        "{",
        "}",
        '"k": ',
        "[",
        "]",
        "1e999",
        "\n",
        "\r",
        "\t",
        "é🎉",
        "\x00",
        '{"type": "platform.report", "record": {"metrics": {"durationMs": 1}}}',
    ]
    rng = random.Random(99)
    messages = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 10))) for _ in range(2000)]
    for mode in PARSE_MODES:
        events = [ev(m, ts=T0 + i // 4) for i, m in enumerate(messages)]
        docs, *_ = Shaper(GROUP, STREAM, "us-east-1", mode).shape(events, None, -1)
        for message, doc in zip(messages, docs, strict=True):
            assert orjson.loads(dumps_doc(doc))["message"] == message


# --- events as the API sends them: messages kept as their JSON strings -------------------

PIECES = [
    "GET /orders 200\n",
    'quotes " and \\ backslash \t tab\r\n',
    "unicode é 日本 🎉\n",
    "\x00\x1f\x7f control",
    "",
    "x" * 3000,
    "a { not first",
    "trailing backslash \\",
    '{"level": "warn", "n": [1, 2]}\n',  # a JSON object
    "[1, 2]",
    REPORT,
    f"2019-06-07T19:11:20.562Z\t{RID}\tINFO\tprocessing\n",
    "START RequestId: 8f5e1c4a-1b2c-4d3e-9f00-123456789abc Version: $LATEST\n",
]


def _random_items(rng: random.Random, n: int, t0: int, pieces: list[str]) -> list[dict[str, Any]]:
    items = []
    ts = t0
    for i in range(n):
        ts += rng.choice([0, 0, 1, 7, 1000, 86_400_000])
        piece = rng.choice(pieces)
        item: dict[str, Any] = {"timestamp": ts, "message": piece if i % 3 else f"{piece}#{i}"}
        if rng.random() < 0.9:  # ingestionTime is optional in the API
            item["ingestionTime"] = ts + rng.choice([0, 5, 5, 5, 1200])
        items.append(item)
    return items


def _from_api(items: list[dict[str, Any]]) -> list[LogEvent]:
    """The items as the product decodes a GetLogEvents answer holding them."""
    body = orjson.dumps({"events": items, "nextForwardToken": "f/1", "nextBackwardToken": "b/1"})
    events, token = decode_get_log_events(body)
    assert token == "f/1"
    return events


@pytest.mark.parametrize("mode", PARSE_MODES)
@pytest.mark.parametrize("group", ['/app/"q" é', "/aws/lambda/orders"])
@pytest.mark.parametrize("plain_only", [True, False])
def test_api_events_give_the_documents_of_dict_items(
    group: str, mode: str, plain_only: bool
) -> None:
    """The hot path (LogEvent, message never decoded unless it may need
    parsing) and the dict path give the same documents, byte for byte, page
    after page of one stream."""
    rng = random.Random(f"{group}{mode}{plain_only}")
    pieces = PIECES[:8] if plain_only else PIECES
    shaper = _Shaper(group, STREAM, "eu-west-1", mode)
    prev: tuple[int | None, int] = (None, -1)
    for page_no in range(10):
        # Pages continue the stream, sometimes in the millisecond the last one ended in.
        t0 = prev[0] if prev[0] is not None and page_no % 2 else T0 + page_no * 10_000
        items = _random_items(rng, rng.choice([1, 2, 50, 400]), t0, pieces)
        events = _from_api(items)
        assert all(isinstance(e, LogEvent) for e in events)
        fast = shaper.shape(events, *prev)
        slow = shaper.shape(items, *prev)
        # Parsed documents are bytes on the hot path, dicts on the dict path.
        assert [dumps_doc(d) for d in fast[0]] == [dumps_doc(d) for d in slow[0]]
        assert fast[1:4] == slow[1:4]
        docs, stamps, *_, nbytes = fast
        assert stamps == [item["timestamp"] for item in items]
        assert [doc_fields(d)["message"] for d in docs] == [item["message"] for item in items]
        exact = sum(len(dumps_doc(d)) + 1 for d in docs)
        if all(isinstance(d, bytes) for d in docs):
            assert nbytes == exact
        else:
            assert 0.85 * exact <= nbytes <= 1.3 * exact
        prev = (fast[2], fast[3])


def test_api_escapes_are_kept_and_still_read_as_the_same_text() -> None:
    """AWS may escape differently from orjson (``\\u00e9``, ``\\/``): the
    document keeps the API's JSON string, which reads back as the same text,
    and an escaped ``{`` is still found and parsed as a JSON object."""
    body = (
        b'{"events":['
        b'{"timestamp":1795255200123,"message":"caf\\u00e9 a\\/b \\"q\\"\\n","ingestionTime":1795255200200},'
        b'{"ingestionTime":1795255200200,"message":"\\u007b\\"level\\":\\"error\\"}","timestamp":1795255200124},'
        b'{"timestamp":1795255200125,"message":"plain"}'
        b'],"nextForwardToken":"f/2","nextBackwardToken":"b/2"}'
    )  # fmt: skip
    events, token = decode_get_log_events(body)
    assert token == "f/2"
    docs, *_ = _Shaper("/app", STREAM, "eu-west-1", "auto").shape(events, None, -1)
    assert isinstance(docs[0], bytes)
    assert b'"message":"caf\\u00e9 a\\/b \\"q\\"\\n"' in docs[0]
    assert doc_fields(docs[0])["message"] == 'café a/b "q"\n'
    assert doc_fields(docs[0])["event"]["ingested"] == iso_ms(1795255200200)
    assert doc_fields(docs[1])["json"] == {"level": "error"}
    assert "ingested" not in doc_fields(docs[2])["event"]
    assert doc_fields(docs[2])["message"] == "plain"


def test_a_lone_surrogate_from_the_api_is_shipped_not_refused() -> None:
    """A JSON string no ``str`` can hold (``\\ud800`` alone) stays the API's
    JSON in the document, in every parse mode, instead of failing the page."""
    body = (
        b'{"events":[{"timestamp":1795255200123,"message":"lone \\ud800 x"},'
        b'{"timestamp":1795255200123,"message":"{\\"a\\": 1}"}],"nextForwardToken":"f/3"}'
    )
    for mode in PARSE_MODES:
        events, _ = decode_get_log_events(body)
        docs, *_ = _Shaper("/aws/lambda/f", STREAM, "eu-west-1", mode).shape(events, None, -1)
        assert isinstance(docs[0], bytes)
        assert b'"message":"lone \\ud800 x"' in docs[0]
        assert dumps_doc(docs[1])  # the second event is unaffected


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("odd", ['{"k": "v"}', '\\u007b"k":"v"}'])
def test_one_json_object_anywhere_in_a_page_is_found(n: int, odd: str) -> None:
    """The page-wide check misses no position: first, middle or last event,
    written plainly or behind an escape."""
    shaper = _Shaper("/app", STREAM, "eu-west-1", "auto")
    for k in range(n):
        raws = [b'"plain \\\\ ' + str(i).encode() + b'"' for i in range(n)]
        raws[k] = b'"' + odd.replace('"', '\\"').replace("\\\\u", "\\u").encode() + b'"'
        body = b'{"events":[%s]}' % b",".join(
            b'{"timestamp":%d,"message":%s}' % (T0 + i, r) for i, r in enumerate(raws)
        )
        events, _ = decode_get_log_events(body)
        docs, *_ = shaper.shape(events, None, -1)
        parsed = [i for i, d in enumerate(docs) if "json" in doc_fields(d)]
        assert parsed == [k], (n, k, odd)
        assert doc_fields(docs[k])["json"] == {"k": "v"}


@pytest.mark.parametrize(
    "ts_ms",
    [
        -62135596800000,  # 0001-01-01T00:00:00.000Z, the earliest time a document can carry
        -1,
        0,
        T0,
        253402300799999,  # 9999-12-31T23:59:59.999Z, the latest
    ],
)
def test_parsed_documents_keep_time_and_id_at_the_edges_of_time(ts_ms: int) -> None:
    """A parsed document's time and id are read back from the event's plain
    line at fixed offsets: they are the same as the dict path's at any time,
    for the first event of a page and for one in the previous page's
    millisecond."""
    shaper = _Shaper("/aws/lambda/f", STREAM, "eu-west-1", "auto")
    items = [
        {"timestamp": ts_ms, "message": '{"k": 1}', "ingestionTime": ts_ms},
        {"timestamp": ts_ms, "message": "plain"},
        {"timestamp": ts_ms, "message": REPORT, "ingestionTime": ts_ms},
    ]
    for prev in [(None, -1), (ts_ms, 4)]:
        fast = shaper.shape(_from_api(items), *prev)
        slow = shaper.shape(items, *prev)
        assert [dumps_doc(d) for d in fast[0]] == [dumps_doc(d) for d in slow[0]]
        assert fast[1:4] == slow[1:4]
        fields = [doc_fields(d) for d in fast[0]]
        assert [f["@timestamp"] for f in fields] == [iso_ms(ts_ms)] * 3
        first = 0 if prev[0] is None else prev[1] + 1
        ids = [
            event_id("/aws/lambda/f", STREAM, ts_ms, first + i, region="eu-west-1")
            for i in range(3)
        ]
        assert [f["event"]["id"] for f in fields] == ids
        assert "json" in fields[0] and "lambda" in fields[2]["aws"]
