"""``cwconsumer run``: the service, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import gc
import logging
import os
from collections.abc import Mapping

from cwconsumer import earlystop
from cwconsumer import logs as logsetup
from cwconsumer.commands import EXIT_ERROR, EXIT_OK, run_async
from cwconsumer.config import load_config
from cwconsumer.process import (
    STOP_WATCHDOG_GRACE_S,
    arm_stop_watchdog,
    collector_off,
    dump_stacks_on_fatal_signals,
    settle,
)

log = logging.getLogger("cwconsumer")


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the service; 0 after a clean stop, 1 with the cause as the last log line."""
    earlystop.catch()  # a SIGTERM during start-up still ends in a clean exit 0
    cfg = load_config(environ)
    logsetup.setup(cfg.log_level, cfg.log_format, logsetup.secrets_of(cfg))
    dump_stacks_on_fatal_signals()
    # Off until the service has opened the database, then frozen and rare
    # (cwconsumer.process); on again however it ends.
    collector_off()
    try:
        from cwconsumer.service import Service

        service = Service(
            cfg,
            on_opened=settle,
            on_stop_requested=lambda: arm_stop_watchdog(
                cfg.shutdown_timeout_s + STOP_WATCHDOG_GRACE_S
            ),
        )

        async def go() -> int:
            await service.run()
            return EXIT_OK

        code = run_async(go)
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
