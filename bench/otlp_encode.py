"""CPU cost of the sinks' body encodings per event: ndjson (the join of the
shaped lines) against OTLP protobuf and OTLP JSON, on the same 5,000-event
batch of shaped documents (the product's Shaper; 1 in 10 a Lambda REPORT line,
1 in 10 a JSON object, the rest plain 200-byte lines: the parsed ones are
dicts, the plain ones serialized bytes, as the product ships them).

    .venv/bin/python bench/otlp_encode.py

Prints the best µs per event of each (process CPU time, 7 rounds). The OTLP
sink encodes batches of more than 200 events in a worker thread, so this is CPU
taken from the process, not time the event loop stands still.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cwconsumer.documents import Shaper
from cwconsumer.model import OutBatch
from cwconsumer.sinks.formats import NDJSON, dumps_each
from cwconsumer.sinks.otlp_encode import encode

N = 5000
ROUNDS = 7
REPORT = (
    "REPORT RequestId: 7dea2e7a-1111-2222-3333-444455556666\tDuration: 584.64 ms\t"
    "Billed Duration: 600 ms\tMemory Size: 128 MB\tMax Memory Used: 19 MB\t"
)


def batch() -> OutBatch:
    base = int(time.time() * 1000) - 3_600_000
    events = []
    for i in range(N):
        if i % 10 == 3:
            message = REPORT
        elif i % 10 == 7:
            message = f'{{"level":"info","order":{i},"user":"u{i % 97}","ok":true}}'
        else:
            message = f"{i:08d} " + "x" * 190
        events.append({"timestamp": base + i // 4, "message": message, "ingestionTime": base + 5})
    shaper = Shaper("/aws/lambda/orders", "2026/11/21/[$LATEST]abc", "eu-west-1", "auto",
                    account="123456789012")  # fmt: skip
    docs, stamps, *_ = shaper.shape(events, None, -1)
    return OutBatch(docs, stamps)


def best_us(fn: object) -> float:
    times = []
    for _ in range(ROUNDS):
        t = time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.process_time() - t)
    return min(times) / N * 1e6


def main() -> int:
    b = batch()
    results = {
        "ndjson": best_us(lambda: NDJSON.join(dumps_each(b.docs)[0])),
        "otlp protobuf": best_us(lambda: encode(b, "protobuf")),
        "otlp json": best_us(lambda: encode(b, "json")),
    }
    for name, us in results.items():
        print(f"{name:14s} {us:7.2f} us/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
