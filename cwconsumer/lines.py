"""Documents of events read from the API, written as JSON lines (pure: no I/O).

The hot path of :class:`cwconsumer.documents.Shaper` (see that module for the
document itself). Every event of a page is written as one line, ``bytes``::

    {"@timestamp":"<stamp>","message":<token>,"event":{"id":"<hex>"[,"ingested":"<stamp>"]},
     "aws":{"cloudwatch":{...}},"cloud":{...}}

with the message's JSON token copied as the API sent it (valid JSON for the
same text, whatever escapes AWS chose: never decoded, never encoded again).
The time stamp is always 24 characters, so a line's parts sit at fixed
offsets (:data:`STAMP_AT`, :data:`HEAD_LEN`, :data:`ID_AT`) where the parse
path reads them back. In a stream whose Lambda lines are parsed, the
commonest ones (runtime lines, START, END, the usual REPORT) are recognised
from their token, in C, while the lines are written
(:meth:`LineWriter._lambda_lines`): the same line with another tail.

:class:`LineWriter` holds what every document of one stream shares, serialized
once: the ``event.id`` key's prefix, the ``aws`` and ``cloud`` parts.
"""

from __future__ import annotations

import binascii
import re
import struct
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, Final

import orjson
import xxhash

from cwconsumer.eventid import id_prefix as _id_prefix
from cwconsumer.isotime import MS_SUFFIX, SECOND_PREFIXES, iso_ms, second_prefix
from cwconsumer.model import Doc, LogEvent
from cwconsumer.parsing.lambda_ import (
    DIGITS_TO_ZERO,
    NONCANONICAL_ESCAPE,
    RUNTIME_AFTER_TIME_MAX,
    RUNTIME_STAMP_END,
    RUNTIME_STAMP_FORM,
    TOKEN_END,
    TOKEN_REPORT,
    TOKEN_RUNTIME,
    TOKEN_RUNTIME_AFTER_TIME,
    TOKEN_START,
    runtime_key_fields,
)

__all__ = [
    "EVENT_ID_KEY",
    "HEAD_LEN",
    "ID_AT",
    "LEVEL_PARTS",
    "STAMP_AT",
    "STAMP_END",
    "LineWriter",
    "first_message_byte",
    "head",
]

EVENT_ID_KEY: Final = b',"event":{"id":"'
_digest = xxhash.xxh3_128_digest
_hexlify = binascii.hexlify  # of the digest: the same 32 characters as the hexdigest, as bytes
_dumps: Final = orjson.dumps

# A line is HEAD_OPEN, the time stamp, HEAD_CLOSE, the message...: the
# offsets below are what the parse path (Shaper._shape_raw) reads at.
HEAD_OPEN: Final = b'{"@timestamp":"'
HEAD_CLOSE: Final = b'","message":'
STAMP_AT: Final = len(HEAD_OPEN)
STAMP_END: Final = STAMP_AT + len(iso_ms(0))  # always 24 characters: years 0001-9999
HEAD_LEN: Final = STAMP_END + len(HEAD_CLOSE)
MS_CLOSE: Final = tuple(suffix.encode() + HEAD_CLOSE for suffix in MS_SUFFIX)
"""A line's head after the stamp's second, by millisecond: ``b'123Z","message":'``."""
ID_AT: Final = HEAD_LEN + len(EVENT_ID_KEY)
"""Of a plain line: where its ``event.id`` starts, after the message token."""
first_message_byte: Final = itemgetter(HEAD_LEN + 1)
"""Of a plain line: the first byte of the message's JSON string, after its quote."""


def head(stamp: str) -> bytes:
    """A plain line up to its message: always :data:`HEAD_LEN` bytes."""
    return HEAD_OPEN + stamp.encode() + HEAD_CLOSE


