"""cwconsumer.allocator: glibc's malloc keeps freed document memory for the next page.

Each case runs in a fresh interpreter: malloc settings are process-wide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cwconsumer import allocator

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not allocator._is_glibc(), reason="glibc's malloc only")

# A 3 MiB object (a GetLogEvents page or a sink batch is 1-3 MB): glibc's
# default maps such a block for itself (minor page faults on every use, an
# unmap on every free); tuned, it comes from the heap, which grows by at
# least the block.
_BLOCK = textwrap.dedent(
    """
    from cwconsumer.allocator import tune

    def heap() -> int:
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith("[heap]"):
                start, end = line.split()[0].split("-")
                return int(end, 16) - int(start, 16)
        return 0

    print(tune())
    before = heap()
    block = b"x" * (3 * 1024 * 1024)
    print(heap() - before)
    """
)


def _block(tunables: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _BLOCK], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    applied, grown = out.stdout.split()
    return applied == "True", int(grown)


def test_a_page_sized_block_comes_from_the_heap() -> None:
    applied, grown = _block(None)
    assert applied
    assert grown >= 3 * 1024 * 1024
    # glibc's defaults for the heap (any malloc setting of the operator turns tune() off).
    not_applied, grown = _block("glibc.malloc.arena_max=8")
    assert not not_applied
    assert grown == 0


def test_an_operators_malloc_tunables_are_kept() -> None:
    applied, _ = _block("glibc.malloc.arena_max=2")
    assert not applied
