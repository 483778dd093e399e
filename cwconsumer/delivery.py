"""Delivery lanes: batches to the sink, and checkpoints after confirmation.

Streams are hashed onto ``CWC_SINK_CONCURRENCY`` lanes; each lane has ONE
batch in flight, so a stream's later events never reach the sink before its
earlier ones were confirmed, also across retries. Concurrency comes from
many streams, not from reordering one.

A lane's cycle: collect chunks until ``CWC_BATCH_MAX_EVENTS`` /
``_BYTES`` / ``_WAIT``; send; on failure retry with capped exponential
back-off and jitter (``Retry-After`` honoured) until it is confirmed, split
on 413, bisect a refusal down to the events refused and dead-letter those;
then move every stream of the batch to the position after its last event —
in one SQLite transaction that also records the dead letters — and give the
memory back to the budget.

Failure rules (crash-only, docs/reliability.md):

- the checkpoint and the dead letters it depends on commit together or not
  at all; a commit refused for a retriable reason (database locked, disk
  full, I/O error) is tried again with back-off for up to
  :data:`COMMIT_RETRY_S`, never dropped; after that, or for any other store
  error, the lane raises and the process exits 1 with the cause (the
  checkpoint never passed the batch: it is read and sent again);
- the memory budget is given back in ``finally``;
- back-off never overflows however long the sink fails (the exponent is
  capped);
- a refusal that does not single out events (a status that refuses the
  request, such as 404 for a wrong path, or every event of a batch refused
  with the same answer) is the sink's problem: no dead letters, slow retries,
  ``/healthz`` 503 with the reason, as for refused credentials;
- before each send, a lane whose lease was not proven recently has it proven
  (``guard``), so a holder that was frozen past its lease ships nothing more.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain

import anyio

from cwconsumer.batching import (
    Rejected,
    SendPlan,
    batch_full,
    plan_checkpoints,
    refused_alike,
    sink_wide,
    take_from_head,
)
from cwconsumer.errors import LeaseLost, StoreError
from cwconsumer.flow import Budget, Channel
from cwconsumer.health import Health
from cwconsumer.metrics import Metrics
from cwconsumer.model import Chunk, Doc, OutBatch, StreamKey
from cwconsumer.sinks.base import Outcome, SendResult, Sink
from cwconsumer.store import CheckpointStore

log = logging.getLogger("cwconsumer.delivery")

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
AUTH_BACKOFF_MIN_S = 2.0
AUTH_BACKOFF_CAP_S = 60.0
LANE_CHANNEL_CHUNKS = 64
COMMIT_RETRY_S = 300.0
"""How long a lane keeps trying to commit a confirmed batch's checkpoint while
the database refuses it for a retriable reason; then the process exits 1."""
COMMIT_BACKOFF_CAP_S = 10.0
RESTART_BACKOFF_CAP_S = 60.0
_MAX_EXPONENT = 30
"""2**30 times any base is far above every cap: the exponent stops there, so
no attempt count (days of failure) can overflow a float."""

Sleep = Callable[[float], Awaitable[None]]


def _growth(attempt: int) -> float:
    return float(2 ** min(_MAX_EXPONENT, max(0, attempt - 1)))


def backoff_s(attempt: int, cap: float = BACKOFF_CAP_S, retry_after: float | None = None) -> float:
    """Full-jitter exponential back-off; a sink's Retry-After is a floor."""
    delay = random.uniform(0, min(cap, BACKOFF_BASE_S * _growth(attempt)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, 300.0))
    return delay


def auth_backoff_s(attempt: int) -> float:
    """Credentials refused (401/403), or the sink refusing every event: slow
    retries with a floor (2, 4, 8 ... 60 s, minus up to 25 % jitter), so a
    wrong token or URL never hammers the sink."""
    base = min(AUTH_BACKOFF_CAP_S, AUTH_BACKOFF_MIN_S * _growth(attempt))
    return random.uniform(0.75 * base, base)


def restart_backoff_s(failures: int) -> float:
    """The pause before a failed stage that holds no events (discovery,
    group-info, the reporter) starts again: 2, 4, 8 ... 60 s, its exponent
    capped like the sink's, so months of failures never overflow."""
    return min(RESTART_BACKOFF_CAP_S, 2.0 * _growth(failures))


async def _no_guard() -> None:
    return None


