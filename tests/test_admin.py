"""The admin HTTP server of a real ``cwconsumer run`` process: /healthz tells
the truth (stalled, credentials, standby) and heals by itself, /metrics and
/stats report plausible figures. Also the pure parts behind them: the health
verdict, the in-flight ingestion tracking, lag thresholds, EMF lines."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from cwconsumer.emf import EmfWriter, Reporter
from cwconsumer.health import TASK_FAILURE_WINDOW_S, Health
from cwconsumer.metrics import (
    InFlight,
    LagWatch,
    Metrics,
    ingested_ms,
    stream_ingestion_lag_s,
)
from cwconsumer.model import Checkpoint, Chunk, StreamKey
from cwconsumer.streams import State, StreamState
from tests.conftest import Moto, Product, wait_until
from tests.support.fakesinks import RecordingSink

# -- helpers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, body = get(port, path)
    return status, json.loads(body)


def healthz(port: int, query: str = "") -> tuple[int, dict[str, Any]]:
    try:
        return get_json(port, "/healthz" + query)
    except OSError:
        return 0, {}


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    status, body = get(port, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def msgs(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(start, start + n)]


def start_with_admin(
    make_product: Any, moto: Moto, sink: RecordingSink, **env: str
) -> tuple[Product, int]:
    """A started product with its admin server on a free port: (product, port)."""
    port = free_port()
    product: Product = make_product(moto, sink.url, CWC_ADMIN_ADDR=f"127.0.0.1:{port}", **env)
    product.start()
    wait_until(lambda: healthz(port)[0] in (200, 503), 20, "the admin server")
    return product, port


# -- the running process -----------------------------------------------------------


def test_healthz_metrics_stats_while_flowing_then_stalled_then_healed(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    moto.stream("/g", "s")
    first = msgs("a", 200)
    moto.put("/g", "s", first)
    product, port = start_with_admin(
        make_product, moto, sink, CWC_LOG_GROUPS="/g", CWC_STALL_TIMEOUT="2s",
        CWC_SINK_TIMEOUT="1s",
    )  # fmt: skip
    wait_until(lambda: len(sink.docs()) >= 200, 30, "the first events")
    wait_until(lambda: healthz(port)[0] == 200, 10, "healthy while flowing")
    status, body = healthz(port)
    assert body["status"] == "ok" and body["role"] == "active" and "reasons" not in body

    # Shipped counts events once their checkpoint is committed, a moment
    # after the sink has them: wait for that, then read everything at once.
    shipped = ("cwconsumer_events_shipped_total", (("group", "/g"),))
    wait_until(lambda: metrics(port).get(shipped) == 200, 10, "the checkpoint of the 200 events")
    m = metrics(port)
    assert m[("cwconsumer_events_read_total", (("group", "/g"),))] == 200
    assert m[shipped] == 200
    assert m[("cwconsumer_events_retried_total", ())] == 0
    assert m[("cwconsumer_batches_total", (("outcome", "delivered"),))] >= 1
    assert m[("cwconsumer_batch_events_sum", ())] == 200
    assert m[("cwconsumer_sink_request_seconds_count", ())] >= 1
    assert m[("cwconsumer_sink_responses_total", (("status", "200"),))] >= 1
    ok_calls = (("operation", "GetLogEvents"), ("outcome", "ok"))
    assert m[("cwconsumer_aws_calls_total", ok_calls)] >= 1
    assert m[("cwconsumer_aws_calls_total", (("operation", "DescribeLogStreams"), ("outcome", "ok")))] >= 1  # fmt: skip
    assert m[("cwconsumer_aws_rate_per_second", (("operation", "GetLogEvents"),))] == 10
    assert m[("cwconsumer_buffer_events", ())] == 0
    # moto.put stamps the events a minute back; they were ingested just now.
    lag = m[("cwconsumer_group_lag_seconds", (("group", "/g"),))]
    assert 55 <= lag <= 600
    assert m[("cwconsumer_group_ingestion_lag_seconds", (("group", "/g"),))] == 0
    assert m[("cwconsumer_group_behind_seconds", (("group", "/g"),))] == 0
    assert sum(v for (n, _), v in m.items() if n == "cwconsumer_streams") == 1
    assert abs(m[("cwconsumer_last_delivery_timestamp_seconds", ())] - time.time()) < 60
    assert m[("cwconsumer_healthy", ())] == 1
    assert m[("cwconsumer_standby", ())] == 0

    status, stats = get_json(port, "/stats")
    assert status == 200 and stats["healthy"] is True
    group = stats["groups"]["/g"]
    assert group["events"] == {"in": 200, "out": 200, "dead_lettered": 0}
    assert group["lag_s"] >= 55 and group["ingestion_lag_s"] == 0
    stream = group["streams"]["s"]
    assert stream["events"] == {"in": 200, "out": 200, "dead_lettered": 0}
    assert stream["state"] in ("reading", "tailing")
    assert stream["pending"] == 0 and stream["last_error"] is None
    assert stream["checkpoint_ms"] is not None and stream["lag_s"] >= 55
    assert stream["ingestion_lag_s"] == 0
    _, only = get_json(port, "/stats?group=/nope")
    assert only["groups"] == {}
    _, totals = get_json(port, "/stats?streams=false")
    assert "streams" not in totals["groups"]["/g"]

    # The sink hangs: every request times out after CWC_SINK_TIMEOUT.
    sink.set_fault(hang_s=60, times=-1)
    second = msgs("b", 50)
    moto.put("/g", "s", second, ts_ms=int(time.time() * 1000))
    wait_until(lambda: healthz(port)[0] == 503, 30, "503 once stalled")
    status, body = healthz(port)
    assert body["status"] == "unhealthy"
    assert any(r.startswith("stalled: 50 events pending") for r in body["reasons"]), body
    assert body["pending_events"] == 50 and body["stalled_s"] >= 2
    _, stats = get_json(port, "/stats")
    assert stats["healthy"] is False and stats["health"]["reasons"]
    assert stats["pipeline"]["sink"]["retrying"]
    m = metrics(port)
    assert m[("cwconsumer_healthy", ())] == 0
    assert m[("cwconsumer_buffer_events", ())] == 50
    assert m[("cwconsumer_events_retried_total", ())] >= 50
    assert m[("cwconsumer_sink_responses_total", (("status", "0"),))] >= 1

    # Delivery resumes: healthy again without anyone touching the process.
    sink.clear_faults()
    wait_until(lambda: healthz(port)[0] == 200, 60, "200 again after the sink recovered")
    wait_until(lambda: {d["message"] for d in sink.docs()} >= set(second), 10, "the rest")
    assert healthz(port)[1]["status"] == "ok"
    assert product.terminate() == 0


def test_healthz_503_at_once_when_the_sink_rejects_the_credentials(
    moto: Moto, make_product: Any
) -> None:
    moto.group("/g")
    moto.stream("/g", "s")
    moto.put("/g", "s", msgs("a", 10))
    with RecordingSink(token="right-token-1234") as sink:
        product, port = start_with_admin(
            make_product,
            moto,
            sink,
            CWC_LOG_GROUPS="/g",
            CWC_SINK_TOKEN="wrong-token-5678",
            CWC_SHUTDOWN_TIMEOUT="1s",
        )
        wait_until(lambda: healthz(port)[0] == 503, 20, "503 on 401")
        _, body = healthz(port)
        assert body["status"] == "unhealthy"
        assert any("sink rejects the credentials: HTTP 401" in r for r in body["reasons"]), body
        assert "wrong-token-5678" not in json.dumps(body)
        assert product.terminate() == 0
        assert sink.docs() == []


def test_standby_says_so_distinctly_and_takes_over(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    moto.stream("/g", "s")
    moto.put("/g", "s", msgs("a", 20))
    active, _ = start_with_admin(make_product, moto, sink, CWC_LOG_GROUPS="/g")
    wait_until(lambda: len(sink.docs()) >= 20, 30, "delivery")
    standby, port = start_with_admin(make_product, moto, sink, CWC_LOG_GROUPS="/g")
    wait_until(lambda: healthz(port)[1].get("role") == "standby", 20, "the standby")
    status, body = healthz(port)
    assert status == 503 and body["status"] == "standby"
    assert body["reasons"][0].startswith("standby: another cwconsumer run holds")
    status, body = healthz(port, "?standby=ok")
    assert status == 200 and body["status"] == "standby"
    assert metrics(port)[("cwconsumer_standby", ())] == 1
    check = subprocess.run(
        [sys.executable, "-m", "cwconsumer", "healthcheck"],
        env=standby.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 1 and '"standby"' in check.stdout
    check = subprocess.run(
        [sys.executable, "-m", "cwconsumer", "healthcheck", "--standby-ok"],
        env=standby.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr

    assert active.terminate() == 0
    wait_until(lambda: healthz(port)[0] == 200, 20, "the standby taking over")
    assert healthz(port)[1]["role"] == "active"
    check = subprocess.run(
        [sys.executable, "-m", "cwconsumer", "healthcheck"],
        env=standby.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert standby.terminate() == 0


def test_an_admin_port_in_use_stops_the_run_with_the_reason(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        product = make_product(
            moto, sink.url, CWC_LOG_GROUPS="/g", CWC_ADMIN_ADDR=f"127.0.0.1:{port}"
        )
        product.start()
        assert product.proc.wait(30) == 1
    last = product.logs().strip().splitlines()[-1]
    assert f"admin server cannot listen on 127.0.0.1:{port}" in last
    assert "CWC_ADMIN_ADDR" in last


def test_emf_lines_on_stdout_when_enabled(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    moto.stream("/g", "s")
    moto.put("/g", "s", msgs("a", 30))
    product = make_product(moto, sink.url, CWC_LOG_GROUPS="/g", CWC_EMF_METRICS="true")
    out_path = product.log_path.with_suffix(".stdout")
    with out_path.open("wb") as out, product.log_path.open("ab") as err:
        product.proc = subprocess.Popen(
            [sys.executable, "-m", "cwconsumer", "run"], env=product.env, stdout=out, stderr=err
        )
        wait_until(lambda: len(sink.docs()) >= 30, 30, "delivery")
        assert product.terminate() == 0
    lines = out_path.read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert docs and all("_aws" in d for d in docs), lines
    process = next(d for d in docs if "LogGroup" not in d)
    directive = process["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "cwconsumer" and directive["Dimensions"] == [["Service"]]
    assert sum(d["EventsShipped"] for d in docs if "LogGroup" not in d) == 30
    assert process["Healthy"] in (0, 1) and process["PendingEvents"] == 0
    group = next(d for d in docs if d.get("LogGroup") == "/g")
    assert group["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Service", "LogGroup"]]
    assert group["IngestionLagSeconds"] == 0 and group["LagSeconds"] >= 55


# -- the pure parts --------------------------------------------------------------------


def test_health_verdict_reasons_and_recovery() -> None:
    h = Health(stall_timeout_s=10)
    h.started = True
    ok, body = h.verdict(0)
    assert ok and body["status"] == "ok" and "reasons" not in body
    h.pending(5)
    assert h.pending_since_mono is not None
    h.pending_since_mono -= 11
    h.last_confirm_mono -= 11
    ok, body = h.verdict(5)
    assert not ok and body["reasons"][0].startswith("stalled: 5 events pending")
    h.confirmed()
    assert h.verdict(5)[0], "a confirmation clears the stall"

    h.task_failed("lane-0", "RuntimeError: boom")
    ok, body = h.verdict(0)
    assert not ok and "task lane-0 failed" in body["reasons"][0] and "boom" in body["reasons"][0]
    h.failed_tasks["lane-0"].at_mono -= TASK_FAILURE_WINDOW_S + 1
    assert h.verdict(0)[0], "a task failure ages out once the task keeps running"

    h.auth_error = "HTTP 401: nope"
    ok, body = h.verdict(0)
    assert not ok and "credentials" in body["reasons"][0]
    h.confirmed()
    assert h.verdict(0)[0]

    h.standby, h.holder = True, "host pid 1"
    ok, body = h.verdict(0)
    assert not ok and body["status"] == "standby" and "host pid 1" in body["reasons"][0]
    ok, body = h.verdict(0, standby_ok=True)
    assert ok and body["status"] == "standby"
    h.auth_error = "HTTP 403"  # a standby with another problem is not excused
    assert not h.verdict(0, standby_ok=True)[0]


def _chunk(key: StreamKey, ingested: list[int | None], ts: int = 1_000) -> Chunk:
    docs: list[dict[str, Any]] = []
    for i, ing in enumerate(ingested):
        event: dict[str, Any] = {"id": f"{i:032x}"}
        if ing is not None:
            event["ingested"] = (
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ing / 1000)) + f".{ing % 1000:03d}Z"
            )
        docs.append({"message": str(i), "event": event})
    return Chunk(key, docs, [ts] * len(docs), None, None, 0, None, -1, "t", True, 10 * len(docs))


def _stream(key: StreamKey, **kw: Any) -> StreamState:
    cp = kw.pop("committed", Checkpoint())
    return StreamState(key=key, committed=cp, read_pos=cp, **kw)


def test_in_flight_tracks_the_oldest_unconfirmed_ingestion_time() -> None:
    key = StreamKey("/g", "s")
    assert ingested_ms(_chunk(key, [1_795_000_000_123]).docs[0]) == 1_795_000_000_123
    f = InFlight()
    a, b = _chunk(key, [1_000_000, 1_001_000, 1_002_000]), _chunk(key, [1_005_000, 1_006_000])
    f.read(a)
    f.read(b)
    assert f.oldest_ingested_ms(key) == 1_000_000 and f.newest_read_ms(key) == 1_006_000
    head, _tail = a.split(2)
    f.confirmed([head])  # part of the first run: it keeps its first time (conservative)
    assert f.oldest_ingested_ms(key) == 1_000_000
    f.confirmed([_tail])
    assert f.oldest_ingested_ms(key) == 1_005_000
    f.confirmed([b])
    assert f.oldest_ingested_ms(key) is None and not f.has_pending(key)

    now = 2_000_000
    st = _stream(key, state=State.TAILING, pending_events=2)
    f.read(_chunk(key, [1_880_000, 1_890_000]))
    assert stream_ingestion_lag_s(st, f, now) == 120.0
    f.confirmed([_chunk(key, [None, None])])
    # Caught up: CloudWatch reports nothing newer than what was read.
    st = _stream(key, state=State.TAILING, last_ingestion_seen_ms=1_890_000)
    assert stream_ingestion_lag_s(st, f, now) == 0.0
    # CloudWatch holds newer data nobody read yet: lower bound from its time.
    st = _stream(key, state=State.TAILING, last_ingestion_seen_ms=1_990_000)
    assert stream_ingestion_lag_s(st, f, now) == 10.0
    # After a restart (nothing read in this process): event times decide.
    other = StreamKey("/g", "other")
    behind = _stream(
        other, state=State.NEW, committed=Checkpoint(last_ts=1_000_000),
        last_event_seen_ms=1_500_000, last_ingestion_seen_ms=1_500_500,
    )  # fmt: skip
    assert stream_ingestion_lag_s(behind, f, now) == 499.5
    caught_up = _stream(
        other, state=State.TAILING, committed=Checkpoint(last_ts=1_500_000),
        last_event_seen_ms=1_500_000, last_ingestion_seen_ms=1_500_500,
    )  # fmt: skip
    assert stream_ingestion_lag_s(caught_up, f, now) == 0.0
    assert stream_ingestion_lag_s(_stream(other, state=State.DELETED), f, now) == 0.0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_metrics_refresh_sets_group_gauges_forgets_gone_groups_and_logs_lag_crossings() -> None:
    m = Metrics()
    f = m.in_flight
    key = StreamKey("/g", "s")
    now = 10_000_000
    st = _stream(
        key, state=State.READING, committed=Checkpoint(last_ts=now - 30_000),
        last_event_seen_ms=now - 1_000, pending_events=3,
    )  # fmt: skip
    f.read(_chunk(key, [now - 400_000, now - 399_000, now - 398_000]))
    records = _Records()
    lag_log = logging.getLogger("cwconsumer.lag")
    lag_log.addHandler(records)
    lag_log.setLevel(logging.INFO)
    try:
        m.refresh([st], buffer_events=3, buffer_bytes=99, rates={"GetLogEvents": 5.0}, healthy=True, now_ms=now)  # fmt: skip
        g = m.groups["/g"]
        assert (g.lag_s, g.ingestion_lag_s, g.behind_s, g.worst_stream) == (30.0, 400.0, 29.0, "s")
        text = m.render().decode()
        assert 'cwconsumer_group_ingestion_lag_seconds{group="/g"} 400.0' in text
        assert 'cwconsumer_streams{state="reading"} 1.0' in text
        assert "cwconsumer_buffer_events 3.0" in text
        warning = records.records[-1]
        assert warning.levelno == logging.WARNING and warning.getMessage().startswith(
            "checkpoint lag above 5m"
        )
        assert warning.__dict__["group"] == "/g" and warning.__dict__["stream"] == "s"
        count = len(records.records)
        m.refresh([st], buffer_events=3, buffer_bytes=99, rates={}, healthy=True, now_ms=now + 1000)  # fmt: skip
        assert len(records.records) == count, "no repeat while the level holds"

        f.confirmed([_chunk(key, [None] * 3)])
        st.pending_events = 0
        st.committed = Checkpoint(last_ts=now - 1_000)
        m.refresh([st], buffer_events=0, buffer_bytes=0, rates={}, healthy=True, now_ms=now + 2000)  # fmt: skip
        assert m.groups["/g"].ingestion_lag_s == 0.0
        info = records.records[-1]
        assert info.levelno == logging.INFO and info.getMessage() == "checkpoint lag back under 5m"

        st.state = State.DELETED
        m.refresh([st], buffer_events=0, buffer_bytes=0, rates={}, healthy=False, now_ms=now + 3000)  # fmt: skip
        text = m.render().decode()
        assert 'group="/g"' not in text.split("cwconsumer_group_lag_seconds", 1)[1].split("# HELP")[0]  # fmt: skip
        assert "cwconsumer_healthy 0.0" in text
    finally:
        lag_log.removeHandler(records)


def test_lag_watch_levels_and_hysteresis() -> None:
    from cwconsumer.metrics import GroupLag

    watch = LagWatch((60.0, 300.0))
    records = _Records()
    lag_log = logging.getLogger("cwconsumer.lag")
    lag_log.addHandler(records)
    lag_log.setLevel(logging.INFO)
    try:
        for lag in (10, 61, 65, 40, 29, 400, 200, 149, 0):
            watch.update({"/g": GroupLag(None, float(lag), 0.0, "s")})
        assert [r.getMessage() for r in records.records] == [
            "checkpoint lag above 1m",  # 61
            "checkpoint lag back under 1m",  # 29 (< half of 60)
            "checkpoint lag above 5m",  # 400
            "checkpoint lag back under 5m",  # 149 (< half of 300; level 1m remains)
            "checkpoint lag back under 1m",  # 0
        ]
    finally:
        lag_log.removeHandler(records)


def test_emf_writer_sends_counter_increases_and_gauges() -> None:
    m = Metrics()
    m.events_read.labels("/g").inc(10)
    m.events_shipped.labels("/g").inc(7)
    m.events_failed.labels("/g").inc(1)
    key = StreamKey("/g", "s")
    st = _stream(key, state=State.TAILING, committed=Checkpoint(last_ts=9_000))
    m.refresh([st], buffer_events=3, buffer_bytes=10, rates={}, healthy=True, now_ms=10_000)
    out = io.StringIO()
    writer = EmfWriter(m, out)
    writer.emit(now_ms=10_000)
    m.events_shipped.labels("/g").inc(5)
    writer.emit(now_ms=70_000)
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(docs) == 4
    first, first_group, second, second_group = docs
    assert first["_aws"]["Timestamp"] == 10_000
    names = [x["Name"] for x in first["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == [
        "EventsRead", "EventsShipped", "EventsRetried", "EventsDeadLettered",
        "PendingEvents", "Healthy", "Standby", "DeliveryStalled",
    ]  # fmt: skip
    assert first["DeliveryStalled"] == 0
    assert (first["EventsRead"], first["EventsShipped"], first["EventsDeadLettered"]) == (10, 7, 1)
    assert (first["PendingEvents"], first["Healthy"], first["Service"]) == (3, 1, "cwconsumer")
    assert (first_group["LogGroup"], first_group["EventsShipped"]) == ("/g", 7)
    assert first_group["LagSeconds"] == 1.0 and first_group["IngestionLagSeconds"] == 0
    assert (second["EventsRead"], second["EventsShipped"]) == (0, 5)
    assert second_group["EventsShipped"] == 5


async def test_reporter_refreshes_periodically_and_writes_a_last_emf_line() -> None:
    import anyio

    m = Metrics()
    calls: list[float] = []
    out = io.StringIO()
    reporter = Reporter(
        m, lambda: calls.append(time.monotonic()), emf=True,
        refresh_interval_s=0.01, emf_interval_s=3600, out=out,
    )  # fmt: skip
    with anyio.move_on_after(0.2):
        await reporter.run()
    assert len(calls) >= 3
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and orjson.loads(lines[0])["Service"] == "cwconsumer"
