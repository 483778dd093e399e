"""``cwconsumer status [--json] [--streams]``: the operator's view of the
checkpoint database, read without a running service, also while a ``run`` runs.

It changes neither the database's journal mode nor its schema: the mode is
read from the file header and kept, and a database that needs migrations is
refused (``run`` applies them).

``status --json`` is a stable interface::

    {"database": str, "now": ISO, "running": bool,
     "lease": {"holder": "host pid N" | null, "heartbeat_age_s": float | null, "epoch": int},
     "dead_letters_pending": int,
     "groups": [{"group": str, "state": "active" | "idle" | "deleted", "stream_count": int,
                 "stream_states": {state: count}, "delivered": int, "dead_lettered": int,
                 "last_delivered_event": ISO | null, "lag_s": float | null,
                 "behind_s": float | null, "last_checkpoint": ISO | null,
                 "streams": [...]   # only with --streams
                }]}

A stream: ``stream``, ``state`` (new, reading, tailing, idle, deleted),
``delivered``, ``dead_lettered``, ``last_delivered_event``, ``lag_s`` (now
minus the last delivered event time), ``behind_s`` (newest event time
CloudWatch reported minus the last delivered one), ``checkpoint_written``,
``position`` (``token``, ``time`` or ``start``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from cwconsumer import logs as logsetup
from cwconsumer.commands import EXIT_OK, run_async
from cwconsumer.config import DEFAULT_LEASE_TTL_S, load_existing_db_path, load_lease_ttl_s
from cwconsumer.store import GroupRow, Store, StreamRow
from cwconsumer.units import format_time_ms as iso

_ACTIVE_STATES = frozenset({"new", "reading", "tailing"})


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the status (a table, or JSON with ``--json``); 0, or 2 when
    ``CWC_DB_PATH`` names no database or ``CWC_LEASE_TTL`` is bad."""
    path = load_existing_db_path(environ)
    ttl_s = load_lease_ttl_s(environ)
    logsetup.setup("WARNING", "text")

    async def go() -> int:
        text = await render_status(
            path, as_json=args.json, streams=args.streams, ttl_ms=int(ttl_s * 1000)
        )
        print(logsetup.REDACTOR.scrub(text))
        return EXIT_OK

    return run_async(go)


