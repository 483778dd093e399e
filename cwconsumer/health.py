"""What ``/healthz`` says, decided from facts the stages report (pure).

Unhealthy (503) when: this process is a standby; events are pending and
nothing was confirmed for ``CWC_STALL_TIMEOUT``; the sink rejects our
credentials; a supervised task is failing. It turns healthy again by itself
when the cause goes away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Health:
    stall_timeout_s: float
    standby: bool = False
    started: bool = False
    stopping: bool = False
    last_confirm_mono: float = field(default_factory=time.monotonic)
    last_confirm_wall: float | None = None
    pending_since_mono: float | None = None
    auth_error: str | None = None
    sink_error: str | None = None
    sink_failures: int = 0
    failed_tasks: dict[str, str] = field(default_factory=dict)
    holder: str | None = None  # who holds the lease while we stand by

    def confirmed(self) -> None:
        self.last_confirm_mono = time.monotonic()
        self.last_confirm_wall = time.time()
        self.auth_error = None
        self.sink_error = None
        self.sink_failures = 0

    def pending(self, events: int) -> None:
        """Called with the number of read-but-unconfirmed events."""
        if events <= 0:
            self.pending_since_mono = None
        elif self.pending_since_mono is None:
            self.pending_since_mono = time.monotonic()

    def task_failed(self, name: str, error: str) -> None:
        self.failed_tasks[name] = error

    def task_ok(self, name: str) -> None:
        self.failed_tasks.pop(name, None)

    def verdict(self, pending_events: int) -> tuple[bool, dict[str, object]]:
        """(healthy, JSON body)."""
        self.pending(pending_events)
        now = time.monotonic()
        reasons: list[str] = []
        if self.standby:
            reasons.append(
                "standby: another cwconsumer run holds the database lease"
                + (f" ({self.holder})" if self.holder else "")
            )
        if self.auth_error:
            reasons.append(f"sink rejects the credentials: {self.auth_error}")
        for name, err in sorted(self.failed_tasks.items()):
            reasons.append(f"task {name} failed: {err}")
        stalled_for = 0.0
        if self.pending_since_mono is not None:
            stalled_for = now - max(self.last_confirm_mono, self.pending_since_mono)
            if stalled_for > self.stall_timeout_s:
                reasons.append(
                    f"stalled: {pending_events} events pending and nothing confirmed "
                    f"for {stalled_for:.0f}s (CWC_STALL_TIMEOUT {self.stall_timeout_s:g}s)"
                    + (f"; sink: {self.sink_error}" if self.sink_error else "")
                )
        body: dict[str, object] = {
            "status": "ok" if not reasons else ("standby" if self.standby else "unhealthy"),
            "role": "standby" if self.standby else "active",
            "pending_events": pending_events,
            "seconds_since_last_confirmation": round(now - self.last_confirm_mono, 1),
            "last_confirmation": self.last_confirm_wall,
        }
        if reasons:
            body["reasons"] = reasons
        if self.sink_error and not reasons:
            body["sink_retrying"] = self.sink_error
        return not reasons, body
