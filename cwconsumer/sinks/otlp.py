"""OpenTelemetry OTLP/HTTP logs sink (``otlp``).

Request: ``POST {sink_url}`` with an ``ExportLogsServiceRequest``
(:mod:`cwconsumer.sinks.otlp_encode`), ``Content-Type: application/x-protobuf``
or, with ``CWC_OTLP_ENCODING=json``, ``application/json``. A URL with an
empty path gets ``/v1/logs`` (like ``OTEL_EXPORTER_OTLP_ENDPOINT``); any
other path is used as given (like ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, e.g.
Loki 3's ``/otlp/v1/logs``). Gzip, headers (API keys), token and basic auth
as for every format.

Answers, per the OTLP/HTTP specification:

- 2xx: delivered. A ``partial_success`` with ``rejected_log_records > 0`` is
  final, never retried: the records the receiver names in its
  ``error_message`` (by ``log.record.uid``, i.e. ``event.id``) are
  dead-lettered with its message; the rest of the rejected count cannot be
  told apart, so it is counted (``cwconsumer_sink_records_rejected_total``)
  and logged, and the batch is confirmed.
- 429, 502, 503, 504: retried (``Retry-After`` honoured).
- 413: split; 400: the lane bisects down to the refused records and
  dead-letters them (as for the other formats).
- 401, 403: credentials (not poison): retried slowly while ``/healthz`` says
  so. This departs from the letter of the specification (which retries
  neither), because dead-lettering every event for a wrong API key loses
  nothing only on paper.
- any other 4xx or 5xx: not retryable per the specification: bisected and
  dead-lettered (``cwconsumer dead-letters --replay`` sends them again).
- 3xx: the URL is wrong; retried with a detail saying so (as elsewhere).

Encoding costs CPU (a dict per document and the protobuf messages): a batch
of more than :data:`ENCODE_IN_THREAD_EVENTS` events is encoded in a worker
thread, so the event loop keeps reading pages and answering ``/healthz``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread

from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.sinks.http import (
    HttpPoster,
    PosterSink,
    Response,
    classify_response,
    judge_probe,
    parse_retry_after,
    poison_items,
)
from cwconsumer.sinks.otlp_encode import (
    JSON_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    decode_response,
    encode,
    identified,
)

log = logging.getLogger("cwconsumer.sinks.otlp")

LOGS_PATH = "/v1/logs"
ENCODE_IN_THREAD_EVENTS = 200
_RETRYABLE = frozenset({429, 502, 503, 504})


def logs_url(sink_url: str) -> str:
    """``/v1/logs`` appended to a URL whose path is empty (or ``/``)."""
    parts = urlsplit(sink_url)
    path = parts.path if parts.path not in ("", "/") else LOGS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def classify_export(
    resp: Response,
    uids: list[str],
    redact: Callable[[str], str],
    on_rejected: Callable[[int], None],
) -> SendResult:
    """Outcome of an export request for records whose ids are ``uids``."""
    status = resp.status
    if 200 <= status < 300:
        return _partial_success(resp, uids, redact, on_rejected)
    if status in _RETRYABLE:
        detail = redact(f"HTTP {status}: {resp.excerpt(redact=redact)}")
        return SendResult(
            Outcome.RETRY,
            status=status,
            detail=detail,
            retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
        )
    if status == 413 or status in (401, 403) or not 400 <= status < 600:
        return classify_response(resp, redact)  # TOO_LARGE, AUTH, 3xx/1xx retried
    # 400 and every other 4xx/5xx: not retryable (OTLP/HTTP "Failures").
    detail = redact(f"HTTP {status}: {resp.excerpt(redact=redact)}")
    return SendResult(Outcome.POISON, status=status, detail=detail)


def _partial_success(
    resp: Response,
    uids: list[str],
    redact: Callable[[str], str],
    on_rejected: Callable[[int], None],
) -> SendResult:
    decoded = decode_response(resp.body, resp.headers.get("Content-Type", ""))
    if decoded is None:
        # A 2xx is a success whatever its body says (the spec: the client MUST
        # NOT retry a 2xx); an unreadable body only loses the partial-success details.
        return SendResult(
            Outcome.OK, resp.status, detail="answer is not an ExportLogsServiceResponse"
        )
    rejected, message = decoded
    if rejected <= 0:
        return SendResult(Outcome.OK, resp.status, detail=redact(message[:300]) if message else "")
    message = redact(message)
    named = identified(message, uids)[:rejected]
    unnamed = rejected - len(named)
    log.warning(
        "OTLP receiver rejected records (partial success); not retried",
        extra={
            "rejected": rejected,
            "dead_lettered": len(named),
            "counted_only": unnamed,
            "error_message": message[:300],
        },
    )
    if unnamed > 0:
        on_rejected(unnamed)
    detail = f"partial success: {rejected} record(s) rejected: {message[:300]}"
    if not named:
        return SendResult(Outcome.OK, resp.status, detail=detail)
    picked = set(named)
    items = [Outcome.POISON if i in picked else Outcome.OK for i in range(len(uids))]
    return SendResult(
        Outcome.RETRY,
        resp.status,
        detail=detail,
        items=items,
        item_detail={i: detail for i in named},
    )


class OtlpSink(PosterSink):
    """OTLP/HTTP logs, protobuf or JSON."""

    def __init__(
        self,
        url: str,
        poster: HttpPoster,
        encoding: str = "protobuf",
        on_rejected: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__("otlp", url, poster)
        self.logs_url = logs_url(url)
        self.encoding = encoding
        self.content_type = JSON_CONTENT_TYPE if encoding == "json" else PROTOBUF_CONTENT_TYPE
        self.on_rejected: Callable[[int], None] = on_rejected or (lambda n: None)

    async def send(self, batch: OutBatch) -> SendResult:
        if not batch.docs:
            return SendResult(Outcome.OK, detail="empty batch")
        if len(batch) > ENCODE_IN_THREAD_EVENTS:
            body, bad, uids = await anyio.to_thread.run_sync(partial(encode, batch, self.encoding))
        else:
            body, bad, uids = encode(batch, self.encoding)
        if bad:
            return poison_items(
                len(batch), bad, detail=f"{len(bad)} document(s) cannot be encoded as OTLP"
            )
        too_large = self._poster.oversize(body, len(batch))
        if too_large is not None:
            return too_large
        answer = await self._post(self.logs_url, body, self.content_type)
        if isinstance(answer, SendResult):
            return answer
        return classify_export(answer, uids, self._poster.redact, self.on_rejected)

    async def probe(self) -> tuple[bool, str]:
        """An empty ``ExportLogsServiceRequest``: valid, and stores nothing."""
        body, _, _ = encode(OutBatch([], []), self.encoding)
        if self.encoding == "json":
            body = body or b"{}"
        answer = await self._ask(
            "POST", self.logs_url, headers=[("Content-Type", self.content_type)], body=body
        )
        if isinstance(answer, str):
            return False, answer
        return judge_probe(answer, self.logs_url, self._poster.redact)
