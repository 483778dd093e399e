"""The CloudWatch Logs stand-in for the benchmarks, run as its own process.

It is ``tests/support/fakecwl.py``'s :class:`FakeCloudWatchLogs` (AWS JSON 1.1,
real forward tokens, 1 MB / 10,000-event pages, the same token back at the end
of a stream, DescribeLogStreams ordered by last event time) with three
additions the benchmarks need:

- ``FilterLogEvents`` (interleaved across a group's streams, 10,000 events or
  1 MB a page, ``nextToken`` absent at the end), because the peer tool,
  awslogs, reads with it and not with GetLogEvents;
- the arrival time of every GetLogEvents call, for rate adherence;
- a control server on a second port (``GET /stats``, ``GET /get_times``,
  ``GET /stream_calls``, ``POST /steady``, ``POST /steady/stop``) and a steady
  event generator, so the benchmark driver can observe and feed it from
  another process.

It reaches into the fake's internals (``_ops``, ``_dispatch``, ``_groups``,
``_lock``, ``_resolve_group``): a change there must be mirrored here.

A data set is loaded before ``ENDPOINT`` is printed; pages are precomputed
byte fragments, so serving a 1 MB page costs a join, not a JSON encoding.
The stand-in runs in its own process so that its CPU is never counted as the
product's and it never competes with the product or the sink for a GIL.

Usage (the driver does this)::

    python bench/standin.py --data '{"kind": "backlog", "events": 1000000}'

prints ``ENDPOINT <url>`` and ``CONTROL <url>`` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet

from tests.support.fakecwl import (
    MAX_PAGE_BYTES,
    ApiError,
    FakeCloudWatchLogs,
)

HOUR_MS = 3_600_000
_FILTER_MAX_EVENTS = 10_000
# Filler so that a message is ~200 bytes; printable ASCII like most log lines.
_PAD = "abcdefghijklmnopqrstuvwxyz0123456789" * 8


def message(group: int, stream: int, i: int, size: int) -> str:
    """One synthetic access-log line of exactly ``size`` characters (>= 100)."""
    head = (
        f"2026-11-21T10:00:00.000Z INFO [g{group}/s{stream}] req-{i:09d} "
        f"GET /api/orders/{i % 99991} status=200 duration_ms={i % 997}.{i % 10} "
    )
    return (head + _PAD)[:size] if len(head) < size else head[:size]


LAMBDA_GROUPS = ("/aws/lambda/bench-fn", "/ecs/bench-svc")


def lambda_messages(group: int, stream: int, start: int, count: int, size: int) -> list[str]:
    """``count`` lines of Lambda invocations (10 lines each), from line ``start``.

    Per invocation, as issue 15 measured it: ``START``, six Node.js runtime
    lines (time, request id, level, text padded to ``size`` characters), one
    application JSON line, ``END``, ``REPORT``. The ``/ecs/`` group carries the
    same lines (only the JSON line is parsed there under ``CWC_PARSE=auto``).
    """
    out: list[str] = []
    for i in range(start, start + count):
        inv, line = divmod(i, 10)
        rid = f"{group:02x}{stream:06x}-{inv >> 16 & 0xFFFF:04x}-4{inv & 0xFFF:03x}-8000-{inv:012x}"
        stamp = f"2026-12-06T10:{inv // 60000 % 60:02d}:{inv // 1000 % 60:02d}.{inv % 1000:03d}Z"
        if line == 0:
            out.append(f"START RequestId: {rid} Version: $LATEST\n")
        elif line <= 6:
            head = f"{stamp}\t{rid}\tINFO\tstep {line} of order {inv % 99991}: "
            out.append((head + _PAD)[: size - 1] + "\n")
        elif line == 7:
            out.append(
                f'{{"timestamp":"{stamp}","level":"INFO","requestId":"{rid}",'
                f'"message":"order {inv % 99991} stored in {inv % 97} ms"}}\n'
            )
        elif line == 8:
            out.append(f"END RequestId: {rid}\n")
        else:
            out.append(
                f"REPORT RequestId: {rid}\tDuration: {inv % 997}.{inv % 100:02d} ms\t"
                f"Billed Duration: {inv % 997 + 1} ms\tMemory Size: 256 MB\t"
                f"Max Memory Used: {60 + inv % 40} MB\t\n"
            )
    return out


class BenchCloudWatchLogs(FakeCloudWatchLogs):
    """The fake plus FilterLogEvents and GetLogEvents call times."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(log_calls=False, **kwargs)
        self._ops["FilterLogEvents"] = self._op_filter_log_events
        self.get_times: list[float] = []
        self.get_per_prefix: Counter[str] = Counter()
        self.eos_per_prefix: Counter[str] = Counter()  # answered "end of stream"
        # With ``read_lag`` set (the fleet scenarios): per GetLogEvents answer
        # with events, (answer time, [answer time - ingestion time, ms]): how
        # long events waited to be read, apart from what the product adds.
        self.read_lag = False
        self.read_lag_t: list[float] = []
        self.read_lag_ms: list[list[float]] = []
        self.read_lag_first: list[bool] = []  # the stream's first read (no token)
        self.reads: list[tuple[float, str, int]] = []  # (answer time, stream, events)
        self._merged: dict[str, tuple[int, list[tuple[int, int, int]]]] = {}
        # Per operation: calls answered and seconds spent answering them (the
        # work under the lock, not the wait for this process's event loop).
        self.op_n: Counter[str] = Counter()
        self.op_s: Counter[str] = Counter()

    async def _handle(self, request: web.Request) -> web.Response:
        # A GetLogEvents call is stamped as it reaches the handler, before its
        # body is read and parsed and before the lock: the closest this
        # process gets to its arrival (it serves 1 MB pages in the same loop).
        if request.headers.get("X-Amz-Target", "").endswith(".GetLogEvents"):
            self.get_times.append(time.time())
        return await super()._handle(request)

    def _dispatch(self, op: str, req: Any) -> tuple[int, bytes]:
        prefix = None
        if op == "GetLogEvents":
            if isinstance(req, dict):
                name = req.get("logStreamName")
                if isinstance(name, str):
                    prefix = name.split("-", 1)[0]
                    self.get_per_prefix[prefix] += 1
        began = time.perf_counter()
        status, out = super()._dispatch(op, req)
        self.op_n[op] += 1
        self.op_s[op] += time.perf_counter() - began
        if self.read_lag and prefix is not None and status == 200:
            events = orjson.loads(out).get("events") or []
            self.reads.append((time.time(), f"{req.get('logGroupName')}/{name}", len(events)))
            if events:
                now = time.time()
                self.read_lag_t.append(now)
                self.read_lag_ms.append([now * 1000 - e["ingestionTime"] for e in events])
                self.read_lag_first.append(req.get("nextToken") is None)
        if prefix is not None and status == 200 and out.startswith(b'{"events":[]'):
            token = req.get("nextToken")
            if token is None or f'"nextForwardToken":"{token}"'.encode() in out:
                self.eos_per_prefix[prefix] += 1  # the same token back: end of stream
        return status, out

    # -- FilterLogEvents: only what awslogs uses (group, streams, start/end, token).

    def _merged_order(self, group_name: str) -> list[tuple[int, int, int]]:
        """Every event of the group as (sort key, stream index, event index)."""
        group = self._groups[group_name]
        hit = self._merged.get(group_name)
        if hit is not None and hit[0] == group.version:
            return hit[1]
        order: list[tuple[int, int, int]] = []
        for s, st in enumerate(group.streams.values()):
            order.extend((key, s, i) for i, key in enumerate(st.keys))
        order.sort()
        self._merged[group_name] = (group.version, order)
        return order

    def _op_filter_log_events(self, req: dict[str, Any]) -> bytes:
        group = self._resolve_group(req)
        if req.get("filterPattern"):
            raise ApiError("InvalidParameterException", "filterPattern is not supported here.")
        wanted = req.get("logStreamNames")
        streams = list(group.streams.values())
        order = self._merged_order(group.name)
        token = req.get("nextToken")
        span = 1 << 40
        start = req.get("startTime")
        end = req.get("endTime")
        pos = bisect.bisect_left(order, ((start or 0) * span,))
        if isinstance(token, str):
            if not token.startswith("bench-filter-") or not token[13:].isdigit():
                raise ApiError("InvalidParameterException", "The specified nextToken is invalid.")
            pos = max(pos, int(token[13:]))
        stop = len(order) if end is None else bisect.bisect_left(order, (end * span,))
        names = set(wanted) if isinstance(wanted, list) else None
        frags: list[bytes] = []
        size = 0
        while pos < stop and len(frags) < _FILTER_MAX_EVENTS:
            key, s, i = order[pos]
            st = streams[s]
            if names is not None and st.name not in names:
                pos += 1
                continue
            n = st.sizes[i]
            if frags and size + n > MAX_PAGE_BYTES:
                break
            size += n
            frags.append(
                b'{"logStreamName":%b,"eventId":"%d",%b'
                % (orjson.dumps(st.name), key, st.frags[i][1:])
            )
            pos += 1
        out = b'{"events":[' + b",".join(frags) + b'],"searchedLogStreams":[]'
        if pos < stop:
            out += b',"nextToken":"bench-filter-%d"' % pos
        return out + b"}"


