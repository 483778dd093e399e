"""Environment -> one immutable :class:`Config`, validated as a whole (pure).

:func:`load_config` is the only way to build a :class:`Config`. It reads every
variable, collects every problem and raises one :class:`ConfigError` listing
them all, one line each, each line starting with the variable's name. It never
creates or changes anything on disk: the only I/O is reading the token file and
looking at paths (``os.path`` / ``os.access``).

A variable set to an empty (or all-blank) value counts as unset, because task
definitions and ``.env`` files often carry blank entries.

Secrets (the sink token, the URL's password, credential-looking headers and
query parameters) never appear in problem lines, in ``repr`` or in
:meth:`Config.redacted`.
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from cwconsumer.errors import ConfigError
from cwconsumer.secrets import header_is_secret
from cwconsumer.units import format_duration, parse_bool, parse_duration, parse_size

__all__ = [
    "VARIABLES",
    "Config",
    "ConfigError",
    "Secret",
    "StartPosition",
    "aws_endpoint",
    "load_admin_addr",
    "load_config",
    "load_existing_db_path",
    "load_lease_ttl_s",
    "parse_start_position",
    "validate_db_path",
]

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
     "this long (row pruned; read from its beginning if it shows activity again)"),
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

_DEFAULTS: dict[str, str] = {name: default for name, default, _ in VARIABLES}
DEFAULT_LEASE_TTL_S = 10.0
"""``CWC_LEASE_TTL``'s default, in seconds."""

SINK_FORMATS: tuple[str, ...] = ("ndjson", "json", "elasticsearch", "splunk-hec", "loki", "otlp")
OTLP_ENCODINGS: tuple[str, ...] = ("protobuf", "json")
PARSE_MODES: tuple[str, ...] = ("auto", "none", "lambda", "json")
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

_GROUP_NAME = re.compile(r"[A-Za-z0-9_./#-]{1,512}")
_GROUP_ARN = re.compile(
    r"arn:(aws[a-z-]*):logs:([a-z0-9-]+):(\d{12}):log-group:([^:]+)(?::\*)?", re.ASCII
)
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}", re.ASCII)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_SPLUNK_INDEX = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Set by the HTTP sender itself; letting an operator override them breaks framing.
_RESERVED_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "host", "connection"}
)
_TOKEN_FILE_LIMIT = 64 * 1024
_REDACTED = "***"
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
        return _REDACTED

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
            f"time, got {_show(text)}"
        )
    if re.match(r"\d{4}-\d{2}-\d{2}|\d{8}T", value):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"is not a valid ISO-8601 time ({exc}), got {_show(text)}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        time_ms = (moment - _EPOCH) // timedelta(milliseconds=1)
        if time_ms < 0:
            raise ValueError(f"must not be before 1970, got {_show(text)}")
        return StartPosition("time", time_ms)
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"expected {_START_FORMS}, got {_show(text)}") from None
    time_ms = now_ms - round(seconds * 1000)
    if time_ms < 0:
        raise ValueError(f"reaches back before 1970, got {_show(text)}")
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


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Config:
    """The whole configuration, validated. Build it with :func:`load_config` only.

    Units are in the names: ``_s`` seconds, ``_bytes`` bytes, ``_ms`` epoch ms.
    ``warnings`` holds lines worth logging at start-up that are not errors
    (unknown ``CWC_`` variables, settings the chosen sink format ignores).
    """

    log_groups: tuple[str, ...]
    log_group_prefixes: tuple[str, ...]
    sink_url: str
    sink_username: str | None
    sink_password: Secret | None
    sink_format: str
    sink_token: Secret | None
    sink_headers: tuple[tuple[str, str], ...]
    sink_gzip: bool
    sink_gzip_level: int
    sink_timeout_s: float
    sink_concurrency: int
    sink_index: str
    splunk_ack: bool
    splunk_sourcetype: str
    splunk_index: str | None
    loki_labels: tuple[tuple[str, str], ...]
    sink_ca_file: str | None
    sink_max_request_bytes: int
    batch_max_events: int
    batch_max_bytes: int
    batch_max_wait_s: float
    buffer_max_events: int
    buffer_max_bytes: int
    db_path: str
    db_journal_mode: str | None
    start_position: StartPosition
    poll_interval_s: float
    discovery_interval_s: float
    idle_grace_s: float
    quiet_poll_interval_s: float
    forget_after_s: float
    workers: int
    api_rate: float
    describe_rate: float
    admin_addr: tuple[str, int] | None
    stall_timeout_s: float
    shutdown_timeout_s: float
    log_level: str
    log_format: str
    parse_mode: str
    emf_metrics: bool
    region: str
    lease_heartbeat_s: float
    lease_ttl_s: float
    aws_timeout_s: float
    otlp_encoding: str = "protobuf"
    aws_role_arn: str | None = None
    aws_external_id: Secret | None = None
    aws_role_session_name: str = "cwconsumer"
    include_linked_accounts: bool = False
    unmask: bool = False
    warnings: tuple[str, ...] = ()

    def redacted(self) -> dict[str, object]:
        """Every field as JSON-serialisable values, secrets shown as ``***``."""
        out: dict[str, object] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "sink_url":
                out[item.name] = _redact_url(value)
            elif item.name == "sink_headers":
                out[item.name] = {k: _REDACTED if header_is_secret(k, v) else v for k, v in value}
            elif item.name == "loki_labels":
                out[item.name] = dict(value)
            elif item.name == "start_position":
                out[item.name] = str(value)
            elif item.name == "admin_addr":
                out[item.name] = None if value is None else _format_addr(value)
            elif isinstance(value, Secret):
                out[item.name] = _REDACTED
            elif isinstance(value, tuple):
                out[item.name] = list(value)
            else:
                out[item.name] = value
        return out

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"Config({body})"


