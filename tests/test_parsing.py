"""Lambda line and JSON message parsing (pure functions, golden cases from real Lambda logs)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from cwconsumer.parsing import FIRST_CHARS, MAX_DEPTH, parse_json, parse_object, parse_text

RID = "7dea2e7a-1c7e-4f0b-9a1a-8f0e6d2c3b4a"


# --- platform text lines ------------------------------------------------------------------


def test_start_line() -> None:
    assert parse_text(f"START RequestId: {RID} Version: $LATEST\n") == (
        {"type": "start", "request_id": RID, "version": "$LATEST"},
        None,
        None,
    )


def test_start_line_with_published_version() -> None:
    fields, _, _ = parse_text(f"START RequestId: {RID} Version: 17\n") or ({}, None, None)
    assert fields == {"type": "start", "request_id": RID, "version": "17"}


def test_end_line() -> None:
    assert parse_text(f"END RequestId: {RID}\n") == (
        {"type": "end", "request_id": RID},
        None,
        None,
    )


def test_report_with_init_duration_and_xray_on_the_same_line() -> None:
    message = (
        f"REPORT RequestId: {RID}\tDuration: 128.83 ms\tBilled Duration: 200 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 74 MB\tInit Duration: 166.62 ms\t"
        "XRAY TraceId: 1-5d83c0ad-b8eb33a0b1de97d018a1e2c5\tSegmentId: 3d752c7a2a5e4e4b\t"
        "Sampled: true\t\n"
    )
    assert parse_text(message) == (
        {
            "type": "report",
            "request_id": RID,
            "duration_ms": 128.83,
            "billed_duration_ms": 200,
            "memory_size_mb": 128,
            "max_memory_used_mb": 74,
            "init_duration_ms": 166.62,
            "xray_trace_id": "1-5d83c0ad-b8eb33a0b1de97d018a1e2c5",
            "xray_segment_id": "3d752c7a2a5e4e4b",
            "xray_sampled": True,
        },
        None,
        None,
    )


@pytest.mark.parametrize("newline", ["\n", "\t\n", "\r", "\t\r\n"])
def test_report_with_xray_on_its_own_line(newline: str) -> None:
    message = (
        f"REPORT RequestId: {RID}\tDuration: 2.5 ms\tBilled Duration: 3 ms\t"
        f"Memory Size: 1024 MB\tMax Memory Used: 81 MB{newline}"
        "XRAY TraceId: 1-64f0f9a2-0a1b2c3d4e5f60718293a4b5\tSegmentId: 1a2b3c4d5e6f7081\t"
        "Sampled: false\t\n"
    )
    fields, level, body = parse_text(message) or ({}, "x", "x")
    assert (level, body) == (None, None)
    assert fields["max_memory_used_mb"] == 81
    assert fields["xray_trace_id"] == "1-64f0f9a2-0a1b2c3d4e5f60718293a4b5"
    assert fields["xray_segment_id"] == "1a2b3c4d5e6f7081"
    assert fields["xray_sampled"] is False


def test_report_number_types() -> None:
    fields, _, _ = parse_text(
        f"REPORT RequestId: {RID}\tDuration: 1 ms\tBilled Duration: 1 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 19 MB\t\n"
    ) or ({}, None, None)
    assert type(fields["duration_ms"]) is float  # ms durations are floats even when whole
    assert type(fields["billed_duration_ms"]) is int
    assert type(fields["memory_size_mb"]) is int
    assert type(fields["max_memory_used_mb"]) is int


def test_report_with_timeout_status_and_the_timeout_line() -> None:
    report = (
        f"REPORT RequestId: {RID}\tDuration: 3003.07 ms\tBilled Duration: 3000 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 64 MB\tStatus: timeout\n"
    )
    fields, _, _ = parse_text(report) or ({}, None, None)
    assert fields == {
        "type": "report",
        "request_id": RID,
        "duration_ms": 3003.07,
        "billed_duration_ms": 3000,
        "memory_size_mb": 128,
        "max_memory_used_mb": 64,
        "status": "timeout",
    }
    assert parse_text(f"2023-11-08T20:18:38.939Z {RID} Task timed out after 3.01 seconds\n") == (
        {"type": "timeout", "request_id": RID, "status": "timeout", "timeout_s": 3.01},
        None,
        None,
    )


def test_report_with_error_status_and_error_type() -> None:
    fields, _, _ = parse_text(
        f"REPORT RequestId: {RID}\tDuration: 40.1 ms\tBilled Duration: 41 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 52 MB\tStatus: error\t"
        "Error Type: Runtime.ExitError\n"
    ) or ({}, None, None)
    assert fields["status"] == "error"
    assert fields["error_type"] == "Runtime.ExitError"


def test_snapstart_report_with_restore_durations() -> None:
    fields, _, _ = parse_text(
        f"REPORT RequestId: {RID}\tDuration: 12.34 ms\tBilled Duration: 140 ms\t"
        "Memory Size: 512 MB\tMax Memory Used: 98 MB\tRestore Duration: 571.67 ms\t"
        "Billed Restore Duration: 127 ms\t\n"
    ) or ({}, None, None)
    assert fields == {
        "type": "report",
        "request_id": RID,
        "duration_ms": 12.34,
        "billed_duration_ms": 140,
        "memory_size_mb": 512,
        "max_memory_used_mb": 98,
        "restore_duration_ms": 571.67,
        "billed_restore_duration_ms": 127,
    }
    assert "init_duration_ms" not in fields


def test_init_and_restore_lines() -> None:
    arn = "arn:aws:lambda:us-east-1::runtime:0cdcfbdefbc5e7d3343f73c2e2dd3cba17d61dea0686b404"
    assert parse_text(
        f"INIT_START Runtime Version: python:3.12.v18\tRuntime Version ARN: {arn}\n"
    ) == (
        {"type": "init_start", "runtime_version": "python:3.12.v18", "runtime_version_arn": arn},
        None,
        None,
    )
    assert parse_text("INIT_REPORT Init Duration: 10002.40 ms\tPhase: init\tStatus: timeout\n") == (
        {"type": "init_report", "init_duration_ms": 10002.4, "phase": "init", "status": "timeout"},
        None,
        None,
    )
    assert parse_text("RESTORE_REPORT Restore Duration: 571.67 ms\n") == (
        {"type": "restore_report", "restore_duration_ms": 571.67},
        None,
        None,
    )


def test_unreadable_figures_are_left_out() -> None:
    fields, _, _ = parse_text(
        f"REPORT RequestId: {RID}\tDuration: fast ms\tBilled Duration: \t"
        "Init Duration:    \tMax Memory Used: 1e999 MB\t"
        "Memory Size: 128 MB\tSomething New: 7 units\t\n"
    ) or ({}, None, None)
    assert fields == {"type": "report", "request_id": RID, "memory_size_mb": 128}


# --- runtime lines ------------------------------------------------------------------------


def test_node_runtime_line() -> None:
    message = f"2019-06-07T19:11:20.562Z\t{RID}\tINFO\tprocessing order 42\n"
    assert parse_text(message) == ({"request_id": RID}, "INFO", "processing order 42\n")


def test_node_multiline_message_uses_carriage_returns() -> None:
    message = (
        f"2019-06-07T19:11:20.562Z\t{RID}\tERROR\tInvoke Error \r"
        '{"errorType":"Error","errorMessage":"boom","stack":["Error: boom","    at x"]}\n'
    )
    fields, level, body = parse_text(message) or ({}, None, None)
    assert fields == {"request_id": RID}
    assert level == "ERROR"
    assert body is not None and body.startswith("Invoke Error \r{")


def test_node_init_phase_line_has_no_request_id() -> None:
    message = "2019-06-07T19:11:20.562Z\tundefined\tWARN\tcold start\n"
    assert parse_text(message) == ({}, "WARN", "cold start\n")


def test_node_line_without_level() -> None:
    message = f"2019-06-07T19:11:20.562Z\t{RID}\tplain old console.log\n"
    assert parse_text(message) == ({"request_id": RID}, None, "plain old console.log\n")


def test_python_logging_line() -> None:
    message = f"[INFO]\t2023-08-31T22:12:58.534Z\t{RID}\tFound credentials in env\n"
    assert parse_text(message) == ({"request_id": RID}, "INFO", "Found credentials in env\n")
    warning = f"[WARNING]\t2023-08-31T22:12:58.534Z\t{RID}\tslow\n"
    assert parse_text(warning) == ({"request_id": RID}, "WARNING", "slow\n")


def test_python_logging_line_outside_an_invocation() -> None:
    message = "[INFO]\t2023-08-31T22:12:58.534Z\t\tloading model\n"
    assert parse_text(message) == ({}, "INFO", "loading model\n")


def test_python_runtime_error_line() -> None:
    message = "[ERROR] Runtime.ImportModuleError: Unable to import module 'app'\rTraceback ...\n"
    fields, level, _ = parse_text(message) or ({"x": 1}, None, None)
    assert fields == {}
    assert level == "ERROR"


@pytest.mark.parametrize(
    "message",
    [
        "hello from print()\n",
        "Starting server on :8080\n",  # starts with S, not a platform keyword
        "START processing batch 7\n",  # the keyword alone is not enough
        "END of input\n",
        "REPORT generated\n",
        "INIT_START\n",
        "ERROR: disk full\n",
        "REPORTING is fun\n",
        "INIT done\n",
        "[1, 2, 3]\n",
        "[not-a-level]\tx\n",
        "2024 was a good year\n",
        f"2019-06-07T19:11:20.562Z {RID} something else\n",
        "2019-06-07T19:11:20.562Z\tnot-a-request-id\tINFO\tx\n",
        "",
        "{}",
    ],
)
def test_not_a_lambda_line(message: str) -> None:
    assert parse_text(message) is None


def test_first_chars_cover_every_recognised_line() -> None:
    for message in [
        "START ",
        "END ",
        "REPORT ",
        "RESTORE_START ",
        "INIT_START ",
        "[INFO] ",
        "2019-",
    ]:
        assert message[0] in FIRST_CHARS


# --- Lambda JSON log format ---------------------------------------------------------------


def test_json_platform_report() -> None:
    obj = orjson.loads(
        '{"time":"2026-11-21T10:00:00.456Z","type":"platform.report","record":{'
        f'"requestId":"{RID}","metrics":{{"durationMs":693.92,"billedDurationMs":694,'
        '"memorySizeMB":128,"maxMemoryUsedMB":84,"initDurationMs":397.68},'
        '"tracing":{"spanId":"a","type":"X-Amzn-Trace-Id",'
        '"value":"Root=1-5e1b4151-43a0913a12345678901234567;Parent=53995c3f42cd8ad8;Sampled=1"},'
        '"status":"success"}}'
    )
    assert parse_json(obj) == (
        {
            "type": "report",
            "request_id": RID,
            "status": "success",
            "duration_ms": 693.92,
            "init_duration_ms": 397.68,
            "billed_duration_ms": 694,
            "memory_size_mb": 128,
            "max_memory_used_mb": 84,
            "xray_trace_id": "1-5e1b4151-43a0913a12345678901234567",
            "xray_segment_id": "53995c3f42cd8ad8",
            "xray_sampled": True,
        },
        None,
        None,
    )


def test_json_platform_report_timeout_and_whole_duration() -> None:
    obj: dict[str, Any] = {
        "type": "platform.report",
        "record": {
            "requestId": RID,
            "metrics": {"durationMs": 3000, "billedDurationMs": 3000, "memorySizeMB": 128},
            "status": "timeout",
        },
    }
    fields, _, _ = parse_json(obj) or ({}, None, None)
    assert fields["status"] == "timeout"
    assert type(fields["duration_ms"]) is float
    assert type(fields["billed_duration_ms"]) is int


def test_json_platform_start_and_runtime_done() -> None:
    start = {"type": "platform.start", "record": {"requestId": RID, "version": "$LATEST"}}
    assert parse_json(start) == (
        {"type": "start", "request_id": RID, "version": "$LATEST"},
        None,
        None,
    )
    done = {
        "type": "platform.runtimeDone",
        "record": {
            "requestId": RID,
            "status": "success",
            "metrics": {"durationMs": 691.5, "producedBytes": 2},
        },
    }
    assert parse_json(done) == (
        {
            "type": "runtime_done",
            "request_id": RID,
            "status": "success",
            "duration_ms": 691.5,
            "produced_bytes": 2,
        },
        None,
        None,
    )


def test_json_platform_type_not_known_yet_is_snake_cased() -> None:
    fields, _, _ = parse_json({"type": "platform.logsDropped", "record": "x"}) or ({}, 0, 0)
    assert fields == {"type": "logs_dropped"}


def test_json_application_line() -> None:
    obj = {
        "timestamp": "2026-11-21T10:00:00.123Z",
        "level": "INFO",
        "requestId": RID,
        "message": "processing",
    }
    assert parse_json(obj) == ({"request_id": RID}, "INFO", None)


def test_json_values_of_the_wrong_type_are_ignored() -> None:
    assert parse_json({"level": 3, "requestId": None}) is None
    assert parse_json({"a": 1}) is None
    fields, _, _ = parse_json(
        {
            "type": "platform.report",
            "record": {
                "requestId": 5,
                "metrics": {"durationMs": "1", "billedDurationMs": 1.5, "memorySizeMB": True},
                "tracing": {"value": 7},
            },
        }
    ) or ({}, None, None)
    assert fields == {"type": "report"}


# --- JSON messages ------------------------------------------------------------------------


def test_json_object_message() -> None:
    assert parse_object('{"a": 1, "b": [true, null]}\n') == {"a": 1, "b": [True, None]}
    assert parse_object('{"a": 1}\r\n') == {"a": 1}


@pytest.mark.parametrize(
    "message",
    [
        "[1, 2, 3]\n",
        "42\n",
        '"a string"\n',
        "true",
        "null",
        "{not json}\n",
        '{"a": 1} and more\n',
        '{"a": 1\n',
        '{"a": NaN}',
        '{"a": "\\ud800"}',  # lone surrogate: could never be written out again
        ' {"a": 1}',  # only a message that starts with "{" is looked at
        "{",
        "}",
    ],
)
def test_not_a_json_object(message: str) -> None:
    assert parse_object(message) is None


def test_too_deep_json_object_stays_text() -> None:
    deep = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    assert parse_object(deep) is None
    ok = '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    obj = parse_object(ok)
    assert obj is not None
    orjson.dumps({"doc": {"json": obj}})  # still serializable inside a document
    # Many braces but shallow: kept.
    wide = "{" + ",".join(f'"k{i}": {{"v": [{i}]}}' for i in range(200)) + "}"
    assert parse_object(wide) is not None


def test_parsers_never_raise_on_garbage() -> None:
    pieces = [
        "REPORT ",
        "START ",
        "END ",
        "INIT_START ",
        "RESTORE_REPORT ",
        "RequestId: ",
        RID,
        " Version: ",
        "Duration: ",
        "Billed Duration: ",
        "Memory Size: ",
        "Sampled: ",
        "XRAY TraceId: ",
        "1.5",
        "ms",
        "MB",
        ": ",
        "\t",
        "\n",
        "\r",
        " ",
        "[INFO]",
        "[ERROR]",
        "2019-06-07T19:11:20.562Z",
        "undefined",
        "Task timed out after ",
        "seconds",
        "{",
        "}",
        '"a":',
        "é",
        "\x00",
    ]
    rng = random.Random(1234)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        line = parse_text(text)
        if line is not None:
            orjson.dumps(line[0])
        obj = parse_object(text)
        if obj is not None:
            parse_json(obj)


def test_figures_no_64_bit_integer_holds_are_left_out() -> None:
    """Issue 14, item 3: a REPORT line (text or JSON format) with an integer
    beyond int64 gives fields orjson can encode; the figure stays in the
    message only. Integers at the edges of int64 are kept."""
    rid = "7dea2e7a-1c7e-4f0b-9a1a-8f0e6d2c3b4a"
    line = parse_text(
        f"REPORT RequestId: {rid}\tDuration: 1.00 ms\tBilled Duration: -99999999999999999999 ms\t"
        "Memory Size: 9223372036854775807 MB\tMax Memory Used: 99999999999999999999999999 MB\t"
    )
    assert line is not None
    fields = line[0]
    assert fields == {
        "type": "report",
        "request_id": rid,
        "duration_ms": 1.0,
        "memory_size_mb": 2**63 - 1,
    }
    orjson.dumps(fields)
    record = orjson.loads(
        '{"type":"platform.report","record":{"requestId":"r","metrics":'
        '{"maxMemoryUsedMB":99999999999999999999999999,"memorySizeMB":-9223372036854775808,'
        '"billedDurationMs":18446744073709551615}}}'
    )
    line = parse_json(record)
    assert line is not None
    assert line[0] == {"type": "report", "request_id": "r", "memory_size_mb": -(2**63)}
    orjson.dumps(line[0])
