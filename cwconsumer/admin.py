"""Admin HTTP server: ``/healthz``, ``/metrics``, ``/stats``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import orjson
from aiohttp import web

from cwconsumer.health import Health
from cwconsumer.metrics import Metrics


class AdminServer:
    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        metrics: Metrics,
        *,
        pending: Callable[[], int],
        stats: Callable[[], dict[str, Any]],
        refresh: Callable[[], None],
    ) -> None:
        self.host, self.port = host, port
        self._health, self._metrics = health, metrics
        self._pending, self._stats, self._refresh = pending, stats, refresh
        self.bound_port: int | None = None

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_h)
        app.router.add_get("/stats", self._stats_h)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=1.0)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
            task_status.started(self.bound_port)
            await anyio.sleep_forever()
        finally:
            with anyio.move_on_after(3, shield=True):
                await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, body = self._health.verdict(self._pending())
        return web.Response(
            body=orjson.dumps(body), status=200 if ok else 503, content_type="application/json"
        )

    async def _metrics_h(self, request: web.Request) -> web.Response:
        self._refresh()
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def _stats_h(self, request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps(self._stats(), option=orjson.OPT_INDENT_2),
            content_type="application/json",
        )
