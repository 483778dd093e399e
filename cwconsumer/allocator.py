"""glibc's malloc, set for a process that keeps megabytes of documents in flight.

A shipped document is one ``bytes`` object; with the ``cloud.account`` field
most are over CPython's 512-byte small-object limit, so they come from
glibc's ``malloc`` rather than CPython's own allocator. With glibc's defaults
the heap's free top is handed back to the kernel whenever it passes 128 KiB
(and a page of a megabyte or more is mapped and unmapped for itself), so the
memory of every delivered batch is returned and faulted in again by the next
page: about 150-200 minor page faults per 1,000 events, and 7-12 % of the
product's CPU in the backlog benchmarks (``docs/performance.md``, sixth session).

:func:`tune` raises the trim threshold to what the default buffer holds
(64 MiB), pads each growth of the heap by 8 MiB and serves blocks up to
4 MiB (a GetLogEvents page, a sink batch) from the heap. The peak RSS is
what it was (the buffer's bound is unchanged); only memory above that bound
is given back. Nothing is done on another C library, or when the operator
chose malloc settings of their own in ``GLIBC_TUNABLES``.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["tune"]

# <malloc.h>
_M_TRIM_THRESHOLD: Final = -1
_M_TOP_PAD: Final = -2
_M_MMAP_THRESHOLD: Final = -3

TRIM_THRESHOLD: Final = 64 * 1024 * 1024
TOP_PAD: Final = 8 * 1024 * 1024
MMAP_THRESHOLD: Final = 4 * 1024 * 1024

_SETTINGS: Final = (
    (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    (_M_TOP_PAD, TOP_PAD),
    (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
)


def _is_glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # not a name this platform knows
        return False


def tune() -> bool:
    """Apply the settings above to this process's malloc; True if applied."""
    if not _is_glibc() or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    import ctypes  # only here: 4 ms of start-up, and only where it is used

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all([mallopt(param, value) == 1 for param, value in _SETTINGS])
