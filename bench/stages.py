"""Per-event CPU cost of each stage of the product's hot path, in one process.

    /work/venv/bin/python bench/stages.py

Builds one realistic GetLogEvents page (1 MB, ~4,600 events of 200 bytes, as
the stand-in serves it) and times, per event, with ``time.process_time``:

- response parsing: the product's parser (msgspec, ``cwconsumer.aws``), orjson and
  stock botocore's shape walker, for comparison;
- shaping (``documents.Shaper.shape``): document, ``event.id``, ISO times,
  and (since the documents are serialized while shaping) the JSON line;
- encoding (``sinks.formats.dumps_each`` + ``join_ndjson``): for shaped lines
  only taking the bytes and joining them;
- the checkpoint transaction (``store.Store.commit``) for one 5,000-event
  batch of 10 streams, amortised per event.

Each figure is the best (minimum) of several repetitions, as timeit advises:
the machine is shared, and noise only ever adds time. What the end-to-end backlog
figure adds on top of these is HTTP (aiobotocore request building, aiohttp
client and socket writes), the event loop and the lanes' bookkeeping.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.standin import lambda_messages, message
from cwconsumer.aws import decode_get_log_events
from cwconsumer.documents import Shaper
from cwconsumer.sinks.formats import dumps_each, join_ndjson

REPEATS = 15


def page_bytes(n_events: int, size: int = 200) -> bytes:
    base = int(time.time() * 1000) - 3_600_000
    events = [
        {"timestamp": base + i // 4, "message": message(0, 0, i, size), "ingestionTime": base + 5}
        for i in range(n_events)
    ]
    return orjson.dumps(
        {"events": events, "nextForwardToken": "f/1/s", "nextBackwardToken": "b/1/s"}
    )


def lambda_page(n_events: int = 6_000) -> bytes:
    """A page of the Lambda scenario's invocations (``bench/standin.py``)."""
    base = int(time.time() * 1000) - 3_600_000
    events = [
        {"timestamp": base + i // 4, "message": m, "ingestionTime": base + 5}
        for i, m in enumerate(lambda_messages(0, 0, 0, n_events, 200))
    ]
    return orjson.dumps({"events": events, "nextForwardToken": "f/1", "nextBackwardToken": "b/1"})


def per_event_us(fn: Callable[[], object], n: int, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times) / n * 1e6


def paired(a: Callable[[], object], b: Callable[[], object], n: int) -> tuple[float, float]:
    """Best per-event times of ``a`` and ``b``, run alternately so that a load
    change on a shared machine hits both alike."""
    best_a = best_b = float("inf")
    for _ in range(REPEATS * 2):
        t = time.process_time()
        a()
        best_a = min(best_a, time.process_time() - t)
        t = time.process_time()
        b()
        best_b = min(best_b, time.process_time() - t)
    return best_a / n * 1e6, best_b / n * 1e6


def botocore_parser() -> Callable[[bytes], object]:
    """Stock botocore's JSON parser with the real GetLogEvents output shape."""
    import botocore.session
    from botocore.parsers import JSONParser

    model = botocore.session.get_session().get_service_model("logs")
    shape = model.operation_model("GetLogEvents").output_shape
    parser = JSONParser()

    def parse(body: bytes) -> object:
        return parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)

    return parse


def fast_parser() -> Callable[[bytes], object]:
    """The product's parser as aiobotocore's factory builds it (msgspec, the
    messages left as their JSON strings)."""
    import botocore.session

    from cwconsumer.awsparse import _FastJSONParser

    model = botocore.session.get_session().get_service_model("logs")
    shape = model.operation_model("GetLogEvents").output_shape
    parser = _FastJSONParser()

    def parse(body: bytes) -> object:
        return parser._handle_json_body(body, shape)

    return parse


def fused_lines(events: list[dict[str, Any]], group: str, stream: str) -> list[bytes]:
    """Prototype for an optimisation: the NDJSON line of an unparsed event built
    directly as bytes (orjson only for the message string), so no per-event
    dicts exist. Same bytes as ``orjson.dumps`` of the product's document."""
    from cwconsumer.eventid import id_prefix as _id_prefix
    from cwconsumer.isotime import iso_ms

    prefix = _id_prefix(group, stream, "", "us-east-1")  # as the Shaper below: no account
    pack = struct.Struct(">qq").pack
    digest = xxhash.xxh3_128_hexdigest
    tail = (
        b',"aws":'
        + orjson.dumps({"cloudwatch": {"log_group": group, "log_stream": stream}})
        + b',"cloud":'
        + orjson.dumps({"provider": "aws", "region": "us-east-1"})
        + b"}\n"
    )
    out: list[bytes] = []
    add = out.append
    last_ts: int | None = None
    ordinal = 0
    stamp_ts: int | None = None
    stamp = b""
    last_ing: int | None = None
    ing = b""
    for ev in events:
        ts = ev["timestamp"]
        if ts == last_ts:
            ordinal += 1
        else:
            ordinal = 0
            last_ts = ts
        if ts != stamp_ts:
            stamp_ts = ts
            stamp = iso_ms(ts).encode()
        ingested = ev["ingestionTime"]
        if ingested != last_ing:
            last_ing = ingested
            ing = iso_ms(ingested).encode()
        add(
            b'{"@timestamp":"%b","message":%b,"event":{"id":"%b","ingested":"%b"}%b'
            % (
                stamp,
                orjson.dumps(ev["message"]),
                digest(prefix + pack(ts, ordinal)).encode(),
                ing,
                tail,
            )
        )
    return out


