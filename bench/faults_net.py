"""Issue 14's sink, CloudWatch and lease injections, re-run against the product
as a real process and measured (black box, one fault at a time).

    .venv/bin/python bench/faults_net.py huge-answer      # one scenario, the issue's durations
    .venv/bin/python bench/faults_net.py all              # every scenario, shortened (~12 min)
    flock /tmp/cwc-heavy.lock .venv/bin/python bench/faults_net.py all

Scenarios (``--short``: the shortened durations ``all`` uses):

- ``huge-answer``: the sink answers 200 with a 200 MB body, then an endless
  chunked 200, at the default and a 5-s ``CWC_SINK_TIMEOUT``; peak RSS
  (``VmHWM``), delivery after the sink behaves again, lost events.
- ``cloudwatch-down``: CloudWatch Logs unreachable behind a TCP "proxy" in front
  of the stand-in: HTML 502s, then truncated 200s, then hanging connections;
  ``/healthz`` sampled every second against ``CWC_STALL_TIMEOUT=30s``.
- ``sink-404``: a sink answering 404 to everything, then 200: dead letters,
  requests made meanwhile, ``/healthz``, lost events.
- ``sink-outage``: the sink down (connection refused), then answering 503s,
  with default back-off: requests per minute at the back-off cap, health,
  time to drain after recovery, lost and duplicated events.
- ``frozen-holder``: a holder and a standby on one database (default lease
  settings); the holder SIGSTOPped, then SIGCONTed: take-over time, requests
  the old holder sent after waking, its exit status, duplicates, lost.
- ``secrets``: a sink URL with secret query values, a password and an
  Authorization header; errors provoked (sink down, 500s echoing the URL,
  401s); every secret value searched in the logs, ``/healthz``, ``/stats``,
  ``/metrics`` and ``cwconsumer status`` / ``check`` output.

The CloudWatch Logs stand-in (``tests/support/fakecwl.py``), the sinks
(``tests/support/fakesinks.py``) and the proxy run in this process's threads;
the product is ``python -m cwconsumer run``. Each scenario prints one line per
figure; everything is written as JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bench.run import poll_until  # noqa: E402
from tests.conftest import Product  # noqa: E402
from tests.support.fakecwl import FakeCloudWatchLogs  # noqa: E402
from tests.support.fakesinks import BODY, RecordingSink, decode_documents  # noqa: E402
from tests.support.harness import (  # noqa: E402
    Admin,
    Key,
    StreamTruth,
    Writer,
    fake_env,
    free_port,
    log_records,
    parse_message,
    read_checkpoints,
    read_rows,
    run_cli,
)

STANDBY_LOG = "standby: another run holds the database lease"
ACQUIRED_LOG = "lease acquired; consuming"


# ----------------------------------------------------------------------------- output


class Report:
    """Figures of one scenario: printed as they come, kept for the JSON file."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.figures: dict[str, Any] = {}
        self.started = time.time()

    def fig(self, name: str, value: Any, note: str = "") -> None:
        self.figures[name] = value
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        print(
            f"{self.scenario:16} {name:44} {shown}{'  (' + note + ')' if note else ''}", flush=True
        )

    def dump(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "figures": self.figures,
        }


# ----------------------------------------------------------------------------- helpers


