"""Documents the shaper serializes itself (``bytes``) are orjson's own bytes
for the document, and encode to the same request bodies as the same documents
held as dicts, in every format."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cwconsumer.documents import Shaper
from cwconsumer.model import Doc, OutBatch, doc_fields
from cwconsumer.sinks.elasticsearch import encode_bulk
from cwconsumer.sinks.formats import dumps_doc, dumps_each, join_json_array, join_ndjson
from cwconsumer.sinks.loki import encode_push
from cwconsumer.sinks.splunk import envelope

T0 = 1_763_719_200_123
GROUP = '/app/"quoted" é'
STREAM = "2026/11/21/[$LATEST]abc\\def"
MESSAGES = [
    "plain line\n",
    'quotes " and \\ backslash \t tab\r\n',
    "unicode é 日本 🎉\n",
    "\x00\x1f control",
    "",
    '{"json": "object", "n": 1}\n',  # parsed: stays a dict
    "START RequestId: 8f5e1c4a-1b2c-4d3e-9f00-123456789abc Version: $LATEST\n",
    "lone \ud800 surrogate",  # cannot be encoded: stays a dict, refused by the sink
]


def shaped(with_ingested: bool = True) -> tuple[list[Doc], list[int]]:
    events: list[dict[str, Any]] = []
    for i, m in enumerate(MESSAGES * 3):
        item: dict[str, Any] = {"timestamp": T0 + i // 2, "message": m}
        if with_ingested:
            item["ingestionTime"] = T0 + 500 + i // 5
        events.append(item)
    docs, stamps, *_ = Shaper(GROUP, STREAM, "eu-west-1", "lambda").shape(events, None, -1)
    return docs, stamps


def as_dicts(docs: list[Doc]) -> list[Doc]:
    return [doc_fields(d) for d in docs]


@pytest.mark.parametrize("with_ingested", [True, False])
def test_shaped_lines_equal_orjson_of_the_dict(with_ingested: bool) -> None:
    docs, _ = shaped(with_ingested)
    encoded = [d for d in docs if isinstance(d, bytes)]
    assert len(encoded) == 3 * 5  # the unparsed, encodable messages
    for d in encoded:
        fields = doc_fields(d)
        assert d == orjson.dumps(fields)
        assert list(fields) == ["@timestamp", "message", "event", "aws", "cloud"]
        assert ("ingested" in fields["event"]) is with_ingested
    lines, bad = dumps_each(docs)
    assert sorted(bad) == [i for i, m in enumerate(MESSAGES * 3) if "\ud800" in m]
    good = [i for i in range(len(docs)) if i not in bad]
    assert [lines[i] for i in good] == [dumps_doc(as_dicts(docs)[i]) for i in good]


def test_every_format_gives_the_same_bytes() -> None:
    docs, stamps = shaped()
    keep = [i for i, d in enumerate(docs) if "\ud800" not in doc_fields(d)["message"]]
    fast = OutBatch([docs[i] for i in keep], [stamps[i] for i in keep])
    slow = OutBatch(as_dicts(fast.docs), fast.timestamps_ms)
    assert any(isinstance(d, bytes) for d in fast.docs)
    assert not any(isinstance(d, bytes) for d in slow.docs)

    def body(batch: OutBatch, join: Any) -> bytes:
        lines, bad = dumps_each(batch.docs)
        assert not bad
        result: bytes = join(lines)
        return result

    assert body(fast, join_ndjson) == body(slow, join_ndjson)
    assert body(fast, join_json_array) == body(slow, join_json_array)
    bulk = encode_bulk(fast, lambda ts: "logs")
    assert bulk == encode_bulk(slow, lambda ts: "logs")
    assert bulk[0].count(b'"_id":"') == len(keep)
    assert encode_push(fast, (("job", "cw"),)) == encode_push(slow, (("job", "cw"),))
    kw: dict[str, Any] = {"host": "h", "sourcetype": "aws:cloudwatchlogs", "index": "main"}
    hec_fast = [envelope(d, t, **kw) for d, t in zip(fast.docs, fast.timestamps_ms, strict=True)]
    hec_slow = [envelope(d, t, **kw) for d, t in zip(slow.docs, slow.timestamps_ms, strict=True)]
    assert dumps_each(hec_fast) == dumps_each(hec_slow)
