"""What ``/healthz`` says, decided from facts the stages report (pure).

Unhealthy (503) when:

- this process is a standby (another ``run`` holds the database lease) —
  reported with ``status: "standby"``, distinct from ``"unhealthy"``, so a
  health check can accept it (``/healthz?standby=ok``) or not;
- events are pending and nothing was confirmed for ``CWC_STALL_TIMEOUT``
  ("stalled"), whatever the reason (sink down, hanging, refusing);
- the sink rejects our credentials (401/403), at once: retrying will not fix it;
- the sink refuses the requests themselves (a 404 for a wrong path, or every
  event of a batch refused with the same answer), at once: nothing is
  dead-lettered for that, the lanes retry slowly until the sink is fixed;
- the checkpoint database refuses a commit (locked, full, I/O error) while
  the lane retries it;
- CloudWatch Logs calls of one kind have all failed for longer than
  ``CWC_STALL_TIMEOUT`` (nothing read means nothing pending, so the stall
  rule alone would never see an unreachable CloudWatch), counting calls
  still waiting for an answer as failing: a call in flight keeps its
  operation's failures, and one waiting longer than the timeout is a
  reason of its own (a proxy that accepts and never answers);
- a supervised task failed within the last :data:`TASK_FAILURE_WINDOW_S`
  (it is restarted; one that keeps failing keeps the verdict at 503);
- AWS (or STS, for ``CWC_AWS_ROLE_ARN``) refuses our credentials, or the
  account the credentials read from is not known yet.

A group whose log class GetLogEvents refuses is listed under
``groups_not_read`` without failing the check: a restart would not make it
readable, and would stall every other group.

Every condition clears by itself when its cause goes away: a confirmed
delivery clears "stalled" and the credential error, a task failure ages out
or clears at once when the restarted task completes a cycle (discovery,
group-info report that).

"Pending since" must be exact, not sampled when someone asks: the memory
budget calls :meth:`Health.pending` whenever the number of unconfirmed
events goes from zero to more or back to zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

TASK_FAILURE_WINDOW_S = 120.0
"""A task failure counts against health this long. Failed tasks are restarted
after at most 60 s, so one that keeps failing is never out of the window."""


@dataclass(slots=True)
class TaskFailure:
    """A supervised task's last failure: its error, when (monotonic), how many in a row."""

    error: str
    at_mono: float
    count: int = 1


