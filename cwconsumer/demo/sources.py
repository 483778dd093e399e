"""Who writes the demo's logs: three Lambda functions and one ECS service (pure: data only).

:data:`FUNCTIONS` says how each Lambda function behaves (runtime, memory,
durations, how often it times out or runs out of memory) and what part of the
demo's events it writes; the ECS service (:data:`ECS_GROUP`) writes the rest.
:class:`Invocation` is one invocation as its REPORT line states it, the truth
the demo's Lambda report is checked against; :class:`StreamLog` is what one
stream gets, ``(timestamp_ms, message)`` in time order, as PutLogEvents wants it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ECS_DESCRIPTION",
    "ECS_GROUP",
    "FUNCTIONS",
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
