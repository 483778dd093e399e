"""Shaping cost of this checkout against another one, interleaved in one process.

    git worktree add /tmp/base <commit>
    .venv/bin/python bench/ab_shape.py /tmp/base
    .venv/bin/python bench/ab_shape.py /tmp/base --page lambda   # the Lambda scenario's mix

Loads the other checkout's ``cwconsumer/documents.py`` next to this one's and
shapes the same page with each in turn, 40 times, so that both see the same
machine load; prints the minimum and median µs per event of each. Pages:

- ``generic`` (default): 4,600 events of 200 bytes in an ``/ecs/`` group
  (``bench/stages.py``: nothing to parse);
- ``lambda``: 6,000 events of the Lambda scenario's mix (``bench/standin.py``,
  ``lambda_messages``), shaped once as an ``/aws/lambda/`` stream and once as
  an ``/ecs/`` stream, as the two groups of that scenario.

Each round times shaping plus what a sink then does to the documents
(``dumps_each``: parsed documents were dicts encoded there before they were
written as bytes while shaping), and both checkouts must ship the same bytes
(checked first). The other module imports the rest of ``cwconsumer`` (the
parsers too) from this checkout, so it only works across commits that kept
``documents.py``'s imports; parsers that changed are compared through
``bench/stages.py`` or the backlog scenarios instead. Since ``documents.py``
was split (``lines.py``, ``eventid.py``, ``isotime.py``), a checkout after the
split loaded as the other one runs this checkout's ``lines.py``: compare such
checkouts with the backlog scenarios.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stages import lambda_page, page_bytes
from cwconsumer import documents
from cwconsumer.aws import decode_get_log_events
from cwconsumer.model import LogEvent
from cwconsumer.sinks.formats import dumps_each

ROUNDS = 40


def shape_all(shapers: list[Any], events: list[LogEvent]) -> list[bytes]:
    out: list[bytes] = []
    for shaper in shapers:
        docs = shaper.shape(events, None, -1)[0]
        lines, bad = dumps_each(docs)
        assert not bad
        out += lines
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("other", help="another checkout (a git worktree)")
    p.add_argument("--page", choices=("generic", "lambda"), default="generic")
    args = p.parse_args()
    other_file = Path(args.other) / "cwconsumer" / "documents.py"
    spec = importlib.util.spec_from_file_location("other_documents", other_file)
    if spec is None or spec.loader is None:
        print(f"cannot load {other_file}", file=sys.stderr)
        return 2
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    if args.page == "generic":
        events, _ = decode_get_log_events(page_bytes(4600))
        groups = ["/ecs/app"]
    else:
        events, _ = decode_get_log_events(lambda_page())
        groups = ["/aws/lambda/bench-fn", "/ecs/bench-svc"]
    n = len(events) * len(groups)
    sides = {
        str(args.other): [other.Shaper(g, "s1", "us-east-1", "auto") for g in groups],
        "this checkout": [documents.Shaper(g, "s1", "us-east-1", "auto") for g in groups],
    }
    results = [shape_all(shapers, events) for shapers in sides.values()]
    assert results[0] == results[1], "the two checkouts ship different bytes"
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, shapers in sides.items():
            t0 = time.process_time()
            shape_all(shapers, events)
            times[name].append((time.process_time() - t0) / n * 1e6)
    for name, values in times.items():
        values.sort()
        print(f"{name}: min {values[0]:.3f}, median {values[ROUNDS // 2]:.3f} µs per event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