def vm_kib(pid: int, field: str) -> int:
    """``VmHWM`` / ``VmRSS`` of a process in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[0]


class Rig:
    """The stand-in with numbered streams, a Writer, and products on one database."""

    def __init__(self, work: Path, keys: list[Key], *, seed: int, backlog: int) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.keys = keys
        self.fake = FakeCloudWatchLogs(seed=seed).start()
        self.writer = Writer(self.fake, seed=seed)
        for k in keys:
            self.writer.put(*k, backlog)
        self.db = work / "state" / "cwc.db"
        self.products: list[Product] = []

    def product(self, sink_url: str, *, aws_endpoint: str | None = None, **env: str) -> Product:
        prefix = "/" + self.keys[0][0].split("/")[1] + "/"
        base = fake_env(self.fake, sink_url, self.db, CWC_LOG_GROUP_PREFIXES=prefix)
        if aws_endpoint is not None:
            base["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] = aws_endpoint
        base.update(env)
        p = Product(base, self.work / f"product-{len(self.products)}.log")
        self.products.append(p)
        return p

    def close(self) -> None:
        self.writer.stop()
        for p in self.products:
            p.stop_quietly()
        self.fake.stop()

    # -- what reached the sink ---------------------------------------------------------

    def dead_letters(self) -> set[tuple[Key, int]]:
        if not self.db.exists():
            return set()
        try:
            rows = read_rows(self.db, "SELECT document FROM dead_letters")
        except sqlite3.OperationalError:  # not created yet: the product is starting
            return set()
        out: set[tuple[Key, int]] = set()
        for (doc,) in rows:
            out.add(parse_message(json.loads(doc)["message"]))
        return out

    def tally(self, docs: list[Any]) -> dict[str, int]:
        """Delivered, duplicated, dead-lettered and lost events; checkpoints
        that name an event past the first one neither delivered nor dead-lettered."""
        seen: dict[Key, Counter[int]] = {k: Counter() for k in self.keys}
        for d in docs:
            k, i = parse_message(d["message"])
            seen.setdefault(k, Counter())[i] += 1
        dead = self.dead_letters()
        counts = self.writer.counts()
        rows = read_checkpoints(self.db)
        lost = past = 0
        for k in self.keys:
            missing = [
                i for i in range(counts.get(k, 0)) if i not in seen[k] and (k, i) not in dead
            ]
            lost += len(missing)
            row = rows.get(k)
            if missing and row is not None:
                truth = StreamTruth.read(self.fake, *k)
                if truth.position_after(row.last_ts, row.last_ord) > missing[0]:
                    past += 1
        return {
            "events": sum(counts.values()),
            "delivered": sum(len(c) for c in seen.values()),
            "duplicates": sum(n - 1 for c in seen.values() for n in c.values()),
            "dead_lettered": len(dead),
            "lost": lost,
            "checkpoints_past_a_lost_event": past,
        }

    def drained(
        self, docs: Callable[[], list[Any]], upto: dict[Key, int] | None = None
    ) -> Callable[[], bool]:
        """True once every event written (or the first ``upto`` of each stream,
        while more are being written) is delivered (or dead-lettered) and committed."""

        def check() -> bool:
            got: dict[Key, set[int]] = {}
            for d in docs():
                k, i = parse_message(d["message"])
                got.setdefault(k, set()).add(i)
            for k, i in self.dead_letters():
                got.setdefault(k, set()).add(i)
            counts = upto if upto is not None else self.writer.counts()
            if any(not got.get(k, set()).issuperset(range(counts.get(k, 0))) for k in self.keys):
                return False
            rows = read_checkpoints(self.db)
            return all(k in rows and rows[k].delivered >= counts.get(k, 0) for k in self.keys)

        return check


class HealthLog:
    """``/healthz`` sampled every second from a thread: (t, status, reasons);
    with ``attempts`` also the product's count of sink requests (t, count)."""

    def __init__(self, admin: Admin, t0: float, *, attempts: bool = False) -> None:
        self.admin = admin
        self.t0 = t0
        self.samples: list[tuple[float, int | None, str]] = []
        self.attempts: list[tuple[float, float]] = []
        self._count = attempts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic() - self.t0
            got = self.admin.healthz()
            if got is None:
                self.samples.append((t, None, "no answer"))
            else:
                self.samples.append((t, got[0], "; ".join(map(str, got[1].get("reasons") or []))))
            if self._count:
                n = sink_attempts(self.admin)
                if n is not None:
                    self.attempts.append((time.monotonic() - self.t0, n))
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def between(self, a: float, b: float) -> list[tuple[float, int | None, str]]:
        return [s for s in self.samples if a <= s[0] < b]

    def first(self, status: int, after: float) -> tuple[float, str] | None:
        for t, st, why in self.samples:
            if t >= after and st == status:
                return t, why
        return None

    def now(self) -> int | None:
        """The latest sample's status."""
        return self.samples[-1][1] if self.samples else None

    def requests(self, a: float, b: float) -> tuple[float, float]:
        """(sink requests per minute between ``a`` and ``b``, longest time
        between two requests there), from the 1-s samples of the count."""
        inside = [(t, n) for t, n in self.attempts if a <= t <= b]
        if len(inside) < 2:
            return 0.0, 0.0
        rate = (inside[-1][1] - inside[0][1]) * 60 / (inside[-1][0] - inside[0][0])
        changes = [t for (_, m), (t, n) in itertools.pairwise(inside) if n > m]
        gaps = [y - x for x, y in itertools.pairwise(changes)]
        return round(rate, 1), round(max(gaps, default=0.0), 1)

    def timeline(self) -> list[tuple[float, int | None, str]]:
        """The samples where the status or the reasons (numbers aside) changed."""
        out: list[tuple[float, int | None, str]] = []
        last: tuple[int | None, str] | None = None
        for t, st, why in self.samples:
            key = (st, re.sub(r"\d+", "#", why))
            if key != last:
                out.append((round(t, 1), st, why[:300]))
                last = key
        return out


