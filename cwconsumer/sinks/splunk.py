"""Splunk HTTP Event Collector sink (``splunk-hec``).

Request: ``POST {sink_url}/services/collector/event`` (a URL that already ends
in ``/services/collector`` or ``/services/collector/event`` is accepted) with
``Authorization: Splunk <token>`` and the events as concatenated JSON
envelopes::

    {"time": 1732183200.123, "host": "cwconsumer", "source": "<log group>",
     "sourcetype": "<CWC sourcetype>", "index": "<only when set>",
     "event": {...the document...}, "fields": {"log_stream": "<stream>"}}

Answers (HEC status codes): ``{"text":"Success","code":0}`` OK; code 9
(server busy, 503), 8 and other 5xx/429 RETRY; 401/403 and codes 1-4 AUTH;
codes 7 (incorrect index), 10/11 (channel), 14 (ack disabled), 16 are
configuration problems that no event can fix, so AUTH too (retried slowly,
``/healthz`` shows it) instead of dead-lettering everything; code 6/12/13/15
with ``invalid-event-number`` refuse that one event as POISON and ask for the
others again (HEC may have indexed the events before it: a duplicate is
preferred to a loss); any other 4xx POISON.

Indexer acknowledgement (``CWC_SPLUNK_ACK=true``): every request carries this
sink's channel GUID in ``X-Splunk-Request-Channel``; the answer carries an
``ackId``; the batch is OK only once ``POST /services/collector/ack`` reports
that id ``true`` (the events are indexed and replicated), so the checkpoint
moves only then. Concurrent batches share their polls (one request asks for
every outstanding id). Polling gives up after ``ack_timeout_s`` and answers
RETRY, which sends the batch again: at-least-once, possibly twice.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import orjson

from cwconsumer.model import Doc, OutBatch, doc_fields
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.sinks.formats import JSON_CONTENT_TYPE, dumps_each, unreadable
from cwconsumer.sinks.http import (
    HttpPoster,
    PosterSink,
    Redactor,
    Response,
    classify_response,
    judge_probe,
    parse_retry_after,
    poison_items,
)

CHANNEL_HEADER = "X-Splunk-Request-Channel"
_COLLECTOR = "/services/collector"
_AUTH_CODES = {1, 2, 3, 4}
_CONFIG_CODES = {7, 10, 11, 14, 16}
_EVENT_CODES = {6, 12, 13, 15}
_HINTS = {
    7: "the token may not write to this index (CWC_SPLUNK_INDEX)",
    10: "the token requires indexer acknowledgement: set CWC_SPLUNK_ACK=true",
    14: "indexer acknowledgement is disabled on the token: set CWC_SPLUNK_ACK=false",
}


def collector_base(sink_url: str) -> str:
    """``scheme://host[:port][/prefix]/services/collector`` from any accepted URL."""
    parts = urlsplit(sink_url)
    path = parts.path.rstrip("/")
    for suffix in ("/event/1.0", "/event", "/raw/1.0", "/raw"):
        if path.endswith(_COLLECTOR + suffix):
            path = path[: -len(suffix)]
            break
    if not path.endswith(_COLLECTOR):
        path += _COLLECTOR
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def envelope(
    doc: Doc, ts_ms: int, *, host: str, sourcetype: str, index: str | None
) -> dict[str, Any]:
    """One HEC event envelope for a document."""
    # A document in bytes is already serialized: embedded as is.
    event: Any = orjson.Fragment(doc) if isinstance(doc, bytes) else doc
    aws = doc_fields(doc).get("aws")
    cloudwatch = aws.get("cloudwatch") if isinstance(aws, dict) else None
    if not isinstance(cloudwatch, dict):
        cloudwatch = {}
    env: dict[str, Any] = {"time": ts_ms / 1000, "host": host}
    if group := cloudwatch.get("log_group"):
        env["source"] = group
    env["sourcetype"] = sourcetype
    if index:
        env["index"] = index
    env["event"] = event
    if stream := cloudwatch.get("log_stream"):
        env["fields"] = {"log_stream": stream}
    return env


def _answer_json(resp: Response) -> dict[str, Any]:
    try:
        data = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def classify_hec(resp: Response, count: int, redact: Redactor = None) -> SendResult:
    """Outcome of an HEC event request for ``count`` events."""
    data = _answer_json(resp)
    code = data.get("code")
    code = code if isinstance(code, int) else None
    status = resp.status
    text = f"HTTP {status}: {resp.excerpt()}"
    if redact is not None:
        text = redact(text)
    if 200 <= status < 300 and code in (0, None):
        return SendResult(Outcome.OK, status)
    if code in (8, 9) or status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return SendResult(Outcome.RETRY, status, detail=text, retry_after_s=retry_after)
    if status in (401, 403) or code in _AUTH_CODES:
        return SendResult(Outcome.AUTH, status, detail=text)
    if code in _CONFIG_CODES:
        hint = _HINTS.get(code, "configuration refused")
        return SendResult(Outcome.AUTH, status, detail=f"{text} ({hint})")
    bad = data.get("invalid-event-number")
    if code in _EVENT_CODES and isinstance(bad, int) and 0 <= bad < count and count > 1:
        return poison_items(count, {bad: text}, f"event {bad} refused: {text}", status)
    return classify_response(resp, redact)


