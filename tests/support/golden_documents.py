"""Golden documents: the shipped bytes of a Lambda-shaped mix, pinned.

The cases below are GetLogEvents answers (response bodies, as AWS sends
them) for an ``/aws/lambda/`` group and an ``/ecs/`` group. Each is decoded
by the product's own decoder (:func:`cwconsumer.aws.decode_get_log_events`,
msgspec, with its standard-library fallback for lone surrogates), shaped by
:class:`cwconsumer.documents.Shaper` (its ``_shape_raw`` hot path) in each
``CWC_PARSE`` mode, and serialized as a sink does
(:func:`cwconsumer.sinks.formats.dumps_each`). ``tests/data/golden_documents.json``
holds the resulting bytes; ``tests/test_golden_documents.py`` compares the
product's output with them byte for byte.

``event.id`` is kept out of the stored bytes (replaced by :data:`ID_MARK`) and
checked apart against :func:`cwconsumer.eventid.event_id`, so a change of
what the id hashes (for example account and Region added to its key) does not
invalidate the goldens; only ``expected_id`` in the test follows it.

Regenerate deliberately, after a change of the documents that is meant::

    .venv/bin/python -m tests.support.golden_documents --write
    git diff tests/data/golden_documents.json     # review every changed line

Without ``--write`` it prints how many documents differ from the file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from cwconsumer.aws import decode_get_log_events
from cwconsumer.documents import PARSE_MODES, Shaper
from cwconsumer.sinks.formats import dumps_each

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "golden_documents.json"
GROUPS = ("/aws/lambda/orders-api", "/ecs/orders-svc")
STREAM = "2026/12/06/[$LATEST]0123456789abcdef0123456789abcdef"
REGION = "eu-west-1"
ID_MARK = "<event.id>"
UNENCODABLE = "<unencodable>"
_ID_RE = re.compile(rb'"event":\{"id":"([0-9a-f]{32})"')

RID = "7dea2e7a-1c7e-4f0b-9a1a-8f0e6d2c3b4a"
RID2 = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
T0 = 1_796_551_200_123  # 2026-12-06T10:00:00.123Z
STAMP = "2026-12-06T10:00:00.123Z"
_PAD = "lorem ipsum dolor sit amet consectetur adipiscing elit " * 4


def _runtime(level: str, text: str, rid: str = RID) -> str:
    return f"{STAMP}\t{rid}\t{level}\t{text}"


# The mix of issue 15 (one invocation: START, six runtime lines, one
# application JSON line, END, REPORT), then every other Lambda line and odd
# input the parsers meet. A message given as bytes is the raw JSON string
# token as it appears in the answer (escapes chosen by AWS); a str is
# encoded as AWS does (UTF-8, no escapes but the required ones).
MESSAGES: list[str | bytes] = [
    f"START RequestId: {RID} Version: $LATEST\n",
    *(_runtime("INFO", f"step {i} of order 4711: {_PAD}"[:160]) + "\n" for i in range(6)),
    '{"timestamp":"2026-12-06T10:00:00.124Z","level":"INFO","requestId":"'
    + RID
    + '","message":"order 4711 stored","orderId":4711}\n',
    f"END RequestId: {RID}\n",
    f"REPORT RequestId: {RID}\tDuration: 584.64 ms\tBilled Duration: 585 ms\t"
    "Memory Size: 256 MB\tMax Memory Used: 91 MB\t\n",
    # REPORT with every figure: cold start, X-Ray, a timeout, SnapStart.
    f"REPORT RequestId: {RID}\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 128 MB\tInit Duration: 397.68 ms\t"
    "Status: timeout\t\nXRAY TraceId: 1-674a1b2c-0123456789abcdef01234567\t"
    "SegmentId: 0123456789abcdef\tSampled: true\t\n",
    f"REPORT RequestId: {RID}\tDuration: 12.50 ms\tBilled Duration: 13 ms\t"
    "Memory Size: 512 MB\tMax Memory Used: 200 MB\tRestore Duration: 310.2 ms\t"
    "Billed Restore Duration: 120 ms\tStatus: error\tError Type: Runtime.ExitError\t\n",
    f"REPORT RequestId: {RID}\rDuration: 1.00 ms\rBilled Duration: 1 ms\r"
    "Memory Size: 128 MB\rMax Memory Used: 19 MB\r",
    f"REPORT RequestId: {RID}\tDuration: 2.00 ms\tUnknown Figure: 7 apples\t"
    "Billed Duration: lots ms\tMemory Size: 128 MB\t",
    "INIT_START Runtime Version: python:3.12.v38\tRuntime Version ARN: "
    "arn:aws:lambda:eu-west-1::runtime:0123456789abcdef\n",
    "INIT_REPORT Init Duration: 10004.55 ms\tPhase: init\tStatus: timeout\n",
    "RESTORE_START Runtime Version: java:21.v20\tRuntime Version ARN: arn:x\n",
    "RESTORE_REPORT Restore Duration: 512.3 ms\n",
    f"{STAMP} {RID} Task timed out after 3.01 seconds\n\n",
    # Node.js runtime lines: no level, "undefined" id, a JSON body, an error
    # with its stack on \r-separated lines (how Lambda keeps one event).
    f"{STAMP}\t{RID}\tconsole.log without a level\n",
    f"{STAMP}\tundefined\tINFO\tloaded during init\n",
    _runtime("WARN", '{"msg":"slow","ms":1500,"nested":{"a":[1,2,3]}}') + "\n",
    _runtime("ERROR", "Invoke Error \r")
    + '{"errorType":"Error","errorMessage":"boom","stack":["Error: boom","    at a (/var/task/i.js:1:1)"]}\n',
    _runtime(
        "ERROR", "Unhandled\rTypeError: x is undefined\r    at handler (/var/task/i.js:3:9)\r"
    ),
    # Python logging lines.
    f"[INFO]\t{STAMP}\t{RID}\tprocessing order 4711\n",
    f"[WARNING]\t{STAMP}\t{RID}\t" + '{"note":"a JSON body after the prefix"}\n',
    f"[ERROR]\t{STAMP}\tnot-a-request-id\tsomething failed\n",
    "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': No module named 'x'\r"
    "Traceback (most recent call last):\r",
    "[ERROR] Exception: boom\rTraceback (most recent call last):\r  File \"/var/task/app.py\", line 3, in handler\r    raise Exception('boom')\n",
    f"[DEBUG]\t{STAMP}\t{RID2}\tdebug line",
    # The Lambda JSON log format.
    '{"time":"2026-12-06T10:00:00.100Z","type":"platform.initStart","record":'
    '{"initializationType":"on-demand","phase":"init","runtimeVersion":"nodejs:20.v30",'
    '"runtimeVersionArn":"arn:aws:lambda:eu-west-1::runtime:abc"}}',
    '{"time":"2026-12-06T10:00:00.123Z","type":"platform.start","record":'
    '{"requestId":"' + RID + '","version":"$LATEST","tracing":{"spanId":"abc",'
    '"type":"X-Amzn-Trace-Id","value":"Root=1-674a1b2c-0123456789abcdef01234567;'
    'Parent=0123456789abcdef;Sampled=1"}}}',
    '{"time":"2026-12-06T10:00:00.700Z","type":"platform.runtimeDone","record":'
    '{"requestId":"' + RID + '","status":"success","metrics":{"durationMs":576.1,'
    '"producedBytes":53}}}',
    '{"time":"2026-12-06T10:00:00.710Z","type":"platform.report","record":{"requestId":"'
    + RID
    + '","metrics":{"durationMs":693.92,"billedDurationMs":694,"memorySizeMB":128,'
    '"maxMemoryUsedMB":84,"initDurationMs":397.68},"status":"success"}}\n',
    '{"time":"2026-12-06T10:00:00.720Z","type":"platform.report","record":{"requestId":"'
    + RID
    + '","metrics":{"durationMs":"fast","billedDurationMs":1.0,"memorySizeMB":true,'
    '"maxMemoryUsedMB":1.5},"status":"timeout","errorType":"Sandbox.Timedout"}}',
    '{"time":"2026-12-06T10:00:00.730Z","type":"platform.telemetrySubscription","record":{}}',
    '{"type":"platform.extension","record":"not an object"}',
    '{"level":"ERROR","message":"no request id"}',
    '{"requestId":"","level":42}',
    '{"msg":"plain JSON, no Lambda keys","n":1,"f":1.5,"b":false,"z":null,"u":"é✓"}',
    # Plain text that starts like a Lambda line or JSON and is neither.
    "START processing batch 17",
    "END of file reached",
    "REPORT generated for Q4",
    "404 Not Found: /favicon.ico",
    "2026-12-06 10:00:00,123 INFO werkzeug request",
    "[not a level] bracketed",
    "{not json at all}",
    "{",
    "{}",
    '{"a":1} trailing text',
    ' {"leading":"blank"}',
    '{"a":1}\n\t ',
    '{"nan": NaN}',
    "[1,2,3]",
    '"just a string"',
    "12345",
    "null",
    "",
    " ",
    "plain text, nothing to parse: GET /api/orders/4711 200 12ms",
    "unicode: é ü ✓ 日本語 😀 and a tab\there",
    # Escapes AWS may choose (the raw token is copied, never re-encoded).
    b'"escaped by the sender: caf\\u00e9 \\/path \\"quoted\\""',
    b'"\\u007b\\"escaped\\":\\"object\\"}"',
    b'"\\u0053TART RequestId: ' + RID.encode() + b' Version: 1"',
    # Numbers no 64-bit integer holds (issue 14, item 3) and other odd figures.
    f"REPORT RequestId: {RID}\tDuration: 1.00 ms\tBilled Duration: 1 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 99999999999999999999999999 MB\t",
    f"REPORT RequestId: {RID}\tDuration: 1e999 ms\tBilled Duration: -99999999999999999999 ms\t"
    "Memory Size: 18446744073709551615 MB\tMax Memory Used: 9223372036854775807 MB\t",
    f"REPORT RequestId: {RID}\tDuration: nan ms\tBilled Duration: 1_000 ms\tMemory Size: 0x10 MB\t",
    '{"time":"2026-12-06T10:00:00.740Z","type":"platform.report","record":{"requestId":"'
    + RID
    + '","metrics":{"durationMs":1.0,"billedDurationMs":2,"memorySizeMB":128,'
    '"maxMemoryUsedMB":99999999999999999999999999}}}',
    '{"big":99999999999999999999999,"neg":-99999999999999999999999,"u64":18446744073709551615}',
    '{"deep":' + "[" * 200 + "]" * 200 + "}",
    '{"deep":' + '{"a":' * 130 + "1" + "}" * 130 + "}",
]

# Lone surrogate escapes (issue 14, item 4): msgspec refuses the whole answer
# and the product reads it with the standard library; the first event carries one.
SURROGATE_MESSAGES: list[str | bytes] = [
    b'"lone surrogate \\ud800 first"',
    b'"{\\"a\\":\\"\\ud800\\"}"',
    f"START RequestId: {RID} Version: $LATEST\n",
    b'"[INFO]\\t' + STAMP.encode() + b"\\t" + RID.encode() + b'\\tlone \\udc00 in a body"',
    b'"REPORT RequestId: ' + RID.encode() + b'\\tDuration: 1.00 ms\\tXRAY TraceId: \\ud800\\t"',
    "an ordinary line after them",
]


def _token(message: str | bytes) -> bytes:
    if isinstance(message, bytes):
        return message
    return json.dumps(message, ensure_ascii=False).encode()


def answer(messages: list[str | bytes], ts: list[int], ingested: list[int | None]) -> bytes:
    """A GetLogEvents response body, as AWS writes it."""
    items = []
    for m, t, i in zip(messages, ts, ingested, strict=True):
        item = b'{"timestamp":' + str(t).encode() + b',"message":' + _token(m)
        if i is not None:
            item += b',"ingestionTime":' + str(i).encode()
        items.append(item + b"}")
    return (
        b'{"events":['
        + b",".join(items)
        + b'],"nextForwardToken":"f/0001","nextBackwardToken":"b/0001"}'
    )


def cases() -> dict[str, dict[str, Any]]:
    """Name -> (answer body, prev_ts, prev_ord) for every case, groups x modes apart."""
    n = len(MESSAGES)
    # Three events a millisecond (ordinals), two ingestion batches, one event
    # without ingestionTime, a change of second inside the page.
    ts = [T0 + i // 3 + (877 if i >= n // 2 else 0) for i in range(n)]
    ingested: list[int | None] = [T0 + 1_000 if i < n // 2 else T0 + 2_500 for i in range(n)]
    ingested[5] = None
    s = len(SURROGATE_MESSAGES)
    return {
        "mix": {"body": answer(MESSAGES, ts, ingested), "prev_ts": None, "prev_ord": -1},
        # A page continuing the previous page's last millisecond.
        "continued": {
            "body": answer(MESSAGES[:12], [T0] * 12, [T0 + 5] * 12),
            "prev_ts": T0,
            "prev_ord": 4,
        },
        "surrogates": {
            "body": answer(SURROGATE_MESSAGES, [T0 + 7] * s, [T0 + 9] * s),
            "prev_ts": None,
            "prev_ord": -1,
        },
    }


def make_shaper(group: str, mode: str) -> Shaper:
    """The one place the tests build a Shaper (its signature may grow)."""
    return Shaper(group, STREAM, REGION, mode)


def shipped(group: str, mode: str, case: dict[str, Any]) -> dict[str, Any]:
    """What the product ships for one case: the documents' bytes (ids marked),
    the ids, the timestamps and the stream position handed back."""
    events, _ = decode_get_log_events(case["body"])
    shaper = make_shaper(group, mode)
    docs, timestamps, last_ts, last_ord, _nbytes = shaper.shape(
        events, case["prev_ts"], case["prev_ord"]
    )
    lines, bad = dumps_each(docs)
    out_docs: list[str] = []
    ids: list[str] = []
    for i, line in enumerate(lines):
        if i in bad:
            out_docs.append(UNENCODABLE)
            ids.append("")
            continue
        m = _ID_RE.search(line)
        assert m is not None, line
        ids.append(m.group(1).decode())
        out_docs.append((line[: m.start(1)] + ID_MARK.encode() + line[m.end(1) :]).decode("utf-8"))
    return {
        "docs": out_docs,
        "ids": ids,
        "timestamps": timestamps,
        "last": [last_ts, last_ord],
    }


def generate() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, case in cases().items():
        for group in GROUPS:
            for mode in PARSE_MODES:
                got = shipped(group, mode, case)
                del got["ids"]  # checked apart (module docstring)
                out[f"{name} {group} {mode}"] = got
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--write", action="store_true", help=f"rewrite {FIXTURE.name}")
    args = p.parse_args(argv)
    new = generate()
    if args.write:
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {sum(len(v['docs']) for v in new.values())} documents to {FIXTURE}")
        return 0
    old = json.loads(FIXTURE.read_text())
    differ = sum(
        a != b
        for key in new.keys() | old.keys()
        for a, b in zip(
            new.get(key, {}).get("docs", []), old.get(key, {}).get("docs", []), strict=False
        )
    )
    print(f"{differ} documents differ from {FIXTURE}")
    return 1 if differ or new.keys() != old.keys() else 0


if __name__ == "__main__":
    sys.exit(main())
