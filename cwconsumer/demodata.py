"""Realistic CloudWatch Logs content for ``cwconsumer demo`` (pure: no I/O, nothing async).

:class:`DemoLogs` writes what three Lambda functions and one ECS service
would have logged, deterministically for a seed and a start time:

- ``/aws/lambda/orders-api``: Node.js text logs (``time<TAB>id<TAB>LEVEL<TAB>text``,
  some ``console.log(JSON.stringify(...))``), X-Ray on the REPORT line;
- ``/aws/lambda/payments-worker``: Python ``logging`` lines (``[INFO]<TAB>...``),
  ``print()`` output at init, handled tracebacks, and a few timeouts
  (``Status: timeout`` plus the ``Task timed out after ...`` line);
- ``/aws/lambda/thumbnailer``: the Lambda JSON log format (``platform.start``,
  ``platform.report`` with ``record.metrics``...), memory-hungry, with a few
  out-of-memory errors;
- ``/ecs/checkout``: an ECS service's JSON application logs mixed with plain
  text lines (start-up banner, health checks, Go ``log`` lines).

Each Lambda stream is one execution environment (``2026/11/21/[$LATEST]<hex>``):
its first invocation is a cold start (``INIT_START``, ``Init Duration``), the
next ones are warm and strictly one after another, as Lambda runs them. Every
invocation is also recorded as an :class:`Invocation`, the truth the demo's
report can be checked against.

Events are ``(timestamp_ms, message)`` tuples in time order per stream, as
PutLogEvents wants them. :meth:`DemoLogs.generate` may be called again: the
next wave continues some existing streams (later timestamps only, so forward
paging sees every event) and opens new ones, like logs arriving while a
consumer was down.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

import orjson

__all__ = [
    "ECS_GROUP",
    "FUNCTIONS",
    "DemoLogs",
    "FunctionProfile",
    "Invocation",
    "StreamLog",
    "lambda_group",
]


@dataclass(frozen=True, slots=True)
class FunctionProfile:
    """How one demo Lambda function behaves."""

    name: str
    runtime: str
    """``nodejs`` or ``python`` (text logs), or ``json`` (the JSON log format)."""
    runtime_version: str
    description: str
    memory_size_mb: int
    timeout_s: int
    median_ms: float
    """Median warm duration; durations are log-normal around it."""
    spread: float
    """Sigma of the log-normal distribution of durations."""
    init_ms: tuple[float, float]
    """Range of the Init Duration of a cold start."""
    memory_mb: tuple[int, int]
    """Max Memory Used of a fresh environment, and what it grows to at most."""
    timeout_rate: float
    oom_rate: float
    share: float
    """Part of the demo's events this function writes."""


FUNCTIONS: Final[tuple[FunctionProfile, ...]] = (
    FunctionProfile(
        name="orders-api",
        runtime="nodejs",
        runtime_version="nodejs:20.v33",
        description="Node.js 20 text logs, X-Ray",
        memory_size_mb=256,
        timeout_s=10,
        median_ms=48.0,
        spread=0.75,
        init_ms=(160.0, 420.0),
        memory_mb=(78, 104),
        timeout_rate=0.0,
        oom_rate=0.0,
        share=0.34,
    ),
    FunctionProfile(
        name="payments-worker",
        runtime="python",
        runtime_version="python:3.12.v38",
        description="Python 3.12 [INFO] lines, timeouts",
        memory_size_mb=512,
        timeout_s=6,
        median_ms=340.0,
        spread=0.6,
        init_ms=(380.0, 900.0),
        memory_mb=(88, 131),
        timeout_rate=0.02,
        oom_rate=0.0,
        share=0.26,
    ),
    FunctionProfile(
        name="thumbnailer",
        runtime="json",
        runtime_version="python:3.12.v38",
        description="Lambda JSON log format",
        memory_size_mb=1024,
        timeout_s=30,
        median_ms=920.0,
        spread=0.55,
        init_ms=(650.0, 1400.0),
        memory_mb=(410, 760),
        timeout_rate=0.0,
        oom_rate=0.012,
        share=0.16,
    ),
)
"""The demo's Lambda functions; the ECS service writes the remaining share."""