@dataclass(slots=True)
class Health:
    """Facts reported by the stages; :meth:`verdict` turns them into an answer.

    Not thread-safe: every caller runs on the service's event loop.
    """

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
    failed_tasks: dict[str, TaskFailure] = field(default_factory=dict)
    holder: str | None = None  # who holds the lease while we stand by
    aws_denied: dict[str, float] = field(default_factory=dict)  # operation -> last denial
    role_arn: str | None = None  # CWC_AWS_ROLE_ARN, named when STS refuses it
    account_error: str | None = None  # the account (part of event.id) is not known yet
    groups_refused: dict[str, str] = field(default_factory=dict)  # group -> why (not failing)
    sink_refusing: str | None = None  # the sink refuses requests, not events
    store_error: str | None = None  # a checkpoint commit is being retried
    # operation -> (first failure since its last success, last failure)
    aws_failing: dict[str, tuple[float, float]] = field(default_factory=dict)
    # operation -> start times of its calls now waiting for an answer (at
    # most the client's connections: every call ends, by its timeout at worst)
    aws_in_flight: dict[str, list[float]] = field(default_factory=dict)

    def aws_call_started(self, operation: str) -> float:
        """A CloudWatch Logs call left; returns its start for :meth:`aws_call_ended`."""
        now = time.monotonic()
        self.aws_in_flight.setdefault(operation, []).append(now)
        return now

    def aws_call_ended(self, operation: str, started: float) -> None:
        """The call started at ``started`` ended, however (its outcome comes
        through :meth:`aws_call`)."""
        starts = self.aws_in_flight.get(operation)
        if starts is not None and started in starts:
            starts.remove(started)
            if not starts:
                del self.aws_in_flight[operation]

    def aws_call(self, operation: str, outcome: str) -> None:
        """Every CloudWatch Logs call's outcome. AWS refusing our credentials or
        permissions keeps a reason in /healthz until TASK_FAILURE_WINDOW_S after
        the last refusal: up but not reading is not healthy. Any other failure
        counts from the first one after the operation's last success."""
        now = time.monotonic()
        if outcome == "ok":
            self.aws_failing.pop(operation, None)
            return
        if outcome == "denied":
            self.aws_denied[operation] = now
        first, _ = self.aws_failing.get(operation, (now, now))
        self.aws_failing[operation] = (first, now)

    def confirmed(self) -> None:
        """The sink confirmed a batch (every lane calls this after a commit)."""
        self.last_confirm_mono = time.monotonic()
        self.last_confirm_wall = time.time()
        self.auth_error = None
        self.sink_error = None
        self.sink_failures = 0

    def pending(self, events: int) -> None:
        """The number of read-but-unconfirmed events changed to ``events``
        (at least when it went from zero to more or back to zero)."""
        if events <= 0:
            self.pending_since_mono = None
        elif self.pending_since_mono is None:
            self.pending_since_mono = time.monotonic()

    def task_failed(self, name: str, error: str) -> None:
        """A supervised task raised; it will be restarted after a back-off."""
        before = self.failed_tasks.get(name)
        count = before.count + 1 if before is not None else 1
        self.failed_tasks[name] = TaskFailure(error, time.monotonic(), count)

    def task_ok(self, name: str) -> None:
        """A task proved it works again (e.g. a discovery cycle completed)."""
        self.failed_tasks.pop(name, None)

    def stalled_for(self, now_mono: float | None = None) -> float:
        """Seconds with events pending and no confirmation (0 when none pending)."""
        if self.pending_since_mono is None:
            return 0.0
        now = time.monotonic() if now_mono is None else now_mono
        return max(0.0, now - max(self.last_confirm_mono, self.pending_since_mono))

    def verdict(
        self, pending_events: int, *, standby_ok: bool = False
    ) -> tuple[bool, dict[str, object]]:
        """``(healthy, JSON body)``. ``standby_ok``: a standby counts as healthy
        (its body still says ``"status": "standby"``)."""
        self.pending(pending_events)
        now = time.monotonic()
        for name, failure in list(self.failed_tasks.items()):
            if now - failure.at_mono > TASK_FAILURE_WINDOW_S:
                del self.failed_tasks[name]
        reasons: list[str] = []
        for op, at in sorted(self.aws_denied.items()):
            if now - at > TASK_FAILURE_WINDOW_S:
                del self.aws_denied[op]
            elif op == "AssumeRole":
                reasons.append(
                    f"STS refuses AssumeRole of {self.role_arn} ({now - at:.0f}s ago): check "
                    "the role's trust policy (principal, external id) and the task role's "
                    "sts:AssumeRole on it"
                )
            else:
                reasons.append(
                    f"AWS refuses {op} ({now - at:.0f}s ago): check the credentials and the "
                    "task role's logs:DescribeLogGroups/DescribeLogStreams/GetLogEvents"
                )
        if self.account_error:
            reasons.append(f"AWS account not known yet (needed for event.id): {self.account_error}")
        if self.auth_error:
            reasons.append(f"sink rejects the credentials: {self.auth_error}")
        if self.sink_refusing:
            reasons.append(
                "sink refuses the requests, not single events (nothing dead-lettered; "
                f"retrying slowly; check CWC_SINK_URL and the sink): {self.sink_refusing}"
            )
        if self.store_error:
            reasons.append(f"checkpoint database refuses a commit (retrying): {self.store_error}")
        for op, (first, last) in sorted(self.aws_failing.items()):
            failing = now - first
            if now - last > self.stall_timeout_s and not self.aws_in_flight.get(op):
                del self.aws_failing[op]  # not called since: nothing to say
            elif failing > self.stall_timeout_s:
                reasons.append(
                    f"CloudWatch Logs {op}: every call failed for {failing:.0f}s "
                    f"(CWC_STALL_TIMEOUT {self.stall_timeout_s:g}s)"
                )
        for op, starts in sorted(self.aws_in_flight.items()):
            waiting = now - min(starts)  # never empty: an empty list is removed
            if op not in self.aws_failing and waiting > self.stall_timeout_s:
                reasons.append(
                    f"CloudWatch Logs {op}: no answer for {waiting:.0f}s "
                    f"(CWC_STALL_TIMEOUT {self.stall_timeout_s:g}s)"
                )
        for name, failure in sorted(self.failed_tasks.items()):
            reasons.append(
                f"task {name} failed {now - failure.at_mono:.0f}s ago "
                f"({failure.count} time(s); restarted): {failure.error}"
            )
        stalled = self.stalled_for(now)
        if stalled > self.stall_timeout_s:
            reasons.append(
                f"stalled: {pending_events} events pending and nothing confirmed "
                f"for {stalled:.0f}s (CWC_STALL_TIMEOUT {self.stall_timeout_s:g}s)"
                + (f"; sink: {self.sink_error}" if self.sink_error else "")
            )
        if self.standby:
            status = "standby"
            reasons.insert(
                0,
                "standby: another cwconsumer run holds the database lease"
                + (f" ({self.holder})" if self.holder else "")
                + "; taking over when it stops",
            )
        elif reasons:
            status = "unhealthy"
        elif self.stopping:
            status = "stopping"
        elif not self.started:
            status = "starting"
        else:
            status = "ok"
        healthy = not reasons or (self.standby and standby_ok and len(reasons) == 1)
        body: dict[str, object] = {
            "status": status,
            "role": "standby" if self.standby else "active",
            "pending_events": pending_events,
            "stalled_s": round(stalled, 1),
            "seconds_since_last_confirmation": round(now - self.last_confirm_mono, 1),
            "last_confirmation": self.last_confirm_wall,
        }
        if reasons:
            body["reasons"] = reasons
        if self.sink_error:
            body["sink_retrying"] = {"error": self.sink_error, "attempt": self.sink_failures}
        if self.groups_refused:
            # Not failing: restarting would not make the group readable, and
            # would stall every other group.
            body["groups_not_read"] = dict(sorted(self.groups_refused.items()))
        return healthy, body
