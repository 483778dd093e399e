"""The operator's commands as real processes against moto, a recording sink and
the database of a real ``run``: ``status``, ``check``, ``reset``."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import Moto, Product, wait_until
from tests.support.fakesinks import RecordingSink


def cli(env: dict[str, str], *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cwconsumer", *args],
        env=dict(env, **overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


def status_json(env: dict[str, str], *extra: str) -> dict[str, Any]:
    done = cli(env, "status", "--json", *extra)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def msgs(stream: str, n: int, start: int = 0) -> list[str]:
    return [f"{stream}|{i:05d}" for i in range(start, start + n)]


def unique(docs: list[dict[str, Any]]) -> set[str]:
    return {d["message"] for d in docs}


def stream_rows(db: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT group_name, stream_name, token, start_time_ms, skip, last_ts, last_ord, "
            "state, checkpoint_ms FROM streams ORDER BY 1, 2"
        ).fetchall()


def two_streams(moto: Moto, n: int = 300) -> set[str]:
    moto.group("/g")
    expected: set[str] = set()
    for s in ("a", "b"):
        moto.stream("/g", s)
        m = msgs(s, n)
        moto.put("/g", s, m)
        expected |= set(m)
    return expected


# -- status ------------------------------------------------------------------------


def test_status_while_running_and_after(moto: Moto, sink: RecordingSink, make_product: Any) -> None:
    expected = two_streams(moto)
    product: Product = make_product(moto, sink.url, CWC_LOG_GROUPS="/g").start()
    wait_until(lambda: unique(sink.docs()) >= expected, 30, "delivery")
    wait_until(lambda: status_json(product.env)["groups"][0]["delivered"] == 600, 10, "checkpoints")
    data = status_json(product.env)
    assert data["running"] is True and data["lease"]["holder"].endswith(f"pid {product.proc.pid}")  # type: ignore[union-attr]  # fmt: skip
    (group,) = data["groups"]
    assert group["group"] == "/g" and group["state"] == "active"
    assert group["stream_count"] == 2 and group["delivered"] == 600
    assert group["lag_s"] >= 55 and group["last_delivered_event"].endswith("Z")
    assert group["last_checkpoint"] is not None and "streams" not in group

    table = cli(product.env, "status", "--streams")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("database: ") and lines[1].startswith("run: ")
    assert "not running" not in lines[1]
    header = next(line for line in lines if line.startswith("GROUP"))
    for column in ("STATE", "STREAMS", "DELIVERED", "LAST EVENT", "LAG", "CHECKPOINTED"):
        assert column in header
    assert any(line.startswith("/g ") and " 600 " in line for line in lines)
    assert any(line.startswith("  a ") for line in lines) and any(
        line.startswith("  b ") for line in lines
    )

    assert product.terminate() == 0
    after = status_json(product.env, "--streams")
    assert after["running"] is False and after["lease"]["holder"] is None
    (group,) = after["groups"]
    assert group["delivered"] == 600
    streams = {s["stream"]: s for s in group["streams"]}
    assert set(streams) == {"a", "b"}
    for s in streams.values():
        assert s["delivered"] == 300 and s["state"] in ("reading", "tailing", "idle")
        assert s["position"] == "token" and s["checkpoint_written"] is not None
        assert s["behind_s"] == 0.0 and s["lag_s"] >= 55
    assert "not running" in cli(product.env, "status").stdout


def test_status_without_a_database_is_a_usage_error(tmp_path: Path) -> None:
    done = cli({"PATH": "/usr/bin:/bin"}, "status", CWC_DB_PATH=str(tmp_path / "none.db"))
    assert done.returncode == 2
    assert "CWC_DB_PATH" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "none.db").exists()


# -- check -------------------------------------------------------------------------


def test_check_all_pass(moto: Moto, sink: RecordingSink, make_product: Any) -> None:
    two_streams(moto, 5)
    moto.group("/aws/lambda/fn")
    product: Product = make_product(
        moto, sink.url, CWC_LOG_GROUPS="/g", CWC_LOG_GROUP_PREFIXES="/aws/lambda/"
    )
    done = cli(product.env, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("✓ configuration: 1 group(s), 1 prefix(es)")
    by_what = {line.split(":", 1)[0]: line for line in lines if line[:1] in "✓✗"}
    assert by_what["✓ database"].endswith("will be created at the first run (directory writable)")
    assert by_what["✓ AWS credentials"].startswith("✓ AWS credentials: found (env")
    assert "DescribeLogGroups permitted; 1 group(s) match" in by_what["✓ prefix /aws/lambda/"]
    assert "DescribeLogStreams and GetLogEvents permitted" in by_what["✓ group /g"]
    assert "no streams yet" in by_what["✓ group /aws/lambda/fn"]
    assert "answered HTTP 200" in by_what["✓ sink"]
    assert by_what["✓ poll policy"] == (
        "✓ poll policy: 10/s GetLogEvents; active streams re-polled within 500ms, quiet ones "
        "at half their quiet time up to 10m, idle after 2h, forgotten after 7d idle; streams "
        "listed every 333ms (newest first, as deep as what changed), 5/s Describe*"
    )
    assert lines[-1] == f"{len(by_what)} passed, 0 failed"
    assert not Path(product.env["CWC_DB_PATH"]).exists(), "check creates nothing"

    # With the database of a run, while it runs.
    product.start()
    wait_until(lambda: len(sink.docs()) >= 10, 30, "delivery")
    done = cli(product.env, "check")
    assert done.returncode == 0, done.stdout
    assert "✓ database: " in done.stdout and "schema" in done.stdout
    assert "a run holds it now" in done.stdout
    assert product.terminate() == 0


def test_check_fails_for_an_unreachable_sink_and_a_missing_group(
    moto: Moto, make_product: Any
) -> None:
    two_streams(moto, 5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    product: Product = make_product(moto, closed, CWC_LOG_GROUPS="/g,/missing")
    done = cli(product.env, "check")
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    assert any(line.startswith("✓ group /g: ") for line in lines)
    missing = next(line for line in lines if line.startswith("✗ group /missing: "))
    assert "does not exist" in missing
    sink_line = next(line for line in lines if line.startswith("✗ sink"))
    assert closed.split("//")[1] in sink_line
    assert lines[-1].endswith("passed, 2 failed")
    assert "Traceback" not in done.stdout + done.stderr


def test_check_exits_2_on_bad_configuration_listing_every_problem(
    moto: Moto, make_product: Any
) -> None:
    product: Product = make_product(moto, "ftp://sink", CWC_BATCH_MAX_EVENTS="lots")
    env = {k: v for k, v in product.env.items() if k != "CWC_LOG_GROUPS"}
    done = cli(env, "check")
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert lines[0] == "✗ configuration: 3 problem(s)"
    problems = [line.strip() for line in lines[1:]]
    assert [p.split(":", 1)[0] for p in problems] == [
        "CWC_LOG_GROUPS",
        "CWC_SINK_URL",
        "CWC_BATCH_MAX_EVENTS",
    ]
    assert "Traceback" not in done.stdout + done.stderr
    assert not Path(product.env["CWC_DB_PATH"]).exists()


# -- reset -------------------------------------------------------------------------


def test_reset_preview_refusal_and_rereading_from_the_beginning(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    expected = two_streams(moto, 200)
    product: Product = make_product(moto, sink.url, CWC_LOG_GROUPS="/g").start()
    db = product.env["CWC_DB_PATH"]
    wait_until(lambda: unique(sink.docs()) >= expected, 30, "delivery")

    refused = cli(product.env, "reset", "--group", "/g", "--to", "beginning")
    assert refused.returncode == 1
    assert "refused: a run holds the database" in refused.stderr
    assert product.terminate() == 0
    before = stream_rows(db)
    first_ids = {d["message"]: d["event"]["id"] for d in sink.docs()}

    preview = cli(product.env, "reset", "--group", "/g", "--stream", "a", "--to", "beginning", "--dry-run")  # fmt: skip
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.startswith("would move 1 stream(s) of /g to the beginning")
    assert (
        "  a: last delivered 20" in preview.stdout and "dry run: nothing changed" in preview.stdout
    )
    assert stream_rows(db) == before, "--dry-run changed the database"

    for bad, where in ((["--group", "/nope"], "--group"), (["--group", "/g", "--stream", "zz"], "--stream")):  # fmt: skip
        done = cli(product.env, "reset", *bad, "--to", "end")
        assert done.returncode == 2 and where in done.stderr, done.stderr
    done = cli(product.env, "reset", "--group", "/g", "--to", "yesterday-ish")
    assert done.returncode == 2 and "--to" in done.stderr
    assert stream_rows(db) == before

    done = cli(product.env, "reset", "--group", "/g", "--stream", "a", "--to", "beginning")
    assert done.returncode == 0, done.stderr
    assert "1 stream checkpoint(s) reset" in done.stdout
    rows = {r[1]: r for r in stream_rows(db)}
    assert rows["a"][2] is None and rows["a"][5] is None and rows["a"][7] == "new"
    assert rows["b"] == next(r for r in before if r[1] == "b"), "only stream a moved"

    sink.clear()
    product.start()
    again = set(msgs("a", 200))
    wait_until(lambda: unique(sink.docs()) >= again, 30, "stream a read again")
    time.sleep(1.0)  # stream b must not come again
    assert product.terminate() == 0
    docs = sink.docs()
    assert unique(docs) == again, "only stream a is re-delivered"
    for d in docs:
        assert d["event"]["id"] == first_ids[d["message"]], "a re-delivery keeps its event.id"


def test_reset_to_end_skips_what_exists_and_reads_what_comes(
    start_fakecwl: Any, sink: RecordingSink, make_fake_product: Any
) -> None:
    # The AWS-faithful stand-in: moto answers a startTime query with a token
    # relative to the filtered events, so paging on from it re-reads old ones.
    fake = start_fakecwl()
    old_ts = int(time.time() * 1000) - 60_000
    fake.put("/g", "a", [(old_ts + i, m) for i, m in enumerate(msgs("a", 100))])
    product: Product = make_fake_product(fake, sink.url, CWC_LOG_GROUPS="/g").start()
    wait_until(lambda: len(sink.docs()) >= 100, 30, "delivery")
    assert product.terminate() == 0
    # Reset to the start, then to the end: the end wins, nothing old is read.
    assert cli(product.env, "reset", "--group", "/g", "--to", "beginning").returncode == 0
    done = cli(product.env, "reset", "--group", "/g", "--to", "end")
    assert done.returncode == 0, done.stderr
    assert "to the end (events from 20" in done.stdout
    sink.clear()
    time.sleep(0.01)
    now = int(time.time() * 1000)
    while_down = msgs("a", 10, start=100)
    fake.put("/g", "a", [(now + i, m) for i, m in enumerate(while_down)])
    product.start()
    wait_until(lambda: unique(sink.docs()) >= set(while_down), 30, "events put while stopped")
    later = msgs("a", 10, start=110)
    fake.put("/g", "a", [(now + 100 + i, m) for i, m in enumerate(later)])
    wait_until(lambda: unique(sink.docs()) >= set(later), 30, "events put after the start")
    assert product.terminate() == 0
    assert unique(sink.docs()) == set(while_down) | set(later), (
        "events from before the reset came again"
    )
