"""CloudWatch Logs events -> shipped documents and their ``event.id`` (pure: no I/O).

One document per event (SPEC, "The document shipped for each event")::

    {"@timestamp": "2026-11-21T10:00:00.123Z",
     "message": <the original text, unchanged>,
     "event": {"id": <32 hex chars>, "ingested": <ISO time; absent without ingestionTime>},
     "aws": {"cloudwatch": {"log_group": ..., "log_stream": ...},
             "lambda": {...}},            # only when a Lambda line was recognised
     "cloud": {"provider": "aws", "region": ...},
     "log": {"level": ...},               # only when the line states a level
     "json": {...}}                       # only when the message is a JSON object

SERIALIZED ONCE. A :class:`Shaper` builds each document of events read from
the API directly as its JSON bytes (``bytes``, see :data:`cwconsumer.model.Doc`:
the same bytes ``orjson.dumps`` gives for the dict, keys in the order above),
parsed or not, so no per-event dicts exist, nothing parsed outlives shaping
and no sink encodes a document again. Only a parsed document orjson could
not encode would stay a dict (refused later by the sink as poison; the
parsers keep nothing of the kind).

NEVER DECODED. Events arrive from the API as :class:`~cwconsumer.model.LogEvent`
whose ``message`` is still the JSON string token of the response; the
document of a plain message copies that token as it is (valid JSON for the
same text, whatever escapes AWS chose). Every event of a page is first
shaped so; then the first byte of each message token is picked from the
lines, in C, and only messages starting with a trigger (``{``, a Lambda
line's first characters) or an escape (which could hide one) are decoded
and, when they need parsing, replaced by their parsed document, with the
message as orjson writes it. In a stream whose Lambda lines are parsed the
commonest ones (runtime lines, START, END, the usual REPORT) are recognised
from the token itself while the lines are written (:meth:`Shaper._lambda_lines`).
Items given as dicts with ``message`` as ``str`` (tests, tools) get the same
documents from :meth:`Shaper._shape_dicts` (parsed ones as dicts there), where
each plain message is encoded by orjson.

READ-ONLY DOCUMENTS. A dict document shares the stream's ``cloud`` dict, and
unless Lambda fields were found its ``aws`` dict, with every other document of
the stream. Documents are meant to be serialized, never changed: code that
needs a different document must build a new one (``{**doc, "aws": {...}}``).

``event.id`` is ``xxh3_128`` over group, stream, timestamp and the event's
ordinal among the stream's events of the same millisecond (see
:func:`event_id`). It is a stored contract: sinks that upsert by id
(Elasticsearch ``_id``) rely on it being the same on every delivery, so the
encoding below must never change.
"""

from __future__ import annotations

import binascii
import re
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any, Final, cast

import orjson
import xxhash

from cwconsumer.model import Doc, LogEvent, message_text
from cwconsumer.parsing.jsonmsg import parse_object
from cwconsumer.parsing.lambda_ import (
    FIRST_CHARS,
    NONCANONICAL_ESCAPE,
    TOKEN_END,
    TOKEN_REPORT,
    TOKEN_RUNTIME,
    TOKEN_START,
    parse_json,
    parse_text,
    runtime_key_fields,
)

__all__ = ["PARSE_MODES", "Shaper", "event_id", "iso_ms"]

PARSE_MODES: Final = ("auto", "none", "lambda", "json")
"""Values of ``CWC_PARSE``: ``auto`` parses Lambda lines in ``/aws/lambda/`` groups
and JSON objects everywhere; ``lambda`` parses Lambda lines in every group, and
JSON objects; ``json`` only JSON objects; ``none`` nothing."""

# --- event.id ----------------------------------------------------------------------------

_TS_ORD: Final = struct.Struct(">qq")
_EVENT_ID_KEY: Final = b',"event":{"id":"'
_hexdigest = xxhash.xxh3_128_hexdigest


def _id_prefix(group: str, stream: str) -> bytes:
    """Length-prefixed names: no two (group, stream) pairs share an encoding,
    whatever characters (NUL, digits) the names hold."""
    g = group.encode("utf-8", "surrogatepass")
    s = stream.encode("utf-8", "surrogatepass")
    return len(g).to_bytes(4, "big") + g + len(s).to_bytes(4, "big") + s


