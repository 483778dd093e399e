"""``cwconsumer demo``: the whole product on one machine, no AWS account needed.

::

    this process                                   child process
    ├── moto server (thread)  ◄── GetLogEvents ──  python -m cwconsumer run
    │     CloudWatch Logs stand-in, filled with        (checkpoints in a temp dir,
    │     realistic Lambda and ECS logs                 its log to a file there)
    └── HTTP receiver (thread) ◄── NDJSON ─────────┘
          counts documents by event.id, keeps the parsed Lambda REPORT figures

The tour: ship until about half is delivered, SIGKILL the consumer (a crash),
show its checkpoints, add events "while it was down", start it again and watch
it resume from the checkpoints, SIGTERM it once caught up (exit 0), then check
that every event arrived exactly once by ``event.id``, in stream order, and
print a summary and a Lambda report drawn from the parsed REPORT lines.

The demo doubles as a smoke test: it exits 1 when anything is missing, out of
order, unparsed, or re-delivered beyond what was in flight at the crash.
Everything it starts (moto, the receiver, the child, the temp dir) is cleaned
up on any exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

import anyio
import orjson
from moto.server import ThreadedMotoServer

import cwconsumer
from cwconsumer.demodata import (
    ECS_DESCRIPTION,
    ECS_GROUP,
    FUNCTIONS,
    DemoLogs,
    StreamLog,
    lambda_group,
)
from cwconsumer.statusview import collect_status, render_status

__all__ = ["run_demo"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REGION: Final = "us-east-1"
SEED: Final = 20261121

DEFAULT_EVENTS: Final = 30_000
QUICK_EVENTS: Final = 5_000
LATE_SHARE: Final = 0.15
"""Events added while the consumer is down, as a part of the first wave."""
LATE_MIN: Final = 50
MAX_PER_STREAM: Final = 20_000
"""``--events`` cap: more would put Lambda timestamps past what CloudWatch accepts."""
CRASH_AT: Final = 0.5
"""The crash comes once this part of the first wave has arrived."""
LEASE_TTL: Final = "2s"
PHASE_TIMEOUT_S: Final = 60.0
"""Longest wait for a phase, plus 1 s per 2,000 events."""
SIGTERM_WAIT_S: Final = 30.0
POLL_S: Final = 0.1
TRIP_HOLD_S: Final = 5.0
"""Longest time the batch that trips the crash waits for it (the kill comes at once)."""
TAIL_LINES: Final = 25

# The demo's settings for `cwconsumer run`; everything else is the default.
CONSUMER_SETTINGS: Final = {
    "CWC_LOG_GROUP_PREFIXES": "/aws/lambda/,/ecs/",
    "CWC_POLL_INTERVAL": "1s",
    "CWC_DISCOVERY_INTERVAL": "2s",
    "CWC_BATCH_MAX_WAIT": "250ms",
    "CWC_API_RATE": "50",
    # Small batches and buffer: many batches in flight, streams interleaved.
    "CWC_BATCH_MAX_EVENTS": "500",
    "CWC_BUFFER_MAX_EVENTS": "4000",
    "CWC_LEASE_HEARTBEAT": "500ms",
    "CWC_LEASE_TTL": LEASE_TTL,
    "CWC_ADMIN_ADDR": "off",
    "CWC_LOG_LEVEL": "INFO",
    "CWC_LOG_FORMAT": "text",
}


class DemoFailed(Exception):
    """The tour could not finish or a check failed; the message says which."""


# -- output -----------------------------------------------------------------------------


class _Out:
    """Plain text to a terminal or a pipe; colour and live redraw only on a TTY."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.color = (
            self.tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        )
        encoding = (getattr(stream, "encoding", None) or "ascii").lower().replace("-", "")
        self.unicode = encoding in ("utf8", "utf16", "utf32")
        self._live = 0

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._paint("1", text)

    def dim(self, text: str) -> str:
        return self._paint("2", text)

    def good(self, text: str) -> str:
        return self._paint("32", text)

    def bad(self, text: str) -> str:
        return self._paint("31;1", text)

    def mark(self, ok: bool) -> str:
        sym = ("✓" if ok else "✗") if self.unicode else ("ok" if ok else "XX")
        return self.good(sym) if ok else self.bad(sym)

    def line(self, text: str = "") -> None:
        self._live = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def live(self, lines: Sequence[str]) -> None:
        """Redraw the block of lines written by the previous call (TTY only)."""
        if not self.tty:
            return
        up = f"\x1b[{self._live}F" if self._live else ""
        self.stream.write(up + "".join(f"\x1b[2K{text}\n" for text in lines))
        self.stream.flush()
        self._live = len(lines)

    def bar(self, done: int, total: int, width: int = 24) -> str:
        frac = 1.0 if total <= 0 else min(1.0, done / total)
        filled = round(frac * width)
        full, empty = ("█", "░") if self.unicode else ("#", ".")
        return self.good(full * filled) + self.dim(empty * (width - filled))


