"""What ``cwconsumer demo`` is set to, and its one exception (pure: constants only).

Every size, wait and setting of the tour is here, so that what the demo does
can be read (and changed) in one place: how many events, when the crash comes,
how long a phase may take, and the environment the consumer runs with.
"""

from __future__ import annotations

from typing import Final

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
"""``cwconsumer demo``'s exit codes: all checks passed; a check failed or the tour was
interrupted; bad usage."""
REGION: Final = "us-east-1"
"""Of the stand-in, and of the consumer pointed at it."""
SEED: Final = 20261121
"""Of the generated logs: every demo writes the same kind of hour."""

DEFAULT_EVENTS: Final = 30_000
QUICK_EVENTS: Final = 5_000
LATE_SHARE: Final = 0.15
"""Events added while the consumer is down, as a part of the first wave."""
LATE_MIN: Final = 50
MAX_PER_STREAM: Final = 20_000
"""``--events`` cap: more would put Lambda timestamps past what CloudWatch accepts."""
CRASH_AT: Final = 0.5
"""The crash comes once this part of the first wave has arrived."""
LEASE_TTL: Final = "2s"
"""Short, so the restarted consumer takes over from the killed one quickly."""
PHASE_TIMEOUT_S: Final = 60.0
"""Longest wait for a phase, plus 1 s per 2,000 events."""
SIGTERM_WAIT_S: Final = 30.0
POLL_S: Final = 0.1
TRIP_HOLD_S: Final = 5.0
"""Longest time the batch that trips the crash waits for it (the kill comes at once)."""
TAIL_LINES: Final = 25
"""The consumer's last log lines shown when the demo fails."""

# The demo's settings for `cwconsumer run`; everything else is the default.
CONSUMER_SETTINGS: Final = {
    "CWC_LOG_GROUP_PREFIXES": "/aws/lambda/,/ecs/",
    "CWC_POLL_INTERVAL": "1s",
    "CWC_DISCOVERY_INTERVAL": "2s",
    "CWC_BATCH_MAX_WAIT": "250ms",
    "CWC_API_RATE": "50",
    # Small batches and buffer: many batches in flight, streams interleaved.
    "CWC_BATCH_MAX_EVENTS": "500",
    "CWC_BUFFER_MAX_EVENTS": "4000",
    "CWC_LEASE_HEARTBEAT": "500ms",
    "CWC_LEASE_TTL": LEASE_TTL,
    "CWC_ADMIN_ADDR": "off",
    "CWC_LOG_LEVEL": "INFO",
    "CWC_LOG_FORMAT": "text",
}


class DemoFailed(Exception):
    """The tour could not finish or a check failed; the message says which."""
