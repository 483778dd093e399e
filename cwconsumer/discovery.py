"""Discovery: which groups and streams exist, and which streams have news.

Discovery runs every ``tick_s`` (a third of ``CWC_DISCOVERY_INTERVAL``):

- groups (DescribeLogGroups per prefix) are listed every
  ``CWC_DISCOVERY_INTERVAL``;
- each group's streams are walked newest first (DescribeLogStreams ordered
  by LastEventTime, descending, 50 a page) only as deep as what may have
  changed. That walk is the change feed: a stream reported with activity
  newer than what was read is made due at once (hot), a stream created
  while running is read at once.

How deep a walk goes (its cost follows what changed, not the group's size):

- a *feed* walk (every tick) stops at the first page that reaches streams
  whose last event is older than the previous complete walk's start minus
  :data:`FEED_MARGIN_S` (usually one page);
- a *deep* walk (every ``CWC_IDLE_GRACE``) stops at the previous complete
  deep walk's start minus ``CWC_IDLE_GRACE``: stream metadata is eventually
  consistent (up to an hour late) and paging is positional, so a stream
  whose timestamps moved late, or moved during a walk, is found by the next
  deep walk at the latest. Its start is stored (``groups.walked_ms``), so a
  restart does not walk the whole group again;
- the first walk of a group seen for the first time with a start position
  stops at streams whose last event is older than the start position minus
  ``CWC_IDLE_GRACE`` (nothing after the start position can be in them); they
  are never recorded and never read. With ``CWC_START_POSITION=beginning``
  the first walk goes to the end.

Where a new stream starts: a group seen for the first time starts at
``CWC_START_POSITION`` (for streams that existed then); any stream created
later in a known group is read from its first event. A stream forgotten
(``CWC_FORGET_AFTER``) that shows activity again is a new stream to this
rule: read from its beginning, or from the start position if it existed
when the group was first seen (documented re-delivery, same ``event.id``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from cwconsumer.arns import group_name
from cwconsumer.aws import LogsClient
from cwconsumer.errors import AwsError, NotFound
from cwconsumer.forget import Forgetter
from cwconsumer.grouplist import GroupLister, group_matches
from cwconsumer.model import Checkpoint, StreamKey
from cwconsumer.registry import Registry
from cwconsumer.schedule import Schedule
from cwconsumer.store import CheckpointStore, GroupRow, StreamRow
from cwconsumer.streams import State, StreamState, Tier, news_wait_s

__all__ = ["Discovery", "Registry", "group_matches"]

log = logging.getLogger("cwconsumer.discovery")

MAX_PAGES = 200
"""DescribeLogStreams pages (50 streams each) of one group's walk per tick
(40 s at the default CWC_DESCRIBE_RATE, so the other groups' feeds go on): a
deep walk longer than that goes on from where it stopped at the next tick,
after a feed walk of the group's top, so it ends however large the group."""
FEED_MARGIN_S = 10.0
"""A feed walk re-reads this much (at most one tick) before the previous
walk's start (clock skew, a walk that took long, metadata a little late)."""


class Discovery:
    """Finds the configured groups and their streams (module docstring: how
    deep each walk goes), records new ones in the store and the registry,
    wakes streams with news in the schedule, and forgets idle ones. Call
    :meth:`load` once, then :meth:`cycle` every :attr:`tick_s` (or
    :meth:`run`). Holds no events: the service restarts it after a failure.
    """

    def __init__(
        self,
        logs: LogsClient,
        store: CheckpointStore,
        registry: Registry,
        schedule: Schedule,
        *,
        groups: tuple[str, ...],
        prefixes: tuple[str, ...],
        start_time_for_new_group: Callable[[int], int | None],
        idle_grace_s: float,
        account: str = "",
        discovery_interval_s: float = 30.0,
        forget_after_s: float | None = None,
        retention_days: Callable[[str], int | None] = lambda group: None,
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
        self._lister = GroupLister(logs, account)
        self.group_class = self._lister.classes  # logGroupClass as listed, per group key
        self.forgetter = Forgetter(
            store,
            registry,
            schedule,
            forget_after_s=forget_after_s,
            retention_days=retention_days,  # a group's retentionInDays (None: never expire)
        )
        self.tick_s = discovery_interval_s / 3
        self._groups_every_ms = int(discovery_interval_s * 1000)
        self._groups_listed_ms = -(10**15)
        self._listed: list[str] = []
        self._feed_mark: dict[str, int] = {}  # group -> start of the last complete walk
        # group -> a deep walk cut by MAX_PAGES: (its next page's token, when it
        # started, its stop line); it goes on at the next tick.
        self._resume: dict[str, tuple[str, int, int | None]] = {}
        self._missing_logged: set[str] = set()
        self._recreated: set[StreamKey] = set()  # rows to overwrite, not keep
        # Every stream found during this process gets a generation never used
        # before (those loaded from the store have 0): a chunk read from a
        # deleted incarnation (stream or whole group created again) can never
        # pass for one of the new incarnation and commit over its checkpoint.
        self._generations = itertools.count(1)
        self.cycles = 0
        self.pages: dict[str, int] = {}  # DescribeLogStreams pages per group, all time
        self.deep_walks = 0

    async def load(self) -> None:
        """Load known groups and streams of the configured groups from the store."""
        self._reg.groups = {
            name: row
            for name, row in (await self._store.load_groups()).items()
            if group_matches(name, self._groups, self._prefixes)
        }
        rows = await self._store.load_streams()
        # Streams that were being read are polled once at start-up (the previous
        # run may have stopped mid-backlog): the recently active first, and
        # caught-up ones in the quiet tier, so neither waits behind the other.
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
            if state is State.IDLE and st.has_unread_activity():
                st.state = State.TAILING
            if st.state is State.TAILING:
                st.tier = Tier.QUIET
            self._reg.add(st)
            if st.state not in (State.IDLE, State.DELETED):
                self._schedule.add(st)
        log.info(
            "checkpoints loaded",
            extra={"groups": len(self._reg.groups), "streams": len(self._reg.streams)},
        )

    async def run(
        self, ok: Callable[[], None] | None = None, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """:meth:`cycle` every :attr:`tick_s` until cancelled; started after the
        first; ``ok()`` after every cycle that completed (a failure reported in
        /healthz is cleared by the next one that works)."""
        started = False
        while True:
            await self.cycle()
            if ok is not None:
                ok()
            if not started:
                task_status.started()
                started = True
            await self.until_next_tick()

    async def until_next_tick(self) -> None:
        """Sleep :attr:`tick_s`, pruning meanwhile whenever due
        (:meth:`Forgetter.sleep`)."""
        await self.forgetter.sleep(self.tick_s)

    async def cycle(self) -> None:
        """One tick: groups when due, a walk of every group, pruning when due."""
        self.cycles += 1
        now = _now_ms()
        if now - self._groups_listed_ms >= self._groups_every_ms:
            self._groups_listed_ms = now
            self._listed = await self._refresh_groups()
        self.forgetter.settle()
        for name in self._listed:
            await self._walk_group(name)
            await self.forgetter.if_due()
        await self._reg.save(self._store)
        await self.forgetter.if_due()

    async def _refresh_groups(self) -> list[str]:
        names = list(self._groups)
        listed_ok = True
        listed: set[str] = set()
        for prefix in self._prefixes:
            found = await self._lister.list(prefix)
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
        return names

    def _stop_line(self, row: GroupRow | None, now: int) -> tuple[int | None, bool]:
        """(the last-event time below which this walk may stop, whether it is
        a deep walk). None: walk to the end."""
        if row is None or row.walked_ms is None:
            # First walk: with a start position, streams whose last event is
            # older than it (minus the grace) cannot hold anything to read.
            start = self._start_for(now) if row is None else row.start_time_ms
            if row is not None and row.first_seen_ms == 0:
                start = None  # a group created again: everything from its beginning
            return (None if start is None else start - self._grace_ms), True
        if now - row.walked_ms >= self._grace_ms or row.name not in self._feed_mark:
            return row.walked_ms - self._grace_ms, True
        margin_s = min(FEED_MARGIN_S, self.tick_s)
        return self._feed_mark[row.name] - int(margin_s * 1000), False

    async def _walk_group(self, name: str) -> None:
        now = _now_ms()
        row = self._reg.groups.get(name)
        resume = self._resume.pop(name, None)
        if resume is not None and row is not None and row.deleted_ms is None:
            # A deep walk cut short at the last tick: first what changed since
            # it started (the feed, from the top), then on from where it stopped.
            token, started, stop_before = resume
            margin_ms = int(min(FEED_MARGIN_S, self.tick_s) * 1000)
            await self._walk(name, now, None, self._feed_mark.get(name, started) - margin_ms)
            row = self._reg.groups.get(name)
            if row is not None and row.deleted_ms is None:
                await self._walk(name, started, token, stop_before, deep=True)
            return
        if row is not None and row.deleted_ms is not None:
            stop_before, deep = None, True  # created again: read from its beginning
        else:
            stop_before, deep = self._stop_line(row, now)
        await self._walk(name, now, None, stop_before, deep=deep)

    async def _walk(
        self,
        name: str,
        started: int,
        token: str | None,
        stop_before: int | None,
        *,
        deep: bool = False,
    ) -> bool:
        """Walk ``name``'s streams newest first from ``token`` (None: the top)
        down to streams whose last event is older than ``stop_before`` (None:
        the end), at most MAX_PAGES pages. Returns whether it got there; a
        deep walk that did not is remembered and goes on at the next tick."""
        now = _now_ms()
        resumed = token is not None
        new_rows: list[StreamRow] = []
        found = 0
        complete = False
        group: GroupRow | None = None
        for _page in range(MAX_PAGES):
            try:
                streams, next_token = await self._logs.describe_log_streams(name, token)
            except NotFound:
                await self._group_gone(name)
                return False
            except AwsError as exc:
                log.warning("DescribeLogStreams failed", extra={"group": name, "error": str(exc)})
                if deep and token is not None and (resumed or exc.retriable):
                    if exc.retriable:
                        self._resume[name] = (token, started, stop_before)
                    else:  # (a token that expired or is refused: the walk starts again)
                        self._feed_mark.pop(name, None)
                break
            token = next_token
            self.pages[name] = self.pages.get(name, 0) + 1
            if group is None:
                group = await self._group_row(name, started)
            oldest: int | None = None
            for s in streams:
                self._stream_seen(group, s, now, new_rows)
                last = s.get("lastEventTimestamp")
                oldest = None if last is None else int(last)
            if new_rows:
                # Stored before anyone may read them: a checkpoint is only ever
                # written over a row that exists (a walk of thousands of streams
                # takes long enough for the first ones to be delivered).
                await self._store.add_streams(new_rows, replace=self._recreated)
                self._recreated.clear()
                for r in new_rows:
                    st = self._reg.streams.get(r.key)
                    if st is not None and st.state is not State.IDLE:
                        self._schedule.add(st, -news_wait_s(st, now))
                found += len(new_rows)
                new_rows = []
            # Between pages too: a long walk (a deep walk of a busy group)
            # must not hold forgetting back by its length.
            await self.forgetter.if_due()
            if not token:
                complete = True
                break
            if stop_before is not None and (oldest is None or oldest < stop_before):
                complete = True
                break
        else:
            if deep and token and group is not None:
                # Cut short: the top as of ``started`` is covered (feed walks
                # from there on); the rest at the next tick, from here.
                self._resume[name] = (token, started, stop_before)
                self._feed_mark.setdefault(name, started)
        if complete and group is not None:
            if not resumed:
                self._feed_mark[name] = now
            if deep:
                self.deep_walks += 1
                group.walked_ms = started
                await self._store.save_group_walked(name, started)
        if found:
            log.info("streams found", extra={"group": name, "count": found})
        return complete

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
                self._reg.remove(st.key)
            row.deleted_ms = None
            row.start_time_ms = None
            row.first_seen_ms = 0  # every stream of the new group from its beginning
            row.walked_ms = None
            self._feed_mark.pop(name, None)
            self._resume.pop(name, None)
            await self._store.save_group(row)
            log.info("group created again; reading it from the beginning", extra={"group": name})
        self._missing_logged.discard(name)
        return row

    def _stream_seen(
        self, group: GroupRow, s: dict[str, Any], now: int, new_rows: list[StreamRow]
    ) -> None:
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
                self._reg.set_state(st, State.DELETED)  # terminal: a worker drops it
                gen = next(self._generations)
                self._reg.remove(key)
                self._recreated.add(key)
                new_rows.append(self._new_stream(key, None, created, last_event, last_ingest, gen))
                return
        if st is not None and st.state is State.DELETED:
            return
        if st is None:
            existed_at_first_sight = created is None or created <= group.first_seen_ms
            start = group.start_time_ms if existed_at_first_sight else None
            if not self._worth_recording(group, start, created, last_event, now):
                return
            gen = next(self._generations)
            new_rows.append(self._new_stream(key, start, created, last_event, last_ingest, gen))
            return
        changed = False
        if last_event is not None and last_event != st.last_event_seen_ms:
            st.last_event_seen_ms = max(int(last_event), st.last_event_seen_ms or 0)
            changed = True
        grew = False
        if last_ingest is not None and last_ingest != st.last_ingestion_seen_ms:
            grew = st.last_ingestion_seen_ms is not None and last_ingest > st.last_ingestion_seen_ms
            st.last_ingestion_seen_ms = max(int(last_ingest), st.last_ingestion_seen_ms or 0)
            changed = True
        if changed:
            self._reg.dirty.add(key)
        if st.has_unread_activity() or (grew and st.state is State.IDLE):
            self._wake(st)

    def _worth_recording(
        self,
        group: GroupRow,
        start: int | None,
        created: int | None,
        last_event: int | None,
        now: int,
    ) -> bool:
        """A stream never recorded (or forgotten) is recorded only if it can
        hold something to read: nothing after the start position can be in a
        stream whose metadata says its last event is older than the start
        position minus the grace; and a stream forgotten for being idle, that
        shows nothing new since, stays forgotten."""
        if start is not None and (last_event is None or last_event < start - self._grace_ms):
            return False
        window = self.forgetter.window_ms(group.name)
        if window is not None and group.walked_ms is not None:
            line = now - window
            if (last_event is None or last_event < line) and (created or 0) < line:
                return False
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
        nothing_to_read = start is not None and (last_event is None or last_event < start)
        if nothing_to_read and _now_ms() - st.last_activity_ms > self._grace_ms:
            st.state = State.IDLE  # (others are scheduled once their row is stored)
        self._reg.add(st)
        return StreamRow(
            key, created, cp, 0, 0, st.state.value, last_event, last_ingest, None, None
        )

    def _wake(self, st: StreamState) -> None:
        """Discovery reports activity not read yet: due at once, hot."""
        if st.state is State.IDLE:
            self._reg.set_state(st, State.TAILING)
            self._reg.dirty.add(st.key)
        st.idle_polls = 0
        st.tier = Tier.HOT
        self._schedule.add(st, -news_wait_s(st, _now_ms()))

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
            self._reg.set_state(st, State.DELETED)
            self._reg.dirty.add(st.key)
        self._feed_mark.pop(name, None)
        self._resume.pop(name, None)
        log.warning("log group deleted; its streams are no longer polled", extra={"group": name})


def _now_ms() -> int:
    return int(time.time() * 1000)
