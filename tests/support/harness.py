"""Harness for the reliability tests: the product as a subprocess against the
CloudWatch Logs stand-in (``tests/support/fakecwl.py``), its admin endpoints,
read-only looks at its SQLite file, numbered events with the ``event.id``
each must carry, and two sinks with faults the plain RecordingSink cannot
express:

- :class:`PickySink` refuses requests by *content* (an event whose message
  holds a marker gets a 400 or 413 with a body), and can cap the number of
  documents a request may carry (413 above it);
- :class:`ChaosSink` fails requests at random from a seeded RNG (500, 429,
  hang, connection reset) and records every accepted request with the
  *epoch* (product run) it arrived in, so a crash test can tell which run
  delivered what.

Numbered events: :class:`Writer` puts ``"<group>|<stream>|<index>"`` messages
with never-decreasing timestamps (often several in one millisecond), so the
index in the message is the event's position in the stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from cwconsumer.eventid import event_id
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.fakesinks import BODY, RecordingSink, decode_documents

Key = tuple[str, str]
"""(group, stream)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Settings every test run of the product starts from: short intervals, no
# admin server, JSON logs, a quick lease.
TEST_SETTINGS = {
    "CWC_ADMIN_ADDR": "off",
    "CWC_POLL_INTERVAL": "500ms",
    "CWC_DISCOVERY_INTERVAL": "1s",
    "CWC_BATCH_MAX_WAIT": "200ms",
    "CWC_SHUTDOWN_TIMEOUT": "10s",
    "CWC_LOG_LEVEL": "INFO",
    "CWC_LOG_FORMAT": "json",
    "CWC_LEASE_HEARTBEAT": "500ms",
    "CWC_LEASE_TTL": "3s",
}


