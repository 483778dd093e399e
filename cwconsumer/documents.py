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
from the token itself while the lines are written (:meth:`LineWriter._lambda_lines`).
Items given as dicts with ``message`` as ``str`` (tests, tools) get the same
documents from :meth:`Shaper._shape_dicts` (parsed ones as dicts there), where
each plain message is encoded by orjson.

READ-ONLY DOCUMENTS. A dict document shares the stream's ``cloud`` dict, and
unless Lambda fields were found its ``aws`` dict, with every other document of
the stream. Documents are meant to be serialized, never changed: code that
needs a different document must build a new one (``{**doc, "aws": {...}}``).

``event.id`` is ``xxh3_128`` over account, Region, group, stream, timestamp and the event's
ordinal among the stream's events of the same millisecond (see
:func:`cwconsumer.eventid.event_id`). It is a stored contract: sinks that upsert by id
(Elasticsearch ``_id``) rely on it being the same on every delivery, so its
encoding must never change.

Modules: this one holds the :class:`Shaper` (its parse path and its path for
dicts); the lines of unparsed and recognised Lambda events are written by its
base, :class:`cwconsumer.lines.LineWriter`; ``event.id`` is
:mod:`cwconsumer.eventid`, the time stamps :mod:`cwconsumer.isotime`, the
parsers :mod:`cwconsumer.parsing`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any, Final, cast

import orjson
import xxhash

from cwconsumer.eventid import event_id
from cwconsumer.isotime import iso_ms
from cwconsumer.lines import (
    EVENT_ID_KEY,
    HEAD_LEN,
    ID_AT,
    LEVEL_PARTS,
    STAMP_AT,
    STAMP_END,
    LineWriter,
    first_message_byte,
)
from cwconsumer.lines import head as line_head
from cwconsumer.model import Doc, LogEvent, message_text
from cwconsumer.parsing.jsonmsg import parse_object
from cwconsumer.parsing.lambda_ import (
    FIRST_CHARS,
    NONCANONICAL_ESCAPE,
    parse_json,
    parse_text,
)

# event_id and iso_ms are also importable from here, where they used to live.
__all__ = ["PARSE_MODES", "Shaper", "event_id", "iso_ms"]

PARSE_MODES: Final = ("auto", "none", "lambda", "json")
"""Values of ``CWC_PARSE``: ``auto`` parses Lambda lines in ``/aws/lambda/`` groups
and JSON objects everywhere; ``lambda`` parses Lambda lines in every group, and
JSON objects; ``json`` only JSON objects; ``none`` nothing."""


def _is_lambda_group(group: str) -> bool:
    return group.startswith("/aws/lambda/") or ":log-group:/aws/lambda/" in group


_get_timestamp: Final = attrgetter("timestamp")
_hexdigest = xxhash.xxh3_128_hexdigest
_dumps: Final = orjson.dumps
_noncanonical: Final = NONCANONICAL_ESCAPE.search
_LAMBDA_FIELD_BYTES: Final = 40  # rough serialized size of one aws.lambda field
_LEVEL_BYTES: Final = 32  # ',"log":{"level":"WARNING"}'


class Shaper(LineWriter):
    """Shapes the events of one stream into documents.

    A Shaper holds no per-call state: the ordinal of the previous event is
    passed in and handed back, so one Shaper may serve a stream for its whole
    life, page after page. See the module docstring: the documents it returns
    share sub-dicts and must never be changed in place.
    """

    __slots__ = (
        "_flagged",
        "_overhead",
        "_parse_json",
        "_parse_lambda",
        "_triggers",
        "parse_mode",
    )

    def __init__(
        self, group: str, stream: str, region: str, parse_mode: str, *, account: str = ""
    ) -> None:
        if parse_mode not in PARSE_MODES:
            raise ValueError(f"parse_mode must be one of {', '.join(PARSE_MODES)}: {parse_mode!r}")
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
        super().__init__(
            group, stream, region, account, frozenset(b"\\" + "".join(triggers).encode())
        )
        template = {
            "@timestamp": iso_ms(0),
            "message": "\n",
            "event": {"id": "0" * 32, "ingested": iso_ms(0)},
            "aws": self._aws,
            "cloud": self._cloud,
        }
        # Serialized size of everything but the message text (+1 for a sink's separator).
        self._overhead = len(orjson.dumps(template)) - 4 + 1

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
            firsts = bytes(map(first_message_byte, docs))
            for match in flagged.finditer(firsts):
                nbytes += self._parse_one(docs, match.start(), events[match.start()])
        return docs, list(map(_get_timestamp, events)), last_ts, ordinal, nbytes

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
                else line[:HEAD_LEN]
                + _dumps(message)
                + line[HEAD_LEN + len(token) : len(line) - len(self._json_tail)],
                self._aws_plain if not fields else self._aws_lambda_open + _dumps(fields) + b"}",
                self._cloud_part,
            ]
            if level is not None:
                parts.append(LEVEL_PARTS.get(level) or b',"log":{"level":' + _dumps(level) + b"}")
            if obj is not None:
                parts += (b',"json":', _dumps(obj))
            parts.append(b"}")
            doc = b"".join(parts)
        except (TypeError, orjson.JSONEncodeError):
            # Not expected (the parsers keep only what orjson writes): keep the
            # dict document, which the sink refuses as poison.
            event = {"id": line[ID_AT + len(token) : ID_AT + len(token) + 32].decode()}
            if ev.ingestionTime is not None:
                event["ingested"] = iso_ms(ev.ingestionTime)
            dict_doc, extra = self._shape_parsed(line[STAMP_AT:STAMP_END].decode(), message, event)
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
                head = line_head(stamp)
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
                    line = join((head, text, EVENT_ID_KEY, event_hex.encode(), tail))
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
