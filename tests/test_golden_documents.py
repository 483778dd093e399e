"""The shipped documents of a Lambda-shaped mix, byte for byte, against the
goldens in ``tests/data/golden_documents.json`` (see
``tests/support/golden_documents.py``: what the cases are and how to
regenerate them deliberately)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cwconsumer.aws import decode_get_log_events
from cwconsumer.documents import PARSE_MODES
from cwconsumer.eventid import event_id
from cwconsumer.metrics import ingested_ms
from cwconsumer.model import doc_fields
from tests.support.golden_documents import (
    FIXTURE,
    GROUPS,
    REGION,
    STREAM,
    UNENCODABLE,
    cases,
    make_shaper,
    shipped,
)

GOLDEN: dict[str, Any] = json.loads(FIXTURE.read_text())
CASES = cases()


def expected_id(group: str, ts: int, ordinal: int) -> str:
    """What ``event.id`` must be (the one place that follows its key)."""
    return event_id(group, STREAM, ts, ordinal, region=REGION)  # no account: the Shaper has none


def ordinals(timestamps: list[int], prev_ts: int | None, prev_ord: int) -> list[int]:
    out = []
    last, ordinal = prev_ts, prev_ord
    for ts in timestamps:
        ordinal = ordinal + 1 if ts == last else 0
        last = ts
        out.append(ordinal)
    return out


@pytest.mark.parametrize("mode", PARSE_MODES)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_documents_are_the_goldens(name: str, group: str, mode: str) -> None:
    case = CASES[name]
    got = shipped(group, mode, case)
    want = GOLDEN[f"{name} {group} {mode}"]
    assert got["timestamps"] == want["timestamps"]
    assert got["last"] == want["last"]
    assert len(got["docs"]) == len(want["docs"])
    for i, (g, w) in enumerate(zip(got["docs"], want["docs"], strict=True)):
        assert g == w, f"document {i} differs"
    ords = ordinals(want["timestamps"], case["prev_ts"], case["prev_ord"])
    for i, (ts, ordinal) in enumerate(zip(want["timestamps"], ords, strict=True)):
        if got["docs"][i] != UNENCODABLE:
            assert got["ids"][i] == expected_id(group, ts, ordinal), f"event.id of document {i}"


def test_every_golden_document_is_encodable_json() -> None:
    """Issue 14, items 3 and 4: no document the product ships is one a sink
    cannot encode, and every one reads back as a dict."""
    for key, value in GOLDEN.items():
        for i, doc in enumerate(value["docs"]):
            assert doc != UNENCODABLE, f"{key}: document {i}"
            fields = doc_fields(doc.encode())
            assert isinstance(fields, dict) and "@timestamp" in fields


def test_the_goldens_parse_what_each_mode_promises() -> None:
    """A sanity check of the pinned bytes themselves, so a wrong regeneration
    shows: Lambda fields only where Lambda lines are parsed, JSON objects
    everywhere but in ``none``."""
    for key, value in GOLDEN.items():
        name, group, mode = key.split(" ")
        docs = [json.loads(d) for d in value["docs"] if d != UNENCODABLE]
        lambda_docs = [d for d in docs if "lambda" in d["aws"]]
        json_docs = [d for d in docs if "json" in d]
        parses_lambda = mode == "lambda" or (mode == "auto" and group.startswith("/aws/lambda/"))
        assert bool(lambda_docs) == parses_lambda, key
        assert bool(json_docs) == (mode != "none" and name != "surrogates"), key
        for d in docs:
            assert d["aws"]["cloudwatch"] == {"log_group": group, "log_stream": STREAM}


def test_a_page_whose_first_event_holds_a_lone_surrogate_is_read() -> None:
    """Issue 14, item 4: the metrics step reads the page's first document; a
    lone surrogate escape in it (shipped as the API sent it) must not raise."""
    events, _ = decode_get_log_events(CASES["surrogates"]["body"])
    for group in GROUPS:
        for mode in PARSE_MODES:
            docs = make_shaper(group, mode).shape(events, None, -1)[0]
            assert ingested_ms(docs[0]) == events[0].ingestionTime
            assert doc_fields(docs[0])["message"] == "lone surrogate \ud800 first"
