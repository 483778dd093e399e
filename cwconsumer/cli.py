"""Command line: ``cwconsumer run|demo|status|check|reset|dead-letters|healthcheck``.

Parses the arguments and hands them, with the environment, to the command's
module in :mod:`cwconsumer.commands` (imported only when that command runs).

Exit codes: 0 clean stop; 2 bad configuration or usage (one line per problem,
no traceback, nothing created on disk); 1 anything else, with the cause on
one line at the end of the log.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from cwconsumer import __version__
from cwconsumer.errors import ConfigError

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2

COMMANDS: dict[str, str] = {
    "run": "run",
    "demo": "demo",
    "status": "status",
    "check": "check",
    "reset": "reset",
    "dead-letters": "dead_letters",
    "healthcheck": "healthcheck",
}
"""Command name -> its module in :mod:`cwconsumer.commands`."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors: exit 2, one line
        self.print_usage(sys.stderr)
        print(f"cwconsumer: {message}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (every command's options)."""
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
    """Parse ``argv``, run the command, return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        command = importlib.import_module(f"cwconsumer.commands.{COMMANDS[args.command]}")
        code: int = command.main(args, os.environ)
        return code
    except ConfigError as exc:
        for line in exc.problems:
            print(f"cwconsumer: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
