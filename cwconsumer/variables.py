"""Every ``CWC_`` variable (:data:`VARIABLES`, the table the README mirrors)
and how one value is read: :class:`Reader` records a problem per variable and
goes on with the default, so :func:`cwconsumer.config.load_config` reports
every problem at once; the value types (:class:`Secret`,
:class:`StartPosition`) and the parsers of names, ARNs, URLs, headers,
addresses and paths. Pure, apart from reading the token file and looking at
paths (``os.path`` / ``os.access``).
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from cwconsumer.units import parse_bool, parse_duration, parse_size

# fmt: off
VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("CWC_LOG_GROUPS", "", "log group names or ARNs to consume"),
    ("CWC_LOG_GROUP_PREFIXES", "", "group name prefixes, matched again every discovery "
     "interval; one of CWC_LOG_GROUPS and CWC_LOG_GROUP_PREFIXES is required"),
    ("CWC_SINK_URL", "", "required: http(s) URL of the sink; user:password in it means basic auth"),
    ("CWC_SINK_FORMAT", "ndjson", "ndjson, json, elasticsearch, splunk-hec, loki or otlp"),
    ("CWC_SINK_TOKEN", "", "bearer token (the HEC token for splunk-hec)"),
    ("CWC_SINK_TOKEN_FILE", "", "file holding the token (ECS secrets); not with CWC_SINK_TOKEN"),
    ("CWC_SINK_HEADERS", "", 'extra headers as a JSON object, e.g. {"X-Env": "prod"}'),
    ("CWC_SINK_GZIP", "false", "gzip request bodies"),
    ("CWC_SINK_GZIP_LEVEL", "1", "gzip level, 1 (fast) to 9 (small)"),
    ("CWC_SINK_TIMEOUT", "30s", "whole-request timeout; no request waits longer"),
    ("CWC_SINK_CONCURRENCY", "2", "batches in flight at once (1-64)"),
    ("CWC_SINK_MAX_REQUEST_BYTES", "10MiB", "largest request body (at least 64KiB)"),
    ("CWC_SINK_CA_FILE", "", "CA bundle for a private sink certificate (verification stays on)"),
    ("CWC_SINK_INDEX", "logs-aws.cloudwatch-default", "elasticsearch: data stream or index"),
    ("CWC_SPLUNK_ACK", "false", "splunk-hec: checkpoint only after indexer acknowledgement"),
    ("CWC_SPLUNK_SOURCETYPE", "aws:cloudwatchlogs", "splunk-hec: sourcetype of the events"),
    ("CWC_SPLUNK_INDEX", "", "splunk-hec: index (unset: the token's default index)"),
    ("CWC_LOKI_LABELS", "", "loki: extra stream labels, name=value pairs"),
    ("CWC_OTLP_ENCODING", "protobuf", "otlp: protobuf or json"),
    ("CWC_BATCH_MAX_EVENTS", "5000", "a batch ships at this many events (1-100000) ..."),
    ("CWC_BATCH_MAX_BYTES", "5MiB", "... or at this many bytes ..."),
    ("CWC_BATCH_MAX_WAIT", "1s", "... or when its oldest event has waited this long"),
    ("CWC_BUFFER_MAX_EVENTS", "40000", "most events read and not yet confirmed (>= batch)"),
    ("CWC_BUFFER_MAX_BYTES", "64MiB", "most bytes read and not yet confirmed (>= batch)"),
    ("CWC_DB_PATH", "./cwconsumer.db", "the SQLite checkpoint database"),
    ("CWC_DB_JOURNAL_MODE", "", "wal or delete; unset: detected (delete on network file systems)"),
    ("CWC_START_POSITION", "beginning", "where a new group starts: beginning, end, an ISO-8601 "
     "time or a duration back from now (2h, 7d)"),
    ("CWC_POLL_INTERVAL", "5s", "longest wait before re-polling an active stream"),
    ("CWC_DISCOVERY_INTERVAL", "30s", "how often groups and streams are listed again"),
    ("CWC_QUIET_POLL_INTERVAL", "10m", "longest wait before re-checking a caught-up stream "
     "(its worst-case re-check time until CWC_IDLE_GRACE)"),
    ("CWC_IDLE_GRACE", "2h", "a caught-up stream quiet for this long stops being polled"),
    ("CWC_FORGET_AFTER", "7d", "an idle stream with nothing undelivered is forgotten after "
     "this long, or after its group's retention if shorter (row pruned; read from its "
     "beginning if it shows activity again)"),
    ("CWC_WORKERS", "16", "GetLogEvents calls in flight at once (1-256)"),
    ("CWC_API_RATE", "10", "GetLogEvents calls per second, all workers together (<= 1000)"),
    ("CWC_DESCRIBE_RATE", "5", "DescribeLogStreams/DescribeLogGroups calls per second"),
    ("CWC_ADMIN_ADDR", "127.0.0.1:9600", "admin HTTP server: host:port, [v6]:port, :port or off"),
    ("CWC_STALL_TIMEOUT", "5m", "pending events unconfirmed this long make /healthz fail"),
    ("CWC_SHUTDOWN_TIMEOUT", "20s", "time on SIGTERM to finish in-flight deliveries"),
    ("CWC_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    ("CWC_LOG_FORMAT", "json", "json or text"),
    ("CWC_PARSE", "auto", "auto, none, lambda or json"),
    ("CWC_EMF_METRICS", "false", "write CloudWatch Embedded Metric Format lines"),
    ("CWC_LEASE_HEARTBEAT", "2s", "how often the running process renews its database lease"),
    ("CWC_LEASE_TTL", "10s", "an unrenewed lease may be taken over after this (> 2 x heartbeat)"),
    ("CWC_AWS_TIMEOUT", "30s", "timeout of each AWS call"),
    ("CWC_AWS_ROLE_ARN", "", "read the groups through this IAM role (STS AssumeRole, refreshed)"),
    ("CWC_AWS_EXTERNAL_ID", "", "external id for CWC_AWS_ROLE_ARN (a secret)"),
    ("CWC_AWS_ROLE_SESSION_NAME", "cwconsumer", "session name for CWC_AWS_ROLE_ARN"),
    ("CWC_INCLUDE_LINKED_ACCOUNTS", "false", "prefix search also lists the source accounts' "
     "groups (CloudWatch cross-account observability monitoring account)"),
    ("CWC_UNMASK", "false", "read groups under a data protection policy unmasked "
     "(needs logs:Unmask)"),
)
# fmt: on
"""``(name, default, meaning)`` of every ``CWC_`` variable; default ``""`` means none."""

DEFAULTS: dict[str, str] = {name: default for name, default, _ in VARIABLES}
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REDACTED = "***"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_START_FORMS = (
    "'beginning', 'end', an ISO-8601 time (2026-11-21T10:00:00Z, 2026-11-21T12:00:00+02:00, "
    "2026-11-21) or a duration back from now (2h, 7d)"
)

_T = TypeVar("_T")


class Secret:
    """A string that never shows itself: ``str()`` and ``repr()`` are ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The secret text, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


