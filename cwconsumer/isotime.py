"""ISO-8601 times of documents: ``"2026-11-21T10:00:00.123Z"`` (pure: no I/O).

The shaper's hot loops (``cwconsumer.lines``) build a stamp from two parts, the
text up to its second from :func:`second_prefix`'s bounded cache and the
milliseconds from :data:`MS_SUFFIX`; :func:`iso_ms` joins the same two.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

__all__ = ["MS_SUFFIX", "SECOND_PREFIXES", "iso_ms", "second_prefix"]

_EPOCH: Final = datetime(1970, 1, 1)
MS_SUFFIX: Final = tuple(f"{ms:03d}Z" for ms in range(1000))
"""``"123Z"`` by millisecond."""
SECOND_PREFIXES: dict[int, str] = {}
"""The cache behind :func:`second_prefix` (read directly by the hot loops)."""
_SECOND_PREFIXES_MAX: Final = 4096


def second_prefix(sec: int) -> str:
    """``"YYYY-MM-DDTHH:MM:SS."`` for a Unix second, from a small bounded cache."""
    prefix = SECOND_PREFIXES.get(sec)
    if prefix is None:
        prefix = (_EPOCH + timedelta(seconds=sec)).isoformat() + "."
        if len(SECOND_PREFIXES) >= _SECOND_PREFIXES_MAX:
            SECOND_PREFIXES.clear()  # cheaper than LRU bookkeeping; refills in one pass
        SECOND_PREFIXES[sec] = prefix
    return prefix


def iso_ms(ts_ms: int) -> str:
    """Unix time in ms -> ``"2026-11-21T10:00:00.123Z"`` (UTC, always 3 decimals).

    Raises ``OverflowError`` outside years 1..9999 (CloudWatch accepts no such time).
    """
    sec = ts_ms // 1000
    return second_prefix(sec) + MS_SUFFIX[ts_ms - sec * 1000]
