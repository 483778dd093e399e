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
from cwconsumer.demodata import ECS_DESCRIPTION, ECS_GROUP, FUNCTIONS, DemoLogs, StreamLog
from cwconsumer.statusview import collect_status, render_status

__all__ = ["run_demo"]

EXIT_OK, EXIT_FAILED = 0, 1
REGION: Final = "us-east-1"
SEED: Final = 20261121

DEFAULT_EVENTS: Final = 30_000
QUICK_EVENTS: Final = 5_000
LATE_SHARE: Final = 0.15
"""Events added while the consumer is down, as a part of the first wave."""
CRASH_AT: Final = 0.5
"""The crash comes once this part of the first wave has arrived."""
LEASE_TTL: Final = "2s"
PHASE_TIMEOUT_S: Final = 90.0
TAIL_LINES: Final = 25

# The demo's settings for `cwconsumer run`; everything else is the default.
CONSUMER_SETTINGS: Final = {
    "CWC_LOG_GROUP_PREFIXES": "/aws/lambda/,/ecs/",
    "CWC_POLL_INTERVAL": "1s",
    "CWC_DISCOVERY_INTERVAL": "2s",
    "CWC_BATCH_MAX_WAIT": "250ms",
    "CWC_API_RATE": "50",
    "CWC_BATCH_MAX_EVENTS": os.environ.get("X_BATCH", "500"),
    "CWC_BUFFER_MAX_EVENTS": os.environ.get("X_BUF", "4000"),
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
        self.color = self.tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
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

    def warn(self, text: str) -> str:
        return self._paint("33", text)

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
    redelivered: int = 0
    malformed: int = 0
    requests: int = 0
    active: int = 0


class _Receiver:
    """An HTTP endpoint in a thread taking NDJSON batches, as Logstash's ``http`` input would.

    Every document is counted once by ``event.id``; a document seen again is a
    re-delivery. A request whose body did not arrive whole (the sender died
    mid-send) is dropped, as a real server drops it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tally = _Tally()
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
                    receiver.ingest(body)
                    answer = b'{"ok":true}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    with receiver.lock:
                        receiver.tally.active -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the tour's output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
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

    def ingest(self, body: bytes) -> None:
        docs: list[dict[str, Any]] = []
        malformed = 0
        for raw in body.split(b"\n"):
            if not raw.strip():
                continue
            try:
                doc = orjson.loads(raw)
                doc["event"]["id"]  # noqa: B018 - a document without an id is malformed
            except (orjson.JSONDecodeError, KeyError, TypeError):
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
                cw = doc.get("aws", {}).get("cloudwatch", {})
                group, stream = cw.get("log_group", "?"), cw.get("log_stream", "?")
                t.by_group[group] += 1
                t.streams.setdefault((group, stream), []).append(
                    (doc.get("@timestamp", ""), doc.get("message", ""))
                )
                fields = doc["aws"].get("lambda")
                if fields and fields.get("type") == "report":
                    t.reports.setdefault(group, []).append(fields)

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
        # werkzeug logs every request to stderr unless told otherwise.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._client: Any = None
        self._groups: set[str] = set()
        self._streams: set[tuple[str, str]] = set()

    @property
    def url(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> None:
        import botocore.session

        self._server.start()
        session = botocore.session.Session()
        self._client = session.create_client(
            "logs",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
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
            raise DemoFailed(f"the consumer did not stop within {timeout_s:.0f} s of SIGTERM")

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


@dataclass(slots=True)
class _Plan:
    first: int
    late: int
    per_stream: int | None


def _plan(args: argparse.Namespace) -> _Plan:
    per_stream = getattr(args, "events", None)
    if per_stream is not None and per_stream < 1:
        raise DemoFailed("--events must be at least 1")
    first = QUICK_EVENTS if getattr(args, "quick", False) else DEFAULT_EVENTS
    return _Plan(first, max(50, round(first * LATE_SHARE)), per_stream)


@dataclass(slots=True)
class _Expected:
    """Everything written to CloudWatch, per stream, in stream order."""

    streams: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, logs: Sequence[StreamLog]) -> None:
        for log in logs:
            self.streams.setdefault((log.group, log.stream), []).extend(log.events)

    def by_group(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (group, _), events in self.streams.items():
            out[group] += len(events)
        return out

    def stream_counts(self) -> Counter[str]:
        return Counter(group for group, _ in self.streams)


def _groups_in_order() -> list[str]:
    return [f"/aws/lambda/{f.name}" for f in FUNCTIONS] + [ECS_GROUP]


class _Tour:
    def __init__(self, out: _Out, plan: _Plan, workdir: Path) -> None:
        self.out = out
        self.plan = plan
        self.workdir = workdir
        self.db_path = workdir / "state.db"
        self.logs = DemoLogs(SEED, int(time.time() * 1000) - 50 * 60_000)
        self.expected = _Expected()
        self.cloudwatch = _CloudWatch()
        self.receiver = _Receiver()
        self.consumer: _Consumer | None = None

    # -- phases -----------------------------------------------------------------------

    def run(self, stack: contextlib.ExitStack) -> None:
        out = self.out
        started = time.monotonic()
        out.line(out.bold("cwconsumer demo") + " — the whole pipeline on this machine, no AWS account")
        out.line()

        self.cloudwatch.start()
        stack.callback(self.cloudwatch.stop)
        first = self.logs.generate(self.plan.first, per_stream=self.plan.per_stream)
        self.cloudwatch.put(first)
        self.expected.add(first)
        out.line(f"{out.bold('1.')} CloudWatch Logs stand-in (moto) on {self.cloudwatch.url}")
        self._describe_groups()

        self.receiver.start()
        stack.callback(self.receiver.stop)
        out.line(f"{out.bold('2.')} HTTP receiver (a stand-in for Logstash or Elasticsearch) "
                 f"on {self.receiver.url}")  # fmt: skip

        env = _consumer_env(self.cloudwatch.url, self.receiver.url, self.db_path)
        self.consumer = consumer = _Consumer(env, self.workdir / "consumer.log", self.workdir)
        stack.callback(consumer.cleanup)
        pid = consumer.start()
        out.line(f"{out.bold('3.')} cwconsumer run (pid {pid}), configured by environment:")
        out.line(out.dim(f"     CWC_LOG_GROUP_PREFIXES={CONSUMER_SETTINGS['CWC_LOG_GROUP_PREFIXES']}"
                         f"  CWC_SINK_URL={self.receiver.url}"))  # fmt: skip
        out.line(out.dim(f"     AWS_ENDPOINT_URL={self.cloudwatch.url}  CWC_DB_PATH={self.db_path}"))
        out.line()

        # Phase 1: ship until about half has arrived, then crash.
        total_first = sum(self.expected.by_group().values())
        out.line(out.bold("Shipping") + f" {_n(total_first)} events…")
        t0 = time.monotonic()
        self._progress(lambda got: sum(got.values()) >= total_first * CRASH_AT)
        shipped_first = sum(self.receiver.counts()[0].values())
        phase1_s = time.monotonic() - t0
        consumer.kill()
        self.receiver.settle()
        got, _, _ = self.receiver.counts()
        received_at_crash = sum(got.values())
        out.line(
            f"{out.bad('✗ crash!' if out.unicode else 'CRASH!')} SIGKILL to pid {pid} after "
            f"{_n(received_at_crash)} of {_n(total_first)} events: no time to flush or save anything"
        )
        out.line()

        # What the checkpoints say.
        status = anyio.run(collect_status, str(self.db_path))
        checkpointed = sum(int(g["delivered"]) for g in status["groups"])
        out.line(out.bold("Checkpoints") + " after the crash (" + out.dim("cwconsumer status") + "):")
        for text in anyio.run(_render, str(self.db_path)).splitlines()[3:]:
            out.line("   " + text)
        in_flight = max(0, received_at_crash - checkpointed)
        out.line(
            f"   The receiver has {_n(received_at_crash)} events; the checkpoints cover "
            f"{_n(checkpointed)}. The {_n(in_flight)} in between were in flight"
        )
        out.line("   (received, not yet confirmed) when the process died: they will come again.")
        out.line()

        # Phase 2: more logs while it is down, then a restart.
        late = self.logs.generate(self.plan.late, window_ms=3 * 60_000)
        self.cloudwatch.put(late)
        self.expected.add(late)
        new_streams = sum(1 for log in late if log.stream not in {s for _, s in first_keys(first)})
        late_events = sum(len(log.events) for log in late)
        out.line(
            f"While it was down the services kept logging: +{_n(late_events)} events "
            f"({new_streams} new streams, later events in {len(late) - new_streams} others)."
        )
        _, dup_before, requests_before = self.receiver.counts()
        restart_t = time.monotonic()
        pid = consumer.start()
        out.line(
            f"Restarted: cwconsumer run (pid {pid}). It waits as a standby until the crashed run's "
            f"lease expires"
        )
        out.line(f"(CWC_LEASE_TTL={LEASE_TTL} here, 10s by default), then resumes every stream "
                 "from its checkpoint.")  # fmt: skip
        total = sum(self.expected.by_group().values())
        resumed_after: list[float] = []

        def done(got: Counter[str]) -> bool:
            if not resumed_after and self.receiver.counts()[2] > requests_before:
                resumed_after.append(time.monotonic() - restart_t)
            return sum(got.values()) >= total

        self._progress(done)
        phase2_s = time.monotonic() - restart_t
        rc = consumer.terminate(30.0)
        self.receiver.settle()
        standby_s = resumed_after[0] if resumed_after else phase2_s
        out.line(
            f"{out.mark(True)} Caught up: resumed {standby_s:.1f} s after the restart; "
            f"{_n(total - received_at_crash)} events left to ship, not {_n(total)}."
        )
        if rc != 0:
            raise DemoFailed(f"SIGTERM: the consumer exited with {rc}, expected 0")
        out.line(f"{out.mark(True)} SIGTERM → exit 0: in-flight batches finished, checkpoints stored.")
        out.line()
        self._summary(received_at_crash, in_flight, shipped_first, phase1_s, phase2_s - standby_s,
                      started)  # fmt: skip
        del dup_before

    def _describe_groups(self) -> None:
        counts = self.expected.by_group()
        streams = self.expected.stream_counts()
        descriptions = {f"/aws/lambda/{f.name}": f.description for f in FUNCTIONS}
        descriptions[ECS_GROUP] = ECS_DESCRIPTION
        for group in _groups_in_order():
            self.out.line(
                f"     {group:<30} {streams[group]:>3} streams {_n(counts[group]):>8} events   "
                + self.out.dim(descriptions[group])
            )

    def _progress(self, finished: Callable[[Counter[str]], bool]) -> None:
        """Draw per-group progress until ``finished(unique per group)``."""
        assert self.consumer is not None
        want = self.expected.by_group()
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        next_plain = time.monotonic() + 1.0
        while True:
            got, _, _ = self.receiver.counts()
            complete = finished(got)
            lines = [
                f"   {group:<30} {self.out.bar(got[group], want[group])} "
                f"{_n(got[group]):>8} / {_n(want[group])}"
                for group in _groups_in_order()
            ]
            self.out.live(lines)
            if complete:
                break
            if not self.out.tty and time.monotonic() >= next_plain:
                next_plain += 1.0
                n, w = sum(got.values()), sum(want.values())
                self.out.line(f"   … {_n(n)} / {_n(w)} events at the receiver ({100 * n // w}%)")
            self.consumer.check_alive()
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"no progress to completion within {PHASE_TIMEOUT_S:.0f} s "
                    f"({_n(sum(got.values()))} of {_n(sum(want.values()))} events arrived)"
                )
            time.sleep(0.1)
        if not self.out.tty:
            for text in lines:
                self.out.line(text)
        self.out.line()

    def _summary(self, received_at_crash: int, in_flight: int, shipped_first: int,
                 phase1_s: float, phase2_s: float, started: float) -> None:  # fmt: skip
        out = self.out
        with self.receiver.lock:
            tally = self.receiver.tally
            streams = {k: list(v) for k, v in tally.streams.items()}
            redelivered, malformed = tally.redelivered, tally.malformed
            reports = {g: list(v) for g, v in tally.reports.items()}
        total = sum(len(v) for v in self.expected.streams.values())
        lost, extra, disorder = _compare(self.expected.streams, streams)
        unique = sum(len(v) for v in streams.values())
        problems: list[str] = []
        if lost:
            problems.append(f"{_n(lost)} events never arrived")
        if extra:
            problems.append(f"{_n(extra)} documents arrived that were never written")
        if disorder:
            problems.append(f"{disorder} streams arrived out of order")
        if malformed:
            problems.append(f"{_n(malformed)} lines at the receiver were not JSON documents")
        if redelivered > in_flight:
            problems.append(
                f"{_n(redelivered)} re-deliveries, more than the {_n(in_flight)} events in flight"
            )

        out.line(out.bold("Summary"))
        groups = len({g for g, _ in self.expected.streams})
        out.line(f"   written to CloudWatch      {_n(total):>8}  events in "
                 f"{len(self.expected.streams)} streams, {groups} groups")  # fmt: skip
        check = out.mark(not (lost or extra or disorder))
        out.line(f"   at the receiver            {_n(unique):>8}  unique event.id, each stream in "
                 f"order  {check} lost: {lost}")  # fmt: skip
        out.line(
            f"   re-delivered after crash   {_n(redelivered):>8}  only what was in flight at the "
            f"SIGKILL ({_n(in_flight)}); same event.id,"
        )
        out.line("                                        so a sink keyed on it (Elasticsearch "
                 "_id) overwrites them")  # fmt: skip
        rate = (total - received_at_crash + shipped_first) / max(0.001, phase1_s + phase2_s)
        out.line(
            f"   throughput                 {_n(int(rate)):>8}  events/s  "
            + out.dim("(moto and the receiver share this machine with the consumer)")
        )
        out.line(f"   wall time                  {time.monotonic() - started:>7.1f}s")
        out.line()
        problems += self._lambda_report(reports)
        if problems:
            raise DemoFailed("; ".join(problems))

    def _lambda_report(self, reports: dict[str, list[dict[str, Any]]]) -> list[str]:
        out = self.out
        out.line(out.bold("Lambda report") + out.dim("  (from the parsed REPORT lines: aws.lambda.*)"))
        head = (f"   {'FUNCTION':<16} {'INVOCATIONS':>11} {'COLD':>5} {'P50 MS':>8} {'P95 MS':>8} "
                f"{'MAX MS':>9} {'AVG BILLED':>11}  {'MAX MEMORY USED':<20} {'TIMEOUTS':>8} "
                f"{'ERRORS':>6}")  # fmt: skip
        out.line(out.dim(head))
        problems: list[str] = []
        notes: list[str] = []
        generated = Counter(inv.function for inv in self.logs.invocations)
        for f in FUNCTIONS:
            rows = reports.get(f"/aws/lambda/{f.name}", [])
            if len(rows) != generated[f.name]:
                problems.append(
                    f"{f.name}: {len(rows)} REPORT lines parsed, {generated[f.name]} invocations"
                )
            if not rows:
                out.line(f"   {f.name:<16} {0:>11}")
                continue
            durations = sorted(float(r.get("duration_ms", 0.0)) for r in rows)
            billed = [int(r.get("billed_duration_ms", 0)) for r in rows]
            used = max(int(r.get("max_memory_used_mb", 0)) for r in rows)
            size = max(int(r.get("memory_size_mb", 0)) for r in rows)
            cold = sum(1 for r in rows if "init_duration_ms" in r)
            timeouts = sum(1 for r in rows if r.get("status") == "timeout")
            errors = sum(1 for r in rows if r.get("status") == "error")
            pct = 100 * used // size if size else 0
            memory = f"{_n(used)} / {_n(size)} MB {pct:>3}%"
            if pct >= 95:
                memory = out.bad(memory + " !")
                oom = sum(1 for r in rows if r.get("error_type") == "Runtime.OutOfMemory")
                notes.append(
                    f"{f.name} reached its memory size"
                    + (f" and ran out of memory {oom} times" if oom else "")
                    + ": give it more memory."
                )
            elif pct < 35:
                notes.append(f"{f.name} never used more than {pct}% of its {_n(size)} MB: it "
                             "could run on less.")  # fmt: skip
            if timeouts:
                notes.append(f"{f.name} timed out {timeouts} times (its timeout is "
                             f"{f.timeout_s} s).")  # fmt: skip
            out.line(
                f"   {f.name:<16} {_n(len(rows)):>11} {cold:>5} "
                f"{_pctl(durations, 50):>8,.1f} {_pctl(durations, 95):>8,.1f} "
                f"{durations[-1]:>9,.1f} {_n(round(sum(billed) / len(billed))):>8} ms  "
                f"{memory:<20} {timeouts:>8} {errors:>6}"
            )
        for note in notes:
            out.line("   " + out.dim("· " + note if out.unicode else "- " + note))
        out.line()
        return problems


def first_keys(logs: Sequence[StreamLog]) -> Iterator[tuple[str, str]]:
    return ((log.group, log.stream) for log in logs)


async def _render(path: str) -> str:
    return await render_status(path, as_json=False, streams=False)


def _pctl(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def _compare(
    expected: dict[tuple[str, str], list[tuple[int, str]]],
    received: dict[tuple[str, str], list[tuple[str, str]]],
) -> tuple[int, int, int]:
    """``(lost, unexpected, streams out of order)`` between what was written
    and what arrived (first deliveries, in arrival order)."""
    lost = extra = disorder = 0
    for key in expected.keys() | received.keys():
        want = [(_iso(ts), message) for ts, message in expected.get(key, [])]
        got = received.get(key, [])
        if want == got:
            continue
        missing = Counter(want) - Counter(got)
        surplus = Counter(got) - Counter(want)
        lost += sum(missing.values())
        extra += sum(surplus.values())
        if not missing and not surplus:
            disorder += 1
    return lost, extra, disorder


# -- entry point ------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    """``cwconsumer demo [--quick] [--events N]``; returns the exit code."""
    out = _Out(sys.stdout)
    try:
        plan = _plan(args)
    except DemoFailed as exc:
        print(f"cwconsumer: {exc}", file=sys.stderr)
        return 2
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # so that a SIGTERM cleans up too
    workdir = Path(tempfile.mkdtemp(prefix="cwconsumer-demo-"))
    tour: _Tour | None = None
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            tour = _Tour(out, plan, workdir)
            tour.run(stack)
        return EXIT_OK
    except DemoFailed as exc:
        out.line()
        out.line(f"{out.mark(False)} {out.bad('demo failed:')} {exc}")
        if tour is not None and tour.consumer is not None:
            tail = tour.consumer.tail()
            if tail:
                out.line(out.dim("   the consumer's last log lines:"))
                for text in tail:
                    out.line(out.dim("   | " + text))
        return EXIT_FAILED
    except KeyboardInterrupt:
        out.line()
        out.line("demo interrupted; everything it started is stopped and removed")
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
