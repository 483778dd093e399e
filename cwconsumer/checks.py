"""``cwconsumer check``: each check on its own line with ✓/✗ and the reason.

Checks, in order: configuration; the database (writable, schema known, who
holds it); AWS credentials (found, and from where); with ``CWC_AWS_ROLE_ARN``
the AssumeRole itself (✗ names the role, never the external id); the account
read from; per configured prefix the group listing (ListLogGroups, or
DescribeLogGroups where that is missing); per configured group its log class
and data protection status (DescribeLogGroups), then DescribeLogStreams and
GetLogEvents (on its most recent stream, with ``unmask`` as configured), the
calls ``run`` makes; the sink (reachable and answering). Nothing is created or changed. Exit status 0 only when
every check passes; bad configuration is reported by the caller (status 2).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from cwconsumer.aws import LogsClient, aws_role, make_session
from cwconsumer.config import Config
from cwconsumer.errors import CwcError, NotFound
from cwconsumer.logs import REDACTOR
from cwconsumer.sinks.factory import build_sink
from cwconsumer.store import load_migrations
from cwconsumer.units import format_duration

CHECK_DB_LOCK_TIMEOUT_S = 5.0
PREFIX_GROUPS_CHECKED = 5
CHECK_TIMEOUT_S = 15.0


@dataclass(slots=True)
class Result:
    ok: bool
    what: str
    why: str

    def line(self) -> str:
        return REDACTOR.scrub(f"{'✓' if self.ok else '✗'} {self.what}: {self.why}")


async def run_checks(cfg: Config, emit: Callable[[str], None] = print) -> int:
    """Run every check, ``emit`` one line each and a summary; 0 if all pass, else 1."""
    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        emit(result.line())

    report(
        Result(
            True,
            "configuration",
            f"{len(cfg.log_groups)} group(s), {len(cfg.log_group_prefixes)} prefix(es), "
            f"sink {cfg.sink_format}",
        )
    )
    report(Result(True, "poll policy", poll_policy(cfg)))
    for warning in cfg.warnings:
        emit(REDACTOR.scrub(f"! {warning}"))
    ttl_ms = int(cfg.lease_ttl_s * 1000)
    report(await anyio.to_thread.run_sync(check_database, cfg.db_path, ttl_ms))
    for result in await _check_aws(cfg):
        report(result)
    report(await _check_sink(cfg))
    failed = sum(1 for r in results if not r.ok)
    emit(f"{len(results) - failed} passed, {failed} failed")
    return 0 if not failed else 1


def poll_policy(cfg: Config) -> str:
    """The poll policy's settings in one line (docs/freshness.md)."""
    d = format_duration
    return (
        f"{cfg.api_rate:g}/s GetLogEvents; active streams re-polled within "
        f"{d(cfg.poll_interval_s)}, quiet ones at half their quiet time up to "
        f"{d(cfg.quiet_poll_interval_s)}, idle after {d(cfg.idle_grace_s)}, forgotten after "
        f"{d(cfg.forget_after_s)} idle; streams listed every "
        f"{d(cfg.discovery_interval_s / 3)} (newest first, as deep as what changed), "
        f"{cfg.describe_rate:g}/s Describe*"
    )


