"""The database injections of issue 14, measured against the product as a real process.

    flock /tmp/cwc-heavy.lock .venv/bin/python bench/faults_db.py all
    flock /tmp/cwc-heavy.lock .venv/bin/python bench/faults_db.py diskfull-poison --modes wal
    flock /tmp/cwc-heavy.lock .venv/bin/python bench/faults_db.py locked,shm

One subcommand per scenario of the issue (``all`` runs them in turn):

- ``diskfull-poison``: a backlog in a few streams, an Elasticsearch-like sink
  refusing ~2.5 % of the events item by item (400 ``mapper_parsing_exception``),
  the database's tmpfs filled for 30 s mid-run, then freed;
- ``diskfull-backlog``: a 130-s disk-full during a larger backlog (more events
  than the memory budget holds);
- ``locked``: another process holds the database's write lock
  (``BEGIN IMMEDIATE``) for 45 s mid-backlog;
- ``removed-dir``: the database's directory removed under a running process
  (WAL), with ``CWC_START_POSITION=end`` (and ``beginning`` for contrast);
- ``shm``: WAL's ``-shm`` file made unwritable (a read-only bind mount over
  it; ``chmod 0444`` with the product running as a non-root user, as in the
  image; truncated).

What runs: the CloudWatch Logs stand-in (``tests/support/fakecwl.py``) and the
sink in this process (threads, HTTP on 127.0.0.1), the product as a child
process (``python -m cwconsumer run``) restarted like ECS would (2 s after it
exits while the fault is on), its database on a tmpfs mounted here (needs
root). Numbered events (``tests/support/harness.Writer``) tell every event
apart: an event is *lost* when it was neither received by the sink nor is a
dead-letter row. Each scenario prints one line per figure and writes JSON to
``bench/results/``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bench.run import poll_until  # noqa: E402
from tests.support.fakecwl import FakeCloudWatchLogs  # noqa: E402
from tests.support.fakesinks import BODY, ElasticsearchFake, FakeServer  # noqa: E402
from tests.support.harness import (  # noqa: E402
    Admin,
    Key,
    Writer,
    fake_env,
    free_port,
    log_records,
    read_checkpoints,
)

RESULTS = ROOT / "bench" / "results"
SCALE = 1.0  # --scale: events and fault durations (a quick try of the script itself)
POISON = " POISON"
Event = tuple[str, str, int]
"""(group, stream, index in the stream)."""

_IN_BODY = re.compile(rb'"message":"([^"|]*)\|([^"|]*)\|(\d{6})')
_IN_TEXT = re.compile(r"^([^|]*)\|([^|]*)\|(\d{6})")


def _event(text: str) -> Event | None:
    m = _IN_TEXT.match(text)
    return (m.group(1), m.group(2), int(m.group(3))) if m else None


# ---------------------------------------------------------------------------- sinks


class EpochCounts:
    """Events counted per *epoch* (set by the driver before each deliberate
    restart), under the sink's own lock."""

    _lock: threading.Condition
    by_epoch: dict[int, Counter[Event]]

    def received(self) -> Counter[Event]:
        with self._lock:
            out: Counter[Event] = Counter()
            for c in self.by_epoch.values():
                out.update(c)
            return out

    def in_epoch(self, epoch: int) -> Counter[Event]:
        with self._lock:
            return Counter(self.by_epoch.get(epoch, Counter()))


