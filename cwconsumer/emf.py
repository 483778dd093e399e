"""The periodic reporter: refreshes the gauges (which logs lag threshold
crossings) and, with ``CWC_EMF_METRICS=true``, writes CloudWatch Embedded
Metric Format lines to stdout, so alarms work without Prometheus or an agent
scraping ``/metrics``.

EMF lines go to stdout, the consumer's own logs to stderr. CloudWatch turns
the lines into metrics where they reach CloudWatch Logs as EMF (Lambda, the
CloudWatch agent, FireLens with ``log_format json/emf``). Namespace
``cwconsumer``; every line is one EMF document::

    {"_aws": {"Timestamp": 1795273676000, "CloudWatchMetrics": [{"Namespace": "cwconsumer",
      "Dimensions": [["Service"]], "Metrics": [{"Name": "EventsShipped", "Unit": "Count"}, ...]}]},
     "Service": "cwconsumer", "EventsShipped": 5000, "PendingEvents": 120, "Healthy": 1, ...}

- per process (dimension ``Service``): ``EventsRead``, ``EventsShipped``,
  ``EventsRetried``, ``EventsDeadLettered`` (counts since the previous line),
  ``PendingEvents``, ``Healthy`` (1/0), ``Standby`` (1/0);
- per group (dimensions ``Service``, ``LogGroup``): ``EventsShipped`` (since
  the previous line), ``IngestionLagSeconds`` (alarm on this one: 0 when
  caught up) and ``LagSeconds`` (now minus the newest delivered event time,
  once something was delivered).

A line is written every :data:`EMF_INTERVAL_S` and once more when the
process stops.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import anyio
import orjson

from cwconsumer.metrics import Metrics, Totals

log = logging.getLogger("cwconsumer.emf")

NAMESPACE = "cwconsumer"
SERVICE = "cwconsumer"
EMF_INTERVAL_S = 60.0
REFRESH_INTERVAL_S = 10.0

_PROCESS_METRICS: tuple[tuple[str, str], ...] = (
    ("EventsRead", "Count"),
    ("EventsShipped", "Count"),
    ("EventsRetried", "Count"),
    ("EventsDeadLettered", "Count"),
    ("PendingEvents", "Count"),
    ("Healthy", "None"),
    ("Standby", "None"),
    ("DeliveryStalled", "None"),  # the CloudFormation template's alarm reads this one
)


def emf_document(
    timestamp_ms: int,
    dimensions: dict[str, str],
    values: dict[str, float],
    units: dict[str, str],
    namespace: str = NAMESPACE,
) -> dict[str, Any]:
    """One EMF document: ``values`` as metrics under one dimension set."""
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": units[name]} for name in values],
                }
            ],
        }
    }
    doc.update(dimensions)
    doc.update(values)
    return doc


class EmfWriter:
    """Turns the current :class:`Metrics` into EMF lines on ``out``.
    Counters are sent as the increase since the previous :meth:`emit`."""

    def __init__(self, metrics: Metrics, out: TextIO | None = None) -> None:
        self._metrics = metrics
        self._out = out
        self._last: Totals | None = None
        self.broken = False

    def documents(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        """The documents of one emission (and remember the counters)."""
        m = self._metrics
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        totals = m.totals()
        last = self._last or Totals(0, 0, 0, 0, {})
        self._last = totals
        gauge = m.registry.get_sample_value
        process = {
            "EventsRead": totals.events_read - last.events_read,
            "EventsShipped": totals.events_shipped - last.events_shipped,
            "EventsRetried": totals.events_retried - last.events_retried,
            "EventsDeadLettered": totals.events_dead_lettered - last.events_dead_lettered,
            "PendingEvents": gauge("cwconsumer_buffer_events") or 0.0,
            "Healthy": gauge("cwconsumer_healthy") or 0.0,
            "Standby": gauge("cwconsumer_standby") or 0.0,
            "DeliveryStalled": gauge("cwconsumer_delivery_stalled") or 0.0,
        }
        units = dict(_PROCESS_METRICS)
        docs = [emf_document(now, {"Service": SERVICE}, process, units)]
        group_units = {
            "EventsShipped": "Count",
            "IngestionLagSeconds": "Seconds",
            "LagSeconds": "Seconds",
        }
        for name, figures in sorted(m.groups.items()):
            shipped = totals.shipped_by_group.get(name, 0.0)
            values = {
                "EventsShipped": shipped - last.shipped_by_group.get(name, 0.0),
                "IngestionLagSeconds": round(figures.ingestion_lag_s, 3),
            }
            if figures.lag_s is not None:
                values["LagSeconds"] = round(figures.lag_s, 3)
            dims = {"Service": SERVICE, "LogGroup": name}
            docs.append(emf_document(now, dims, values, group_units))
        return docs

    def emit(self, now_ms: int | None = None) -> None:
        """Write one emission, one document per line. A closed stdout
        disables the writer (logged once) instead of failing the service."""
        if self.broken:
            return
        out = self._out or sys.stdout
        try:
            for doc in self.documents(now_ms):
                out.write(orjson.dumps(doc).decode() + "\n")
            out.flush()
        except (OSError, ValueError) as exc:
            self.broken = True
            log.warning("cannot write EMF metrics to stdout; stopped writing them: %s", exc)


class Reporter:
    """``await reporter.run()`` until cancelled: every ``refresh_interval_s``
    call ``refresh`` (the service's gauge refresh, which also logs lag
    threshold crossings); with ``emf``, write EMF lines every
    ``emf_interval_s`` and once more at the end."""

    def __init__(
        self,
        metrics: Metrics,
        refresh: Callable[[], None],
        *,
        emf: bool,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        emf_interval_s: float = EMF_INTERVAL_S,
        out: TextIO | None = None,
    ) -> None:
        self._refresh = refresh
        self._writer = EmfWriter(metrics, out) if emf else None
        self._refresh_s = refresh_interval_s
        self._emf_s = emf_interval_s

    async def run(self) -> None:
        """Refresh the gauges and write EMF until cancelled, then write EMF once more."""
        next_emf = time.monotonic() + self._emf_s
        try:
            while True:
                await anyio.sleep(self._refresh_s)
                self._refresh()
                now = time.monotonic()
                if self._writer is not None and now >= next_emf:
                    next_emf = now + self._emf_s
                    self._writer.emit()
        finally:
            if self._writer is not None:
                # Synchronous, so it runs even while the task is being cancelled.
                try:
                    self._refresh()
                except Exception:
                    log.exception("refreshing the metrics for the last EMF line failed")
                self._writer.emit()