def load_config(environ: Mapping[str, str], *, now_ms: int | None = None) -> Config:
    """Build the :class:`Config` from ``environ`` or raise :class:`ConfigError` with every problem.

    ``now_ms`` (epoch ms, default: the current time) resolves a start position
    given as a duration back from now.
    """
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    env = _Reader(environ)

    region = _read_region(env)
    log_groups = _read_groups(env, region)
    log_group_prefixes = _read_prefixes(env)
    if not log_groups and not log_group_prefixes and not env.failed & _GROUP_VARS:
        env.problem(
            "CWC_LOG_GROUPS",
            "no log groups configured; set CWC_LOG_GROUPS and/or CWC_LOG_GROUP_PREFIXES",
        )

    sink_url, sink_username, sink_password = _read_sink_url(env)
    sink_format = env.choice("CWC_SINK_FORMAT", SINK_FORMATS)
    sink_token = _read_token(env)
    if sink_token is not None and sink_username is not None:
        env.problem(
            "CWC_SINK_TOKEN" if env.raw("CWC_SINK_TOKEN") else "CWC_SINK_TOKEN_FILE",
            "cannot be combined with a user:password in CWC_SINK_URL "
            "(both set the Authorization header)",
        )
    if sink_format == "splunk-hec" and sink_token is None and not env.failed & _TOKEN_VARS:
        env.problem(
            "CWC_SINK_TOKEN",
            "required for CWC_SINK_FORMAT=splunk-hec (set CWC_SINK_TOKEN or CWC_SINK_TOKEN_FILE)",
        )
    if sink_token is not None and sink_url.startswith("http://"):
        env.warnings.append("CWC_SINK_TOKEN: is sent in clear text because CWC_SINK_URL is http://")
    sink_headers = _read_headers(env, has_auth=sink_token is not None or sink_username is not None)

    batch_max_events = env.integer("CWC_BATCH_MAX_EVENTS", 1, 100_000)
    batch_max_bytes = env.size("CWC_BATCH_MAX_BYTES", 1)
    buffer_max_events = env.integer("CWC_BUFFER_MAX_EVENTS", 1, None)
    buffer_max_bytes = env.size("CWC_BUFFER_MAX_BYTES", 1)
    env.at_least(
        "CWC_BUFFER_MAX_EVENTS", buffer_max_events, "CWC_BATCH_MAX_EVENTS", batch_max_events
    )
    env.at_least("CWC_BUFFER_MAX_BYTES", buffer_max_bytes, "CWC_BATCH_MAX_BYTES", batch_max_bytes)

    lease_heartbeat_s = env.duration("CWC_LEASE_HEARTBEAT")
    lease_ttl_s = env.duration("CWC_LEASE_TTL")
    if lease_ttl_s <= 2 * lease_heartbeat_s and not env.failed & _LEASE_VARS:
        env.problem(
            "CWC_LEASE_TTL",
            f"must be more than twice CWC_LEASE_HEARTBEAT ({format_duration(lease_heartbeat_s)}), "
            f"got {format_duration(lease_ttl_s)}",
        )

    db_path = _read_db_path_text(env)
    db_problem = validate_db_path(db_path)
    if db_problem is not None:
        env.problem("CWC_DB_PATH", db_problem)

    start_position = _read_start_position(env, now_ms)
    aws_role_arn, aws_external_id, aws_role_session_name = _read_role(env)
    _warn_unused(env, sink_format)

    poll_interval_s = env.duration("CWC_POLL_INTERVAL")
    idle_grace_s = env.duration("CWC_IDLE_GRACE")
    quiet_poll_interval_s = env.duration("CWC_QUIET_POLL_INTERVAL")
    forget_after_s = env.duration("CWC_FORGET_AFTER")
    if quiet_poll_interval_s < poll_interval_s and not env.failed & _POLL_VARS:
        env.problem(
            "CWC_QUIET_POLL_INTERVAL",
            f"must be at least CWC_POLL_INTERVAL ({format_duration(poll_interval_s)}), "
            f"got {format_duration(quiet_poll_interval_s)}",
        )
    if forget_after_s < 3 * idle_grace_s and not env.failed & _FORGET_VARS:
        env.problem(
            "CWC_FORGET_AFTER",
            f"must be at least 3 x CWC_IDLE_GRACE ({format_duration(3 * idle_grace_s)}), "
            f"got {format_duration(forget_after_s)}",
        )

    config = Config(
        log_groups=log_groups,
        log_group_prefixes=log_group_prefixes,
        sink_url=sink_url,
        sink_username=sink_username,
        sink_password=sink_password,
        sink_format=sink_format,
        sink_token=sink_token,
        sink_headers=sink_headers,
        sink_gzip=env.boolean("CWC_SINK_GZIP"),
        sink_gzip_level=env.integer("CWC_SINK_GZIP_LEVEL", 1, 9),
        sink_timeout_s=env.duration("CWC_SINK_TIMEOUT"),
        sink_concurrency=env.integer("CWC_SINK_CONCURRENCY", 1, 64),
        sink_index=env.text("CWC_SINK_INDEX"),
        splunk_ack=env.boolean("CWC_SPLUNK_ACK"),
        splunk_sourcetype=env.text("CWC_SPLUNK_SOURCETYPE"),
        splunk_index=_read_splunk_index(env),
        loki_labels=_read_loki_labels(env),
        sink_ca_file=_read_ca_file(env),
        sink_max_request_bytes=env.size("CWC_SINK_MAX_REQUEST_BYTES", 64 * 1024),
        batch_max_events=batch_max_events,
        batch_max_bytes=batch_max_bytes,
        batch_max_wait_s=env.duration("CWC_BATCH_MAX_WAIT"),
        buffer_max_events=buffer_max_events,
        buffer_max_bytes=buffer_max_bytes,
        db_path=db_path,
        db_journal_mode=env.optional_choice("CWC_DB_JOURNAL_MODE", ("wal", "delete")),
        start_position=start_position,
        poll_interval_s=poll_interval_s,
        discovery_interval_s=env.duration("CWC_DISCOVERY_INTERVAL"),
        idle_grace_s=idle_grace_s,
        quiet_poll_interval_s=quiet_poll_interval_s,
        forget_after_s=forget_after_s,
        workers=env.integer("CWC_WORKERS", 1, 256),
        api_rate=env.rate("CWC_API_RATE", 1000.0),
        describe_rate=env.rate("CWC_DESCRIBE_RATE", None),
        admin_addr=_read_admin_addr(env),
        stall_timeout_s=env.duration("CWC_STALL_TIMEOUT"),
        shutdown_timeout_s=env.duration("CWC_SHUTDOWN_TIMEOUT"),
        log_level=_read_log_level(env),
        log_format=env.choice("CWC_LOG_FORMAT", ("json", "text")),
        parse_mode=env.choice("CWC_PARSE", PARSE_MODES),
        emf_metrics=env.boolean("CWC_EMF_METRICS"),
        region=region,
        lease_heartbeat_s=lease_heartbeat_s,
        lease_ttl_s=lease_ttl_s,
        aws_timeout_s=env.duration("CWC_AWS_TIMEOUT"),
        otlp_encoding=env.choice("CWC_OTLP_ENCODING", OTLP_ENCODINGS),
        aws_role_arn=aws_role_arn,
        aws_external_id=aws_external_id,
        aws_role_session_name=aws_role_session_name,
        include_linked_accounts=env.boolean("CWC_INCLUDE_LINKED_ACCOUNTS"),
        unmask=env.boolean("CWC_UNMASK"),
        warnings=tuple(env.warnings),
    )
    if env.problems:
        raise ConfigError(_in_table_order(env.problems))
    return config


