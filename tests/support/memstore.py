"""An in-memory :class:`~cwconsumer.store.CheckpointStore` for fast tests above
the edge: the same rows and rules as the SQLite store's (an upsert on commit
that adds to the counts, new streams inserted unless already known, dead
letters recorded with the checkpoint they belong to, all or nothing), and
failures on demand.

It is not a second implementation to trust: tests of the store itself use the
real SQLite file (tests/test_database.py, tests/test_store_faults.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from cwconsumer.errors import StoreError
from cwconsumer.model import Checkpoint, Commit, DeadLetter, StreamKey
from cwconsumer.store import GroupInfoRow, GroupRow, StreamMeta, StreamRow


class MemoryStore:
    """Groups, streams and dead letters in dicts. ``fail_commits`` next
    commits raise ``error`` (retriable by default) before changing anything."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupRow] = {}
        self.streams: dict[StreamKey, StreamRow] = {}
        self.dead_letters: list[DeadLetter] = []
        self.group_info: dict[str, GroupInfoRow] = {}
        self.commits = 0
        self.fail_commits = 0
        self.error = StoreError("cannot write memory: database is locked", retriable=True)

    async def load_groups(self) -> dict[str, GroupRow]:
        return {k: dataclasses.replace(v) for k, v in self.groups.items()}

    async def load_streams(self, group: str | None = None) -> list[StreamRow]:
        rows = [
            dataclasses.replace(r)
            for k, r in sorted(self.streams.items(), key=lambda kv: (kv[0].group, kv[0].stream))
            if group is None or k.group == group
        ]
        return rows

    async def save_group(self, row: GroupRow) -> None:
        self.groups[row.name] = dataclasses.replace(row)

    async def save_group_walked(self, name: str, walked_ms: int | None) -> None:
        if name in self.groups:
            self.groups[name].walked_ms = walked_ms

    async def add_streams(
        self, rows: Sequence[StreamRow], *, replace: Iterable[StreamKey] = ()
    ) -> None:
        for key in replace:
            self.streams.pop(key, None)
        for r in rows:
            self.streams.setdefault(r.key, dataclasses.replace(r))

    async def forget_streams(self, group: str, streams: Iterable[str] | None = None) -> None:
        names = None if streams is None else set(streams)
        for key in [k for k in self.streams if k.group == group]:
            if names is None or key.stream in names:
                del self.streams[key]

    async def prune_streams(self, keys: Sequence[StreamKey]) -> None:
        for key in keys:
            self.streams.pop(key, None)

    async def save_meta(self, metas: Sequence[StreamMeta]) -> None:
        for m in metas:
            row = self.streams.get(m.key)
            if row is not None:
                row.state = m.state
                row.last_event_seen_ms = m.last_event_seen_ms
                row.last_ingestion_seen_ms = m.last_ingestion_seen_ms
                row.last_read_ms = m.last_read_ms

    async def commit(
        self, commits: Sequence[Commit], dead: Sequence[DeadLetter] = (), now_ms: int | None = None
    ) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise self.error
        self.commits += 1
        self.dead_letters.extend(dead)
        for c in commits:
            row = self.streams.get(c.key)
            if row is None:
                row = self.streams[c.key] = StreamRow(
                    c.key, None, Checkpoint(None, None, 0, None, -1), 0, 0, "reading",
                    None, None, None, None,
                )  # fmt: skip
            row.checkpoint = c.checkpoint
            row.delivered += c.delivered
            row.dead_lettered += c.dead_lettered
            row.checkpoint_ms = now_ms

    async def load_group_info(self) -> dict[str, GroupInfoRow]:
        return dict(self.group_info)

    async def save_group_info(self, rows: Sequence[GroupInfoRow], keep: Iterable[str]) -> None:
        self.group_info.update((r.name, r) for r in rows)
        kept = set(keep)
        for name in [n for n in self.group_info if n not in kept]:
            del self.group_info[name]
