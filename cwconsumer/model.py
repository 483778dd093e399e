"""Plain data shared by the stages (pure: no I/O, nothing async).

A *position* in a stream is a :class:`Checkpoint`: the forward token of the
page that holds the next undelivered event, how many events of that page were
already delivered (``skip``), and the time/ordinal of the last delivered event
(for the time fallback when a token is no longer accepted, and for the
deterministic ``event.id``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

Doc = dict[str, Any] | bytes
"""One shipped document (SPEC: "The document shipped for each event"): a dict,
or the same document already serialized as JSON (``bytes``: what the shaper
makes of most events, so no per-event dicts exist and no sink encodes them
again). Read fields with :func:`doc_fields`; serialize with
``cwconsumer.sinks.formats.dumps_doc``, never ``orjson.dumps(doc)``."""


class LogEvent(msgspec.Struct, gc=False, frozen=True):
    """One GetLogEvents item as decoded from the response (``cwconsumer.aws``).

    ``message`` is left as the JSON string token of the response, quotes and
    escapes included (``msgspec.Raw``: a view of the response bytes, never
    decoded): the shaper copies it into the document as it is, so the text of
    most events is never decoded to ``str`` and encoded again. Decode it with
    :func:`message_text` where the text itself is needed.
    """

    timestamp: int
    message: msgspec.Raw
    ingestionTime: int | None = None  # the API's name


_decode_str = msgspec.json.Decoder(str).decode


def message_text(event: LogEvent) -> str | None:
    """The message of ``event`` as text; None when its JSON string cannot be
    decoded (a lone surrogate escape, which no ``str`` consumer accepts)."""
    try:
        return _decode_str(event.message)
    except msgspec.DecodeError:
        return None


def doc_fields(doc: Doc) -> dict[str, Any]:
    """The document as a dict: itself, or parsed from its JSON bytes (a new dict
    each call: meant for the few places that read a field, not hot loops)."""
    if isinstance(doc, bytes):
        try:
            fields: dict[str, Any] = orjson.loads(doc)
        except orjson.JSONDecodeError:
            # A lone surrogate escape ("\ud800"), which the shaper copies as
            # the API sent it and orjson refuses: the standard library reads it.
            fields = json.loads(doc)
        return fields
    return doc


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One log stream: its group's name and its own."""

    group: str
    stream: str

    def __str__(self) -> str:
        return f"{self.group}/{self.stream}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where reading resumes. Stores the *next* position, never the last one.

    - ``token``: forward token to request; ``None`` means "from ``start_time_ms``"
      (or from the head of the stream when that is ``None`` too).
    - ``skip``: events at the start of that page that were already delivered.
    - ``last_ts`` / ``last_ord``: timestamp (ms) of the last delivered event and
      its ordinal among the stream's events of that same millisecond (0-based).
      ``last_ts is None`` means nothing was delivered yet.
    """

    token: str | None = None
    start_time_ms: int | None = None
    skip: int = 0
    last_ts: int | None = None
    last_ord: int = -1

    def time_fallback(self) -> Checkpoint:
        """Position to use when the stored token is rejected: re-read the last
        delivered millisecond (``startTime`` is inclusive) and skip exactly the
        ``last_ord + 1`` events of it already delivered. Never ``last + 1 ms``."""
        if self.last_ts is None:
            return Checkpoint(None, self.start_time_ms, 0, None, -1)
        return Checkpoint(None, self.last_ts, self.last_ord + 1, self.last_ts, self.last_ord)


@dataclass(slots=True)
class Chunk:
    """A run of consecutive shaped events of one stream, all from one page.

    A page may be cut into several chunks by batch limits; an empty page
    (AWS returns them mid-stream) is a chunk with no events that still moves
    the token forward once everything before it is confirmed.
    """

    key: StreamKey
    docs: list[Doc]
    timestamps: list[int]
    page_token: str | None  # token sent to fetch this page (None: by start_time)
    page_start_time_ms: int | None  # startTime sent when page_token is None
    offset: int  # index in the page of docs[0]
    prev_ts: int | None  # last_ts/last_ord before docs[0]
    prev_ord: int
    next_token: str  # nextForwardToken returned with the page
    ends_page: bool
    nbytes: int
    next_skip: int = 0  # already-delivered events still to skip on the next page
    generation: int = 0  # the stream's generation when read (re-created streams differ)

    def __len__(self) -> int:
        return len(self.docs)

    def checkpoint_after(self, k: int | None = None) -> Checkpoint:
        """Position after the first ``k`` events of this chunk (all by default)."""
        n = len(self.docs) if k is None else k
        last_ts, last_ord = self.state_after(n)
        if self.ends_page and n == len(self.docs):
            return Checkpoint(self.next_token, None, self.next_skip, last_ts, last_ord)
        return Checkpoint(
            self.page_token, self.page_start_time_ms, self.offset + n, last_ts, last_ord
        )

    def state_after(self, n: int) -> tuple[int | None, int]:
        """(last_ts, last_ord) after the first ``n`` events."""
        if n == 0:
            return self.prev_ts, self.prev_ord
        ts = self.timestamps
        last = ts[n - 1]
        i = n - 1
        while i > 0 and ts[i - 1] == last:
            i -= 1
        run = n - i  # events at `last` within this chunk
        if i == 0 and self.prev_ts == last:
            return last, self.prev_ord + run
        return last, run - 1

    def split(self, k: int) -> tuple[Chunk, Chunk]:
        """Cut after ``k`` events (0 < k < len)."""
        prev_ts, prev_ord = self.state_after(k)
        per = self.nbytes // max(1, len(self.docs))
        head = Chunk(
            self.key,
            self.docs[:k],
            self.timestamps[:k],
            self.page_token,
            self.page_start_time_ms,
            self.offset,
            self.prev_ts,
            self.prev_ord,
            self.next_token,
            False,
            per * k,
            0,
            self.generation,
        )
        tail = Chunk(
            self.key,
            self.docs[k:],
            self.timestamps[k:],
            self.page_token,
            self.page_start_time_ms,
            self.offset + k,
            prev_ts,
            prev_ord,
            self.next_token,
            self.ends_page,
            self.nbytes - per * k,
            self.next_skip,
            self.generation,
        )
        return head, tail


@dataclass(slots=True)
class OutBatch:
    """What a sink is asked to deliver: documents in order, with their times."""

    docs: list[Doc]
    timestamps_ms: list[int]

    def __len__(self) -> int:
        return len(self.docs)

    def slice(self, start: int, stop: int) -> OutBatch:
        """The documents from ``start`` up to ``stop``, with their times."""
        return OutBatch(self.docs[start:stop], self.timestamps_ms[start:stop])

    def pick(self, indexes: Sequence[int]) -> OutBatch:
        """The documents at ``indexes``, in that order, with their times."""
        return OutBatch([self.docs[i] for i in indexes], [self.timestamps_ms[i] for i in indexes])


@dataclass(slots=True)
class Commit:
    """One stream's move after a confirmed delivery."""

    key: StreamKey
    checkpoint: Checkpoint
    delivered: int
    dead_lettered: int


@dataclass(slots=True)
class DeadLetter:
    """An event the sink refused for good, stored with the sink's answer."""

    key: StreamKey
    event_id: str
    timestamp_ms: int
    document: bytes
    status: int | None
    answer: str