def sink_attempts(admin: Admin) -> float | None:
    """Every sink request the product made (``cwconsumer_sink_responses_total``, any status)."""
    got = admin.metrics()
    if got is None:
        return None
    return sum(v for (name, _), v in got.items() if name == "cwconsumer_sink_responses_total")


def refused(admin: Admin) -> float | None:
    """Sink requests that got no answer (``cwconsumer_sink_responses_total{status="0"}``)."""
    return admin.metric("cwconsumer_sink_responses_total", status="0")


def last_log(product: Product) -> str:
    records = log_records(product.logs())
    return str(records[-1].get("message", ""))[:200] if records else ""


def close_out(rep: Report, rig: Rig, sink: RecordingSink, health: HealthLog, p: Product) -> None:
    """The end every scenario shares: the /healthz timeline, a clean stop,
    and what was lost or sent twice."""
    health.stop()
    rep.fig("health timeline (t, status, reason)", health.timeline())
    rep.fig("exit status on SIGTERM", terminate(p))
    for name, value in rig.tally(sink.docs()).items():
        rep.fig(name, value)


def terminate(product: Product) -> int | str:
    try:
        return product.terminate(60)
    except subprocess.TimeoutExpired:
        product.kill()
        return "hung (killed after 60 s)"


# ----------------------------------------------------------------------------- a. huge-answer


class HugeSink(RecordingSink):
    """Answers 200; in mode ``huge`` with a 200 MB body, in mode ``endless``
    with a chunked body that never ends (cut after ``endless_cap_s``). The
    documents of every POST are recorded: whatever the answer's length, the
    sink took them."""

    CHUNK = b'{"status":"ok","padding":"' + b"x" * 65_000 + b'"}\n'

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.huge_bytes = 200 * 1024 * 1024
        self.endless_cap_s = 600.0
        self.served: Counter[str] = Counter()
        self.body_bytes: Counter[str] = Counter()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        if request.method in ("GET", "HEAD") or mode == "ok":
            return await super()._handle(request)
        self._add_docs(decode_documents(request[BODY], request.content_type))
        self.served[mode] += 1
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        if mode == "huge":
            resp.content_length = self.huge_bytes
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent, deadline = 0, time.monotonic() + self.endless_cap_s
        try:
            while time.monotonic() < deadline:
                chunk = self.CHUNK
                if mode == "huge":
                    chunk = chunk[: self.huge_bytes - sent]
                    if not chunk:
                        break
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the product hung up
        finally:
            self.body_bytes[mode] += sent
        return resp


