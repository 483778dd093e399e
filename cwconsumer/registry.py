"""Every stream this process knows, with per-group aggregates kept as streams
change, so that views (``/stats``, ``/metrics``) and the schedule never have to
walk all of them: a Lambda group can hold 10^6 streams, nearly all idle.

All changes of membership and state go through :meth:`Registry.add`,
:meth:`Registry.remove` and :meth:`Registry.set_state`.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator

from cwconsumer.model import StreamKey
from cwconsumer.store import CheckpointStore, GroupRow, StreamMeta
from cwconsumer.streams import State, StreamState

_ASLEEP = (State.IDLE, State.DELETED)


class Registry:
    """Streams by key and by group; ``awake`` holds those neither idle nor
    deleted (the only ones whose figures change); ``counts`` per (group,
    state); ``totals`` per group [read, delivered, dead-lettered] since start;
    ``newest`` per group: the newest delivered event timestamp."""

    def __init__(self, on_remove: Callable[[StreamKey], None] = lambda key: None) -> None:
        self._on_remove = on_remove
        self.streams: dict[StreamKey, StreamState] = {}
        self.by_group: dict[str, dict[str, StreamState]] = {}
        self.awake: dict[StreamKey, StreamState] = {}
        self.groups: dict[str, GroupRow] = {}
        self.dirty: set[StreamKey] = set()
        self.counts: Counter[tuple[str, State]] = Counter()
        self.totals: dict[str, list[int]] = {}
        self.newest: dict[str, int] = {}
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self.streams)

    def add(self, st: StreamState) -> None:
        old = self.streams.get(st.key)
        if old is not None:
            self.remove(st.key)
        self.streams[st.key] = st
        self.by_group.setdefault(st.key.group, {})[st.key.stream] = st
        self.counts[(st.key.group, st.state)] += 1
        if st.state not in _ASLEEP:
            self.awake[st.key] = st
        last = st.committed.last_ts
        if last is not None and last > self.newest.get(st.key.group, -1):
            self.newest[st.key.group] = last

    def remove(self, key: StreamKey) -> StreamState | None:
        st = self.streams.pop(key, None)
        if st is None:
            return None
        members = self.by_group.get(key.group)
        if members is not None:
            members.pop(key.stream, None)
            if not members:
                del self.by_group[key.group]
        self.counts[(key.group, st.state)] -= 1
        if self.counts[(key.group, st.state)] <= 0:
            del self.counts[(key.group, st.state)]
        self.awake.pop(key, None)
        self.dirty.discard(key)
        self._on_remove(key)
        return st

    def set_state(self, st: StreamState, state: State) -> None:
        """Change a stream's state (a stream not registered only changes)."""
        old = st.state
        if old is state:
            return
        st.state = state
        self.moved(st, old)

    def moved(self, st: StreamState, old: State) -> None:
        """``st.state`` was changed from ``old`` by its owner (the reader)."""
        if self.streams.get(st.key) is not st or old is st.state:
            return
        g = st.key.group
        self.counts[(g, old)] -= 1
        if self.counts[(g, old)] <= 0:
            del self.counts[(g, old)]
        self.counts[(g, st.state)] += 1
        if st.state in _ASLEEP:
            self.awake.pop(st.key, None)
        else:
            self.awake[st.key] = st
        self.dirty.add(st.key)

    def of_group(self, group: str) -> list[StreamState]:
        return list(self.by_group.get(group, {}).values())

    def read(self, st: StreamState, n: int) -> None:
        self._totals(st.key.group)[0] += n

    def delivered(self, group: str, n: int, dead: int = 0, last_ts: int | None = None) -> None:
        t = self._totals(group)
        t[1] += n
        t[2] += dead
        if last_ts is not None and last_ts > self.newest.get(group, -1):
            self.newest[group] = last_ts

    def _totals(self, group: str) -> list[int]:
        t = self.totals.get(group)
        if t is None:
            t = self.totals[group] = [0, 0, 0]
        return t

    def group_counts(self, group: str) -> dict[str, int]:
        return {s.value: self.counts.get((group, s), 0) for s in State}

    def page(self, group: str, after: str | None, limit: int) -> Iterator[StreamState]:
        """Up to ``limit`` streams of ``group`` in name order after ``after``."""
        members = self.by_group.get(group, {})
        names = members if after is None else (n for n in members if n > after)
        for name in heapq.nsmallest(limit, names):  # O(n log limit), not a full sort
            yield members[name]

    async def save(self, store: CheckpointStore) -> None:
        """Write the dirty stream states; they stay dirty unless the write happened."""
        metas = self.metas()
        try:
            await store.save_meta(metas)
        except BaseException:
            self.dirty.update(m.key for m in metas)
            raise

    def metas(self) -> list[StreamMeta]:
        out = []
        for key in self.dirty:
            st = self.streams.get(key)
            if st is not None:
                out.append(
                    StreamMeta(
                        key,
                        st.state.value,
                        st.last_event_seen_ms,
                        st.last_ingestion_seen_ms,
                        st.last_read_ms,
                    )
                )
        self.dirty.clear()
        return out

    def forgettable(self, st: StreamState, now_ms: int, forget_after_ms: int | None) -> bool:
        """Whether ``st`` may be forgotten now: deleted (gone for AWS) or idle
        beyond ``forget_after_ms`` (None: never) by every clock we have, and in
        either case with nothing read and undelivered, nothing reported
        unread, no worker on it. Never a stream with undelivered events."""
        if st.pending_events or st.busy or st.scheduled or st.committed != st.read_pos:
            return False
        if st.state is State.DELETED:
            return True
        if forget_after_ms is None:
            return False
        line = now_ms - forget_after_ms
        return (
            st.state is State.IDLE
            and st.settled()
            and st.last_activity_ms < line
            and (st.last_event_seen_ms or 0) < line
            and (st.checkpoint_ms or 0) < line
        )
