"""Stop signals that arrive while ``cwconsumer run`` is still starting.

Until the service's own signal receiver is open (after imports, configuration
and opening the database), SIGTERM would otherwise keep its default action and
end the process with status -15 instead of 0 (an orchestrator stopping a task
that has just started). :func:`catch` records them from the very start of
``run``; the service takes them over with :func:`take` and stops cleanly.
"""

from __future__ import annotations

import signal
from types import FrameType

_pending: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def catch() -> None:
    """Record SIGTERM and SIGINT from now on (main thread only)."""
    signal.signal(signal.SIGTERM, _record)
    signal.signal(signal.SIGINT, _record)


def take() -> list[int]:
    """The signals recorded so far, forgotten once taken."""
    taken = list(_pending)
    del _pending[: len(taken)]
    return taken