class CountingSink(EpochCounts, FakeServer):
    """Any POST: every numbered event in the NDJSON body is counted, per
    *epoch* (set by the driver before each deliberate restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.by_epoch: dict[int, Counter[Event]] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            return web.Response(text="ok")
        found = [(g.decode(), s.decode(), int(i)) for g, s, i in _IN_BODY.findall(request[BODY])]
        with self._lock:
            self._state.requests.clear()  # the base class keeps every body: not here
            self.by_epoch.setdefault(self.epoch, Counter()).update(found)
        return web.Response(text="ok")


class PoisonEs(EpochCounts, ElasticsearchFake):
    """Elasticsearch ``_bulk`` refusing every item whose message holds
    :data:`POISON` with 400 ``mapper_parsing_exception``; every other item
    that arrives is counted (a second arrival answered 409 is a duplicate)."""

    def __init__(self) -> None:
        super().__init__(mapping_error=self._check)
        self.epoch = 0
        self.by_epoch: dict[int, Counter[Event]] = {}
        self.refused: Counter[Event] = Counter()

    def _check(self, source: dict[str, Any]) -> str | None:  # called under self._lock
        self._state.requests.clear()
        text = str(source.get("message", ""))
        ev = _event(text)
        if ev is None:
            return None
        if POISON in text:
            self.refused[ev] += 1
            return "failed to parse field [message] of type [long] in document"
        self.by_epoch.setdefault(self.epoch, Counter())[ev] += 1
        return None

    @staticmethod
    def _item_error(head: dict[str, Any], status: int, kind: str, reason: str) -> dict[str, Any]:
        if kind == "document_parsing_exception":
            kind = "mapper_parsing_exception"  # what the sink (Elasticsearch 7) said
        return ElasticsearchFake._item_error(head, status, kind, reason)


Sink = CountingSink | PoisonEs


# -------------------------------------------------------------------------- the task


@dataclass
class Exit:
    at: float  # seconds since the task's first start
    rc: int
    last_line: str
    fatal_signal_text: bool  # faulthandler's "Fatal Python error" in this run's output


@dataclass
class Task:
    """The product as ECS runs it: started again ``restart_s`` after it exits
    (whatever the status) while ``supervise`` is on."""

    env: dict[str, str]
    log_path: Path
    restart_s: float = 2.0
    user: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    exits: list[Exit] = field(default_factory=list)
    starts: int = 0
    t0: float = field(default_factory=time.monotonic)
    _offset: int = 0
    _supervise: bool = False
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self._lock:
            self._launch()
            self._supervise = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="ecs", daemon=True)
            self._thread.start()

    def _launch(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cwconsumer", "run"],
                env=self.env,
                stdout=log,
                stderr=log,
                user=self.user,
                cwd=ROOT,
            )
        self.starts += 1

    def _record_exit(self, rc: int) -> None:
        text = self.log_path.read_bytes()[self._offset :].decode(errors="replace")
        records = log_records(text)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        last = str(records[-1].get("message", "")) if records else ""
        if lines and not lines[-1].startswith("{"):
            last = lines[-1]  # something not ours came last (a traceback, faulthandler)
        self.exits.append(
            Exit(round(time.monotonic() - self.t0, 1), rc, last[:300], "Fatal Python" in text)
        )

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)
            with self._lock:
                proc = self.proc
                if proc is None or proc.poll() is None or not self._supervise:
                    continue
                self._record_exit(proc.returncode)
                self.proc = None
            time.sleep(self.restart_s)
            with self._lock:
                if self._supervise and self.proc is None:
                    self._launch()

    def running(self) -> bool:
        with self._lock:
            return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout_s: float) -> Exit | None:
        """The next exit within ``timeout_s`` (restarts stay on)."""
        n = len(self.exits)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.exits) > n:
                return self.exits[n]
            time.sleep(0.1)
        return None

    def sigterm(self, timeout_s: float = 40.0) -> tuple[int | None, float]:
        """Stop supervising, wait for a restart in progress to be running,
        SIGTERM it: (exit status or None if it did not exit in time, seconds)."""
        deadline = time.monotonic() + self.restart_s + 30
        while time.monotonic() < deadline:
            with self._lock:
                if self.proc is not None:
                    self._supervise = False
                    proc = self.proc
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("the product was never running again")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc: int | None = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
            proc.kill()
            proc.wait(10)
        took = time.monotonic() - started
        with self._lock:
            self._record_exit(proc.returncode)
            self.proc = None
        return rc, round(took, 1)

    def kill(self) -> None:
        with self._lock:
            self._supervise = False
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)

    def restarts(self) -> int:
        return self.starts - 1


class HealthLog:
    """``/healthz`` every second: (seconds since start, status or 0 when nothing
    answers, first reason)."""

    def __init__(self, admin: Admin, t0: float) -> None:
        self.admin = admin
        self.t0 = t0
        self.samples: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            got = self.admin.healthz()
            at = round(time.monotonic() - self.t0, 1)
            if got is None:
                self.samples.append((at, 0, ""))
            else:
                reasons = got[1].get("reasons") or []
                first = "; ".join(str(x) for x in reasons)[:200]
                self.samples.append((at, got[0], first))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def segments(self) -> list[dict[str, Any]]:
        """Runs of one status: from, to, status, the first reason of the run."""
        out: list[dict[str, Any]] = []
        for at, status, reason in self.samples:
            if out and out[-1]["status"] == status and out[-1]["reason"][:60] == reason[:60]:
                out[-1]["to"] = at
            else:
                out.append({"from": at, "to": at, "status": status, "reason": reason})
        return out

    def between(self, start: float, end: float) -> Counter[int]:
        return Counter(s for at, s, _ in self.samples if start <= at <= end)


def timeline(segments: list[dict[str, Any]]) -> str:
    names = {0: "down"}
    return ", ".join(
        f"{s['from']:.0f}-{s['to']:.0f}s {names.get(s['status'], s['status'])}"
        + (f" ({s['reason'][:50]})" if s["reason"] else "")
        for s in segments
    )


# ------------------------------------------------------------------------- the disk


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)],
        check=True,
        capture_output=True,
        timeout=20,
    )


def umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True, timeout=20)


def fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte; returns the filler file."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


# ---------------------------------------------------------------------- one rig


@dataclass
class Rig:
    fake: FakeCloudWatchLogs
    writer: Writer
    sink: Sink
    task: Task
    admin: Admin
    db: Path
    keys: list[Key]
    poison: set[Event] = field(default_factory=set)

    def expected(self) -> set[Event]:
        counts = self.writer.counts()
        return {(g, s, i) for (g, s), n in counts.items() for i in range(n)}

    def dead_letters(self) -> Counter[Event]:
        if not self.db.exists():
            return Counter()
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT document FROM dead_letters").fetchall()
        except sqlite3.OperationalError:
            return Counter()
        finally:
            conn.close()
        out: Counter[Event] = Counter()
        for (doc,) in rows:
            ev = _event(str(json.loads(doc).get("message", "")))
            if ev is not None:
                out[ev] += 1
        return out

    def accounted(self) -> tuple[int, int]:
        """(events neither received nor dead-lettered, events expected)."""
        want = self.expected()
        got = set(self.sink.received()) | set(self.dead_letters())
        return len(want - got), len(want)

    def committed(self) -> bool:
        """Every stream's checkpoint counts all its events."""
        try:
            rows = read_checkpoints(self.db)
        except sqlite3.Error:
            return False
        counts = self.writer.counts()
        return all(
            k in rows and rows[k].delivered + rows[k].dead_lettered >= n for k, n in counts.items()
        )

    def has_checkpoints(self) -> bool:
        try:
            return any(r.delivered for r in read_checkpoints(self.db).values())
        except sqlite3.Error:
            return False

    def delivered_count(self) -> int:
        return len(self.sink.received())

    def figures(self) -> dict[str, Any]:
        want = self.expected()
        received = self.sink.received()
        dead = self.dead_letters()
        lost = sorted(want - set(received) - set(dead))
        good_dead = [e for e in dead if e not in self.poison]
        dup = sum(c - 1 for e, c in received.items() if c > 1)
        dup_dead = sum(c - 1 for c in dead.values() if c > 1)
        return {
            "events": len(want),
            "lost": len(lost),
            "lost_sample": [list(e) for e in lost[:5]],
            "poison": len(self.poison),
            "poison_dead_lettered": sum(1 for e in self.poison if e in dead),
            "poison_received": sum(1 for e in self.poison if e in received),
            "good_dead_lettered": len(good_dead),
            "duplicates": dup,
            "duplicate_dead_letter_rows": dup_dead,
        }


