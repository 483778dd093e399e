"""``cwconsumer demo``: the generated logs (pure), the demo's own checks, and the whole tour
run as a newcomer runs it."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from cwconsumer.demo.data import ECS_GROUP, FUNCTIONS, DemoLogs, StreamLog, lambda_group
from cwconsumer.demo.receiver import Receiver
from cwconsumer.demo.report import compare, percentile
from cwconsumer.demo.standin import put_chunks
from cwconsumer.parsing import parse_json, parse_object, parse_text

START_MS = 1_795_000_000_000  # 2026-11-18: any fixed time will do for the pure tests
REPO = Path(__file__).resolve().parent.parent
LAMBDA_STREAM = re.compile(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}")
ECS_STREAM = re.compile(r"ecs/checkout/[0-9a-f]{32}")


def two_waves(seed: int = 7) -> tuple[DemoLogs, list[StreamLog], list[StreamLog]]:
    logs = DemoLogs(seed, START_MS)
    first = logs.generate(6_000)
    late = logs.generate(900, window_ms=3 * 60_000)
    return logs, first, late


def lambda_fields(message: str) -> dict[str, object] | None:
    """What the product's parser makes of a line of a Lambda group."""
    if message.startswith("{"):
        obj = parse_object(message)
        assert obj is not None, message
        line = parse_json(obj)
    else:
        line = parse_text(message)
    return None if line is None else line[0]


# -- demo.data ------------------------------------------------------------------------------


def test_the_same_seed_and_start_give_the_same_logs() -> None:
    a, b = two_waves(), two_waves()
    assert a[1] == b[1] and a[2] == b[2]
    assert a[0].invocations == b[0].invocations
    assert two_waves(seed=8)[1] != a[1]


def test_every_group_gets_streams_named_as_aws_names_them() -> None:
    _, first, _ = two_waves()
    groups = Counter(log.group for log in first)
    assert set(groups) == {lambda_group(f.name) for f in FUNCTIONS} | {ECS_GROUP}
    assert all(n >= 2 for n in groups.values())
    for log in first:
        pattern = ECS_STREAM if log.group == ECS_GROUP else LAMBDA_STREAM
        assert pattern.fullmatch(log.stream), log.stream
    assert len({(log.group, log.stream) for log in first}) == len(first)


def test_the_total_is_about_what_was_asked_for() -> None:
    _, first, late = two_waves()
    assert 6_000 <= sum(len(log.events) for log in first) < 6_000 + 30 * len(first)
    assert 900 <= sum(len(log.events) for log in late) < 900 + 30 * len(late)


def test_per_stream_gives_each_first_wave_stream_about_that_many_events() -> None:
    first = DemoLogs(3, START_MS).generate(5_000, per_stream=200)
    for log in first:
        # Lambda invocations are never cut: a stream may run over by one invocation.
        assert 200 <= len(log.events) < 200 + 30, (log.stream, len(log.events))


def test_events_are_in_time_order_and_a_later_wave_only_appends() -> None:
    _, first, late = two_waves()
    last = {(log.group, log.stream): log.events[-1][0] for log in first}
    for log in first + late:
        times = [ts for ts, _ in log.events]
        assert times == sorted(times)
    continued = [log for log in late if (log.group, log.stream) in last]
    opened = [log for log in late if (log.group, log.stream) not in last]
    assert continued and len(opened) == len(FUNCTIONS) + 1  # one new stream per group
    for log in continued:
        # Strictly later: forward paging from a stored position must see every one.
        assert log.events[0][0] > last[(log.group, log.stream)]


def test_timestamps_stay_within_what_cloudwatch_accepts() -> None:
    _, first, late = two_waves()
    times = [ts for log in first + late for ts, _ in log.events]
    assert START_MS <= min(times)
    assert max(times) < START_MS + 60 * 60_000  # 45 + 3 minute windows, a little overrun


def test_every_invocation_has_one_start_end_and_report_that_parse_to_its_figures() -> None:
    logs, first, late = two_waves()
    seen: dict[str, Counter[str]] = {}
    reports: dict[str, dict[str, object]] = {}
    for log in first + late:
        if log.group == ECS_GROUP:
            continue
        for _, message in log.events:
            fields = lambda_fields(message)
            if fields is None or "request_id" not in fields or "type" not in fields:
                continue
            rid = str(fields["request_id"])
            seen.setdefault(rid, Counter())[str(fields["type"])] += 1
            if fields["type"] == "report":
                reports[rid] = fields
    assert len(reports) == len(logs.invocations)
    for inv in logs.invocations:
        kinds = seen[inv.request_id]
        assert kinds["start"] == kinds["report"] == 1
        assert kinds["end"] == 1 or kinds["runtime_done"] == 1
        fields = reports[inv.request_id]
        assert fields["duration_ms"] == inv.duration_ms
        assert fields["billed_duration_ms"] == inv.billed_duration_ms
        assert fields["memory_size_mb"] == inv.memory_size_mb
        assert fields["max_memory_used_mb"] == inv.max_memory_used_mb
        assert fields.get("init_duration_ms") == inv.init_duration_ms
        assert fields.get("status", "success") == inv.status


