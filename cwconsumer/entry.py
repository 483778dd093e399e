"""The ``cwconsumer`` program's first code: for ``run``, stop signals are
recorded (:mod:`cwconsumer.earlystop`) before anything heavy is imported, so
an orchestrator's SIGTERM right after exec still ends in a clean exit 0; then
the command line (:mod:`cwconsumer.cli`) is imported and run."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["run"]:
        from cwconsumer import earlystop

        earlystop.catch()
    from cwconsumer.cli import main as cli_main

    return cli_main()