def event_id(group: str, stream: str, ts_ms: int, ordinal: int) -> str:
    """The deterministic id of an event: 32 lowercase hex characters.

    ``ordinal`` is the event's 0-based position among the stream's events with
    the same ``ts_ms``, so events with equal time and text still get distinct
    ids. Encoding (never change it)::

        u32be(len(group)) group u32be(len(stream)) stream i64be(ts_ms) i64be(ordinal)

    with names in UTF-8, hashed with xxh3_128.
    """
    return _hexdigest(_id_prefix(group, stream) + _TS_ORD.pack(ts_ms, ordinal))


# --- ISO-8601 times ----------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1)
_MS_SUFFIX: Final = tuple(f"{ms:03d}Z" for ms in range(1000))
_SECOND_PREFIXES: dict[int, str] = {}
_SECOND_PREFIXES_MAX: Final = 4096


def _second_prefix(sec: int) -> str:
    """``"YYYY-MM-DDTHH:MM:SS."`` for a Unix second, from a small bounded cache."""
    prefix = _SECOND_PREFIXES.get(sec)
    if prefix is None:
        prefix = (_EPOCH + timedelta(seconds=sec)).isoformat() + "."
        if len(_SECOND_PREFIXES) >= _SECOND_PREFIXES_MAX:
            _SECOND_PREFIXES.clear()  # cheaper than LRU bookkeeping; refills in one pass
        _SECOND_PREFIXES[sec] = prefix
    return prefix


def iso_ms(ts_ms: int) -> str:
    """Unix time in ms -> ``"2026-11-21T10:00:00.123Z"`` (UTC, always 3 decimals).

    Raises ``OverflowError`` outside years 1..9999 (CloudWatch accepts no such time).
    """
    sec = ts_ms // 1000
    return _second_prefix(sec) + _MS_SUFFIX[ts_ms - sec * 1000]


# --- documents ---------------------------------------------------------------------------


def _is_lambda_group(group: str) -> bool:
    return group.startswith("/aws/lambda/") or ":log-group:/aws/lambda/" in group


_get_timestamp: Final = attrgetter("timestamp")
_digest = xxhash.xxh3_128_digest
_hexlify = binascii.hexlify  # of the digest: the same 32 characters as the hexdigest, as bytes

# A line is _HEAD_OPEN, the time stamp, _HEAD_CLOSE, the message...: the
# offsets below are what the second pass of Shaper._shape_raw reads at.
_HEAD_OPEN: Final = b'{"@timestamp":"'
_HEAD_CLOSE: Final = b'","message":'
_STAMP_AT: Final = len(_HEAD_OPEN)
_STAMP_END: Final = _STAMP_AT + len(iso_ms(0))  # always 24 characters: years 0001-9999
_HEAD_LEN: Final = _STAMP_END + len(_HEAD_CLOSE)
_MS_CLOSE: Final = tuple(suffix.encode() + _HEAD_CLOSE for suffix in _MS_SUFFIX)
"""A line's head after the stamp's second, by millisecond: ``b'123Z","message":'``."""
_ID_AT: Final = _HEAD_LEN + len(_EVENT_ID_KEY)
"""Of a plain line: where its ``event.id`` starts, after the message token."""
_first_message_byte: Final = itemgetter(_HEAD_LEN + 1)
"""Of a plain line: the first byte of the message's JSON string, after its quote."""


def _head(stamp: str) -> bytes:
    """A plain line up to its message: always :data:`_HEAD_LEN` bytes."""
    return _HEAD_OPEN + stamp.encode() + _HEAD_CLOSE


_dumps: Final = orjson.dumps
_noncanonical: Final = NONCANONICAL_ESCAPE.search
_LEVEL_PARTS: Final = {
    level: b',"log":{"level":' + orjson.dumps(level) + b"}"
    for level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL")
}
"""The ``log`` part of a document for the levels Lambda's runtimes write."""
_RUNTIME_TAILS_MAX: Final = 256
_LAMBDA_FIELD_BYTES: Final = 40  # rough serialized size of one aws.lambda field
_LEVEL_BYTES: Final = 32  # ',"log":{"level":"WARNING"}'


