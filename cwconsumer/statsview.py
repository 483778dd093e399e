"""The ``/stats`` JSON document of a ``run`` (served by :mod:`cwconsumer.admin`).

Built from the figures the stages keep — the registry's per-group totals,
the health verdict, the budget, the lanes' queues, the schedule's counters,
discovery's pages — handed in by the service, so this module knows no stage
itself. Cheap with 10^6 streams: per-group figures are aggregates kept as
events move; per-stream detail is paged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cwconsumer.flow import Budget
from cwconsumer.health import Health
from cwconsumer.metrics import Metrics, stream_ingestion_lag_s
from cwconsumer.registry import Registry
from cwconsumer.schedule import Schedule
from cwconsumer.streams import StreamState

STATS_PAGE = 1000
"""Most streams listed per group in one ``/stats`` answer (and the default)."""
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class LaneFigures:
    """One lane as ``/stats`` shows it."""

    lane: int
    queued_chunks: int
    in_flight: int


def stats_document(
    query: Mapping[str, str],
    *,
    registry: Registry,
    schedule: Schedule,
    budget: Budget,
    health: Health,
    metrics: Metrics,
    lanes: Sequence[LaneFigures],
    aws_rates: Mapping[str, float],
    group_class: Mapping[str, str],
    protection: Mapping[str, tuple[str, bool]],
    describe_pages: Mapping[str, int],
    deep_walks: int,
    uptime_s: float,
) -> dict[str, Any]:
    """``/stats``: per group aggregates (kept by the registry, cheap with
    10^6 streams); per-stream detail for one group (``?group=``) or when
    few streams are known, paged by ``limit`` (default and maximum
    :data:`STATS_PAGE`) and ``after`` (the last stream name of the
    previous page); ``?streams=false`` leaves it out. ``group_class``: each
    group's log class; ``protection``: (data protection status, whether its
    messages arrive masked) of the groups under a policy. The metrics' group
    figures must be current (the caller refreshes them first)."""
    now = int(time.time() * 1000)
    reg = registry
    only = query.get("group")
    want_streams = query.get("streams", "").lower() not in _FALSE
    inline = only is not None or len(reg) <= STATS_PAGE
    try:
        limit = max(1, min(STATS_PAGE, int(query.get("limit", STATS_PAGE))))
    except ValueError:
        limit = STATS_PAGE
    after = query.get("after")
    names = set(reg.by_group) | set(reg.totals)
    if only is not None:
        names &= {only}
    groups: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        t = reg.totals.get(name, [0, 0, 0])
        g: dict[str, Any] = {
            "events": {"in": t[0], "out": t[1], "dead_lettered": t[2]},
            "streams_by_state": reg.group_counts(name),
        }
        if name in group_class:
            g["log_class"] = group_class[name]
        if name in protection:
            g["data_protection"], g["masked"] = protection[name]
        if name in health.groups_refused:
            g["not_read"] = health.groups_refused[name]
        figures = metrics.groups.get(name)
        g["lag_s"] = None if figures is None or figures.lag_s is None else round(figures.lag_s, 1)
        g["ingestion_lag_s"] = None if figures is None else round(figures.ingestion_lag_s, 1)
        if want_streams and inline:
            page = list(reg.page(name, after, limit + 1))
            views = {}
            for st in page[:limit]:
                view = stream_view(st, now)
                view["ingestion_lag_s"] = round(
                    stream_ingestion_lag_s(st, metrics.in_flight, now), 1
                )
                views[st.key.stream] = view
            g["streams"] = views
            if len(page) > limit:
                g["streams_next"] = page[limit - 1].key.stream
        groups[name] = g
    ok, verdict = health.verdict(budget.events)
    return {
        "status": verdict["status"],
        "healthy": ok,
        "health": verdict,
        "uptime_s": round(uptime_s, 1),
        "pipeline": {
            "buffer": {
                "events": budget.events,
                "bytes": budget.bytes,
                "max_events": budget.max_events,
                "max_bytes": budget.max_bytes,
            },
            "lanes": [
                {"lane": f.lane, "queued_chunks": f.queued_chunks, "in_flight": f.in_flight}
                for f in lanes
            ],
            "aws_rate_per_s": {op: round(rate, 2) for op, rate in aws_rates.items()},
            "last_confirmation": health.last_confirm_wall,
            "sink": {
                "retrying": health.sink_error,
                "attempt": health.sink_failures,
                "credentials_rejected": health.auth_error,
                "refusing_requests": health.sink_refusing,
            },
            "database_error": health.store_error,
            "schedule": {
                "known_streams": len(reg),
                "awake_streams": len(reg.awake),
                "taken_hot": schedule.taken[0],
                "taken_quiet": schedule.taken[1],
                "faded_to_idle": schedule.faded,
                "forgotten": reg.forgotten,
                "describe_pages": dict(describe_pages),
                "deep_walks": deep_walks,
            },
        },
        "groups": groups,
    }


def stream_view(st: StreamState, now_ms: int) -> dict[str, Any]:
    """One stream in ``/stats``."""
    cp = st.committed
    return {
        "state": st.state.value,
        "events": {"in": st.events_in, "out": st.events_out, "dead_lettered": st.dead_lettered},
        "delivered_total": st.delivered_total,
        "pending": st.pending_events,
        "last_delivered_event_ms": cp.last_ts,
        "lag_s": None if cp.last_ts is None else round((now_ms - cp.last_ts) / 1000, 1),
        "last_event_seen_ms": st.last_event_seen_ms,
        "checkpoint_ms": st.checkpoint_ms,
        "last_error": st.last_error,
    }