LEVEL_PARTS: Final = {
    level: b',"log":{"level":' + orjson.dumps(level) + b"}"
    for level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL")
}
"""The ``log`` part of a document for the levels Lambda's runtimes write."""
_RUNTIME_TAILS_MAX: Final = 16
"""Entries of a stream's runtime-line caches (tails by request id and level,
heads): an environment runs one invocation at a time, and its lines share
them; a long-lived stream must not keep one per invocation (at 256 entries a
Shaper grew to ~85 KB)."""


class LineWriter:
    """What every document of one stream shares, serialized once, and the
    loops writing its events' lines (base of :class:`cwconsumer.documents.Shaper`).

    ``flagged`` holds the first bytes of a message token that call for a
    look at its text (a parse trigger, or an escape that may hide one).
    """

    __slots__ = (
        "_aws",
        "_aws_lambda_open",
        "_aws_plain",
        "_cloud",
        "_cloud_part",
        "_cloudwatch",
        "_flagged_bytes",
        "_id_key",
        "_id_prefix",
        "_json_tail",
        "_runtime_heads",
        "_runtime_tails",
        "account",
        "group",
        "region",
        "stream",
    )

    def __init__(
        self, group: str, stream: str, region: str, account: str, flagged: frozenset[int]
    ) -> None:
        self.group = group
        self.stream = stream
        self.region = region
        self.account = account
        self._flagged_bytes = flagged
        self._id_prefix = _id_prefix(group, stream, account, region)
        # The whole hashed key in one call: prefix, ts and ordinal (event_id).
        self._id_key = struct.Struct(f">{len(self._id_prefix)}sqq").pack
        # Shared by every dict document of this stream: never mutate
        # (cwconsumer.documents, "READ-ONLY DOCUMENTS").
        self._cloudwatch = {"log_group": group, "log_stream": stream}
        self._aws = {"cloudwatch": self._cloudwatch}
        self._cloud: dict[str, Any] = {"provider": "aws", "region": region}
        if account:
            self._cloud["account"] = {"id": account}
        # What follows "event" in a document, serialized once: in every
        # unparsed one, _json_tail; in a parsed one, its parts.
        self._aws_plain = b',"aws":' + orjson.dumps(self._aws)
        self._aws_lambda_open = (
            b',"aws":{"cloudwatch":' + orjson.dumps(self._cloudwatch) + b',"lambda":'
        )
        self._cloud_part = b',"cloud":' + orjson.dumps(self._cloud)
        self._json_tail = self._aws_plain + self._cloud_part + b"}"
        self._runtime_tails: dict[bytes, bytes] = {}
        self._runtime_heads: dict[bytes, tuple[bytes | None, int]] = {}

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
        lines that may need parsing (for :meth:`cwconsumer.documents.Shaper._parse_one`).
        """
        lines: list[Doc] = []
        add = lines.append
        slow: list[int] = []
        id_key = self._id_key
        id_prefix = self._id_prefix
        digest = _digest
        hexlify = _hexlify
        join = b"".join
        prefixes = SECOND_PREFIXES
        ms_closes = MS_CLOSE
        id_label = EVENT_ID_KEY
        head_open = HEAD_OPEN
        json_tail = self._json_tail
        flagged = self._flagged_bytes
        noncanonical = NONCANONICAL_ESCAPE.search
        heads = self._runtime_heads
        stamp_end = RUNTIME_STAMP_END
        after_end = RUNTIME_STAMP_END + RUNTIME_AFTER_TIME_MAX
        stamp_form = RUNTIME_STAMP_FORM
        zero_digits = DIGITS_TO_ZERO
        start = TOKEN_START.match
        end = TOKEN_END.match
        report = TOKEN_REPORT.match
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
            sec_head = head_open + second_prefix(sec).encode()
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
                    sec_head = head_open + (prefixes.get(s) or second_prefix(s)).encode()
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
                    # Its usual time stamp (milliseconds): what follows it is
                    # looked up, TOKEN_RUNTIME ran once per distinct head.
                    if token[1:stamp_end].translate(zero_digits) == stamp_form:
                        after = token[stamp_end:after_end]
                        found = heads.get(after) or self._runtime_head(after)
                    else:
                        found = self._runtime_match(token)
                    rt_tail, rt_end = found
                    if (
                        rt_tail is not None
                        and token.isascii()
                        and noncanonical(token, rt_end) is None
                    ):
                        tail = rt_tail
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
        """``aws.lambda`` of a REPORT line matched by ``TOKEN_REPORT``, as JSON:
        the bytes ``orjson.dumps`` writes for the dict of ``parse_text``, written
        directly. The request id is printable ASCII without quote or backslash
        (no escapes), the integers are 1-18 digits (an int64 written without its
        leading zeros), the durations go through ``float`` as parse_text's do."""
        rid, duration, billed, size, used, init = m.groups()
        parts = [
            b'{"type":"report","request_id":"',
            rid,
            b'","duration_ms":',
            _dumps(float(duration)),
            b',"billed_duration_ms":',
            billed.lstrip(b"0") or b"0",
            b',"memory_size_mb":',
            size.lstrip(b"0") or b"0",
            b',"max_memory_used_mb":',
            used.lstrip(b"0") or b"0",
        ]
        if init is not None:
            parts += (b',"init_duration_ms":', _dumps(float(init)))
        parts.append(b"}")
        return b"".join(parts)

    def _runtime_head(self, after: bytes) -> tuple[bytes | None, int]:
        """TOKEN_RUNTIME's answer for a token whose time stamp has
        milliseconds and is followed by ``after`` (its next
        RUNTIME_AFTER_TIME_MAX bytes, which decide it): the document's tail
        (``None`` when it does not match) and where the match ends in the
        token. Cached per stream: an invocation's lines share their heads."""
        m = TOKEN_RUNTIME_AFTER_TIME.match(after)
        found = (None, 0) if m is None else (self._runtime_tail(m[1]), RUNTIME_STAMP_END + m.end())
        heads = self._runtime_heads
        if len(heads) >= _RUNTIME_TAILS_MAX:
            heads.clear()
        heads[after] = found
        return found

    def _runtime_match(self, token: bytes) -> tuple[bytes | None, int]:
        """TOKEN_RUNTIME's answer for any other token, as :meth:`_runtime_head`'s."""
        m = TOKEN_RUNTIME.match(token)
        if m is None:
            return None, 0
        return self._runtime_tail(m[1]), m.end()

    def _runtime_tail(self, key: bytes) -> bytes:
        """What follows ``event`` in the document of a runtime line with this
        request id and level (``TOKEN_RUNTIME``'s group; cached per stream: an
        invocation's lines share them)."""
        tails = self._runtime_tails
        cached = tails.get(key)
        if cached is not None:
            return cached
        request_id, level = runtime_key_fields(key)
        tail = (
            self._aws_plain
            if request_id is None
            else self._aws_lambda_open + b'{"request_id":"' + request_id + b'"}}'
        )
        tail += self._cloud_part
        if level is not None:
            tail += LEVEL_PARTS[level.decode()]
        tail += b"}"
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
        prefixes = SECOND_PREFIXES
        ms_closes = MS_CLOSE
        no_ingested_tail = b'"}' + self._json_tail
        id_label = EVENT_ID_KEY
        head_open = HEAD_OPEN
        last_ts = prev_ts
        ordinal = prev_ord
        # A line's head is two parts: HEAD_OPEN and the stamp up to its second
        # (one per second), then the milliseconds and _HEAD_CLOSE (a table).
        # Set here for last_ts, so that an event of the previous page's last
        # millisecond (ordinal > 0 at once) has them.
        sec: int | None = None
        sec_head = ms_close = b""
        if prev_ts is not None:
            sec = prev_ts // 1000
            sec_head = head_open + second_prefix(sec).encode()
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
                    sec_head = head_open + (prefixes.get(s) or second_prefix(s)).encode()
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
