"""Shaping cost of this checkout against another one, interleaved in one process.

    git worktree add /tmp/base <commit>
    .venv/bin/python bench/ab_shape.py /tmp/base

Loads the other checkout's ``cwconsumer/documents.py`` next to this one's and
shapes the same 4,600-event page (``bench/stages.py``) with each in turn, 40
times, so that both see the same machine load; prints the minimum and median
µs per event of each. Both must give the same documents (checked first). The
other module imports the rest of ``cwconsumer`` from this checkout, so it
only works across commits that kept ``documents.py``'s imports.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stages import page_bytes
from cwconsumer import documents
from cwconsumer.aws import decode_get_log_events

ROUNDS = 40


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    other_file = Path(sys.argv[1]) / "cwconsumer" / "documents.py"
    spec = importlib.util.spec_from_file_location("other_documents", other_file)
    if spec is None or spec.loader is None:
        print(f"cannot load {other_file}", file=sys.stderr)
        return 2
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    events, _ = decode_get_log_events(page_bytes(4600))
    n = len(events)
    shapers = {
        str(sys.argv[1]): other.Shaper("/ecs/app", "s1", "us-east-1", "auto"),
        "this checkout": documents.Shaper("/ecs/app", "s1", "us-east-1", "auto"),
    }
    results = [s.shape(events, None, -1)[0] for s in shapers.values()]
    assert results[0] == results[1], "the two checkouts shape the page differently"
    times: dict[str, list[float]] = {name: [] for name in shapers}
    for _ in range(ROUNDS):
        for name, shaper in shapers.items():
            t0 = time.process_time()
            shaper.shape(events, None, -1)
            times[name].append((time.process_time() - t0) / n * 1e6)
    for name, values in times.items():
        values.sort()
        print(f"{name}: min {values[0]:.3f}, median {values[ROUNDS // 2]:.3f} µs per event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
