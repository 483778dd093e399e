"""``cwconsumer check``: each check on its own line with ✓/✗ and the reason."""

from __future__ import annotations

import os

import anyio

from cwconsumer.aws import LogsClient
from cwconsumer.config import Config
from cwconsumer.errors import CwcError, NotFound
from cwconsumer.sinks.factory import build_sink
from cwconsumer.store import Store


def _line(ok: bool, what: str, why: str) -> bool:
    print(f"{'✓' if ok else '✗'} {what}: {why}")
    return ok


async def run_checks(cfg: Config) -> int:
    results = [_line(True, "configuration", f"{len(cfg.log_groups)} group(s), {len(cfg.log_group_prefixes)} prefix(es), sink {cfg.sink_format}")]
    results.append(await _check_db(cfg))
    results.extend(await _check_aws(cfg))
    results.append(await _check_sink(cfg))
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 0 if not failed else 1


async def _check_db(cfg: Config) -> bool:
    path = cfg.db_path
    if not os.path.exists(path):
        return _line(True, "database", f"{path} will be created at the first run (directory writable)")
    try:
        store = await Store.open(path, cfg.db_journal_mode, create=False, migrate=False)
    except CwcError as exc:
        return _line(False, "database", str(exc))
    try:
        version = (await store.fetch("SELECT MAX(version) FROM schema_version"))[0][0]
        if not os.access(path, os.W_OK):
            return _line(False, "database", f"{path} is not writable")
        info = await store.lease_info()
        holder = f"; held by {info.host} pid {info.pid}" if info.owner else ""
        return _line(True, "database", f"{path} schema {version}, journal {store.journal_mode}{holder}")
    finally:
        await store.aclose()


async def _check_aws(cfg: Config) -> list[bool]:
    out: list[bool] = []
    try:
        async with LogsClient(cfg.region, get_rate=5, describe_rate=5, timeout_s=min(cfg.aws_timeout_s, 15)) as logs:
            groups = list(cfg.log_groups)
            for prefix in cfg.log_group_prefixes:
                try:
                    found, _ = await logs.describe_log_groups(prefix, None)
                except CwcError as exc:
                    out.append(_line(False, f"DescribeLogGroups {prefix}*", str(exc)))
                    continue
                names = [g["logGroupName"] for g in found]
                out.append(_line(True, f"DescribeLogGroups {prefix}*", f"{len(names)} group(s) match now"))
                groups.extend(n for n in names[:5] if n not in groups)
            for group in groups:
                out.append(await _check_group(logs, group))
    except CwcError as exc:
        out.append(_line(False, "AWS credentials", str(exc)))
    return out


async def _check_group(logs: LogsClient, group: str) -> bool:
    try:
        streams, _ = await logs.describe_log_streams(group, None, limit=1)
    except NotFound:
        return _line(False, f"group {group}", "does not exist (yet); it will be picked up when created")
    except CwcError as exc:
        return _line(False, f"group {group}", f"DescribeLogStreams refused: {exc}")
    if not streams:
        return _line(True, f"group {group}", "DescribeLogStreams permitted; no streams yet")
    try:
        await logs.get_log_events(group, streams[0]["logStreamName"], None, None, limit=1)
    except CwcError as exc:
        return _line(False, f"group {group}", f"GetLogEvents refused: {exc}")
    return _line(True, f"group {group}", "DescribeLogStreams and GetLogEvents permitted")


async def _check_sink(cfg: Config) -> bool:
    sink = build_sink(cfg)
    try:
        with anyio.fail_after(cfg.sink_timeout_s + 5):
            ok, why = await sink.probe()
    except TimeoutError:
        ok, why = False, f"no answer within {cfg.sink_timeout_s:g}s"
    finally:
        await sink.aclose()
    return _line(ok, f"sink {cfg.sink_url}", why)