def load(fake: BenchCloudWatchLogs, spec: dict[str, Any]) -> int:
    """Fill the fake from a data spec; returns the number of events stored.

    ``kind``:

    - ``backlog``: ``groups`` x ``streams`` streams, ``events`` in all, spread
      evenly, ``size``-character messages, timestamps an hour back, four events
      a millisecond (same-millisecond ordinals are exercised);
    - ``lambda``: the same shape in two groups, one ``/aws/lambda/`` and one
      ``/ecs/`` (:data:`LAMBDA_GROUPS`), Lambda invocations as messages
      (:func:`lambda_messages`);
    - ``idle``: ``streams`` streams in ``groups`` groups, of which ``active``
      have names starting ``active-`` and the rest ``idle-``; every stream has
      one event three hours old (creation and ingestion too); new events come
      from :class:`Steady` to the active ones;
    - ``recent``: ``streams`` streams named ``s-NNNNN`` with one event each,
      written just now (streams that are in use, as under a steady load).
    """
    kind = spec.get("kind", "backlog")
    groups = int(spec.get("groups", 2))
    size = int(spec.get("size", 200))
    now = int(time.time() * 1000)
    total = 0
    if kind == "backlog":
        streams = int(spec.get("streams", 20))
        per = int(spec["events"]) // (groups * streams)
        base = now - HOUR_MS
        for g in range(groups):
            for s in range(streams):
                events = [(base + i // 4, message(g, s, i, size)) for i in range(per)]
                fake.put(f"/bench/g{g}", f"s-{s:05d}", events)
                total += per
                if spec.get("page_cap"):
                    fake.page_cap(f"/bench/g{g}", f"s-{s:05d}", int(spec["page_cap"]))
    elif kind == "lambda":
        streams = int(spec.get("streams", 20))
        per = int(spec["events"]) // (len(LAMBDA_GROUPS) * streams)
        base = now - HOUR_MS
        for g, group_name in enumerate(LAMBDA_GROUPS):
            for s in range(streams):
                texts = lambda_messages(g, s, 0, per, size)
                events = [(base + i // 4, text) for i, text in enumerate(texts)]
                fake.put(group_name, f"2026/12/06/[$LATEST]{g:02d}{s:030x}", events)
                total += per
    elif kind in ("idle", "recent"):
        streams = int(spec["streams"])
        active = int(spec.get("active", 0))
        old = now - 3 * HOUR_MS
        for n in range(streams):
            g = n % groups
            if kind == "recent":
                fake.put(f"/bench/g{g}", f"s-{n:05d}", [(now, message(g, n, 0, size))])
            else:
                name = f"active-{n:06d}" if n < active else f"idle-{n:06d}"
                fake.add_stream(f"/bench/g{g}", name, creation_time_ms=old)
                fake.put(
                    f"/bench/g{g}", name, [(old, message(g, n, 0, size))], ingestion_time_ms=old
                )
            total += 1
    elif kind == "fleet":
        total = fleet.load_old(fake, spec, random.Random(int(spec.get("seed", 7))))
    else:
        raise SystemExit(f"unknown data kind {kind!r}")
    return total


class Steady:
    """Puts ``rate`` events a second, round-robin over ``targets``, in small
    batches every ``tick_s``; each batch's ingestion time is the put time."""

    def __init__(
        self, fake: BenchCloudWatchLogs, targets: list[tuple[str, str]], size: int
    ) -> None:
        self._fake = fake
        self._targets = targets
        self._size = size
        self._task: asyncio.Task[None] | None = None
        self.put = 0

    def start(self, rate: float, tick_s: float) -> None:
        self.stop()
        self._task = asyncio.get_running_loop().create_task(self._run(rate, tick_s))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, rate: float, tick_s: float) -> None:
        started = time.monotonic()
        targets = self._targets
        k = 0
        while True:
            due = int((time.monotonic() - started) * rate) - self.put
            if due > 0:
                now = int(time.time() * 1000)
                per_target: dict[tuple[str, str], list[tuple[int, str]]] = {}
                for _ in range(due):
                    t = targets[k % len(targets)]
                    per_target.setdefault(t, []).append((now, message(0, 0, k, self._size)))
                    k += 1
                for (group, stream), events in per_target.items():
                    self._fake.put(group, stream, events, ingestion_time_ms=now)
                self.put += due
            await asyncio.sleep(tick_s)


def _targets(fake: BenchCloudWatchLogs, prefix: str) -> list[tuple[str, str]]:
    with fake._lock:
        return [
            (g.name, s) for g in fake._groups.values() for s in g.streams if s.startswith(prefix)
        ]


async def serve(args: argparse.Namespace) -> None:
    spec = orjson.loads(args.data)
    fake = BenchCloudWatchLogs(seed=1, port=args.port)
    loaded_at = time.monotonic()
    total = load(fake, spec)
    load_s = time.monotonic() - loaded_at
    await fake.astart()
    steady = Steady(fake, [], int(spec.get("size", 200)))

    async def stats(request: web.Request) -> web.Response:
        ops = {
            op: fake.counts(op).total
            for op in ("GetLogEvents", "DescribeLogStreams", "DescribeLogGroups", "FilterLogEvents")
        }
        body = {
            "ops": ops,
            "get_per_prefix": dict(fake.get_per_prefix),
            "steady_put": steady.put,
            "events_loaded": total,
            "load_s": load_s,
            "cpu_s": time.process_time(),
        }
        return web.json_response(body, dumps=lambda o: orjson.dumps(o).decode())

    async def stream_calls(request: web.Request) -> web.Response:
        with fake._lock:
            calls = {
                f"{g.name}/{name}": st.get_calls
                for g in fake._groups.values()
                for name, st in g.streams.items()
            }
        return web.Response(body=orjson.dumps(calls), content_type="application/json")

    async def get_times(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        times = fake.get_times
        i = bisect.bisect_left(times, since)
        return web.Response(body=orjson.dumps(times[i:]), content_type="application/json")

    async def start_steady(request: web.Request) -> web.Response:
        body = await request.json()
        prefix = str(body.get("prefix", ""))
        steady._targets = _targets(fake, prefix)
        if not steady._targets:
            return web.Response(status=400, text=f"no stream starts with {prefix!r}")
        steady.start(float(body["rate"]), float(body.get("tick_s", 0.01)))
        return web.Response(text="ok")

    async def stop_steady(request: web.Request) -> web.Response:
        steady.stop()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/get_times", get_times)
    app.router.add_get("/stream_calls", stream_calls)
    app.router.add_post("/steady", start_steady)
    app.router.add_post("/steady/stop", stop_steady)
    fleet.install(app, fake)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.control_port)
    await site.start()
    control_port = runner.addresses[0][1]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ENDPOINT {fake.endpoint_url}", flush=True)
    print(f"CONTROL http://127.0.0.1:{control_port}", flush=True)
    print(f"LOADED {total} {load_s:.2f}", flush=True)
    await stop.wait()
    steady.stop()
    await runner.cleanup()
    await fake.astop()


def main() -> None:
    """Run the stand-in until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--data", default='{"kind": "backlog", "events": 1000000}')
    args = parser.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
