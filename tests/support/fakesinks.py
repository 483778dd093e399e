"""Fake HTTP sinks: real aiohttp servers on 127.0.0.1 for tests and manual runs.

Each fake runs in a background thread with its own event loop, so a test's
own loop, a synchronous test, or a separately running ``cwconsumer`` process
(point ``CWC_SINK_URL`` at ``fake.url``) can all talk to it. Everything it
records is guarded by a lock and returned as copies.

Common API (every fake)::

    fake = RecordingSink().start()        # or: with RecordingSink() as fake:
    fake.url                              # "http://127.0.0.1:<port>" ("https" with ssl_context)
    fake.requests()                       # list[Recorded]: every request, in arrival order
    fake.docs()                           # list[dict]: documents accepted, in arrival order
    fake.wait_for_docs(n, timeout_s=10)   # block until n documents (raises TimeoutError)
    fake.set_fault(status=503, times=2, retry_after="1")  # next 2 requests answer 503
    fake.set_fault(hang_s=5)              # next request: no answer for 5 s, then normal
                                          # handling if the client still waits (else dropped)
    fake.set_fault(reset=True)            # next request: TCP reset, no answer
    fake.clear_faults(); fake.clear()     # drop pending faults / recorded data
    fake.stop()                           # idempotent; hanging requests are released

``set_fault`` takes ``status``, ``times`` (default 1; ``-1`` = until cleared),
``retry_after`` (header value, seconds or HTTP-date), ``body`` (bytes, str
or a JSON-able object), ``hang_s``, ``reset`` and ``path`` (only requests whose
path starts with it). Faults queue up and apply in order.

Authentication (any fake): ``username=``/``password=`` require Basic,
``token=`` requires ``Authorization: Bearer <token>`` (Splunk fake:
``Splunk <token>``); otherwise 401. Request bodies with
``Content-Encoding: gzip`` are decoded (the raw size is kept in
``Recorded.wire_bytes``).

The fakes:

- :class:`RecordingSink` — any endpoint: decodes ``application/x-ndjson``
  and ``application/json`` (array or object), answers ``200 ok``.
- :class:`ElasticsearchFake` — ``/_bulk`` answering like Elasticsearch's
  bulk API (``took``/``errors``/``items`` with ``_index``, ``_id``,
  ``status``, ``error: {type, reason}``), 409 on a duplicate ``create``,
  mapping errors for chosen documents (``mapping_error=``), per-item 429s
  (``reject_items(n)``), and ``filter_path``.
- :class:`SplunkHecFake` — ``/services/collector/event`` with token check,
  HEC codes, ``invalid-event-number``, and indexer acknowledgement
  (``ack=True``: channel header required, ``/services/collector/ack``
  reports ids true after ``ack_delay_s``).
- :class:`LokiFake` — ``/loki/api/v1/push`` checking label sets, string
  nanosecond timestamps and per-stream order (out-of-order entries are
  refused with Loki's 400 text while the rest is stored).

Run one by hand: ``python tests/support/fakesinks.py elasticsearch --port 9200``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from cwconsumer.model import OutBatch

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY = web.RequestKey("body", bytes)


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it (body already gunzipped)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    wire_bytes: int
    gzip: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Fault:
    status: int | None = None
    times: int = 1
    retry_after: str | None = None
    body: bytes = b""
    hang_s: float | None = None
    reset: bool = False
    path: str | None = None
    content_type: str = "text/plain"


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    docs: list[Any] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)


class FakeServer:
    """Base class: the thread, the loop, recording, faults and auth."""

    auth_scheme = "Bearer"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.username = username
        self.password = password
        self.token = token
        self._lock = threading.Condition()
        self._state = _State()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> FakeServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"{type(self).__name__} did not start") from self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        loop.call_soon_threadsafe(self._request_stop)
        thread.join(10)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024**2)
        self.routes(app)
        runner = web.AppRunner(app, shutdown_timeout=0.5, auto_decompress=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = site.port
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    # -- recording -------------------------------------------------------

    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._state.requests)

    def docs(self) -> list[Any]:
        with self._lock:
            return list(self._state.docs)

    def wait_for_docs(self, n: int, timeout_s: float = 10.0) -> list[Any]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._state.docs) >= n, timeout_s):
                raise TimeoutError(f"{len(self._state.docs)} of {n} documents after {timeout_s}s")
            return list(self._state.docs)

    def clear(self) -> None:
        with self._lock:
            self._state.requests.clear()
            self._state.docs.clear()

    def _add_docs(self, docs: list[Any]) -> None:
        with self._lock:
            self._state.docs.extend(docs)
            self._lock.notify_all()

    # -- faults ----------------------------------------------------------

    def set_fault(
        self,
        status: int | None = None,
        *,
        times: int = 1,
        retry_after: str | float | None = None,
        body: bytes | str | dict[str, Any] | list[Any] = b"",
        hang_s: float | None = None,
        reset: bool = False,
        path: str | None = None,
    ) -> None:
        """Queue a fault for the next ``times`` matching requests (-1: forever)."""
        content_type = "text/plain"
        if isinstance(body, dict | list):
            body, content_type = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            body = body.encode()
        fault = Fault(
            status, times, None if retry_after is None else str(retry_after), body, hang_s,
            reset, path, content_type,
        )  # fmt: skip
        with self._lock:
            self._state.faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.path is None or path.startswith(fault.path):
                    if fault.times > 0:
                        fault.times -= 1
                        if fault.times == 0:
                            self._state.faults.remove(fault)
                    return fault
        return None

    # -- request pipeline ------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        encoding = request.headers.get("Content-Encoding", "").lower()
        body = raw
        if encoding == "gzip" and raw:
            try:
                body = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error):
                return web.Response(status=400, text="request body is not valid gzip")
        record = Recorded(
            request.method, request.path, dict(request.query),
            {k.lower(): v for k, v in request.headers.items()}, body, len(raw),
            encoding == "gzip",
        )  # fmt: skip
        with self._lock:
            self._state.requests.append(record)
        request[BODY] = body
        fault = self._take_fault(request.path)
        if fault is not None:
            if fault.hang_s is not None:
                assert self._stopping is not None
                try:
                    await asyncio.wait_for(self._stopping.wait(), fault.hang_s)
                    return web.Response(status=503, text="fake sink stopping")
                except TimeoutError:
                    pass
                if request.transport is None or request.transport.is_closing():
                    # The client gave up: like a server that never answered, store nothing.
                    return web.Response(status=504, text="client went away")
            if fault.reset:
                return self._reset(request)
            if fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return web.Response(
                    status=fault.status, body=fault.body, headers=headers,
                    content_type=fault.content_type,
                )  # fmt: skip
        refusal = self.check_auth(request)
        if refusal is not None:
            return refusal
        return await handler(request)

    @staticmethod
    def _reset(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        raise asyncio.CancelledError  # aiohttp drops the handler quietly

    def check_auth(self, request: web.Request) -> web.StreamResponse | None:
        """None when the request may pass; else the refusal."""
        given = request.headers.get("Authorization", "")
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            if given != "Basic " + base64.b64encode(pair).decode():
                return self.unauthorized(request)
        if self.token is not None and given != f"{self.auth_scheme} {self.token}":
            return self.unauthorized(request)
        return None

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=401, text="unauthorized", headers={"WWW-Authenticate": 'Basic realm="fake"'}
        )

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError


class RecordingSink(FakeServer):
    """Any HTTP endpoint: records NDJSON / JSON documents, answers ``status``."""

    def __init__(self, *, status: int = 200, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status = status

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            return web.Response(text="ok")
        body: bytes = request[BODY]
        try:
            docs = decode_documents(body, request.content_type)
        except ValueError as exc:
            return web.Response(status=400, text=f"invalid JSON: {exc}")
        if 200 <= self.status < 300:
            self._add_docs(docs)
        return web.Response(status=self.status, text="ok")


def decode_documents(body: bytes, content_type: str) -> list[Any]:
    """NDJSON or a JSON array/object, as the recording sink reads them."""
    text = body.decode()
    if content_type == "application/x-ndjson" or not text.lstrip().startswith(("[", "{")):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if content_type == "application/json" or text.lstrip().startswith("["):
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- Elasticsearch -----------------------------------------------------------


def _filter_path(value: Any, patterns: list[list[str]]) -> Any:
    """Elasticsearch ``filter_path`` (``*`` matches one key; arrays pass through)."""
    if isinstance(value, list):
        return [v for v in (_filter_path(x, patterns) for x in value) if v is not None]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in value.items():
        rest = [p[1:] for p in patterns if p and p[0] in ("*", key)]
        if not rest:
            continue
        if any(not r for r in rest):
            out[key] = sub
        else:
            kept = _filter_path(sub, rest)
            if kept not in (None, {}, []):
                out[key] = kept
    return out or None


def es_error(kind: str, reason: str, status: int, **extra: Any) -> dict[str, Any]:
    """A whole-request Elasticsearch error body."""
    cause = {"type": kind, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


class ElasticsearchFake(FakeServer):
    """``_bulk`` like Elasticsearch 8: per-item results, 409 on duplicate create."""

    def __init__(
        self,
        *,
        mapping_error: Callable[[dict[str, Any]], str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mapping_error = mapping_error
        self.indices: dict[str, dict[str, Any]] = {}
        self._reject_items = 0
        self._seq = 0

    def reject_items(self, n: int) -> None:
        """Answer the next ``n`` bulk items 429 ``es_rejected_execution_exception``."""
        with self._lock:
            self._reject_items = n

    def index_docs(self, index: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.indices.get(index, {}))

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        reason = f"missing authentication credentials for REST request [{request.path}]"
        body = es_error(
            "security_exception", reason, 401,
            header={"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"']},
        )  # fmt: skip
        return web.json_response(
            body, status=401, headers={"WWW-Authenticate": 'Basic realm="security"'}
        )

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._root)
        app.router.add_post("/_bulk", self._bulk)
        app.router.add_put("/_bulk", self._bulk)
        app.router.add_post("/{index}/_bulk", self._bulk)

    async def _root(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({
            "name": "fake-node", "cluster_name": "fake-cluster",
            "version": {"number": "8.15.0", "build_flavor": "default"},
            "tagline": "You Know, for Search",
        })  # fmt: skip

    async def _bulk(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        body: bytes = request[BODY]
        if request.content_type not in ("application/json", "application/x-ndjson"):
            reason = f"Content-Type header [{request.content_type}] is not supported"
            return web.json_response({"error": reason, "status": 406}, status=406)
        if not body:
            return web.json_response(
                es_error("parse_exception", "request body is required", 400), status=400
            )
        if not body.endswith(b"\n"):
            reason = "The bulk request must be terminated by a newline [\\n]"
            return web.json_response(
                es_error("illegal_argument_exception", reason, 400), status=400
            )
        lines = body.split(b"\n")[:-1]
        default_index = request.match_info.get("index")
        items: list[dict[str, Any]] = []
        i = 0
        while i < len(lines):
            try:
                action = json.loads(lines[i])
                ((op, meta),) = action.items()
                source = json.loads(lines[i + 1]) if op != "delete" else None
            except (ValueError, IndexError) as exc:
                reason = f"Malformed action/metadata line [{i + 1}]: {exc}"
                return web.json_response(
                    es_error("illegal_argument_exception", reason, 400), status=400
                )
            i += 1 if op == "delete" else 2
            if not (meta.get("_index") or default_index):
                reason = "Validation Failed: 1: index is missing;"
                return web.json_response(
                    es_error("action_request_validation_exception", reason, 400), status=400
                )
            items.append({op: self._apply(op, meta, source, default_index)})
        errors = any("error" in next(iter(item.values())) for item in items)
        answer: dict[str, Any] = {
            "errors": errors, "took": int((time.monotonic() - started) * 1000), "items": items,
        }  # fmt: skip
        if "filter_path" in request.query:
            patterns = [p.split(".") for p in request.query["filter_path"].split(",")]
            answer = _filter_path(answer, patterns) or {}
        return web.json_response(answer)

    def _apply(
        self, op: str, meta: dict[str, Any], source: Any, default_index: str | None
    ) -> dict[str, Any]:
        index: str = meta.get("_index") or default_index or ""
        doc_id = meta.get("_id") or uuid.uuid4().hex[:20]
        head = {"_index": index, "_id": doc_id}
        if op not in ("create", "index"):
            return self._item_error(head, 400, "illegal_argument_exception", f"fake: no {op}")
        with self._lock:
            if self._reject_items > 0:
                self._reject_items -= 1
                reason = (
                    "rejected execution of coordinating operation [coordinating_and_primary_bytes="
                    "0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, "
                    "max_coordinating_and_primary_bytes=0]"
                )
                return self._item_error(head, 429, "es_rejected_execution_exception", reason)
            problem = self.mapping_error(source) if self.mapping_error else None
            if problem is not None:
                return self._item_error(head, 400, "document_parsing_exception", problem)
            docs = self.indices.setdefault(index, {})
            if doc_id in docs and op == "create":
                reason = (
                    f"[{doc_id}]: version conflict, document already exists (current version [1])"
                )
                return self._item_error(head, 409, "version_conflict_engine_exception", reason)
            created = doc_id not in docs
            docs[doc_id] = source
            self._seq += 1
            seq = self._seq
            self._state.docs.append(source)
            self._lock.notify_all()
        return {
            **head, "_version": 1, "result": "created" if created else "updated",
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": seq, "_primary_term": 1, "status": 201 if created else 200,
        }  # fmt: skip

    @staticmethod
    def _item_error(head: dict[str, Any], status: int, kind: str, reason: str) -> dict[str, Any]:
        error = {
            "type": kind, "reason": reason, "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA",
            "shard": "0", "index": head["_index"],
        }  # fmt: skip
        return {**head, "status": status, "error": error}


# -- Splunk HEC --------------------------------------------------------------

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def split_concatenated_json(text: str) -> tuple[list[Any], int | None]:
    """Objects of a concatenated-JSON body, and the index of the first bad one."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out, None
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return out, len(out)
        out.append(value)