async def collect_status(
    path: str, now_ms: int | None = None, *, streams: bool = True, ttl_ms: int | None = None
) -> dict[str, Any]:
    """The ``status --json`` document (``streams``: include every stream)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    ttl = ttl_ms if ttl_ms is not None else int(DEFAULT_LEASE_TTL_S * 1000)
    store = await Store.open_existing(path)
    try:
        groups = await store.load_groups()
        rows = await store.load_streams()
        lease = await store.lease_info()
        facts = await store.load_group_info()
        dead = await store.count_dead_letters_pending()
    finally:
        await store.aclose()
    running = lease.live(now, ttl)
    out: dict[str, Any] = {
        "database": path,
        "now": iso(now),
        "running": running,
        "lease": {
            "holder": f"{lease.host} pid {lease.pid}" if running else None,
            "heartbeat_age_s": round((now - lease.heartbeat_ms) / 1000, 1) if running else None,
            "epoch": lease.epoch,
        },
        "dead_letters_pending": dead,
        "groups": [],
    }
    by_group: dict[str, list[dict[str, Any]]] = {}
    raw_by_group: dict[str, list[StreamRow]] = {}
    for r in rows:
        by_group.setdefault(r.key.group, []).append(_stream(r, groups.get(r.key.group), now))
        raw_by_group.setdefault(r.key.group, []).append(r)
    for name in sorted(set(groups) | set(by_group)):
        views = by_group.get(name, [])
        raws = raw_by_group.get(name, [])
        g = groups.get(name)
        states: dict[str, int] = {}
        for s in views:
            states[s["state"]] = states.get(s["state"], 0) + 1
        newest = max((r.checkpoint.last_ts for r in raws if r.checkpoint.last_ts), default=None)
        written = max((r.checkpoint_ms for r in raws if r.checkpoint_ms), default=None)
        behinds = [s["behind_s"] for s in views if s["behind_s"] is not None]
        if g is not None and g.deleted_ms is not None:
            state = "deleted"
        elif any(states.get(s) for s in _ACTIVE_STATES):
            state = "active"
        else:
            state = "idle"
        group: dict[str, Any] = {
            "group": name,
            "state": state,
            "stream_count": len(views),
            "stream_states": states,
            "delivered": sum(s["delivered"] for s in views),
            "dead_lettered": sum(s["dead_lettered"] for s in views),
            "last_delivered_event": iso(newest),
            "lag_s": None if newest is None else round((now - newest) / 1000, 1),
            "behind_s": max(behinds) if behinds else None,
            "last_checkpoint": iso(written),
            # From DescribeLogGroups, as the run last read it (None: not yet).
            "log_class": None,
            "data_protection": None,
            "retention_days": None,
        }
        if name in facts:
            f = facts[name]
            group["log_class"] = f.log_class or "STANDARD"
            group["data_protection"] = f.data_protection
            group["retention_days"] = f.retention_days
        if streams:
            group["streams"] = views
        out["groups"].append(group)
    return out


def _stream(r: StreamRow, group: GroupRow | None, now: int) -> dict[str, Any]:
    cp = r.checkpoint
    deleted = group is not None and group.deleted_ms is not None
    behind = None
    if r.last_event_seen_ms is not None and cp.last_ts is not None:
        behind = round(max(0, r.last_event_seen_ms - cp.last_ts) / 1000, 1)
    if cp.token is not None:
        position = "token"
    elif cp.start_time_ms is not None:
        position = f"time {iso(cp.start_time_ms)}"
    else:
        position = "start"
    return {
        "stream": r.key.stream,
        "state": "deleted" if deleted else r.state,
        "delivered": r.delivered,
        "dead_lettered": r.dead_lettered,
        "last_delivered_event": iso(cp.last_ts),
        "lag_s": None if cp.last_ts is None else round((now - cp.last_ts) / 1000, 1),
        "behind_s": behind,
        "checkpoint_written": iso(r.checkpoint_ms),
        "position": position,
    }


async def render_status(
    path: str, *, as_json: bool, streams: bool, ttl_ms: int | None = None
) -> str:
    """``status`` output: a table (first line names the database) or JSON."""
    data = await collect_status(path, streams=streams, ttl_ms=ttl_ms)
    if as_json:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    lines = [f"database: {data['database']}"]
    lease = data["lease"]
    lines.append(
        "run: "
        + (
            f"{lease['holder']} (heartbeat {lease['heartbeat_age_s']}s ago)"
            if data["running"]
            else "not running"
        )
    )
    if data["dead_letters_pending"]:
        lines.append(
            f"dead letters: {data['dead_letters_pending']} (see `cwconsumer dead-letters`)"
        )
    now_ms = int(time.time() * 1000)
    table: list[list[str]] = [
        ["GROUP", "STATE", "CLASS", "STREAMS", "DELIVERED", "LAST EVENT", "LAG", "CHECKPOINTED"]
    ]
    protected: list[str] = []
    for g in data["groups"]:
        if g["data_protection"] in ("ACTIVATED", "ARCHIVED"):
            protected.append(f"{g['group']} ({g['data_protection']})")
        table.append(
            [
                g["group"],
                g["state"],
                g["log_class"] or "-",
                str(g["stream_count"]),
                str(g["delivered"]),
                g["last_delivered_event"] or "-",
                _human(g["lag_s"]),
                _ago(g["last_checkpoint"], now_ms),
            ]
        )
        for s in g.get("streams", []):
            table.append(
                [
                    "  " + s["stream"],
                    s["state"],
                    "",
                    "",
                    str(s["delivered"]),
                    s["last_delivered_event"] or "-",
                    _human(s["lag_s"]),
                    _ago(s["checkpoint_written"], now_ms),
                ]
            )
    lines.append("")
    lines.extend(_format_table(table, right={3, 4, 6}))
    if not data["groups"]:
        lines.append("(no groups yet)")
    if protected:
        lines.append("")
        lines.append(
            "data protection on: "
            + ", ".join(protected)
            + " (messages arrive masked unless the run has CWC_UNMASK=true)"
        )
    return "\n".join(lines)


def _format_table(rows: list[list[str]], right: set[int], max_width: int = 60) -> list[str]:
    widths = [min(max_width, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = []
        for i, cell in enumerate(r):
            text = cell if len(cell) <= widths[i] else cell[: widths[i] - 1] + "…"
            cells.append(text.rjust(widths[i]) if i in right else text.ljust(widths[i]))
        out.append("  ".join(cells).rstrip())
    return out


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _ago(stamp: str | None, now_ms: int) -> str:
    if stamp is None:
        return "-"
    ms = int(datetime.fromisoformat(stamp).timestamp() * 1000)
    return _human(max(0.0, (now_ms - ms) / 1000)) + " ago"
