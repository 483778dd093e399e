"""A lane's batching rules, pure: no I/O, no clock, no awaiting.

:class:`~cwconsumer.delivery.Lane` does the waiting and the sending; what it
decides along the way is here, so each rule is tested on its own:

- :func:`take_from_head`: how much of the next chunk joins the batch being
  collected (all of it, its first part, or none: the batch ships first);
- :class:`SendPlan`: which events of a batch go in the next request, as the
  sink answers — a request the sink finds too large (413) or that holds a
  refused event is halved, down to the single events refused for good;
  events a per-item answer asks to retry are sent again, in order;
- :func:`refused_alike` / :func:`sink_wide`: refusals that say nothing about
  the events (the sink's URL, index or pipeline is wrong), which must not
  dead-letter anything;
- :func:`plan_checkpoints`: after the batch was confirmed, the checkpoint of
  each stream and the dead letters, committed together.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cwconsumer.model import Chunk, Commit, DeadLetter, Doc, StreamKey, doc_fields
from cwconsumer.sinks.base import Outcome
from cwconsumer.sinks.formats import dumps_doc

DEAD_LETTER_ANSWER_CHARS = 2000
"""How much of the sink's answer a dead letter keeps."""

SINK_WIDE_STATUSES = frozenset({404, 405, 410, 411, 414, 415, 421, 426, 431})
"""Refusals of the request itself (wrong path or method, media type, headers),
never of an event in it: nothing is bisected or dead-lettered for these."""


# -- collecting ---------------------------------------------------------------------


def batch_full(events: int, nbytes: int, *, max_events: int, max_bytes: int) -> bool:
    """Whether a batch of ``events`` / ``nbytes`` ships without waiting for more."""
    return events >= max_events or nbytes >= max_bytes


