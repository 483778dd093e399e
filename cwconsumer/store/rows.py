"""The rows of the checkpoint database as the code sees them, and the
:class:`CheckpointStore` protocol: what the pipeline's stages use of it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cwconsumer.model import Checkpoint, Commit, DeadLetter, StreamKey


@dataclass(slots=True)
class GroupRow:
    """A group's row: when it was first seen, where it starts, whether it was deleted."""

    name: str
    first_seen_ms: int
    start_time_ms: int | None
    deleted_ms: int | None
    walked_ms: int | None = None  # start of the last complete deep walk (migration 0002)


@dataclass(frozen=True, slots=True)
class GroupInfoRow:
    """What DescribeLogGroups said about a group (migration 0003)."""

    name: str  # the group's key: its name, or its ARN
    log_class: str | None  # logGroupClass; None: not reported (STANDARD)
    data_protection: str | None  # dataProtectionStatus; None: no policy
    retention_days: int | None  # retentionInDays; None: never expire
    checked_ms: int


@dataclass(slots=True)
class StreamRow:
    """A stream's row: its checkpoint, counts and the facts discovery keeps."""

    key: StreamKey
    created_ms: int | None
    checkpoint: Checkpoint
    delivered: int
    dead_lettered: int
    state: str
    last_event_seen_ms: int | None
    last_ingestion_seen_ms: int | None
    last_read_ms: int | None
    checkpoint_ms: int | None


@dataclass(slots=True)
class DeadLetterRow:
    """A stored dead letter, as ``dead-letters`` shows and replays it."""

    id: int
    key: StreamKey
    event_id: str
    timestamp_ms: int
    status: int | None
    answer: str
    created_ms: int
    replayed_ms: int | None
    document: bytes


@dataclass(slots=True)
class StreamMeta:
    """Discovery/reader facts about a stream that are not checkpoints."""

    key: StreamKey
    state: str
    last_event_seen_ms: int | None
    last_ingestion_seen_ms: int | None
    last_read_ms: int | None


@dataclass(slots=True)
class LeaseInfo:
    """The lease row: who holds it (``owner`` None: nobody), since which
    epoch, and when its holder last renewed it."""

    owner: str | None
    epoch: int
    heartbeat_ms: int
    host: str | None
    pid: int | None

    def live(self, now_ms: int, ttl_ms: int) -> bool:
        """Whether a holder renewed it less than ``ttl_ms`` ago."""
        return self.owner is not None and now_ms - self.heartbeat_ms < ttl_ms


class CheckpointStore(Protocol):
    """What the pipeline's stages use of the checkpoint database: discovery
    (groups and streams), the registry (stream facts), the group facts
    (:mod:`cwconsumer.groupinfo`) and the lanes (checkpoints with dead letters). :class:`Store` is the real one; every
    write it makes is fenced by the lease. Tests above the edge may use an
    in-memory one (``tests/support/memstore.py``). Lease handling, opening
    and closing stay with the service, which holds the real :class:`Store`."""

    async def load_groups(self) -> dict[str, GroupRow]:
        """Every known group by name."""
        ...

    async def load_streams(self, group: str | None = None) -> list[StreamRow]:
        """Every known stream (of ``group``), by group and stream name."""
        ...

    async def save_group(self, row: GroupRow) -> None:
        """Insert or replace a group's row."""
        ...

    async def save_group_walked(self, name: str, walked_ms: int | None) -> None:
        """Record when the last complete deep walk of a group started."""
        ...

    async def add_streams(
        self, rows: Sequence[StreamRow], *, replace: Iterable[StreamKey] = ()
    ) -> None:
        """Insert new streams; an existing row is kept unless in ``replace``."""
        ...

    async def forget_streams(self, group: str, streams: Iterable[str] | None = None) -> None:
        """Drop the checkpoints of a group (or of some of its streams)."""
        ...

    async def prune_streams(self, keys: Sequence[StreamKey]) -> None:
        """Delete the rows of forgotten streams."""
        ...

    async def save_meta(self, metas: Sequence[StreamMeta]) -> None:
        """Update streams' discovery/reader facts (not their checkpoints)."""
        ...

    async def commit(
        self, commits: Sequence[Commit], dead: Sequence[DeadLetter] = (), now_ms: int | None = None
    ) -> None:
        """Move checkpoints and record dead letters in one transaction."""
        ...

    async def load_group_info(self) -> dict[str, GroupInfoRow]:
        """What DescribeLogGroups last said about each group read."""
        ...

    async def save_group_info(self, rows: Sequence[GroupInfoRow], keep: Iterable[str]) -> None:
        """Write ``rows``; drop the rows of groups not in ``keep``."""
        ...