def test_the_logs_hold_the_cases_the_report_is_about() -> None:
    logs = DemoLogs(11, START_MS)
    logs.generate(20_000)
    by_function: dict[str, Counter[str]] = {f.name: Counter() for f in FUNCTIONS}
    for inv in logs.invocations:
        by_function[inv.function][inv.status] += 1
        by_function[inv.function]["cold"] += inv.init_duration_ms is not None
    assert by_function["payments-worker"]["timeout"] > 0
    assert by_function["thumbnailer"]["error"] > 0  # out of memory
    assert all(c["cold"] >= 2 for c in by_function.values())  # one per environment at least
    assert all(c["success"] > 10 * c["cold"] for c in by_function.values())  # mostly warm


def test_timeouts_also_write_the_task_timed_out_line() -> None:
    logs, first, late = two_waves(seed=5)
    timed_out = {inv.request_id for inv in logs.invocations if inv.status == "timeout"}
    found = set()
    for log in first + late:
        for _, message in log.events:
            fields = lambda_fields(message)
            if fields and fields.get("type") == "timeout":
                found.add(fields["request_id"])
    assert timed_out and found == timed_out


def test_runtime_lines_carry_the_request_id_and_a_level() -> None:
    _, first, _ = two_waves()
    levels: Counter[str] = Counter()
    for log in first:
        if log.group == ECS_GROUP:
            continue
        for _, message in log.events:
            if message.startswith(("START", "END", "REPORT", "INIT_START", '{"time"')):
                continue
            line = parse_text(message) if not message.startswith("{") else None
            if message.startswith("{"):
                obj = parse_object(message)
                assert obj is not None
                line = parse_json(obj)
            if line is None:
                assert message.startswith("Loaded config"), message  # print() at init
                continue
            fields, level, _ = line
            if "type" in fields:
                continue  # the platform's timeout line
            assert "request_id" in fields, message
            levels[str(level)] += 1
    assert {"INFO", "WARN", "WARNING"} <= set(levels)


def test_ecs_logs_mix_json_objects_and_plain_text() -> None:
    _, first, _ = two_waves()
    ecs = [m for log in first if log.group == ECS_GROUP for _, m in log.events]
    objects = [parse_object(m) for m in ecs if m.startswith("{")]
    assert all(obj is not None for obj in objects)
    assert {"info", "warn", "error"} <= {str(obj["level"]) for obj in objects if obj}
    plain = [m for m in ecs if not m.startswith("{")]
    assert any(m.startswith("GET /healthz") for m in plain)
    assert any("listening on :8080" in m for m in plain)


def test_generate_refuses_counts_below_one() -> None:
    with pytest.raises(ValueError):
        DemoLogs(1, START_MS).generate(0)
    with pytest.raises(ValueError):
        DemoLogs(1, START_MS).generate(10, per_stream=0)


# -- the demo's own checks -------------------------------------------------------------------


def test_put_chunks_respect_putlogevents_limits() -> None:
    small = [(i, "x") for i in range(25_000)]
    assert [len(c) for c in put_chunks(small)] == [10_000, 10_000, 5_000]
    big = [(i, "y" * 100_000) for i in range(25)]
    chunks = list(put_chunks(big))
    assert all(sum(len(m) + 26 for _, m in c) <= 1_000_000 for c in chunks)
    assert [e for c in chunks for e in c] == big
    assert list(put_chunks([])) == []


