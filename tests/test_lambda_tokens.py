"""The Lambda lines the shaper recognises from their JSON token
(``cwconsumer.parsing.lambda_.TOKEN_*``) give the documents ``parse_text``
gives: thousands of generated lines, near misses included, shaped on the hot
path (events as decoded from an answer) and on the dict path (text parsed by
``parse_text``), compared byte for byte."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from cwconsumer.aws import decode_get_log_events
from cwconsumer.documents import PARSE_MODES, Shaper
from cwconsumer.model import doc_fields
from cwconsumer.parsing.lambda_ import NONCANONICAL_ESCAPE
from cwconsumer.sinks.formats import dumps_doc

T0 = 1_796_551_200_123
STREAM = "2026/12/06/[$LATEST]abc"

TIMES = [
    "2026-12-06T10:00:00.123Z",
    "2026-12-06T10:00:00Z",
    "2026-12-06T10:00:00.123456Z",
    "２026-12-06T10:00:00.123Z",  # a Unicode digit: \d in text, not in bytes
    "2026-12-06 10:00:00.123Z",
    "2026-12-06T10:00:00.Z",
]
IDS = [
    "7dea2e7a-1c7e-4f0b-9a1a-8f0e6d2c3b4a",
    "7DEA2E7A-1C7E-4F0B-9A1A-8F0E6D2C3B4A",
    "undefined",
    "not-a-request-id",
    "7dea2e7a-1c7e-4f0b-9a1a-8f0e6d2c3b4",
    "7dea2e7a-1c7e-4f0b-9a1a-8f0e6d2c3b4a0",
]
LEVELS = ["INFO", "ERROR", "WARN", "WARNING", "DEBUG", "TRACE", "FATAL", "info", ""]
BODIES = ["processing order 4711", '{"a": 1, "b": [true]}', ' {"a":1}', "café ✓", "",
          "tab\tinside", "{broken", "path/to/x", "\r  at frame (x.js:1:1)"]  # fmt: skip
ENDS = ["", "\n", "\r\n", "\r", "\t"]
NUMBERS = ["1.00", "584.64", "0", "007", "1e5", "99999999999999999999", "-1", "1_000", "nan",
           "12345678901234567890.5", "3000", "", "1.5.5", " 12", "123456789012345678"]  # fmt: skip
VERSIONS = ["$LATEST", "12", "a b", "", "é", "v:1", '"q"']


def runtime_line(rng: random.Random) -> str:
    sep = rng.choice(["\t", "\t", "\t", " "])
    level = rng.choice(LEVELS)
    line = f"{rng.choice(TIMES)}{sep}{rng.choice(IDS)}\t"
    if level:
        line += level + rng.choice(["\t", "\t", " "])
    return line + rng.choice(BODIES) + rng.choice(ENDS)


def platform_line(rng: random.Random) -> str:
    rid = rng.choice(IDS)
    kind = rng.choice(["START", "END", "REPORT", "REPORT"])
    if kind == "START":
        line = f"START RequestId: {rid} Version: {rng.choice(VERSIONS)}"
    elif kind == "END":
        line = f"END RequestId: {rid}" + rng.choice(["", "", " extra", "\tX: 1"])
    else:
        sep = rng.choice(["\t", "\t", "\t", "\n", "\r", " "])
        figures = [
            ("Duration", "ms"),
            ("Billed Duration", "ms"),
            ("Memory Size", "MB"),
            ("Max Memory Used", "MB"),
        ]
        if rng.random() < 0.4:
            figures.append(("Init Duration", "ms"))
        if rng.random() < 0.1:
            rng.shuffle(figures)
        if rng.random() < 0.1:
            figures.pop(rng.randrange(len(figures)))
        line = f"REPORT RequestId: {rid}{sep}"
        for key, unit in figures:
            number = rng.choice(NUMBERS) if rng.random() < 0.3 else str(rng.randrange(1, 10_000))
            line += f"{key}: {number} {unit}{sep}"
        if rng.random() < 0.1:
            line += "XRAY TraceId: 1-abc\tSegmentId: 0f\tSampled: true\t"
    return line + rng.choice(ENDS)


def token(message: str, rng: random.Random) -> bytes:
    """The message's JSON string token, escaped as orjson does or otherwise."""
    how = rng.randrange(4)
    if how == 0:
        return json.dumps(message).encode()  # \uXXXX for all non-ASCII
    if how == 1:
        return orjson.dumps(message).replace(b"/", b"\\/")
    return orjson.dumps(message)


