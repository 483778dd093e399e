"""The text the demo's sources write (pure: no I/O, nothing async).

:mod:`cwconsumer.demo.data` decides who logs when and how each invocation
goes; this module writes the lines, as each runtime really writes them:

- :func:`node_body`: Node.js text logs (``time<TAB>id<TAB>LEVEL<TAB>text``,
  some ``console.log(JSON.stringify(...))``), X-Ray on the REPORT line;
- :func:`python_body`: Python ``logging`` lines (``[INFO]<TAB>...``),
  ``print()`` output at init, handled tracebacks, and on a timeout
  ``Status: timeout`` plus the ``Task timed out after ...`` line;
- :func:`json_body`: the Lambda JSON log format (``platform.start``,
  ``platform.report`` with ``record.metrics``...);
- :func:`ecs_line`: an ECS service's JSON application logs mixed with plain
  text lines (health checks, Go ``log`` lines).

A body is a list of ``(offset_ms, message)`` from the invocation's start, not
yet in order; :data:`TS` (and :data:`GO_TS`) in a message stand for the
event's time until it is known (:func:`fill_time`). Every random choice comes
from the caller's :class:`Rng`, in a fixed order, so a seed gives the same text.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

import orjson

from cwconsumer.demo.sources import FunctionProfile, Invocation

__all__ = [
    "BODIES",
    "GO_TS",
    "TS",
    "Body",
    "Rng",
    "ecs_line",
    "fill_time",
    "json_body",
    "node_body",
    "python_body",
]

_REGION_ARN: Final = "arn:aws:lambda:us-east-1::runtime:"

TS: Final = "\u27e8ts\u27e9"
"""Stands for the event's ISO time in a message until the time is known."""
GO_TS: Final = "\u27e8gots\u27e9"
"""Same, in Go's ``log`` format (``2026/11/21 10:00:00``)."""

Body = list[tuple[int, str]]
"""``(offset_ms, message)`` of one invocation."""


class Rng(random.Random):
    """The generator's one source of chance, with the identifiers AWS writes."""

    def hex(self, n: int) -> str:
        """``n`` random lowercase hex digits."""
        return f"{self.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        """A random version 4 UUID, as Lambda request ids are."""
        h = self.hex(32)
        variant = "89ab"[self.getrandbits(2)]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"

    def spread(self, start: int, duration: float, n: int) -> list[int]:
        """``n`` sorted offsets inside an invocation."""
        end = start + max(1, int(duration))
        return sorted(self.randrange(start, end + 1) for _ in range(n))


def fill_time(message: str, ts: int) -> str:
    """``message`` with :data:`TS` and :data:`GO_TS` replaced by the time ``ts``."""
    if TS in message:
        message = message.replace(TS, _iso(ts))
    if GO_TS in message:
        stamp = datetime.fromtimestamp(ts // 1000, UTC).strftime("%Y/%m/%d %H:%M:%S")
        message = message.replace(GO_TS, stamp)
    return message


def _iso(ms: int) -> str:
    """``2026-11-21T10:00:00.123Z``."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def _json(obj: object) -> str:
    return orjson.dumps(obj).decode()


def _platform(kind: str, record: Mapping[str, object]) -> str:
    return _json({"time": TS, "type": kind, "record": record})


# -- Lambda -----------------------------------------------------------------------------


def _init_start(rng: Rng, p: FunctionProfile) -> str:
    arn = _REGION_ARN + rng.hex(64)
    return f"INIT_START Runtime Version: {p.runtime_version}\tRuntime Version ARN: {arn}\n"


def _report(inv: Invocation, extra: str = "") -> str:
    text = (
        f"REPORT RequestId: {inv.request_id}\tDuration: {inv.duration_ms:.2f} ms\t"
        f"Billed Duration: {inv.billed_duration_ms} ms\t"
        f"Memory Size: {inv.memory_size_mb} MB\tMax Memory Used: {inv.max_memory_used_mb} MB\t"
    )
    if inv.init_duration_ms is not None:
        text += f"Init Duration: {inv.init_duration_ms:.2f} ms\t"
    return text + extra + "\n"


def node_body(rng: Rng, p: FunctionProfile, inv: Invocation, t: int) -> Body:
    """A Node.js invocation whose handler starts at offset ``t``."""
    rid, duration = inv.request_id, inv.duration_ms
    body: Body = []
    if inv.init_duration_ms is not None:
        body.append((0, _init_start(rng, p)))
    body.append((t, f"START RequestId: {rid} Version: $LATEST\n"))
    order = f"ord_{rng.hex(10)}"
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
    for off, line in zip(rng.spread(t, duration, len(lines)), lines, strict=True):
        body.append((off, f"{TS}\t{rid}\t{line}\n"))
    end = t + max(1, int(duration))
    trace = (
        f"XRAY TraceId: 1-{rng.hex(8)}-{rng.hex(24)}\tSegmentId: {rng.hex(16)}\t"
        f"Sampled: {'true' if rng.random() < 0.05 else 'false'}\t"
    )
    body.append((end, f"END RequestId: {rid}\n"))
    body.append((end, _report(inv, trace)))
    return body