def huge_answer(rep: Report, work: Path, short: bool) -> None:
    phases = (15.0, 35.0) if short else (30.0, 60.0)  # (huge, endless) seconds, default timeout
    for timeout in ("default", "5s"):
        tag = f"timeout={timeout}"
        huge_s, endless_s = phases if timeout == "default" else (phases[0] / 2, phases[1] / 2.5)
        rig = Rig(
            work / f"huge-{timeout}", [("/fnh/a", "s0"), ("/fnh/b", "s0")], seed=8, backlog=2000
        )
        sink = HugeSink()
        sink.start()
        try:
            extra = {} if timeout == "default" else {"CWC_SINK_TIMEOUT": timeout}
            port = free_port()
            p = rig.product(sink.url, CWC_ADMIN_ADDR=f"127.0.0.1:{port}", **extra).start()
            assert p.proc is not None
            pid = p.proc.pid
            admin = Admin(port)
            ok = poll_until(rig.drained(sink.docs), 60)
            rep.fig(f"{tag} backlog delivered before the fault", ok)
            rep.fig(f"{tag} RSS before the fault MiB", mib(vm_kib(pid, "VmRSS")))
            rig.writer.start_appending(rig.keys, every_s=0.1, per_tick=(0, 4))
            for mode, secs in (("huge", huge_s), ("endless", endless_s)):
                sink.mode = mode
                time.sleep(secs)
                rep.fig(f"{tag} {mode}: seconds", secs)
                rep.fig(f"{tag} {mode}: answers started", sink.served[mode])
                rep.fig(
                    f"{tag} {mode}: answer MiB written before hang-up",
                    mib(sink.body_bytes[mode] // 1024),
                )
                rep.fig(f"{tag} {mode}: peak RSS so far MiB (VmHWM)", mib(vm_kib(pid, "VmHWM")))
                got = admin.healthz()
                rep.fig(
                    f"{tag} {mode}: /healthz at the end",
                    None if got is None else [got[0], got[1].get("reasons")],
                )
            sink.mode = "ok"
            recovered = time.monotonic()
            rig.writer.stop()
            for k in rig.keys:
                rig.writer.put(*k, 200, now=True)
            ok = poll_until(rig.drained(sink.docs), 120)
            rep.fig(f"{tag} delivering again after the sink behaves", ok)
            rep.fig(
                f"{tag} seconds to drain after recovery", round(time.monotonic() - recovered, 1)
            )
            rep.fig(f"{tag} process up throughout", p.running())
            rep.fig(f"{tag} peak RSS MiB (VmHWM)", mib(vm_kib(pid, "VmHWM")))
            rep.fig(f"{tag} exit status on SIGTERM", terminate(p))
            for name, value in rig.tally(sink.docs()).items():
                rep.fig(f"{tag} {name}", value)
        finally:
            sink.stop()
            rig.close()


# ----------------------------------------------------------------------------- b. cloudwatch-down


class ModeProxy:
    """A TCP proxy in front of the stand-in: ``pass`` relays; ``502`` answers an
    HTML Bad Gateway; ``truncated`` a 200 whose body stops after a few bytes;
    ``hang`` accepts and never answers. A mode change closes every open
    connection (as a restarting proxy would)."""

    def __init__(self, upstream: str) -> None:
        u = urllib.parse.urlsplit(upstream)
        self.up = (u.hostname or "127.0.0.1", u.port or 80)
        self.mode = "pass"
        self.answered: Counter[str] = Counter()
        self._conns: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    def set_mode(self, mode: str) -> None:
        def change() -> None:
            self.mode = mode
            for w in list(self._conns):
                w.close()
            self._conns.clear()

        self._loop.call_soon_threadsafe(change)

    def stop(self) -> None:
        self.set_mode("pass")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        mode = self.mode
        try:
            if mode == "pass":
                up_r, up_w = await asyncio.open_connection(*self.up)
                self._conns.add(up_w)
                await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
            elif mode == "hang":
                while await reader.read(65536):
                    pass
            else:
                while await _read_request(reader):
                    self.answered[mode] += 1
                    if mode == "502":
                        html = b"<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"
                        head = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n"
                        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(html) + html)
                        await writer.drain()
                    else:
                        writer.write(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                            b'Content-Length: 4096\r\n\r\n{"events": [{"timestamp": 17'
                        )
                        await writer.drain()
                        break
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        w.close()


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one HTTP request (head and body); False at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return True


def cloudwatch_down(rep: Report, work: Path, short: bool) -> None:
    seg = 35.0 if short else 57.0  # the issue: 170 s in all
    stall = 30.0
    rig = Rig(
        work / "cwdown", [("/fnc/a", "s0"), ("/fnc/b", "s0"), ("/fnc/c", "s0")], seed=9, backlog=500
    )
    sink = RecordingSink()
    sink.start()
    proxy = ModeProxy(rig.fake.endpoint_url)
    health: HealthLog | None = None
    try:
        port = free_port()
        p = rig.product(
            sink.url,
            aws_endpoint=proxy.url,
            CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
            CWC_STALL_TIMEOUT=f"{stall:.0f}s",
        ).start()
        rep.fig("CWC_STALL_TIMEOUT s", stall)
        ok = poll_until(rig.drained(sink.docs), 60)
        rep.fig("backlog delivered before the fault", ok)
        rig.writer.start_appending(rig.keys, every_s=0.2, per_tick=(0, 4))
        t0 = time.monotonic()
        health = HealthLog(Admin(port), t0)
        marks: list[tuple[str, float]] = []
        for mode in ("502", "truncated", "hang"):
            marks.append((mode, time.monotonic() - t0))
            proxy.set_mode(mode)
            time.sleep(seg)
        down_s = time.monotonic() - t0
        proxy.set_mode("pass")
        rep.fig("outage s (502, truncated, hang)", round(down_s, 1), f"{seg:.0f} s each")
        rep.fig("proxy answers (502 / truncated)", dict(proxy.answered))
        first = health.first(503, 0.0)
        rep.fig("first /healthz 503 at s", None if first is None else round(first[0], 1))
        rep.fig("first 503 reason", None if first is None else first[1][:200])
        during = health.between(first[0] if first else 0.0, down_s)
        rep.fig(
            "samples 200 after the first 503, during the outage",
            sum(1 for s in during if s[1] == 200),
        )
        for mode, at in marks:
            inside = [s for s in health.between(at, at + seg) if s[1] == 503]
            rep.fig(
                f"{mode}: 503 samples / reason",
                f"{len(inside)} / {inside[-1][2][:160] if inside else '-'}",
            )
        poll_until(lambda: health is not None and health.now() == 200, 60)
        back = health.first(200, down_s)
        rep.fig(
            "/healthz 200 again after recovery s",
            None if back is None else round(back[0] - down_s, 1),
        )
        rig.writer.stop()
        for k in rig.keys:
            rig.writer.put(*k, 100, now=True)
        ok = poll_until(rig.drained(sink.docs), 150)
        rep.fig("seconds to drain after recovery", round(time.monotonic() - t0 - down_s, 1))
        rep.fig("delivering again", ok)
        rep.fig("process up throughout", p.running())
        close_out(rep, rig, sink, health, p)
    finally:
        if health is not None:
            health.stop()
        proxy.stop()
        sink.stop()
        rig.close()