class _Acks:
    """Outstanding ack ids of one channel, polled together.

    Each waiting ``send`` sleeps, then takes the lock and polls *every*
    outstanding id unless another waiter already polled since it started
    waiting (its id was included in that poll).
    """

    def __init__(self, sink: SplunkHecSink, interval_s: float, timeout_s: float) -> None:
        self._sink = sink
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._pending: set[int] = set()
        self._acked: set[int] = set()
        self._lock: anyio.Lock | None = None
        self._round = 0
        self.last_problem = ""

    async def wait(self, ack_id: int) -> bool:
        """True once ``ack_id`` is acknowledged; False after ``timeout_s``."""
        if self._lock is None:
            self._lock = anyio.Lock()
        self._pending.add(ack_id)
        deadline = anyio.current_time() + self.timeout_s
        try:
            while ack_id not in self._acked:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return False
                seen = self._round
                await anyio.sleep(min(self.interval_s, remaining))
                async with self._lock:
                    if ack_id in self._acked or self._round != seen:
                        continue
                    await self._poll(sorted(self._pending - self._acked))
            return True
        finally:
            self._pending.discard(ack_id)
            self._acked.discard(ack_id)

    async def _poll(self, ids: list[int]) -> None:
        self._round += 1
        answer = await self._sink._ask(
            "POST",
            self._sink.ack_url,
            headers=[*self._sink.channel_headers, ("Content-Type", JSON_CONTENT_TYPE)],
            body=orjson.dumps({"acks": ids}),
        )
        if isinstance(answer, str):
            self.last_problem = answer
            return
        acks = _answer_json(answer).get("acks")
        if answer.status != 200 or not isinstance(acks, dict):
            self.last_problem = f"ack poll answered HTTP {answer.status}: {answer.excerpt(200)}"
            return
        self._acked.update(int(k) for k, v in acks.items() if v is True and k.isdigit())


class SplunkHecSink(PosterSink):
    """Splunk HEC ``/services/collector/event``, optionally with indexer acks."""

    def __init__(
        self,
        url: str,
        poster: HttpPoster,
        *,
        sourcetype: str,
        index: str | None = None,
        host: str = "cwconsumer",
        ack: bool = False,
        ack_timeout_s: float | None = None,
        ack_interval_s: float = 0.5,
    ) -> None:
        super().__init__("splunk-hec", url, poster)
        base = collector_base(url)
        self.event_url = base + "/event"
        self.ack_url = base + "/ack"
        self.sourcetype = sourcetype
        self.index = index
        self.host = host
        self.ack = ack
        self.channel = str(uuid.uuid4())
        self.channel_headers: list[tuple[str, str]] = (
            [(CHANNEL_HEADER, self.channel)] if ack else []
        )
        timeout = ack_timeout_s if ack_timeout_s is not None else 2 * poster.timeout_s
        self._acks = _Acks(self, ack_interval_s, timeout)

    def encode(self, batch: OutBatch) -> tuple[bytes, dict[int, str]]:
        """Concatenated envelopes, and the documents that cannot be encoded."""
        try:
            envelopes = [
                envelope(d, t, host=self.host, sourcetype=self.sourcetype, index=self.index)
                for d, t in zip(batch.docs, batch.timestamps_ms, strict=True)
            ]
        except orjson.JSONDecodeError:
            return b"", unreadable(batch.docs)
        lines, bad = dumps_each(envelopes)
        return b"".join(lines), bad

    async def send(self, batch: OutBatch) -> SendResult:
        if not batch.docs:
            return SendResult(Outcome.OK, detail="empty batch")
        body, bad = self.encode(batch)
        if bad:
            return poison_items(len(batch), bad)
        too_large = self._poster.oversize(body, len(batch))
        if too_large is not None:
            return too_large
        answer = await self._post(self.event_url, body, JSON_CONTENT_TYPE, self.channel_headers)
        if isinstance(answer, SendResult):
            return answer
        result = classify_hec(answer, len(batch), self._poster.redact)
        if result.outcome is not Outcome.OK or not self.ack:
            return result
        ack_id = _answer_json(answer).get("ackId")
        if not isinstance(ack_id, int):
            return SendResult(
                Outcome.OK,
                answer.status,
                detail="accepted without ackId: indexer acknowledgement is off for this token",
            )
        if await self._acks.wait(ack_id):
            return SendResult(Outcome.OK, answer.status, detail=f"indexed (ackId {ack_id})")
        problem = self._acks.last_problem
        return SendResult(
            Outcome.RETRY,
            answer.status,
            detail=f"no indexer acknowledgement for ackId {ack_id} within "
            f"{self._acks.timeout_s:g} s; sending again" + (f" ({problem})" if problem else ""),
        )

    async def probe(self) -> tuple[bool, str]:
        """An empty event request: HEC checks the token, then answers code 5 "No data"."""
        answer = await self._ask("POST", self.event_url, headers=self.channel_headers)
        if isinstance(answer, str):
            return False, answer
        code = _answer_json(answer).get("code")
        if code == 5:
            return True, f"{self.event_url}: HEC answered, token accepted"
        if code in _CONFIG_CODES:
            hint = _HINTS.get(code, "configuration refused")
            return False, f"{self.event_url}: HEC code {code}: {hint}"
        return judge_probe(answer, self.event_url, self._poster.redact)