ECS_GROUP: Final = "/ecs/checkout"
ECS_DESCRIPTION: Final = "ECS task JSON + plain text"
_ECS_SHARE: Final = 1.0 - sum(f.share for f in FUNCTIONS)
_EVENTS_PER_STREAM: Final = 1300
"""Typical stream size: sets how many streams a group gets for a total."""
_REGION_ARN: Final = "arn:aws:lambda:us-east-1::runtime:"


def lambda_group(function: str) -> str:
    """The log group of a Lambda function."""
    return f"/aws/lambda/{function}"


@dataclass(frozen=True, slots=True)
class Invocation:
    """One Lambda invocation as its REPORT line states it."""

    function: str
    request_id: str
    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    """Set on a cold start."""
    status: str
    """``success``, ``timeout`` or ``error``."""


@dataclass(slots=True)
class StreamLog:
    """Events for one stream, ``(timestamp_ms, message)`` in time order."""

    group: str
    stream: str
    events: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Env:
    """A Lambda execution environment: one log stream."""

    profile: FunctionProfile
    stream: str
    clock_ms: int
    cold: bool = True
    memory_mb: float = 0.0


@dataclass(slots=True)
class _Task:
    """An ECS task: one log stream."""

    stream: str
    task_id: str
    clock_ms: int
    started: bool = False


_S = TypeVar("_S", _Env, _Task)

_TS: Final = "\u27e8ts\u27e9"
"""Stands for the event's ISO time in a message until the time is known."""
_GO_TS: Final = "\u27e8gots\u27e9"
"""Same, in Go's ``log`` format (``2026/11/21 10:00:00``)."""