# ----------------------------------------------------------------------------- c. sink-404


def sink_404(rep: Report, work: Path, short: bool) -> None:
    refuse_s = 40.0 if short else 60.0
    rig = Rig(
        work / "s404", [("/fn4/a", "s0"), ("/fn4/b", "s0"), ("/fn4/c", "s0")], seed=10, backlog=1000
    )
    sink = RecordingSink()
    sink.start()
    sink.set_fault(status=404, times=-1, body="<html><body><h1>404 Not Found</h1></body></html>")
    try:
        port = free_port()
        p = rig.product(sink.url, CWC_ADMIN_ADDR=f"127.0.0.1:{port}")
        t0 = time.monotonic()
        p.start()
        health = HealthLog(Admin(port), t0)
        time.sleep(refuse_s)
        rep.fig("404 for s", refuse_s)
        rep.fig("events written", sum(rig.writer.counts().values()))
        rep.fig("requests while 404", len(sink.requests()), "issue: 6,078 (bisected)")
        rep.fig("dead letters while 404", len(rig.dead_letters()), "must be 0")
        rows = read_checkpoints(rig.db)
        rep.fig("events checkpointed while 404", sum(r.delivered for r in rows.values()))
        first = health.first(503, 0.0)
        rep.fig("first /healthz 503 at s", None if first is None else round(first[0], 1))
        rep.fig("503 reason", None if first is None else first[1][:200])
        during = [s for s in health.between(first[0] if first else 0.0, refuse_s)]
        rep.fig("samples 200 after the first 503, while 404", sum(1 for s in during if s[1] == 200))
        sink.clear_faults()
        recovered = time.monotonic()
        ok = poll_until(rig.drained(sink.docs), 120)
        rep.fig("everything delivered after", ok)
        rep.fig(
            "seconds to drain after the sink answers 200", round(time.monotonic() - recovered, 1)
        )
        poll_until(lambda: health.now() == 200, 15)
        back = health.first(200, recovered - t0)
        rep.fig(
            "/healthz 200 again after s",
            None if back is None else round(back[0] - (recovered - t0), 1),
        )
        close_out(rep, rig, sink, health, p)
    finally:
        sink.stop()
        rig.close()


# ----------------------------------------------------------------------------- d. sink-outage


