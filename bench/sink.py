"""A fast counting HTTP sink for the benchmarks, run as its own process.

Any POST path: counts the NDJSON lines of the body (``body.count(b"\\n")``,
no JSON parsing), or the log records of an OTLP protobuf body (decoded with
``opentelemetry-proto``), and answers ``200``. With ``--latency`` it also extracts
each document's ``event.ingested`` with one regular expression over the body
and records ``confirmation time - ingestion time`` per event (ms), the
confirmation time being the moment the body has been read, just before the
answer goes out. With ``--dead`` it reads nothing and never answers.

Control (same port): ``GET /_stats`` (counters and this process's CPU
seconds), ``GET /_latency?since=<unix s>&until=<unix s>`` (percentiles of the
samples recorded in that window).

Usage (the driver does this): ``python bench/sink.py [--latency|--dead]``;
prints ``SINK <url>`` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gzip
import re
import signal
import time
from datetime import datetime

import orjson
from aiohttp import web

_INGESTED = re.compile(rb'"ingested":"([^"]+)"')


def _otlp_records(body: bytes, encoding: str) -> int:
    """Log records in an OTLP/HTTP protobuf ExportLogsServiceRequest."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )

    if encoding == "gzip":
        body = gzip.decompress(body)
    req = ExportLogsServiceRequest()
    req.ParseFromString(body)
    return sum(len(s.log_records) for r in req.resource_logs for s in r.scope_logs)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class CountingSink:
    """The request handler and its counters."""

    def __init__(self, *, latency: bool, dead: bool) -> None:
        self.latency = latency
        self.dead = dead
        self.events = 0
        self.requests = 0
        self.bytes = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.open_requests = 0
        # (confirmation unix time, latencies in ms of that request's events)
        self.samples_t: list[float] = []
        self.samples: list[list[float]] = []
        self._iso_ms: dict[bytes, int] = {}

    def _ingested_ms(self, text: bytes) -> int:
        ms = self._iso_ms.get(text)
        if ms is None:
            moment = datetime.fromisoformat(text.decode().replace("Z", "+00:00"))
            ms = round(moment.timestamp() * 1000)
            if len(self._iso_ms) > 100_000:
                self._iso_ms.clear()
            self._iso_ms[text] = ms
        return ms

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.dead:
            self.requests += 1
            self.open_requests += 1
            try:
                await asyncio.Event().wait()  # never answers; the client gives up
            finally:
                self.open_requests -= 1
        body = await request.read()
        now = time.time()
        if request.content_type == "application/x-protobuf":
            n = _otlp_records(body, request.headers.get("Content-Encoding", ""))
        else:
            n = body.count(b"\n")
        self.requests += 1
        self.events += n
        self.bytes += len(body)
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        if self.latency and n:
            now_ms = now * 1000
            self.samples_t.append(now)
            self.samples.append([now_ms - self._ingested_ms(m) for m in _INGESTED.findall(body)])
        return web.Response(text="ok")

    async def stats(self, request: web.Request) -> web.Response:
        body = {
            "events": self.events,
            "requests": self.requests,
            "bytes": self.bytes,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "open_requests": self.open_requests,
            "cpu_s": time.process_time(),
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def latency_stats(self, request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        until = float(request.query.get("until", "1e12"))
        a = bisect.bisect_left(self.samples_t, since)
        b = bisect.bisect_right(self.samples_t, until)
        values = sorted(v for batch in self.samples[a:b] for v in batch)
        body = {
            "count": len(values),
            "p50_ms": percentile(values, 50),
            "p90_ms": percentile(values, 90),
            "p99_ms": percentile(values, 99),
            "max_ms": values[-1] if values else None,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")


async def serve(args: argparse.Namespace) -> None:
    sink = CountingSink(latency=args.latency, dead=args.dead)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/_stats", sink.stats)
    app.router.add_get("/_latency", sink.latency_stats)
    app.router.add_route("POST", "/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"SINK http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--latency", action="store_true", help="record ingestion->confirmation")
    mode.add_argument("--dead", action="store_true", help="never answer")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