def answer(messages: list[str], rng: random.Random) -> bytes:
    items = [
        b'{"timestamp":%d,"message":%s,"ingestionTime":%d}' % (T0 + i // 3, token(m, rng), T0 + 9)
        for i, m in enumerate(messages)
    ]
    return b'{"events":[' + b",".join(items) + b'],"nextForwardToken":"f/1"}'


@pytest.mark.parametrize("mode", PARSE_MODES)
@pytest.mark.parametrize("group", ["/aws/lambda/fn", "/ecs/svc"])
def test_lines_read_from_their_token_give_the_documents_of_parse_text(
    group: str, mode: str
) -> None:
    rng = random.Random(f"{group} {mode}")
    messages = [
        runtime_line(rng) if rng.random() < 0.6 else platform_line(rng) for _ in range(3000)
    ]
    events, _ = decode_get_log_events(answer(messages, rng))
    items = [
        {"timestamp": e.timestamp, "message": m, "ingestionTime": e.ingestionTime}
        for e, m in zip(events, messages, strict=True)
    ]
    shaper = Shaper(group, STREAM, "eu-west-1", mode)
    fast = shaper.shape(events, None, -1)
    slow = shaper.shape(items, None, -1)
    assert fast[1:4] == slow[1:4]
    for message, a, b in zip(messages, fast[0], slow[0], strict=True):
        if message[:1] in shaper._triggers:
            # Parsed or not, a message starting with a trigger is written as
            # orjson writes it, on both paths.
            assert dumps_doc(a) == dumps_doc(b), message
        else:
            # Plain lines copy the token as the answer had it (escapes may differ).
            assert doc_fields(a) == doc_fields(b), message


def test_a_token_without_other_escapes_is_what_orjson_writes() -> None:
    """What the fast paths rely on: an ASCII token in which
    NONCANONICAL_ESCAPE finds nothing is orjson's own encoding of its text."""
    rng = random.Random(7)
    alphabet = ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f", "/", "u",
                "n", "a", " ", "é", "✓", "{"]  # fmt: skip
    kept = 0
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        for token in (
            orjson.dumps(text),
            json.dumps(text).encode(),
            json.dumps(text).encode().replace(b"/", b"\\/"),
        ):
            if token.isascii() and NONCANONICAL_ESCAPE.search(token) is None:
                kept += 1
                assert token == orjson.dumps(json.loads(token)), token
    assert kept > 10_000  # the property was exercised, not vacuously true


def test_a_long_lived_streams_caches_stay_small() -> None:
    """An environment serving thousands of invocations keeps a bounded
    Shaper: its runtime-line caches hold a few invocations, not one entry each."""
    rng = random.Random(3)
    shaper = Shaper("/aws/lambda/fn", STREAM, "eu-west-1", "auto")
    for inv in range(300):
        rid = f"{inv:08x}-1c7e-4f0b-9a1a-8f0e6d2c3b4a"
        messages = [
            f"2026-12-06T10:00:00.{inv % 1000:03d}Z\t{rid}\tINFO\tline {k}\n" for k in range(3)
        ]
        events, _ = decode_get_log_events(answer(messages, rng))
        docs = shaper.shape(events, None, -1)[0]
        assert all(b'"request_id":"' + rid.encode() in d for d in docs if isinstance(d, bytes))
    assert 0 < len(shaper._runtime_tails) <= 16
    assert 0 < len(shaper._runtime_heads) <= 16