def sink_outage(rep: Report, work: Path, short: bool) -> None:
    # The issue: about 5 minutes; a little more, to see /healthz turn at the
    # default CWC_STALL_TIMEOUT (5 min). Short: the back-off cap is reached.
    outage = 80.0 if short else STALL_DEFAULT_S + 20.0
    rig = Rig(
        work / "outage",
        [("/fno/a", "s0"), ("/fno/b", "s0"), ("/fno/c", "s0")],
        seed=11,
        backlog=1000,
    )
    sink_port = free_port()
    sink = RecordingSink(port=sink_port)
    sink.start()
    health: HealthLog | None = None
    try:
        port = free_port()
        admin = Admin(port)
        p = rig.product(sink.url, CWC_ADMIN_ADDR=f"127.0.0.1:{port}").start()
        ok = poll_until(rig.drained(sink.docs), 60)
        rep.fig("backlog delivered before the fault", ok)
        rep.fig("CWC_SINK_CONCURRENCY (lanes)", 2, "default")
        rig.writer.start_appending(rig.keys, every_s=0.2, per_tick=(0, 4))
        t0 = time.monotonic()
        health = HealthLog(admin, t0, attempts=True)
        for kind in ("refused", "503"):
            start = time.monotonic() - t0
            if kind == "refused":
                sink.stop()
            else:
                sink.set_fault(status=503, times=-1, body="Service Unavailable")
            time.sleep(outage)
            end = time.monotonic() - t0
            rep.fig(f"{kind}: outage s", round(end - start, 1))
            total, gap = health.requests(start, end)
            rep.fig(f"{kind}: sink requests during the outage", round(total * (end - start) / 60))
            rep.fig(f"{kind}: longest time between two requests s", gap, "1-s samples")
            # The back-off reaches its 30-s cap after ~62 s of failures.
            rate, _ = health.requests(start + 65.0, end)
            rep.fig(
                f"{kind}: requests/min after the first 65 s (all lanes)", rate, "cap 30 s a lane"
            )
            time.sleep(1.5)  # one more /healthz sample at the outage's last instant
            first = health.first(503, start)
            rep.fig(
                f"{kind}: /healthz 503 after s",
                None if first is None else round(first[0] - start, 1),
                f"CWC_STALL_TIMEOUT {STALL_DEFAULT_S:.0f} s",
            )
            rep.fig(f"{kind}: 503 reason", None if first is None else first[1][:200])
            rep.fig(f"{kind}: process up", p.running())
            if kind == "refused":
                restart(sink)  # same port, same record of what it received
            else:
                sink.clear_faults()
            recovered = time.monotonic()
            docs_before = len(sink.docs())
            got_all = poll_until(rig.drained(sink.docs, rig.writer.counts()), 180)
            rep.fig(
                f"{kind}: seconds to drain after recovery", round(time.monotonic() - recovered, 1)
            )
            rep.fig(f"{kind}: drained", got_all)
            rep.fig(
                f"{kind}: events received after recovery (while drained)",
                len(sink.docs()) - docs_before,
            )
            poll_until(lambda: health is not None and health.now() == 200, 30)
            back = health.first(200, recovered - t0)
            rep.fig(
                f"{kind}: /healthz 200 again after s",
                None if back is None else round(back[0] - (recovered - t0), 1),
            )
        rig.writer.stop()
        ok = poll_until(rig.drained(sink.docs), 60)
        rep.fig("drained at the end", ok)
        close_out(rep, rig, sink, health, p)
    finally:
        if health is not None:
            health.stop()
        sink.stop()
        rig.close()


STALL_DEFAULT_S = 300.0


def restart(sink: RecordingSink) -> None:
    """Start a stopped fake sink again on its port, its records kept."""
    sink._ready.clear()
    sink.start()


# ----------------------------------------------------------------------------- e. frozen-holder


LEASE_DEFAULTS = {"CWC_LEASE_HEARTBEAT": "2s", "CWC_LEASE_TTL": "10s", "CWC_SINK_CONCURRENCY": "2"}


def frozen_holder(rep: Report, work: Path, short: bool, trials: int = 5) -> None:
    freeze_s = 20.0 if short else 40.0
    rep.fig(
        "freeze s / trials",
        f"{freeze_s:.0f} / {trials}",
        "CWC_LEASE_HEARTBEAT=2s, CWC_LEASE_TTL=10s (defaults)",
    )
    summary: Counter[str] = Counter()
    for trial in range(1, trials + 1):
        d = one_freeze(work / f"frozen-{trial}", seed=20 + trial, freeze_s=freeze_s)
        rep.fig(
            f"trial {trial}",
            f"take-over {d['takeover_s']} s, old holder: {d['late_requests']} request(s)/"
            f"{d['late_events']} event(s) after SIGCONT, exit {d['old_holder_exit']}; "
            f"standby exit {d['standby_exit']}; drained {d['drained']}; "
            f"duplicates {d['duplicates']}, lost {d['lost']}",
        )
        rep.figures[f"trial {trial} detail"] = d
        summary["late requests"] += d["late_requests"]
        summary["duplicates"] += d["duplicates"]
        summary["lost"] += d["lost"]
        summary["trials with exit 1"] += int(d["old_holder_exit"] == 1)
    rep.fig("all trials", dict(summary))


