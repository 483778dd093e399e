"""Documents -> OTLP ``ExportLogsServiceRequest`` (pure: no I/O, nothing async).

The messages come from the ``opentelemetry-proto`` package (protobuf); this
module only maps the shipped documents onto them, following the OpenTelemetry
semantic conventions for AWS and FaaS:

- one ``ResourceLogs`` per log group (and account and Region), resource
  attributes ``cloud.provider=aws``, ``cloud.region``, ``cloud.account.id``
  (when known), ``aws.log.group.names`` and ``aws.log.group.arns`` (when the
  account is known), and for ``/aws/lambda/<name>`` groups ``faas.name``;
- one ``ScopeLogs`` (scope ``cwconsumer``) holding the group's records in
  batch order (so each stream's order is kept);
- per ``LogRecord``: ``time_unix_nano`` (the event's time),
  ``observed_time_unix_nano`` (its CloudWatch ingestion time), ``body`` = the
  original message, unchanged, as a string; attributes
  ``aws.log.stream.names`` (and ``faas.instance`` for Lambda groups: the
  stream names the function instance), ``log.record.uid`` = ``event.id``,
  the parsed Lambda fields as ``aws.lambda.<field>`` (typed) plus
  ``faas.invocation_id`` for the request id, and a JSON message's object as
  the ``json`` attribute (a key/value list); ``severity_text`` /
  ``severity_number`` from a parsed level; ``trace_id`` / ``span_id`` from
  a Lambda line's X-Ray trace and segment ids.

JSON encoding (``CWC_OTLP_ENCODING=json``) is protobuf's own ``json_format``
with ``use_integers_for_enums`` (lowerCamelCase keys and 64-bit integers as
decimal strings are its defaults). One thing ``json_format`` cannot do is
the OTLP exception for ``traceId`` / ``spanId``, which OTLP/JSON writes as
hex where protobuf's canonical JSON writes base64: those two keys are
rewritten afterwards on each record (the only ``bytes`` fields in a logs
request).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from cwconsumer import __version__
from cwconsumer.arns import GroupArn, parse_group_arn
from cwconsumer.model import OutBatch, doc_fields

PROTOBUF_CONTENT_TYPE: Final = "application/x-protobuf"
JSON_CONTENT_TYPE: Final = "application/json"
ENCODINGS: Final = ("protobuf", "json")

_LAMBDA_PREFIX: Final = "/aws/lambda/"
_INT64_MAX: Final = 2**63 - 1
_MAX_DEPTH: Final = 32
_HEX_ID: Final = re.compile(r"[0-9a-f]{32}")
_XRAY_TRACE: Final = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_SPAN: Final = re.compile(r"[0-9a-fA-F]{16}")

# Severity numbers of the OpenTelemetry log data model (the first of each range).
_SEVERITY: Final = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "NOTICE": 10,
    "WARN": 13,
    "WARNING": 13,
    "ERROR": 17,
    "ERR": 17,
    "CRITICAL": 21,
    "FATAL": 21,
    "EMERGENCY": 21,
    "ALERT": 21,
}


def severity_number(level: str) -> int:
    """The OTel severity number of a level as written (0: unspecified)."""
    return _SEVERITY.get(level.strip().upper(), 0)


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def group_identity(group: str, region: str, account: str) -> tuple[str, str, str, str]:
    """``(name, region, account, arn)`` of a document's ``log_group`` (a name or
    an ARN); the ARN is ``""`` when the account is unknown."""
    arn = parse_group_arn(group) if group.startswith("arn:") else None
    if arn is not None:
        return arn.name, arn.region, arn.account, str(arn)
    if account and region:
        return group, region, account, str(GroupArn(partition_of(region), region, account, group))
    return group, region, account, ""


def any_value(value: Any, depth: int = 0) -> AnyValue:
    """A JSON value as an OTLP ``AnyValue`` (ints beyond 64 bits become strings)."""
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if -_INT64_MAX - 1 <= value <= _INT64_MAX:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if depth >= _MAX_DEPTH:
        return AnyValue(string_value=orjson.dumps(value).decode())
    if isinstance(value, dict):
        return AnyValue(
            kvlist_value=KeyValueList(
                values=[
                    KeyValue(key=str(k), value=any_value(v, depth + 1)) for k, v in value.items()
                ]
            )
        )
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v, depth + 1) for v in value]))
    return AnyValue()  # null


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _kv_list(key: str, value: str) -> KeyValue:
    """A string-array attribute of one element (``aws.log.*.names`` are arrays)."""
    return KeyValue(
        key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=value)]))
    )


class _NanoClock:
    """ISO-8601 ``event.ingested`` -> Unix ns, cached (events of one PutLogEvents
    call share their ingestion time)."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def __call__(self, text: Any) -> int:
        if not isinstance(text, str):
            return 0
        ns = self._cache.get(text)
        if ns is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            try:
                when = datetime.fromisoformat(text)
                ns = (round(when.timestamp() * 1000)) * 1_000_000
            except ValueError:
                ns = 0
            self._cache[text] = ns
        return ns


