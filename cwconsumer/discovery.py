"""Discovery: which groups and streams exist, and which streams are due.

Every ``CWC_DISCOVERY_INTERVAL``: list the groups matching each prefix
(DescribeLogGroups), then each group's streams ordered by LastEventTime,
descending (DescribeLogStreams, 50 a page). A walk stops early once a whole
page is streams we already know whose last event is older than the idle
grace window; the first walk of each group in a process, and every
``FULL_WALK_EVERY``-th cycle, go to the end, because paging is positional
and a stream whose order changes during a walk can be skipped by it.

Where a new stream starts: a group seen for the first time starts at
``CWC_START_POSITION`` (for streams that existed then); any stream created
later in a known group is read from its first event.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from cwconsumer.arns import group_name, parse_group_arn
from cwconsumer.aws import LogsClient
from cwconsumer.errors import AwsError, NotFound
from cwconsumer.model import Checkpoint, StreamKey
from cwconsumer.store import GroupRow, Store, StreamMeta, StreamRow
from cwconsumer.streams import Schedule, State, StreamState

log = logging.getLogger("cwconsumer.discovery")

FULL_WALK_EVERY = 10
MAX_PAGES = 2_000  # 100,000 streams per group per walk
MAX_GROUP_PAGES = 200


class Registry:
    """Every stream this process knows, and which of them need saving."""

    def __init__(self) -> None:
        self.streams: dict[StreamKey, StreamState] = {}
        self.groups: dict[str, GroupRow] = {}
        self.dirty: set[StreamKey] = set()

    def of_group(self, group: str) -> list[StreamState]:
        return [st for k, st in self.streams.items() if k.group == group]

    async def save(self, store: Store) -> None:
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


def group_matches(name: str, groups: Iterable[str], prefixes: Iterable[str]) -> bool:
    """A configured group (name or ARN), or one whose *name* has a configured prefix
    (a linked account's group found by prefix is keyed by its ARN)."""
    return name in set(groups) or any(group_name(name).startswith(p) for p in prefixes)


def listed_group_key(listed: dict[str, Any], own_account: str) -> str | None:
    """A listed group's identity: its name in the credentials' own account;
    its ARN (no ``:*``) in another (a linked source account, listed with
    ``includeLinkedAccounts``), so same-named groups stay apart."""
    name = listed.get("logGroupName")
    if not isinstance(name, str):
        return None
    raw_arn = listed.get("logGroupArn") or listed.get("arn")
    arn = parse_group_arn(str(raw_arn)) if raw_arn else None
    if arn is not None and own_account and arn.account != own_account:
        return str(arn)
    return name


class Discovery:
    def __init__(
        self,
        logs: LogsClient,
        store: Store,
        registry: Registry,
        schedule: Schedule,
        *,
        groups: tuple[str, ...],
        prefixes: tuple[str, ...],
        start_time_for_new_group: Callable[[int], int | None],
        idle_grace_s: float,
        account: str = "",
    ) -> None:
        self._logs = logs
        self._store = store
        self._reg = registry
        self._schedule = schedule
        self._groups = groups
        self._prefixes = prefixes
        self._start_for = start_time_for_new_group
        self._grace_ms = int(idle_grace_s * 1000)
        self._account = account  # the credentials' own account ("" unknown)
        self.group_class: dict[str, str] = {}  # logGroupClass as listed, per group key
        self._walked: set[str] = set()
        self._missing_logged: set[str] = set()
        self._recreated: set[StreamKey] = set()  # rows to overwrite, not keep
        # Every stream found during this process gets a generation never used
        # before (those loaded from the store have 0): a chunk read from a
        # deleted incarnation (stream or whole group created again) can never
        # pass for one of the new incarnation and commit over its checkpoint.
        self._generations = itertools.count(1)
        self.cycles = 0

    async def load(self) -> None:
        """Load known groups and streams of the configured groups from the store."""
        self._reg.groups = {
            name: row
            for name, row in (await self._store.load_groups()).items()
            if group_matches(name, self._groups, self._prefixes)
        }
        now = _now_ms()
        rows = await self._store.load_streams()
        # Every non-idle stream is polled once at start-up; the recently active
        # first, so they do not wait behind thousands of quiet ones.
        rows.sort(key=lambda r: -max(r.last_read_ms or 0, r.last_event_seen_ms or 0))
        for row in rows:
            group = self._reg.groups.get(row.key.group)
            if group is None:
                continue
            state = State(row.state) if row.state in State._value2member_map_ else State.NEW
            if group.deleted_ms is not None:
                state = State.DELETED
            st = StreamState(
                key=row.key,
                committed=row.checkpoint,
                read_pos=row.checkpoint,
                state=state,
                created_ms=row.created_ms,
                last_event_seen_ms=row.last_event_seen_ms,
                last_ingestion_seen_ms=row.last_ingestion_seen_ms,
                last_read_ms=row.last_read_ms,
                delivered_total=row.delivered,
                dead_lettered=row.dead_lettered,
                checkpoint_ms=row.checkpoint_ms,
            )
            self._reg.streams[row.key] = st
            if state is State.IDLE and st.has_unread_activity():
                state = st.state = State.TAILING
            if state not in (State.IDLE, State.DELETED):
                # Poll once at start-up: the previous run may have stopped mid-backlog.
                self._schedule.add(st)
        log.info(
            "checkpoints loaded",
            extra={
                "groups": len(self._reg.groups),
                "streams": len(self._reg.streams),
                "now_ms": now,
            },
        )

    async def run(self, interval_s: float, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            await self.cycle()
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(interval_s)

    async def cycle(self) -> None:
        self.cycles += 1
        names = list(self._groups)
        listed_ok = True
        listed: set[str] = set()
        for prefix in self._prefixes:
            found = await self._list_groups(prefix)
            if found is None:
                listed_ok = False
            else:
                listed.update(found)
        names.extend(sorted(listed - set(names)))
        if listed_ok and self._prefixes:
            for name, row in list(self._reg.groups.items()):
                if (
                    row.deleted_ms is None
                    and name not in listed
                    and name not in self._groups
                    and any(group_name(name).startswith(p) for p in self._prefixes)
                ):
                    await self._group_gone(name)
        for name in names:
            await self._walk_group(name)
        await self._reg.save(self._store)

    async def _list_groups(self, prefix: str) -> set[str] | None:
        names: set[str] = set()
        token: str | None = None
        for _ in range(MAX_GROUP_PAGES):
            listed_with = self._logs.list_groups_available
            try:
                groups, token = await self._logs.list_groups(prefix, token)
            except AwsError as exc:
                log.warning(
                    "listing log groups failed", extra={"prefix": prefix, "error": str(exc)}
                )
                return None
            if listed_with and not self._logs.list_groups_available:
                names.clear()  # fell back to DescribeLogGroups: its listing starts again
            for g in groups:
                key = self._group_key(g)
                if key is not None:
                    names.add(key)
                    if g.get("logGroupClass"):
                        self.group_class[key] = str(g["logGroupClass"])
            if not token:
                break
        return names

    def _group_key(self, listed: dict[str, Any]) -> str | None:
        return listed_group_key(listed, self._account)

    async def _walk_group(self, name: str) -> None:
        now = _now_ms()
        full = name not in self._walked or self.cycles % FULL_WALK_EVERY == 0
        token: str | None = None
        new_rows: list[StreamRow] = []
        found = 0
        complete = False
        for _page in range(MAX_PAGES):
            try:
                streams, token = await self._logs.describe_log_streams(name, token)
            except NotFound:
                await self._group_gone(name)
                return
            except AwsError as exc:
                log.warning("DescribeLogStreams failed", extra={"group": name, "error": str(exc)})
                break
            if _page == 0:
                group = await self._group_row(name, now)
            quiet_and_known = True
            for s in streams:
                known = self._stream_seen(group, s, now, new_rows)
                last = s.get("lastEventTimestamp")
                if not known or last is None or now - int(last) < self._grace_ms:
                    quiet_and_known = False
            if new_rows:
                # Stored before anyone may read them: a checkpoint is only ever
                # written over a row that exists (a walk of thousands of streams
                # takes long enough for the first ones to be delivered).
                await self._store.add_streams(new_rows, replace=self._recreated)
                self._recreated.clear()
                for row in new_rows:
                    st = self._reg.streams.get(row.key)
                    if st is not None and st.state is not State.IDLE:
                        self._schedule.add(st)
                found += len(new_rows)
                new_rows = []
            if not token:
                complete = True
                break
            if not full and quiet_and_known:
                complete = True
                break
        if complete:
            self._walked.add(name)
        if found:
            log.info("streams found", extra={"group": name, "count": found})

    async def _group_row(self, name: str, now: int) -> GroupRow:
        row = self._reg.groups.get(name)
        if row is None:
            row = GroupRow(name, now, self._start_for(now), None)
            await self._store.save_group(row)
            self._reg.groups[name] = row
            log.info("group found", extra={"group": name, "start_time_ms": row.start_time_ms})
        elif row.deleted_ms is not None:
            # Created again: the old checkpoints mean nothing in the new group.
            await self._store.forget_streams(name)
            for st in self._reg.of_group(name):
                self._schedule.cancel(st)
                del self._reg.streams[st.key]
            row.deleted_ms = None
            row.start_time_ms = None
            row.first_seen_ms = 0  # every stream of the new group from its beginning
            await self._store.save_group(row)
            log.info("group created again; reading it from the beginning", extra={"group": name})
        self._missing_logged.discard(name)
        return row

    def _stream_seen(
        self, group: GroupRow, s: dict[str, Any], now: int, new_rows: list[StreamRow]
    ) -> bool:
        """Returns whether the stream was already known."""
        key = StreamKey(group.name, s["logStreamName"])
        created = s.get("creationTime")
        last_event = s.get("lastEventTimestamp")
        last_ingest = s.get("lastIngestionTime")
        st = self._reg.streams.get(key)
        if st is not None and created is not None and st.created_ms is not None:
            if created > st.created_ms:
                # Created again, possibly between two looks (never seen gone): the
                # old token and checkpoint mean nothing in the new incarnation.
                if st.state is not State.DELETED:
                    log.info(
                        "stream created again; reading it from its first event",
                        extra={"stream": str(key)},
                    )
                self._schedule.cancel(st)
                st.state = State.DELETED  # terminal: a worker holding it drops it
                gen = next(self._generations)
                del self._reg.streams[key]
                self._recreated.add(key)
                st = None
                new_rows.append(self._new_stream(key, None, created, last_event, last_ingest, gen))
                return False
        if st is not None and st.state is State.DELETED:
            return True
        if st is None:
            existed_at_first_sight = created is None or created <= group.first_seen_ms
            start = group.start_time_ms if existed_at_first_sight else None
            gen = next(self._generations)
            new_rows.append(self._new_stream(key, start, created, last_event, last_ingest, gen))
            return False
        changed = False
        if last_event is not None and last_event != st.last_event_seen_ms:
            st.last_event_seen_ms = max(int(last_event), st.last_event_seen_ms or 0)
            changed = True
        if last_ingest is not None and last_ingest != st.last_ingestion_seen_ms:
            grew = st.last_ingestion_seen_ms is not None and last_ingest > st.last_ingestion_seen_ms
            st.last_ingestion_seen_ms = max(int(last_ingest), st.last_ingestion_seen_ms or 0)
            changed = True
            if st.state is State.IDLE and grew:
                self._wake(st)
        if st.state is State.IDLE and st.has_unread_activity():
            self._wake(st)
        if changed:
            self._reg.dirty.add(key)
        return True

    def _new_stream(
        self,
        key: StreamKey,
        start: int | None,
        created: int | None,
        last_event: int | None,
        last_ingest: int | None,
        generation: int,
    ) -> StreamRow:
        cp = Checkpoint(None, start, 0, None, -1)
        st = StreamState(
            key=key,
            committed=cp,
            read_pos=cp,
            created_ms=created,
            last_event_seen_ms=last_event,
            last_ingestion_seen_ms=last_ingest,
            generation=generation,
        )
        self._reg.streams[key] = st
        nothing_to_read = start is not None and (last_event is None or last_event < start)
        if nothing_to_read and _now_ms() - st.last_activity_ms > self._grace_ms:
            st.state = State.IDLE  # (others are scheduled once their row is stored)
        return StreamRow(
            key, created, cp, 0, 0, st.state.value, last_event, last_ingest, None, None
        )

    def _wake(self, st: StreamState) -> None:
        st.state = State.TAILING
        st.idle_polls = 0
        self._reg.dirty.add(st.key)
        self._schedule.add(st)

    async def _group_gone(self, name: str) -> None:
        row = self._reg.groups.get(name)
        if row is None:
            if name not in self._missing_logged:
                self._missing_logged.add(name)
                log.warning("log group not found; will look again", extra={"group": name})
            return
        if row.deleted_ms is not None:
            return
        row.deleted_ms = _now_ms()
        await self._store.save_group(row)
        for st in self._reg.of_group(name):
            self._schedule.cancel(st)
            st.state = State.DELETED
            self._reg.dirty.add(st.key)
        self._walked.discard(name)
        log.warning("log group deleted; its streams are no longer polled", extra={"group": name})


def _now_ms() -> int:
    return int(time.time() * 1000)
