"""The demo's sink: a threaded HTTP receiver that counts NDJSON documents by ``event.id``.

It stands in for Logstash's ``http`` input or Elasticsearch: every document is
counted once by ``event.id`` (a second copy is a re-delivery), the first copy of
each is kept per stream in arrival order, and the parsed ``aws.lambda`` fields
of REPORT lines are kept for the Lambda report. It also holds the crash's trip
wire (:class:`Receiver`).
"""

from __future__ import annotations

import gzip
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from cwconsumer.demo.settings import TRIP_HOLD_S

__all__ = ["Receiver", "Tally"]


@dataclass(slots=True)
class Tally:
    """What the receiver has seen; guarded by :attr:`Receiver.lock`."""

    ids: set[str] = field(default_factory=set)
    by_group: Counter[str] = field(default_factory=Counter)
    streams: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    """First deliveries per stream, in arrival order: ``(@timestamp, message)``."""
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Parsed ``aws.lambda`` fields of REPORT lines, per log group."""
    unique: int = 0
    redelivered: int = 0
    malformed: int = 0
    errors: int = 0
    """Requests the receiver failed to handle (a bug in the demo)."""
    requests: int = 0
    active: int = 0


class Receiver:
    """An HTTP endpoint in a thread taking NDJSON batches, as Logstash's ``http`` input would.

    Every document is counted once by ``event.id``; a document seen again is a
    re-delivery. A request whose body did not arrive whole (the sender died
    mid-send) is dropped, as a real server drops it.

    The crash trip wire: once :attr:`trip_at` unique events have arrived, the
    request that crossed the line sets :attr:`tripped` and holds its answer
    until :attr:`release` is set, so the crash lands while that batch is
    received but not yet confirmed — the case at-least-once delivery is about.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tally = Tally()
        self.trip_at: int | None = None
        self.tripped = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                with receiver.lock:
                    receiver.tally.active += 1
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length)
                    if len(body) < length:
                        self.close_connection = True
                        return
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    if receiver.ingest(body):
                        receiver.release.wait(TRIP_HOLD_S)
                    answer = b'{"ok":true}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except ConnectionError:
                    self.close_connection = True  # the sender is gone: the crash
                finally:
                    with receiver.lock:
                        receiver.tally.active -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the tour's output clean

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that died mid-request (the crash) resets its connection: expected.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    with receiver.lock:
                        receiver.tally.errors += 1

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where the consumer sends (``CWC_SINK_URL``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/ingest"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def ingest(self, body: bytes) -> bool:
        """Count one request's documents; True if it crossed :attr:`trip_at`."""
        docs: list[dict[str, Any]] = []
        malformed = 0
        for raw in body.split(b"\n"):
            if not raw.strip():
                continue
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                doc = None
            event = doc.get("event") if isinstance(doc, dict) else None
            if not isinstance(event, dict) or not isinstance(event.get("id"), str):
                malformed += 1
                continue
            docs.append(doc)
        with self.lock:
            t = self.tally
            t.requests += 1
            t.malformed += malformed
            for doc in docs:
                event_id = doc["event"]["id"]
                if event_id in t.ids:
                    t.redelivered += 1
                    continue
                t.ids.add(event_id)
                t.unique += 1
                aws = doc.get("aws") or {}
                cw = aws.get("cloudwatch") or {}
                group, stream = cw.get("log_group", "?"), cw.get("log_stream", "?")
                t.by_group[group] += 1
                t.streams.setdefault((group, stream), []).append(
                    (doc.get("@timestamp", ""), doc.get("message", ""))
                )
                fields = aws.get("lambda")
                if fields and fields.get("type") == "report":
                    t.reports.setdefault(group, []).append(fields)
            if self.trip_at is None or t.unique < self.trip_at or self.tripped.is_set():
                return False
            self.tripped.set()
            return True

    def counts(self) -> tuple[Counter[str], int, int]:
        """``(unique per group, re-deliveries, requests)``."""
        with self.lock:
            t = self.tally
            return Counter(t.by_group), t.redelivered, t.requests

    def settle(self, timeout_s: float = 3.0) -> None:
        """Wait until no request is being handled."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.tally.active == 0:
                    return
            time.sleep(0.02)