def run_env(
    aws_env: dict[str, str], sink_url: str, db_path: Path, **overrides: str
) -> dict[str, str]:
    """Environment for ``cwconsumer run``: this process's, minus any CWC_/AWS_
    variable, plus ``aws_env`` (where CloudWatch Logs is), the sink, the
    database, :data:`TEST_SETTINGS` and ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CWC_", "AWS_"))}
    env.update(aws_env)
    env.update(TEST_SETTINGS, CWC_SINK_URL=sink_url, CWC_DB_PATH=str(db_path))
    env.update(overrides)
    return env


def fake_env(
    fake: FakeCloudWatchLogs, sink_url: str, db_path: Path, **overrides: str
) -> dict[str, str]:
    """Environment for ``cwconsumer run`` against the stand-in (like
    ``tests.conftest.product_env`` for moto)."""
    return run_env(fake.client_env(), sink_url, db_path, **overrides)


def run_cli(
    env: dict[str, str], *args: str, timeout_s: float = 60.0, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cwconsumer <args>`` to completion (``user``: run as that uid)."""
    return subprocess.run(
        [sys.executable, "-m", "cwconsumer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        user=user,
        check=False,
    )


def log_records(text: str) -> list[dict[str, Any]]:
    """The product's JSON log lines (other lines are skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


# -- admin endpoints -------------------------------------------------------------------


class Admin:
    """``/healthz``, ``/stats`` and ``/metrics`` of a running product."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> tuple[int, bytes] | None:
        """(status, body), or None while nothing answers."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except OSError:
            return None

    def healthz(self) -> tuple[int, dict[str, Any]] | None:
        got = self.get("/healthz")
        return None if got is None else (got[0], json.loads(got[1]))

    def stats(self) -> dict[str, Any] | None:
        got = self.get("/stats")
        return None if got is None or got[0] != 200 else json.loads(got[1])

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        got = self.get("/metrics")
        if got is None or got[0] != 200:
            return None
        out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(got[1].decode()):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample's value (None if the server or the sample is missing)."""
        all_ = self.metrics()
        if all_ is None:
            return None
        return all_.get((name, frozenset(labels.items())))


# -- numbered events -----------------------------------------------------------------


def message(group: str, stream: str, index: int) -> str:
    return f"{group}|{stream}|{index:06d}"


def parse_message(text: str) -> tuple[Key, int]:
    """(group, stream) and index of a numbered message (anything may follow the index)."""
    group, stream, rest = text.split("|", 2)
    return (group, stream), int(rest[:6])


class Writer:
    """Puts numbered events into the stand-in: per stream, timestamps never
    decrease and events often share a millisecond (seeded), so the index in
    the message is the event's position in the stream. Can keep appending
    from a thread (:meth:`start_appending`) while a product reads."""

    def __init__(self, fake: FakeCloudWatchLogs, *, seed: int, start_ms: int | None = None):
        self.fake = fake
        self._rng = random.Random(seed)
        self._start_ms = start_ms if start_ms is not None else int(time.time() * 1000) - 3_600_000
        self._next: dict[Key, int] = {}
        self._last_ts: dict[Key, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def put(
        self,
        group: str,
        stream: str,
        n: int,
        *,
        burst: tuple[int, int] = (1, 5),
        step_ms: tuple[int, int] = (1, 3),
        now: bool = False,
        suffixes: dict[int, str] | None = None,
    ) -> list[str]:
        """Append ``n`` events: runs of ``burst`` events share a millisecond,
        runs are ``step_ms`` apart; with ``now`` the times are the wall clock
        (never going back).
        ``suffixes`` adds text after the number of the events it names."""
        key = (group, stream)
        with self._lock:
            first = self._next.get(key, 0)
            ts = self._last_ts.get(key, self._start_ms)
            if now:
                ts = max(ts, int(time.time() * 1000))
            out: list[tuple[int, str]] = []
            left_in_burst = self._rng.randint(*burst)
            for i in range(first, first + n):
                if left_in_burst == 0:
                    ts += self._rng.randint(*step_ms)
                    left_in_burst = self._rng.randint(*burst)
                left_in_burst -= 1
                out.append((ts, message(group, stream, i) + (suffixes or {}).get(i, "")))
            self.fake.put(group, stream, out)
            self._next[key] = first + n
            self._last_ts[key] = ts
        return [m for _, m in out]

    def count(self, key: Key) -> int:
        with self._lock:
            return self._next.get(key, 0)

    def counts(self) -> dict[Key, int]:
        with self._lock:
            return dict(self._next)

    def start_appending(
        self, keys: Sequence[Key], *, every_s: float = 0.05, per_tick: tuple[int, int] = (0, 6)
    ) -> None:
        """Keep appending a few events to each of ``keys`` until :meth:`stop`."""
        rng = random.Random(self._rng.random())

        def loop() -> None:
            while not self._stop.wait(every_s):
                for g, s in keys:
                    n = rng.randint(*per_tick)
                    if n:
                        self.put(g, s, n, now=True)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="appender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


@dataclass(frozen=True)
class StreamTruth:
    """What one stream of the stand-in holds, and the id every event must carry."""

    key: Key
    timestamps: list[int]
    messages: list[str]
    ids: list[str]

    @classmethod
    def read(cls, fake: FakeCloudWatchLogs, group: str, stream: str) -> StreamTruth:
        events = fake.events(group, stream)
        stamps = [ts for ts, _, _ in events]
        ids: list[str] = []
        prev, ordinal = None, -1
        for ts in stamps:
            ordinal = ordinal + 1 if ts == prev else 0
            prev = ts
            # The product reads the stand-in's account (from a group's ARN)
            # in its Region: both are part of event.id.
            ids.append(
                event_id(group, stream, ts, ordinal, account=fake.account_id, region=fake.region)
            )
        return cls((group, stream), stamps, [m for _, m, _ in events], ids)

    def __len__(self) -> int:
        return len(self.messages)

    def id_of(self) -> dict[str, str]:
        """message -> the id its event must carry."""
        return dict(zip(self.messages, self.ids, strict=True))

    def position_after(self, last_ts: int | None, last_ord: int) -> int:
        """Index of the first event after the one a checkpoint names as last delivered."""
        if last_ts is None:
            return 0
        first = self.timestamps.index(last_ts)
        assert self.timestamps[first + last_ord] == last_ts, "checkpoint names no event"
        return first + last_ord + 1


# -- the checkpoint database, read-only -------------------------------------------------


@dataclass(frozen=True)
class StreamRowView:
    token: str | None
    start_time_ms: int | None
    skip: int
    last_ts: int | None
    last_ord: int
    delivered: int
    dead_lettered: int
    state: str


def read_checkpoints(db_path: Path) -> dict[Key, StreamRowView]:
    """Every stream row, read through a read-only connection (safe beside a
    running product, and right after one was killed: WAL content is read)."""
    if not db_path.exists():
        return {}
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        try:
            rows = conn.execute(
                "SELECT group_name, stream_name, token, start_time_ms, skip, last_ts, last_ord, "
                "delivered, dead_lettered, state FROM streams"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}  # killed before the first migration committed
            raise
    finally:
        conn.close()
    return {(r[0], r[1]): StreamRowView(*r[2:]) for r in rows}


def read_rows(db_path: Path, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


# -- sinks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a PickySink answered to one POST."""

    at: float  # time.monotonic() on arrival
    status: int
    docs: int


class PickySink(RecordingSink):
    """Refuses any request holding an event whose message contains a marker
    (``refuse(marker, status, body)``), with ``max_docs`` every request
    carrying more documents (413), and the next requests whatever they hold
    (``fail_next(status, body, times)``). Accepted documents are recorded as
    usual; ``answers()`` lists every POST's arrival time, status and size."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rules: dict[str, tuple[int, str]] = {}
        self._next: list[tuple[int, str]] = []
        self.max_docs: int | None = None
        self._answers: list[Answer] = []

    def refuse(self, marker: str, status: int, body: str) -> None:
        with self._lock:
            self._rules[marker] = (status, body)

    def fail_next(self, status: int, body: str, times: int = 1) -> None:
        with self._lock:
            self._next.extend([(status, body)] * times)

    def accept_all(self) -> None:
        with self._lock:
            self._rules.clear()
            self._next.clear()
            self.max_docs = None

    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            return web.Response(text="ok")
        at = time.monotonic()
        docs = decode_documents(request[BODY], request.content_type)
        with self._lock:
            rules = dict(self._rules)
            max_docs = self.max_docs
            queued = self._next.pop(0) if self._next else None
        status, text = 200, "ok"
        for marker, (code, body) in rules.items():
            if any(marker in str(d.get("message", "")) for d in docs):
                status, text = code, body
                break
        else:
            if max_docs is not None and len(docs) > max_docs:
                status, text = 413, f"request entity too large: {len(docs)} > {max_docs} documents"
        if queued is not None:
            status, text = queued
        with self._lock:
            self._answers.append(Answer(at, status, len(docs)))
        if status == 200:
            self._add_docs(docs)
        return web.Response(status=status, text=text)


class ChaosSink(RecordingSink):
    """Fails requests at random (seeded): 500, 429 with ``Retry-After: 1``, a
    hang longer than the product's timeout, or a TCP reset; answers the rest
    with 200 after a short random latency, so a kill often lands while a
    batch is in flight. A failed request records nothing. Every accepted
    request is recorded with ``epoch`` as it was when the request arrived."""

    def __init__(
        self,
        *,
        seed: int,
        p_500: float = 0.06,
        p_429: float = 0.03,
        p_hang: float = 0.015,
        p_reset: float = 0.04,
        hang_s: float = 2.5,
        latency_s: float = 0.15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._rng = random.Random(seed)
        self._p = (p_500, p_429, p_hang, p_reset)
        self.hang_s = hang_s
        self.latency_s = latency_s
        self.epoch = 0
        self.chaos = True
        self._accepted: list[tuple[int, list[Any]]] = []
        self.faults: Counter[str] = Counter()

    def accepted(self) -> list[tuple[int, list[Any]]]:
        """(epoch, documents) of every accepted request, in arrival order."""
        with self._lock:
            return list(self._accepted)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            return web.Response(text="ok")
        epoch = self.epoch
        with self._lock:
            r = self._rng.random() if self.chaos else 1.0
            latency = self._rng.uniform(0, self.latency_s)
        p_500, p_429, p_hang, p_reset = self._p
        fault = ""
        if r < p_500:
            fault = "500"
        elif r < p_500 + p_429:
            fault = "429"
        elif r < p_500 + p_429 + p_hang:
            fault = "hang"
        elif r < p_500 + p_429 + p_hang + p_reset:
            fault = "reset"
        if fault:
            with self._lock:
                self.faults[fault] += 1
        if fault == "500":
            return web.Response(status=500, text="internal error (injected)")
        if fault == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
            return web.Response(status=503, text="late answer nobody waits for")
        if fault == "reset":
            return self._reset(request)
        docs = decode_documents(request[BODY], request.content_type)
        with self._lock:
            self._accepted.append((epoch, docs))
        self._add_docs(docs)
        await asyncio.sleep(latency)
        return web.Response(text="ok")


# -- checks shared by the tests ---------------------------------------------------------


def delivered_indexes(docs: Iterable[dict[str, Any]]) -> dict[Key, list[int]]:
    """Per stream, the event indexes in the order the sink received them."""
    out: dict[Key, list[int]] = {}
    for d in docs:
        key, i = parse_message(d["message"])
        out.setdefault(key, []).append(i)
    return out


def check_ids(docs: Iterable[dict[str, Any]], truths: Iterable[StreamTruth]) -> None:
    """Every shipped document is an event of one of ``truths`` and carries
    exactly the id that event must have (the same on every delivery)."""
    want: dict[str, tuple[Key, str]] = {}
    for t in truths:
        want.update((m, (t.key, i)) for m, i in t.id_of().items())
    for d in docs:
        assert d["message"] in want, f"unknown event shipped: {d['message']!r}"
        key, eid = want[d["message"]]
        assert d["event"]["id"] == eid, f"{d['message']}: event.id {d['event']['id']} != {eid}"
        cw = d["aws"]["cloudwatch"]
        assert (cw["log_group"], cw["log_stream"]) == key
