"""``cwconsumer demo``: the whole product on one machine, no AWS account needed.

::

    this process                                   child process
    ├── moto server (thread)  ◄── GetLogEvents ──  python -m cwconsumer run
    │     CloudWatch Logs stand-in, filled with        (checkpoints in a temp dir,
    │     realistic Lambda and ECS logs                 its log to a file there)
    └── HTTP receiver (thread) ◄── NDJSON ─────────┘
          counts documents by event.id, keeps the parsed Lambda REPORT figures

The tour: ship until about half is delivered, SIGKILL the consumer (a crash),
show its checkpoints, add events "while it was down", start it again and watch
it resume from the checkpoints, SIGTERM it once caught up (exit 0), then check
that every event arrived exactly once by ``event.id``, in stream order, and
print a summary and a Lambda report drawn from the parsed REPORT lines.

The demo doubles as a smoke test: it exits 1 when anything is missing, out of
order, unparsed, or re-delivered beyond what was in flight at the crash.
Everything it starts (moto, the receiver, the child, the temp dir) is cleaned
up on any exit, Ctrl-C included.

The package, one purpose a module: :mod:`.tour` (the phases), :mod:`.standin`
(moto), :mod:`.receiver` (the sink and its tally), :mod:`.consumer` (the child
process), :mod:`.report` (the checks and the Lambda report's statistics),
:mod:`.screen` (terminal output), :mod:`.settings` (every size and wait);
:mod:`.data` generates the logs from :mod:`.sources` (who writes them) and
:mod:`.logtext` (what each runtime writes). Only :func:`run_demo` is public.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from cwconsumer.demo.consumer import Consumer
from cwconsumer.demo.screen import Out
from cwconsumer.demo.settings import EXIT_FAILED, EXIT_OK, EXIT_USAGE, DemoFailed
from cwconsumer.demo.standin import aws_settings_set_aside
from cwconsumer.demo.tour import Tour, plan_of

__all__ = ["run_demo"]


def run_demo(args: argparse.Namespace) -> int:
    """``cwconsumer demo [--quick] [--events N]``; returns the exit code
    (0 all checks passed, 1 a check failed or the tour was interrupted, 2 bad usage)."""
    out = Out(sys.stdout)
    try:
        plan = plan_of(args)
    except DemoFailed as exc:
        print(f"cwconsumer: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through the cleanups below

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
    try:
        with contextlib.ExitStack() as stack, aws_settings_set_aside():
            workdir = Path(tempfile.mkdtemp(prefix="cwconsumer-demo-"))
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            tour = Tour(out, plan, workdir, stack)
            try:
                tour.run()
            except DemoFailed as exc:
                _report_failure(out, str(exc), tour.consumer)
                return EXIT_FAILED
            except Exception as exc:
                _report_failure(out, f"{type(exc).__name__}: {exc}", tour.consumer)
                return EXIT_FAILED
        return EXIT_OK
    except KeyboardInterrupt:
        out.line()
        out.line("Interrupted: everything the demo started is stopped and removed.")
        return EXIT_FAILED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _report_failure(out: Out, why: str, consumer: Consumer | None) -> None:
    out.line()
    out.line(f"{out.mark(False)} {out.bad('The demo failed:')} {why}")
    tail = consumer.tail() if consumer is not None else []
    if tail:
        out.line(out.dim("  the consumer's last log lines:"))
        for text in tail:
            out.line(out.dim(f"  | {text}"))
