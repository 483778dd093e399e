"""Process-wide settings of ``cwconsumer run``, made by
:mod:`cwconsumer.commands.run` only (a service started in-process, as tests
do, leaves the host process as it found it):

- a fatal signal (SIGBUS when SQLite's shared-memory file goes away,
  SIGSEGV) writes its cause and every thread's stack to stderr first;
- the cyclic garbage collector is off during start-up, then the start-up
  objects are frozen out of it and it runs rarely: documents are acyclic and
  freed by reference counting, so the collector only costs time on the hot
  path (docs/performance.md);
- glibc's malloc keeps the memory of delivered batches for the next pages
  (:mod:`cwconsumer.allocator`);
- a stop that takes far longer than its budget ends the process.
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import os
import sys
import threading

from cwconsumer import allocator

GC_THRESHOLD = (50_000, 50, 100)
STOP_WATCHDOG_GRACE_S = 8.0
"""How long past ``CWC_SHUTDOWN_TIMEOUT`` a stop may take before the watchdog
ends it. After that deadline only the registry save, the lease release and
the database close remain, each bounded and each milliseconds on a working
database; a stop still running 8 s later is stuck (a statement waiting out
SQLite's 30-s busy timeout behind another process's lock, a stalled file
system). 20 s + 8 s also ends inside ECS's default 30-s ``stopTimeout``, so
the operator gets exit 1 with the cause rather than a SIGKILL."""


def dump_stacks_on_fatal_signals() -> None:
    """faulthandler on, for every thread."""
    if not faulthandler.is_enabled():
        faulthandler.enable(all_threads=True)


def collector_off() -> None:
    """Start-up (imports, the AWS client) makes many objects and few cycles:
    no cyclic collection until :func:`settle_collector` (about 10 % of the
    start-up CPU)."""
    gc.disable()


def settle_collector() -> None:
    """Once started: freeze what exists, collect rarely from now on.

    No collection before the freeze: start-up leaves ~1,600 objects of
    cyclic garbage (a few hundred KB, measured), and collecting them walks
    every start-up object (~35 ms of CPU); frozen, they just stay."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    gc.enable()


def settle() -> None:
    """Start-up is over (the database is open): :func:`settle_collector`, and
    glibc's malloc tuned for documents over 512 bytes (:func:`allocator.tune`)."""
    settle_collector()
    allocator.tune()


def arm_stop_watchdog(after_s: float) -> None:
    """If a stop takes longer than ``after_s``, something is stuck: write
    every thread's stack to stderr (the cause, for the operator) and end the
    process. Checkpoints are committed one transaction at a time, so ending
    here loses nothing; the exit status is 1 because the stop was not clean."""

    def fire() -> None:
        if done.wait(after_s):
            return
        faulthandler.dump_traceback(all_threads=True)
        # The cause last, as every exit 1 ends (the stacks above say where).
        sys.stderr.write(
            f'{{"level": "ERROR", "message": "stopped: the stop did not finish within '
            f"{after_s:g}s (a database or network call is stuck; thread stacks above); "
            'undelivered events are read again at the next start"}\n'
        )
        sys.stderr.flush()
        os._exit(1)

    done = threading.Event()
    atexit.register(done.set)
    threading.Thread(target=fire, name="cwconsumer-stop-watchdog", daemon=True).start()