def _resource(name: str, region: str, account: str, arn: str) -> Resource:
    attrs = [_kv("cloud.provider", "aws")]
    if region:
        attrs.append(_kv("cloud.region", region))
    if account:
        attrs.append(_kv("cloud.account.id", account))
    attrs.append(_kv_list("aws.log.group.names", name))
    if arn:
        attrs.append(_kv_list("aws.log.group.arns", arn))
    if name.startswith(_LAMBDA_PREFIX) and len(name) > len(_LAMBDA_PREFIX):
        attrs.append(_kv("faas.name", name[len(_LAMBDA_PREFIX) :]))
    return Resource(attributes=attrs)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _fill(
    record: LogRecord,
    doc: dict[str, Any],
    ts_ms: int,
    stream_attrs: list[KeyValue],
    clock: _NanoClock,
) -> None:
    """Write ``doc`` into ``record`` (in place: appending a built message copies it)."""
    aws = _obj(doc.get("aws"))
    event = _obj(doc.get("event"))
    record.time_unix_nano = ts_ms * 1_000_000
    record.observed_time_unix_nano = clock(event.get("ingested"))
    record.body.string_value = str(doc.get("message", ""))
    attributes = record.attributes
    attributes.extend(stream_attrs)
    uid = event.get("id")
    if isinstance(uid, str):
        attributes.add(key="log.record.uid").value.string_value = uid
    fields = aws.get("lambda")
    if isinstance(fields, dict):
        for key, value in fields.items():
            attributes.add(key=f"aws.lambda.{key}", value=any_value(value))
        request_id = fields.get("request_id")
        if isinstance(request_id, str):
            attributes.add(key="faas.invocation_id").value.string_value = request_id
        trace = fields.get("xray_trace_id")
        if isinstance(trace, str):
            m = _XRAY_TRACE.fullmatch(trace)
            if m is not None:
                record.trace_id = bytes.fromhex(m.group(1) + m.group(2))
                segment = fields.get("xray_segment_id")
                if isinstance(segment, str) and _SPAN.fullmatch(segment):
                    record.span_id = bytes.fromhex(segment)
    log = doc.get("log")
    level = log.get("level") if isinstance(log, dict) else None
    if isinstance(level, str) and level:
        record.severity_text = level
        record.severity_number = severity_number(level)  # type: ignore[assignment]
    obj = doc.get("json")
    if isinstance(obj, dict):
        attributes.add(key="json", value=any_value(obj))


def _stream_attrs(stream: Any, lambda_group: bool) -> list[KeyValue]:
    if not isinstance(stream, str):
        return []
    attrs = [_kv_list("aws.log.stream.names", stream)]
    if lambda_group:
        attrs.append(_kv("faas.instance", stream))
    return attrs


