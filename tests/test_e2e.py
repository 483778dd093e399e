"""End to end through the real aiobotocore client over HTTP against moto in
server mode, a real HTTP sink, a real SQLite file and the product as a real
process (signals where the promise is about processes)."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import Moto, wait_until
from tests.support.fakesinks import RecordingSink


def msgs(group: str, stream: str, start: int, n: int) -> list[str]:
    return [f"{group}|{stream}|{i:06d}" for i in range(start, start + n)]


def by_stream(docs: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for d in docs:
        cw = d["aws"]["cloudwatch"]
        out[(cw["log_group"], cw["log_stream"])].append(d["message"])
    return out


def unique_messages(docs: list[dict[str, Any]]) -> set[str]:
    return {d["message"] for d in docs}


def assert_stream_order(docs: list[dict[str, Any]]) -> None:
    """Per stream, events arrive in order; a re-delivery after a crash may
    repeat an earlier run, but a later event never precedes an earlier one
    that had not been delivered yet."""
    for key, seq in by_stream(docs).items():
        highest = -1
        for m in seq:
            i = int(m.rsplit("|", 1)[1])
            assert i <= highest + 1, f"{key}: event {i} arrived before {highest + 1}"
            highest = max(highest, i)


def test_every_event_of_three_groups_arrives_in_order_and_new_things_flow(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    groups = ["/aws/lambda/orders", "/ecs/checkout", "/app/batch"]
    expected: set[str] = set()
    for g in groups:
        moto.group(g)
        for s in range(3):
            stream = f"s{s}"
            moto.stream(g, stream)
            m = msgs(g, stream, 0, 400)
            moto.put(g, stream, m)
            expected |= set(m)
    product = make_product(moto, sink.url, CWC_LOG_GROUP_PREFIXES="/aws/,/ecs/,/app/").start()
    wait_until(lambda: unique_messages(sink.docs()) >= expected, 60, "the initial backlog")

    # Appended while running.
    more = msgs("/ecs/checkout", "s1", 400, 150)
    moto.put("/ecs/checkout", "s1", more, ts_ms=int(time.time() * 1000))
    # A stream created while running, read from its first event.
    moto.stream("/app/batch", "late")
    late = msgs("/app/batch", "late", 0, 120)
    moto.put("/app/batch", "late", late, ts_ms=int(time.time() * 1000) - 3_600_000)
    # A group matching a prefix, created while running: no restart needed.
    moto.group("/aws/lambda/new-fn")
    moto.stream("/aws/lambda/new-fn", "x")
    fresh = msgs("/aws/lambda/new-fn", "x", 0, 80)
    moto.put("/aws/lambda/new-fn", "x", fresh)
    expected |= set(more) | set(late) | set(fresh)
    wait_until(
        lambda: unique_messages(sink.docs()) >= expected, 60, "appended, late stream, new group"
    )

    assert product.terminate() == 0
    docs = sink.docs()
    assert unique_messages(docs) == expected
    assert len(docs) == len(expected), "a clean run delivers every event exactly once"
    assert_stream_order(docs)
    d = next(x for x in docs if x["message"] == fresh[0])
    assert d["aws"]["cloudwatch"] == {"log_group": "/aws/lambda/new-fn", "log_stream": "x"}
    # The account comes from a group's ARN (moto's default account).
    assert d["cloud"] == {
        "provider": "aws",
        "region": "us-east-1",
        "account": {"id": "123456789012"},
    }
    assert d["@timestamp"].endswith("Z") and len(d["event"]["id"]) == 32


def test_sigterm_exits_zero_and_restart_redelivers_nothing(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    for s in ("a", "b"):
        moto.stream("/g", s)
        moto.put("/g", s, msgs("/g", s, 0, 3000))
    product = make_product(moto, sink.url, CWC_LOG_GROUPS="/g", CWC_BATCH_MAX_EVENTS="500")
    product.start()
    wait_until(lambda: len(sink.docs()) >= 1000, 60, "some deliveries")
    started = time.monotonic()
    assert product.terminate(timeout_s=30) == 0
    assert time.monotonic() - started < 12, "stop must finish within CWC_SHUTDOWN_TIMEOUT"
    before = len(sink.docs())
    product.start()
    wait_until(lambda: len(unique_messages(sink.docs())) >= 6000, 60, "the rest")
    time.sleep(1.5)  # would expose a re-read of already confirmed events
    assert product.terminate() == 0
    docs = sink.docs()
    assert len(docs) == 6000, (
        f"re-delivered {len(docs) - 6000} events after a clean stop ({before} before)"
    )
    assert_stream_order(docs)
    assert '"stop requested' in product.logs()


def test_sigkill_mid_run_loses_nothing_and_redeliveries_keep_their_id(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    expected: set[str] = set()
    for s in ("a", "b", "c"):
        moto.stream("/g", s)
        m = msgs("/g", s, 0, 4000)
        moto.put("/g", s, m)
        expected |= set(m)
    product = make_product(moto, sink.url, CWC_LOG_GROUPS="/g", CWC_BATCH_MAX_EVENTS="300")
    for _ in range(3):
        product.start()
        have = len(unique_messages(sink.docs()))
        wait_until(lambda h=have: len(sink.docs()) > h + 700, 60, "progress")  # type: ignore[misc]
        product.kill()
    starts = product.logs().count('"message":"starting"')
    product.start()
    wait_until(lambda: unique_messages(sink.docs()) >= expected, 90, "everything after crashes")
    # A fast run can deliver everything before the third kill: the last run
    # must have started (its stop signals caught) before it is asked to stop.
    wait_until(lambda: product.logs().count('"message":"starting"') > starts, 60, "the last run")
    assert product.terminate() == 0
    docs = sink.docs()
    assert unique_messages(docs) == expected
    ids: dict[str, str] = {}
    for d in docs:
        assert ids.setdefault(d["message"], d["event"]["id"]) == d["event"]["id"], (
            "same event, new id"
        )
    assert len(set(ids.values())) == len(expected), "two events share an id"
    assert_stream_order(docs)


def test_sink_faults_500_429_hang_and_reset_lose_nothing(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    moto.stream("/g", "s")
    expected = msgs("/g", "s", 0, 1200)
    moto.put("/g", "s", expected)
    sink.set_fault(status=500, times=3)
    sink.set_fault(status=429, times=2, retry_after="1")
    sink.set_fault(hang_s=30)
    sink.set_fault(reset=True, times=2)
    product = make_product(
        moto, sink.url, CWC_LOG_GROUPS="/g", CWC_SINK_TIMEOUT="1s", CWC_BATCH_MAX_EVENTS="200"
    ).start()
    wait_until(lambda: unique_messages(sink.docs()) >= set(expected), 90, "delivery through faults")
    assert product.terminate() == 0
    docs = sink.docs()
    assert unique_messages(docs) == set(expected)
    assert_stream_order(docs)
    # 3 × 500, 2 × 429, one hang, 2 resets, then the successful requests.
    assert len(sink.requests()) >= 8 + len(docs) // 200
    logs = product.logs()
    assert "sink delivery failed; retrying" in logs
    assert '"status":500' in logs and '"status":429' in logs and '"status":null' in logs


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (``SigCgt`` in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except FileNotFoundError:
        pass
    return False


def test_sigterm_while_starting_still_exits_zero(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    """An orchestrator may stop a task that has only just started: SIGTERM
    during imports, configuration or opening the database is a clean stop."""
    moto.group("/g")
    product = make_product(moto, sink.url, CWC_LOG_GROUPS="/g").start()
    assert product.proc is not None
    pid = product.proc.pid
    deadline = time.monotonic() + 30
    while not _catches_sigterm(pid):
        assert time.monotonic() < deadline, "SIGTERM never caught"
        assert product.proc.poll() is None, "the product ended on its own"
        time.sleep(0.001)
    # Caught from the start of `run`, long before the service is up.
    assert '"starting"' not in product.logs()
    assert product.terminate() == 0
    assert "stop requested" in product.logs()


_ORDER_PROBE = """
import signal, sys, types
from cwconsumer import earlystop
stub = types.ModuleType("cwconsumer.cli")
# What the real command line would find when it starts importing.
stub.main = lambda: int(signal.getsignal(signal.SIGTERM) is earlystop._record)
sys.modules["cwconsumer.cli"] = stub
from cwconsumer.entry import main
sys.argv = ["cwconsumer", *sys.argv[1:]]
print(main())
"""


@pytest.mark.parametrize(("command", "caught"), [("run", "1"), ("status", "0")])
def test_run_catches_sigterm_before_the_command_line_is_imported(command: str, caught: str) -> None:
    """The command line's imports take ~60 ms (anyio, asyncio, the config);
    a SIGTERM in that window used to end ``run`` with -15. The entry point
    records stop signals for ``run`` before importing it; other commands keep
    the default action (Ctrl-C / SIGTERM end them at once)."""
    done = subprocess.run(
        [sys.executable, "-c", _ORDER_PROBE, command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == caught
