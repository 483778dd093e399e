"""Prometheus metrics (prometheus-client, one registry per process), the lag
figures derived from the stream states, and the log line when a group's lag
crosses a threshold.

Lag, per group (gauges refreshed by :meth:`Metrics.refresh`):

- ``cwconsumer_group_lag_seconds``: now minus the time of the newest event
  delivered for the group. Grows on a quiet group too: it says how fresh
  the delivered data is, not whether anything is waiting.
- ``cwconsumer_group_ingestion_lag_seconds``: how long the oldest event that
  CloudWatch has and the sink has not confirmed has been in CloudWatch
  (now minus its ingestion time), the worst stream of the group; 0 when
  caught up. Exact for events read and in flight (:class:`InFlight`); for
  data CloudWatch reports but nobody has read yet, the lower bound now minus
  the stream's ``lastIngestionTime``. This is the figure to alarm on, and
  the one whose threshold crossings are logged.
- ``cwconsumer_group_behind_seconds``: the newest event time CloudWatch
  reports minus the newest delivered event time (event-time backlog).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cwconsumer import __version__
from cwconsumer.model import Checkpoint, Chunk, Doc, StreamKey, doc_fields
from cwconsumer.streams import State
from cwconsumer.units import format_duration

log = logging.getLogger("cwconsumer.lag")

_NS = "cwconsumer"

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""``Content-Type`` of :meth:`Metrics.render` (Prometheus text format)."""

LAG_THRESHOLDS_S: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0)
"""Ingestion lag levels whose crossing is logged (rising: WARNING; falling
back under half of the level: INFO)."""


class StreamView(Protocol):
    """What the lag figures need from a stream's state
    (:class:`cwconsumer.streams.StreamState` provides it)."""

    @property
    def key(self) -> StreamKey: ...
    @property
    def state(self) -> State: ...
    @property
    def committed(self) -> Checkpoint: ...
    @property
    def pending_events(self) -> int: ...
    @property
    def last_event_seen_ms(self) -> int | None: ...
    @property
    def last_ingestion_seen_ms(self) -> int | None: ...


@dataclass(slots=True)
class GroupLag:
    """Lag figures of one group, as last computed by :meth:`Metrics.refresh`."""

    lag_s: float | None  # None: nothing delivered yet
    ingestion_lag_s: float
    behind_s: float
    worst_stream: str | None  # the stream with the largest ingestion lag


def ingested_ms(doc: Doc) -> int | None:
    """The ``event.ingested`` time of a shipped document, in epoch ms."""
    try:
        event = doc_fields(doc).get("event")
    except ValueError:  # orjson cannot read it back (a lone surrogate escape)
        return None
    text = event.get("ingested") if isinstance(event, dict) else None
    if not isinstance(text, str):
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000 + 0.5)
    except ValueError:
        return None


class InFlight:
    """Per stream: events read and not yet confirmed, oldest first, with the
    ingestion time of the first event of each run; and the newest ingestion
    time read. Fed with every chunk handed to a lane (:meth:`read`) and every
    chunk confirmed (:meth:`confirmed`); a stream's chunks are confirmed in
    the order they were read, so counting suffices (split chunks included)."""

    def __init__(self) -> None:
        self._runs: dict[StreamKey, deque[list[int]]] = {}
        self._newest: dict[StreamKey, int] = {}

    def read(self, chunk: Chunk) -> None:
        """A chunk was read: its events are in flight until confirmed."""
        if not chunk.docs:
            return
        first = ingested_ms(chunk.docs[0])
        last = ingested_ms(chunk.docs[-1]) if len(chunk.docs) > 1 else first
        self._runs.setdefault(chunk.key, deque()).append(
            [len(chunk.docs), -1 if first is None else first]
        )
        if last is not None and last > self._newest.get(chunk.key, -1):
            self._newest[chunk.key] = last

    def confirmed(self, chunks: Iterable[Chunk]) -> None:
        """Chunks the sink confirmed or that were dead-lettered."""
        for chunk in chunks:
            runs = self._runs.get(chunk.key)
            n = len(chunk.docs)
            while n and runs:
                head = runs[0]
                take = min(n, head[0])
                head[0] -= take
                n -= take
                if head[0] == 0:
                    runs.popleft()
            if runs is not None and not runs:
                del self._runs[chunk.key]

    def oldest_ingested_ms(self, key: StreamKey) -> int | None:
        """Ingestion time of the oldest unconfirmed event (None: none in flight
        or no ingestion time known). After part of a run is confirmed the run
        keeps its first event's time: an over-estimate by at most one chunk."""
        for count, first in self._runs.get(key, ()):
            if count and first >= 0:
                return first
        return None

    def newest_read_ms(self, key: StreamKey) -> int | None:
        """Ingestion time of the newest event read from the stream in this process."""
        return self._newest.get(key)

    def forget(self, key: StreamKey) -> None:
        """The stream was forgotten (pruned): drop what is kept of it."""
        self._runs.pop(key, None)
        self._newest.pop(key, None)

    def has_pending(self, key: StreamKey) -> bool:
        """Whether some of the stream's events are read and not confirmed."""
        return bool(self._runs.get(key))


