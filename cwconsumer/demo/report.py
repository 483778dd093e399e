"""The demo's checks and its Lambda report (pure arithmetic, plus one table printer).

:func:`compare` sets what was written to CloudWatch against the first copy of
each event at the receiver: lost, unexpected, streams out of order.
:class:`FunctionStats` and :func:`percentile` turn the parsed ``aws.lambda``
fields of REPORT lines into the figures teams ship Lambda logs to ELK to see;
:func:`lambda_report` prints them per function with what they suggest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cwconsumer.demo.screen import Out, thousands
from cwconsumer.demo.sources import FUNCTIONS, lambda_group

__all__ = ["FunctionStats", "compare", "lambda_report", "percentile"]


def lambda_report(out: Out, reports: dict[str, list[dict[str, Any]]]) -> None:
    """Print the per-function table from the parsed REPORT fields, and what it suggests."""
    out.line(f"{out.bold('Lambda report')}, from the parsed REPORT lines (aws.lambda.*):")
    # Columns: 2 + function 15, invocations 12, cold 5, durations 3 x 7 + 11,
    # 2 + memory 17, timeouts 8, errors 7: 100 characters.
    out.line(out.dim(f"{'':34}{' duration, ms ':-^32}  {' memory, MB ':-^17}"))
    out.line(
        out.dim(
            f"  {'FUNCTION':<15}{'INVOCATIONS':>12}{'COLD':>5}{'P50':>7}{'P95':>7}"
            f"{'MAX':>7}{'AVG BILLED':>11}  {'USED / SIZE':<17}{'TIMEOUTS':>8}{'ERRORS':>7}"
        )
    )
    notes: list[str] = []
    for f in FUNCTIONS:
        rows = reports.get(lambda_group(f.name), [])
        if not rows:
            out.line(f"  {f.name:<15}{0:>12}")
            continue
        st = FunctionStats.of(rows)
        pct = 100 * st.max_used_mb // st.memory_mb if st.memory_mb else 0
        memory = f"{st.max_used_mb:>4} / {st.memory_mb:<4} {pct:>3}%"
        if pct >= 95:
            memory = out.bad(memory + "!")
            oom = f", and ran out of it {st.oom} times" if st.oom else ""
            notes.append(f"{f.name} reached its memory size{oom}: give it more memory.")
        else:
            memory += " "
            if pct < 35:
                notes.append(
                    f"{f.name} never used more than {pct}% of its {st.memory_mb} MB: "
                    "it could run on less."
                )
        if st.timeouts:
            notes.append(f"{f.name} timed out {st.timeouts} times, at its {f.timeout_s} s timeout.")
        out.line(
            f"  {f.name:<15}{thousands(st.invocations):>12}{st.cold:>5}{st.p50:>7,.0f}{st.p95:>7,.0f}"
            f"{st.max:>7,.0f}{st.avg_billed:>11,.0f}  {memory}{st.timeouts:>8}{st.errors:>7}"
        )
    bullet = "·" if out.unicode else "-"
    for note in notes:
        out.line(out.dim(f"  {bullet} {note}"))
    out.line()


@dataclass(frozen=True, slots=True)
class FunctionStats:
    """The figures teams ship Lambda logs to ELK to see, for one function."""

    invocations: int
    cold: int
    p50: float
    p95: float
    max: float
    avg_billed: float
    max_used_mb: int
    memory_mb: int
    timeouts: int
    errors: int
    oom: int

    @classmethod
    def of(cls, rows: Sequence[dict[str, Any]]) -> FunctionStats:
        """From the ``aws.lambda`` fields of REPORT documents (at least one)."""
        durations = sorted(float(r.get("duration_ms", 0.0)) for r in rows)
        return cls(
            invocations=len(rows),
            cold=sum(1 for r in rows if "init_duration_ms" in r),
            p50=percentile(durations, 50),
            p95=percentile(durations, 95),
            max=durations[-1],
            avg_billed=sum(int(r.get("billed_duration_ms", 0)) for r in rows) / len(rows),
            max_used_mb=max(int(r.get("max_memory_used_mb", 0)) for r in rows),
            memory_mb=max(int(r.get("memory_size_mb", 0)) for r in rows),
            timeouts=sum(1 for r in rows if r.get("status") == "timeout"),
            errors=sum(1 for r in rows if r.get("status") == "error"),
            oom=sum(1 for r in rows if r.get("error_type") == "Runtime.OutOfMemory"),
        )


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def compare(
    written: dict[tuple[str, str], list[tuple[int, str]]],
    arrived: dict[tuple[str, str], list[tuple[str, str]]],
) -> tuple[int, int, int]:
    """``(lost, unexpected, streams out of order)``: what was written against the
    first deliveries, in arrival order."""
    lost = extra = disorder = 0
    for key in written.keys() | arrived.keys():
        want = [(_iso(ts), message) for ts, message in written.get(key, [])]
        got = arrived.get(key, [])
        if want == got:
            continue
        missing = Counter(want) - Counter(got)
        surplus = Counter(got) - Counter(want)
        lost += sum(missing.values())
        extra += sum(surplus.values())
        if not missing and not surplus:
            disorder += 1
    return lost, extra, disorder


def _iso(ms: int) -> str:
    """The shipped ``@timestamp`` of an event time (written here, not borrowed from
    the product, so that the check below is independent of it)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )
