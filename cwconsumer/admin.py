"""Admin HTTP server on ``CWC_ADMIN_ADDR``: ``/healthz``, ``/metrics``, ``/stats``.

- ``GET /healthz``: 200 with a JSON body when healthy, 503 with the reasons
  when not (see :mod:`cwconsumer.health`). A standby answers 503 with
  ``"status": "standby"``; ``/healthz?standby=ok`` answers 200 for a standby
  instead, for health checks that should leave standbys alone.
- ``GET /metrics``: Prometheus text (gauges refreshed on every scrape).
- ``GET /stats``: JSON per group (aggregates) and stream. Per-stream detail
  comes for one group (``?group=NAME``) or when at most 1,000 streams are
  known, 1,000 a page (``&limit=N&after=<last stream name>``; a group with
  more says ``streams_next``); ``?streams=false`` leaves it out.

Every JSON body passes through the secret redactor before it leaves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import orjson
from aiohttp import web

from cwconsumer.errors import CwcError
from cwconsumer.health import Health
from cwconsumer.logs import REDACTOR
from cwconsumer.metrics import CONTENT_TYPE, Metrics

_FALSE = frozenset({"0", "false", "no", "off"})


class AdminServer:
    """``await tg.start(server.serve)`` returns the bound port once listening."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        metrics: Metrics,
        *,
        pending: Callable[[], int],
        stats: Callable[[Mapping[str, str]], dict[str, Any]],
        refresh: Callable[[], None],
    ) -> None:
        self.host, self.port = host, port
        self._health, self._metrics = health, metrics
        self._pending, self._stats, self._refresh = pending, stats, refresh
        self.bound_port: int | None = None

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled. A port that cannot be bound is a
        :class:`CwcError` raised before ``task_status.started``."""
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_h)
        app.router.add_get("/stats", self._stats_h)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=1.0)
            try:
                await site.start()
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise CwcError(
                    f"admin server cannot listen on {self.host}:{self.port}: {reason}; "
                    "set CWC_ADMIN_ADDR to a free address or off"
                ) from exc
            addresses = runner.addresses
            self.bound_port = int(addresses[0][1]) if addresses else self.port
            task_status.started(self.bound_port)
            await anyio.sleep_forever()
        finally:
            with anyio.move_on_after(3, shield=True):
                await runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="cwconsumer admin: /healthz /metrics /stats\n")

    async def _healthz(self, request: web.Request) -> web.Response:
        standby_ok = request.query.get("standby", "").lower() in ("ok", "true", "1", "yes")
        ok, body = self._health.verdict(self._pending(), standby_ok=standby_ok)
        return _json(body, 200 if ok else 503)

    async def _metrics_h(self, request: web.Request) -> web.Response:
        self._refresh()
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _stats_h(self, request: web.Request) -> web.Response:
        data = self._stats(request.query)
        group = request.query.get("group")
        groups = data.get("groups")
        if isinstance(groups, dict):
            if group is not None:
                groups = {k: v for k, v in groups.items() if k == group}
            if request.query.get("streams", "").lower() in _FALSE:
                groups = {
                    k: {f: v for f, v in g.items() if f != "streams"} if isinstance(g, dict) else g
                    for k, g in groups.items()
                }
            data = dict(data, groups=groups)
        return _json(data, 200, indent=True)


def _json(data: object, status: int, *, indent: bool = False) -> web.Response:
    option = orjson.OPT_INDENT_2 if indent else 0
    text = REDACTOR.scrub(orjson.dumps(data, option=option, default=str).decode())
    return web.Response(text=text, status=status, content_type="application/json")
