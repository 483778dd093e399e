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

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from cwconsumer import earlystop
from cwconsumer.admin import AdminServer
from cwconsumer.arns import is_group_arn
from cwconsumer.aws import LogsClient, aws_role
from cwconsumer.config import Config
from cwconsumer.delivery import Lane, lane_of, restart_backoff_s
from cwconsumer.discovery import Discovery, Registry
from cwconsumer.emf import Reporter
from cwconsumer.errors import AwsError, CwcError, LeaseLost, StageFailed
from cwconsumer.flow import Budget, ChannelClosed, Router
from cwconsumer.groupinfo import GroupInfo, masked
from cwconsumer.health import Health
from cwconsumer.lease import LeaseKeeper
from cwconsumer.metrics import Metrics
from cwconsumer.model import Chunk, StreamKey
from cwconsumer.reader import Reader
from cwconsumer.schedule import Schedule
from cwconsumer.sinks.base import CountsRejected, Sink
from cwconsumer.sinks.factory import build_sink
from cwconsumer.statsview import LaneFigures, stats_document
from cwconsumer.store import Store
from cwconsumer.streams import StreamState

log = logging.getLogger("cwconsumer.service")


def _nothing() -> None:
    return None


class Service:
    """A ``run``: every stage wired together, started by :meth:`run` and
    stopped by SIGTERM/SIGINT or :meth:`stop`.

    ``sink`` replaces the one the configuration names (tests). The process
    hooks are for ``cwconsumer run`` (:mod:`cwconsumer.process`):
    ``on_opened`` runs once the database is open (start-up is over),
    ``on_stop_requested`` at the first stop signal.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        sink: Sink | None = None,
        on_opened: Callable[[], None] = _nothing,
        on_stop_requested: Callable[[], None] = _nothing,
    ) -> None:
        self.cfg = cfg
        self._on_opened = on_opened
        self._on_stop_requested = on_stop_requested
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
        self._lease: LeaseKeeper | None = None
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
        """Open the database, serve the admin endpoints, wait for the lease,
        run the pipeline until a stop, then release the lease and close.
        ``task_status.started()`` once the admin server listens."""
        cfg = self.cfg
        store = self._store = await Store.open(cfg.db_path, cfg.db_journal_mode)
        log.info(
            "starting",
            extra={"db": store.path, "journal_mode": store.journal_mode, "config": cfg.redacted()},
        )
        for warning in cfg.warnings:
            log.warning(warning)
        self._on_opened()
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
                self._lease = LeaseKeeper(
                    store,
                    owner=self.owner,
                    ttl_s=cfg.lease_ttl_s,
                    heartbeat_s=cfg.lease_heartbeat_s,
                    health=self.health,
                    metrics=self.metrics,
                    stop=self._stop,
                )
                if await self._lease.acquire():
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
        """Ask for a graceful stop, as SIGTERM does."""
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
            self._on_stop_requested()
        else:
            log.warning("second stop signal; stopping now")
            scope.cancel()

    async def _lease_guard(self) -> None:
        """Before a lane sends: the lease is still ours (:meth:`LeaseKeeper.guard`)."""
        if self._lease is not None:
            await self._lease.guard()

    async def _keep_lease(self) -> None:
        """The lease's heartbeat (:meth:`LeaseKeeper.heartbeat`): raises to stop the process."""
        assert self._lease is not None
        await self._lease.heartbeat()

    # -- pipeline -------------------------------------------------------------

    async def _pipeline(self, store: Store) -> None:
        cfg = self.cfg
        sink = self._sink or build_sink(cfg)
        if isinstance(sink, CountsRejected):
            sink.on_rejected = self.metrics.sink_records_rejected.inc
        try:
            async with LogsClient(
                cfg.region,
                get_rate=cfg.api_rate,
                describe_rate=cfg.describe_rate,
                timeout_s=cfg.aws_timeout_s,
                max_connections=cfg.workers + 4,
                observe=self._observe_call,
                calls=self.health,
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
                        # Each completed cycle clears a failure /healthz reported.
                        for name, stage in (("discovery", discovery), ("group-info", info)):
                            ok = partial(self.health.task_ok, name)
                            tg.start_soon(self._restarted, name, stage.run, ok)
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
            tg.start_soon(self._keep_lease)
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

    def _group_classes(self) -> dict[str, str]:
        """Every group's log class: as listed by discovery, else as described."""
        described = self.group_info.rows if self.group_info is not None else {}
        out = {name: row.log_class for name, row in described.items() if row.log_class}
        if self._discovery is not None:
            out.update(self._discovery.group_class)
        return out

    def _class_of(self, group: str) -> str | None:
        """One group's log class (:meth:`_group_classes`; asked on a refused read only)."""
        return self._group_classes().get(group)

    def _observe_call(self, operation: str, outcome: str) -> None:
        self.metrics.observe_call(operation, outcome)
        self.health.aws_call(operation, outcome)

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
                log.error(
                    "task failed; restarting",
                    exc_info=not isinstance(exc, CwcError),  # translated faults: one line
                    extra={"task": name, "failures": failures, "error": str(exc)},
                )
                await anyio.sleep(restart_backoff_s(failures))

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
        """Bring the gauges up to date (before a scrape, ``/stats`` or an EMF line)."""
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
        """``/stats`` (see :func:`cwconsumer.statsview.stats_document`)."""
        self.refresh_metrics()  # current group lag figures
        d = self.discovery
        return stats_document(
            query or {},
            registry=self.registry,
            schedule=self.schedule,
            budget=self.budget,
            health=self.health,
            metrics=self.metrics,
            lanes=[
                LaneFigures(lane.index, len(lane.channel), lane.in_flight) for lane in self.lanes
            ],
            aws_rates={op: r.rate for op, r in self._logs.rates.items()} if self._logs else {},
            group_class=self._group_classes(),
            protection={
                name: (row.data_protection, masked(row, self.cfg.unmask))
                for name, row in (self.group_info.rows if self.group_info else {}).items()
                if row.data_protection
            },
            describe_pages=dict(d.pages) if d is not None else {},
            deep_walks=d.deep_walks if d is not None else 0,
            uptime_s=time.time() - self.started_at,
        )


def _now_ms() -> int:
    return int(time.time() * 1000)
