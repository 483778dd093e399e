"""The demo's terminal output: plain lines, colour, progress bars and a live redraw.

Colour and redraw happen only on a terminal (and colour not with ``NO_COLOR``
or ``TERM=dumb``); into a pipe or a file the demo writes plain lines, so its
output can be read by a script or a test. Symbols fall back to ASCII when the
output's encoding is not Unicode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TextIO

__all__ = ["Out", "thousands"]


class Out:
    """Plain text to a terminal or a pipe; colour and live redraw only on a TTY."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.color = (
            self.tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        )
        encoding = (getattr(stream, "encoding", None) or "ascii").lower().replace("-", "")
        self.unicode = encoding in ("utf8", "utf16", "utf32")
        self._live = 0

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        """``text`` in bold (on a colour terminal)."""
        return self._paint("1", text)

    def dim(self, text: str) -> str:
        """``text`` dimmed (on a colour terminal)."""
        return self._paint("2", text)

    def good(self, text: str) -> str:
        """``text`` in green (on a colour terminal)."""
        return self._paint("32", text)

    def bad(self, text: str) -> str:
        """``text`` in bold red (on a colour terminal)."""
        return self._paint("31;1", text)

    def mark(self, ok: bool) -> str:
        """A tick or a cross (``ok`` / ``XX`` without Unicode)."""
        sym = ("✓" if ok else "✗") if self.unicode else ("ok" if ok else "XX")
        return self.good(sym) if ok else self.bad(sym)

    def line(self, text: str = "") -> None:
        """Write one line; the next :meth:`live` block starts below it."""
        self._live = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def live(self, lines: Sequence[str]) -> None:
        """Redraw the block of lines written by the previous call (TTY only)."""
        if not self.tty:
            return
        up = f"\x1b[{self._live}F" if self._live else ""
        self.stream.write(up + "".join(f"\x1b[2K{text}\n" for text in lines))
        self.stream.flush()
        self._live = len(lines)

    def bar(self, done: int, total: int, width: int = 24) -> str:
        """A progress bar of ``width`` characters for ``done`` of ``total``."""
        frac = 1.0 if total <= 0 else min(1.0, done / total)
        filled = round(frac * width)
        full, empty = ("█", "░") if self.unicode else ("#", ".")
        return self.good(full * filled) + self.dim(empty * (width - filled))


def thousands(value: int) -> str:
    """``12,345``."""
    return f"{value:,}"
