"""``cwconsumer reset --group G [--stream S] --to beginning|end|TIME [--dry-run]``:
move checkpoints so the next ``run`` reads from there.

Refused while a ``run`` holds the database: the lease check is part of the
write's own statement (:meth:`Store.reset_checkpoints`), so a run starting
between a separate check and the write could not slip in. Like ``status`` it
changes neither the journal mode nor the schema.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cwconsumer import logs as logsetup
from cwconsumer.commands import run_async
from cwconsumer.config import (
    StartPosition,
    load_existing_db_path,
    load_lease_ttl_s,
    parse_start_position,
)
from cwconsumer.errors import ConfigError
from cwconsumer.store import Store
from cwconsumer.units import format_time_ms as iso


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Exit 0 done (or previewed with --dry-run), 1 refused while a run holds
    the database, 2 bad arguments or an unknown group/stream."""
    path = load_existing_db_path(environ)
    now = int(time.time() * 1000)
    problems: list[str] = []
    try:
        target = parse_start_position(args.to, now)
    except ValueError as exc:
        problems.append(f"--to: {exc}")
    try:
        ttl_s = load_lease_ttl_s(environ)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    logsetup.setup("WARNING", "text")

    async def go() -> int:
        outcome = await reset_checkpoints(
            path,
            args.group,
            args.stream,
            target,
            now_ms=now,
            ttl_ms=int(ttl_s * 1000),
            dry_run=args.dry_run,
        )
        for line in outcome.out:
            print(line)
        for line in outcome.err:
            print(f"cwconsumer: {line}", file=sys.stderr)
        return outcome.code

    return run_async(go)


@dataclass(slots=True)
class ResetOutcome:
    """What ``reset`` printed and its exit status (0 done or previewed,
    1 refused because a run holds the database, 2 unknown group/stream)."""

    code: int
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)


def describe_target(target: StartPosition, start_ms: int | None) -> str:
    """Where the checkpoints move to, in words."""
    if target.kind == "beginning":
        return "the beginning (every event CloudWatch still holds)"
    if target.kind == "end":
        return f"the end (events from {iso(start_ms)} on; nothing older is read again)"
    return f"{iso(start_ms)} (events at or after that time)"


async def reset_checkpoints(
    path: str,
    group: str,
    stream: str | None,
    target: StartPosition,
    *,
    now_ms: int,
    ttl_ms: int,
    dry_run: bool,
) -> ResetOutcome:
    """Move the checkpoints of ``group`` (one ``stream`` of it, or all) so
    the next ``run`` reads from ``target``. ``end`` means now: events that
    arrive from this moment on. Refused while a ``run`` holds the lease —
    checked in the same transaction as the write."""
    start_ms = target.resolve(now_ms)
    store = await Store.open_existing(path)
    try:
        groups = await store.load_groups()
        if group not in groups:
            known = sorted(groups)
            hint = f"; known: {', '.join(known[:10])}" + (" ..." if len(known) > 10 else "")
            return ResetOutcome(
                2, err=[f"--group: no group {group!r} in {path}" + (hint if known else "")]
            )
        rows = await store.load_streams(group)
        if stream is not None:
            rows = [r for r in rows if r.key.stream == stream]
            if not rows:
                return ResetOutcome(2, err=[f"--stream: group {group!r} has no stream {stream!r}"])
        if not rows:
            return ResetOutcome(2, err=[f"--group: group {group!r} has no streams yet"])
        lease = await store.lease_info()
        result = ResetOutcome(0)
        verb = "would move" if dry_run else "moving"
        result.out.append(
            f"{verb} {len(rows)} stream(s) of {group} to {describe_target(target, start_ms)}:"
        )
        for r in rows:
            last = iso(r.checkpoint.last_ts) or "nothing delivered"
            result.out.append(f"  {r.key.stream}: last delivered {last}")
        holder = f"{lease.host} pid {lease.pid}"
        if dry_run:
            if lease.live(now_ms, ttl_ms):
                result.err.append(
                    f"note: a run holds the database ({holder}); reset would be refused now"
                )
            result.out.append("dry run: nothing changed")
            return result
        changed = await store.reset_checkpoints(
            group, stream, start_ms, now_ms=now_ms, lease_stale_before_ms=now_ms - ttl_ms
        )
        if changed == 0:
            lease = await store.lease_info()
            return ResetOutcome(
                1,
                err=[
                    f"refused: a run holds the database {path} ({lease.host} pid {lease.pid}); "
                    "stop every run on this database first"
                ],
            )
        result.out.append(f"{changed} stream checkpoint(s) reset; the next run reads from there")
        return result
    finally:
        await store.aclose()