async def commit_cost(streams: int, events: int) -> float:
    from cwconsumer.model import Checkpoint, StreamKey
    from cwconsumer.store import Commit, Store, StreamRow

    with tempfile.TemporaryDirectory() as d:
        store = await Store.open(str(Path(d) / "s.db"), None)
        await store.acquire_lease("bench", int(time.time() * 1000), 60_000, "h", 1)
        keys = [StreamKey("/bench/g0", f"s-{i:05d}") for i in range(streams)]
        cp = Checkpoint(None, None, 0, None, -1)
        await store.add_streams(
            [StreamRow(k, 0, cp, 0, 0, "reading", None, None, None, None) for k in keys]
        )
        times = []
        for r in range(REPEATS):
            commits = [
                Commit(k, Checkpoint(f"f/{r:066d}/s", None, 0, 1_000_000 + r, 0), 500, 0)
                for k in keys
            ]
            t = time.perf_counter()
            await store.commit(commits)
            times.append(time.perf_counter() - t)
        await store.aclose()
    return statistics.median(times) / events * 1e6


def main() -> None:
    body = page_bytes(4_600)
    n = len(orjson.loads(body)["events"])
    print(f"page: {len(body):,} bytes, {n:,} events of 200 bytes")
    rows: list[tuple[str, float]] = []
    stock = botocore_parser()
    rows.append(("parse: stock botocore shape walker", per_event_us(lambda: stock(body), n, 5)))
    fast = fast_parser()
    rows.append(("parse: product (msgspec)", per_event_us(lambda: fast(body), n)))
    rows.append(
        ("parse, for comparison: orjson.loads", per_event_us(lambda: orjson.loads(body), n))
    )
    api_events = decode_get_log_events(body)[0]
    events = orjson.loads(body)["events"]
    shaper = Shaper("/bench/g0", "s-00000", "us-east-1", "auto")
    rows.append(
        (
            "shape: Shaper.shape of the API's events (message JSON copied)",
            per_event_us(lambda: shaper.shape(api_events, None, -1), n),
        )
    )
    rows.append(
        (
            "shape, for comparison: of dict items (message encoded by orjson)",
            per_event_us(lambda: shaper.shape(events, None, -1), n),
        )
    )
    docs = shaper.shape(events, None, -1)[0]
    rows.append(("encode: dumps_each", per_event_us(lambda: dumps_each(docs), n)))
    lines = dumps_each(docs)[0]
    rows.append(("encode: join_ndjson", per_event_us(lambda: join_ndjson(lines), n)))
    today, fused = paired(
        lambda: join_ndjson(dumps_each(shaper.shape(events, None, -1)[0])[0]),
        lambda: b"".join(fused_lines(events, "/bench/g0", "s-00000")),
        n,
    )
    rows.append(("shape+encode: Shaper.shape + dumps_each + join_ndjson", today))
    rows.append(("for comparison: the prototype (fused_lines)", fused))
    # The Lambda scenario's mix (bench/run.py --only lambda), each group's way.
    lambda_events = decode_get_log_events(lambda_page())[0]
    m = len(lambda_events)
    for group in ("/aws/lambda/bench-fn", "/ecs/bench-svc"):
        lambda_shaper = Shaper(group, "s-00000", "us-east-1", "auto")
        rows.append(
            (
                f"lambda mix, shape + dumps_each: {group} (6,000 events)",
                per_event_us(
                    lambda s=lambda_shaper: dumps_each(s.shape(lambda_events, None, -1)[0]), m
                ),
            )
        )
    rows.append(("checkpoint: Store.commit, 10 streams / 5,000 events (wall)",
                 asyncio.run(commit_cost(10, 5_000))))  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:6.3f} µs/event")
    check = b"".join(fused_lines(events, "/bench/g0", "s-00000"))
    assert check == join_ndjson(dumps_each(docs)[0]), "the prototype must give the same bytes"
    as_dicts = [orjson.loads(line) for line in lines]
    assert lines == [orjson.dumps(d) for d in as_dicts], "lines must be orjson's own bytes"
    core = (
        sum(us for name, us in rows if name.split(":")[0] in ("shape", "checkpoint"))
        + next(us for name, us in rows if name == "parse: product (msgspec)")
        + sum(us for name, us in rows if name in ("encode: dumps_each", "encode: join_ndjson"))
    )
    print(f"{'sum of the product stages':<{width}}  {core:6.3f} µs/event")


if __name__ == "__main__":
    main()
