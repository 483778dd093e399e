"""Command line: ``cwconsumer run|demo|status|check|reset|dead-letters|healthcheck``.

Exit codes: 0 clean stop; 2 bad configuration or usage (one line per problem,
no traceback, nothing created on disk); 1 anything else, with the cause on
one line at the end of the log.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio

from cwconsumer import __version__, earlystop
from cwconsumer import logs as logsetup
from cwconsumer.config import Config, load_config, parse_start_position, validate_db_path
from cwconsumer.errors import ConfigError, CwcError

log = logging.getLogger("cwconsumer")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors: exit 2, one line
        self.print_usage(sys.stderr)
        print(f"cwconsumer: {message}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cwconsumer", description="CloudWatch Logs → HTTP log pipeline consumer")
    p.add_argument("--version", action="version", version=f"cwconsumer {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("run", help="the service: runs until SIGTERM/SIGINT")
    demo = sub.add_parser("demo", help="self-contained tour with an in-process CloudWatch stand-in")
    demo.add_argument(
        "--events", type=int, default=None, help="events per stream (default: varies)"
    )
    demo.add_argument("--quick", action="store_true", help="a smaller, faster tour")
    st = sub.add_parser("status", help="per group and stream: checkpoint, lag, state")
    st.add_argument("--json", action="store_true", help="stable JSON output")
    st.add_argument("--streams", action="store_true", help="also list every stream")
    sub.add_parser("check", help="validate configuration, database, AWS access, sink")
    r = sub.add_parser("reset", help="move checkpoints (refused while a run holds the database)")
    r.add_argument("--group", required=True)
    r.add_argument("--stream")
    r.add_argument("--to", required=True, help="beginning | end | ISO-8601 time | duration back")
    r.add_argument("--dry-run", action="store_true", help="show what would move, change nothing")
    d = sub.add_parser("dead-letters", help="events the sink refused for good")
    d.add_argument("--replay", action="store_true", help="send them again")
    d.add_argument("--limit", type=int, default=100)
    d.add_argument("--json", action="store_true")
    hc = sub.add_parser("healthcheck", help="exit 0 if /healthz of the local run answers 200")
    hc.add_argument("--standby-ok", action="store_true", help="a standby counts as healthy")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "demo": cmd_demo,
        "status": cmd_status,
        "check": cmd_check,
        "reset": cmd_reset,
        "dead-letters": cmd_dead_letters,
        "healthcheck": cmd_healthcheck,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"cwconsumer: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


def _config() -> Config:
    return load_config(os.environ)


def _secrets(cfg: Config) -> list[str]:
    return logsetup.secrets_of(cfg)


def _run_async(fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a coroutine; translate our errors into one line and exit 1."""
    try:
        return anyio.run(fn)
    except ConfigError:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        cause = _root_cause(exc)
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, CwcError):
            log.error("stopped: %s", cause)
        else:
            log.error("stopped by an unexpected error", exc_info=cause)
            log.error("stopped: %s: %s", type(cause).__name__, cause)
        return EXIT_ERROR


def _root_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        # Outside the event loop: anyio.get_cancelled_exc_class() would raise here.
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        if not inner:
            break
        exc = inner[0]
    return exc