def stream_ingestion_lag_s(st: StreamView, flight: InFlight, now_ms: int) -> float:
    """See the module docstring. 0 for deleted streams and caught-up ones."""
    if st.state is State.DELETED:
        return 0.0
    oldest = flight.oldest_ingested_ms(st.key)
    if oldest is not None:
        return max(0.0, (now_ms - oldest) / 1000)
    seen = st.last_ingestion_seen_ms
    newest_read = flight.newest_read_ms(st.key)
    if seen is not None and newest_read is not None:
        unread = seen > newest_read
    else:
        # Not read in this process yet: compare event times instead.
        last_event = st.last_event_seen_ms
        last_ts = st.committed.last_ts
        unread = last_event is not None and (last_ts is None or last_event > last_ts)
    if unread and seen is not None:
        return max(0.0, (now_ms - seen) / 1000)
    return 0.0


class LagWatch:
    """Logs a group's ingestion lag crossing :data:`LAG_THRESHOLDS_S`: one
    WARNING when it rises past a level, one INFO when it falls back under
    half of it (the gap keeps a lag hovering at a level from flapping)."""

    def __init__(self, thresholds: tuple[float, ...] = LAG_THRESHOLDS_S) -> None:
        self.thresholds = thresholds
        self.levels: dict[str, int] = {}

    def _level(self, lag_s: float) -> int:
        return sum(1 for t in self.thresholds if lag_s >= t)

    def update(self, groups: Mapping[str, GroupLag]) -> None:
        """Log the groups whose lag crossed a level since the last call; forget groups gone."""
        for name in [g for g in self.levels if g not in groups]:
            del self.levels[name]
        for name, figures in groups.items():
            lag = figures.ingestion_lag_s
            old = self.levels.get(name, 0)
            new = self._level(lag)
            extra: dict[str, Any] = {
                "group": name,
                "lag_s": round(lag, 1),
                "stream": figures.worst_stream,
            }
            if new > old:
                self.levels[name] = new
                threshold = self.thresholds[new - 1]
                log.warning(
                    "checkpoint lag above %s",
                    format_duration(threshold),
                    extra=extra | {"threshold_s": threshold},
                )
            elif new < old and lag < self.thresholds[old - 1] / 2:
                self.levels[name] = new
                threshold = self.thresholds[old - 1]
                log.info(
                    "checkpoint lag back under %s",
                    format_duration(threshold),
                    extra=extra | {"threshold_s": threshold},
                )


@dataclass(slots=True)
class Totals:
    """Counter totals since start (for EMF deltas)."""

    events_read: float
    events_shipped: float
    events_retried: float
    events_dead_lettered: float
    shipped_by_group: dict[str, float]


