"""``cwconsumer dead-letters [--replay]``."""

from __future__ import annotations

import logging
import time

import orjson

from cwconsumer.config import Config
from cwconsumer.logs import REDACTOR
from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome
from cwconsumer.sinks.factory import build_sink
from cwconsumer.store import Store

log = logging.getLogger("cwconsumer.deadletters")


async def list_dead_letters(path: str, *, limit: int, as_json: bool) -> int:
    store = await Store.open(path, create=False, migrate=False)
    try:
        rows = await store.fetch(
            "SELECT id, group_name, stream_name, event_id, timestamp_ms, status, answer, "
            "created_ms, replayed_ms, document FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        )
    finally:
        await store.aclose()
    if as_json:
        out = [
            {
                "id": r[0],
                "group": r[1],
                "stream": r[2],
                "event_id": r[3],
                "timestamp_ms": r[4],
                "status": r[5],
                "answer": REDACTOR.scrub(str(r[6])),
                "created_ms": r[7],
                "replayed_ms": r[8],
                "document": orjson.loads(r[9]),
            }
            for r in rows
        ]
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not rows:
        print("no dead letters")
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r[4] / 1000))
        state = "replayed" if r[8] else "pending"
        answer = REDACTOR.scrub(str(r[6])).replace("\n", " ")[:200]
        print(f"#{r[0]} {state} {when} {r[1]} {r[2]} id={r[3]} status={r[5]} answer={answer}")
    return 0


async def replay_dead_letters(cfg: Config, *, limit: int) -> int:
    """Send pending dead letters again, oldest first, one at a time; mark
    each one replayed when the sink confirms it. Stops at the first failure."""
    store = await Store.open(cfg.db_path, cfg.db_journal_mode, create=False, migrate=False)
    sink = build_sink(cfg)
    sent = 0
    try:
        rows = await store.fetch(
            "SELECT id, timestamp_ms, document FROM dead_letters WHERE replayed_ms IS NULL "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
        for dl_id, ts, document in rows:
            res = await sink.send(OutBatch([orjson.loads(document)], [ts]))
            ok = res.outcome is Outcome.OK and (res.items is None or res.items[0] is Outcome.OK)
            if not ok:
                print(f"#{dl_id}: still refused: HTTP {res.status} {res.detail[:200]}")
                return 1
            await store.unfenced_write(
                "UPDATE dead_letters SET replayed_ms = ? WHERE id = ?",
                (int(time.time() * 1000), dl_id),
            )
            sent += 1
    finally:
        await sink.aclose()
        await store.aclose()
    print(f"replayed {sent} dead letter(s)")
    return 0
