"""One exception tree for cwconsumer.

    CwcError                      root; ``retriable`` says whether trying again may help
    ├── ConfigError               bad configuration or usage (exit status 2); carries every problem
    ├── StoreError                the SQLite database (``retriable``: locked, busy, full, I/O)
    │   ├── StoreLocked           the lease is held by another live ``run``
    │   ├── LeaseLost             another process took the lease (fencing refused a write)
    │   ├── SchemaTooNew          the database was written by a newer cwconsumer
    │   └── StoreGone             the database file was removed or replaced under us
    ├── AwsError                  a CloudWatch Logs call failed (botocore errors translated)
    │   ├── Throttled             ThrottlingException / ServiceUnavailable / 5xx  (retriable)
    │   ├── NotFound              ResourceNotFoundException: stream or group deleted
    │   ├── TokenRejected         InvalidParameterException on a stored forward token
    │   ├── AccessDenied          credentials missing or not permitted (also a refused AssumeRole)
    │   └── ClassRefused          GetLogEvents refused for the group's log class (final)
    ├── SinkError                 the HTTP sink (aiohttp errors translated)
    └── StageFailed               a stage holding events failed unexpectedly: the
                                  process exits 1 (crash-only; checkpoints make
                                  the restart safe)

Errors from botocore, aiohttp and sqlite3 are translated at the edge modules
(``aws.py``, ``sinks/http.py``, ``store/``) with ``raise Mapped(...) from exc``.
"""

from __future__ import annotations


class CwcError(Exception):
    """Root of every error cwconsumer raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str = "", *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(CwcError):
    """Configuration or usage is wrong. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class StoreError(CwcError):
    """The checkpoint database cannot be used."""


class StoreLocked(StoreError):
    """Another live ``run`` holds the lease on this database."""


class LeaseLost(StoreError):
    """Another process took the lease; this one must stop writing."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer cwconsumer than this one."""


class StoreGone(StoreError):
    """The database file at the configured path is no longer the one open
    (removed, or replaced): writes would go to a deleted file."""


class AwsError(CwcError):
    """A CloudWatch Logs call failed."""

    def __init__(self, message: str, *, code: str = "", retriable: bool | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.code = code


class Throttled(AwsError):
    """CloudWatch Logs asked to slow down (a throttling code) or answered 5xx."""

    retriable = True


class NotFound(AwsError):
    """The log group or stream does not exist (any more)."""


class TokenRejected(AwsError):
    """The ``nextToken`` given with the call was refused (InvalidParameterException)."""


class AccessDenied(AwsError):
    """The caller may not make the call, or there are no AWS credentials."""


class ClassRefused(AwsError):
    """GetLogEvents is not supported for the group's log class (for example a
    ``DELIVERY`` group): asking again will not help; the group is reported."""


class SinkError(CwcError):
    """The sink could not be reached or answered in a way we cannot use."""

    retriable = True


class StageFailed(CwcError):
    """A stage that holds events (a lane, a reader) raised unexpectedly.

    Never restarted in place: its events could be lost with it. The process
    stops with exit status 1 and this cause; the restart reads again from the
    checkpoints."""