def _all_in(want: set[Event], sink: Sink) -> bool:
    return not (want - set(sink.received()))


@contextlib.contextmanager
def rig(
    workdir: Path,
    *,
    sink: Sink,
    db: Path,
    streams: dict[Key, int],
    poison_share: float = 0.0,
    seed: int = 14,
    user: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Rig]:
    workdir.mkdir(parents=True, exist_ok=True)
    fake = FakeCloudWatchLogs(seed=seed, log_calls=False).start()
    sink.start()
    try:
        writer = Writer(fake, seed=seed)
        rng = random.Random(seed)
        poison: set[Event] = set()
        for (g, s), n in streams.items():
            picks = {i for i in range(n) if rng.random() < poison_share}
            writer.put(g, s, n, suffixes=dict.fromkeys(picks, POISON))
            poison |= {(g, s, i) for i in picks}
        port = free_port()
        settings = {
            "CWC_LOG_GROUP_PREFIXES": "/fdb/",
            "CWC_ADMIN_ADDR": f"127.0.0.1:{port}",
            "CWC_PARSE": "none",
            "CWC_POLL_INTERVAL": "1s",
            "CWC_DISCOVERY_INTERVAL": "5s",
            # the product's defaults, not the tests' short ones
            "CWC_LEASE_HEARTBEAT": "2s",
            "CWC_LEASE_TTL": "10s",
            "CWC_SHUTDOWN_TIMEOUT": "20s",
            "CWC_BATCH_MAX_WAIT": "1s",
        }
        settings.update(env or {})
        task = Task(fake_env(fake, sink.url, db, **settings), workdir / "product.log", user=user)
        r = Rig(fake, writer, sink, task, Admin(port), db, list(streams), poison)
        try:
            yield r
        finally:
            task.kill()
    finally:
        sink.stop()
        fake.stop()


