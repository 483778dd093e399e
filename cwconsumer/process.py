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
STOP_WATCHDOG_GRACE_S = 20.0
"""How long past ``CWC_SHUTDOWN_TIMEOUT`` a stop may take before the watchdog ends it."""


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
        sys.stderr.write(
            f'{{"level": "ERROR", "message": "stop did not finish within {after_s:g}s; '
            'thread stacks follow; exiting"}\n'
        )
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(1)

    done = threading.Event()
    atexit.register(done.set)
    threading.Thread(target=fire, name="cwconsumer-stop-watchdog", daemon=True).start()