class SplunkHecFake(FakeServer):
    """HEC ``/services/collector/event`` with token check and indexer acks."""

    auth_scheme = "Splunk"

    def __init__(
        self,
        *,
        token: str = "00000000-0000-0000-0000-000000000000",
        ack: bool = False,
        ack_delay_s: float = 0.0,
        invalid: Callable[[dict[str, Any]], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(token=token, **kwargs)
        self.ack = ack
        self.ack_delay_s = ack_delay_s
        self.invalid = invalid
        self._next_ack: dict[str, int] = {}
        self._pending: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        self._received: list[Any] = []
        self.acked: list[tuple[str, int]] = []

    def events(self) -> list[Any]:
        """Every envelope accepted, acknowledged yet or not. (``docs()`` holds the
        ``event`` of envelopes whose ack was reported true, or of all when ack is off.)"""
        with self._lock:
            return list(self._received)

    def check_auth(self, request: web.Request) -> web.StreamResponse | None:
        if request.path.endswith("/health"):
            return None
        given = request.headers.get("Authorization")
        if not given:
            return _hec(401, "Token is required", 2)
        scheme, _, value = given.partition(" ")
        if scheme != "Splunk" or not value:
            return _hec(401, "Invalid authorization", 3)
        if value != self.token:
            return _hec(403, "Invalid token", 4)
        return None

    def routes(self, app: web.Application) -> None:
        for path in ("/services/collector", "/services/collector/event",
                     "/services/collector/event/1.0"):  # fmt: skip
            app.router.add_post(path, self._event)
        app.router.add_post("/services/collector/ack", self._ack)
        app.router.add_get("/services/collector/health", self._health)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return _hec(200, "HEC is healthy", 17)

    def _channel(self, request: web.Request) -> tuple[str | None, web.StreamResponse | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if not self.ack:
            return channel, None
        if not channel:
            return None, _hec(400, "Data channel is missing", 10)
        if not _GUID.match(channel):
            return None, _hec(400, "Invalid data channel", 11)
        return channel, None

    async def _event(self, request: web.Request) -> web.StreamResponse:
        channel, refusal = self._channel(request)
        if refusal is not None:
            return refusal
        text = request[BODY].decode("utf-8", "replace")
        if not text.strip():
            return _hec(400, "No data", 5)
        envelopes, bad = split_concatenated_json(text)
        code, reason = 6, "Invalid data format"
        for i, env in enumerate(envelopes):
            if not isinstance(env, dict) or "event" not in env:
                code, reason = 12, "Event field is required"
            elif env["event"] in ("", None):
                code, reason = 13, "Event field cannot be blank"
            elif self.invalid is not None and self.invalid(env):
                code, reason = 6, "Invalid data format"
            else:
                continue
            bad = i
            break
        if bad is not None:
            # Like HEC: the events before the bad one went through.
            self._accept(channel, envelopes[:bad])
            return _hec(400, reason, code, **{"invalid-event-number": bad})
        ack_id = self._accept(channel, envelopes)
        if self.ack:
            return _hec(200, "Success", 0, ackId=ack_id)
        return _hec(200, "Success", 0)

    def _accept(self, channel: str | None, envelopes: list[Any]) -> int:
        with self._lock:
            self._received.extend(envelopes)
            if not self.ack or channel is None:
                self._state.docs.extend(e["event"] for e in envelopes)
                self._lock.notify_all()
                return -1
            ack_id = self._next_ack.get(channel, 0)
            self._next_ack[channel] = ack_id + 1
            ready = time.monotonic() + self.ack_delay_s
            self._pending[(channel, ack_id)] = (ready, [e["event"] for e in envelopes])
            return ack_id

    async def _ack(self, request: web.Request) -> web.StreamResponse:
        if not self.ack:
            return _hec(400, "ACK is disabled", 14)
        channel, refusal = self._channel(request)
        if refusal is not None or channel is None:
            return refusal or _hec(400, "Data channel is missing", 10)
        try:
            ids = json.loads(request[BODY])["acks"]
        except (ValueError, KeyError, TypeError):
            return _hec(400, "Invalid data format", 6)
        now = time.monotonic()
        answer: dict[str, bool] = {}
        with self._lock:
            for ack_id in ids:
                pending = self._pending.get((channel, ack_id))
                done = pending is not None and pending[0] <= now
                answer[str(ack_id)] = done
                if done and pending is not None:
                    # Splunk forgets an ack once it was reported true.
                    del self._pending[(channel, ack_id)]
                    self.acked.append((channel, ack_id))
                    self._state.docs.extend(pending[1])
            self._lock.notify_all()
        return web.json_response({"acks": answer})


def _hec(status: int, text: str, code: int, **extra: Any) -> web.Response:
    return web.json_response({"text": text, "code": code, **extra}, status=status)


# -- Loki --------------------------------------------------------------------

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _labels_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class LokiFake(FakeServer):
    """``/loki/api/v1/push`` like Loki with ordered writes per stream."""

    def __init__(
        self, *, max_labels: int = 15, oldest_ns: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.max_labels = max_labels
        self.oldest_ns = oldest_ns
        self._last: dict[tuple[tuple[str, str], ...], tuple[int, str]] = {}
        self.entries: list[tuple[dict[str, str], str, str, dict[str, str]]] = []

    def stored(self) -> list[tuple[dict[str, str], str, str, dict[str, str]]]:
        """(labels, ns timestamp, line, structured metadata) in arrival order."""
        with self._lock:
            return list(self.entries)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/loki/api/v1/push", self._push)
        app.router.add_get("/ready", self._ready_endpoint)

    async def _ready_endpoint(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ready")

    async def _push(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            return web.Response(status=415, text=f"unsupported Content-Type {request.content_type}")
        try:
            streams = self._validate(json.loads(request[BODY]))
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"loghttp: {exc}")
        ignored: list[str] = []
        total = 0
        with self._lock:
            for labels, values in streams:
                key = tuple(sorted(labels.items()))
                for ts_text, line, meta in values:
                    total += 1
                    ts = int(ts_text)
                    last = self._last.get(key)
                    if self.oldest_ns is not None and ts < self.oldest_ns:
                        reason = "entry too far behind, entry timestamp is: "
                        ignored.append(f"entry with timestamp {ts} ignored, reason: '{reason}"
                                       f"{ts}, oldest acceptable timestamp is: {self.oldest_ns}' "
                                       f"for stream: {_labels_text(labels)},")  # fmt: skip
                        continue
                    if last is not None and ts < last[0]:
                        ignored.append(f"entry with timestamp {ts} ignored, reason: 'entry out of "
                                       f"order' for stream: {_labels_text(labels)},")  # fmt: skip
                        continue
                    if last == (ts, line):
                        continue  # exact duplicate: Loki drops it silently
                    self._last[key] = (ts, line)
                    self.entries.append((labels, ts_text, line, meta))
                    self._state.docs.append(json.loads(line))
            self._lock.notify_all()
        if ignored:
            text = "\n".join(ignored) + f"\ntotal ignored: {len(ignored)} out of {total}"
            return web.Response(status=400, text=text)
        return web.Response(status=204)

    def _validate(self, data: Any) -> list[tuple[dict[str, str], list[tuple[str, str, Any]]]]:
        out = []
        for stream in data["streams"]:
            labels = stream["stream"]
            if not isinstance(labels, dict) or not labels:
                raise ValueError("error at least one label pair is required per stream")
            if len(labels) > self.max_labels:
                raise ValueError(f"entry for stream '{_labels_text(labels)}' has {len(labels)} "
                                 f"label names; limit {self.max_labels}")  # fmt: skip
            for name, value in labels.items():
                if not _LABEL_NAME.match(name) or not isinstance(value, str) or not value:
                    raise ValueError(f"error parsing labels: invalid label {name!r}")
            values = []
            for value in stream["values"]:
                if not 2 <= len(value) <= 3:
                    raise ValueError("entry must have 2 or 3 elements")
                ts, line = value[0], value[1]
                if not isinstance(ts, str) or not ts.isdigit():
                    raise ValueError(f"timestamp must be a string of nanoseconds, got {ts!r}")
                if not isinstance(line, str):
                    raise ValueError("line must be a string")
                meta = value[2] if len(value) == 3 else {}
                if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                    raise ValueError("structured metadata must map names to strings")
                values.append((ts, line, meta))
            out.append((labels, values))
        return out


# -- test settings and documents ---------------------------------------------


class PlainSecret:
    """Stands in for ``cwconsumer.config.Secret``: ``get()`` gives the text."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"


@dataclass(frozen=True)
class SinkTestSettings:
    """The sink part of the configuration, with test-friendly defaults."""

    sink_url: str
    sink_format: str = "ndjson"
    sink_username: str | None = None
    sink_password: PlainSecret | None = None
    sink_token: PlainSecret | None = None
    sink_headers: tuple[tuple[str, str], ...] = ()
    sink_gzip: bool = False
    sink_gzip_level: int = 6
    sink_timeout_s: float = 5.0
    sink_concurrency: int = 2
    sink_index: str = "logs-aws.cloudwatch-default"
    splunk_ack: bool = False
    splunk_sourcetype: str = "aws:cloudwatchlogs"
    splunk_index: str | None = None
    loki_labels: tuple[tuple[str, str], ...] = ()
    sink_ca_file: str | None = None
    sink_max_request_bytes: int = 10 * 1024 * 1024
    otlp_encoding: str = "protobuf"
    region: str = "us-east-1"


def sample_doc(
    i: int,
    ts_ms: int,
    *,
    group: str = "/aws/lambda/orders",
    stream: str = "2026/11/21/[$LATEST]abc",
) -> dict[str, Any]:
    """A document shaped like the ones cwconsumer ships."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000))
    return {
        "@timestamp": f"{when}.{ts_ms % 1000:03d}Z",
        "message": f"event {i} of {stream}",
        "event": {"id": f"{zlib.crc32(f'{group}|{stream}'.encode()):08x}-{ts_ms}-{i}"},
        "aws": {"cloudwatch": {"log_group": group, "log_stream": stream}},
        "cloud": {"provider": "aws", "region": "us-east-1"},
    }


def sample_batch(
    n: int, start_ms: int = 1_732_183_200_123, step_ms: int = 1, **kw: Any
) -> OutBatch:
    """``n`` sample documents ``step_ms`` apart, as an OutBatch."""
    times = [start_ms + i * step_ms for i in range(n)]
    return OutBatch([sample_doc(i, t, **kw) for i, t in enumerate(times)], times)


# -- TLS ---------------------------------------------------------------------


def make_self_signed(directory: Path) -> tuple[Path, Path] | None:
    """A throwaway certificate for 127.0.0.1/localhost: (cert, key) paths.

    Uses the ``cryptography`` package, else the ``openssl`` CLI; None if neither.
    """
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    try:
        _self_signed_cryptography(cert_path, key_path)
        return cert_path, key_path
    except ImportError:
        pass
    cmd = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", str(key_path), "-out", str(cert_path),
    ]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return cert_path, key_path


def _self_signed_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cwconsumer test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# -- command line ------------------------------------------------------------

_KINDS: dict[str, type[FakeServer]] = {
    "recording": RecordingSink,
    "elasticsearch": ElasticsearchFake,
    "splunk": SplunkHecFake,
    "loki": LokiFake,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake sink in the foreground.")
    parser.add_argument("kind", choices=sorted(_KINDS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", help="required token (Splunk token for splunk)")
    parser.add_argument("--ack", action="store_true", help="splunk: indexer acknowledgement")
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = {"port": args.port}
    if args.token:
        kwargs["token"] = args.token
    if args.ack:
        kwargs["ack"] = True
    fake = _KINDS[args.kind](**kwargs).start()
    print(f"{args.kind} fake listening on {fake.url}", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(1)
            docs = fake.docs()
            if len(docs) != seen:
                seen = len(docs)
                print(f"{seen} documents", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
