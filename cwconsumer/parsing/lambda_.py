"""AWS Lambda log lines -> ``aws.lambda`` fields (pure: no I/O, nothing async).

Two entry points, both total (they never raise on any input) and both
returning ``None`` for a line that is not a recognised Lambda line:

- :func:`parse_text` for text messages:

  =================================================  ==========================
  line                                               ``type`` / fields
  =================================================  ==========================
  ``START RequestId: <id> Version: $LATEST``         ``start``: request_id, version
  ``END RequestId: <id>``                            ``end``: request_id
  ``REPORT RequestId: <id>\\tDuration: 1.2 ms\\t...``  ``report``: request_id, duration_ms,
                                                     billed_duration_ms, memory_size_mb,
                                                     max_memory_used_mb, init_duration_ms,
                                                     restore_duration_ms,
                                                     billed_restore_duration_ms,
                                                     xray_trace_id, xray_segment_id,
                                                     xray_sampled, status, error_type
  ``INIT_START Runtime Version: ...``                ``init_start``: runtime_version,
                                                     runtime_version_arn
  ``INIT_REPORT Init Duration: ... Phase: ...``      ``init_report``: init_duration_ms, phase,
                                                     status, error_type
  ``RESTORE_START`` / ``RESTORE_REPORT``             ``restore_start`` / ``restore_report``
  ``<time> <id> Task timed out after 3.01 seconds``  ``timeout``: request_id, status="timeout",
                                                     timeout_s
  ``<time>\\t<id>\\tLEVEL\\ttext`` (Node.js)          request_id, level, body
  ``[LEVEL]\\t<time>\\t<id>\\ttext`` (Python)         request_id, level, body
  =================================================  ==========================

  The ``Key: value`` parts of platform lines may be separated by tabs, ``\\n``
  or ``\\r`` (the XRAY part can sit on its own line), and unknown keys are
  skipped, so new figures AWS adds do not break parsing.

- :func:`parse_json` for the Lambda JSON log format, given the already parsed
  object: ``platform.*`` records (``platform.start``, ``platform.report`` with
  ``record.metrics``, ``platform.runtimeDone``, ...) give the same fields as
  the text lines with ``type`` in snake case (``runtime_done``); application
  lines ``{"timestamp", "level", "requestId", "message"}`` give request_id and
  the level.

Durations in ms are floats; billed ms, MB and bytes are ints, and a figure
that no signed 64-bit integer holds (``Max Memory Used: 99999999999999999999 MB``)
is left out like any unreadable one: the document keeps it in ``message`` only,
so every document stays encodable. The log level is
returned apart (the ``level`` of :data:`LambdaLine`, shipped as ``log.level``), as
written (``INFO``, ``WARN``, ``WARNING``...). ``body`` is the application's text
after a runtime prefix, so that the caller can parse a JSON object logged by
``console.log(JSON.stringify(...))``.

Cost: :func:`parse_text` looks at the first character before anything else;
a message whose first character is not in :data:`FIRST_CHARS` cannot be a
Lambda line and callers may skip the call altogether.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

__all__ = [
    "FIRST_CHARS",
    "NONCANONICAL_ESCAPE",
    "TOKEN_END",
    "TOKEN_REPORT",
    "TOKEN_RUNTIME",
    "TOKEN_START",
    "LambdaLine",
    "parse_json",
    "parse_text",
    "runtime_key_fields",
]


LambdaLine: TypeAlias = tuple[dict[str, Any], str | None, str | None]
"""What a Lambda line says: ``(fields, level, body)``.