# -- the parts a command needs --------------------------------------------------------
# Commands that do not consume (status, reset, dead-letters, healthcheck) read
# only the variables they use, with the same readers and messages as
# load_config: a problem elsewhere in the configuration does not stop them.


def _load_part(environ: Mapping[str, str], read: Callable[[_Reader], _T]) -> _T:
    env = _Reader(environ)
    value = read(env)
    if env.problems:
        raise ConfigError(env.problems)
    return value


def load_existing_db_path(environ: Mapping[str, str]) -> str:
    """``CWC_DB_PATH`` as ``run`` resolves it, for a command that reads the
    database a run made; :class:`ConfigError` when there is no file there."""

    def read(env: _Reader) -> str:
        path = _read_db_path_text(env)
        if not os.path.exists(path):
            problem = validate_db_path(path)
            env.problem(
                "CWC_DB_PATH",
                problem or f"{path} does not exist yet (start `cwconsumer run` first)",
            )
        return path

    return _load_part(environ, read)


def load_lease_ttl_s(environ: Mapping[str, str]) -> float:
    """``CWC_LEASE_TTL`` in seconds: when a lease counts as stale."""
    return _load_part(environ, lambda env: env.duration("CWC_LEASE_TTL"))


def load_admin_addr(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """``CWC_ADMIN_ADDR`` as (host, port); None when ``off``."""
    return _load_part(environ, _read_admin_addr)


def aws_endpoint(environ: Mapping[str, str]) -> str | None:
    """The CloudWatch Logs endpoint URL botocore is given, if any
    (``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``, else ``AWS_ENDPOINT_URL``)."""
    for name in ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_ENDPOINT_URL"):
        value = (environ.get(name) or "").strip()
        if value:
            return value
    return None


def _read_db_path_text(env: _Reader) -> str:
    return os.path.abspath(os.path.expanduser(env.text("CWC_DB_PATH")))


_GROUP_VARS = frozenset({"CWC_LOG_GROUPS", "CWC_LOG_GROUP_PREFIXES"})
_TOKEN_VARS = frozenset({"CWC_SINK_TOKEN", "CWC_SINK_TOKEN_FILE"})
_LEASE_VARS = frozenset({"CWC_LEASE_HEARTBEAT", "CWC_LEASE_TTL"})
_POLL_VARS = frozenset({"CWC_POLL_INTERVAL", "CWC_QUIET_POLL_INTERVAL"})
_FORGET_VARS = frozenset({"CWC_IDLE_GRACE", "CWC_FORGET_AFTER"})
_REGION_VARS = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})