@dataclass(frozen=True, slots=True)
class StartPosition:
    """Where a log group seen for the first time starts.

    ``kind`` is ``"beginning"`` (the head of each stream), ``"end"`` (now, resolved
    when the group is first seen) or ``"time"`` (``time_ms``, epoch milliseconds).
    """

    kind: Literal["beginning", "end", "time"]
    time_ms: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "time":
            if self.time_ms is None or self.time_ms < 0:
                raise ValueError("StartPosition('time') needs time_ms >= 0")
        elif self.kind in ("beginning", "end"):
            if self.time_ms is not None:
                raise ValueError(f"StartPosition({self.kind!r}) takes no time_ms")
        else:
            raise ValueError(f"unknown start position kind {self.kind!r}")

    def resolve(self, now_ms: int) -> int | None:
        """Start time in epoch ms for GetLogEvents; ``None`` means from the head."""
        if self.kind == "beginning":
            return None
        if self.kind == "end":
            return now_ms
        return self.time_ms

    def __str__(self) -> str:
        if self.time_ms is None:
            return self.kind
        return _iso_ms(self.time_ms)


def parse_start_position(text: str, now_ms: int) -> StartPosition:
    """``beginning``, ``end``, an ISO-8601 time or a duration back from ``now_ms``.

    An ISO time without an offset (or a bare date) is UTC. A duration is resolved
    here, to kind ``"time"``. A bare number is refused as ambiguous (seconds back?
    epoch milliseconds?). Raises ValueError with a readable message.
    """
    value = text.strip()
    lowered = value.lower()
    if lowered == "beginning":
        return StartPosition("beginning")
    if lowered == "end":
        return StartPosition("end")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        raise ValueError(
            f"a bare number is ambiguous; give a duration with a unit (2h, 7d) or an ISO-8601 "
            f"time, got {show(text)}"
        )
    if re.match(r"\d{4}-\d{2}-\d{2}|\d{8}T", value):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"is not a valid ISO-8601 time ({exc}), got {show(text)}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        time_ms = (moment - _EPOCH) // timedelta(milliseconds=1)
        if time_ms < 0:
            raise ValueError(f"must not be before 1970, got {show(text)}")
        return StartPosition("time", time_ms)
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"expected {_START_FORMS}, got {show(text)}") from None
    time_ms = now_ms - round(seconds * 1000)
    if time_ms < 0:
        raise ValueError(f"reaches back before 1970, got {show(text)}")
    return StartPosition("time", time_ms)


