"""Prometheus metrics (prometheus-client, one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_NS = "cwconsumer"


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events_read = Counter(
            "events_read", "Events read from CloudWatch Logs", ["group"], namespace=_NS, registry=r
        )
        self.events_shipped = Counter(
            "events_shipped", "Events confirmed by the sink", ["group"], namespace=_NS, registry=r
        )
        self.events_retried = Counter(
            "events_retried", "Events sent again after a failed attempt", namespace=_NS, registry=r
        )
        self.events_failed = Counter(
            "events_failed",
            "Events the sink refused for good (dead-lettered)",
            ["group"],
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
            "aws_calls", "CloudWatch Logs calls", ["operation", "outcome"], namespace=_NS, registry=r
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
        self.group_behind = Gauge(
            "group_behind_seconds",
            "Newest event time reported by CloudWatch minus newest delivered, per group",
            ["group"],
            namespace=_NS,
            registry=r,
        )
        self.streams = Gauge(
            "streams", "Streams by state", ["state"], namespace=_NS, registry=r
        )
        self.last_delivery = Gauge(
            "last_delivery_timestamp_seconds",
            "Unix time of the last confirmed delivery",
            namespace=_NS,
            registry=r,
        )
        self.standby = Gauge(
            "standby", "1 while this process waits as a standby", namespace=_NS, registry=r
        )

    def observe_call(self, operation: str, outcome: str) -> None:
        self.aws_calls.labels(operation, outcome).inc()
        if outcome == "throttled":
            self.aws_throttles.labels(operation).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