def take_from_head(
    head_events: int,
    head_bytes: int,
    *,
    events: int,
    nbytes: int,
    started: bool,
    max_events: int,
    max_bytes: int,
) -> int | None:
    """How many events of the next chunk (``head_events`` / ``head_bytes``)
    join a batch that holds ``events`` / ``nbytes`` so far (``started``: it
    holds a chunk, maybe an empty one): all of them when they fit; else as
    many as fit at the chunk's mean event size (the rest stays at the head of
    the channel for the next batch); None when none fits and the batch was
    started (it ships first, the chunk stays). An empty chunk always joins. A batch not started always takes at least one
    event, however large: a single event is never held back."""
    room_events = max_events - events
    if head_events <= room_events and not (head_events and nbytes + head_bytes > max_bytes):
        return head_events
    per = max(1, head_bytes // max(1, head_events))
    k = min(room_events, (max_bytes - nbytes) // per)
    if k <= 0 and started:
        return None
    return min(head_events, max(1, k))


# -- sending ------------------------------------------------------------------------


@dataclass(slots=True)
class Rejected:
    """An event refused for good: its index in the batch and the sink's answer."""

    index: int
    status: int | None
    detail: str


class SendPlan:
    """The order in which one batch of ``size`` events reaches the sink.

    :meth:`next` names the events of the next request (indexes into the
    batch, in order); the lane sends them and reports the answer with one of
    :meth:`confirmed`, :meth:`refused` or :meth:`answered_per_item`. A
    request is never reordered: a part that must be sent again stays in
    front of everything after it. Done when :meth:`next` returns None;
    :attr:`rejected` then holds the events refused for good.
    """

    def __init__(self, size: int) -> None:
        self._work: deque[Sequence[int]] = deque([range(size)] if size else [])
        self.rejected: list[Rejected] = []

    def next(self) -> Sequence[int] | None:
        """The events of the next request, or None when the batch is done."""
        return self._work[0] if self._work else None

    def confirmed(self) -> None:
        """The sink took the whole request."""
        self._work.popleft()

    def refused(self, status: int | None, detail: str) -> bool:
        """The sink refused the request for its size (413) or its content:
        a single event is refused for good (returns True); more are halved,
        the first half next."""
        idx = self._work.popleft()
        if len(idx) == 1:
            self.rejected.append(Rejected(idx[0], status, detail))
            return True
        half = len(idx) // 2
        self._work.appendleft(idx[half:])
        self._work.appendleft(idx[:half])
        return False

    def answered_per_item(
        self,
        items: Sequence[Outcome],
        status: int | None,
        detail: str,
        item_detail: Mapping[int, str],
    ) -> bool:
        """The sink answered event by event (``items``, in request order):
        refused ones are rejected, the ones to retry are sent again next, in
        order. Returns whether any must be sent again."""
        idx = self._work.popleft()
        again: list[int] = []
        for j, outcome in enumerate(items):
            if outcome is Outcome.OK:
                continue
            if outcome is Outcome.POISON:
                self.rejected.append(Rejected(idx[j], status, item_detail.get(j, detail)))
            else:
                again.append(idx[j])
        if again:
            self._work.appendleft(again)
        return bool(again)


def refused_alike(size: int, rejected: Sequence[Rejected]) -> bool:
    """Every event of a batch of ``size`` (2 or more) refused with the same
    answer: the sink is the problem, not the events."""
    if size < 2 or len(rejected) < size:
        return False
    first = rejected[0]
    return all(r.status == first.status and r.detail == first.detail for r in rejected)


def sink_wide(status: int | None, detail: str, refusing: tuple[int | None, str] | None) -> bool:
    """A whole-request refusal that says nothing about the events: a
    request-level status, or the same answer (``refusing``) that already
    refused every event of an earlier batch."""
    if status in SINK_WIDE_STATUSES:
        return True
    return refusing is not None and refusing == (status, detail)


# -- after confirmation ---------------------------------------------------------------


@dataclass(slots=True)
class CheckpointPlan:
    """What a confirmed batch commits, in one transaction: each current
    stream's checkpoint after its last event, and the dead letters of those
    streams. ``dead_per`` counts every refused event per stream."""

    commits: list[Commit]
    dead: list[DeadLetter]
    dead_per: dict[StreamKey, int]


def plan_checkpoints(
    chunks: Sequence[Chunk],
    docs: Sequence[Doc],
    rejected: Sequence[Rejected],
    current: Callable[[Chunk], bool],
) -> CheckpointPlan:
    """The commit of a confirmed batch made of ``chunks`` (whose documents,
    in order, are ``docs``). A chunk that is no longer ``current`` (its
    stream was forgotten or created again meanwhile) moves no checkpoint and
    leaves no dead letter."""
    dead_per: dict[StreamKey, int] = {}
    dead_rows: list[DeadLetter] = []
    if rejected:
        owners = [(c.key, t) for c in chunks for t in c.timestamps]
        for r in rejected:
            key, ts = owners[r.index]
            doc = docs[r.index]
            dead_rows.append(
                DeadLetter(
                    key,
                    event_id_of(doc),
                    ts,
                    dead_letter_document(doc),
                    r.status,
                    r.detail[:DEAD_LETTER_ANSWER_CHARS],
                )
            )
            dead_per[key] = dead_per.get(key, 0) + 1
    last: dict[StreamKey, Chunk] = {}
    counts: dict[StreamKey, int] = {}
    for c in chunks:
        if not current(c):
            continue
        last[c.key] = c
        counts[c.key] = counts.get(c.key, 0) + len(c)
    commits = [
        Commit(k, c.checkpoint_after(), counts[k] - dead_per.get(k, 0), dead_per.get(k, 0))
        for k, c in last.items()
    ]
    dead = [d for d in dead_rows if d.key in last]
    return CheckpointPlan(commits, dead, dead_per)


def event_id_of(doc: Doc) -> str:
    """The document's ``event.id`` for the dead-letter row; "" when the
    document cannot even be read back (it is stored whole anyway)."""
    try:
        fields: object = doc_fields(doc)
    except ValueError:  # orjson refuses a lone surrogate escape; json reads it
        try:
            fields = json.loads(doc) if isinstance(doc, bytes) else None
        except ValueError:
            return ""
    event = fields.get("event") if isinstance(fields, dict) else None
    return str(event.get("id", "")) if isinstance(event, dict) else ""


def dead_letter_document(doc: Doc) -> bytes:
    """The document as stored in the dead-letter table. Never raises: one
    that orjson cannot encode (an integer beyond 64 bits, a lone surrogate)
    is written by the standard library's encoder (ASCII JSON, every number
    exact), and as a last resort as its ``repr``."""
    try:
        return dumps_doc(doc)
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(doc, default=repr).encode("ascii")
    except (TypeError, ValueError, RecursionError):
        return repr(doc).encode("utf-8", "backslashreplace")