def python_body(rng: Rng, p: FunctionProfile, inv: Invocation, t: int) -> Body:
    """A Python invocation whose handler starts at offset ``t``."""
    rid, duration, status = inv.request_id, inv.duration_ms, inv.status
    init_ms = inv.init_duration_ms
    body: Body = []
    if init_ms is not None:
        body.append((0, _init_start(rng, p)))
        body.append(
            (max(1, int(init_ms * 0.8)), f"Loaded config from SSM in {int(init_ms * 0.3)} ms\n")
        )
    body.append((t, f"START RequestId: {rid} Version: $LATEST\n"))
    n = rng.randint(1, 4)
    lines = [f"[INFO]\t{TS}\t{rid}\tProcessing {n} messages from payments-queue\n"]
    for _ in range(n):
        order = f"ord_{rng.hex(10)}"
        amount = rng.randint(500, 25000) / 100
        if rng.random() < 0.06:
            lines.append(
                f"[WARNING]\t{TS}\t{rid}\tPayment provider answered 429, retrying "
                f"{order} in {rng.choice((200, 400, 800))} ms (attempt 2/3)\n"
            )
        if rng.random() < 0.02:
            lines.append(
                f"[ERROR]\t{TS}\t{rid}\tPaymentDeclined: card declined for {order}\n"
                "Traceback (most recent call last):\n"
                '  File "/var/task/handler.py", line 58, in handler\n'
                "    charge(order)\n"
                '  File "/var/task/payments.py", line 112, in charge\n'
                "    raise PaymentDeclined(resp.decline_code)\n"
                "payments.PaymentDeclined: card declined\n"
            )
        else:
            lines.append(
                f"[INFO]\t{TS}\t{rid}\tCharged {order}: {amount:.2f} EUR "
                f"(provider=stripe, {rng.randint(80, 400)} ms)\n"
            )
    offsets = rng.spread(t, duration * (0.5 if status == "timeout" else 1.0), len(lines))
    body.extend(zip(offsets, lines, strict=True))
    end = t + max(1, int(duration))
    if status == "timeout":
        body.append((end, f"{TS} {rid} Task timed out after {duration / 1000:.2f} seconds\n"))
    body.append((end, f"END RequestId: {rid}\n"))
    body.append((end, _report(inv, "Status: timeout" if status == "timeout" else "")))
    return body


def json_body(rng: Rng, p: FunctionProfile, inv: Invocation, t: int) -> Body:
    """An invocation in the Lambda JSON log format whose handler starts at offset ``t``."""
    rid, duration, status = inv.request_id, inv.duration_ms, inv.status
    init_ms = inv.init_duration_ms
    body: Body = []
    if init_ms is not None:
        init = {
            "initializationType": "on-demand",
            "phase": "init",
            "runtimeVersion": p.runtime_version,
            "runtimeVersionArn": _REGION_ARN + rng.hex(64),
            "functionName": p.name,
            "functionVersion": "$LATEST",
        }
        body.append((0, _platform("platform.initStart", init)))
        init_done = {"initializationType": "on-demand", "phase": "init", "status": "success"}
        body.append((t - 2, _platform("platform.initRuntimeDone", init_done)))
        init_report = {**init_done, "metrics": {"durationMs": init_ms}}
        body.append((t - 1, _platform("platform.initReport", init_report)))
    body.append((t, _platform("platform.start", {"requestId": rid, "version": "$LATEST"})))
    key = f"uploads/2026/{rng.hex(12)}.jpg"
    sizes = rng.choice((2, 3, 3, 4))
    logs = [("INFO", f"Resizing s3://media-uploads/{key} ({rng.randint(80, 9000)} KB)")]
    if status == "error":
        logs.append(("WARNING", f"{key} is {rng.randint(40, 90)} megapixels; decoding"))
    else:
        logs.append(("INFO", f"Wrote {sizes} sizes of {key} to s3://media-thumbs"))
    for off, (level, text) in zip(rng.spread(t, duration, len(logs)), logs, strict=True):
        line = {
            "timestamp": TS,
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
        "billedDurationMs": inv.billed_duration_ms,
        "memorySizeMB": inv.memory_size_mb,
        "maxMemoryUsedMB": inv.max_memory_used_mb,
    }
    if init_ms is not None:
        metrics["initDurationMs"] = init_ms
    record: dict[str, object] = {"requestId": rid, "metrics": metrics, "status": status}
    if status == "error":
        done["errorType"] = record["errorType"] = "Runtime.OutOfMemory"
    body.append((end, _platform("platform.runtimeDone", done)))
    body.append((end, _platform("platform.report", record)))
    return body


BODIES: Final[Mapping[str, Callable[[Rng, FunctionProfile, Invocation, int], Body]]] = {
    "nodejs": node_body,
    "python": python_body,
    "json": json_body,
}
"""The body writer of each :attr:`FunctionProfile.runtime`."""


# -- ECS --------------------------------------------------------------------------------


def ecs_line(rng: Rng) -> str:
    """One line of the ECS service after start-up: JSON, or plain text now and then."""
    r = rng.random()
    if r < 0.12:
        return f"GET /healthz 200 {rng.uniform(0.2, 1.4):.2f}ms"
    if r < 0.14:
        port = rng.randint(30000, 65000)
        return (
            f"{GO_TS} http: TLS handshake error from 10.0.{rng.randint(0, 15)}."
            f"{rng.randint(2, 250)}:{port}: EOF"
        )
    base: dict[str, object] = {"level": "info", "ts": TS, "caller": "http/server.go:214"}
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
            "order_id": f"ord_{rng.hex(10)}",
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
            "request_id": rng.uuid(),
        }
    return _json(line)
