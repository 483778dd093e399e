"""The database's single-writer lease, as one running service keeps it.

Whoever holds the lease consumes; a second ``cwconsumer run`` on the same
database waits in standby (said once in the log, in ``/healthz`` and the
``standby`` metric) and takes over when the holder stops or its heartbeat
ages past ``CWC_LEASE_TTL``. Every write is fenced by the lease's epoch
(:mod:`cwconsumer.store`); here: taking it, renewing it, and proving it is
still ours before a lane sends.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import anyio

from cwconsumer.errors import LeaseLost, StoreError
from cwconsumer.health import Health
from cwconsumer.metrics import Metrics
from cwconsumer.store import Store

log = logging.getLogger("cwconsumer.service")


def _now_ms() -> int:
    return int(time.time() * 1000)


class LeaseKeeper:
    """Takes, renews and proves the lease for ``owner``."""

    def __init__(
        self,
        store: Store,
        *,
        owner: str,
        ttl_s: float,
        heartbeat_s: float,
        health: Health,
        metrics: Metrics,
        stop: anyio.Event,
    ) -> None:
        self._store = store
        self._owner = owner
        self._ttl_s = ttl_s
        self._heartbeat_s = heartbeat_s
        self._health = health
        self._metrics = metrics
        self._stop = stop

    async def acquire(self) -> bool:
        """Wait until the lease is ours (True) or a stop is asked (False)."""
        ttl_ms = int(self._ttl_s * 1000)
        announced = False
        while not self._stop.is_set():
            epoch = await self._store.acquire_lease(
                self._owner, _now_ms(), ttl_ms, socket.gethostname(), os.getpid()
            )
            if epoch is not None:
                self._health.standby = False
                self._metrics.standby.set(0)
                log.info("lease acquired; consuming", extra={"owner": self._owner, "epoch": epoch})
                return True
            info = await self._store.lease_info()
            self._health.standby = True
            self._health.holder = f"{info.host} pid {info.pid}"
            self._metrics.standby.set(1)
            if not announced:
                log.info(
                    "standby: another run holds the database lease; taking over when it stops",
                    extra={"holder_host": info.host, "holder_pid": info.pid},
                )
                announced = True
            with anyio.move_on_after(self._heartbeat_s):
                await self._stop.wait()
        return False

    async def heartbeat(self) -> None:
        """Renew the lease and check the database file is still ours. Stops
        the process (raises) on a lost lease, a removed or replaced file, a
        database error that is not retriable, or retriable ones lasting
        longer than the lease TTL (another process may take over by then)."""
        store = self._store
        failures = 0
        failing_since: float | None = None
        while True:
            await anyio.sleep(self._heartbeat_s)
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
                if not exc.retriable or now - failing_since >= self._ttl_s:
                    raise
                log.warning(
                    "lease heartbeat failed", extra={"error": str(exc), "failures": failures}
                )

    async def guard(self) -> None:
        """Before a lane sends: if the lease was not renewed recently (the
        process was frozen, or the heartbeat is failing), prove it is still
        ours now. Raises :class:`LeaseLost` when another process took it; a
        retriable database error waits here (the heartbeat bounds how long)."""
        while True:
            try:
                # Renewed within 1.5 heartbeats: nobody can have taken it (the
                # TTL is more than two heartbeats).
                await self._store.prove_lease(self._heartbeat_s * 1.5)
                return
            except StoreError as exc:
                if isinstance(exc, LeaseLost) or not exc.retriable:
                    raise
                await anyio.sleep(1.0)