def build_request(batch: OutBatch) -> tuple[ExportLogsServiceRequest, dict[int, str], list[str]]:
    """The request for ``batch``, ``{index: reason}`` for documents that cannot
    be encoded, and each document's ``event.id``. When any document cannot be
    encoded, the request is incomplete and must not be sent."""
    clock = _NanoClock()
    bad: dict[int, str] = {}
    uids: list[str] = []
    by_resource: dict[tuple[str, str, str], tuple[ScopeLogs, bool]] = {}
    by_stream: dict[tuple[str, str, str, Any], list[KeyValue]] = {}
    request = ExportLogsServiceRequest()
    scope = InstrumentationScope(name="cwconsumer", version=__version__)
    stamps = batch.timestamps_ms
    for i, raw in enumerate(batch.docs):
        try:
            doc = doc_fields(raw)
            cw = _obj(_obj(doc.get("aws")).get("cloudwatch"))
            cloud = _obj(doc.get("cloud"))
            group = str(cw.get("log_group", "unknown"))
            account_obj = cloud.get("account")
            account = str(account_obj.get("id", "")) if isinstance(account_obj, dict) else ""
            region = str(cloud.get("region", ""))
            key = (group, region, account)
            known = by_resource.get(key)
            if known is None:
                name, region, account, arn = group_identity(group, region, account)
                resource_logs: ResourceLogs = request.resource_logs.add()
                resource_logs.resource.CopyFrom(_resource(name, region, account, arn))
                scope_logs = resource_logs.scope_logs.add()
                scope_logs.scope.CopyFrom(scope)
                known = by_resource[key] = (scope_logs, name.startswith(_LAMBDA_PREFIX))
            scope_logs, lambda_group = known
            stream = cw.get("log_stream")
            stream_key = (*key, stream)
            attrs = by_stream.get(stream_key)
            if attrs is None:
                attrs = by_stream[stream_key] = _stream_attrs(stream, lambda_group)
            _fill(scope_logs.log_records.add(), doc, stamps[i], attrs, clock)
            uid = _obj(doc.get("event")).get("id", "")
            uids.append(uid if isinstance(uid, str) else "")
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
            # A lone surrogate (protobuf strings must be UTF-8), a malformed document.
            bad[i] = f"document cannot be encoded as OTLP: {type(exc).__name__}: {exc}"[:300]
            uids.append("")
    return request, bad, uids


def _hex_ids(node: Any) -> None:
    """OTLP/JSON: ``traceId`` / ``spanId`` as hex, not protobuf JSON's base64."""
    for resource_logs in node.get("resourceLogs", ()):
        for scope_logs in resource_logs.get("scopeLogs", ()):
            for record in scope_logs.get("logRecords", ()):
                for key in ("traceId", "spanId"):
                    value = record.get(key)
                    if value:
                        record[key] = base64.b64decode(value).hex()


def encode(batch: OutBatch, encoding: str) -> tuple[bytes, dict[int, str], list[str]]:
    """The request body in ``encoding`` (``protobuf`` or ``json``), the documents
    that cannot be encoded, and each document's ``event.id``."""
    request, bad, uids = build_request(batch)
    if bad:
        return b"", bad, uids
    if encoding == "json":
        as_dict = json_format.MessageToDict(request, use_integers_for_enums=True)
        _hex_ids(as_dict)
        return orjson.dumps(as_dict), bad, uids
    return request.SerializeToString(), bad, uids


def decode_response(body: bytes, content_type: str) -> tuple[int, str] | None:
    """``(rejected_log_records, error_message)`` of an ``ExportLogsServiceResponse``
    (protobuf or JSON, by ``content_type``); None when the body is not one."""
    if not body:
        return 0, ""
    response = ExportLogsServiceResponse()
    try:
        if "json" in content_type.lower():
            json_format.Parse(body, response, ignore_unknown_fields=True)
        else:
            response.ParseFromString(body)
    except (json_format.ParseError, DecodeError, ValueError, TypeError):
        # DecodeError is not a ValueError: a proxy's "ok" or an HTML page
        # answering 200 raised it, and the lane stopped the process.
        return None
    partial = response.partial_success
    return int(partial.rejected_log_records), str(partial.error_message)


def identified(error_message: str, uids: Sequence[str]) -> list[int]:
    """Indexes of the records whose ``log.record.uid`` the receiver named in its
    ``error_message`` (receivers that say which records they refused)."""
    named = set(_HEX_ID.findall(error_message.lower()))
    if not named:
        return []
    return [i for i, uid in enumerate(uids) if uid and uid in named]
