"""Scenario ``otlp`` of ``bench/run.py``: the generic backlog delivered with
``CWC_SINK_FORMAT=otlp`` (protobuf, the default encoding), to weigh what the
OTLP sink costs end to end against the NDJSON ``backlog`` scenario on the same
data. The counting sink (``bench/sink.py``) decodes each protobuf body with
``opentelemetry-proto`` in its own process and counts the log records, so the
product is measured, not the receiver.

    flock /tmp/cwc-heavy.lock .venv/bin/python bench/run.py --quick --only backlog,otlp --repeats 3
"""

from __future__ import annotations

import argparse

from run import BACKLOG_DATA, Row, Standin, backlog_runs, log, median


def scenario_otlp(args: argparse.Namespace) -> list[Row]:
    total = args.backlog_events
    log(f"otlp: loading {total:,} events into the stand-in")
    standin = Standin({**BACKLOG_DATA, "events": total})
    settings = {"CWC_API_RATE": str(args.backlog_rate), "CWC_SINK_FORMAT": "otlp"}
    runs = backlog_runs(
        "otlp",
        standin,
        args,
        settings,
        lambda r: (
            f"{r['events_per_s']:,.0f} ev/s, "
            f"{r['cpu_us_per_event']:.2f} µs CPU/ev steady, "
            f"{r['cpu_us_per_event_whole']:.2f} whole process, peak RSS "
            f"{r['peak_rss_mb']:.0f} MB, other CPU {r['other_cpu_util']:.0%} of a core"
        ),
    )
    eps = median([r["events_per_s"] for r in runs])
    steady = median([r["cpu_us_per_event"] for r in runs])
    whole = median([r["cpu_us_per_event_whole"] for r in runs])
    rss = median([r["peak_rss_mb"] for r in runs])
    n = f"median of {len(runs)} runs"
    detail = {"runs": runs, "settings": settings, "events": total}
    return [
        Row("1c otlp", "events/s wall (first to last delivery)", f"{eps:,.0f}", "-", "n/a", n,
            detail),
        Row("1c otlp", "CPU µs per event, steady", f"{steady:.2f}", "-", "n/a", n),
        Row("1c otlp", "CPU µs per event, whole process incl. start-up",
            f"{whole:.2f} ({1e6 / whole:,.0f} ev/CPU-s)", "-", "n/a", n),
        Row("1c otlp", "peak RSS MB", f"{rss:.0f}", "-", "n/a", n),
    ]  # fmt: skip
