"""``cwconsumer status``: read the database (also while ``run`` runs)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from cwconsumer.store import Store


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


async def collect_status(path: str, now_ms: int | None = None) -> dict[str, Any]:
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    store = await Store.open(path, create=False, migrate=False)
    try:
        groups = await store.load_groups()
        streams = await store.load_streams()
        lease = await store.lease_info()
        dead = (await store.fetch("SELECT COUNT(*) FROM dead_letters WHERE replayed_ms IS NULL"))[0][0]
    finally:
        await store.aclose()
    out: dict[str, Any] = {
        "database": path,
        "lease": {
            "holder": None if lease.owner is None else f"{lease.host} pid {lease.pid}",
            "heartbeat_age_s": None if lease.owner is None else round((now - lease.heartbeat_ms) / 1000, 1),
            "epoch": lease.epoch,
        },
        "dead_letters_pending": dead,
        "groups": [],
    }
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in streams:
        cp = r.checkpoint
        state = "deleted" if groups.get(r.key.group) and groups[r.key.group].deleted_ms else r.state
        lag = None if cp.last_ts is None else round((now - cp.last_ts) / 1000, 1)
        behind = None
        if r.last_event_seen_ms is not None:
            behind = round(max(0, r.last_event_seen_ms - (cp.last_ts or 0)) / 1000, 1) if cp.last_ts else None
        by_group.setdefault(r.key.group, []).append(
            {
                "stream": r.key.stream,
                "state": state,
                "delivered": r.delivered,
                "dead_lettered": r.dead_lettered,
                "last_delivered_event": _iso(cp.last_ts),
                "lag_s": lag,
                "behind_s": behind,
                "checkpoint_written": _iso(r.checkpoint_ms),
                "has_token": cp.token is not None,
            }
        )
    for name in sorted(set(groups) | set(by_group)):
        rows = by_group.get(name, [])
        states: dict[str, int] = {}
        for s in rows:
            states[s["state"]] = states.get(s["state"], 0) + 1
        lags = [s["lag_s"] for s in rows if s["lag_s"] is not None and s["state"] not in ("idle", "deleted")]
        last = max((s["last_delivered_event"] for s in rows if s["last_delivered_event"]), default=None)
        g = groups.get(name)
        out["groups"].append(
            {
                "group": name,
                "state": "deleted" if g and g.deleted_ms else ("active" if states.get("reading") or states.get("tailing") or states.get("new") else "idle"),
                "streams": len(rows),
                "stream_states": states,
                "delivered": sum(s["delivered"] for s in rows),
                "dead_lettered": sum(s["dead_lettered"] for s in rows),
                "last_delivered_event": last,
                "max_lag_s": max(lags) if lags else None,
                "stream_list": rows,
            }
        )
    return out


async def render_status(path: str, *, as_json: bool, streams: bool) -> str:
    data = await collect_status(path)
    if as_json:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    lines = [f"database: {data['database']}"]
    lease = data["lease"]
    lines.append(
        "run: " + (f"{lease['holder']} (heartbeat {lease['heartbeat_age_s']}s ago)" if lease["holder"] else "not running")
    )
    if data["dead_letters_pending"]:
        lines.append(f"dead letters: {data['dead_letters_pending']} (see `cwconsumer dead-letters`)")
    header = f"{'GROUP':<40} {'STATE':<8} {'STREAMS':>7} {'DELIVERED':>10} {'LAST EVENT':<24} {'LAG':>8}"
    lines += ["", header]
    for g in data["groups"]:
        lag = "-" if g["max_lag_s"] is None else _human(g["max_lag_s"])
        lines.append(
            f"{g['group'][:40]:<40} {g['state']:<8} {g['streams']:>7} {g['delivered']:>10} "
            f"{(g['last_delivered_event'] or '-'):<24} {lag:>8}"
        )
        if streams:
            for s in g["stream_list"]:
                lag_s = "-" if s["lag_s"] is None else _human(s["lag_s"])
                lines.append(
                    f"  {s['stream'][:38]:<38} {s['state']:<8} {'':>7} {s['delivered']:>10} "
                    f"{(s['last_delivered_event'] or '-'):<24} {lag_s:>8}"
                )
    return "\n".join(lines)


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