class Metrics:
    """Every metric of the process, in its own registry. The counters and
    histograms are fed by the stages as things happen; the gauges are set by
    :meth:`refresh` (on every scrape and periodically)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.in_flight = InFlight()
        self.lag_watch = LagWatch()
        self.groups: dict[str, GroupLag] = {}
        self.info = Gauge(
            "build_info", "cwconsumer version", ["version"], namespace=_NS, registry=r
        )
        self.info.labels(__version__).set(1)
        self.events_read = Counter(
            "events_read", "Events read from CloudWatch Logs", ["group"], namespace=_NS, registry=r
        )
        self.events_shipped = Counter(
            "events_shipped", "Events confirmed by the sink", ["group"], namespace=_NS, registry=r
        )
        self.events_retried = Counter(
            "events_retried",
            "Events sent to the sink again after a failed attempt (re-delivered)",
            namespace=_NS,
            registry=r,
        )
        self.events_failed = Counter(
            "events_failed",
            "Events the sink refused for good (dead-lettered)",
            ["group"],
            namespace=_NS,
            registry=r,
        )
        self.sink_records_rejected = Counter(
            "sink_records_rejected",
            "Records a sink accepted the request of but rejected without saying which "
            "(OTLP partial success): counted, not dead-lettered, never retried",
            namespace=_NS,
            registry=r,
        )
        self.batches = Counter(
            "batches", "Batches by final outcome", ["outcome"], namespace=_NS, registry=r
        )
        self.batch_events = Histogram(
            "batch_events",
            "Events per delivered batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
            namespace=_NS,
            registry=r,
        )
        self.batch_bytes = Histogram(
            "batch_bytes",
            "Approximate bytes per delivered batch",
            buckets=(1e3, 1e4, 1e5, 5e5, 1e6, 5e6, 1e7),
            namespace=_NS,
            registry=r,
        )
        self.sink_latency = Histogram(
            "sink_request_seconds",
            "Sink request latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            namespace=_NS,
            registry=r,
        )
        self.sink_responses = Counter(
            "sink_responses",
            "Sink answers by HTTP status (0: no answer)",
            ["status"],
            namespace=_NS,
            registry=r,
        )
        self.aws_calls = Counter(
            "aws_calls",
            "CloudWatch Logs calls by operation and outcome (ok, throttled, error)",
            ["operation", "outcome"],
            namespace=_NS,
            registry=r,
        )
        self.aws_throttles = Counter(
            "aws_throttles",
            "CloudWatch Logs throttling answers",
            ["operation"],
            namespace=_NS,
            registry=r,
        )
        self.aws_rate = Gauge(
            "aws_rate_per_second",
            "Current adaptive call rate",
            ["operation"],
            namespace=_NS,
            registry=r,
        )
        self.buffer_events = Gauge(
            "buffer_events", "Events read and not yet confirmed", namespace=_NS, registry=r
        )
        self.buffer_bytes = Gauge(
            "buffer_bytes", "Bytes read and not yet confirmed", namespace=_NS, registry=r
        )
        self.group_lag = Gauge(
            "group_lag_seconds",
            "Now minus the newest delivered event time, per group",
            ["group"],
            namespace=_NS,
            registry=r,
        )
        self.group_ingestion_lag = Gauge(
            "group_ingestion_lag_seconds",
            "Age in CloudWatch of the oldest event not yet confirmed by the sink, "
            "worst stream of the group (0: caught up)",
            ["group"],
            namespace=_NS,
            registry=r,
        )
        self.group_behind = Gauge(
            "group_behind_seconds",
            "Newest event time reported by CloudWatch minus newest delivered, per group",
            ["group"],
            namespace=_NS,
            registry=r,
        )
        self.streams = Gauge("streams", "Streams by state", ["state"], namespace=_NS, registry=r)
        self.last_delivery = Gauge(
            "last_delivery_timestamp_seconds",
            "Unix time of the last confirmed delivery",
            namespace=_NS,
            registry=r,
        )
        self.standby = Gauge(
            "standby", "1 while this process waits as a standby", namespace=_NS, registry=r
        )
        self.healthy = Gauge(
            "healthy", "1 when /healthz answers 200, else 0", namespace=_NS, registry=r
        )
        self.delivery_stalled = Gauge(
            "delivery_stalled",
            "1 while events are pending and none was confirmed for CWC_STALL_TIMEOUT",
            namespace=_NS,
            registry=r,
        )

    def observe_call(self, operation: str, outcome: str) -> None:
        """``LogsClient`` observer: one AWS call ended with ``outcome``."""
        self.aws_calls.labels(operation, outcome).inc()
        if outcome == "throttled":
            self.aws_throttles.labels(operation).inc()

    def refresh(
        self,
        streams: Iterable[StreamView],
        *,
        buffer_events: int,
        buffer_bytes: int,
        rates: Mapping[str, float],
        healthy: bool,
        now_ms: int | None = None,
        counts: Mapping[tuple[str, State], int] | None = None,
        newest: Mapping[str, int] | None = None,
    ) -> None:
        """Set every gauge from the current state, forget groups that are
        gone, and log lag threshold crossings.

        With ``counts`` (streams per group and state) and ``newest`` (newest
        delivered timestamp per group) kept by the registry, ``streams`` need
        only hold the streams neither idle nor deleted: a scrape then costs
        what is awake, not every stream ever seen."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        self.buffer_events.set(buffer_events)
        self.buffer_bytes.set(buffer_bytes)
        self.healthy.set(1 if healthy else 0)
        for op, rate in rates.items():
            self.aws_rate.labels(op).set(rate)
        per_state = dict.fromkeys(State, 0)
        newest_by_group: dict[str, int] = {}
        live: set[str] = set()
        ingestion: dict[str, tuple[float, str | None]] = {}
        behind: dict[str, float] = {}
        deleted, idle, flight = State.DELETED, State.IDLE, self.in_flight
        # Hot with many streams (a scrape and every REFRESH_INTERVAL_S): idle
        # streams are caught up and quiet by definition, so they only count.
        given = counts is not None
        if counts is not None:
            per_state = dict.fromkeys(State, 0)
            for (g, state), k in counts.items():
                per_state[state] += k
                if state is not deleted and k > 0:
                    live.add(g)
            newest_by_group = dict(newest or {})
        for st in streams:
            state = st.state
            g = st.key.group
            last_ts = st.committed.last_ts
            if not given:
                per_state[state] += 1
                if last_ts is not None and last_ts > newest_by_group.get(g, -1):
                    newest_by_group[g] = last_ts
            if state is deleted:
                continue
            live.add(g)
            if state is idle:
                continue
            lag = stream_ingestion_lag_s(st, flight, now)
            if lag > 0 and (g not in ingestion or lag > ingestion[g][0]):
                ingestion[g] = (lag, st.key.stream)
            seen = st.last_event_seen_ms
            if seen is not None and last_ts is not None and seen > last_ts:
                gap = (seen - last_ts) / 1000
                if gap > behind.get(g, 0.0):
                    behind[g] = gap
        for state, k in per_state.items():
            self.streams.labels(state.value).set(k)
        groups: dict[str, GroupLag] = {}
        for g in sorted(live):
            last = newest_by_group.get(g)
            lag_s = None if last is None else max(0.0, (now - last) / 1000)
            ing, worst = ingestion.get(g, (0.0, None))
            groups[g] = GroupLag(lag_s, ing, behind.get(g, 0.0), worst)
        for gone in set(self.groups) - set(groups):
            for gauge in (self.group_lag, self.group_ingestion_lag, self.group_behind):
                _remove(gauge, gone)
        for g, figures in groups.items():
            if figures.lag_s is None:
                _remove(self.group_lag, g)
            else:
                self.group_lag.labels(g).set(round(figures.lag_s, 3))
            self.group_ingestion_lag.labels(g).set(round(figures.ingestion_lag_s, 3))
            self.group_behind.labels(g).set(round(figures.behind_s, 3))
        self.groups = groups
        self.lag_watch.update(groups)

    def totals(self) -> Totals:
        """Counter totals since start (summed over their labels), and events shipped per group."""

        def total(counter: Counter) -> float:
            return sum(
                s.value
                for metric in counter.collect()
                for s in metric.samples
                if s.name.endswith("_total")
            )

        by_group: dict[str, float] = {}
        for metric in self.events_shipped.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    by_group[s.labels["group"]] = s.value
        return Totals(
            events_read=total(self.events_read),
            events_shipped=total(self.events_shipped),
            events_retried=total(self.events_retried),
            events_dead_lettered=total(self.events_failed),
            shipped_by_group=by_group,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return bytes(generate_latest(self.registry))


def _remove(gauge: Gauge, label: str) -> None:
    try:
        gauge.remove(label)
    except KeyError:
        pass