``fields`` go to ``aws.lambda`` (may be empty: a Node.js line logged during
init has a level but no request id); ``level`` goes to ``log.level``; ``body``
is the application text after a runtime prefix, else ``None``. A plain tuple,
not a NamedTuple: building one of those costs more than parsing the line.
"""


_ID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"

# Node.js runtime line, or the platform's timeout line (which uses spaces).
_TIMED_LINE = re.compile(
    rf"{_TIME}(?:"
    rf"\t({_ID}|undefined)\t(?:(INFO|ERROR|WARN|DEBUG|TRACE|FATAL)\t)?"
    rf"| ({_ID}) Task timed out after (\d+(?:\.\d+)?) seconds)"
)
# Python runtime `logging` line; "[ERROR] Runtime.X: ..." (a space, no time) too.
_PYTHON_LINE = re.compile(
    rf"\[(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE)\]"
    rf"(?:\t{_TIME}\t(?:({_ID})|[^\t\r\n]*)\t| )"
)


# --- the commonest lines, read from the message's JSON token ----------------------------
#
# The shaper sees each message first as the JSON string token of the API's
# answer (quotes and escapes included). The commonest Lambda lines are
# recognised there, in C, without decoding the text: each pattern below only
# matches where parse_text gives the result stated, on a token that is exactly
# what orjson writes for its text. TOKEN_START, TOKEN_END and TOKEN_REPORT
# match whole tokens of printable ASCII with no escape but \\t and \\n; after
# TOKEN_RUNTIME's prefix the caller checks that the token is ASCII (valid
# UTF-8) and that NONCANONICAL_ESCAPE finds nothing in the body. Anything
# else takes parse_text. In bytes patterns \d is ASCII, so a line with other
# Unicode digits is left to parse_text too.

_RUNTIME_AFTER_TIME = (
    rb"\\t((?:"
    + _ID.encode()
    + rb"|undefined)\\t(?>(?:(?:INFO|ERROR|WARN|DEBUG|TRACE|FATAL)\\t)?))"
    rb"(?!\{)"
)
TOKEN_RUNTIME = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z' + _RUNTIME_AFTER_TIME)
"""A Node.js runtime line's prefix whose body does not start with ``{`` (that
may be a JSON object: left to parse_text). Its one group is what the document
depends on: ``<request id or undefined>\\t`` and ``<LEVEL>\\t`` when there is
one (:func:`runtime_key_fields` reads it). The level's part is atomic, as
parse_text's is greedy: ``INFO\\t{`` is a level and a JSON body, never a body
``INFO\\t{``."""

RUNTIME_STAMP_END: Final = 25
"""Where the time stamp of a runtime line's token ends when it has
milliseconds, as Node.js writes it: ``"`` and 24 characters."""
RUNTIME_STAMP_FORM: Final = b"0000-00-00T00:00:00.000Z"
"""``token[1:25].translate(DIGITS_TO_ZERO)`` of such a stamp: where this
holds, TOKEN_RUNTIME's time matches exactly those 24 characters, and what it
matches after them depends only on ``token[25:25 + RUNTIME_AFTER_TIME_MAX]``."""
DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
RUNTIME_AFTER_TIME_MAX: Final = 48
"""The most TOKEN_RUNTIME reads after the time: ``\\t``, a request id (36),
``\\t``, a level and ``\\t`` (7), and the one character its look-ahead reads."""
TOKEN_RUNTIME_AFTER_TIME = re.compile(_RUNTIME_AFTER_TIME)
"""TOKEN_RUNTIME after its time stamp: the same group, at the same place
relative to the stamp's end."""


def runtime_key_fields(key: bytes) -> tuple[bytes | None, bytes | None]:
    """The request id (``None`` for ``undefined``) and level (``None`` when
    absent) of :data:`TOKEN_RUNTIME`'s group."""
    request_id, _, rest = key.partition(b"\\t")
    level = rest[:-2] or None  # "INFO\\t" -> "INFO"
    return (None if request_id == b"undefined" else request_id), level


_TOKEN_VALUE = (
    rb"[!#-\[\]-~]{1,256}"  # printable ASCII but quote and backslash: no strip, no escape
)
TOKEN_START = re.compile(
    rb'"START RequestId: (' + _TOKEN_VALUE + rb") Version: (" + _TOKEN_VALUE + rb')(?:\\n)?"\Z'
)
"""``START RequestId: <id> Version: <v>``: groups request id and version
(parse_text: ``{"type": "start", "version": v, "request_id": id}``)."""
TOKEN_END = re.compile(rb'"END RequestId: (' + _TOKEN_VALUE + rb')(?:\\n)?"\Z')
"""``END RequestId: <id>``: group request id (``{"type": "end", "request_id": id}``)."""
_TOKEN_NUM = rb"(\d{1,15}(?:\.\d{1,15})?)"  # a float for sure, and what float() reads of it
_TOKEN_INT = rb"(\d{1,18})"  # an int64 for sure
TOKEN_REPORT = re.compile(
    rb'"REPORT RequestId: (' + _TOKEN_VALUE + rb")\\tDuration: " + _TOKEN_NUM + rb" ms\\t"
    rb"Billed Duration: " + _TOKEN_INT + rb" ms\\tMemory Size: " + _TOKEN_INT + rb" MB\\t"
    rb"Max Memory Used: "
    + _TOKEN_INT
    + rb" MB\\t(?:Init Duration: "
    + _TOKEN_NUM
    + rb' ms\\t)?(?:\\n)?"\Z'
)
"""The commonest ``REPORT`` line (optionally with ``Init Duration``): groups
request id, duration, billed duration, memory size, max memory used, init
duration (``None`` when absent), in parse_text's field order."""


NONCANONICAL_ESCAPE = re.compile(rb'\\[^ntr"\\]')
"""Finds an escape other than ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t`` (conservative:
it may also find an escaped backslash followed by another letter). An ASCII
token where it finds none is byte for byte what orjson writes for its text:
orjson escapes only ``"``, ``\\`` and control characters, these three as
``\\n``, ``\\r``, ``\\t`` (tokens with ``\\b``, ``\\f``, ``\\u....`` or ``\\/`` take the
general path). One search in C: on this machine cheaper than four substring
tests, and ten times cheaper than one pattern also finding bytes outside ASCII."""


def _platform_table(*lines: tuple[str, str, str]) -> dict[str, tuple[tuple[str, int, str], ...]]:
    """(keyword, first key, ``type``) -> by first character: (what the line starts
    with, where its first key starts, ``type``)."""
    table: dict[str, tuple[tuple[str, int, str], ...]] = {}
    for keyword, first_key, kind in lines:
        entry = (f"{keyword} {first_key}: ", len(keyword) + 1, kind)
        table[keyword[0]] = (*table.get(keyword[0], ()), entry)
    return table


# Requiring the first key as well keeps an application's "START processing"
# from passing for a platform line.
_PLATFORM = _platform_table(
    ("START", "RequestId", "start"),
    ("END", "RequestId", "end"),
    ("REPORT", "RequestId", "report"),
    ("INIT_START", "Runtime Version", "init_start"),
    ("INIT_REPORT", "Init Duration", "init_report"),
    ("RESTORE_START", "Runtime Version", "restore_start"),
    ("RESTORE_REPORT", "Restore Duration", "restore_report"),
)
FIRST_CHARS: frozenset[str] = frozenset({*_PLATFORM, "[", *"0123456789"})
"""First characters of every line :func:`parse_text` recognises."""


# How a platform line's value is read.
_STR, _FLOAT, _INT, _BOOL = range(4)
# Integer figures outside int64 are left out: orjson (and Elasticsearch's
# long) cannot hold them, and one such document would be unencodable.
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_KEYS: dict[str, tuple[str, int]] = {
    "RequestId": ("request_id", _STR),
    "Duration": ("duration_ms", _FLOAT),
    "Billed Duration": ("billed_duration_ms", _INT),
    "Memory Size": ("memory_size_mb", _INT),
    "Max Memory Used": ("max_memory_used_mb", _INT),
    "Init Duration": ("init_duration_ms", _FLOAT),
    "Restore Duration": ("restore_duration_ms", _FLOAT),
    "Billed Restore Duration": ("billed_restore_duration_ms", _INT),
    "XRAY TraceId": ("xray_trace_id", _STR),
    "SegmentId": ("xray_segment_id", _STR),
    "Sampled": ("xray_sampled", _BOOL),
    "Status": ("status", _STR),
    "Error Type": ("error_type", _STR),
    "Phase": ("phase", _STR),
    "Runtime Version": ("runtime_version", _STR),
    "Runtime Version ARN": ("runtime_version_arn", _STR),
}


def parse_text(message: str) -> LambdaLine | None:
    """Parse a Lambda text line (see the module docstring); ``None`` if it is not one."""
    first = message[:1]
    keywords = _PLATFORM.get(first)
    if keywords is not None:
        for start, skip, kind in keywords:
            if message.startswith(start):
                return _platform_line(message[skip:], kind)
        return None
    if first == "[":
        m = _PYTHON_LINE.match(message)
        if m is None:
            return None
        request_id = m.group(2)
        return {"request_id": request_id} if request_id else {}, m.group(1), message[m.end() :]
    if "0" <= first <= "9":
        m = _TIMED_LINE.match(message)
        if m is None:
            return None
        request_id, level, timeout_id, seconds = m.groups()
        if timeout_id is not None:
            fields = {
                "type": "timeout",
                "request_id": timeout_id,
                "status": "timeout",
                "timeout_s": float(seconds),
            }
            return fields, None, None
        fields = {} if request_id == "undefined" else {"request_id": request_id}
        return fields, level, message[m.end() :]
    return None


def _platform_line(rest: str, kind: str) -> LambdaLine:
    fields: dict[str, Any] = {"type": kind}
    if "\n" in rest or "\r" in rest:
        rest = rest.replace("\r", "\t").replace("\n", "\t")
    keys = _KEYS
    for part in rest.split("\t"):
        key, sep, value = part.partition(": ")
        if not sep:
            continue
        known = keys.get(key) or keys.get(key.strip())
        if known is None:
            continue
        name, how = known
        if how == _STR:
            if name == "request_id":
                # START puts the version after a space: "RequestId: <id> Version: $LATEST".
                value, sep, version = value.partition(" Version: ")
                if sep:
                    fields["version"] = version.strip()
            fields[name] = value.strip()
        elif how == _BOOL:
            fields[name] = value.strip().lower() == "true"
        else:
            number = value.strip().partition(" ")[0]  # "584.64 ms" -> "584.64"
            try:
                figure = float(number) if how == _FLOAT else int(number)
            except ValueError:
                continue  # a figure we cannot read is left out, never fatal
            if how == _INT and not _INT64_MIN <= figure <= _INT64_MAX:
                continue  # nor one no 64-bit integer holds (the message keeps its text)
            fields[name] = figure
    return fields, None, None


# --- JSON log format -------------------------------------------------------------------

_JSON_TYPES: dict[str, str] = {
    "platform.initStart": "init_start",
    "platform.initRuntimeDone": "init_runtime_done",
    "platform.initReport": "init_report",
    "platform.start": "start",
    "platform.runtimeDone": "runtime_done",
    "platform.report": "report",
    "platform.restoreStart": "restore_start",
    "platform.restoreRuntimeDone": "restore_runtime_done",
    "platform.restoreReport": "restore_report",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")

_RECORD_TEXT: dict[str, str] = {
    "requestId": "request_id",
    "version": "version",
    "status": "status",
    "errorType": "error_type",
    "phase": "phase",
    "initializationType": "initialization_type",
    "runtimeVersion": "runtime_version",
    "runtimeVersionArn": "runtime_version_arn",
}
_METRIC_FLOAT: dict[str, str] = {
    "durationMs": "duration_ms",
    "initDurationMs": "init_duration_ms",
    "restoreDurationMs": "restore_duration_ms",
}
_METRIC_INT: dict[str, str] = {
    "billedDurationMs": "billed_duration_ms",
    "memorySizeMB": "memory_size_mb",
    "maxMemoryUsedMB": "max_memory_used_mb",
    "billedRestoreDurationMs": "billed_restore_duration_ms",
    "producedBytes": "produced_bytes",
}


def parse_json(obj: Mapping[str, Any]) -> LambdaLine | None:
    """Read a parsed Lambda JSON-format line; ``None`` if it is not one.

    Values of the wrong type are left out, so any JSON object is safe to pass.
    """
    kind = obj.get("type")
    if type(kind) is str and kind.startswith("platform."):
        fields: dict[str, Any] = {"type": _json_type(kind)}
        record = obj.get("record")
        if type(record) is dict:
            _read_record(record, fields)
        return fields, None, None
    request_id = obj.get("requestId")
    level = obj.get("level")
    has_id = type(request_id) is str and request_id != ""
    if type(level) is not str:
        level = None
    if not has_id and level is None:
        return None
    return ({"request_id": request_id} if has_id else {}), level, None


def _json_type(kind: str) -> str:
    known = _JSON_TYPES.get(kind)
    if known is not None:
        return known
    return _CAMEL.sub(r"_\1", kind[len("platform.") :]).lower()


def _read_record(record: dict[str, Any], fields: dict[str, Any]) -> None:
    for key, name in _RECORD_TEXT.items():
        value = record.get(key)
        if type(value) is str:
            fields[name] = value
    metrics = record.get("metrics")
    if type(metrics) is dict:
        for key, name in _METRIC_FLOAT.items():
            value = metrics.get(key)
            if type(value) is float or type(value) is int:
                fields[name] = float(value)
        for key, name in _METRIC_INT.items():
            value = metrics.get(key)
            if (type(value) is int or (type(value) is float and value.is_integer())) and (
                _INT64_MIN <= value <= _INT64_MAX
            ):
                fields[name] = int(value)
    tracing = record.get("tracing")
    if type(tracing) is dict:
        value = tracing.get("value")
        if type(value) is str:
            _read_trace_header(value, fields)


def _read_trace_header(header: str, fields: dict[str, Any]) -> None:
    """``Root=1-...;Parent=...;Sampled=1`` (the X-Amzn-Trace-Id header) -> xray_* fields."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            fields["xray_trace_id"] = value
        elif key == "Parent":
            fields["xray_segment_id"] = value
        elif key == "Sampled":
            fields["xray_sampled"] = value == "1"