def _n(value: int) -> str:
    return f"{value:,}"


def _iso(ms: int) -> str:
    """The shipped ``@timestamp`` of an event time (written here, not borrowed from
    the product, so that the check below is independent of it)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


# -- the receiver -----------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """What the receiver has seen; guarded by :attr:`_Receiver.lock`."""

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


class _Receiver:
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
        self.tally = _Tally()
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
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/ingest"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
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


# -- CloudWatch Logs stand-in -----------------------------------------------------------


class _CloudWatch:
    """moto in server mode, in a thread, filled through a plain botocore client."""

    def __init__(self) -> None:
        # werkzeug logs every request, and moto's errors, to stderr unless told otherwise;
        # an error reaches the client here anyway, and is reported from there.
        logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._client: Any = None
        self._groups: set[str] = set()
        self._streams: set[tuple[str, str]] = set()

    @property
    def url(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> None:
        import botocore.config
        import botocore.session

        self._server.start()
        self._client = botocore.session.Session().create_client(
            "logs",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
            config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 2}),
        )

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._server.stop()

    def put(self, logs: Sequence[StreamLog]) -> None:
        """Create what is missing and put the events, in calls PutLogEvents accepts."""
        for log in logs:
            if log.group not in self._groups:
                self._client.create_log_group(logGroupName=log.group)
                self._groups.add(log.group)
            if (log.group, log.stream) not in self._streams:
                self._client.create_log_stream(logGroupName=log.group, logStreamName=log.stream)
                self._streams.add((log.group, log.stream))
            for chunk in _put_chunks(log.events):
                answer = self._client.put_log_events(
                    logGroupName=log.group,
                    logStreamName=log.stream,
                    logEvents=[{"timestamp": ts, "message": m} for ts, m in chunk],
                )
                if answer.get("rejectedLogEventsInfo"):
                    raise DemoFailed(f"moto refused events of {log.group} {log.stream}")


def _put_chunks(events: Sequence[tuple[int, str]]) -> Iterator[Sequence[tuple[int, str]]]:
    """At most 10,000 events and 1 MiB (message bytes + 26 each) per PutLogEvents call."""
    start, size = 0, 0
    for i, (_, message) in enumerate(events):
        n = len(message.encode()) + 26
        if i > start and (i - start >= 10_000 or size + n > 1_000_000):
            yield events[start:i]
            start, size = i, 0
        size += n
    if start < len(events):
        yield events[start:]


# -- the consumer -----------------------------------------------------------------------


class _Consumer:
    """``python -m cwconsumer run`` as a child process, its log appended to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self._env = env
        self.log_path = log_path
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> int:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- demo: start #{self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cwconsumer", "run"],
                env=self._env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self.proc.pid

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoFailed(
                f"the consumer stopped by itself with exit code {self.proc.returncode}"
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout_s: float) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise DemoFailed(
                f"the consumer did not stop within {timeout_s:.0f} s of SIGTERM"
            ) from None

    def cleanup(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


def _consumer_env(moto_url: str, sink_url: str, db_path: Path) -> dict[str, str]:
    """The child's environment: the caller's, without any AWS or CWC setting that
    could point it elsewhere (a real account, a real sink), plus the demo's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CWC_"))}
    # The child runs this very package, also from a source tree that is not installed.
    package_root = str(Path(cwconsumer.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(CONSUMER_SETTINGS)
    env.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_EC2_METADATA_DISABLED": "true",
            "CWC_SINK_URL": sink_url,
            "CWC_DB_PATH": str(db_path),
        }
    )
    return env


# -- the tour ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    first: int
    per_stream: int | None


def _plan(args: argparse.Namespace) -> _Plan:
    per_stream: int | None = getattr(args, "events", None)
    if per_stream is not None and not 1 <= per_stream <= MAX_PER_STREAM:
        raise DemoFailed(f"--events: between 1 and {_n(MAX_PER_STREAM)} events per stream")
    first = QUICK_EVENTS if getattr(args, "quick", False) else DEFAULT_EVENTS
    return _Plan(first, per_stream)


@dataclass(slots=True)
class _Written:
    """Everything put into CloudWatch Logs, per stream, in stream order."""

    streams: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, logs: Sequence[StreamLog]) -> int:
        """Record a wave; returns how many of its streams are new."""
        new = 0
        for log in logs:
            key = (log.group, log.stream)
            new += key not in self.streams
            self.streams.setdefault(key, []).extend(log.events)
        return new

    def by_group(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (group, _), events in self.streams.items():
            out[group] += len(events)
        return out

    @property
    def total(self) -> int:
        return sum(len(events) for events in self.streams.values())


def _group_order() -> list[str]:
    return [lambda_group(f.name) for f in FUNCTIONS] + [ECS_GROUP]


@dataclass(slots=True)
class _Crash:
    """What the tour learnt at the crash."""

    received: int = 0
    """Unique events at the receiver once the crashed run's last requests settled."""
    checkpointed: int = 0
    """Events the checkpoints cover (``delivered`` in ``cwconsumer status``)."""

    @property
    def in_flight(self) -> int:
        return max(0, self.received - self.checkpointed)


class _Tour:
    """The demo's phases, in order; see the module docstring."""

    def __init__(self, out: _Out, plan: _Plan, workdir: Path, stack: contextlib.ExitStack) -> None:
        self.out = out
        self.plan = plan
        self.workdir = workdir
        self.stack = stack
        self.db_path = workdir / "state.db"
        self.logs = DemoLogs(SEED, int(time.time() * 1000) - 50 * 60_000)
        self.written = _Written()
        self.cloudwatch = _CloudWatch()
        self.receiver = _Receiver()
        self.consumer: _Consumer | None = None
        self.crash = _Crash()
        self.started = time.monotonic()
        self.shipping_s = 0.0
        self.timeout_s = PHASE_TIMEOUT_S

    def run(self) -> None:
        self._set_up()
        consumer = self._start_consumer()
        self._first_run(consumer)
        self._show_checkpoints()
        self._restart(consumer)
        self._summary()

    # -- phases -----------------------------------------------------------------------

    def _set_up(self) -> None:
        out = self.out
        out.line(
            f"{out.bold('cwconsumer demo')}: the whole pipeline on this machine, "
            "no AWS account needed"
        )
        out.line()
        self.cloudwatch.start()
        self.stack.callback(self.cloudwatch.stop)
        first = self.logs.generate(self.plan.first, per_stream=self.plan.per_stream)
        self.cloudwatch.put(first)
        self.written.add(first)
        self.timeout_s = PHASE_TIMEOUT_S + self.written.total / 2000
        out.line(
            f"{out.bold('1.')} CloudWatch Logs stand-in (moto) at {self.cloudwatch.url}, "
            "with an hour of logs:"
        )
        counts = self.written.by_group()
        streams = Counter(group for group, _ in self.written.streams)
        about = {lambda_group(f.name): f.description for f in FUNCTIONS}
        about[ECS_GROUP] = ECS_DESCRIPTION
        for group in _group_order():
            out.line(
                f"     {group:<28} {streams[group]:>3} streams {_n(counts[group]):>8} events  "
                + out.dim(about[group])
            )
        self.receiver.start()
        self.stack.callback(self.receiver.stop)
        out.line(
            f"{out.bold('2.')} HTTP receiver at {self.receiver.url}, standing in for "
            "Logstash or Elasticsearch"
        )

    def _start_consumer(self) -> _Consumer:
        out = self.out
        env = _consumer_env(self.cloudwatch.url, self.receiver.url, self.db_path)
        consumer = _Consumer(env, self.workdir / "consumer.log", self.workdir)
        self.consumer = consumer
        self.stack.callback(consumer.cleanup)
        pid = consumer.start()
        out.line(f"{out.bold('3.')} cwconsumer run (pid {pid}), configured by its environment:")
        prefixes = CONSUMER_SETTINGS["CWC_LOG_GROUP_PREFIXES"]
        out.line(
            out.dim(f"     CWC_LOG_GROUP_PREFIXES={prefixes}  CWC_SINK_URL={self.receiver.url}")
        )
        out.line(
            out.dim(f"     AWS_ENDPOINT_URL={self.cloudwatch.url}  CWC_DB_PATH={self.db_path}")
        )
        out.line()
        return consumer

    def _first_run(self, consumer: _Consumer) -> None:
        out = self.out
        total = self.written.total
        out.line(f"{out.bold('Shipping')} {_n(total)} events; the consumer will crash half-way.")
        self.receiver.trip_at = math.ceil(total * CRASH_AT)
        first_request = self._progress(lambda got: self.receiver.tripped.is_set())
        consumer.kill()
        self.receiver.release.set()
        self.shipping_s += time.monotonic() - first_request
        self.receiver.settle()
        received = sum(self.receiver.counts()[0].values())
        crash = out.bad("✗ Crash!" if out.unicode else "CRASH!")
        out.line(
            f"{crash} SIGKILL to pid {consumer.pid} with {_n(received)} of {_n(total)} events "
            "at the receiver, while it"
        )
        out.line("  waited for the answer to a batch: no chance to save a checkpoint for it.")
        out.line()

    def _show_checkpoints(self) -> None:
        out = self.out
        status = anyio.run(collect_status, str(self.db_path))
        self.crash.checkpointed = sum(int(g["delivered"]) for g in status["groups"])
        out.line(
            f"{out.bold('Checkpoints')} after the crash, as {out.bold('cwconsumer status')} "
            "shows them:"
        )
        text = anyio.run(_render_status, str(self.db_path)).splitlines()
        for line in text[1:]:  # the first line names the database
            if line.strip():
                out.line("   " + line)
        received = sum(self.receiver.counts()[0].values())
        in_flight = max(0, received - self.crash.checkpointed)
        out.line(
            f"   The receiver has {_n(received)} events and the checkpoints cover "
            f"{_n(self.crash.checkpointed)}."
        )
        if in_flight:
            out.line(
                f"   The {_n(in_flight)} in between were in flight (received, not confirmed) "
                "at the crash: they will come again."
            )
        else:
            out.line("   Nothing was in flight at the crash: nothing will come twice.")
        out.line()

    def _restart(self, consumer: _Consumer) -> None:
        out = self.out
        late = self.logs.generate(
            max(LATE_MIN, round(self.written.total * LATE_SHARE)), window_ms=3 * 60_000
        )
        self.cloudwatch.put(late)
        new_streams = self.written.add(late)
        late_events = sum(len(log.events) for log in late)
        out.line(
            f"While it was down the services kept logging: +{_n(late_events)} events "
            f"({new_streams} new streams, more in {len(late) - new_streams} others)."
        )
        # Every request of the crashed run has been handled by now.
        self.receiver.settle()
        self.crash.received = sum(self.receiver.counts()[0].values())
        restart_t = time.monotonic()
        pid = consumer.start()
        out.line(
            f"{out.bold('Restart')}: cwconsumer run (pid {pid}) waits as a standby until the "
            "dead run's lease expires"
        )
        out.line(
            f"(CWC_LEASE_TTL, {LEASE_TTL} here and 10s by default), then resumes every stream "
            "from its checkpoint."
        )
        total = self.written.total
        resumed_t = self._progress(lambda got: sum(got.values()) >= total)
        self.shipping_s += time.monotonic() - resumed_t
        _, redelivered, _ = self.receiver.counts()
        fresh = total - self.crash.received
        out.line(
            f"{out.mark(True)} Resumed {resumed_t - restart_t:.1f} s after the restart and "
            f"caught up: {_n(fresh)} new events and {_n(redelivered)} sent again,"
        )
        out.line(f"  not all {_n(total)} from the beginning.")
        rc = consumer.terminate(SIGTERM_WAIT_S)
        self.receiver.settle()
        if rc != 0:
            raise DemoFailed(f"after SIGTERM the consumer exited with {rc}, not 0")
        status = anyio.run(collect_status, str(self.db_path))
        covered = sum(int(g["delivered"]) for g in status["groups"])
        if covered != total:
            raise DemoFailed(
                f"after SIGTERM the checkpoints cover {_n(covered)} events, not {_n(total)}"
            )
        out.line(
            f"{out.mark(True)} SIGTERM: exit 0. The checkpoints cover all {_n(total)} events: "
            "a start now re-sends nothing."
        )
        out.line()

    def _progress(self, finished: Callable[[Counter[str]], bool]) -> float:
        """Draw per-group progress until ``finished(unique events per group)``.

        Returns when the first request of this phase reached the receiver
        (``time.monotonic()``), to tell start-up and standby from shipping.
        """
        assert self.consumer is not None
        out = self.out
        _, _, requests_before = self.receiver.counts()
        first_request: float | None = None
        want = self.written.by_group()
        goal = sum(want.values())
        deadline = time.monotonic() + self.timeout_s
        next_plain = time.monotonic() + 1.0
        last_plain = sum(self.receiver.counts()[0].values())
        while True:
            got, _, requests = self.receiver.counts()
            if first_request is None and requests > requests_before:
                first_request = time.monotonic()
            done = finished(got)
            lines = [
                f"   {group:<28} {out.bar(got[group], want[group])} "
                f"{_n(got[group]):>8} / {_n(want[group])}"
                for group in _group_order()
            ]
            out.live(lines)
            if done:
                break
            now = time.monotonic()
            if not out.tty and now >= next_plain:
                next_plain = now + 1.0
                n = sum(got.values())
                if n != last_plain:
                    last_plain = n
                    out.line(
                        f"   … {_n(n)} / {_n(goal)} events at the receiver ({100 * n // goal}%)"
                    )
            self.consumer.check_alive()
            if now > deadline:
                raise DemoFailed(
                    f"stuck: {_n(sum(got.values()))} of {_n(goal)} events arrived "
                    f"in {self.timeout_s:.0f} s"
                )
            if self.receiver.tripped.is_set():
                time.sleep(POLL_S)
            else:  # wake up at once when the crash trips
                self.receiver.tripped.wait(POLL_S)
        if not out.tty:
            for text in lines:
                out.line(text)
        return time.monotonic() if first_request is None else first_request

    # -- results ----------------------------------------------------------------------

    def _summary(self) -> None:
        out = self.out
        with self.receiver.lock:
            tally = self.receiver.tally
            arrived = {key: list(events) for key, events in tally.streams.items()}
            redelivered, malformed, errors = tally.redelivered, tally.malformed, tally.errors
            reports = {group: list(rows) for group, rows in tally.reports.items()}
        total = self.written.total
        lost, extra, disorder = _compare(self.written.streams, arrived)
        unique = sum(len(events) for events in arrived.values())
        in_flight = self.crash.in_flight
        invocations = Counter(inv.function for inv in self.logs.invocations)
        parsed = {f.name: len(reports.get(lambda_group(f.name), [])) for f in FUNCTIONS}
        problems: list[str] = []
        if lost:
            problems.append(f"{_n(lost)} events never arrived")
        if extra:
            problems.append(f"{_n(extra)} documents arrived that were never written")
        if disorder:
            problems.append(f"{disorder} streams arrived out of order")
        if malformed:
            problems.append(f"{_n(malformed)} lines at the receiver were not documents")
        if errors:
            problems.append(f"the receiver failed on {errors} requests")
        if redelivered > in_flight:
            problems.append(
                f"{_n(redelivered)} events sent twice, more than the {_n(in_flight)} in flight"
            )
        for name, count in parsed.items():
            if count != invocations[name]:
                problems.append(
                    f"{name}: {count} REPORT lines parsed for {invocations[name]} invocations"
                )
        groups = len({group for group, _ in self.written.streams})
        arrived_ok = not (lost or extra or disorder or malformed)
        parsed_ok = parsed == {f.name: invocations[f.name] for f in FUNCTIONS}
        rate = (total + redelivered) / max(0.001, self.shipping_s)
        pad = " " * 37
        out.line(out.bold("Summary"))
        out.line(
            f"   written to CloudWatch  {_n(total):>9}  events in {len(self.written.streams)} "
            f"streams of {groups} groups"
        )
        out.line(
            f"   at the receiver        {_n(unique):>9}  by event.id, every stream in order   "
            f"{out.mark(arrived_ok)} lost: {_n(lost)}"
        )
        out.line(
            f"   sent twice             {_n(redelivered):>9}  no more than was in flight at the "
            f"crash ({_n(in_flight)}),"
        )
        out.line(f"{pad}with the same event.id: a sink keyed on it (Elasticsearch")
        out.line(f"{pad}_id) overwrites them, no duplicates")
        out.line(
            f"   Lambda REPORT lines    {_n(sum(parsed.values())):>9}  parsed, one per "
            f"invocation   {out.mark(parsed_ok)}"
        )
        out.line(
            f"   throughput             {_n(round(rate)):>9}  events/s "
            + out.dim("(moto and the receiver run on this machine too)")
        )
        out.line()
        self._lambda_report(reports)
        out.line(
            out.dim(
                f"Done in {time.monotonic() - self.started:.0f} s. On your account: "
                "CWC_LOG_GROUP_PREFIXES=/aws/lambda/ \\"
            )
        )
        out.line(
            out.dim(
                "  CWC_SINK_URL=http://logstash:8080 cwconsumer run   "
                "(cwconsumer check tests the setup first)"
            )
        )
        if problems:
            raise DemoFailed("; ".join(problems))

    def _lambda_report(self, reports: dict[str, list[dict[str, Any]]]) -> None:
        """The per-function table, and what it suggests."""
        out = self.out
        out.line(f"{out.bold('Lambda report')}, from the parsed REPORT lines (aws.lambda.*):")
        # Columns: 2 + function 15, invocations 12, cold 5, durations 3 x 7 + 11,
        # 2 + memory 17, timeouts 8, errors 7: 100 characters.
        out.line(out.dim(f"{'':34}{' duration, ms ':-^32}  {' memory, MB ':-^17}"))
        out.line(
            out.dim(
                f"  {'FUNCTION':<15}{'INVOCATIONS':>12}{'COLD':>5}{'P50':>7}{'P95':>7}"
                f"{'MAX':>7}{'AVG BILLED':>11}  {'USED / SIZE':<17}{'TIMEOUTS':>8}{'ERRORS':>7}"
            )
        )
        notes: list[str] = []
        for f in FUNCTIONS:
            rows = reports.get(lambda_group(f.name), [])
            if not rows:
                out.line(f"  {f.name:<15}{0:>12}")
                continue
            st = _FunctionStats.of(rows)
            pct = 100 * st.max_used_mb // st.memory_mb if st.memory_mb else 0
            memory = f"{st.max_used_mb:>4} / {st.memory_mb:<4} {pct:>3}%"
            if pct >= 95:
                memory = out.bad(memory + "!")
                oom = f", and ran out of it {st.oom} times" if st.oom else ""
                notes.append(f"{f.name} reached its memory size{oom}: give it more memory.")
            else:
                memory += " "
                if pct < 35:
                    notes.append(
                        f"{f.name} never used more than {pct}% of its {st.memory_mb} MB: "
                        "it could run on less."
                    )
            if st.timeouts:
                notes.append(
                    f"{f.name} timed out {st.timeouts} times, at its {f.timeout_s} s timeout."
                )
            out.line(
                f"  {f.name:<15}{_n(st.invocations):>12}{st.cold:>5}{st.p50:>7,.0f}{st.p95:>7,.0f}"
                f"{st.max:>7,.0f}{st.avg_billed:>11,.0f}  {memory}{st.timeouts:>8}{st.errors:>7}"
            )
        bullet = "·" if out.unicode else "-"
        for note in notes:
            out.line(out.dim(f"  {bullet} {note}"))
        out.line()


@dataclass(frozen=True, slots=True)
class _FunctionStats:
    """The figures teams ship Lambda logs to ELK to see, for one function."""

    invocations: int
    cold: int
    p50: float
    p95: float
    max: float
    avg_billed: float
    max_used_mb: int
    memory_mb: int
    timeouts: int
    errors: int
    oom: int

    @classmethod
    def of(cls, rows: Sequence[dict[str, Any]]) -> _FunctionStats:
        """From the ``aws.lambda`` fields of REPORT documents (at least one)."""
        durations = sorted(float(r.get("duration_ms", 0.0)) for r in rows)
        return cls(
            invocations=len(rows),
            cold=sum(1 for r in rows if "init_duration_ms" in r),
            p50=_percentile(durations, 50),
            p95=_percentile(durations, 95),
            max=durations[-1],
            avg_billed=sum(int(r.get("billed_duration_ms", 0)) for r in rows) / len(rows),
            max_used_mb=max(int(r.get("max_memory_used_mb", 0)) for r in rows),
            memory_mb=max(int(r.get("memory_size_mb", 0)) for r in rows),
            timeouts=sum(1 for r in rows if r.get("status") == "timeout"),
            errors=sum(1 for r in rows if r.get("status") == "error"),
            oom=sum(1 for r in rows if r.get("error_type") == "Runtime.OutOfMemory"),
        )


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _compare(
    written: dict[tuple[str, str], list[tuple[int, str]]],
    arrived: dict[tuple[str, str], list[tuple[str, str]]],
) -> tuple[int, int, int]:
    """``(lost, unexpected, streams out of order)``: what was written against the
    first deliveries, in arrival order."""
    lost = extra = disorder = 0
    for key in written.keys() | arrived.keys():
        want = [(_iso(ts), message) for ts, message in written.get(key, [])]
        got = arrived.get(key, [])
        if want == got:
            continue
        missing = Counter(want) - Counter(got)
        surplus = Counter(got) - Counter(want)
        lost += sum(missing.values())
        extra += sum(surplus.values())
        if not missing and not surplus:
            disorder += 1
    return lost, extra, disorder


async def _render_status(path: str) -> str:
    return await render_status(path, as_json=False, streams=False)


# -- entry point ------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    """``cwconsumer demo [--quick] [--events N]``; returns the exit code
    (0 all checks passed, 1 a check failed or the tour was interrupted, 2 bad usage)."""
    out = _Out(sys.stdout)
    try:
        plan = _plan(args)
    except DemoFailed as exc:
        print(f"cwconsumer: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through the cleanups below

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
    try:
        with contextlib.ExitStack() as stack, _aws_settings_set_aside():
            workdir = Path(tempfile.mkdtemp(prefix="cwconsumer-demo-"))
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            tour = _Tour(out, plan, workdir, stack)
            try:
                tour.run()
            except DemoFailed as exc:
                _report_failure(out, str(exc), tour.consumer)
                return EXIT_FAILED
            except Exception as exc:
                _report_failure(out, f"{type(exc).__name__}: {exc}", tour.consumer)
                return EXIT_FAILED
        return EXIT_OK
    except KeyboardInterrupt:
        out.line()
        out.line("Interrupted: everything the demo started is stopped and removed.")
        return EXIT_FAILED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _aws_settings_set_aside() -> Iterator[None]:
    """Hide the caller's AWS settings from this process while the demo runs.

    moto (in this process) reads the AWS config file through boto3: a broken
    file, or a profile that does not exist, must not stop a demo that needs
    neither. The consumer gets an environment of its own (:func:`_consumer_env`).
    """
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for key in saved:
        del os.environ[key]
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)


def _report_failure(out: _Out, why: str, consumer: _Consumer | None) -> None:
    out.line()
    out.line(f"{out.mark(False)} {out.bad('The demo failed:')} {why}")
    tail = consumer.tail() if consumer is not None else []
    if tail:
        out.line(out.dim("  the consumer's last log lines:"))
        for text in tail:
            out.line(out.dim(f"  | {text}"))
