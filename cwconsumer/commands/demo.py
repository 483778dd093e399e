"""``cwconsumer demo``: the tour of :mod:`cwconsumer.demo`, when its extra is installed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from cwconsumer.commands import EXIT_CONFIG


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the tour; 2 with an install hint when the ``[demo]`` extra is missing."""
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