def test_compare_finds_loss_surplus_and_disorder() -> None:
    written = {("g", "s"): [(1_000, "a"), (1_000, "b"), (2_000, "c")]}
    iso = ["1970-01-01T00:00:01.000Z", "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z"]
    exact = {("g", "s"): [(iso[0], "a"), (iso[1], "b"), (iso[2], "c")]}
    assert compare(written, exact) == (0, 0, 0)
    assert compare(written, {("g", "s"): [(iso[0], "a"), (iso[2], "c")]}) == (1, 0, 0)
    swapped = {("g", "s"): [(iso[1], "b"), (iso[0], "a"), (iso[2], "c")]}
    assert compare(written, swapped) == (0, 0, 1)
    assert compare(written, {**exact, ("g", "other"): [(iso[0], "z")]}) == (0, 1, 0)
    assert compare(written, {}) == (3, 0, 0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([7.0], 95) == 7.0


def _post(port: int, body: bytes, length: int | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("POST", "/ingest")
        conn.putheader("Content-Length", str(len(body) if length is None else length))
        conn.endheaders()
        conn.send(body)
        if length is not None:
            return 0  # the sender "dies" before the end of its body
        return conn.getresponse().status
    finally:
        conn.close()


def _doc(event_id: str, group: str = "/aws/lambda/f", **aws_lambda: object) -> bytes:
    aws: dict[str, object] = {"cloudwatch": {"log_group": group, "log_stream": "s"}}
    if aws_lambda:
        aws["lambda"] = aws_lambda
    doc = {"@timestamp": "t", "message": "m", "event": {"id": event_id}, "aws": aws}
    return orjson.dumps(doc)


def test_receiver_counts_by_event_id_and_drops_truncated_requests() -> None:
    receiver = Receiver()
    receiver.start()
    try:
        port = int(receiver.url.split(":")[2].split("/")[0])
        first = b"\n".join([_doc("a"), _doc("b", type="report", duration_ms=1.0), b""])
        assert _post(port, first) == 200
        assert _post(port, b"\n".join([_doc("b"), _doc("c"), b"not json"])) == 200
        _post(port, _doc("d"), length=10_000)
        deadline = time.monotonic() + 5
        while receiver.counts()[2] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        receiver.settle()
        by_group, redelivered, requests = receiver.counts()
        assert by_group == Counter({"/aws/lambda/f": 3})
        assert (redelivered, requests) == (1, 2)
        assert receiver.tally.malformed == 1
        assert receiver.tally.reports == {"/aws/lambda/f": [{"type": "report", "duration_ms": 1.0}]}
    finally:
        receiver.stop()


def test_receiver_trips_once_and_holds_that_answer_until_released() -> None:
    receiver = Receiver()
    receiver.trip_at = 2
    receiver.start()
    try:
        port = int(receiver.url.split(":")[2].split("/")[0])
        assert _post(port, _doc("a")) == 200
        assert not receiver.tripped.is_set()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        body = _doc("b")
        conn.request("POST", "/ingest", body=body, headers={"Content-Length": str(len(body))})
        assert receiver.tripped.wait(5)
        receiver.release.set()
        assert conn.getresponse().status == 200
        conn.close()
        assert _post(port, _doc("c")) == 200  # no second trip, no hold
    finally:
        receiver.stop()


# -- the tour --------------------------------------------------------------------------------


def _run_cli(args: list[str], timeout_s: float) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cwconsumer", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
        start_new_session=True,  # a timeout below stops the demo and its consumer together
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout_s} s:\n{out.decode(errors='replace')}")
    return proc.returncode, out.decode(errors="replace")


def test_quick_demo_tour_ends_with_nothing_lost_and_a_lambda_report() -> None:
    rc, out = _run_cli(["demo", "--quick"], timeout_s=120)
    assert rc == 0, out
    assert "\x1b[" not in out  # no colour or redraw when the output is not a terminal
    assert re.search(r"Crash! SIGKILL to pid \d+", out), out
    assert re.search(r"Restart: cwconsumer run \(pid \d+\)", out), out
    assert re.search(r"Resumed [\d.]+ s after the restart and caught up", out), out
    assert "SIGTERM: exit 0" in out, out
    assert re.search(r"at the receiver +[\d,]+ +by event\.id.* lost: 0$", out, re.M), out
    assert re.search(r"sent twice +[\d,]+ +no more than was in flight", out), out
    for f in FUNCTIONS:
        # function, invocations, cold starts, p50, p95, max, average billed, memory used / size
        row = rf"^  {f.name} +[\d,]+ +\d+ +[\d,]+ +[\d,]+ +[\d,]+ +[\d,]+ +\d+ / {f.memory_size_mb}"
        assert re.search(row, out, re.M), out
    assert not Path(re.search(r"CWC_DB_PATH=(\S+)", out)[1]).parent.exists()  # type: ignore[index]


def test_demo_refuses_a_bad_events_count() -> None:
    rc, out = _run_cli(["demo", "--events", "0"], timeout_s=60)
    assert rc == 2
    assert "--events" in out
