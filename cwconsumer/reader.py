"""Stream readers: ``CWC_WORKERS`` tasks, each taking the next due stream and
reading ONE page of it with GetLogEvents, then handing the stream back to the
schedule. One page per turn bounds every cycle (AWS returns empty pages
mid-stream, possibly for ever) and keeps streams fair.

Position handling (see :class:`~cwconsumer.model.Checkpoint`):

- ``skip`` events at the start of a re-read page were already delivered;
  they are dropped, but never an event later than the last delivered
  timestamp, so a changed page can cause a duplicate, never a loss;
- a rejected token (expired after 24 h, or unknown) falls back to time:
  ``startTime`` = last delivered timestamp (inclusive), skipping exactly the
  events of that millisecond already delivered — never ``last + 1 ms``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable

from cwconsumer.arns import group_account
from cwconsumer.aws import LogsClient
from cwconsumer.documents import Shaper
from cwconsumer.errors import (
    AccessDenied,
    AwsError,
    ClassRefused,
    NotFound,
    Throttled,
    TokenRejected,
)
from cwconsumer.flow import Budget
from cwconsumer.model import Checkpoint, Chunk, LogEvent
from cwconsumer.schedule import Schedule
from cwconsumer.streams import State, StreamState, Tier, quiet_delay_s

log = logging.getLogger("cwconsumer.reader")

PAGE_MAX_EVENTS = 10_000
EMPTY_PAGES_BEFORE_BACKOFF = 3
MIN_UNREAD_RECHECK_S = 0.5


class Reader:
    """GetLogEvents for every stream: ``CWC_WORKERS`` copies of :meth:`worker`
    share one reader. A worker reserves budget, takes the next due stream
    from the schedule, reads ONE page of it (:meth:`poll`), routes the
    shaped chunk to its lane (``route``) and hands the stream back with its
    next due time. Errors are per stream (a refused group is recorded in
    ``on_refused`` and not read); nothing here moves a checkpoint.
    """

    def __init__(
        self,
        logs: LogsClient,
        schedule: Schedule,
        budget: Budget,
        route: Callable[[Chunk], Awaitable[None]],
        *,
        region: str,
        parse_mode: str,
        poll_interval_s: float,
        idle_grace_s: float,
        quiet_poll_interval_s: float | None = None,
        on_read: Callable[[StreamState, int], None] = lambda st, n: None,
        on_state: Callable[[StreamState, State], None] = lambda st, old: None,
        ready: Callable[[StreamState], bool] = lambda st: True,
        park: Callable[[StreamState], None] = lambda st: None,
        account: str = "",
        on_refused: Callable[[str, str], None] = lambda group, reason: None,
        class_of: Callable[[str], str | None] = lambda group: None,
    ) -> None:
        self._logs = logs
        self._schedule = schedule
        self._budget = budget
        self._route = route
        self._region = region
        self._parse_mode = parse_mode
        self._poll_s = poll_interval_s
        self._grace_ms = int(idle_grace_s * 1000)
        self._quiet_max_s = max(poll_interval_s, quiet_poll_interval_s or poll_interval_s)
        self._on_read = on_read
        self._on_state = on_state
        self._ready = ready
        self._park = park
        self._account = account  # the credentials' account: part of event.id
        self._on_refused = on_refused
        self._class_of = class_of  # logGroupClass as listed or described (None: unknown)
        self.refused: dict[str, str] = {}  # group -> why GetLogEvents is refused for good

    async def worker(self) -> None:
        """Runs until cancelled. Memory first, then the call's slot, then a
        stream: a worker never holds a stream while it waits for budget or
        for its slot, so the schedule's order (earliest due first, backlogs
        taking turns) decides who reads next, at the moment the call can
        leave: a stream that became due meanwhile (hot, or just found) is not
        queued behind streams chosen a second earlier. Neither the memory nor
        the slot is given up when the stream taken cannot be read now (its
        lane is full): the next stream gets them."""
        while True:
            await self._budget.wait_room(PAGE_MAX_EVENTS)
            reserved = self._budget.try_reserve(PAGE_MAX_EVENTS)  # (no wait since: room)
            if not reserved:
                continue
            try:
                await self._logs.pace("GetLogEvents")
                st = await self._schedule.take()
                while not self._ready(st):
                    # Its lane is full (a slow or stuck sink lane): park it
                    # until the lane has room and serve other lanes' streams
                    # meanwhile; waiting here would let one lane capture every
                    # worker.
                    st.busy = False
                    self._park(st)
                    st = await self._schedule.take()
            except BaseException:
                self._budget.settle(reserved, 0, 0)
                raise
            delay: float | None = 0.0
            try:
                delay = await self.poll(st, reserved)
            finally:
                st.busy = False
                if delay is not None:
                    self._schedule.add(st, delay)

    async def poll(self, st: StreamState, reserved: int) -> float | None:
        """Read one page of ``st`` within ``reserved`` events of budget (the
        worker's reservation); returns when to poll it again (None: not)."""
        pos = st.read_pos
        if st.key.group in self.refused:
            self._budget.settle(reserved, 0, 0)
            return None  # the group's log class cannot be read: said once, not polled
        try:
            page = await self._logs.get_log_events(
                st.key.group,
                st.key.stream,
                pos.token,
                pos.start_time_ms if pos.token is None else None,
                limit=reserved,
                paced=False,
            )
        except BaseException as exc:
            self._budget.settle(reserved, 0, 0)
            return self._failed(st, exc)
        events = page.events
        if not events and page.next_token == pos.token:
            self._budget.settle(reserved, 0, 0)
            return self._end_of_stream(st)

        chunk = self._make_chunk(st, pos, events, page.next_token)
        self._budget.settle(reserved, len(chunk.docs), chunk.nbytes)
        st.read_pos = chunk.checkpoint_after()
        st.last_error = None
        if chunk.docs:
            st.pending_events += len(chunk.docs)
            st.events_in += len(chunk.docs)
            st.last_read_ms = _now_ms()
            self._on_read(st, len(chunk.docs))
        try:
            await self._route(chunk)
        except BaseException:
            # Not handed over (shutdown, or a failure): give the memory back
            # and the read position too; the checkpoint never covered these
            # events, so they are read again.
            self._budget.release(len(chunk.docs), chunk.nbytes)
            st.pending_events -= len(chunk.docs)
            st.read_pos = pos
            raise
        st.tier = Tier.HOT
        if events:
            st.empty_pages = 0
            st.idle_polls = 0
            self._set_state(st, State.READING)
            return 0.0
        # An empty page with a new token: more may follow (AWS-NOTES); keep
        # going, but back off after a few so an endless run of them (expired
        # retention) does not burn the shared API budget.
        st.empty_pages += 1
        if st.empty_pages <= EMPTY_PAGES_BEFORE_BACKOFF:
            return 0.0
        return min(self._poll_s, 0.25 * 2.0 ** (st.empty_pages - EMPTY_PAGES_BEFORE_BACKOFF))

    def _make_chunk(
        self, st: StreamState, pos: Checkpoint, events: list[LogEvent], next_token: str
    ) -> Chunk:
        i, n = 0, len(events)
        next_skip = 0
        if pos.skip:
            limit = pos.last_ts
            while i < n and i < pos.skip and (limit is None or events[i].timestamp <= limit):
                i += 1
            if i == n:
                next_skip = pos.skip - i  # the page ended before the delivered part did
        shaper = st.shaper
        if not isinstance(shaper, Shaper):
            shaper = st.shaper = Shaper(
                st.key.group,
                st.key.stream,
                self._region,
                self._parse_mode,
                account=group_account(st.key.group, self._account),
            )
        docs, timestamps, _last_ts, _last_ord, nbytes = shaper.shape(
            events[i:] if i else events, pos.last_ts, pos.last_ord
        )
        return Chunk(
            key=st.key,
            docs=docs,
            timestamps=timestamps,
            page_token=pos.token,
            page_start_time_ms=pos.start_time_ms if pos.token is None else None,
            offset=i,
            prev_ts=pos.last_ts,
            prev_ord=pos.last_ord,
            next_token=next_token,
            ends_page=True,
            nbytes=nbytes,
            next_skip=next_skip,
            generation=st.generation,
        )

    def _end_of_stream(self, st: StreamState) -> float | None:
        # Caught up: the Shaper (~4 KB and its caches) is made again by the
        # next page with events. Most known streams over months are finished
        # Lambda environments; they keep none.
        st.shaper = None
        st.empty_pages = 0
        st.idle_polls += 1
        now = _now_ms()
        if now - st.last_activity_ms > self._grace_ms and not st.has_unread_activity():
            self._set_state(st, State.IDLE)
            return None
        self._set_state(st, State.TAILING)
        if st.has_unread_activity():
            # Discovery reports events we have not read, yet the stream ends
            # here: the metadata ran ahead of what reading sees, or reports
            # events reading never returns (expired). Checked again soon, with
            # a back-off, but in the quiet tier: it must not take the turns
            # of streams that are returning data.
            st.tier = Tier.QUIET
            return min(self._poll_s, MIN_UNREAD_RECHECK_S * 2.0 ** min(st.idle_polls - 1, 6))
        st.tier = Tier.QUIET
        return quiet_delay_s(st.quiet_s(now), self._quiet_max_s)

    def fade(self, st: StreamState) -> bool:
        """The schedule's question about a quiet stream whose turn came: if
        it has been quiet beyond the grace window and discovery reports
        nothing unread, it becomes idle without a call (returns True)."""
        if st.state is not State.TAILING or st.has_unread_activity():
            return False
        if _now_ms() - st.last_activity_ms <= self._grace_ms:
            return False
        self._set_state(st, State.IDLE)
        return True

    def _failed(self, st: StreamState, exc: BaseException) -> float | None:
        if isinstance(exc, TokenRejected):
            st.read_pos = st.read_pos.time_fallback()
            log.warning(
                "forward token rejected; resuming by time",
                extra={
                    "stream": str(st.key),
                    "start_time_ms": st.read_pos.start_time_ms,
                    "skip": st.read_pos.skip,
                },
            )
            return 0.0
        if isinstance(exc, NotFound):
            log.warning("stream deleted; no longer polled", extra={"stream": str(st.key)})
            self._set_state(st, State.DELETED)
            return None
        if isinstance(exc, Throttled):
            st.last_error = str(exc)
            return random.uniform(0.5, 2.0)
        if (
            isinstance(exc, AwsError)
            and not exc.retriable
            and type(exc) is AwsError
            and (self._class_of(st.key.group) or "STANDARD") != "STANDARD"
        ):
            # AWS documents no answer for GetLogEvents on these classes: any
            # final refusal of a group listed as such is taken for one.
            exc = ClassRefused(f"{exc} (log class {self._class_of(st.key.group)})", code=exc.code)
        if isinstance(exc, ClassRefused):
            st.last_error = str(exc)
            group = st.key.group
            if group not in self.refused:
                self.refused[group] = str(exc)
                log.error(
                    "GetLogEvents is refused for this group's log class; its streams are "
                    "not read (other groups go on)",
                    extra={"group": group, "error": str(exc)},
                )
                self._on_refused(group, str(exc))
            return None
        if isinstance(exc, AccessDenied):
            st.last_error = str(exc)
            log.error(
                "access denied reading stream", extra={"stream": str(st.key), "error": str(exc)}
            )
            return 60.0
        if isinstance(exc, AwsError):
            st.last_error = str(exc)
            log.warning("GetLogEvents failed", extra={"stream": str(st.key), "error": str(exc)})
            return random.uniform(2.0, 5.0) if exc.retriable else 30.0
        raise exc

    def _set_state(self, st: StreamState, state: State) -> None:
        # DELETED is terminal for a StreamState: discovery may mark it while a
        # worker reads it, and a re-created stream gets a new StreamState.
        if st.state is not state and st.state is not State.DELETED:
            old, st.state = st.state, state
            self._on_state(st, old)


def _now_ms() -> int:
    return int(time.time() * 1000)
