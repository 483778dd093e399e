"""A Lambda fleet inside the benchmark stand-in (``bench/standin.py``).

Workload W of issue 13: ``groups`` Lambda groups, each with ``live``
execution environments at any time; an environment lives ``life_s``
(uniform between the two bounds) and is then replaced by a new one, i.e. a
new log stream; every live environment runs invocations at ``invocations``
per second (Poisson), each writing START, one runtime line, END and REPORT
with the put time as timestamp and ingestion time.

Stream names: ``live-YYYY/MM/DD/[$LATEST]<32 hex>`` for the fleet's streams,
``old-...`` for the preloaded finished streams of the *big group* scenario
(``old`` per group, with one invocation each, spread over the last
``old_days`` days but all older than ``old_newer_than_s`` ago), so the
stand-in's per-prefix call counters tell them apart.

Control (added to the stand-in's control server): ``POST /fleet`` with the
spec starts it, ``POST /fleet/stop`` stops it, ``GET /fleet`` answers the
counters: events put, streams created, and per name prefix the GetLogEvents
calls answered "end of stream" (``eos_per_prefix``).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

DAY_MS = 86_400_000


def stream_name(prefix: str, rng: random.Random, when_ms: int) -> str:
    day = time.strftime("%Y/%m/%d", time.gmtime(when_ms / 1000))
    return f"{prefix}-{day}/[$LATEST]{uuid.UUID(int=rng.getrandbits(128)).hex}"


def invocation(now_ms: int, rng: random.Random) -> list[tuple[int, str]]:
    rid = str(uuid.UUID(int=rng.getrandbits(128)))
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms / 1000))
    return [
        (now_ms, f"START RequestId: {rid} Version: $LATEST\n"),
        (now_ms, f"{iso}.{now_ms % 1000:03d}Z\t{rid}\tINFO\torder processed id={rng.randrange(10**6)}\n"),
        (now_ms, f"END RequestId: {rid}\n"),
        (
            now_ms,
            f"REPORT RequestId: {rid}\tDuration: {rng.uniform(2, 90):.2f} ms\t"
            "Billed Duration: 100 ms\tMemory Size: 128 MB\tMax Memory Used: 74 MB\t\n",
        ),
    ]  # fmt: skip


def load_old(fake: Any, spec: dict[str, Any], rng: random.Random) -> int:
    """Preload ``old`` finished streams per group (one invocation each)."""
    groups = int(spec.get("groups", 3))
    old = int(spec.get("old", 0))
    days = float(spec.get("old_days", 30))
    newer_than_ms = int(float(spec.get("old_newer_than_s", 4 * 3600)) * 1000)
    now = int(time.time() * 1000)
    total = 0
    for g in range(groups):
        group = f"/aws/lambda/bench-{g}"
        fake.add_group(group)
        for _ in range(old):
            at = now - newer_than_ms - int(rng.random() * days * DAY_MS)
            name = stream_name("old", rng, at)
            fake.add_stream(group, name, creation_time_ms=at - 1000)
            fake.put(group, name, invocation(at, rng), ingestion_time_ms=at)
            total += 4
    return total


class Fleet:
    """The generator: one asyncio task in the stand-in's loop."""

    def __init__(self, fake: Any) -> None:
        self._fake = fake
        self._task: asyncio.Task[None] | None = None
        self.put = 0
        self.created = 0
        self.started_at: float | None = None

    def start(self, spec: dict[str, Any]) -> None:
        self.stop()
        self._task = asyncio.get_running_loop().create_task(self._run(spec))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, spec: dict[str, Any]) -> None:
        rng = random.Random(int(spec.get("seed", 7)))
        groups = int(spec.get("groups", 3))
        live = int(spec.get("live", 20))
        lo, hi = (float(x) for x in spec.get("life_s", (20, 60)))
        rate = float(spec.get("invocations", 0.5))
        tick = float(spec.get("tick_s", 0.05))
        self.started_at = time.time()
        # (group, stream, ends at, next invocation at)
        envs: list[list[Any]] = []
        now = time.time()
        for g in range(groups):
            for _ in range(live):
                envs.append(self._new_env(g, now, rng, lo, hi, rate, stagger=True))
        while True:
            now = time.time()
            now_ms = int(now * 1000)
            for i, env in enumerate(envs):
                group, name, ends, nxt = env
                while nxt <= now and nxt < ends:
                    self._fake.put(group, name, invocation(now_ms, rng), ingestion_time_ms=now_ms)
                    self.put += 4
                    nxt += rng.expovariate(rate)
                env[3] = nxt
                if now >= ends:
                    g = int(group.rsplit("-", 1)[1])
                    envs[i] = self._new_env(g, now, rng, lo, hi, rate, stagger=False)
            await asyncio.sleep(tick)

    def _new_env(
        self,
        g: int,
        now: float,
        rng: random.Random,
        lo: float,
        hi: float,
        rate: float,
        *,
        stagger: bool,
    ) -> list[Any]:
        group = f"/aws/lambda/bench-{g}"
        name = stream_name("live", rng, int(now * 1000))
        life = rng.uniform(lo, hi)
        if stagger:  # the first generation ends at spread times, as in a running fleet
            life *= rng.random()
        self._fake.add_stream(group, name, creation_time_ms=int(now * 1000))
        self.created += 1
        # The first invocation comes with the environment (its cold start).
        return [group, name, now + life, now]


