"""Messages that are JSON objects (pure: no I/O, nothing async).

A message whose first character is ``{`` and whose last non-blank character is
``}`` is handed to orjson; when the result is an object (a ``dict``) it becomes
the document's ``json`` field. Anything else (arrays, scalars, invalid JSON,
``NaN``, lone surrogates, a leading blank) stays plain text: the caller gets
``None`` and ships the message as it is.

Objects nested deeper than :data:`MAX_DEPTH` levels are refused as well:
orjson reads up to 1024 levels but writes at most 254, so such an object
would make its whole batch unserializable at the sink.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "parse_object"]

MAX_DEPTH = 128
"""Deepest nesting of a parsed object kept as a field (the document and any
sink envelope around it add a few levels more; orjson writes at most 254)."""

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def parse_object(text: str) -> dict[str, Any] | None:
    """Return the JSON object ``text`` holds, or ``None`` when it holds none.

    Costs two character checks for text that cannot be an object; never raises
    for any input string.
    """
    if text[:1] != "{":
        return None
    if text[-1] != "}" and not text.rstrip().endswith("}"):
        return None
    try:
        obj = _loads(text)
    except _JSONDecodeError:
        return None
    if not isinstance(obj, dict):  # cannot happen for "{...}"; narrows the type
        return None
    # Nesting depth can never exceed the number of openers, nor half the
    # length (each level opens and closes), so the walk only runs for
    # messages with many of them; most are too short to be counted.
    if (
        len(text) > 2 * MAX_DEPTH
        and text.count("{") + text.count("[") > MAX_DEPTH
        and _deeper_than(obj, MAX_DEPTH)
    ):
        return None
    return obj


def _deeper_than(obj: dict[str, Any], limit: int) -> bool:
    """Whether ``obj`` nests more than ``limit`` containers (iterative, no recursion)."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for value in node.values() if type(node) is dict else node:
            if type(value) is dict or type(value) is list:
                stack.append((value, depth + 1))
    return False
