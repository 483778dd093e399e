"""``cwconsumer demo``'s tour: its phases, in order (the package docstring has the picture).

Set up (moto filled with an hour of logs, the receiver), start the consumer,
ship until about half is delivered and SIGKILL it (a crash), show its
checkpoints as ``cwconsumer status`` does, add events "while it was down",
start it again and watch it resume from the checkpoints, SIGTERM it once caught
up (exit 0), then check that every event arrived exactly once by ``event.id``,
in stream order, and print a summary and the Lambda report.

Each phase raises :class:`~cwconsumer.demo.settings.DemoFailed` when a check
fails; everything a phase starts is registered on the caller's exit stack.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from cwconsumer.commands.status import collect_status, render_status
from cwconsumer.demo.consumer import Consumer, consumer_env
from cwconsumer.demo.data import ECS_DESCRIPTION, ECS_GROUP, FUNCTIONS, DemoLogs, lambda_group
from cwconsumer.demo.receiver import Receiver
from cwconsumer.demo.report import compare, lambda_report
from cwconsumer.demo.screen import Out, thousands
from cwconsumer.demo.settings import (
    CONSUMER_SETTINGS,
    CRASH_AT,
    DEFAULT_EVENTS,
    LATE_MIN,
    LATE_SHARE,
    LEASE_TTL,
    MAX_PER_STREAM,
    PHASE_TIMEOUT_S,
    POLL_S,
    QUICK_EVENTS,
    SEED,
    SIGTERM_WAIT_S,
    DemoFailed,
)
from cwconsumer.demo.sources import StreamLog
from cwconsumer.demo.standin import CloudWatch

__all__ = ["Plan", "Tour", "plan_of"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How big the tour is: the first wave's events, and ``--events`` if given."""

    first: int
    per_stream: int | None


def plan_of(args: argparse.Namespace) -> Plan:
    """The plan for ``--quick`` / ``--events N``; :class:`DemoFailed` on a bad count."""
    per_stream: int | None = getattr(args, "events", None)
    if per_stream is not None and not 1 <= per_stream <= MAX_PER_STREAM:
        raise DemoFailed(f"--events: between 1 and {thousands(MAX_PER_STREAM)} events per stream")
    first = QUICK_EVENTS if getattr(args, "quick", False) else DEFAULT_EVENTS
    return Plan(first, per_stream)