def install(app: web.Application, fake: Any) -> Fleet:
    """Add the fleet's control routes to the stand-in's control server."""
    fleet = Fleet(fake)

    async def start(request: web.Request) -> web.Response:
        fake.read_lag = True
        fleet.start(await request.json())
        return web.Response(text="ok")

    async def stop(request: web.Request) -> web.Response:
        fleet.stop()
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        body = {
            "put": fleet.put,
            "created": fleet.created,
            "started_at": fleet.started_at,
            "eos_per_prefix": dict(fake.eos_per_prefix),
            "get_per_prefix": dict(fake.get_per_prefix),
            "ops": {op: fake.counts(op).total for op in ("GetLogEvents", "DescribeLogStreams")},
            "op_n": dict(fake.op_n),
            "op_s": dict(fake.op_s),
            "cpu_s": time.process_time(),
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def read_lag(request: web.Request) -> web.Response:
        """Percentiles of how long events waited to be read (ingestion to the
        GetLogEvents answer that returned them), for answers in [since, until)."""
        since = float(request.query.get("since", "0"))
        until = float(request.query.get("until", "1e12"))
        a = bisect.bisect_left(fake.read_lag_t, since)
        b = bisect.bisect_left(fake.read_lag_t, until)
        values = sorted(v for batch in fake.read_lag_ms[a:b] for v in batch)
        pairs = list(zip(fake.read_lag_first[a:b], fake.read_lag_ms[a:b], strict=True))
        first = sorted(v for f, batch in pairs if f for v in batch)
        later = sorted(v for f, batch in pairs if not f for v in batch)

        def pct(q: float, values: list[float] = values) -> float | None:
            return values[min(len(values) - 1, int(q / 100 * len(values)))] if values else None

        body = {"count": len(values), "p50_ms": pct(50), "p99_ms": pct(99),
                # events returned by a stream's first read (they waited for
                # discovery's feed) and by the later reads
                "first_count": len(first), "first_p50_ms": pct(50, first),
                "later_p50_ms": pct(50, later),
                "later_mean_ms": sum(later) / len(later) if later else None}  # fmt: skip
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def intervals(request: web.Request) -> web.Response:
        """Time between two GetLogEvents answers of one stream, over the
        answers with events in [since, until): percentiles, and the mean wait
        an event sees, E[I^2] / 2 E[I] (longer than E[I] / 2 when intervals vary)."""
        since = float(request.query.get("since", "0"))
        until = float(request.query.get("until", "1e12"))
        last: dict[str, float] = {}
        gaps: list[float] = []
        for t, stream, n in fake.reads:
            prev = last.get(stream)
            last[stream] = t
            if prev is not None and n and since <= t < until:
                gaps.append(t - prev)
        gaps.sort()
        body: dict[str, Any] = {"count": len(gaps)}
        if gaps:
            body.update(
                p10=gaps[len(gaps) // 10], p50=gaps[len(gaps) // 2],
                p90=gaps[len(gaps) * 9 // 10], mean=sum(gaps) / len(gaps),
                mean_wait=sum(g * g for g in gaps) / 2 / sum(gaps),
            )  # fmt: skip
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app.router.add_get("/fleet/intervals", intervals)
    app.router.add_get("/fleet/read_lag", read_lag)
    app.router.add_post("/fleet", start)
    app.router.add_post("/fleet/stop", stop)
    app.router.add_get("/fleet", stats)
    return fleet
