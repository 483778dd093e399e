"""Elasticsearch / OpenSearch ``_bulk`` sink.

Request: ``POST {sink_url}/_bulk`` (a URL already ending in ``/_bulk`` is used
as is), NDJSON with one ``create`` action per document::

    {"create":{"_index":"logs-aws.cloudwatch-default","_id":"<event.id>"}}
    {...the document...}

``create`` is what data streams require, and with ``_id`` set to the
deterministic ``event.id`` a re-delivery after a crash answers 409
(``version_conflict_engine_exception``), which counts as delivered.
``filter_path`` trims the answer to what is read (errors, item status, error).

Index names (``CWC_SINK_INDEX``): a plain name (data stream, alias or index),
or a pattern with the *event's* UTC date, in either spelling:

- Logstash: ``logs-%{+yyyy.MM.dd}`` (tokens ``yyyy``, ``yy``, ``MM``, ``dd``,
  ``HH``; other characters inside ``%{+...}`` are copied);
- strftime: ``logs-%Y.%m.%d`` (``%Y %y %m %d %H %j %G %V %%``).

Bulk answers are 200 even when items fail, so every item is read:
2xx and 409-on-create OK; 429 and 5xx RETRY; other item errors (mapping and
parsing errors, 400) POISON with ``type: reason`` as the item detail. Item
errors that say the *configuration* is wrong for every document (401/403,
``security_exception``, ``invalid_index_name_exception``, ``index_not_found``,
closed index) turn the whole batch into AUTH instead of dead-lettering it.
A non-200 answer to the request itself is classified like plain HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from cwconsumer.errors import ConfigError
from cwconsumer.model import Doc, OutBatch, doc_fields
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.sinks.formats import NDJSON_CONTENT_TYPE, dumps_each
from cwconsumer.sinks.http import (
    HttpPoster,
    PosterSink,
    Response,
    classify_response,
    judge_probe,
    poison_items,
)

FILTER_PATH = "errors,items.*.status,items.*.error"
_LOGSTASH_DATE = re.compile(r"%\{\+([^}]*)\}")
_JODA = {"yyyy": "%Y", "YYYY": "%Y", "yy": "%y", "MM": "%m", "dd": "%d", "HH": "%H"}
_JODA_TOKEN = re.compile("|".join(sorted(map(re.escape, _JODA), key=len, reverse=True)))
_STRFTIME_OK = set("YymdHjGV%")
_CONFIG_ERRORS = {
    "security_exception",
    "invalid_index_name_exception",
    "index_not_found_exception",
    "index_closed_exception",
}
_HOUR_MS = 3_600_000


def bulk_url(sink_url: str) -> str:
    """``{sink_url}/_bulk?filter_path=...``, keeping an existing ``/_bulk`` and query."""
    parts = urlsplit(sink_url)
    path = parts.path.rstrip("/")
    if not path.endswith("/_bulk"):
        path += "/_bulk"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "filter_path" for k, _ in query):
        query.append(("filter_path", FILTER_PATH))
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query, safe=",*"), ""))


def cluster_url(sink_url: str) -> str:
    """The cluster root (for the probe): the sink URL without ``/_bulk``."""
    parts = urlsplit(sink_url)
    path = parts.path.rstrip("/")
    path = path.removesuffix("/_bulk")
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


class IndexNamer:
    """Index name of an event from its time (UTC), cached per hour."""

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise ConfigError(["CWC_SINK_INDEX: must not be empty"])
        self.pattern = pattern
        self._format = _to_strftime(pattern)
        self.dated = "%" in pattern
        self._cache: dict[int, str] = {}

    def __call__(self, ts_ms: int) -> str:
        if not self.dated:
            return self.pattern
        hour = ts_ms // _HOUR_MS
        name = self._cache.get(hour)
        if name is None:
            if len(self._cache) > 1024:
                self._cache.clear()
            when = datetime.fromtimestamp(hour * _HOUR_MS / 1000, UTC)
            name = self._cache[hour] = when.strftime(self._format)
        return name


def _to_strftime(pattern: str) -> str:
    """Translate both pattern spellings into one strftime format, or ConfigError."""
    out: list[str] = []
    pos = 0
    for match in _LOGSTASH_DATE.finditer(pattern):
        out.append(_check_strftime(pattern[pos : match.start()]))
        joda = match.group(1)
        if not _JODA_TOKEN.search(joda):
            raise ConfigError([f"CWC_SINK_INDEX: no date field in %{{+{joda}}}"])
        literal = _JODA_TOKEN.split(joda)
        if any(ch.isalpha() for part in literal for ch in part):
            raise ConfigError(
                [f"CWC_SINK_INDEX: unsupported date field in %{{+{joda}}} "
                 f"(use yyyy, yy, MM, dd, HH)"]
            )  # fmt: skip
        out.append(_JODA_TOKEN.sub(lambda m: _JODA[m.group(0)], joda.replace("%", "%%")))
        pos = match.end()
    out.append(_check_strftime(pattern[pos:]))
    return "".join(out)


def _check_strftime(text: str) -> str:
    i = text.find("%")
    while i != -1:
        if i + 1 >= len(text) or text[i + 1] not in _STRFTIME_OK:
            raise ConfigError(
                [f"CWC_SINK_INDEX: unsupported {text[i : i + 2]!r} (use %Y %y %m %d %H %j %G %V)"]
            )
        i = text.find("%", i + 2)
    return text


_ID_KEY = b'"event":{"id":"'
_HEX = frozenset(b"0123456789abcdef")


def _event_id(doc: Doc) -> str | None:
    """``event.id`` of a document; read from the bytes of a shaped line without
    parsing it (the key, unescaped, can only be the document's own: quotes in
    the message and names are escaped)."""
    if isinstance(doc, bytes):
        line = doc
        at = line.rfind(_ID_KEY) + len(_ID_KEY)
        if at >= len(_ID_KEY) and line[at + 32 : at + 33] == b'"':
            raw = line[at : at + 32]
            if _HEX.issuperset(raw):
                return raw.decode()
    try:
        event = doc_fields(doc).get("event")
    except orjson.JSONDecodeError:
        return None  # sent as it is; Elasticsearch says whether it takes it
    if isinstance(event, dict) and isinstance(event.get("id"), str):
        return str(event["id"])
    return None


def encode_bulk(batch: OutBatch, index_of: Callable[[int], str]) -> tuple[bytes, dict[int, str]]:
    """The ``_bulk`` body and ``{index: reason}`` for documents that cannot be encoded."""
    lines, bad = dumps_each(batch.docs)
    if bad:
        return b"", bad
    parts: list[bytes] = []
    for i, (doc, line) in enumerate(zip(batch.docs, lines, strict=True)):
        meta: dict[str, str] = {"_index": index_of(batch.timestamps_ms[i])}
        event_id = _event_id(doc)
        if event_id is not None:
            meta["_id"] = event_id
        parts.append(orjson.dumps({"create": meta}))
        parts.append(line)
    parts.append(b"")
    return b"\n".join(parts), {}


def _item_error(entry: dict[str, Any]) -> tuple[str, str]:
    error = entry.get("error")
    if isinstance(error, dict):
        kind = str(error.get("type", "error"))
        text = f"{kind}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict):
            text += f" (caused by {cause.get('type', '?')}: {cause.get('reason', '')})"
        return kind, text[:500]
    if error is not None:
        return "error", str(error)[:500]
    return "", ""


def parse_bulk_answer(body: bytes, count: int, status: int = 200) -> SendResult:
    """Per-item outcome of a 2xx ``_bulk`` answer for ``count`` documents."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return SendResult(Outcome.RETRY, status, detail="bulk answer is not JSON")
    if not isinstance(data, dict):
        return SendResult(Outcome.RETRY, status, detail="bulk answer is not a JSON object")
    if data.get("errors") is False:
        return SendResult(Outcome.OK, status)
    items = data.get("items")
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else "no"
        return SendResult(
            Outcome.RETRY, status, detail=f"bulk answer has {got} items for {count} documents"
        )
    outcomes: list[Outcome] = []
    details: dict[int, str] = {}
    for i, item in enumerate(items):
        entry: Any = next(iter(item.values()), None) if isinstance(item, dict) and item else None
        if not isinstance(entry, dict):
            outcomes.append(Outcome.RETRY)
            details[i] = "bulk answer item is unreadable"
            continue
        op = next(iter(item))
        item_status = entry.get("status")
        item_status = item_status if isinstance(item_status, int) else 0
        kind, text = _item_error(entry)
        if 200 <= item_status < 300:
            outcomes.append(Outcome.OK)
        elif item_status == 409 and op == "create":
            outcomes.append(Outcome.OK)  # already indexed by an earlier delivery
        elif item_status == 429 or item_status >= 500:
            outcomes.append(Outcome.RETRY)
            details[i] = f"{item_status} {text}".strip()
        elif item_status in (401, 403) or kind in _CONFIG_ERRORS:
            return SendResult(
                Outcome.AUTH, status, detail=f"bulk item refused for every event: {text}"
            )
        else:
            outcomes.append(Outcome.POISON if item_status else Outcome.RETRY)
            details[i] = f"{item_status} {text}".strip() if item_status else "no item status"
    if all(o is Outcome.OK for o in outcomes):
        return SendResult(Outcome.OK, status, detail=_summary(outcomes))
    return SendResult(
        Outcome.RETRY, status, detail=_summary(outcomes), items=outcomes, item_detail=details
    )