def validate_db_path(path: str) -> str | None:
    """Problem with using ``path`` as the SQLite database, or ``None`` if it looks usable.

    Looks only; creates nothing. An existing file must be a readable, writable
    regular file in a writable directory (SQLite puts its journal files beside
    it). A missing file needs its nearest existing ancestor to be a writable
    directory, because missing directories are created at start-up. The text
    has no variable name in front, so commands taking a path option can reuse it.
    """
    if not path.strip():
        return "must not be empty"
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.lexists(path):
        if os.path.isdir(path):
            return f"'{path}' is a directory; give the path of the database file inside it"
        if not os.path.exists(path):
            return f"'{path}' is a broken symbolic link"
        if not os.path.isfile(path):
            return f"'{path}' is not a regular file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"database file '{path}' is not readable and writable"
        directory = os.path.dirname(os.path.realpath(path))
        if not os.access(directory, os.W_OK | os.X_OK):
            return (
                f"directory '{directory}' is not writable "
                "(SQLite creates its journal files next to the database)"
            )
        return None
    ancestor = os.path.dirname(path)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"cannot create '{path}': '{ancestor}' is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"directory '{ancestor}' is not writable"
    return None


class Reader:
    """Reads variables, records problems; on a problem returns the default so reading goes on."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.failed: set[str] = set()
        self._warn_unknown()

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def text(self, name: str) -> str:
        return self.raw(name) or DEFAULTS[name]

    def problem(self, name: str, text: str) -> None:
        self.problems.append(f"{name}: {text}")
        self.failed.add(name)

    def _parsed(self, name: str, parse: Callable[[str], _T]) -> _T:
        value = self.raw(name)
        if value is not None:
            try:
                return parse(value)
            except ValueError as exc:
                self.problem(name, str(exc))
        return parse(DEFAULTS[name])

    def duration(self, name: str) -> float:
        seconds = self._parsed(name, parse_duration)
        if seconds <= 0:
            self.problem(name, f"must be longer than 0, got {show(self.text(name))}")
            return parse_duration(DEFAULTS[name])
        return seconds

    def size(self, name: str, minimum: int) -> int:
        size = self._parsed(name, parse_size)
        if size < minimum:
            wanted = "more than 0" if minimum == 1 else f"at least {_format_size(minimum)}"
            self.problem(name, f"must be {wanted}, got {show(self.text(name))}")
            return parse_size(DEFAULTS[name])
        return size

    def integer(self, name: str, lowest: int, highest: int | None) -> int:
        number = self._parsed(name, _parse_int)
        if number < lowest or (highest is not None and number > highest):
            wanted = f"at least {lowest}" if highest is None else f"from {lowest} to {highest}"
            self.problem(name, f"must be {wanted}, got {number}")
            return int(DEFAULTS[name])
        return number

    def rate(self, name: str, highest: float | None) -> float:
        number = self._parsed(name, _parse_float)
        if number <= 0 or (highest is not None and number > highest):
            limit = "" if highest is None else f" and at most {highest:g}"
            self.problem(name, f"must be more than 0{limit} (calls per second), got {number:g}")
            return float(DEFAULTS[name])
        return number

    def boolean(self, name: str) -> bool:
        return self._parsed(name, parse_bool)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.text(name).lower()
        if value not in choices:
            self.problem(name, f"must be one of {', '.join(choices)}, got {show(self.text(name))}")
            return DEFAULTS[name]
        return value

    def optional_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        return self.choice(name, choices) if self.raw(name) is not None else None

    def at_least(self, name: str, value: int, other: str, other_value: int) -> None:
        if value < other_value and not self.failed & {name, other}:
            given = "" if self.raw(name) is not None else " (the default)"
            self.problem(
                name,
                f"{value}{given} is less than {other}={other_value}; "
                f"set it to at least {other_value}",
            )

    def _warn_unknown(self) -> None:
        for name in self._environ:
            if name.startswith("CWC_") and name not in DEFAULTS:
                close = difflib.get_close_matches(name, DEFAULTS, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.warnings.append(f"{name}: unknown variable, ignored{hint}")


def show(text: str, limit: int = 80) -> str:
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"-?\d{1,18}", text):
        raise ValueError(f"expected a whole number, got {show(text)}")
    return int(text)


def _parse_float(text: str) -> float:
    if not re.fullmatch(r"-?(?:\d{1,18}(?:\.\d+)?|\.\d+)", text):
        raise ValueError(f"expected a number, got {show(text)}")
    return float(text)


def split_list(text: str | None) -> list[str]:
    """Comma-separated items, stripped, empty ones dropped, duplicates removed in order."""
    if text is None:
        return []
    items = (item.strip() for item in text.split(","))
    return list(dict.fromkeys(item for item in items if item))


def read_start_position(env: Reader, now_ms: int) -> StartPosition:
    name = "CWC_START_POSITION"
    try:
        position = parse_start_position(env.text(name), now_ms)
    except ValueError as exc:
        env.problem(name, str(exc))
        return StartPosition("beginning")
    if position.time_ms is not None and position.time_ms > now_ms:
        env.warnings.append(
            f"{name}: {position} is in the future; new groups skip events until then"
        )
    return position


def format_addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_addr(text: str) -> tuple[str, int] | None:
    if text.lower() == "off":
        return None
    usage = f"expected host:port, [IPv6]:port, :port or off, got {show(text)}"
    if text.startswith("["):
        host, bracket, port_text = text[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise ValueError(usage)
        port_text = port_text[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{show(host)} is not an IPv6 address, got {show(text)}") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(usage)
        if ":" in host:
            raise ValueError(f"put an IPv6 address in brackets, like [::1]:9600, got {show(text)}")
        host = host or "0.0.0.0"
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{show(host)} is not a host name or address, got {show(text)}")
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {show(text)}")
    return host, int(port_text)


def read_admin_addr(env: Reader) -> tuple[str, int] | None:
    try:
        return _parse_addr(env.text("CWC_ADMIN_ADDR"))
    except ValueError as exc:
        env.problem("CWC_ADMIN_ADDR", str(exc))
        return None


def read_log_level(env: Reader) -> str:
    value = env.text("CWC_LOG_LEVEL").upper()
    value = "WARNING" if value == "WARN" else value
    if value not in LOG_LEVELS:
        env.problem(
            "CWC_LOG_LEVEL",
            f"must be one of {', '.join(LOG_LEVELS)}, got {show(env.text('CWC_LOG_LEVEL'))}",
        )
        return DEFAULTS["CWC_LOG_LEVEL"]
    return value


def _iso_ms(time_ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=time_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
