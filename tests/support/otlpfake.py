"""An OTLP/HTTP logs receiver for tests: a real aiohttp server (the common
:class:`~tests.support.fakesinks.FakeServer` machinery: thread, faults,
auth, gzip) that decodes every request with ``opentelemetry-proto``, in
either encoding, the way an OpenTelemetry Collector does:

- ``application/x-protobuf``: ``ExportLogsServiceRequest.ParseFromString``;
- ``application/json``: the OTLP JSON mapping, read with protobuf's
  ``json_format`` after turning the hex ``traceId`` / ``spanId`` back into
  base64 (the one place OTLP/JSON differs from protobuf's canonical JSON);
  a JSON body that uses snake_case keys or enum names is refused with 400,
  as OTLP/JSON requires lowerCamelCase and integer enums.

Every accepted record is kept as a flat :class:`Received` (resource
attributes, attributes, body, times, ids). ``refuse_marker``: a request
holding a record whose body contains it answers 400 (bisected by the
product); ``partial_reject``: records whose body contains it are rejected
in a ``partial_success`` answer naming their ``log.record.uid`` when
``name_rejected`` is true, else only counted. Answers use the request's
encoding.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.fakesinks import BODY, FakeServer

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def plain(value: AnyValue) -> Any:
    """An ``AnyValue`` as plain Python."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return value.bytes_value
    return getattr(value, kind)


@dataclass(frozen=True)
class Received:
    resource: dict[str, Any]
    scope: str
    attributes: dict[str, Any]
    body: Any
    time_unix_nano: int
    observed_time_unix_nano: int
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    encoding: str

    @property
    def uid(self) -> str:
        return str(self.attributes.get("log.record.uid", ""))


def _ids_to_base64(data: Any) -> None:
    for resource_logs in data.get("resourceLogs", ()):
        for scope_logs in resource_logs.get("scopeLogs", ()):
            for record in scope_logs.get("logRecords", ()):
                for key in ("traceId", "spanId"):
                    if record.get(key):
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode()


def _strict_json(data: Any) -> None:
    """OTLP/JSON: lowerCamelCase keys only, enums as integers."""
    text = json.dumps(data)
    for snake in (
        "resource_logs",
        "scope_logs",
        "log_records",
        "time_unix_nano",
        "severity_number",
    ):
        if f'"{snake}"' in text:
            raise ValueError(f"snake_case key {snake!r}: OTLP/JSON uses lowerCamelCase")
    if '"SEVERITY_NUMBER_' in text:
        raise ValueError("enum given by name: OTLP/JSON uses integers")


def decode_request(body: bytes, content_type: str) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    if content_type == JSON:
        data = json.loads(body or b"{}")
        _strict_json(data)
        _ids_to_base64(data)
        json_format.ParseDict(data, request)
    else:
        request.ParseFromString(body)
    return request


class OtlpFake(FakeServer):
    """``POST /v1/logs`` (and any other path: the product may be given one)."""

    def __init__(
        self,
        *,
        refuse_marker: str | None = None,
        partial_reject: str | None = None,
        name_rejected: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.refuse_marker = refuse_marker
        self.partial_reject = partial_reject
        self.name_rejected = name_rejected
        self.records: list[Received] = []
        self.rejected: list[Received] = []

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.records)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._export)

    async def _export(self, request: web.Request) -> web.StreamResponse:
        content_type = request.content_type
        if request.method != "POST":
            return web.Response(status=405)
        if content_type not in (PROTOBUF, JSON):
            return web.Response(status=415, text=f"unsupported Content-Type {content_type}")
        try:
            export = decode_request(request[BODY], content_type)
        except Exception as exc:  # any decoding failure is the client's fault
            return web.Response(status=400, text=f"cannot decode request: {exc}")
        encoding = "json" if content_type == JSON else "protobuf"
        accepted: list[Received] = []
        refused: list[Received] = []
        for resource_logs in export.resource_logs:
            resource = {kv.key: plain(kv.value) for kv in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for rec in scope_logs.log_records:
                    item = Received(
                        resource,
                        scope_logs.scope.name,
                        {kv.key: plain(kv.value) for kv in rec.attributes},
                        plain(rec.body),
                        rec.time_unix_nano,
                        rec.observed_time_unix_nano,
                        rec.severity_text,
                        int(rec.severity_number),
                        rec.trace_id.hex(),
                        rec.span_id.hex(),
                        encoding,
                    )
                    body = str(item.body)
                    if self.refuse_marker is not None and self.refuse_marker in body:
                        return web.Response(status=400, text="record refused: bad content")
                    if self.partial_reject is not None and self.partial_reject in body:
                        refused.append(item)
                    else:
                        accepted.append(item)
        with self._lock:
            self.records.extend(accepted)
            self.rejected.extend(refused)
            self._state.docs.extend(accepted)
            self._lock.notify_all()
        response = ExportLogsServiceResponse()
        if refused:
            response.partial_success.rejected_log_records = len(refused)
            names = ", ".join(r.uid for r in refused) if self.name_rejected else "some records"
            response.partial_success.error_message = f"records refused by policy: {names}"
        if encoding == "json":
            text = json_format.MessageToJson(response, use_integers_for_enums=True)
            return web.Response(status=200, body=text.encode(), content_type=JSON)
        return web.Response(status=200, body=response.SerializeToString(), content_type=PROTOBUF)