class Shaper:
    """Shapes the events of one stream into documents.

    A Shaper holds no per-call state: the ordinal of the previous event is
    passed in and handed back, so one Shaper may serve a stream for its whole
    life, page after page. See the module docstring: the documents it returns
    share sub-dicts and must never be changed in place.
    """

    __slots__ = (
        "_aws",
        "_aws_lambda_open",
        "_aws_plain",
        "_cloud",
        "_cloud_part",
        "_cloudwatch",
        "_flagged",
        "_flagged_bytes",
        "_id_key",
        "_id_prefix",
        "_json_tail",
        "_overhead",
        "_parse_json",
        "_parse_lambda",
        "_runtime_tails",
        "_triggers",
        "group",
        "parse_mode",
        "region",
        "stream",
    )

    def __init__(self, group: str, stream: str, region: str, parse_mode: str) -> None:
        if parse_mode not in PARSE_MODES:
            raise ValueError(f"parse_mode must be one of {', '.join(PARSE_MODES)}: {parse_mode!r}")
        self.group = group
        self.stream = stream
        self.region = region
        self.parse_mode = parse_mode
        self._parse_lambda = parse_mode == "lambda" or (
            parse_mode == "auto" and _is_lambda_group(group)
        )
        self._parse_json = parse_mode != "none"
        triggers: set[str] = set()
        if self._parse_json:
            triggers.add("{")
        if self._parse_lambda:
            triggers |= FIRST_CHARS
        # First characters that send a message down the parsing path.
        self._triggers = frozenset(triggers)
        # First bytes of a message token that call for a look at its text: a
        # trigger, or an escape that may hide one (all triggers are ASCII).
        assert all(c.isascii() for c in triggers)
        self._flagged = (
            re.compile(
                b"[" + b"".join(re.escape(c.encode()) for c in sorted(triggers | {"\\"})) + b"]"
            )
            if triggers
            else None
        )
        self._flagged_bytes = frozenset(b"\\" + "".join(triggers).encode())
        self._id_prefix = _id_prefix(group, stream)
        # The whole hashed key in one call: prefix, ts and ordinal (event_id).
        self._id_key = struct.Struct(f">{len(self._id_prefix)}sqq").pack
        # Shared by every document of this stream: never mutate (module docstring).
        self._cloudwatch = {"log_group": group, "log_stream": stream}
        self._aws = {"cloudwatch": self._cloudwatch}
        self._cloud = {"provider": "aws", "region": region}
        template = {
            "@timestamp": iso_ms(0),
            "message": "\n",
            "event": {"id": "0" * 32, "ingested": iso_ms(0)},
            "aws": self._aws,
            "cloud": self._cloud,
        }
        # Serialized size of everything but the message text (+1 for a sink's separator).
        self._overhead = len(orjson.dumps(template)) - 4 + 1
        # What follows "event" in a document, serialized once: in every
        # unparsed one, _json_tail; in a parsed one, its parts.
        self._aws_plain = b',"aws":' + orjson.dumps(self._aws)
        self._aws_lambda_open = (
            b',"aws":{"cloudwatch":' + orjson.dumps(self._cloudwatch) + b',"lambda":'
        )
        self._cloud_part = b',"cloud":' + orjson.dumps(self._cloud)
        self._json_tail = self._aws_plain + self._cloud_part + b"}"
        self._runtime_tails: dict[bytes, bytes] = {}

    def __repr__(self) -> str:
        return f"Shaper({self.group!r}, {self.stream!r}, {self.region!r}, {self.parse_mode!r})"

    def shape(
        self,
        events: Sequence[LogEvent] | Sequence[Mapping[str, Any]],
        prev_ts: int | None,
        prev_ord: int,
    ) -> tuple[list[Doc], list[int], int | None, int, int]:
        """Shape GetLogEvents items, in stream order: :class:`LogEvent` as
        decoded from the API, or dicts (``timestamp`` and ``ingestionTime`` as
        int ms, ``message`` as str). All items of one call are of one kind.

        ``prev_ts`` / ``prev_ord`` are the timestamp and ordinal of the event just
        before ``events[0]`` in the stream (``None`` / ``-1`` at its start). An
        event's ordinal is ``prev_ord + 1`` when it shares the previous event's
        millisecond, else 0, so shaping a page in several calls gives the same
        ids as shaping it at once.

        Returns ``(docs, timestamps, last_ts, last_ord, nbytes)``: the last pair
        is what to pass as ``prev_ts`` / ``prev_ord`` next time, and ``nbytes``
        is the serialized size of the documents plus one separator each: exact
        for documents returned as bytes, an estimate for dicts (slightly high
        for ASCII; text outside ASCII is counted in UTF-8 bytes).
        """
        if events and isinstance(events[0], LogEvent):
            return self._shape_raw(cast("Sequence[LogEvent]", events), prev_ts, prev_ord)
        return self._shape_dicts(cast("Sequence[Mapping[str, Any]]", events), prev_ts, prev_ord)

    def _shape_raw(
        self, events: Sequence[LogEvent], prev_ts: int | None, prev_ord: int
    ) -> tuple[list[Doc], list[int], int | None, int, int]:
        """:meth:`shape` for events as decoded from the API: the hot path.

        Every event is first shaped as a plain line (the message's JSON token
        copied), then the few whose message may need parsing (first byte a
        trigger or an escape) are decoded and, if they do, replaced by their
        parsed document. In a stream whose Lambda lines are parsed, the
        commonest lines are recognised while the lines are written
        (:meth:`_lambda_lines`) and only the others are looked at after.
        """
        if self._parse_lambda:
            docs, last_ts, ordinal, slow = self._lambda_lines(events, prev_ts, prev_ord)
            nbytes = sum(map(len, docs)) + len(docs)
            for i in slow:
                nbytes += self._parse_one(docs, i, events[i])
            return docs, list(map(_get_timestamp, events)), last_ts, ordinal, nbytes
        docs, last_ts, ordinal = self._plain_lines(events, prev_ts, prev_ord)
        nbytes = sum(map(len, docs)) + len(docs)
        flagged = self._flagged
        if flagged is not None and docs:
            firsts = bytes(map(_first_message_byte, docs))
            for match in flagged.finditer(firsts):
                nbytes += self._parse_one(docs, match.start(), events[match.start()])
        return docs, list(map(_get_timestamp, events)), last_ts, ordinal, nbytes

    def _lambda_lines(
        self, events: Sequence[LogEvent], prev_ts: int | None, prev_ord: int
    ) -> tuple[list[Doc], int | None, int, list[int]]:
        """:meth:`_plain_lines` for a stream whose Lambda lines are parsed.

        The commonest Lambda lines (a runtime line whose body is no JSON
        object, START, END, the usual REPORT) are recognised from their JSON
        token, in C, without decoding it (``cwconsumer.parsing.lambda_``,
        ``TOKEN_*``): their document is the plain line with another tail (cached
        per request id and level for runtime lines), written at once. Returns
        the lines, the last timestamp and ordinal, and the indexes of the other
        lines that may need parsing (for :meth:`_parse_one`).
        """
        lines: list[Doc] = []
        add = lines.append
        slow: list[int] = []
        id_key = self._id_key
        id_prefix = self._id_prefix
        digest = _digest
        hexlify = _hexlify
        join = b"".join
        prefixes = _SECOND_PREFIXES
        ms_closes = _MS_CLOSE
        id_label = _EVENT_ID_KEY
        head_open = _HEAD_OPEN
        json_tail = self._json_tail
        flagged = self._flagged_bytes
        noncanonical = NONCANONICAL_ESCAPE.search
        runtime = TOKEN_RUNTIME.match
        start = TOKEN_START.match
        end = TOKEN_END.match
        report = TOKEN_REPORT.match
        tails = self._runtime_tails
        lambda_open = self._aws_lambda_open
        start_open = lambda_open + b'{"type":"start","version":"'
        start_mid = b'","request_id":"'
        end_open = lambda_open + b'{"type":"end","request_id":"'
        lambda_close = b'"}}' + self._cloud_part + b"}"  # fields, aws, document
        report_close = b"}" + self._cloud_part + b"}"  # aws, document
        last_ts = prev_ts
        ordinal = prev_ord
        sec: int | None = None
        sec_head = ms_close = b""
        if prev_ts is not None:
            sec = prev_ts // 1000
            sec_head = head_open + _second_prefix(sec).encode()
            ms_close = ms_closes[prev_ts - sec * 1000]
        last_ingested: int | None = None
        event_close = b'"}'
        for ev in events:
            ts = ev.timestamp
            if ts == last_ts:
                ordinal += 1
            else:
                ordinal = 0
                last_ts = ts
                s = ts // 1000
                if s != sec:
                    sec = s
                    sec_head = head_open + (prefixes.get(s) or _second_prefix(s)).encode()
                ms_close = ms_closes[ts - s * 1000]
            ingested = ev.ingestionTime
            if ingested != last_ingested:
                last_ingested = ingested
                event_close = (
                    b'"}'
                    if ingested is None
                    else b'","ingested":"' + iso_ms(ingested).encode() + b'"}'
                )
            token = bytes(ev.message)
            tail = json_tail
            first = token[1]
            if first in flagged:
                # START, END and REPORT patterns match whole tokens of
                # printable ASCII without escapes but \\t and \\n; a runtime
                # line's body is checked for what orjson would write otherwise.
                if first <= 57:  # a digit: a runtime line?
                    m = runtime(token)
                    if m is not None and token.isascii() and noncanonical(token, m.end()) is None:
                        key = m[1]
                        tail = tails.get(key) or self._runtime_tail(key)
                elif first == 83:  # "S"
                    m = start(token)
                    if m is not None:
                        rid, version = m.group(1, 2)
                        tail = join((start_open, version, start_mid, rid, lambda_close))
                elif first == 69:  # "E"
                    m = end(token)
                    if m is not None:
                        tail = join((end_open, m[1], lambda_close))
                elif first == 82:  # "R"
                    m = report(token)
                    if m is not None:
                        tail = join((lambda_open, self._report_fields(m), report_close))
                if tail is json_tail:
                    slow.append(len(lines))
            event_hex = hexlify(digest(id_key(id_prefix, ts, ordinal)))
            add(join((sec_head, ms_close, token, id_label, event_hex, event_close, tail)))
        return lines, last_ts, ordinal, slow

    @staticmethod
    def _report_fields(m: re.Match[bytes]) -> bytes:
        """``aws.lambda`` of a REPORT line matched by ``TOKEN_REPORT``, as JSON."""
        rid, duration, billed, size, used, init = m.groups()
        fields = {
            "type": "report",
            "request_id": rid.decode(),
            "duration_ms": float(duration),
            "billed_duration_ms": int(billed),
            "memory_size_mb": int(size),
            "max_memory_used_mb": int(used),
        }
        if init is not None:
            fields["init_duration_ms"] = float(init)
        return _dumps(fields)

    def _runtime_tail(self, key: bytes) -> bytes:
        """What follows ``event`` in the document of a runtime line with this
        request id and level (``TOKEN_RUNTIME``'s group; cached per stream: an
        invocation's lines share them)."""
        request_id, level = runtime_key_fields(key)
        tail = (
            self._aws_plain
            if request_id is None
            else self._aws_lambda_open + b'{"request_id":"' + request_id + b'"}}'
        )
        tail += self._cloud_part
        if level is not None:
            tail += _LEVEL_PARTS[level.decode()]
        tail += b"}"
        tails = self._runtime_tails
        if len(tails) >= _RUNTIME_TAILS_MAX:
            tails.clear()
        tails[key] = tail
        return tail

    def _plain_lines(
        self, events: Sequence[LogEvent], prev_ts: int | None, prev_ord: int
    ) -> tuple[list[Doc], int | None, int]:
        """Each event as its JSON line, message token as the API sent it.

        Returns the lines and the last event's timestamp and ordinal."""
        lines: list[Doc] = []
        add = lines.append
        id_key = self._id_key
        id_prefix = self._id_prefix
        digest = _digest
        hexlify = _hexlify
        join = b"".join
        prefixes = _SECOND_PREFIXES
        ms_closes = _MS_CLOSE
        no_ingested_tail = b'"}' + self._json_tail
        id_label = _EVENT_ID_KEY
        head_open = _HEAD_OPEN
        last_ts = prev_ts
        ordinal = prev_ord
        # A line's head is two parts: _HEAD_OPEN and the stamp up to its second
        # (one per second), then the milliseconds and _HEAD_CLOSE (a table).
        # Set here for last_ts, so that an event of the previous page's last
        # millisecond (ordinal > 0 at once) has them.
        sec: int | None = None
        sec_head = ms_close = b""
        if prev_ts is not None:
            sec = prev_ts // 1000
            sec_head = head_open + _second_prefix(sec).encode()
            ms_close = ms_closes[prev_ts - sec * 1000]
        # Events of one PutLogEvents call share their ingestionTime: format it once.
        last_ingested: int | None = None
        tail = no_ingested_tail
        for ev in events:
            ts = ev.timestamp
            if ts == last_ts:
                ordinal += 1
            else:
                ordinal = 0
                last_ts = ts
                s = ts // 1000
                if s != sec:
                    sec = s
                    sec_head = head_open + (prefixes.get(s) or _second_prefix(s)).encode()
                ms_close = ms_closes[ts - s * 1000]
            ingested = ev.ingestionTime
            if ingested != last_ingested:
                last_ingested = ingested
                tail = (
                    no_ingested_tail
                    if ingested is None
                    else b'","ingested":"' + iso_ms(ingested).encode() + no_ingested_tail
                )
            event_hex = hexlify(digest(id_key(id_prefix, ts, ordinal)))
            add(join((sec_head, ms_close, ev.message, id_label, event_hex, tail)))
        return lines, last_ts, ordinal

    def _parse_one(self, docs: list[Doc], i: int, ev: LogEvent) -> int:
        """Replace plain line ``docs[i]`` by the parsed document if its message
        is one to parse; returns the change in the byte count.

        The parsed document is written as bytes too: the plain line's head and
        ``event`` part (the time and id it already holds, at fixed offsets),
        the message as orjson writes it, then ``aws`` with the Lambda fields,
        ``cloud``, ``log`` and ``json``: the same bytes as ``orjson.dumps`` of
        the dict document of :meth:`_shape_parsed`. Nothing parsed outlives
        this call.
        """
        message = message_text(ev)
        if message is None or message[:1] not in self._triggers:
            return 0  # an escape that hid nothing to parse: the line stands
        line = docs[i]
        assert isinstance(line, bytes)
        fields, level, obj = self._parse(message)
        token = bytes(ev.message)
        # The message as orjson writes it (the dict document's bytes): the
        # token itself when it holds no other escapes, else encoded again.
        canonical = token.isascii() and _noncanonical(token) is None
        if canonical and fields is None and level is None and obj is None:
            return 0  # nothing to parse and the same bytes: the line stands
        try:
            parts = [
                line[: len(line) - len(self._json_tail)]
                if canonical
                else line[:_HEAD_LEN]
                + _dumps(message)
                + line[_HEAD_LEN + len(token) : len(line) - len(self._json_tail)],
                self._aws_plain if not fields else self._aws_lambda_open + _dumps(fields) + b"}",
                self._cloud_part,
            ]
            if level is not None:
                parts.append(_LEVEL_PARTS.get(level) or b',"log":{"level":' + _dumps(level) + b"}")
            if obj is not None:
                parts += (b',"json":', _dumps(obj))
            parts.append(b"}")
            doc = b"".join(parts)
        except (TypeError, orjson.JSONEncodeError):
            # Not expected (the parsers keep only what orjson writes): keep the
            # dict document, which the sink refuses as poison.
            event = {"id": line[_ID_AT + len(token) : _ID_AT + len(token) + 32].decode()}
            if ev.ingestionTime is not None:
                event["ingested"] = iso_ms(ev.ingestionTime)
            dict_doc, extra = self._shape_parsed(
                line[_STAMP_AT:_STAMP_END].decode(), message, event
            )
            docs[i] = dict_doc
            return self._overhead + len(token) + extra - (len(line) + 1)
        docs[i] = doc
        return len(doc) - len(line)

    def _parse(
        self, message: str
    ) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
        """``(aws.lambda fields, log.level, json)`` of a message starting with a
        trigger, each ``None`` when absent (see :meth:`_shape_parsed`)."""
        fields: dict[str, Any] | None = None
        level: str | None = None
        obj: dict[str, Any] | None = None
        if message[:1] == "{":
            if self._parse_json:
                obj = parse_object(message)
                if obj is not None and self._parse_lambda:
                    line = parse_json(obj)
                    if line is not None:
                        fields, level, _ = line
        elif self._parse_lambda:
            line = parse_text(message)
            if line is not None:
                fields, level, body = line
                # console.log(JSON.stringify(...)) behind the runtime's prefix.
                if self._parse_json and body is not None and body[:1] == "{":
                    obj = parse_object(body)
        return fields or None, level, obj

    def _shape_dicts(
        self, events: Sequence[Mapping[str, Any]], prev_ts: int | None, prev_ord: int
    ) -> tuple[list[Doc], list[int], int | None, int, int]:
        """:meth:`shape` for items as dicts with ``message`` as ``str``."""
        docs: list[Doc] = []
        timestamps: list[int] = []
        add_doc = docs.append
        add_ts = timestamps.append
        id_key = self._id_key
        id_prefix = self._id_prefix
        hexdigest = _hexdigest
        dumps = orjson.dumps
        join = b"".join
        triggers = self._triggers
        overhead = self._overhead
        json_tail = self._json_tail
        no_ingested_tail = b'"}' + json_tail
        nbytes = 0
        last_ts = prev_ts
        ordinal = prev_ord
        stamp_ts: int | None = None
        stamp = ""
        head = b""
        # Events of one PutLogEvents call share their ingestionTime: format it once.
        last_ingested: int | None = None
        ingested_text = ""
        ingested_tail = no_ingested_tail
        for ev in events:
            ts = ev["timestamp"]
            message = ev["message"]
            if ts == last_ts:
                ordinal += 1
            else:
                ordinal = 0
                last_ts = ts
            if ts != stamp_ts:
                stamp_ts = ts
                stamp = iso_ms(ts)  # from the same per-second cache as the hot path
                head = _head(stamp)
            ingested = ev.get("ingestionTime")
            if ingested is None:
                tail = no_ingested_tail
            else:
                if ingested != last_ingested:
                    last_ingested = ingested
                    ingested_text = iso_ms(ingested)
                    ingested_tail = b'","ingested":"' + ingested_text.encode() + b'"}' + json_tail
                tail = ingested_tail
            event_hex = hexdigest(id_key(id_prefix, ts, ordinal))
            if message[:1] not in triggers:
                # The common case, serialized here and only here: the same bytes
                # as orjson.dumps of the dict document, built with one exact-size
                # join (orjson's own result over-allocates, and this is kept
                # until delivered).
                try:
                    text = dumps(message)
                except orjson.JSONEncodeError:  # lone surrogate: the sink refuses it
                    pass
                else:
                    line = join((head, text, _EVENT_ID_KEY, event_hex.encode(), tail))
                    nbytes += len(line) + 1
                    add_doc(line)
                    add_ts(ts)
                    continue
            event = (
                {"id": event_hex}
                if ingested is None
                else {"id": event_hex, "ingested": ingested_text}
            )
            size = len(message) if message.isascii() else len(message.encode("utf-8", "replace"))
            if message[:1] in triggers:
                doc, extra = self._shape_parsed(stamp, message, event)
                nbytes += overhead + size + (size >> 4) + extra
            else:
                doc = {
                    "@timestamp": stamp,
                    "message": message,
                    "event": event,
                    "aws": self._aws,
                    "cloud": self._cloud,
                }
                nbytes += overhead + size + (size >> 4)
            add_doc(doc)
            add_ts(ts)
        return docs, timestamps, last_ts, ordinal, nbytes

    def _shape_parsed(
        self, stamp: str, message: str, event: dict[str, str]
    ) -> tuple[dict[str, Any], int]:
        """The slow path: a message that may be a Lambda line or a JSON object.

        Returns the document and the estimated bytes its parsed fields add.
        """
        fields, level, obj = self._parse(message)
        doc: dict[str, Any] = {
            "@timestamp": stamp,
            "message": message,
            "event": event,
            "aws": {"cloudwatch": self._cloudwatch, "lambda": fields} if fields else self._aws,
            "cloud": self._cloud,
        }
        extra = 0
        if fields:
            extra += 20 + _LAMBDA_FIELD_BYTES * len(fields)
        if level is not None:
            doc["log"] = {"level": level}
            extra += _LEVEL_BYTES
        if obj is not None:
            doc["json"] = obj
            extra += len(message) + 8
        return doc, extra