class Lane:
    """One delivery lane: chunks in through :attr:`channel` (streams hashed
    onto it by :func:`lane_of`), ONE batch in flight to the sink, the
    checkpoints of a confirmed batch committed with its dead letters, the
    memory given back to the budget. The rules it applies (what joins a
    batch, halving on refusals, the checkpoint plan) are
    :mod:`cwconsumer.batching`'s; the lane does the waiting, sending,
    retrying and committing.

    ``current`` tells whether a chunk's stream incarnation still counts
    (else it moves no checkpoint); ``on_committed`` hears of every commit;
    ``guard`` runs before each send (proves the lease); ``sleep`` and
    ``clock`` are injectable so hours of back-off run in a test's second.
    """

    def __init__(
        self,
        index: int,
        sink: Sink,
        store: CheckpointStore,
        budget: Budget,
        health: Health,
        metrics: Metrics,
        *,
        max_events: int,
        max_bytes: int,
        max_wait_s: float,
        current: Callable[[Chunk], bool],
        on_committed: Callable[[Sequence[Chunk], dict[StreamKey, int]], None],
        guard: Callable[[], Awaitable[None]] = _no_guard,
        sleep: Sleep = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.channel: Channel[Chunk] = Channel(LANE_CHANNEL_CHUNKS)
        self._sink = sink
        self._store = store
        self._budget = budget
        self._health = health
        self._metrics = metrics
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_wait_s = max_wait_s
        self._current = current
        self._on_committed = on_committed
        self._guard = guard
        self._sleep = sleep
        self._clock = clock
        self.in_flight = 0
        self._last_status: int | None = -1
        self._refusing: tuple[int | None, str] | None = None  # a sink-wide refusal seen

    async def run(self) -> None:
        """Collect, deliver and commit batches until the channel is closed
        and drained. Raises (crash-only) on a commit refused for good or a
        lost lease; the checkpoint then never passed the batch."""
        while True:
            await self.channel.wait_readable()
            if self.channel.drained():
                return
            chunks = await self._collect()
            if chunks:
                await self._deliver(chunks)

    async def _collect(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        events = nbytes = 0
        deadline = self._clock() + self._max_wait_s
        ch = self.channel
        while not batch_full(
            events, nbytes, max_events=self._max_events, max_bytes=self._max_bytes
        ):
            head = ch.peek()
            if head is None:
                if ch.closed:
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                with anyio.move_on_after(remaining):
                    await ch.wait_readable()
                continue
            n = len(head)
            k = take_from_head(
                n,
                head.nbytes,
                events=events,
                nbytes=nbytes,
                started=bool(chunks),
                max_events=self._max_events,
                max_bytes=self._max_bytes,
            )
            if k is None:
                break
            ch.take()
            if k < n:
                head, rest = head.split(k)
                ch.replace_head(rest)
            chunks.append(head)
            events += len(head)
            nbytes += head.nbytes
        return chunks

    async def _deliver(self, chunks: list[Chunk]) -> None:
        if len(chunks) == 1:  # never changed in place: shared, not copied
            docs, stamps = chunks[0].docs, chunks[0].timestamps
        else:
            docs = list(chain.from_iterable(c.docs for c in chunks))
            stamps = list(chain.from_iterable(c.timestamps for c in chunks))
        nbytes = sum(c.nbytes for c in chunks)
        self.in_flight = len(docs)
        try:
            rejected: list[Rejected] = []
            if docs:
                rejected = await self._send_all(OutBatch(docs, stamps))
                self._metrics.batch_events.observe(len(docs))
                self._metrics.batch_bytes.observe(nbytes)
                self._metrics.batches.labels("delivered" if not rejected else "partial").inc()
            await self._commit(chunks, docs, rejected)
        finally:
            # Whatever happened (committed, cancelled at shutdown, or failing
            # for good): this memory is no longer held by the lane.
            self.in_flight = 0
            self._budget.release(len(docs), nbytes)
        self._health.confirmed()

    async def _commit(self, chunks: list[Chunk], docs: list[Doc], rejected: list[Rejected]) -> None:
        """Write the checkpoints of a confirmed batch with its dead letters, in
        one transaction, retrying a retriable refusal (never dropping it)."""
        plan = plan_checkpoints(chunks, docs, rejected, self._current)
        commits, dead, dead_per = plan.commits, plan.dead, plan.dead_per
        started = self._clock()
        attempt = 0
        while True:
            try:
                # Confirmed: the checkpoint must be written even if a shutdown
                # deadline fires, or a clean stop would re-deliver the batch.
                with anyio.CancelScope(shield=True), anyio.fail_after(60):
                    await self._store.commit(commits, dead)
                break
            except LeaseLost:
                raise
            except StoreError as exc:
                attempt += 1
                failing_s = self._clock() - started
                if not exc.retriable or failing_s >= COMMIT_RETRY_S:
                    raise StoreError(
                        f"checkpoint commit failed ({attempt} attempt(s) in "
                        f"{failing_s:.0f}s): {exc}"
                    ) from exc
                self._health.store_error = str(exc)
                if attempt in (1, 3) or attempt % 10 == 0:
                    log.warning(
                        "checkpoint commit failed; retrying (the batch is kept)",
                        extra={"error": str(exc), "attempt": attempt, "lane": self.index},
                    )
                # Not shielded: a shutdown may give up here; the checkpoint did
                # not move, so the batch is read and sent again (no loss).
                await self._sleep(backoff_s(attempt, cap=COMMIT_BACKOFF_CAP_S))
        if attempt:
            self._health.store_error = None
            log.info("checkpoint commit succeeded again", extra={"attempts": attempt + 1})
        for key, k in dead_per.items():
            self._metrics.events_failed.labels(key.group).inc(k)
        self._on_committed(chunks, dead_per)

    async def _send_all(self, batch: OutBatch) -> list[Rejected]:
        """Deliver ``batch`` in order until every event is confirmed or
        refused for good. Returns the refused ones (indexes into ``batch``)."""
        refusals = 0
        while True:
            rejected = await self._send_once(batch)
            if not refused_alike(len(batch), rejected):
                return rejected
            # Every event refused with the same answer: the sink (its URL,
            # index, pipeline) is the problem, not the events. Nothing is
            # dead-lettered; the whole batch is tried again, slowly.
            first = rejected[0]
            self._refusing = (first.status, first.detail)
            self._health.sink_refusing = _describe_refusal(first.status, first.detail)
            log.error(
                "sink refuses every event of a batch the same way; not dead-lettering, "
                "retrying slowly (check CWC_SINK_URL and the sink)",
                extra={"status": first.status, "detail": first.detail[:300], "lane": self.index},
            )
            refusals += 1
            await self._sleep(auth_backoff_s(refusals))

    async def _send_once(self, batch: OutBatch) -> list[Rejected]:
        plan = SendPlan(len(batch))
        attempt = 0
        refused = 0  # refusals of the whole request (credentials, URL): logged sparsely
        while (idx := plan.next()) is not None:
            sub = batch if len(idx) == len(batch) else batch.pick(idx)
            if attempt:
                self._metrics.events_retried.inc(len(idx))
            await self._guard()
            started = self._clock()
            res = await self._sink.send(sub)
            self._metrics.sink_latency.observe(max(0.0, self._clock() - started))
            self._metrics.sink_responses.labels(str(res.status or 0)).inc()
            if res.items is not None:
                if plan.answered_per_item(res.items, res.status, res.detail, res.item_detail):
                    attempt += 1
                    self._failing(res, attempt)
                    await self._sleep(backoff_s(attempt, retry_after=res.retry_after_s))
                else:
                    attempt = 0
                    self._sink_answered()
                continue
            outcome = res.outcome
            if outcome is Outcome.OK:
                plan.confirmed()
                attempt = 0
                self._last_status = -1
                self._sink_answered()
            elif outcome is Outcome.RETRY:
                attempt += 1
                self._failing(res, attempt)
                await self._sleep(backoff_s(attempt, retry_after=res.retry_after_s))
            elif outcome is Outcome.AUTH:
                attempt += 1
                refused += 1
                self._health.auth_error = _describe(res)
                if refused in (1, 3) or refused % 10 == 0:
                    log.error(
                        "sink rejects the credentials; not advancing, retrying slowly "
                        "(check CWC_SINK_TOKEN / the URL's user:password)",
                        extra={"status": res.status, "attempt": attempt, "lane": self.index},
                    )
                await self._sleep(auth_backoff_s(attempt))
            elif outcome is Outcome.POISON and sink_wide(res.status, res.detail, self._refusing):
                attempt += 1
                refused += 1
                self._refusing = (res.status, res.detail)
                self._health.sink_refusing = _describe_refusal(res.status, res.detail)
                if refused in (1, 3) or refused % 10 == 0:
                    log.error(
                        "sink refuses the request itself, not an event; not dead-lettering, "
                        "retrying slowly (check CWC_SINK_URL and the sink)",
                        extra={"status": res.status, "attempt": attempt, "lane": self.index},
                    )
                await self._sleep(auth_backoff_s(attempt))
            elif plan.refused(res.status, res.detail or outcome.value):
                # TOO_LARGE or POISON: halved down to the events refused
                log.warning(
                    "event refused by the sink; dead-lettered",
                    extra={"status": res.status, "detail": res.detail[:300]},
                )
        return plan.rejected

    def _sink_answered(self) -> None:
        """A request was accepted (wholly or in part): no sink-wide refusal."""
        if self._refusing is not None:
            self._refusing = None
            self._health.sink_refusing = None

    def _failing(self, res: SendResult, attempt: int) -> None:
        self._health.sink_error = _describe(res)
        self._health.sink_failures = attempt
        changed = res.status != self._last_status
        self._last_status = res.status
        if changed or attempt in (1, 3) or attempt % 10 == 0:
            log.warning(
                "sink delivery failed; retrying",
                extra={
                    "status": res.status,
                    "detail": res.detail[:300],
                    "attempt": attempt,
                    "lane": self.index,
                },
            )


def _describe(res: SendResult) -> str:
    """Short text for /healthz: the sink's detail, with the status once."""
    detail = res.detail[:200]
    if res.status is None or detail.startswith(f"HTTP {res.status}"):
        return detail
    return f"HTTP {res.status}: {detail}"


def _describe_refusal(status: int | None, detail: str) -> str:
    text = detail[:200]
    if status is not None and not text.startswith(f"HTTP {status}"):
        text = f"HTTP {status}: {text}"
    return text


def lane_of(key: StreamKey, lanes: int) -> int:
    """Stable within and across processes."""
    return zlib.crc32(f"{key.group}\0{key.stream}".encode()) % lanes
