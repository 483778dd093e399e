"""``cwconsumer check``: each check on its own line with ✓/✗ and the reason.

Checks, in order: configuration; the database (writable, schema known, who
holds it); AWS credentials (found, and from where); with ``CWC_AWS_ROLE_ARN``
the AssumeRole itself (✗ names the role, never the external id); the account
read from; per configured prefix the group listing (ListLogGroups, or
DescribeLogGroups where that is missing); per configured group its log class
and data protection status (DescribeLogGroups), then DescribeLogStreams and
GetLogEvents (on its most recent stream, with ``unmask`` as configured), the
calls ``run`` makes; the sink (reachable and answering). Nothing is created
or changed. Exit status 0 only when every check passes; 2 for bad
configuration, reported like the other checks: on stdout, one line per problem.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from cwconsumer import logs as logsetup
from cwconsumer.aws import LogsClient, aws_role, make_session
from cwconsumer.commands import EXIT_CONFIG, run_async
from cwconsumer.config import Config, aws_endpoint, load_config
from cwconsumer.errors import ConfigError, CwcError, NotFound
from cwconsumer.logs import REDACTOR
from cwconsumer.sinks.factory import build_sink
from cwconsumer.store import inspect_database
from cwconsumer.units import format_duration

PREFIX_GROUPS_CHECKED = 5
CHECK_TIMEOUT_S = 15.0


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run every check; 0 all passed, 1 one failed, 2 bad configuration."""
    try:
        cfg = load_config(environ)
    except ConfigError as exc:
        # The report goes to stdout like every other check; exit status 2.
        print(f"✗ configuration: {len(exc.problems)} problem(s)")
        for line in exc.problems:
            print(f"    {line}")
        return EXIT_CONFIG
    logsetup.setup("ERROR", "text", logsetup.secrets_of(cfg), config=cfg)
    endpoint = aws_endpoint(environ)
    return run_async(lambda: run_checks(cfg, endpoint=endpoint))


@dataclass(slots=True)
class Result:
    """One check's verdict: ✓ or ✗, what was checked, and why."""

    ok: bool
    what: str
    why: str

    def line(self) -> str:
        """The verdict as printed, secrets scrubbed."""
        return REDACTOR.scrub(f"{'✓' if self.ok else '✗'} {self.what}: {self.why}")


async def run_checks(
    cfg: Config, emit: Callable[[str], None] = print, *, endpoint: str | None = None
) -> int:
    """Run every check, ``emit`` one line each and a summary; 0 if all pass, else 1.
    ``endpoint``: the CloudWatch Logs endpoint URL botocore was given, if any."""
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
    for result in await _check_aws(cfg, endpoint):
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
    """Writable, ours, schema known to this version; changes nothing."""
    what = "database"
    found = inspect_database(path, ttl_ms)
    if found.problem is not None:
        return Result(False, what, found.problem)
    if not found.exists:
        return Result(True, what, f"{path} will be created at the first run (directory writable)")
    schema = f"schema {found.version} of {found.latest}"
    if found.version < found.latest:
        pending = found.latest - found.version
        schema += f" ({pending} migration(s) pending; `run` applies them at start)"
    holder = f"; a run holds it now ({found.holder})" if found.holder else "; no run holds it"
    return Result(True, what, f"{path} writable, {schema}, journal {found.journal_mode}{holder}")


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


async def _check_aws(cfg: Config, endpoint: str | None) -> list[Result]:
    out = [await _credentials()]
    if not out[0].ok:
        return out
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
