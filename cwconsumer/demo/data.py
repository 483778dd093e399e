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

This module plans the streams and the invocations (who logs, when, how each
invocation went); :mod:`~cwconsumer.demo.sources` describes the functions and
the service, :mod:`~cwconsumer.demo.logtext` writes the lines themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from cwconsumer.demo.logtext import BODIES, Body, Rng, ecs_line, fill_time
from cwconsumer.demo.sources import (
    ECS_DESCRIPTION,
    ECS_GROUP,
    FUNCTIONS,
    FunctionProfile,
    Invocation,
    StreamLog,
    lambda_group,
)

__all__ = [
    "ECS_DESCRIPTION",
    "ECS_GROUP",
    "FUNCTIONS",
    "DemoLogs",
    "FunctionProfile",
    "Invocation",
    "StreamLog",
    "lambda_group",
]

_ECS_SHARE: Final = 1.0 - sum(f.share for f in FUNCTIONS)
_EVENTS_PER_STREAM: Final = 1300
"""Typical stream size: sets how many streams a group gets for a total."""


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


class DemoLogs:
    """Deterministic generator of the demo's log groups (see the module docstring).

    ``start_ms`` is the time of the first event; it must lie within the last
    14 days for CloudWatch (and moto) to accept the events.
    """

    def __init__(self, seed: int, start_ms: int) -> None:
        self._rng = Rng(seed)
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

    def _new_env(self, profile: FunctionProfile, w0: int) -> _Env:
        # Environments start spread over the first part of the window.
        start = w0 + self._rng.randrange(0, 5 * 60_000)
        day = datetime.fromtimestamp(start // 1000, UTC).strftime("%Y/%m/%d")
        env = _Env(profile, f"{day}/[$LATEST]{self._rng.hex(32)}", start)
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

    def _stamp(self, body: Body, t0: int) -> list[tuple[int, str]]:
        """Turn offsets into times and fill in the time placeholders."""
        ordered = sorted(body, key=lambda e: e[0])  # stable: END stays before REPORT
        return [(t0 + offset, fill_time(message, t0 + offset)) for offset, message in ordered]

    def _invocation(self, env: _Env) -> Body:
        """One invocation as ``(offset_ms, message)``; :data:`~cwconsumer.demo.logtext.TS`
        marks the event time."""
        rng = self._rng
        p = env.profile
        rid = rng.uuid()
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
        inv = Invocation(p.name, rid, duration, billed, p.memory_size_mb, used, init_ms, status)
        self.invocations.append(inv)
        init_off = 0 if init_ms is None else math.ceil(init_ms) + 2
        return BODIES[p.runtime](rng, p, inv, init_off)

    # -- ECS ----------------------------------------------------------------------------

    def _new_task(self, w0: int) -> _Task:
        task_id = self._rng.hex(32)
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
            messages.append(ecs_line(rng))
        stamps = sorted(rng.randrange(task.clock_ms, max(task.clock_ms + 1, w1)) for _ in messages)
        for ts, message in zip(stamps, messages, strict=True):
            log.events.append((ts, fill_time(message, ts)))
        task.clock_ms = max(task.clock_ms, stamps[-1] + 1 if stamps else task.clock_ms)
        return log