def cmd_run(args: argparse.Namespace) -> int:
    earlystop.catch()  # a SIGTERM during start-up still ends in a clean exit 0
    cfg = _config()
    logsetup.setup(cfg.log_level, cfg.log_format, _secrets(cfg))
    # Start-up (imports, the AWS client) makes many objects and few cycles:
    # the cyclic collector stays off until Service.run collects and freezes
    # them (about 10 % of the start-up CPU), and is on again however it ends.
    gc.disable()
    try:
        from cwconsumer.service import Service

        service = Service(cfg)

        async def go() -> int:
            await service.run()
            return EXIT_OK

        code = _run_async(go)
    finally:
        gc.enable()
    if service.stuck_database:
        # The database connection's thread is stuck in a statement and would
        # keep the process alive for ever: end it now (nothing unconfirmed
        # is lost; checkpoints only follow confirmations).
        if code == EXIT_OK:  # otherwise the cause is already the last line
            log.error("stopped: the database %s did not close within 5 s", cfg.db_path)
        logging.shutdown()
        os._exit(code or EXIT_ERROR)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from cwconsumer.demo import run_demo
    except ImportError as exc:
        print(
            f"cwconsumer: the demo needs the [demo] extra ({exc.name} is missing): "
            "pip install 'cwconsumer[demo]'",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return run_demo(args)


# -- status ---------------------------------------------------------------------


def _db_path_only() -> str:
    path = os.path.abspath(os.environ.get("CWC_DB_PATH") or "./cwconsumer.db")
    if not os.path.exists(path):
        problem = validate_db_path(path)
        raise ConfigError(
            [
                f"CWC_DB_PATH: {problem or f'{path} does not exist yet (start `cwconsumer run` first)'}"
            ]
        )
    return path


def cmd_status(args: argparse.Namespace) -> int:
    from cwconsumer.statusview import lease_ttl_ms, render_status

    path = _db_path_only()
    try:
        ttl_ms = lease_ttl_ms()
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    logsetup.setup("WARNING", "text")

    async def go() -> int:
        text = await render_status(path, as_json=args.json, streams=args.streams, ttl_ms=ttl_ms)
        print(logsetup.REDACTOR.scrub(text))
        return EXIT_OK

    return _run_async(go)


# -- reset ----------------------------------------------------------------------


def cmd_reset(args: argparse.Namespace) -> int:
    """Exit 0 done (or previewed with --dry-run), 1 refused while a run holds
    the database, 2 bad arguments or an unknown group/stream."""
    from cwconsumer.statusview import lease_ttl_ms, reset_checkpoints

    path = _db_path_only()
    now = int(time.time() * 1000)
    problems: list[str] = []
    try:
        target = parse_start_position(args.to, now)
    except ValueError as exc:
        problems.append(f"--to: {exc}")
    try:
        ttl_ms = lease_ttl_ms()
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    logsetup.setup("WARNING", "text")

    async def go() -> int:
        outcome = await reset_checkpoints(
            path,
            args.group,
            args.stream,
            target,
            now_ms=now,
            ttl_ms=ttl_ms,
            dry_run=args.dry_run,
        )
        for line in outcome.out:
            print(line)
        for line in outcome.err:
            print(f"cwconsumer: {line}", file=sys.stderr)
        return outcome.code

    return _run_async(go)


def _fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "nothing delivered"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


# -- dead letters -----------------------------------------------------------------


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from cwconsumer.deadletters import list_dead_letters, replay_dead_letters

    if args.replay:
        cfg = _config()
        logsetup.setup(cfg.log_level, "text", _secrets(cfg))
        return _run_async(lambda: replay_dead_letters(cfg, limit=args.limit))
    path = _db_path_only()
    logsetup.setup("WARNING", "text")
    return _run_async(lambda: list_dead_letters(path, limit=args.limit, as_json=args.json))


# -- check / healthcheck -------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from cwconsumer.checks import run_checks

    try:
        cfg = _config()
    except ConfigError as exc:
        # The report goes to stdout like every other check; exit status 2.
        print(f"✗ configuration: {len(exc.problems)} problem(s)")
        for line in exc.problems:
            print(f"    {line}")
        return EXIT_CONFIG
    logsetup.setup("ERROR", "text", _secrets(cfg), config=cfg)
    return _run_async(lambda: run_checks(cfg))


def cmd_healthcheck(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    addr = os.environ.get("CWC_ADMIN_ADDR", "127.0.0.1:9600")
    if addr == "off":
        print("cwconsumer: CWC_ADMIN_ADDR is off; no health endpoint", file=sys.stderr)
        return EXIT_ERROR
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
    if getattr(args, "standby_ok", False):
        url += "?standby=ok"  # a standby counts as healthy for this check
    # Never through a proxy: HTTP_PROXY set for the sink or AWS must not send
    # a check of this very container's loopback port elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as resp:
            print(resp.read().decode(errors="replace"))
            return EXIT_OK if resp.status == 200 else EXIT_ERROR
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(errors="replace"))
        return EXIT_ERROR
    except OSError as exc:
        print(f"cwconsumer: {url}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
