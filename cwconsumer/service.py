"""The ``run`` service: the one place that knows every stage.

::

    root task group
    ├── signals          SIGTERM/SIGINT → graceful stop (a second one: stop now)
    ├── admin server     /healthz /metrics /stats (started first, stopped last)
    └── lease            standby until the database lease is ours, then:
        pipeline task group
        ├── heartbeat    renews the lease; a lost lease stops the process (exit 1)
        ├── fetch scope  (cancelled first at shutdown)
        │   ├── discovery          groups and streams, every CWC_DISCOVERY_INTERVAL
        │   └── CWC_WORKERS readers  one page per turn → lane channels
        └── lanes        CWC_SINK_CONCURRENCY × (batch → sink → checkpoint)

Shutdown: stop fetching; close the lane channels; lanes deliver what they
hold within ``CWC_SHUTDOWN_TIMEOUT``; checkpoints are written after each
confirmation (shielded), so whatever was confirmed is never re-delivered.

Crash-only: a stage that holds events (a lane, a reader) is never restarted
in place. An unexpected exception in one stops the whole process with exit
status 1 and the cause on the last log line; the orchestrator starts it again
and the checkpoints (which never pass an unconfirmed event) make that safe.
Stages without events (discovery, the metrics reporter) are restarted after a
back-off and reported in ``/healthz`` meanwhile. The heartbeat stops the
process when the lease is lost, when the database file is removed or replaced,
on a database error that is not retriable, or after retriable ones for longer
than the lease TTL.
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus

from cwconsumer import allocator, earlystop
from cwconsumer.admin import AdminServer
from cwconsumer.arns import is_group_arn
from cwconsumer.aws import LogsClient, aws_role
from cwconsumer.config import Config
from cwconsumer.delivery import Lane, lane_of
from cwconsumer.discovery import Discovery, Registry
from cwconsumer.emf import Reporter
from cwconsumer.errors import AwsError, CwcError, LeaseLost, StageFailed, StoreError
from cwconsumer.flow import Budget, ChannelClosed, Router
from cwconsumer.groupinfo import GroupInfo, masked
from cwconsumer.health import Health
from cwconsumer.metrics import Metrics, stream_ingestion_lag_s
from cwconsumer.model import Chunk, StreamKey
from cwconsumer.reader import Reader
from cwconsumer.sinks.base import Sink
from cwconsumer.sinks.factory import build_sink
from cwconsumer.sinks.otlp import OtlpSink
from cwconsumer.store import Store
from cwconsumer.streams import Schedule, StreamState

log = logging.getLogger("cwconsumer.service")


class Service:
    def __init__(self, cfg: Config, *, sink: Sink | None = None) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.health = Health(cfg.stall_timeout_s, role_arn=cfg.aws_role_arn)
        self.registry = Registry(on_remove=self.metrics.in_flight.forget)
        self.schedule = Schedule()
        self.budget = Budget(
            cfg.buffer_max_events, cfg.buffer_max_bytes, on_pending=self.health.pending
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sink = sink
        self._stop = anyio.Event()
        self._store: Store | None = None
        self._logs: LogsClient | None = None
        self._discovery: Discovery | None = None
        self.lanes: list[Lane] = []
        self.admin_port: int | None = None
        self.started_at = time.time()
        self.discovery: Discovery | None = None
        self.group_info: GroupInfo | None = None
        self.stuck_database = False
        """The database connection could not be closed: the caller must end
        the process without waiting for aiosqlite's (non-daemon) thread."""

    # -- entry point ----------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        # A fatal signal (SIGBUS when SQLite's shared-memory file goes away,
        # SIGSEGV) writes its cause and every thread's stack to stderr first.
        if not faulthandler.is_enabled():
            faulthandler.enable(all_threads=True)
        store = self._store = await Store.open(cfg.db_path, cfg.db_journal_mode)
        log.info(
            "starting",
            extra={"db": store.path, "journal_mode": store.journal_mode, "config": cfg.redacted()},
        )
        for warning in cfg.warnings:
            log.warning(warning)
        # Documents are acyclic and freed by reference counting; the cyclic
        # collector only costs time on the hot path (measured by the shaping
        # benchmark), so it runs rarely, and start-up objects are frozen out of it.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        gc.enable()  # `cwconsumer run` starts with it off (cli.cmd_run)
        # Documents of more than 512 bytes come from glibc's malloc: keep the
        # memory of delivered batches for the next pages (cwconsumer.allocator).
        allocator.tune()
        try:
            async with anyio.create_task_group() as root:
                root.start_soon(self._signals, root.cancel_scope)
                if cfg.admin_addr is not None:
                    admin = AdminServer(
                        cfg.admin_addr[0],
                        cfg.admin_addr[1],
                        self.health,
                        self.metrics,
                        pending=lambda: self.budget.events,
                        stats=self.stats,
                        refresh=self.refresh_metrics,
                    )
                    self.admin_port = await root.start(admin.serve)
                    log.info("admin server listening", extra={"port": self.admin_port})
                reporter = Reporter(self.metrics, self.refresh_metrics, emf=cfg.emf_metrics)
                root.start_soon(self._restarted, "reporter", reporter.run)
                task_status.started()
                if await self._acquire_lease(store):
                    await self._pipeline(store)
                root.cancel_scope.cancel()
        finally:
            with anyio.move_on_after(5, shield=True):
                try:
                    await store.release_lease()
                except CwcError as exc:  # the database may be why we stop
                    log.warning("could not release the lease", extra={"error": str(exc)})
            # Always, even if the above failed or overran: aiosqlite's worker
            # thread is not a daemon, and an open connection would keep the
            # process alive.
            with anyio.move_on_after(5, shield=True) as closing:
                await store.aclose()
            if closing.cancelled_caught:
                # Its thread is stuck in a statement (a stalled file system):
                # the process could not end. Nothing unconfirmed is lost by
                # ending it: checkpoints only ever follow confirmations.
                self.stuck_database = True
        log.info("stopped")

    def stop(self) -> None:
        self._stop.set()

    async def _signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            for signum in earlystop.take():  # received while starting
                self._on_signal(signum, scope)
            async for signum in signals:
                self._on_signal(signum, scope)

    def _on_signal(self, signum: int, scope: anyio.CancelScope) -> None:
        if not self._stop.is_set():
            log.info(
                "stop requested; finishing in-flight deliveries",
                extra={
                    "signal": signal.Signals(signum).name,
                    "timeout_s": self.cfg.shutdown_timeout_s,
                },
            )
            self._stop.set()
            _arm_watchdog(self.cfg.shutdown_timeout_s + 20.0)
        else:
            log.warning("second stop signal; stopping now")
            scope.cancel()

    # -- lease ----------------------------------------------------------------

    async def _acquire_lease(self, store: Store) -> bool:
        cfg = self.cfg
        ttl_ms = int(cfg.lease_ttl_s * 1000)
        announced = False
        while not self._stop.is_set():
            epoch = await store.acquire_lease(
                self.owner, _now_ms(), ttl_ms, socket.gethostname(), os.getpid()
            )
            if epoch is not None:
                self.health.standby = False
                self.metrics.standby.set(0)
                log.info("lease acquired; consuming", extra={"owner": self.owner, "epoch": epoch})
                return True
            info = await store.lease_info()
            self.health.standby = True
            self.health.holder = f"{info.host} pid {info.pid}"
            self.metrics.standby.set(1)
            if not announced:
                log.info(
                    "standby: another run holds the database lease; taking over when it stops",
                    extra={"holder_host": info.host, "holder_pid": info.pid},
                )
                announced = True
            with anyio.move_on_after(cfg.lease_heartbeat_s):
                await self._stop.wait()
        return False

    async def _heartbeat(self, store: Store) -> None:
        """Renew the lease and check the database file is still ours. Stops
        the process (raises) on a lost lease, a removed or replaced file, a
        database error that is not retriable, or retriable ones lasting
        longer than the lease TTL (another process may take over by then)."""
        failures = 0
        failing_since: float | None = None
        while True:
            await anyio.sleep(self.cfg.lease_heartbeat_s)
            try:
                store.check_file()
                await store.heartbeat(_now_ms())
                failures, failing_since = 0, None
            except LeaseLost:
                raise
            except StoreError as exc:
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                failures += 1
                if not exc.retriable or now - failing_since >= self.cfg.lease_ttl_s:
                    raise
                log.warning(
                    "lease heartbeat failed", extra={"error": str(exc), "failures": failures}
                )

    async def _lease_guard(self) -> None:
        """Before a lane sends: if the lease was not renewed recently (the
        process was frozen, or the heartbeat is failing), prove it is still
        ours now. Raises :class:`LeaseLost` when another process took it; a
        retriable database error waits here (the heartbeat bounds how long)."""
        store = self._store
        if store is None:
            return
        while True:
            try:
                # Renewed within 1.5 heartbeats: nobody can have taken it (the
                # TTL is more than two heartbeats).
                await store.prove_lease(self.cfg.lease_heartbeat_s * 1.5)
                return
            except StoreError as exc:
                if isinstance(exc, LeaseLost) or not exc.retriable:
                    raise
                await anyio.sleep(1.0)

    # -- pipeline -------------------------------------------------------------

    async def _pipeline(self, store: Store) -> None:
        cfg = self.cfg
        sink = self._sink or build_sink(cfg)
        if isinstance(sink, OtlpSink):
            sink.on_rejected = self.metrics.sink_records_rejected.inc
        try:
            async with LogsClient(
                cfg.region,
                get_rate=cfg.api_rate,
                describe_rate=cfg.describe_rate,
                timeout_s=cfg.aws_timeout_s,
                max_connections=cfg.workers + 4,
                observe=self._observe_call,
                role=aws_role(cfg),
                unmask=cfg.unmask,
                include_linked_accounts=cfg.include_linked_accounts,
            ) as logs:
                self._logs = logs
                account = await self._account(logs)
                if account is None:
                    return  # stopped while waiting for it
                await self._run_stages(store, logs, sink, account)
        finally:
            with anyio.move_on_after(5, shield=True):
                await sink.aclose()

    async def _account(self, logs: LogsClient) -> str | None:
        """The account id the credentials read from: part of every ``event.id``
        (eventid.event_id), so nothing is read before it is known. Needs no
        call when every group is given by ARN or a role is assumed. Retried
        with a back-off up to a minute, said in /healthz; None on a stop."""
        if self.cfg.log_groups and not self.cfg.log_group_prefixes:
            if all(is_group_arn(g) for g in self.cfg.log_groups):
                return ""
        attempt = 0
        while True:
            try:
                account = await logs.caller_account()
                self.health.account_error = None
                log.info("reading from AWS account", extra={"account": account})
                return account
            except AwsError as exc:
                attempt += 1
                self.health.account_error = str(exc)
                log.warning(
                    "cannot tell the AWS account yet; retrying",
                    extra={"error": str(exc), "attempt": attempt},
                )
            with anyio.move_on_after(min(60.0, 2.0**attempt)):
                await self._stop.wait()
            if self._stop.is_set():
                return None

    async def _run_stages(self, store: Store, logs: LogsClient, sink: Sink, account: str) -> None:
        cfg = self.cfg
        reg = self.registry
        n = cfg.sink_concurrency
        self.lanes = [
            Lane(
                i,
                sink,
                store,
                self.budget,
                self.health,
                self.metrics,
                max_events=cfg.batch_max_events,
                max_bytes=cfg.batch_max_bytes,
                max_wait_s=cfg.batch_max_wait_s,
                current=self._current,
                on_committed=self._committed,
                guard=self._lease_guard,
            )
            for i in range(n)
        ]
        lanes = self.lanes

        # Never waits: a reader only reads a stream whose lane has room, so a
        # stuck lane cannot hold every worker.
        router = Router([lane.channel for lane in lanes], self.schedule, lambda k: lane_of(k, n))

        async def route(chunk: Chunk) -> None:
            self.metrics.in_flight.read(chunk)
            router.push(chunk)

        reader = Reader(
            logs,
            self.schedule,
            self.budget,
            route,
            region=cfg.region,
            parse_mode=cfg.parse_mode,
            poll_interval_s=cfg.poll_interval_s,
            idle_grace_s=cfg.idle_grace_s,
            quiet_poll_interval_s=cfg.quiet_poll_interval_s,
            on_read=self._read,
            on_state=reg.moved,
            ready=router.ready,
            park=router.park,
            account=account,
            on_refused=self.health.groups_refused.__setitem__,
            class_of=self._class_of,
        )
        self.schedule.fade = reader.fade
        discovery = Discovery(
            logs,
            store,
            reg,
            self.schedule,
            groups=cfg.log_groups,
            prefixes=cfg.log_group_prefixes,
            start_time_for_new_group=cfg.start_position.resolve,
            idle_grace_s=cfg.idle_grace_s,
            account=account,
            discovery_interval_s=cfg.discovery_interval_s,
            forget_after_s=cfg.forget_after_s,
            retention_days=self._retention_days,
        )
        self.discovery = discovery
        self._discovery = discovery
        await discovery.load()
        self.group_info = info = GroupInfo(
            logs,
            store,
            lambda: [k for k, g in reg.groups.items() if g.deleted_ms is None],
            tick_s=discovery.tick_s,  # a group just found is described within a tick
            unmask=cfg.unmask,
        )
        await info.load()
        fetch_scope = anyio.CancelScope()
        fetchers_done = anyio.Event()
        lanes_done = anyio.Event()

        async def fetchers() -> None:
            try:
                with fetch_scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._restarted, "discovery", self._discovery_loop, discovery)
                        tg.start_soon(self._restarted, "group-info", info.run)
                        for i in range(cfg.workers):
                            tg.start_soon(self._crash_only, f"reader-{i}", reader.worker)
            finally:
                fetchers_done.set()

        async def run_lanes() -> None:
            async with anyio.create_task_group() as tg:
                for lane in lanes:
                    tg.start_soon(self._crash_only, f"lane-{lane.index}", lane.run)
            lanes_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat, store)
            tg.start_soon(run_lanes)
            tg.start_soon(fetchers)
            self.health.started = True
            await self._stop.wait()
            # Graceful stop: no more reading, then deliver what was read.
            self.health.stopping = True
            stop_by = anyio.current_time() + cfg.shutdown_timeout_s
            fetch_scope.cancel()
            # The lanes' channels close only once every reader has ended: a
            # reader whose page has just arrived is ready to run, and a
            # cancellation reaches it only at its next wait, after it has
            # routed that page (into a closed channel, the old code crashed).
            with anyio.move_on_at(stop_by):
                await fetchers_done.wait()
            for lane in lanes:
                lane.channel.close()
            with anyio.move_on_at(stop_by):
                await lanes_done.wait()
            if not lanes_done.is_set():
                log.warning(
                    "shutdown timeout reached with deliveries in flight; they will be read again",
                    extra={"pending_events": self.budget.events},
                )
            tg.cancel_scope.cancel()
        with anyio.move_on_after(5, shield=True):
            await reg.save(store)

    def _retention_days(self, group: str) -> int | None:
        """A group's retentionInDays as described (None: never expire, or not known yet)."""
        row = self.group_info.rows.get(group) if self.group_info is not None else None
        return row.retention_days if row is not None else None

    def _class_of(self, group: str) -> str | None:
        """A group's log class: as listed by discovery, else as described."""
        listed = self._discovery.group_class.get(group) if self._discovery else None
        row = self.group_info.rows.get(group) if self.group_info is not None else None
        return listed or (row.log_class if row is not None else None)

    def _observe_call(self, operation: str, outcome: str) -> None:
        self.metrics.observe_call(operation, outcome)
        self.health.aws_call(operation, outcome)

    async def _discovery_loop(self, discovery: Discovery) -> None:
        while True:
            await discovery.cycle()
            self.health.task_ok("discovery")
            await anyio.sleep(discovery.tick_s)

    async def _crash_only(self, name: str, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a stage that holds events. An unexpected exception is never
        answered by a restart in place (the events it held would be gone
        while the checkpoints move on): it stops the process, exit status 1,
        with the cause. Cancellation and a lost lease pass through."""
        try:
            await fn(*args)
        except (LeaseLost, anyio.get_cancelled_exc_class()):
            raise
        except Exception as exc:
            if isinstance(exc, ChannelClosed) and self.health.stopping:
                # A reader still running when a stop's deadline closed the
                # lanes: its page was given back (reader.poll); it ends here.
                return
            cause = f"{type(exc).__name__}: {exc}" if not isinstance(exc, CwcError) else str(exc)
            self.health.task_failed(name, cause)
            log.exception("stage failed; stopping the process", extra={"task": name})
            raise StageFailed(f"{name} failed: {cause}") from exc

    async def _restarted(self, name: str, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a stage that holds no events (discovery, the reporter); if it
        fails unexpectedly, say so in /healthz and the log, and restart it
        after a back-off. Cancellation passes through."""
        failures = 0
        while True:
            try:
                await fn(*args)
                return
            except (LeaseLost, anyio.get_cancelled_exc_class()):
                raise
            except Exception as exc:
                failures += 1
                self.health.task_failed(name, f"{type(exc).__name__}: {exc}")
                log.exception("task failed; restarting", extra={"task": name, "failures": failures})
                await anyio.sleep(min(60.0, 2.0**failures))

    # -- callbacks from the lanes -------------------------------------------------

    def _current(self, chunk: Chunk) -> bool:
        st = self.registry.streams.get(chunk.key)
        return st is not None and st.generation == chunk.generation

    def _committed(self, chunks: Any, dead: dict[StreamKey, int]) -> None:
        self.metrics.in_flight.confirmed(chunks)
        now = _now_ms()
        per_group: dict[str, int] = {}
        for c in chunks:
            st = self.registry.streams.get(c.key)
            if st is None or st.generation != c.generation:
                continue
            n = len(c)
            st.committed = c.checkpoint_after()
            st.checkpoint_ms = now
            st.pending_events -= n
            st.events_out += n
            st.delivered_total += n
            per_group[c.key.group] = per_group.get(c.key.group, 0) + n
            if st.committed.last_ts is not None:
                self.registry.delivered(c.key.group, 0, last_ts=st.committed.last_ts)
        for key, k in dead.items():
            st = self.registry.streams.get(key)
            if st is not None:
                st.events_out -= k
                st.delivered_total -= k
                st.dead_lettered += k
                per_group[key.group] = per_group.get(key.group, 0) - k
                self.registry.delivered(key.group, 0, dead=k)
        for group, k in per_group.items():
            self.registry.delivered(group, k)
            if k > 0:
                self.metrics.events_shipped.labels(group).inc(k)
        self.metrics.last_delivery.set(time.time())

    # -- views ------------------------------------------------------------------

    def _read(self, st: StreamState, n: int) -> None:
        self.metrics.events_read.labels(st.key.group).inc(n)
        self.registry.read(st, n)

    def refresh_metrics(self) -> None:
        reg = self.registry
        self.metrics.refresh(
            reg.awake.values(),
            buffer_events=self.budget.events,
            buffer_bytes=self.budget.bytes,
            rates={op: r.rate for op, r in self._logs.rates.items()} if self._logs else {},
            healthy=self.health.verdict(self.budget.events)[0],
            counts=reg.counts,
            newest=reg.newest,
        )
        stalled = self.health.stalled_for() > self.health.stall_timeout_s
        self.metrics.delivery_stalled.set(1 if stalled else 0)

    def stats(self, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``/stats``: per group aggregates (kept by the registry, cheap with
        10^6 streams); per-stream detail for one group (``?group=``) or when
        few streams are known, paged by ``limit`` (default and maximum
        :data:`STATS_PAGE`) and ``after`` (the last stream name of the
        previous page); ``?streams=false`` leaves it out."""
        query = query or {}
        self.refresh_metrics()  # current group lag figures
        now = _now_ms()
        reg = self.registry
        only = query.get("group")
        want_streams = query.get("streams", "").lower() not in _FALSE
        inline = only is not None or len(reg) <= STATS_PAGE
        try:
            limit = max(1, min(STATS_PAGE, int(query.get("limit", STATS_PAGE))))
        except ValueError:
            limit = STATS_PAGE
        after = query.get("after")
        names = set(reg.by_group) | set(reg.totals)
        if only is not None:
            names &= {only}
        groups: dict[str, dict[str, Any]] = {}
        listed_class = self._discovery.group_class if self._discovery is not None else {}
        for name in sorted(names):
            t = reg.totals.get(name, [0, 0, 0])
            g: dict[str, Any] = {
                "events": {"in": t[0], "out": t[1], "dead_lettered": t[2]},
                "streams_by_state": reg.group_counts(name),
            }
            facts = self.group_info.rows.get(name) if self.group_info is not None else None
            log_class = listed_class.get(name) or (facts.log_class if facts else None)
            if log_class:
                g["log_class"] = log_class
            if facts is not None and facts.data_protection:
                g["data_protection"] = facts.data_protection
                g["masked"] = masked(facts, self.cfg.unmask)
            if name in self.health.groups_refused:
                g["not_read"] = self.health.groups_refused[name]
            figures = self.metrics.groups.get(name)
            g["lag_s"] = (
                None if figures is None or figures.lag_s is None else round(figures.lag_s, 1)
            )
            g["ingestion_lag_s"] = None if figures is None else round(figures.ingestion_lag_s, 1)
            if want_streams and inline:
                page = list(reg.page(name, after, limit + 1))
                views = {}
                for st in page[:limit]:
                    view = stream_view(st, now)
                    view["ingestion_lag_s"] = round(
                        stream_ingestion_lag_s(st, self.metrics.in_flight, now), 1
                    )
                    views[st.key.stream] = view
                g["streams"] = views
                if len(page) > limit:
                    g["streams_next"] = page[limit - 1].key.stream
            groups[name] = g
        ok, health = self.health.verdict(self.budget.events)
        d = self.discovery
        return {
            "status": health["status"],
            "healthy": ok,
            "health": health,
            "uptime_s": round(time.time() - self.started_at, 1),
            "pipeline": {
                "buffer": {
                    "events": self.budget.events,
                    "bytes": self.budget.bytes,
                    "max_events": self.budget.max_events,
                    "max_bytes": self.budget.max_bytes,
                },
                "lanes": [
                    {
                        "lane": lane.index,
                        "queued_chunks": len(lane.channel),
                        "in_flight": lane.in_flight,
                    }
                    for lane in self.lanes
                ],
                "aws_rate_per_s": {
                    op: round(r.rate, 2)
                    for op, r in (self._logs.rates.items() if self._logs else [])
                },
                "last_confirmation": self.health.last_confirm_wall,
                "sink": {
                    "retrying": self.health.sink_error,
                    "attempt": self.health.sink_failures,
                    "credentials_rejected": self.health.auth_error,
                    "refusing_requests": self.health.sink_refusing,
                },
                "database_error": self.health.store_error,
                "schedule": {
                    "known_streams": len(reg),
                    "awake_streams": len(reg.awake),
                    "taken_hot": self.schedule.taken[0],
                    "taken_quiet": self.schedule.taken[1],
                    "faded_to_idle": self.schedule.faded,
                    "forgotten": reg.forgotten,
                    "describe_pages": dict(d.pages) if d else {},
                    "deep_walks": d.deep_walks if d else 0,
                },
            },
            "groups": groups,
        }


def stream_view(st: StreamState, now_ms: int) -> dict[str, Any]:
    cp = st.committed
    return {
        "state": st.state.value,
        "events": {"in": st.events_in, "out": st.events_out, "dead_lettered": st.dead_lettered},
        "delivered_total": st.delivered_total,
        "pending": st.pending_events,
        "last_delivered_event_ms": cp.last_ts,
        "lag_s": None if cp.last_ts is None else round((now_ms - cp.last_ts) / 1000, 1),
        "last_event_seen_ms": st.last_event_seen_ms,
        "checkpoint_ms": st.checkpoint_ms,
        "last_error": st.last_error,
    }


STATS_PAGE = 1000
_FALSE = frozenset({"0", "false", "no", "off"})


def _now_ms() -> int:
    return int(time.time() * 1000)


def _arm_watchdog(after_s: float) -> None:
    """If a stop takes far longer than its budget, something is stuck: write
    every thread's stack to stderr (the cause, for the operator) and end the
    process. Checkpoints are committed one transaction at a time, so ending
    here loses nothing; the exit status is 1 because the stop was not clean."""

    def fire() -> None:
        if done.wait(after_s):
            return
        sys.stderr.write(
            f'{{"level": "ERROR", "message": "stop did not finish within {after_s:g}s; '
            'thread stacks follow; exiting"}\n'
        )
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(1)

    done = threading.Event()
    atexit.register(done.set)
    threading.Thread(target=fire, name="cwconsumer-stop-watchdog", daemon=True).start()
