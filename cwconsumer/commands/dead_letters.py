"""``cwconsumer dead-letters [--json] [--limit N] [--replay]``: the events a
sink refused for good, with its answer; ``--replay`` sends them again."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

import orjson

from cwconsumer import logs as logsetup
from cwconsumer.commands import run_async
from cwconsumer.config import Config, load_config, load_existing_db_path
from cwconsumer.logs import REDACTOR
from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome
from cwconsumer.sinks.factory import build_sink
from cwconsumer.store import Store


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List (needs only ``CWC_DB_PATH``) or replay (needs the whole
    configuration: the sink); 0 done, 1 a replayed event was refused again."""
    if args.replay:
        cfg = load_config(environ)
        logsetup.setup(cfg.log_level, "text", logsetup.secrets_of(cfg))
        return run_async(lambda: replay_dead_letters(cfg, limit=args.limit))
    path = load_existing_db_path(environ)
    logsetup.setup("WARNING", "text")
    return run_async(lambda: list_dead_letters(path, limit=args.limit, as_json=args.json))


async def list_dead_letters(path: str, *, limit: int, as_json: bool) -> int:
    """Print the first ``limit`` dead letters (JSON or one line each); 0."""
    store = await Store.open(path, create=False, migrate=False)
    try:
        rows = await store.load_dead_letters(limit)
    finally:
        await store.aclose()
    if as_json:
        out = [
            {
                "id": r.id,
                "group": r.key.group,
                "stream": r.key.stream,
                "event_id": r.event_id,
                "timestamp_ms": r.timestamp_ms,
                "status": r.status,
                "answer": REDACTOR.scrub(str(r.answer)),
                "created_ms": r.created_ms,
                "replayed_ms": r.replayed_ms,
                "document": orjson.loads(r.document),
            }
            for r in rows
        ]
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not rows:
        print("no dead letters")
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.timestamp_ms / 1000))
        state = "replayed" if r.replayed_ms else "pending"
        answer = REDACTOR.scrub(str(r.answer)).replace("\n", " ")[:200]
        print(
            f"#{r.id} {state} {when} {r.key.group} {r.key.stream} id={r.event_id} "
            f"status={r.status} answer={answer}"
        )
    return 0


async def replay_dead_letters(cfg: Config, *, limit: int) -> int:
    """Send pending dead letters again, oldest first, one at a time; mark
    each one replayed when the sink confirms it. Stops at the first failure."""
    store = await Store.open(cfg.db_path, cfg.db_journal_mode, create=False, migrate=False)
    sink = build_sink(cfg)
    sent = 0
    try:
        for row in await store.load_dead_letters(limit, pending_only=True):
            res = await sink.send(OutBatch([orjson.loads(row.document)], [row.timestamp_ms]))
            ok = res.outcome is Outcome.OK and (res.items is None or res.items[0] is Outcome.OK)
            if not ok:
                print(f"#{row.id}: still refused: HTTP {res.status} {res.detail[:200]}")
                return 1
            await store.mark_replayed(row.id, int(time.time() * 1000))
            sent += 1
    finally:
        await sink.aclose()
        await store.aclose()
    print(f"replayed {sent} dead letter(s)")
    return 0