def one_freeze(work: Path, *, seed: int, freeze_s: float) -> dict[str, Any]:
    """Holder ``a`` and standby ``b`` (each names itself in ``X-Run``); ``a``
    stopped for ``freeze_s``, then continued."""
    rig = Rig(work, [("/fnf/a", "s0"), ("/fnf/b", "s0"), ("/fnf/c", "s0")], seed=seed, backlog=500)
    sink = RecordingSink()
    sink.start()
    try:
        a = rig.product(sink.url, CWC_SINK_HEADERS=json.dumps({"X-Run": "a"}), **LEASE_DEFAULTS)
        b = rig.product(sink.url, CWC_SINK_HEADERS=json.dumps({"X-Run": "b"}), **LEASE_DEFAULTS)
        rig.writer.start_appending(rig.keys, every_s=0.05, per_tick=(0, 5))
        a.start()
        poll_until(lambda: len(sink.docs()) >= 1500, 30)
        b.start()
        poll_until(lambda: STANDBY_LOG in b.logs(), 20)
        assert a.proc is not None
        time.sleep(1.0)
        os.kill(a.proc.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        took = poll_until(lambda: ACQUIRED_LOG in b.logs(), freeze_s, every_s=0.05)
        takeover = round(time.monotonic() - frozen, 1) if took else None
        time.sleep(max(0.0, freeze_s - (time.monotonic() - frozen)))
        before = len(sink.requests())
        os.kill(a.proc.pid, signal.SIGCONT)
        try:
            rc: int | str = a.proc.wait(30)
        except subprocess.TimeoutExpired:
            rc = "still running 30 s after SIGCONT"
        late = [r for r in sink.requests()[before:] if r.header("X-Run") == "a"]
        late_docs = sum(len(decode_documents(r.body, r.header("content-type") or "")) for r in late)
        rig.writer.stop()
        ok = poll_until(rig.drained(sink.docs), 60)
        return {
            "takeover_s": takeover,
            "late_requests": len(late),
            "late_events": late_docs,
            "old_holder_exit": rc,
            "old_holder_last_log": last_log(a),
            "standby_exit": terminate(b),
            "drained": ok,
            **rig.tally(sink.docs()),
        }
    finally:
        sink.stop()
        rig.close()


# ----------------------------------------------------------------------------- f. secrets


SECRETS = {
    "signature": "Sg7Qk/R2m+Zx9WpL4tV8nB==",  # needs percent-encoding in the URL
    "sig": "q7Zk2w",  # short: masked by its name only
    "key": "Ky5Tr8Wq2Zx7Cv4Bn1Mh",
    "api_key": "Ak9Lm3Np7Qr2St6UvW0x",
    "token": "Tk4Wx8Yz2Ab6Cd1EfG5h",
    "password": "Pw7Hq3Jr9Ks2Lt5M",
    "authorization": "Az8By4Cx1Dw6Ev3FgH2j",
}


def secret_forms() -> dict[str, list[str]]:
    """Each secret as it may appear: raw, percent-encoded, encoded twice."""
    out: dict[str, list[str]] = {}
    for name, value in SECRETS.items():
        forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
        forms.add(urllib.parse.quote(urllib.parse.quote(value, safe=""), safe=""))
        out[name] = sorted(forms)
    return out


class EchoSink(RecordingSink):
    """In mode ``500-echo`` answers 500 with the request line (path and query)
    in its body, as some proxies do; ``401`` answers 401; else records."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = "ok"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method in ("GET", "HEAD") or self.mode == "ok":
            return await super()._handle(request)
        if self.mode == "401":
            return web.Response(
                status=401, text=f"unauthorized: {request.headers.get('Authorization')}"
            )
        return web.Response(status=500, text=f"upstream failed for POST {request.path_qs}")


def secrets_scenario(rep: Report, work: Path, short: bool) -> None:
    """Two runs (the product refuses a password in the URL together with an
    Authorization header, exit 2): the query values with the URL's password,
    then with the header. The refused configuration's own message is searched too."""
    surfaces: dict[str, str] = {}
    query = urllib.parse.urlencode(
        {k: SECRETS[k] for k in ("signature", "sig", "key", "api_key", "token")}
    )
    headers = json.dumps({"Authorization": f"Bearer {SECRETS['authorization']}", "X-Env": "bench"})
    rig = Rig(work / "secrets-0", [("/fns/a", "s0")], seed=12, backlog=10)
    try:
        both = rig.product(
            f"http://ingest:{SECRETS['password']}@127.0.0.1:{free_port()}/ingest?{query}",
            CWC_SINK_HEADERS=headers,
        )
        done = run_cli(both.env, "run", timeout_s=60)
        rep.fig("password and Authorization header together: exit", done.returncode)
        surfaces["refused configuration"] = done.stdout + done.stderr
    finally:
        rig.close()
    checked: list[bool] = []
    for variant in ("password", "header"):
        sink_port = free_port()
        auth = f"ingest:{SECRETS['password']}@" if variant == "password" else ""
        url = f"http://{auth}127.0.0.1:{sink_port}/ingest?{query}"
        extra = {"CWC_SINK_HEADERS": headers} if variant == "header" else {}
        rig = Rig(
            work / f"secrets-{variant}", [("/fns/a", "s0"), ("/fns/b", "s0")], seed=12, backlog=300
        )
        try:
            ok, rc = provoke(rig, url, extra, surfaces, variant)
            rep.fig(f"{variant}: delivered after the errors", ok)
            rep.fig(f"{variant}: exit status on SIGTERM", rc)
            log = surfaces[f"{variant} product log"]
            seen = ["500" in log, "401" in log, "Connect" in log or "connect" in log]
            rep.fig(f"{variant}: log names the 500s / 401s / refused connections", seen)
            checked.extend(seen)
        finally:
            rig.close()
    rep.fig("text searched (bytes)", sum(len(t) for t in surfaces.values()))
    rep.fig("secret values searched (forms)", sum(len(f) for f in secret_forms().values()))
    leaks: list[str] = []
    for where, text in surfaces.items():
        for name, forms in secret_forms().items():
            n = sum(text.count(f) for f in forms)
            if n:
                leaks.append(f"{name} x{n} in {where}")
    rep.fig("leaks", len(leaks), "must be 0")
    rep.fig("leaks where", leaks)


def answered_twice(sink: RecordingSink) -> Callable[[], bool]:
    n = len(sink.requests())
    return lambda: len(sink.requests()) >= n + 2


def provoke(
    rig: Rig, url: str, extra: dict[str, str], surfaces: dict[str, str], variant: str
) -> tuple[bool, int | str]:
    """The sink down, then 500s echoing the request line, then 401s, then
    fine; every surface collected after each phase into ``surfaces``."""
    sink_port = urllib.parse.urlsplit(url).port
    port = free_port()
    admin = Admin(port)
    p = rig.product(url, CWC_ADMIN_ADDR=f"127.0.0.1:{port}", CWC_LOG_LEVEL="DEBUG", **extra)

    def look(phase: str) -> None:
        for path in ("/healthz", "/stats", "/metrics"):
            got = admin.get(path)
            text = "" if got is None else got[1].decode(errors="replace")
            surfaces[f"{variant} {phase} {path}"] = text
        for cmd in ("status", "check"):
            done = run_cli(p.env, cmd, timeout_s=60)
            surfaces[f"{variant} {phase} cwconsumer {cmd}"] = done.stdout + done.stderr

    sink = EchoSink(port=sink_port or 0)
    try:
        p.start()
        # Each phase lasts until the product met it twice (back-off allowing).
        poll_until(lambda: (refused(admin) or 0) >= 2, 45)  # nothing listens: connection refused
        look("down")
        sink.start()
        for mode in ("500-echo", "401"):
            sink.mode = mode
            poll_until(answered_twice(sink), 45)
            look(mode)
        sink.mode = "ok"
        ok = poll_until(rig.drained(sink.docs), 60)
        look("ok")
        rc = terminate(p)
        surfaces[f"{variant} product log"] = p.logs()
        return ok, rc
    finally:
        sink.stop()


# ----------------------------------------------------------------------------- main

SCENARIOS: dict[str, Callable[[Report, Path, bool], None]] = {
    "huge-answer": huge_answer,
    "cloudwatch-down": cloudwatch_down,
    "sink-404": sink_404,
    "sink-outage": sink_outage,
    "frozen-holder": frozen_holder,
    "secrets": secrets_scenario,
}


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cwc-faultsnet-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept: {path}")
        else:
            subprocess.run(["rm", "-rf", str(path)], check=False)


def git_rev() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("scenario", nargs="+", choices=[*SCENARIOS, "all"])
    ap.add_argument("--short", action="store_true", help="shortened durations (what `all` uses)")
    ap.add_argument("--keep", action="store_true", help="keep the databases and product logs")
    args = ap.parse_args(argv)
    every = "all" in args.scenario
    names = list(SCENARIOS) if every else list(dict.fromkeys(args.scenario))
    short = args.short or every
    results: list[dict[str, Any]] = []
    started = time.time()
    rev = git_rev()  # the product's code as the run starts
    print(
        f"faults_net: {', '.join(names)} ({'short' if short else 'issue'} durations), git {rev}, load {loadavg()}"
    )
    with workdir(args.keep) as work:
        for name in names:
            rep = Report(name)
            try:
                SCENARIOS[name](rep, work, short)
            except Exception as exc:  # one scenario's failure is a result too
                rep.fig("scenario failed", f"{type(exc).__name__}: {exc}")
            rep.fig("load average at the end", loadavg())
            results.append(rep.dump())
    RESULTS.mkdir(exist_ok=True)
    out = (
        RESULTS
        / f"faults-net-{time.strftime('%Y%m%d-%H%M%S')}-{'all' if every else '+'.join(names)}.json"
    )
    out.write_text(
        json.dumps(
            {
                "argv": sys.argv[1:],
                "short": short,
                "git": rev,
                "seconds": round(time.time() - started, 1),
                "scenarios": results,
            },
            indent=1,
            default=str,
        )
    )
    print(f"results: {out.relative_to(ROOT)} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
