"""The operator's commands, one module each: :mod:`.run` (the service and the
process-wide settings it starts with), :mod:`.demo`, :mod:`.status`,
:mod:`.reset`, :mod:`.check`, :mod:`.dead_letters`, :mod:`.healthcheck`.

Each module has ``main(args) -> int``: the parsed arguments in, the exit status
out. :mod:`cwconsumer.cli` parses the command line and imports only the module
of the command given, so a ``healthcheck`` never loads the AWS client.

Exit codes, for every command: 0 done; 2 bad configuration or usage (one line
per problem naming the variable or option, no traceback, nothing created on
disk: a :class:`~cwconsumer.errors.ConfigError` the caller prints); 1
anything else, with the cause on one line at the end of the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from cwconsumer.errors import ConfigError, CwcError

log = logging.getLogger("cwconsumer")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2


def run_async(fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a command's coroutine and return its exit status; our errors become
    one line and exit 1, a :class:`ConfigError` found on the way is raised."""
    try:
        return anyio.run(fn)
    except ConfigError:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        cause = root_cause(exc)
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, CwcError):
            log.error("stopped: %s", cause)
        else:
            log.error("stopped by an unexpected error", exc_info=cause)
            log.error("stopped: %s: %s", type(cause).__name__, cause)
        return EXIT_ERROR


def root_cause(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups that is not a cancellation."""
    while isinstance(exc, BaseExceptionGroup):
        # Outside the event loop: anyio.get_cancelled_exc_class() would raise here.
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        if not inner:
            break
        exc = inner[0]
    return exc
