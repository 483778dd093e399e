"""Plain body encodings (pure: no I/O, nothing async).

Two generic formats for any HTTP endpoint:

- ``ndjson`` (default): one JSON document per line, each line ending with
  ``\\n``, ``Content-Type: application/x-ndjson``. This is what the Logstash
  ``http`` input reads with ``codec => json_lines``, and what Vector, Fluent Bit
  and most log routers accept.
- ``json``: one JSON array of documents, ``Content-Type: application/json``.

Encoding never raises: a document orjson cannot serialise (for example an
integer beyond 64 bits from a parsed message) is reported by its index so the
sink can refuse that one event as poison and let the others go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import cast

import orjson

from cwconsumer.model import Doc

NDJSON_CONTENT_TYPE = "application/x-ndjson"
JSON_CONTENT_TYPE = "application/json"


def dumps_doc(doc: Doc) -> bytes:
    """One document as JSON bytes (a document in bytes is already serialized).

    Raises ``TypeError`` / ``orjson.JSONEncodeError`` for a document orjson
    cannot serialise.
    """
    return doc if type(doc) is bytes else orjson.dumps(doc)


def dumps_each(docs: Sequence[Doc]) -> tuple[list[bytes], dict[int, str]]:
    """Serialise each document; return the lines and ``{index: reason}`` for
    the documents that could not be serialised (their line is ``b""``)."""
    if all(map(isinstance, docs, repeat(bytes))):
        return list(cast("Sequence[bytes]", docs)), {}  # as the shaper serialized them
    try:
        return [d if type(d) is bytes else orjson.dumps(d) for d in docs], {}
    except (TypeError, orjson.JSONEncodeError):
        pass
    lines: list[bytes] = []
    bad: dict[int, str] = {}
    for i, doc in enumerate(docs):
        try:
            lines.append(dumps_doc(doc))
        except (TypeError, orjson.JSONEncodeError) as exc:
            lines.append(b"")
            bad[i] = f"document cannot be encoded as JSON: {exc}"
    return lines, bad


def unreadable(docs: Sequence[Doc]) -> dict[int, str]:
    """``{index: reason}`` for serialized documents that cannot be parsed back
    (a lone surrogate escape such as ``\\ud800`` in a message): formats that
    must read fields of each document refuse those as poison, never raise."""
    bad: dict[int, str] = {}
    for i, doc in enumerate(docs):
        if type(doc) is bytes:
            try:
                orjson.loads(doc)
            except orjson.JSONDecodeError as exc:
                bad[i] = f"document cannot be read as JSON: {exc}"
    return bad


def join_ndjson(lines: Sequence[bytes]) -> bytes:
    """Newline-delimited JSON with a final newline."""
    if not lines:
        return b""
    return b"\n".join([*lines, b""])  # one copy, final newline included


def join_json_array(lines: Sequence[bytes]) -> bytes:
    """A JSON array made of already serialised documents."""
    return b"[" + b",".join(lines) + b"]"


@dataclass(frozen=True, slots=True)
class PlainFormat:
    """How a generic endpoint wants the documents: a joiner and a media type."""

    name: str
    content_type: str
    join: Callable[[Sequence[bytes]], bytes]


NDJSON = PlainFormat("ndjson", NDJSON_CONTENT_TYPE, join_ndjson)
JSON_ARRAY = PlainFormat("json", JSON_CONTENT_TYPE, join_json_array)

PLAIN_FORMATS: dict[str, PlainFormat] = {f.name: f for f in (NDJSON, JSON_ARRAY)}