def _fill_time(message: str, ts: int) -> str:
    if _TS in message:
        message = message.replace(_TS, _iso(ts))
    if _GO_TS in message:
        stamp = datetime.fromtimestamp(ts // 1000, UTC).strftime("%Y/%m/%d %H:%M:%S")
        message = message.replace(_GO_TS, stamp)
    return message


def _iso(ms: int) -> str:
    """``2026-11-21T10:00:00.123Z``."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def _json(obj: object) -> str:
    return orjson.dumps(obj).decode()


class DemoLogs:
    """Deterministic generator of the demo's log groups (see the module docstring).

    ``start_ms`` is the time of the first event; it must lie within the last
    14 days for CloudWatch (and moto) to accept the events.
    """

    def __init__(self, seed: int, start_ms: int) -> None:
        self._rng = random.Random(seed)
        self._next_ms = start_ms
        self._envs: dict[str, list[_Env]] = {f.name: [] for f in FUNCTIONS}
        self._tasks: list[_Task] = []
        self.invocations: list[Invocation] = []
        """Every invocation generated so far, in generation order."""

    # -- waves --------------------------------------------------------------------------

    def generate(
        self,
        total_events: int,
        *,
        per_stream: int | None = None,
        window_ms: int = 45 * 60_000,
    ) -> list[StreamLog]:
        """One wave of about ``total_events`` events spread over ``window_ms``.

        The first wave opens the streams (their number follows ``total_events``);
        with ``per_stream`` each of them gets about that many events instead.
        Later waves continue about half of the existing streams and open one new
        stream per group (a new Lambda environment, a replaced ECS task).
        A stream may run a little past its share: invocations are never cut.
        """
        if total_events < 1 or (per_stream is not None and per_stream < 1):
            raise ValueError("event counts must be positive")
        w0 = self._next_ms
        w1 = w0 + window_ms
        self._next_ms = w1
        out: list[StreamLog] = []
        for profile in FUNCTIONS:
            budget = max(1, round(total_events * profile.share))
            envs = self._envs[profile.name]
            if envs:
                chosen = [*self._continue(envs), self._new_env(profile, w0)]
                targets = [budget // len(chosen)] * len(chosen)
            else:
                count = max(2, round(budget / _EVENTS_PER_STREAM))
                chosen = [self._new_env(profile, w0) for _ in range(count)]
                targets = [per_stream or budget // count] * count
            for env, target in zip(chosen, targets, strict=True):
                out.append(self._lambda_stream(env, target, w1))
        budget = max(1, round(total_events * _ECS_SHARE))
        if self._tasks:
            tasks = [*self._continue(self._tasks), self._new_task(w0)]
            targets = [budget // len(tasks)] * len(tasks)
        else:
            count = max(2, min(4, round(budget / _EVENTS_PER_STREAM)))
            tasks = [self._new_task(w0) for _ in range(count)]
            targets = [per_stream or budget // count] * count
        for task, target in zip(tasks, targets, strict=True):
            out.append(self._ecs_stream(task, target, w1))
        return out

    def _continue(self, streams: list[_S]) -> list[_S]:
        """About half of ``streams``, in their original order."""
        picked = set(self._rng.sample(range(len(streams)), max(1, len(streams) // 2)))
        return [s for i, s in enumerate(streams) if i in picked]

    # -- Lambda -------------------------------------------------------------------------

    def _hex(self, n: int) -> str:
        return f"{self._rng.getrandbits(4 * n):0{n}x}"

    def _uuid(self) -> str:
        h = self._hex(32)
        variant = "89ab"[self._rng.getrandbits(2)]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"

    def _new_env(self, profile: FunctionProfile, w0: int) -> _Env:
        # Environments start spread over the first part of the window.
        start = w0 + self._rng.randrange(0, 5 * 60_000)
        day = datetime.fromtimestamp(start // 1000, UTC).strftime("%Y/%m/%d")
        env = _Env(profile, f"{day}/[$LATEST]{self._hex(32)}", start)
        self._envs[profile.name].append(env)
        return env

    def _lambda_stream(self, env: _Env, target: int, w1: int) -> StreamLog:
        """Invocations, one after another, until the stream has ``target`` events."""
        rng = self._rng
        bodies: list[list[tuple[int, str]]] = []
        n = 0
        while n < target:
            body = self._invocation(env)
            bodies.append(body)
            n += len(body)
        # Place the invocations in the window: random gaps, never overlapping.
        busy = sum(b[-1][0] for b in bodies)
        slack = max(len(bodies), w1 - env.clock_ms - busy)
        cuts = sorted(rng.random() for _ in bodies)
        log = StreamLog(lambda_group(env.profile.name), env.stream)
        clock = env.clock_ms
        prev_cut = 0.0
        for cut, body in zip(cuts, bodies, strict=True):
            clock += 1 + int((cut - prev_cut) * slack)
            prev_cut = cut
            log.events.extend(self._stamp(body, clock))
            clock += body[-1][0]
        env.clock_ms = clock + 1
        return log

    def _stamp(self, body: list[tuple[int, str]], t0: int) -> list[tuple[int, str]]:
        """Turn offsets into times and fill in the time placeholders."""
        ordered = sorted(body, key=lambda e: e[0])  # stable: END stays before REPORT
        return [(t0 + offset, _fill_time(message, t0 + offset)) for offset, message in ordered]

    def _invocation(self, env: _Env) -> list[tuple[int, str]]:
        """One invocation as ``(offset_ms, message)``; :data:`_TS` marks the event time."""
        rng = self._rng
        p = env.profile
        rid = self._uuid()
        cold = env.cold
        env.cold = False
        init_ms = round(rng.uniform(*p.init_ms), 2) if cold else None
        if cold:
            env.memory_mb = float(p.memory_mb[0] + rng.randrange(0, 8))
        else:  # warm environments creep up: caches, module state
            env.memory_mb = min(float(p.memory_mb[1]), env.memory_mb + rng.uniform(0.0, 0.9))
        duration = rng.lognormvariate(math.log(p.median_ms), p.spread) * (1.6 if cold else 1.0)
        status = "success"
        used = int(env.memory_mb + rng.uniform(0, 6))
        if rng.random() < p.timeout_rate:
            status = "timeout"
            duration = p.timeout_s * 1000 + rng.uniform(0.4, 14.0)
        elif rng.random() < p.oom_rate:
            status = "error"
            used = p.memory_size_mb
            duration = duration * rng.uniform(0.3, 0.9)
            env.cold = True  # the runtime was killed: the next invocation starts cold
        elif p.runtime == "json":
            # Image size drives memory: most are small, a few are huge.
            used = min(p.memory_size_mb - 1, used + int(rng.paretovariate(2.2) * 40) - 40)
        duration = round(max(1.0, duration), 2)
        billed = p.timeout_s * 1000 if status == "timeout" else math.ceil(duration)
        self.invocations.append(
            Invocation(p.name, rid, duration, billed, p.memory_size_mb, used, init_ms, status)
        )
        init_off = 0 if init_ms is None else math.ceil(init_ms) + 2
        if p.runtime == "nodejs":
            body = self._node_body(env, rid, duration, billed, used, init_ms, init_off)
        elif p.runtime == "python":
            body = self._python_body(env, rid, duration, billed, used, init_ms, init_off, status)
        else:
            body = self._json_body(env, rid, duration, billed, used, init_ms, init_off, status)
        return body

    def _spread(self, start: int, duration: float, n: int) -> list[int]:
        """``n`` sorted offsets inside an invocation."""
        end = start + max(1, int(duration))
        return sorted(self._rng.randrange(start, end + 1) for _ in range(n))

    def _init_start(self, p: FunctionProfile) -> str:
        arn = _REGION_ARN + self._hex(64)
        return f"INIT_START Runtime Version: {p.runtime_version}\tRuntime Version ARN: {arn}\n"

    def _report(
        self,
        rid: str,
        duration: float,
        billed: int,
        memory: int,
        used: int,
        init_ms: float | None,
        extra: str = "",
    ) -> str:
        text = (
            f"REPORT RequestId: {rid}\tDuration: {duration:.2f} ms\tBilled Duration: {billed} ms\t"
            f"Memory Size: {memory} MB\tMax Memory Used: {used} MB\t"
        )
        if init_ms is not None:
            text += f"Init Duration: {init_ms:.2f} ms\t"
        return text + extra + "\n"

    def _node_body(
        self,
        env: _Env,
        rid: str,
        duration: float,
        billed: int,
        used: int,
        init_ms: float | None,
        t: int,
    ) -> list[tuple[int, str]]:
        rng = self._rng
        p = env.profile
        body: list[tuple[int, str]] = []
        if init_ms is not None:
            body.append((0, self._init_start(p)))
        body.append((t, f"START RequestId: {rid} Version: $LATEST\n"))
        order = f"ord_{self._hex(10)}"
        route = rng.choice(("POST /orders", "GET /orders/{id}", "GET /orders/{id}", "GET /orders"))
        lines = [f"INFO\t{route.replace('{id}', order)} from api-gateway"]
        if route == "POST /orders":
            items = rng.randint(1, 6)
            created = {
                "msg": "order created",
                "orderId": order,
                "items": items,
                "totalCents": items * rng.randint(499, 4999),
                "currency": "EUR",
            }
            lines.append("INFO\t" + _json(created))
        else:
            lines.append(f"INFO\tDynamoDB GetItem orders {order}: {rng.randint(3, 19)} ms")
        if duration > 150:
            lines.append(f"WARN\tslow DynamoDB query on table orders ({int(duration * 0.7)} ms)")
        if rng.random() < 0.01:
            err = {
                "errorType": "ValidationError",
                "errorMessage": "quantity must be positive",
                "stack": [
                    "ValidationError: quantity must be positive",
                    "    at validate (/var/task/index.js:41:11)",
                    "    at Runtime.handler (/var/task/index.js:12:5)",
                ],
            }
            lines.append("ERROR\tInvoke Error \t" + _json(err))
        for off, line in zip(self._spread(t, duration, len(lines)), lines, strict=True):
            body.append((off, f"{_TS}\t{rid}\t{line}\n"))
        end = t + max(1, int(duration))
        trace = (
            f"XRAY TraceId: 1-{self._hex(8)}-{self._hex(24)}\tSegmentId: {self._hex(16)}\t"
            f"Sampled: {'true' if rng.random() < 0.05 else 'false'}\t"
        )
        body.append((end, f"END RequestId: {rid}\n"))
        body.append(
            (end, self._report(rid, duration, billed, p.memory_size_mb, used, init_ms, trace))
        )
        return body

    def _python_body(
        self,
        env: _Env,
        rid: str,
        duration: float,
        billed: int,
        used: int,
        init_ms: float | None,
        t: int,
        status: str,
    ) -> list[tuple[int, str]]:
        rng = self._rng
        p = env.profile
        body: list[tuple[int, str]] = []
        if init_ms is not None:
            body.append((0, self._init_start(p)))
            body.append(
                (max(1, int(init_ms * 0.8)), f"Loaded config from SSM in {int(init_ms * 0.3)} ms\n")
            )
        body.append((t, f"START RequestId: {rid} Version: $LATEST\n"))
        n = rng.randint(1, 4)
        lines = [f"[INFO]\t{_TS}\t{rid}\tProcessing {n} messages from payments-queue\n"]
        for _ in range(n):
            order = f"ord_{self._hex(10)}"
            amount = rng.randint(500, 25000) / 100
            if rng.random() < 0.06:
                lines.append(
                    f"[WARNING]\t{_TS}\t{rid}\tPayment provider answered 429, retrying "
                    f"{order} in {rng.choice((200, 400, 800))} ms (attempt 2/3)\n"
                )
            if rng.random() < 0.02:
                lines.append(
                    f"[ERROR]\t{_TS}\t{rid}\tPaymentDeclined: card declined for {order}\n"
                    "Traceback (most recent call last):\n"
                    '  File "/var/task/handler.py", line 58, in handler\n'
                    "    charge(order)\n"
                    '  File "/var/task/payments.py", line 112, in charge\n'
                    "    raise PaymentDeclined(resp.decline_code)\n"
                    "payments.PaymentDeclined: card declined\n"
                )
            else:
                lines.append(
                    f"[INFO]\t{_TS}\t{rid}\tCharged {order}: {amount:.2f} EUR "
                    f"(provider=stripe, {rng.randint(80, 400)} ms)\n"
                )
        offsets = self._spread(t, duration * (0.5 if status == "timeout" else 1.0), len(lines))
        body.extend(zip(offsets, lines, strict=True))
        end = t + max(1, int(duration))
        if status == "timeout":
            body.append((end, f"{_TS} {rid} Task timed out after {duration / 1000:.2f} seconds\n"))
        body.append((end, f"END RequestId: {rid}\n"))
        extra = "Status: timeout" if status == "timeout" else ""
        body.append(
            (end, self._report(rid, duration, billed, p.memory_size_mb, used, init_ms, extra))
        )
        return body

    def _json_body(
        self,
        env: _Env,
        rid: str,
        duration: float,
        billed: int,
        used: int,
        init_ms: float | None,
        t: int,
        status: str,
    ) -> list[tuple[int, str]]:
        rng = self._rng
        p = env.profile
        body: list[tuple[int, str]] = []
        if init_ms is not None:
            init = {
                "initializationType": "on-demand",
                "phase": "init",
                "runtimeVersion": p.runtime_version,
                "runtimeVersionArn": _REGION_ARN + self._hex(64),
                "functionName": p.name,
                "functionVersion": "$LATEST",
            }
            body.append((0, _platform("platform.initStart", init)))
            init_done = {"initializationType": "on-demand", "phase": "init", "status": "success"}
            body.append((t - 2, _platform("platform.initRuntimeDone", init_done)))
            init_report = {**init_done, "metrics": {"durationMs": init_ms}}
            body.append((t - 1, _platform("platform.initReport", init_report)))
        body.append((t, _platform("platform.start", {"requestId": rid, "version": "$LATEST"})))
        key = f"uploads/2026/{self._hex(12)}.jpg"
        sizes = rng.choice((2, 3, 3, 4))
        logs = [("INFO", f"Resizing s3://media-uploads/{key} ({rng.randint(80, 9000)} KB)")]
        if status == "error":
            logs.append(("WARNING", f"{key} is {rng.randint(40, 90)} megapixels; decoding"))
        else:
            logs.append(("INFO", f"Wrote {sizes} sizes of {key} to s3://media-thumbs"))
        for off, (level, text) in zip(self._spread(t, duration, len(logs)), logs, strict=True):
            line = {
                "timestamp": _TS,
                "level": level,
                "message": text,
                "logger": "thumbnailer",
                "requestId": rid,
            }
            body.append((off, _json(line)))
        end = t + max(1, int(duration))
        produced = rng.randint(40, 400) if status == "success" else 0
        done: dict[str, object] = {
            "requestId": rid,
            "status": status,
            "metrics": {"durationMs": duration, "producedBytes": produced},
        }
        metrics: dict[str, float | int] = {
            "durationMs": duration,
            "billedDurationMs": billed,
            "memorySizeMB": p.memory_size_mb,
            "maxMemoryUsedMB": used,
        }
        if init_ms is not None:
            metrics["initDurationMs"] = init_ms
        record: dict[str, object] = {"requestId": rid, "metrics": metrics, "status": status}
        if status == "error":
            done["errorType"] = record["errorType"] = "Runtime.OutOfMemory"
        body.append((end, _platform("platform.runtimeDone", done)))
        body.append((end, _platform("platform.report", record)))
        return body

    # -- ECS ----------------------------------------------------------------------------

    def _new_task(self, w0: int) -> _Task:
        task_id = self._hex(32)
        start = w0 + self._rng.randrange(0, 3 * 60_000)
        task = _Task(f"ecs/checkout/{task_id}", task_id, start)
        self._tasks.append(task)
        return task

    def _ecs_stream(self, task: _Task, target: int, w1: int) -> StreamLog:
        rng = self._rng
        log = StreamLog(ECS_GROUP, task.stream)
        messages: list[str] = []
        if not task.started:
            task.started = True
            messages += [
                "checkout v1.14.2 (commit 3f9c2ab) starting",
                f"ECS task {task.task_id} in cluster prod, availability zone us-east-1b",
                "connected to postgres checkout-db.cluster-c8x2.us-east-1.rds.amazonaws.com:5432 "
                "(pool size 20)",
                "listening on :8080",
            ]
        while len(messages) < target:
            messages.append(self._ecs_line())
        stamps = sorted(rng.randrange(task.clock_ms, max(task.clock_ms + 1, w1)) for _ in messages)
        for ts, message in zip(stamps, messages, strict=True):
            log.events.append((ts, _fill_time(message, ts)))
        task.clock_ms = max(task.clock_ms, stamps[-1] + 1 if stamps else task.clock_ms)
        return log

    def _ecs_line(self) -> str:
        rng = self._rng
        r = rng.random()
        if r < 0.12:
            return f"GET /healthz 200 {rng.uniform(0.2, 1.4):.2f}ms"
        if r < 0.14:
            port = rng.randint(30000, 65000)
            return (
                f"{_GO_TS} http: TLS handshake error from 10.0.{rng.randint(0, 15)}."
                f"{rng.randint(2, 250)}:{port}: EOF"
            )
        base: dict[str, object] = {"level": "info", "ts": _TS, "caller": "http/server.go:214"}
        if r < 0.18:
            line = {
                **base,
                "level": "warn",
                "caller": "payments/client.go:88",
                "msg": "payment provider slow",
                "provider": "stripe",
                "latency_ms": rng.randint(1200, 4800),
            }
        elif r < 0.19:
            line = {
                **base,
                "level": "error",
                "caller": "checkout/service.go:131",
                "msg": "checkout failed",
                "order_id": f"ord_{self._hex(10)}",
                "error": "inventory service: context deadline exceeded",
            }
        else:
            method, path, code = rng.choice(
                (
                    ("POST", "/api/checkout", 201),
                    ("GET", "/api/cart", 200),
                    ("GET", "/api/cart", 200),
                    ("PUT", "/api/cart/items", 200),
                    ("GET", "/api/shipping/quote", 200),
                    ("POST", "/api/checkout", 402),
                )
            )
            line = {
                **base,
                "msg": "request",
                "method": method,
                "path": path,
                "status": code,
                "duration_ms": round(rng.lognormvariate(math.log(35), 0.7), 2),
                "bytes": rng.randint(80, 4000),
                "request_id": self._uuid(),
            }
        return _json(line)


def _platform(kind: str, record: Mapping[str, object]) -> str:
    return _json({"time": _TS, "type": kind, "record": record})