def term_and_restart(r: Rig, out: dict[str, Any], settle_s: float = 6.0) -> None:
    """A clean SIGTERM (expect 0), then a start with nothing new to read:
    whatever the sink receives from that run was delivered before."""
    rc, took = r.task.sigterm()
    out["sigterm_exit"] = rc
    out["sigterm_seconds"] = took
    r.sink.epoch += 1
    epoch = r.sink.epoch
    r.task.start()
    poll_until(lambda: (r.admin.healthz() or (0, {}))[0] == 200, 30)
    time.sleep(settle_s)
    out["redelivered_after_restart"] = sum(r.sink.in_epoch(epoch).values())
    rc2, _ = r.task.sigterm()
    out["second_sigterm_exit"] = rc2


def finish(r: Rig, out: dict[str, Any], health: HealthLog | None) -> None:
    if health is not None:
        health.stop()
        out["healthz"] = health.segments()
    out.update(r.figures())
    out["restarts_by_ecs"] = r.task.restarts()
    out["exits"] = [e.__dict__ for e in r.task.exits]
    out["exit_codes"] = dict(Counter(str(e.rc) for e in r.task.exits))


# ------------------------------------------------------------------------ scenarios


def _streams(groups: int, per_group: int, events: int) -> dict[Key, int]:
    keys = [(f"/fdb/g{g}", f"s{s}") for g in range(groups) for s in range(per_group)]
    return {k: events // len(keys) for k in keys}


def _fault_run(
    workdir: Path,
    mode: str,
    *,
    sink: Sink,
    events: int,
    fault_s: float,
    start_after: int,
    inject: Callable[[Path], Callable[[], None]],
    poison_share: float = 0.0,
    fs_size: str = "64m",
    **env: str,
) -> dict[str, Any]:
    """The common shape of a-c: a backlog, a fault from when ``start_after``
    events arrived for ``fault_s`` (``inject(db)`` starts it and returns what
    ends it), more events put during the fault, then until every event is
    accounted for, then a clean SIGTERM and a restart."""
    fs = workdir / "fs"
    mount_tmpfs(fs, fs_size)
    out: dict[str, Any] = {"journal_mode": mode, "fault_s": fault_s}
    try:
        db = fs / "state" / "cwc.db"
        streams = _streams(2, 2, events)
        with rig(
            workdir,
            sink=sink,
            db=db,
            streams=streams,
            poison_share=poison_share,
            env={"CWC_DB_JOURNAL_MODE": mode, **env},
        ) as r:
            r.task.start()
            health = HealthLog(r.admin, r.task.t0)
            if not poll_until(lambda: r.delivered_count() >= start_after, 60, 0.05):
                raise RuntimeError(f"only {r.delivered_count()} events arrived before the fault")
            on = time.monotonic() - r.task.t0
            out["fault_on_at_s"] = round(on, 1)
            out["delivered_at_fault_on"] = r.delivered_count()
            end = inject(db)
            time.sleep(fault_s / 2)
            for g, s in streams:
                r.writer.put(g, s, events // 20 // len(streams))  # new events mid-fault
            time.sleep(fault_s / 2)
            end()
            off = time.monotonic() - r.task.t0
            out["fault_off_at_s"] = round(off, 1)
            out["delivered_at_fault_off"] = r.delivered_count()
            done = poll_until(lambda: r.accounted()[0] == 0 and r.committed(), 240, 0.25)
            out["all_accounted"] = done
            out["seconds_from_fault_off_to_all_delivered"] = (
                round(time.monotonic() - r.task.t0 - off, 1) if done else None
            )
            # /healthz after recovery: its first 200 (bounded), and 3 s more
            poll_until(lambda: bool(health.samples) and health.samples[-1][1] == 200, 60)
            time.sleep(3)
            health.stop()
            first_ok = next((at for at, st, _ in health.samples if at > off and st == 200), None)
            out["healthz_seconds_from_fault_off_to_200"] = (
                None if first_ok is None else round(first_ok - off, 1)
            )
            after = health.between(off, time.monotonic() - r.task.t0)
            out["healthz_during"] = dict(
                Counter(str(s) for s in health.between(on, off).elements())
            )
            out["healthz_last_after"] = health.samples[-1][1] if health.samples else None
            out["healthz_after"] = dict(Counter(str(s) for s in after.elements()))
            finish(r, out, health)
            term_and_restart(r, out)
            out["exits"] = [e.__dict__ for e in r.task.exits]
    finally:
        umount(fs)
    return out


def diskfull(fs_root: Callable[[Path], Path]) -> Callable[[Path], Callable[[], None]]:
    def inject(db: Path) -> Callable[[], None]:
        filler = fill(fs_root(db))
        return lambda: filler.unlink()

    return inject


def locker(db: Path) -> Callable[[], None]:
    """Another process takes the write lock (``BEGIN IMMEDIATE``) and holds it."""
    code = (
        "import sqlite3, sys\n"
        f"c = sqlite3.connect({str(db)!r}, timeout=60, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
        "c.execute('ROLLBACK')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    if line.strip() != b"locked":
        raise RuntimeError("the lock holder did not get the lock")

    def release() -> None:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)

    return release


def sc_diskfull_poison(workdir: Path, modes: list[str]) -> list[dict[str, Any]]:
    out = []
    for mode in modes:
        res = _fault_run(
            workdir / mode,
            mode,
            sink=PoisonEs(),
            events=int(40_000 * SCALE),
            fault_s=30 * SCALE,
            start_after=int(8_000 * SCALE),
            inject=diskfull(lambda db: db.parent.parent),
            poison_share=0.025,
            fs_size="64m",
            CWC_SINK_FORMAT="elasticsearch",
        )
        out.append(res)
    return out


def sc_diskfull_backlog(workdir: Path, modes: list[str]) -> list[dict[str, Any]]:
    return [
        _fault_run(
            workdir / mode,
            mode,
            sink=CountingSink(),
            events=int(150_000 * SCALE),
            fault_s=130 * SCALE,
            start_after=int(10_000 * SCALE),
            inject=diskfull(lambda db: db.parent.parent),
        )
        for mode in modes
    ]


def sc_locked(workdir: Path, modes: list[str]) -> list[dict[str, Any]]:
    return [
        _fault_run(
            workdir / mode,
            mode,
            sink=CountingSink(),
            events=int(100_000 * SCALE),
            fault_s=45 * SCALE,
            start_after=int(10_000 * SCALE),
            inject=locker,
        )
        for mode in modes
    ]


def sc_removed_dir(workdir: Path, modes: list[str]) -> list[dict[str, Any]]:
    """WAL (the issue's case): the directory removed under a running process.
    Live events are appended the whole time; the first event of each stream
    the product delivered marks where its promise starts (start position end)."""
    out = []
    for start in ("end", "beginning"):
        res: dict[str, Any] = {"journal_mode": "wal", "start_position": start}
        db = workdir / start / "efs" / "cwc.db"
        keys = [("/fdb/live", "s0"), ("/fdb/live", "s1")]
        with rig(
            workdir / start,
            sink=CountingSink(),
            db=db,
            streams=dict.fromkeys(keys, 0),
            env={
                "CWC_DB_JOURNAL_MODE": "wal",
                "CWC_START_POSITION": start,
                "CWC_POLL_INTERVAL": "500ms",
                "CWC_DISCOVERY_INTERVAL": "1s",
            },
        ) as r:
            r.writer.start_appending(keys, every_s=0.02, per_tick=(1, 4))
            r.task.start()
            if not poll_until(lambda: r.delivered_count() >= 200 and r.has_checkpoints(), 60):
                raise RuntimeError("no events delivered before the removal")
            time.sleep(2)
            first = {k: min(i for g, s, i in r.sink.received() if (g, s) == k) for k in keys}
            removed = time.monotonic() - r.task.t0
            shutil.rmtree(db.parent)
            res["removed_at_s"] = round(removed, 1)
            ex = r.task.wait_exit(30)
            res["exit_after_removal"] = None if ex is None else ex.rc
            res["seconds_to_exit"] = None if ex is None else round(ex.at - removed, 1)
            res["last_line"] = None if ex is None else ex.last_line
            res["last_line_names_path"] = ex is not None and str(db) in ex.last_line
            time.sleep(8)  # the ECS restart runs on a new, empty database
            r.writer.stop()
            counts = r.writer.counts()
            want = {(g, s, i) for (g, s), n in counts.items() for i in range(first[(g, s)], n)}
            poll_until(partial(_all_in, want, r.sink), 20)
            received = r.sink.received()
            lost = sorted(want - set(received))
            res["events_after_first_delivery"] = len(want)
            res["lost"] = len(lost)
            res["duplicates"] = sum(c - 1 for c in received.values() if c > 1)
            if lost:
                res["lost_indexes_per_stream"] = {
                    f"{g}|{s}": [min(i for gg, ss, i in lost if (gg, ss) == (g, s)),
                                 max(i for gg, ss, i in lost if (gg, ss) == (g, s))]
                    for g, s in keys if any((gg, ss) == (g, s) for gg, ss, _ in lost)
                }  # fmt: skip
            res["restarts_by_ecs"] = r.task.restarts()
            rc, _ = r.task.sigterm()
            res["sigterm_exit"] = rc
            res["exits"] = [e.__dict__ for e in r.task.exits]
        out.append(res)
    return out


def sc_shm(workdir: Path, modes: list[str]) -> list[dict[str, Any]]:
    """WAL's ``-shm`` file made unwritable under a running product."""
    out = []
    for how in ("ro-bind", "chmod", "truncate"):
        res: dict[str, Any] = {"journal_mode": "wal", "how": how}
        base = workdir / how
        efs = base / "efs"
        efs.mkdir(parents=True)
        db = efs / "cwc.db"
        keys = [("/fdb/shm", "s0"), ("/fdb/shm", "s1")]
        with rig(
            base, sink=CountingSink(), db=db, streams=dict.fromkeys(keys, 2000),
            env={"CWC_DB_JOURNAL_MODE": "wal"},
        ) as r:  # fmt: skip
            r.task.start()
            if not poll_until(lambda: r.committed(), 60):
                raise RuntimeError("the backlog was not committed before the fault")
            shm = Path(str(db) + "-shm")
            bound = False
            at = time.monotonic() - r.task.t0
            if how == "ro-bind":
                subprocess.run(["mount", "--bind", str(shm), str(shm)], check=True, timeout=20)
                bound = True
                subprocess.run(["mount", "-o", "remount,bind,ro", str(shm)], check=True, timeout=20)
            elif how == "chmod":
                # As root (this machine): mode bits do not stop root, and the
                # product's check (os.access) says so too. The image runs as
                # uid 10001, but this machine's interpreter is not reachable
                # by another user, so that case is not run here.
                shm.chmod(0o444)
            else:
                os.truncate(shm, 0)
            for k in keys:
                r.writer.put(*k, 500)
            waited = 15 if how == "chmod" else 30
            ex = r.task.wait_exit(waited)
            res["exit"] = None if ex is None else ex.rc
            res["seconds_to_exit"] = None if ex is None else round(ex.at - at, 1)
            res["last_line"] = None if ex is None else ex.last_line
            res["fatal_signal_text"] = None if ex is None else ex.fatal_signal_text
            res[f"still_running_after_{waited}s"] = ex is None
            # put it right (as an operator would) and let the ECS restart catch up
            if bound:
                umount(shm)
            elif how == "chmod":
                shm.chmod(0o644)
            res["all_accounted_after_repair"] = poll_until(
                lambda: r.accounted()[0] == 0 and r.committed(), 60
            )
            res.update(r.figures())
            res["restarts_by_ecs"] = r.task.restarts()
            rc, _ = r.task.sigterm()
            res["sigterm_exit"] = rc
            res["exits"] = [e.__dict__ for e in r.task.exits]
        out.append(res)
    return out


# ---------------------------------------------------------------------------- output

SCENARIOS: dict[str, Callable[[Path, list[str]], list[dict[str, Any]]]] = {
    "diskfull-poison": sc_diskfull_poison,
    "diskfull-backlog": sc_diskfull_backlog,
    "locked": sc_locked,
    "removed-dir": sc_removed_dir,
    "shm": sc_shm,
}

_SKIP = {"exits", "healthz", "lost_sample"}


def report(name: str, runs: list[dict[str, Any]]) -> None:
    for run in runs:
        tag = run.get("journal_mode", "")
        for extra in ("start_position", "how"):
            if extra in run:
                tag += f" {extra}={run[extra]}"
        for key, value in run.items():
            if key in _SKIP or key in ("journal_mode", "start_position", "how"):
                continue
            print(f"{name} [{tag}] {key}: {value}")
        if "healthz" in run:
            print(f"{name} [{tag}] healthz timeline: {timeline(run['healthz'])}")
        codes = [(e["at"], e["rc"]) for e in run.get("exits", [])]
        print(f"{name} [{tag}] exits (s, status): {codes}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "scenario", help=f"one of {', '.join(SCENARIOS)}, several joined by commas, or all"
    )
    ap.add_argument("--modes", default="wal,delete", help="journal modes for a-c")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--scale", type=float, default=1.0, help="scale events and fault durations")
    args = ap.parse_args(argv)
    global SCALE
    SCALE = args.scale
    if os.geteuid() != 0:
        sys.exit("needs root: the database's file system is a tmpfs mounted here")
    modes = [m for m in args.modes.split(",") if m]
    names = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    everything: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "loadavg_before": os.getloadavg(),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "scale": args.scale,
        "scenarios": {},
    }
    workroot = Path(tempfile.mkdtemp(prefix="cwc-faultsdb-"))
    os.chmod(workroot, 0o755)
    try:
        for name in names:
            t = time.monotonic()
            runs = SCENARIOS[name](workroot / name, modes)
            for run in runs:
                run["scenario_seconds"] = round(time.monotonic() - t, 1)
            everything["scenarios"][name] = runs
            report(name, runs)
            sys.stdout.flush()
    finally:
        everything["loadavg_after"] = os.getloadavg()
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"faults_db-{args.scenario.replace(',', '+')}-{stamp}.json"
        path.write_text(json.dumps(everything, indent=1, default=str))
        print(f"results: {path.relative_to(ROOT)}  (work directory {workroot})")
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)


if __name__ == "__main__":
    main()