def _summary(outcomes: list[Outcome]) -> str:
    counts = {o: outcomes.count(o) for o in (Outcome.OK, Outcome.RETRY, Outcome.POISON)}
    return "bulk items: " + ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)


class ElasticsearchSink(PosterSink):
    """``_bulk`` to Elasticsearch or OpenSearch with per-item outcomes."""

    def __init__(self, url: str, poster: HttpPoster, index: str) -> None:
        super().__init__("elasticsearch", url, poster)
        self.bulk_url = bulk_url(url)
        self.index = IndexNamer(index)

    async def send(self, batch: OutBatch) -> SendResult:
        if not batch.docs:
            return SendResult(Outcome.OK, detail="empty batch")
        body, bad = encode_bulk(batch, self.index)
        if bad:
            return poison_items(len(batch), bad)
        too_large = self._poster.oversize(body, len(batch))
        if too_large is not None:
            return too_large
        answer = await self._post(self.bulk_url, body, NDJSON_CONTENT_TYPE)
        if isinstance(answer, SendResult):
            return answer
        if not 200 <= answer.status < 300:
            return classify_response(answer, self._poster.redact)
        result = parse_bulk_answer(answer.body, len(batch), answer.status)
        result.detail = self._poster.redact(result.detail)
        result.item_detail = {i: self._poster.redact(t) for i, t in result.item_detail.items()}
        return result

    async def probe(self) -> tuple[bool, str]:
        """``GET /`` on the cluster. A 403 means the credentials were accepted
        but lack the cluster ``monitor`` privilege, which ``_bulk`` does not need."""
        url = cluster_url(self.url)
        answer = await self._ask("GET", url)
        if isinstance(answer, str):
            return False, answer
        if answer.status == 403:
            return True, f"{url} answered HTTP 403: authenticated; no cluster monitor privilege"
        ok, text = judge_probe(answer, url, self._poster.redact)
        if ok and answer.status == 200:
            text += _describe_cluster(answer)
        return ok, text


def _describe_cluster(resp: Response) -> str:
    try:
        info = orjson.loads(resp.body)
        version = info["version"]
        product = version.get("distribution", "elasticsearch")
        return f" ({product} {version['number']}, cluster {info.get('cluster_name', '?')})"
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return ""