class _Pairs(list[tuple[str, object]]):
    """A JSON object read as its key/value pairs (keeps duplicate keys visible)."""


class _Reader:
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
        return self.raw(name) or _DEFAULTS[name]

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
        return parse(_DEFAULTS[name])

    def duration(self, name: str) -> float:
        seconds = self._parsed(name, parse_duration)
        if seconds <= 0:
            self.problem(name, f"must be longer than 0, got {_show(self.text(name))}")
            return parse_duration(_DEFAULTS[name])
        return seconds

    def size(self, name: str, minimum: int) -> int:
        size = self._parsed(name, parse_size)
        if size < minimum:
            wanted = "more than 0" if minimum == 1 else f"at least {_format_size(minimum)}"
            self.problem(name, f"must be {wanted}, got {_show(self.text(name))}")
            return parse_size(_DEFAULTS[name])
        return size

    def integer(self, name: str, lowest: int, highest: int | None) -> int:
        number = self._parsed(name, _parse_int)
        if number < lowest or (highest is not None and number > highest):
            wanted = f"at least {lowest}" if highest is None else f"from {lowest} to {highest}"
            self.problem(name, f"must be {wanted}, got {number}")
            return int(_DEFAULTS[name])
        return number

    def rate(self, name: str, highest: float | None) -> float:
        number = self._parsed(name, _parse_float)
        if number <= 0 or (highest is not None and number > highest):
            limit = "" if highest is None else f" and at most {highest:g}"
            self.problem(name, f"must be more than 0{limit} (calls per second), got {number:g}")
            return float(_DEFAULTS[name])
        return number

    def boolean(self, name: str) -> bool:
        return self._parsed(name, parse_bool)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.text(name).lower()
        if value not in choices:
            self.problem(name, f"must be one of {', '.join(choices)}, got {_show(self.text(name))}")
            return _DEFAULTS[name]
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
            if name.startswith("CWC_") and name not in _DEFAULTS:
                close = difflib.get_close_matches(name, _DEFAULTS, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.warnings.append(f"{name}: unknown variable, ignored{hint}")


def _show(text: str, limit: int = 80) -> str:
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
        raise ValueError(f"expected a whole number, got {_show(text)}")
    return int(text)


def _parse_float(text: str) -> float:
    if not re.fullmatch(r"-?(?:\d{1,18}(?:\.\d+)?|\.\d+)", text):
        raise ValueError(f"expected a number, got {_show(text)}")
    return float(text)


def _split_list(text: str | None) -> list[str]:
    """Comma-separated items, stripped, empty ones dropped, duplicates removed in order."""
    if text is None:
        return []
    items = (item.strip() for item in text.split(","))
    return list(dict.fromkeys(item for item in items if item))


def _read_region(env: _Reader) -> str:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = env.raw(name)
        if value is not None:
            if not _REGION.fullmatch(value):
                env.problem(name, f"is not a valid AWS region name, got {_show(value)}")
            return value
    env.problem("AWS_REGION", "not set (the region of the log groups)")
    return ""


def _read_groups(env: _Reader, region: str) -> tuple[str, ...]:
    names: list[str] = []
    for item in _split_list(env.raw("CWC_LOG_GROUPS")):
        name = item
        if item.startswith("arn:"):
            match = _GROUP_ARN.fullmatch(item)
            if match is None:
                env.problem(
                    "CWC_LOG_GROUPS",
                    f"{_show(item)} is not a log group ARN "
                    "(expected arn:aws:logs:REGION:ACCOUNT:log-group:NAME)",
                )
                continue
            name = match.group(4)
            arn_region = match.group(2)
            # Kept as the ARN (without ":*"): the group's identity everywhere
            # (logGroupIdentifier in the API calls, checkpoints, event.id),
            # so groups of one name in several accounts stay apart.
            item = item.removesuffix(":*")
            if region and not env.failed & _REGION_VARS and arn_region != region:
                env.problem(
                    "CWC_LOG_GROUPS",
                    f"{_show(item)} is in region {arn_region}, but the configured region is "
                    f"{region}; one process reads one region",
                )
                continue
        if not _GROUP_NAME.fullmatch(name):
            env.problem(
                "CWC_LOG_GROUPS",
                f"{_show(name)} is not a valid log group name "
                "(1-512 characters from A-Z a-z 0-9 _ - / . #)",
            )
            continue
        names.append(item)
    return tuple(dict.fromkeys(names))


def _read_role(env: _Reader) -> tuple[str | None, Secret | None, str]:
    """``CWC_AWS_ROLE_ARN``, ``CWC_AWS_EXTERNAL_ID`` (a secret: never shown),
    ``CWC_AWS_ROLE_SESSION_NAME``."""
    role = env.raw("CWC_AWS_ROLE_ARN")
    if role is not None and not _ROLE_ARN.fullmatch(role):
        env.problem(
            "CWC_AWS_ROLE_ARN",
            f"{_show(role)} is not an IAM role ARN (expected arn:aws:iam::ACCOUNT:role/NAME)",
        )
        role = None
    raw_external = env.raw("CWC_AWS_EXTERNAL_ID")
    external: Secret | None = None
    if raw_external is not None:
        if not _EXTERNAL_ID.fullmatch(raw_external):
            # The value is a secret: never repeated in the problem line.
            env.problem(
                "CWC_AWS_EXTERNAL_ID",
                "must be 2 to 1224 characters from A-Z a-z 0-9 and + = , . @ : / - _",
            )
        elif env.raw("CWC_AWS_ROLE_ARN") is None:
            env.problem(
                "CWC_AWS_EXTERNAL_ID", "is only used with CWC_AWS_ROLE_ARN, which is not set"
            )
        else:
            external = Secret(raw_external)
    session = env.text("CWC_AWS_ROLE_SESSION_NAME")
    if not _SESSION_NAME.fullmatch(session):
        env.problem(
            "CWC_AWS_ROLE_SESSION_NAME",
            f"must be 2 to 64 characters from A-Z a-z 0-9 and + = , . @ - _, got {_show(session)}",
        )
        session = _DEFAULTS["CWC_AWS_ROLE_SESSION_NAME"]
    return role, external, session


def _read_prefixes(env: _Reader) -> tuple[str, ...]:
    prefixes: list[str] = []
    for item in _split_list(env.raw("CWC_LOG_GROUP_PREFIXES")):
        if item.startswith("arn:"):
            env.problem(
                "CWC_LOG_GROUP_PREFIXES", f"must be name prefixes, not ARNs, got {_show(item)}"
            )
        elif not _GROUP_NAME.fullmatch(item):
            env.problem(
                "CWC_LOG_GROUP_PREFIXES",
                f"{_show(item)} is not a valid log group name prefix "
                "(1-512 characters from A-Z a-z 0-9 _ - / . #)",
            )
        else:
            prefixes.append(item)
    return tuple(prefixes)


def _redact_url(url: str) -> str:
    """The URL for display: password replaced by ``***``, credential-like query values too.

    Works on text that is not a valid URL as well. The *last* ``@`` ends the
    user information, so an unencoded ``/`` or ``@`` in a password stays hidden.
    """
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    at = url.rfind("@", start)
    if at != -1:
        user, colon, _ = url[start:at].partition(":")
        url = f"{url[:start]}{user}{':' + _REDACTED if colon else ''}{url[at:]}"
    base, question, rest = url.partition("?")
    if not question:
        return url
    query, hash_mark, fragment = rest.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(v for _, v in pairs):
        return url
    # Every value: a signed URL's parameters have names nobody can list.
    query = urlencode([(k, _REDACTED if v else v) for k, v in pairs], safe="*")
    return f"{base}?{query}{hash_mark}{fragment}"


def _read_sink_url(env: _Reader) -> tuple[str, str | None, Secret | None]:
    name = "CWC_SINK_URL"
    raw = env.raw(name)
    if raw is None:
        env.problem(name, "not set (the http:// or https:// URL of the log pipeline)")
        return "", None, None
    shown = _show(_redact_url(raw))
    if _CONTROL.search(raw) or " " in raw:
        env.problem(name, f"must not contain spaces or control characters, got {shown}")
        return "", None, None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        env.problem(name, f"is not a valid URL (check the host and port), got {shown}")
        return "", None, None
    if parts.scheme.lower() not in ("http", "https"):
        env.problem(name, f"must be an http:// or https:// URL, got {shown}")
        return "", None, None
    if not parts.hostname:
        env.problem(name, f"must name a host, got {shown}")
        return "", None, None
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        env.problem(
            name,
            "has an '@' after the host; percent-encode special characters in the user name "
            f"and password ('@' as %40, '/' as %2F), got {shown}",
        )
        return "", None, None
    host_port = parts.netloc.rpartition("@")[2]
    url = urlunsplit((parts.scheme.lower(), host_port, parts.path, parts.query, parts.fragment))
    username = unquote(parts.username) if parts.username else None
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    if password is not None and username is None:
        username = ""
    return url, username, password


def _read_token(env: _Reader) -> Secret | None:
    token = env.raw("CWC_SINK_TOKEN")
    path = env.raw("CWC_SINK_TOKEN_FILE")
    if token is not None and path is not None:
        env.problem("CWC_SINK_TOKEN_FILE", "cannot be used together with CWC_SINK_TOKEN; set one")
        return None
    name = "CWC_SINK_TOKEN"
    if path is not None:
        name = "CWC_SINK_TOKEN_FILE"
        token, problem = _read_token_file(path)
        if problem is not None:
            env.problem(name, problem)
            return None
    if token is None:
        return None
    if _CONTROL.search(token) or not token.isascii():
        where = "the token in the file" if path is not None else "the token"
        env.problem(name, f"{where} contains line breaks, control or non-ASCII characters")
        return None
    return Secret(token)


def _read_token_file(path: str) -> tuple[str | None, str | None]:
    """``(token, None)`` or ``(None, problem)``; the token is stripped of surrounding whitespace."""
    if not os.path.exists(path):
        return None, f"file '{path}' does not exist"
    if not os.path.isfile(path):
        return None, f"'{path}' is not a regular file"
    try:
        with open(path, "rb") as handle:
            data = handle.read(_TOKEN_FILE_LIMIT + 1)
    except OSError as exc:
        return None, f"cannot read file '{path}': {exc.strerror or exc}"
    if len(data) > _TOKEN_FILE_LIMIT:
        return None, f"file '{path}' is larger than 64 KiB; is it really the token file?"
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"file '{path}' is not UTF-8 text"
    if not text:
        return None, f"file '{path}' is empty"
    return text, None


def _read_headers(env: _Reader, *, has_auth: bool) -> tuple[tuple[str, str], ...]:
    name = "CWC_SINK_HEADERS"
    raw = env.raw(name)
    if raw is None:
        return ()
    try:
        # Pairs, not a dict, so duplicate keys are seen instead of silently collapsed.
        document = json.loads(raw, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        env.problem(
            name,
            'must be a JSON object like {"X-Env": "prod"}: '
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
        )
        return ()
    if not isinstance(document, _Pairs):
        env.problem(name, 'must be a JSON object of strings like {"X-Env": "prod"}')
        return ()
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in document:
        lowered = key.lower()
        if not isinstance(value, str):
            env.problem(name, f"the value of header {_show(key)} must be a string")
        elif not _HEADER_NAME.fullmatch(key):
            env.problem(name, f"{_show(key)} is not a valid header name")
        elif _CONTROL.search(value):
            env.problem(name, f"the value of header {_show(key)} contains control characters")
        elif lowered in _RESERVED_HEADERS:
            env.problem(name, f"header {_show(key)} is set by cwconsumer and cannot be overridden")
        elif lowered == "authorization" and has_auth:
            env.problem(
                name,
                "header 'Authorization' conflicts with CWC_SINK_TOKEN/CWC_SINK_TOKEN_FILE or "
                "the user:password in CWC_SINK_URL; use one of them",
            )
        elif lowered in seen:
            env.problem(name, f"header {_show(key)} is given twice")
        else:
            seen.add(lowered)
            headers.append((key, value))
    return tuple(headers)


def _read_loki_labels(env: _Reader) -> tuple[tuple[str, str], ...]:
    name = "CWC_LOKI_LABELS"
    labels: dict[str, str] = {}
    for item in _split_list(env.raw(name)):
        label, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not label or not value:
            env.problem(name, f"expected name=value pairs separated by commas, got {_show(item)}")
        elif not _LABEL_NAME.fullmatch(label):
            env.problem(name, f"label name {_show(label)} must match [a-zA-Z_][a-zA-Z0-9_]*")
        elif label.startswith("__"):
            env.problem(name, f"label names starting with '__' are reserved, got {_show(label)}")
        elif label in labels:
            env.problem(name, f"label {_show(label)} is given twice")
        else:
            labels[label] = value
    return tuple(labels.items())


def _read_splunk_index(env: _Reader) -> str | None:
    index = env.raw("CWC_SPLUNK_INDEX")
    if index is not None and not _SPLUNK_INDEX.fullmatch(index):
        env.problem(
            "CWC_SPLUNK_INDEX",
            "Splunk index names are lowercase letters, digits, '_' and '-', not starting with "
            f"'_' or '-', got {_show(index)}",
        )
        return None
    return index


def _read_ca_file(env: _Reader) -> str | None:
    name = "CWC_SINK_CA_FILE"
    raw = env.raw(name)
    if raw is None:
        return None
    path = os.path.abspath(os.path.expanduser(raw))
    if not os.path.exists(path):
        env.problem(name, f"file '{path}' does not exist")
    elif not os.path.isfile(path):
        env.problem(name, f"'{path}' is not a regular file")
    elif not os.access(path, os.R_OK):
        env.problem(name, f"file '{path}' is not readable")
    return path


def _read_start_position(env: _Reader, now_ms: int) -> StartPosition:
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


def _format_addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_addr(text: str) -> tuple[str, int] | None:
    if text.lower() == "off":
        return None
    usage = f"expected host:port, [IPv6]:port, :port or off, got {_show(text)}"
    if text.startswith("["):
        host, bracket, port_text = text[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise ValueError(usage)
        port_text = port_text[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{_show(host)} is not an IPv6 address, got {_show(text)}") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(usage)
        if ":" in host:
            raise ValueError(f"put an IPv6 address in brackets, like [::1]:9600, got {_show(text)}")
        host = host or "0.0.0.0"
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{_show(host)} is not a host name or address, got {_show(text)}")
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {_show(text)}")
    return host, int(port_text)


def _read_admin_addr(env: _Reader) -> tuple[str, int] | None:
    try:
        return _parse_addr(env.text("CWC_ADMIN_ADDR"))
    except ValueError as exc:
        env.problem("CWC_ADMIN_ADDR", str(exc))
        return None


def _read_log_level(env: _Reader) -> str:
    value = env.text("CWC_LOG_LEVEL").upper()
    value = "WARNING" if value == "WARN" else value
    if value not in LOG_LEVELS:
        env.problem(
            "CWC_LOG_LEVEL",
            f"must be one of {', '.join(LOG_LEVELS)}, got {_show(env.text('CWC_LOG_LEVEL'))}",
        )
        return _DEFAULTS["CWC_LOG_LEVEL"]
    return value


_FORMAT_ONLY: tuple[tuple[str, str], ...] = (
    ("CWC_SINK_INDEX", "elasticsearch"),
    ("CWC_SPLUNK_ACK", "splunk-hec"),
    ("CWC_SPLUNK_SOURCETYPE", "splunk-hec"),
    ("CWC_SPLUNK_INDEX", "splunk-hec"),
    ("CWC_LOKI_LABELS", "loki"),
    ("CWC_OTLP_ENCODING", "otlp"),
)


def _warn_unused(env: _Reader, sink_format: str) -> None:
    """Format-specific settings that the chosen format ignores: a typo or a leftover."""
    if "CWC_SINK_FORMAT" in env.failed:
        return
    for name, wanted in _FORMAT_ONLY:
        if sink_format != wanted and env.raw(name) is not None:
            env.warnings.append(
                f"{name}: has no effect with CWC_SINK_FORMAT={sink_format} (only with {wanted})"
            )


def _in_table_order(problems: list[str]) -> list[str]:
    """Problems sorted like the variables table (stable), so they read like the README."""
    order = {name: index for index, (name, _, _) in enumerate(VARIABLES)}
    return sorted(problems, key=lambda line: order.get(line.partition(":")[0], len(order)))


def _iso_ms(time_ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=time_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