@dataclass(slots=True)
class _Written:
    """Everything put into CloudWatch Logs, per stream, in stream order."""

    streams: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, logs: Sequence[StreamLog]) -> int:
        """Record a wave; returns how many of its streams are new."""
        new = 0
        for log in logs:
            key = (log.group, log.stream)
            new += key not in self.streams
            self.streams.setdefault(key, []).extend(log.events)
        return new

    def by_group(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (group, _), events in self.streams.items():
            out[group] += len(events)
        return out

    @property
    def total(self) -> int:
        return sum(len(events) for events in self.streams.values())


def _group_order() -> list[str]:
    return [lambda_group(f.name) for f in FUNCTIONS] + [ECS_GROUP]


@dataclass(slots=True)
class _Crash:
    """What the tour learnt at the crash."""

    received: int = 0
    """Unique events at the receiver once the crashed run's last requests settled."""
    checkpointed: int = 0
    """Events the checkpoints cover (``delivered`` in ``cwconsumer status``)."""

    @property
    def in_flight(self) -> int:
        return max(0, self.received - self.checkpointed)


class Tour:
    """The demo's phases, in order; see the module docstring."""

    def __init__(self, out: Out, plan: Plan, workdir: Path, stack: contextlib.ExitStack) -> None:
        self.out = out
        self.plan = plan
        self.workdir = workdir
        self.stack = stack
        self.db_path = workdir / "state.db"
        self.logs = DemoLogs(SEED, int(time.time() * 1000) - 50 * 60_000)
        self.written = _Written()
        self.cloudwatch = CloudWatch()
        self.receiver = Receiver()
        self.consumer: Consumer | None = None
        self.crash = _Crash()
        self.started = time.monotonic()
        self.shipping_s = 0.0
        self.timeout_s = PHASE_TIMEOUT_S

    def run(self) -> None:
        """Every phase in order; :class:`DemoFailed` when a check fails."""
        self._set_up()
        consumer = self._start_consumer()
        self._first_run(consumer)
        self._show_checkpoints()
        self._restart(consumer)
        self._summary()

    # -- phases -----------------------------------------------------------------------

    def _set_up(self) -> None:
        out = self.out
        out.line(
            f"{out.bold('cwconsumer demo')}: the whole pipeline on this machine, "
            "no AWS account needed"
        )
        out.line()
        self.cloudwatch.start()
        self.stack.callback(self.cloudwatch.stop)
        first = self.logs.generate(self.plan.first, per_stream=self.plan.per_stream)
        self.cloudwatch.put(first)
        self.written.add(first)
        self.timeout_s = PHASE_TIMEOUT_S + self.written.total / 2000
        out.line(
            f"{out.bold('1.')} CloudWatch Logs stand-in (moto) at {self.cloudwatch.url}, "
            "with an hour of logs:"
        )
        counts = self.written.by_group()
        streams = Counter(group for group, _ in self.written.streams)
        about = {lambda_group(f.name): f.description for f in FUNCTIONS}
        about[ECS_GROUP] = ECS_DESCRIPTION
        for group in _group_order():
            out.line(
                f"     {group:<28} {streams[group]:>3} streams {thousands(counts[group]):>8} events  "
                + out.dim(about[group])
            )
        self.receiver.start()
        self.stack.callback(self.receiver.stop)
        out.line(
            f"{out.bold('2.')} HTTP receiver at {self.receiver.url}, standing in for "
            "Logstash or Elasticsearch"
        )

    def _start_consumer(self) -> Consumer:
        out = self.out
        env = consumer_env(self.cloudwatch.url, self.receiver.url, self.db_path)
        consumer = Consumer(env, self.workdir / "consumer.log", self.workdir)
        self.consumer = consumer
        self.stack.callback(consumer.cleanup)
        pid = consumer.start()
        out.line(f"{out.bold('3.')} cwconsumer run (pid {pid}), configured by its environment:")
        prefixes = CONSUMER_SETTINGS["CWC_LOG_GROUP_PREFIXES"]
        out.line(
            out.dim(f"     CWC_LOG_GROUP_PREFIXES={prefixes}  CWC_SINK_URL={self.receiver.url}")
        )
        out.line(
            out.dim(f"     AWS_ENDPOINT_URL={self.cloudwatch.url}  CWC_DB_PATH={self.db_path}")
        )
        out.line()
        return consumer

    def _first_run(self, consumer: Consumer) -> None:
        out = self.out
        total = self.written.total
        out.line(
            f"{out.bold('Shipping')} {thousands(total)} events; the consumer will crash half-way."
        )
        self.receiver.trip_at = math.ceil(total * CRASH_AT)
        first_request = self._progress(lambda got: self.receiver.tripped.is_set())
        consumer.kill()
        self.receiver.release.set()
        self.shipping_s += time.monotonic() - first_request
        self.receiver.settle()
        received = sum(self.receiver.counts()[0].values())
        crash = out.bad("✗ Crash!" if out.unicode else "CRASH!")
        out.line(
            f"{crash} SIGKILL to pid {consumer.pid} with {thousands(received)} of {thousands(total)} events "
            "at the receiver, while it"
        )
        out.line("  waited for the answer to a batch: no chance to save a checkpoint for it.")
        out.line()

    def _show_checkpoints(self) -> None:
        out = self.out
        status = anyio.run(collect_status, str(self.db_path))
        self.crash.checkpointed = sum(int(g["delivered"]) for g in status["groups"])
        out.line(
            f"{out.bold('Checkpoints')} after the crash, as {out.bold('cwconsumer status')} "
            "shows them:"
        )
        text = anyio.run(_render_status, str(self.db_path)).splitlines()
        for line in text[1:]:  # the first line names the database
            if line.strip():
                out.line("   " + line)
        received = sum(self.receiver.counts()[0].values())
        in_flight = max(0, received - self.crash.checkpointed)
        out.line(
            f"   The receiver has {thousands(received)} events and the checkpoints cover "
            f"{thousands(self.crash.checkpointed)}."
        )
        if in_flight:
            out.line(
                f"   The {thousands(in_flight)} in between were in flight (received, not confirmed) "
                "at the crash: they will come again."
            )
        else:
            out.line("   Nothing was in flight at the crash: nothing will come twice.")
        out.line()

    def _restart(self, consumer: Consumer) -> None:
        out = self.out
        late = self.logs.generate(
            max(LATE_MIN, round(self.written.total * LATE_SHARE)), window_ms=3 * 60_000
        )
        self.cloudwatch.put(late)
        new_streams = self.written.add(late)
        late_events = sum(len(log.events) for log in late)
        out.line(
            f"While it was down the services kept logging: +{thousands(late_events)} events "
            f"({new_streams} new streams, more in {len(late) - new_streams} others)."
        )
        # Every request of the crashed run has been handled by now.
        self.receiver.settle()
        self.crash.received = sum(self.receiver.counts()[0].values())
        restart_t = time.monotonic()
        pid = consumer.start()
        out.line(
            f"{out.bold('Restart')}: cwconsumer run (pid {pid}) waits as a standby until the "
            "dead run's lease expires"
        )
        out.line(
            f"(CWC_LEASE_TTL, {LEASE_TTL} here and 10s by default), then resumes every stream "
            "from its checkpoint."
        )
        total = self.written.total
        resumed_t = self._progress(lambda got: sum(got.values()) >= total)
        self.shipping_s += time.monotonic() - resumed_t
        _, redelivered, _ = self.receiver.counts()
        fresh = total - self.crash.received
        out.line(
            f"{out.mark(True)} Resumed {resumed_t - restart_t:.1f} s after the restart and "
            f"caught up: {thousands(fresh)} new events and {thousands(redelivered)} sent again,"
        )
        out.line(f"  not all {thousands(total)} from the beginning.")
        rc = consumer.terminate(SIGTERM_WAIT_S)
        self.receiver.settle()
        if rc != 0:
            raise DemoFailed(f"after SIGTERM the consumer exited with {rc}, not 0")
        status = anyio.run(collect_status, str(self.db_path))
        covered = sum(int(g["delivered"]) for g in status["groups"])
        if covered != total:
            raise DemoFailed(
                f"after SIGTERM the checkpoints cover {thousands(covered)} events, not {thousands(total)}"
            )
        out.line(
            f"{out.mark(True)} SIGTERM: exit 0. The checkpoints cover all {thousands(total)} events: "
            "a start now re-sends nothing."
        )
        out.line()

    def _progress(self, finished: Callable[[Counter[str]], bool]) -> float:
        """Draw per-group progress until ``finished(unique events per group)``.

        Returns when the first request of this phase reached the receiver
        (``time.monotonic()``), to tell start-up and standby from shipping.
        """
        assert self.consumer is not None
        out = self.out
        _, _, requests_before = self.receiver.counts()
        first_request: float | None = None
        want = self.written.by_group()
        goal = sum(want.values())
        deadline = time.monotonic() + self.timeout_s
        next_plain = time.monotonic() + 1.0
        last_plain = sum(self.receiver.counts()[0].values())
        while True:
            got, _, requests = self.receiver.counts()
            if first_request is None and requests > requests_before:
                first_request = time.monotonic()
            done = finished(got)
            lines = [
                f"   {group:<28} {out.bar(got[group], want[group])} "
                f"{thousands(got[group]):>8} / {thousands(want[group])}"
                for group in _group_order()
            ]
            out.live(lines)
            if done:
                break
            now = time.monotonic()
            if not out.tty and now >= next_plain:
                next_plain = now + 1.0
                n = sum(got.values())
                if n != last_plain:
                    last_plain = n
                    out.line(
                        f"   … {thousands(n)} / {thousands(goal)} events at the receiver ({100 * n // goal}%)"
                    )
            self.consumer.check_alive()
            if now > deadline:
                raise DemoFailed(
                    f"stuck: {thousands(sum(got.values()))} of {thousands(goal)} events arrived "
                    f"in {self.timeout_s:.0f} s"
                )
            if self.receiver.tripped.is_set():
                time.sleep(POLL_S)
            else:  # wake up at once when the crash trips
                self.receiver.tripped.wait(POLL_S)
        if not out.tty:
            for text in lines:
                out.line(text)
        return time.monotonic() if first_request is None else first_request

    # -- results ----------------------------------------------------------------------

    def _summary(self) -> None:
        out = self.out
        with self.receiver.lock:
            tally = self.receiver.tally
            arrived = {key: list(events) for key, events in tally.streams.items()}
            redelivered, malformed, errors = tally.redelivered, tally.malformed, tally.errors
            reports = {group: list(rows) for group, rows in tally.reports.items()}
        total = self.written.total
        lost, extra, disorder = compare(self.written.streams, arrived)
        unique = sum(len(events) for events in arrived.values())
        in_flight = self.crash.in_flight
        invocations = Counter(inv.function for inv in self.logs.invocations)
        parsed = {f.name: len(reports.get(lambda_group(f.name), [])) for f in FUNCTIONS}
        problems: list[str] = []
        if lost:
            problems.append(f"{thousands(lost)} events never arrived")
        if extra:
            problems.append(f"{thousands(extra)} documents arrived that were never written")
        if disorder:
            problems.append(f"{disorder} streams arrived out of order")
        if malformed:
            problems.append(f"{thousands(malformed)} lines at the receiver were not documents")
        if errors:
            problems.append(f"the receiver failed on {errors} requests")
        if redelivered > in_flight:
            problems.append(
                f"{thousands(redelivered)} events sent twice, more than the {thousands(in_flight)} in flight"
            )
        for name, count in parsed.items():
            if count != invocations[name]:
                problems.append(
                    f"{name}: {count} REPORT lines parsed for {invocations[name]} invocations"
                )
        groups = len({group for group, _ in self.written.streams})
        arrived_ok = not (lost or extra or disorder or malformed)
        parsed_ok = parsed == {f.name: invocations[f.name] for f in FUNCTIONS}
        rate = (total + redelivered) / max(0.001, self.shipping_s)
        pad = " " * 37
        out.line(out.bold("Summary"))
        out.line(
            f"   written to CloudWatch  {thousands(total):>9}  events in {len(self.written.streams)} "
            f"streams of {groups} groups"
        )
        out.line(
            f"   at the receiver        {thousands(unique):>9}  by event.id, every stream in order   "
            f"{out.mark(arrived_ok)} lost: {thousands(lost)}"
        )
        out.line(
            f"   sent twice             {thousands(redelivered):>9}  no more than was in flight at the "
            f"crash ({thousands(in_flight)}),"
        )
        out.line(f"{pad}with the same event.id: a sink keyed on it (Elasticsearch")
        out.line(f"{pad}_id) overwrites them, no duplicates")
        out.line(
            f"   Lambda REPORT lines    {thousands(sum(parsed.values())):>9}  parsed, one per "
            f"invocation   {out.mark(parsed_ok)}"
        )
        out.line(
            f"   throughput             {thousands(round(rate)):>9}  events/s "
            + out.dim("(moto and the receiver run on this machine too)")
        )
        out.line()
        lambda_report(out, reports)
        out.line(
            out.dim(
                f"Done in {time.monotonic() - self.started:.0f} s. On your account: "
                "CWC_LOG_GROUP_PREFIXES=/aws/lambda/ \\"
            )
        )
        out.line(
            out.dim(
                "  CWC_SINK_URL=http://logstash:8080 cwconsumer run   "
                "(cwconsumer check tests the setup first)"
            )
        )
        if problems:
            raise DemoFailed("; ".join(problems))


async def _render_status(path: str) -> str:
    return await render_status(path, as_json=False, streams=False)
