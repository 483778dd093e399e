"""Parsing and formatting of the units operators type: durations, sizes, booleans (pure).

Every parser raises :class:`ValueError` with a message meant to be printed after
the variable name, e.g. ``CWC_POLL_INTERVAL: expected a duration like ...``.
"""

from __future__ import annotations

import math
import re
import time
from decimal import Decimal, InvalidOperation

__all__ = ["format_duration", "parse_bool", "parse_duration", "parse_size"]

_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
# One or more "<number><unit>" parts ("1h30m"), or one bare number of seconds.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_FULL = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|s|m|h|d))+", re.IGNORECASE)
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)?", re.IGNORECASE)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

_DURATION_HELP = "a duration like 250ms, 5s, 2m, 1h, 7d, 1h30m or plain seconds (30, 1.5)"
_SIZE_HELP = "a size like 512KiB, 5MiB, 1GiB, 10MB or plain bytes (65536)"


def _show(text: str, limit: int = 60) -> str:
    """Quote a user value for an error message, shortened so one line stays one line."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``250ms``, ``5s``, ``2m``, ``1h``, ``7d``, ``1h30m`` or ``30``/``1.5``.

    Units are case-insensitive; zero is allowed (callers set their own minimum).
    Raises ValueError for empty, negative, non-finite or unreadable input.
    """
    value = text.strip()
    if not value:
        raise ValueError(f"expected {_DURATION_HELP}, got an empty value")
    if value.startswith("-"):
        raise ValueError(f"must not be negative, got {_show(text)}")
    if _PLAIN_NUMBER.fullmatch(value):
        seconds = float(value)
    elif _DURATION_FULL.fullmatch(value):
        seconds = sum(
            float(number) * _DURATION_UNITS[unit.lower()]
            for number, unit in _DURATION_PART.findall(value)
        )
    else:
        raise ValueError(f"expected {_DURATION_HELP}, got {_show(text)}")
    if not math.isfinite(seconds):
        raise ValueError(f"is too large, got {_show(text)}")
    return seconds


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``512KiB``, ``5MiB``, ``1GiB``, ``10KB``, ``5MB`` or ``65536``.

    ``KiB``/``MiB``/``GiB``/``TiB`` are binary, ``KB``/``MB``/``GB``/``TB`` decimal. Units
    are case-insensitive; a fractional result is rounded down to whole bytes.
    Raises ValueError for empty, negative or unreadable input.
    """
    value = text.strip()
    if not value:
        raise ValueError(f"expected {_SIZE_HELP}, got an empty value")
    if value.startswith("-"):
        raise ValueError(f"must not be negative, got {_show(text)}")
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"expected {_SIZE_HELP}, got {_show(text)}")
    number, unit = match.groups()
    multiplier = 1
    if unit is not None:
        found = _SIZE_UNITS.get(unit.lower())
        if found is None:
            raise ValueError(
                f"unknown size unit {unit!r} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB), "
                f"got {_show(text)}"
            )
        multiplier = found
    try:
        return int(Decimal(number) * multiplier)
    except InvalidOperation:  # pragma: no cover - the regex admits only plain decimals
        raise ValueError(f"expected {_SIZE_HELP}, got {_show(text)}") from None


def parse_bool(text: str) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off``, case-insensitive."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true/false, yes/no, on/off or 1/0, got {_show(text)}")


def format_duration(seconds: float) -> str:
    """A short human form that :func:`parse_duration` reads back: ``250ms``, ``1m30s``, ``2h``.

    Precision is one millisecond; shorter non-zero durations are shown in
    fractional milliseconds.
    """
    if math.isnan(seconds):
        return "nan"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if math.isinf(seconds):
        return "inf"
    total_ms = round(seconds * 1000)
    if total_ms == 0:
        return "0s" if seconds == 0 else f"{seconds * 1000:.3g}ms"
    if total_ms < 1000:
        return f"{total_ms}ms"
    days, rest = divmod(total_ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    parts = []
    if days:
        parts.append(f"{days}d")
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest:
        whole, millis = divmod(rest, 1000)
        parts.append(f"{whole}.{millis:03d}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)


def format_time_ms(ms: int | None) -> str | None:
    """Epoch ms as ``2026-11-21T10:00:00.123Z`` (None stays None)."""
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
