"""``event.id``: the deterministic id of an event (pure: no I/O).

A stored contract: sinks that upsert by id (Elasticsearch ``_id``) rely on it
being the same on every delivery, so the encoding of :func:`event_id` must
never change. The shaper (``cwconsumer.lines``) hashes the same key with one
``struct`` call per event (:func:`id_prefix` is its constant part).
"""

from __future__ import annotations

import struct
from typing import Final

import xxhash

__all__ = ["event_id", "id_prefix"]

_TS_ORD: Final = struct.Struct(">qq")
_hexdigest = xxhash.xxh3_128_hexdigest


def id_prefix(group: str, stream: str, account: str = "", region: str = "") -> bytes:
    """Length-prefixed names: no two (account, region, group, stream) tuples
    share an encoding, whatever characters (NUL, digits) the names hold."""
    parts = []
    for name in (account, region, group, stream):
        raw = name.encode("utf-8", "surrogatepass")
        parts.append(len(raw).to_bytes(4, "big") + raw)
    return b"".join(parts)


def event_id(
    group: str, stream: str, ts_ms: int, ordinal: int, *, account: str = "", region: str = ""
) -> str:
    """The deterministic id of an event: 32 lowercase hex characters.

    ``ordinal`` is the event's 0-based position among the stream's events with
    the same ``ts_ms``, so events with equal time and text still get distinct
    ids. ``account`` and ``region`` are the AWS account id and Region the
    group lives in, so groups of one name read from several accounts or
    Regions into one index never share ids (``""`` when unknown). Encoding
    (since 0.2; never change it again)::

        u32be(len(account)) account u32be(len(region)) region
        u32be(len(group)) group u32be(len(stream)) stream i64be(ts_ms) i64be(ordinal)

    with names in UTF-8, hashed with xxh3_128. (0.1 hashed group, stream,
    ts and ordinal only; see docs/reliability.md, "event.id".)
    """
    return _hexdigest(id_prefix(group, stream, account, region) + _TS_ORD.pack(ts_ms, ordinal))