def check_database(path: str, ttl_ms: int = 10_000) -> Result:
    """Writable, ours, schema known to this version; changes nothing
    (a write transaction is opened and rolled back)."""
    what = "database"
    if not os.path.exists(path):
        return Result(True, what, f"{path} will be created at the first run (directory writable)")
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header and header != b"SQLite format 3\x00":
        return Result(False, what, f"{path} is not an SQLite database")
    latest = len(load_migrations())
    try:
        conn = sqlite3.connect(
            Path(path).absolute().as_uri() + "?mode=rw",
            uri=True,
            timeout=CHECK_DB_LOCK_TIMEOUT_S,
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        return Result(False, what, f"cannot open {path} for writing: {exc}")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "schema_version" not in tables:
            return Result(False, what, f"{path} belongs to another program (no schema_version)")
        version = 0
        if "schema_version" in tables:
            version = int(
                conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            )
        if version > latest:
            return Result(
                False,
                what,
                f"{path} has schema {version}, newer than this cwconsumer ({latest}); upgrade",
            )
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            return Result(False, what, f"{path} is not writable: {exc}")
        holder = "; no run holds it"
        if "lease" in tables:
            row = conn.execute(
                "SELECT owner, host, pid, heartbeat_ms FROM lease WHERE id = 1"
            ).fetchone()
            if row is not None and row[0] and time.time() * 1000 - row[3] < ttl_ms:
                holder = f"; a run holds it now ({row[1]} pid {row[2]})"
    except sqlite3.DatabaseError as exc:
        return Result(False, what, f"{path} is not usable: {exc}")
    finally:
        conn.close()
    schema = f"schema {version} of {latest}"
    if version < latest:
        schema += f" ({latest - version} migration(s) pending; `run` applies them at start)"
    return Result(True, what, f"{path} writable, {schema}, journal {mode}{holder}")


async def _credentials() -> Result:
    what = "AWS credentials"
    try:
        creds = await make_session().get_credentials()
    except Exception as exc:  # botocore raises many kinds while resolving
        return Result(False, what, f"cannot be resolved: {type(exc).__name__}: {exc}")
    if creds is None:
        return Result(
            False,
            what,
            "none found (environment, shared credentials/config files, web identity, "
            "container or instance role)",
        )
    frozen = await creds.get_frozen_credentials()
    key = frozen.access_key or ""
    shown = f"{key[:4]}…{key[-4:]}" if len(key) > 8 else "…"
    return Result(True, what, f"found ({creds.method}, access key {shown})")


async def _check_aws(cfg: Config) -> list[Result]:
    out = [await _credentials()]
    if not out[0].ok:
        return out
    endpoint = os.environ.get("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    where = f"region {cfg.region}" + (f", endpoint {endpoint}" if endpoint else "")
    timeout = min(cfg.aws_timeout_s, CHECK_TIMEOUT_S)
    role = aws_role(cfg)
    try:
        async with LogsClient(
            cfg.region,
            get_rate=5,
            describe_rate=5,
            timeout_s=timeout,
            role=role,
            unmask=cfg.unmask,
            include_linked_accounts=cfg.include_linked_accounts,
        ) as logs:
            if role is not None:
                assumed = await _check_role(logs, cfg)
                out.append(assumed)
                if not assumed.ok:
                    return out
            out.append(await _check_account(logs))
            groups = list(cfg.log_groups)
            for prefix in cfg.log_group_prefixes:
                result, names = await _check_prefix(logs, prefix, where)
                out.append(result)
                groups.extend(n for n in names[:PREFIX_GROUPS_CHECKED] if n not in groups)
            for group in groups:
                out.append(await _check_group(logs, group, cfg.unmask))
    except CwcError as exc:
        out.append(Result(False, "CloudWatch Logs", f"{where}: {exc}"))
    return out


async def _check_role(logs: LogsClient, cfg: Config) -> Result:
    """AssumeRole with the base credentials, as ``run`` does at its first call."""
    what = f"role {cfg.aws_role_arn}"
    external = " with an external id" if cfg.aws_external_id is not None else ""
    try:
        await logs.assume_role_now()
    except CwcError as exc:
        return Result(False, what, f"AssumeRole{external} refused: {exc}")
    return Result(
        True,
        what,
        f"assumed{external} (session {cfg.aws_role_session_name}); refreshed before it expires",
    )


async def _check_account(logs: LogsClient) -> Result:
    try:
        account = await logs.caller_account()
    except CwcError as exc:
        return Result(False, "AWS account", f"cannot be told (part of event.id): {exc}")
    how = "the role's" if logs.role is not None else "a group's ARN, or STS GetCallerIdentity"
    return Result(True, "AWS account", f"{account} ({how}); groups named by ARN keep their own")


async def _check_prefix(logs: LogsClient, prefix: str, where: str) -> tuple[Result, list[str]]:
    what = f"prefix {prefix}"
    try:
        found, more = await logs.list_groups(prefix, None)
    except CwcError as exc:
        return Result(False, what, f"listing groups refused ({where}): {exc}"), []
    op = "ListLogGroups" if logs.list_groups_available else "DescribeLogGroups"
    names = [g["logGroupName"] for g in found if "logGroupName" in g]
    count = f"{len(names)}{'+' if more else ''} group(s) match now"
    if logs.include_linked_accounts:
        count += " (linked source accounts included)"
    if len(names) > PREFIX_GROUPS_CHECKED:
        count += f"; the first {PREFIX_GROUPS_CHECKED} are checked below"
    return Result(True, what, f"{op} permitted; {count}"), names


def _group_traits(info: dict[str, object] | None, unmask: bool) -> tuple[bool, str]:
    """(ok, text) for a group's log class and data protection."""
    if info is None:
        return True, ""
    parts = [f"class {info.get('logGroupClass', 'STANDARD')}"]
    protection = info.get("dataProtectionStatus")
    ok = True
    if protection in ("ACTIVATED", "ARCHIVED"):
        if unmask:
            parts.append(f"data protection {protection}, read unmasked (CWC_UNMASK)")
        else:
            parts.append(
                f"data protection {protection}: messages arrive masked "
                "(CWC_UNMASK=true reads them unmasked; needs logs:Unmask)"
            )
    elif protection:
        parts.append(f"data protection {protection}")
    return ok, "; " + ", ".join(parts)


async def _check_group(logs: LogsClient, group: str, unmask: bool = False) -> Result:
    what = f"group {group}"
    try:
        info = await logs.describe_group(group)
    except CwcError:
        info = None  # DescribeLogGroups is checked with the prefixes; the reads decide here
    _, traits = _group_traits(info, unmask)
    try:
        streams, _ = await logs.describe_log_streams(group, None, limit=1)
    except NotFound:
        return Result(False, what, "does not exist (ResourceNotFoundException)")
    except CwcError as exc:
        return Result(False, what, f"DescribeLogStreams refused: {exc}")
    if not streams:
        return Result(True, what, f"DescribeLogStreams permitted; no streams yet{traits}")
    name = streams[0]["logStreamName"]
    try:
        await logs.get_log_events(group, name, None, None, limit=1)
    except NotFound:
        pass  # the stream went away between the two calls: the call itself was permitted
    except CwcError as exc:
        unmasked = " with unmask (needs logs:Unmask)" if unmask else ""
        return Result(
            False, what, f"GetLogEvents{unmasked} refused on stream {name}: {exc}{traits}"
        )
    return Result(True, what, f"DescribeLogStreams and GetLogEvents permitted{traits}")


async def _check_sink(cfg: Config) -> Result:
    what = "sink"
    try:
        sink = build_sink(cfg)
    except CwcError as exc:
        return Result(False, what, str(exc))
    try:
        with anyio.fail_after(cfg.sink_timeout_s + 5):
            ok, why = await sink.probe()
    except TimeoutError:
        ok, why = False, f"no answer within {cfg.sink_timeout_s:g}s"
    finally:
        with anyio.move_on_after(5, shield=True):
            await sink.aclose()
    return Result(ok, what, why)
