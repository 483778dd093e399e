"""Grafana Loki push sink (``loki``).

Request: ``POST {sink_url}/loki/api/v1/push`` (a URL already ending in that
path is used as is), JSON::

    {"streams": [{"stream": {"log_group": "/aws/lambda/orders", <static labels>},
                  "values": [["1732183200123000000", "<document as JSON>",
                              {"log_stream": "...", "event_id": "..."}], ...]}]}

Labels stay small and bounded: ``log_group`` plus the operator's static
labels (``loki_labels``). The CloudWatch stream name and the event id are
high-cardinality, so they go into structured metadata (Loki 3 with
``allow_structured_metadata``), not labels. The line is the whole document.
Values are grouped per label set and sorted by time (stable) inside each,
since Loki wants each stream's entries in order.

Answers: 204/2xx OK. A 400 whose every reason is one Loki gives for entries
it will never take, out of order or too old (``entry out of order``,
``entry too far behind``, ``timestamp too old``), is final: Loki stored the
rest of the request, so the batch is OK with the answer as detail, rather
than retried forever. Any other 400 POISON; 429/5xx RETRY; 413 TOO_LARGE;
401/403 AUTH.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from cwconsumer.model import OutBatch, doc_fields
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.sinks.formats import JSON_CONTENT_TYPE, dumps_each, unreadable
from cwconsumer.sinks.http import (
    HttpPoster,
    PosterSink,
    Redactor,
    Response,
    classify_response,
    poison_items,
)

PUSH_PATH = "/loki/api/v1/push"
GROUP_LABEL = "log_group"
_FINAL_REASONS = ("entry out of order", "too far behind", "timestamp too old")


def push_url(sink_url: str) -> str:
    """``{sink_url}/loki/api/v1/push``, keeping a URL that already has the path."""
    parts = urlsplit(sink_url)
    path = parts.path.rstrip("/")
    if not path.endswith(PUSH_PATH):
        path += PUSH_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def ready_url(sink_url: str) -> str:
    """Loki's readiness endpoint next to the push path."""
    parts = urlsplit(push_url(sink_url))
    base = parts.path.removesuffix(PUSH_PATH)
    return urlunsplit((parts.scheme, parts.netloc, base + "/ready", "", ""))


def _cloudwatch(doc: dict[str, Any]) -> dict[str, Any]:
    aws = doc.get("aws")
    cw = aws.get("cloudwatch") if isinstance(aws, dict) else None
    return cw if isinstance(cw, dict) else {}


def _metadata(doc: dict[str, Any]) -> dict[str, str]:
    meta: dict[str, str] = {}
    stream = _cloudwatch(doc).get("log_stream")
    if isinstance(stream, str) and stream:
        meta["log_stream"] = stream
    event = doc.get("event")
    event_id = event.get("id") if isinstance(event, dict) else None
    if isinstance(event_id, str) and event_id:
        meta["event_id"] = event_id
    return meta


def encode_push(
    batch: OutBatch, static_labels: tuple[tuple[str, str], ...] = ()
) -> tuple[bytes, dict[int, str]]:
    """The push body and ``{index: reason}`` for documents that cannot be encoded."""
    lines, bad = dumps_each(batch.docs)
    if bad:
        return b"", bad
    # Serialized documents are parsed once here, not once per field read.
    try:
        docs = [doc_fields(d) for d in batch.docs]
    except orjson.JSONDecodeError:
        return b"", unreadable(batch.docs)
    by_group: dict[str, list[int]] = {}
    for i, doc in enumerate(docs):
        group = _cloudwatch(doc).get("log_group")
        key = group if isinstance(group, str) and group else "unknown"
        by_group.setdefault(key, []).append(i)
    ts = batch.timestamps_ms
    streams = []
    for group, indexes in by_group.items():
        indexes.sort(key=ts.__getitem__)  # stable: same-millisecond events keep their order
        labels = dict(static_labels)
        labels[GROUP_LABEL] = group
        values = []
        for i in indexes:
            value: list[Any] = [str(ts[i] * 1_000_000), lines[i].decode()]
            meta = _metadata(docs[i])
            if meta:
                value.append(meta)
            values.append(value)
        streams.append({"stream": labels, "values": values})
    return orjson.dumps({"streams": streams}), {}


def is_final_refusal(body: str) -> bool:
    """True when every reason in a Loki 400 answer is out-of-order or too old."""
    reasons = [line for line in body.splitlines() if line.strip() and "total ignored" not in line]
    return bool(reasons) and all(any(r in line for r in _FINAL_REASONS) for line in reasons)


def classify_push(resp: Response, redact: Redactor = None) -> SendResult:
    """Outcome of a push request."""
    if resp.status == 400 and is_final_refusal(resp.body.decode("utf-8", "replace")):
        detail = f"HTTP 400, entries ignored by Loki as final: {resp.excerpt()}"
        return SendResult(Outcome.OK, 400, detail=redact(detail) if redact else detail)
    return classify_response(resp, redact)


class LokiSink(PosterSink):
    """Loki ``/loki/api/v1/push`` with bounded labels and structured metadata."""

    def __init__(
        self, url: str, poster: HttpPoster, labels: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__("loki", url, poster)
        self.push_url = push_url(url)
        self.labels = tuple((k, v) for k, v in labels if k != GROUP_LABEL)

    async def send(self, batch: OutBatch) -> SendResult:
        if not batch.docs:
            return SendResult(Outcome.OK, detail="empty batch")
        body, bad = encode_push(batch, self.labels)
        if bad:
            return poison_items(len(batch), bad)
        too_large = self._poster.oversize(body, len(batch))
        if too_large is not None:
            return too_large
        answer = await self._post(self.push_url, body, JSON_CONTENT_TYPE)
        if isinstance(answer, SendResult):
            return answer
        return classify_push(answer, self._poster.redact)

    async def probe(self) -> tuple[bool, str]:
        """``GET /ready``: 200 once Loki accepts writes."""
        return await self._probe("GET", ready_url(self.url))
