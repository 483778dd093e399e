"""The sink interface: what the delivery lanes need from any wire format.

A sink delivers an :class:`~cwconsumer.model.OutBatch` and tells, per event,
what happened. The lanes (``delivery.py``) decide what to do with it:

- ``OK``       confirmed by the receiving system (2xx, bulk item created, 409
               already-exists, HEC ack "indexed", Loki out-of-order/too-old
               answers that are final): the checkpoint may move over it.
- ``RETRY``    transient (connection error, timeout, 408, 429, 5xx): send again
               later, after ``retry_after_s`` when the sink said so.
- ``TOO_LARGE``  413: the lane splits the batch and sends the halves in order.
- ``POISON``   permanently refused (400 and other 4xx; a bulk item rejected for
               mapping/parsing): the lane bisects a whole-request refusal down to
               the events refused and puts those in the dead-letter table.
- ``AUTH``     401/403: credentials are wrong; not poison; retried slowly while
               ``/healthz`` says so.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cwconsumer.model import OutBatch


class Outcome(enum.Enum):
    """What a sink's answer means for the events: taken; try again later;
    the request is too large (split it); refused for good (dead-letter,
    after halving down to the events refused); credentials refused."""

    OK = "ok"
    RETRY = "retry"
    TOO_LARGE = "too_large"
    POISON = "poison"
    AUTH = "auth"


@dataclass(slots=True)
class SendResult:
    """Answer for a whole batch, optionally refined per item.

    ``outcome`` applies to every item unless ``items`` is given, in which case
    ``items[i]`` is the outcome of ``batch.docs[i]`` (only OK / RETRY / POISON
    are used per item) and ``item_detail[i]`` the sink's reason for a non-OK
    item.
    """

    outcome: Outcome
    status: int | None = None  # HTTP status, None when no answer came
    detail: str = ""  # short text for logs and dead letters (never secrets)
    retry_after_s: float | None = None
    items: list[Outcome] | None = None
    item_detail: dict[int, str] = field(default_factory=dict)


class Sink(Protocol):
    """One configured destination. Implementations never raise for sink-side
    failures: they return a :class:`SendResult`. Every call is bounded by the
    configured request timeout."""

    name: str

    async def send(self, batch: OutBatch) -> SendResult:
        """Deliver ``batch`` in one request (or say why not); never raises
        for the sink's failures."""
        ...

    async def probe(self) -> tuple[bool, str]:
        """For ``cwconsumer check``: is the sink reachable and answering?"""
        ...

    async def aclose(self) -> None:
        """Close the connection pool."""
        ...


@runtime_checkable
class CountsRejected(Protocol):
    """A sink whose receiver may refuse some records of a delivered request
    without naming them (OTLP's ``partial_success``): the service points
    ``on_rejected`` at its counter."""

    on_rejected: Callable[[int], None]
