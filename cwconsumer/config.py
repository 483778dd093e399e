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

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TypeVar

from cwconsumer.awsconfig import read_groups, read_prefixes, read_region, read_role
from cwconsumer.errors import ConfigError
from cwconsumer.secrets import header_is_secret
from cwconsumer.sinkconfig import (
    read_ca_file,
    read_headers,
    read_loki_labels,
    read_sink_url,
    read_splunk_index,
    read_token,
    redact_url,
)
from cwconsumer.units import format_duration
from cwconsumer.variables import (
    LOG_LEVELS,
    REDACTED,
    VARIABLES,
    Reader,
    Secret,
    StartPosition,
    format_addr,
    parse_start_position,
    read_admin_addr,
    read_log_level,
    read_start_position,
    validate_db_path,
)

_T = TypeVar("_T")

__all__ = [
    "LOG_LEVELS",
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
DEFAULT_LEASE_TTL_S = 10.0
"""``CWC_LEASE_TTL``'s default, in seconds."""

SINK_FORMATS: tuple[str, ...] = ("ndjson", "json", "elasticsearch", "splunk-hec", "loki", "otlp")
OTLP_ENCODINGS: tuple[str, ...] = ("protobuf", "json")
PARSE_MODES: tuple[str, ...] = ("auto", "none", "lambda", "json")


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
                out[item.name] = redact_url(value)
            elif item.name == "sink_headers":
                out[item.name] = {k: REDACTED if header_is_secret(k, v) else v for k, v in value}
            elif item.name == "loki_labels":
                out[item.name] = dict(value)
            elif item.name == "start_position":
                out[item.name] = str(value)
            elif item.name == "admin_addr":
                out[item.name] = None if value is None else format_addr(value)
            elif isinstance(value, Secret):
                out[item.name] = REDACTED
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
    env = Reader(environ)

    region = read_region(env)
    log_groups = read_groups(env, region)
    log_group_prefixes = read_prefixes(env)
    if not log_groups and not log_group_prefixes and not env.failed & _GROUP_VARS:
        env.problem(
            "CWC_LOG_GROUPS",
            "no log groups configured; set CWC_LOG_GROUPS and/or CWC_LOG_GROUP_PREFIXES",
        )

    sink_url, sink_username, sink_password = read_sink_url(env)
    sink_format = env.choice("CWC_SINK_FORMAT", SINK_FORMATS)
    sink_token = read_token(env)
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
    sink_headers = read_headers(env, has_auth=sink_token is not None or sink_username is not None)

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

    start_position = read_start_position(env, now_ms)
    aws_role_arn, aws_external_id, aws_role_session_name = read_role(env)
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
        splunk_index=read_splunk_index(env),
        loki_labels=read_loki_labels(env),
        sink_ca_file=read_ca_file(env),
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
        admin_addr=read_admin_addr(env),
        stall_timeout_s=env.duration("CWC_STALL_TIMEOUT"),
        shutdown_timeout_s=env.duration("CWC_SHUTDOWN_TIMEOUT"),
        log_level=read_log_level(env),
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


def _load_part(environ: Mapping[str, str], read: Callable[[Reader], _T]) -> _T:
    env = Reader(environ)
    value = read(env)
    if env.problems:
        raise ConfigError(env.problems)
    return value


def load_existing_db_path(environ: Mapping[str, str]) -> str:
    """``CWC_DB_PATH`` as ``run`` resolves it, for a command that reads the
    database a run made; :class:`ConfigError` when there is no file there."""

    def read(env: Reader) -> str:
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
    return _load_part(environ, read_admin_addr)


def aws_endpoint(environ: Mapping[str, str]) -> str | None:
    """The CloudWatch Logs endpoint URL botocore is given, if any
    (``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``, else ``AWS_ENDPOINT_URL``)."""
    for name in ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_ENDPOINT_URL"):
        value = (environ.get(name) or "").strip()
        if value:
            return value
    return None


def _read_db_path_text(env: Reader) -> str:
    return os.path.abspath(os.path.expanduser(env.text("CWC_DB_PATH")))


_GROUP_VARS = frozenset({"CWC_LOG_GROUPS", "CWC_LOG_GROUP_PREFIXES"})
_TOKEN_VARS = frozenset({"CWC_SINK_TOKEN", "CWC_SINK_TOKEN_FILE"})
_LEASE_VARS = frozenset({"CWC_LEASE_HEARTBEAT", "CWC_LEASE_TTL"})
_POLL_VARS = frozenset({"CWC_POLL_INTERVAL", "CWC_QUIET_POLL_INTERVAL"})
_FORGET_VARS = frozenset({"CWC_IDLE_GRACE", "CWC_FORGET_AFTER"})


_FORMAT_ONLY: tuple[tuple[str, str], ...] = (
    ("CWC_SINK_INDEX", "elasticsearch"),
    ("CWC_SPLUNK_ACK", "splunk-hec"),
    ("CWC_SPLUNK_SOURCETYPE", "splunk-hec"),
    ("CWC_SPLUNK_INDEX", "splunk-hec"),
    ("CWC_LOKI_LABELS", "loki"),
    ("CWC_OTLP_ENCODING", "otlp"),
)


def _warn_unused(env: Reader, sink_format: str) -> None:
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
