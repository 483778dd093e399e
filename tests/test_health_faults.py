"""Health that must not lie (issue 14, items 9 and 14), and the sink's answer
read with a bound (item 8). Fast: in process, real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import argparse
import contextlib
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from cwconsumer.aws import LogsClient
from cwconsumer.commands import EXIT_OK, healthcheck
from cwconsumer.errors import AwsError, SinkError
from cwconsumer.health import Health
from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome
from cwconsumer.sinks.formats import NDJSON
from cwconsumer.sinks.http import ANSWER_MAX_BYTES, HttpOptions, HttpPoster, HttpSink
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.harness import free_port, run_env

# -- item 9: CloudWatch failing for longer than the stall timeout -------------------


def test_reads_failing_for_longer_than_the_stall_timeout_are_unhealthy() -> None:
    """Old code: nothing read, so nothing pending, so the stall rule never
    fired and /healthz said 200 while every read failed."""
    health = Health(stall_timeout_s=0.3)
    health.started = True
    health.aws_call("GetLogEvents", "ok")
    health.aws_call("GetLogEvents", "error")
    assert health.verdict(0)[0]  # one failure is no outage
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        health.aws_call("GetLogEvents", "error")
        health.aws_call("DescribeLogStreams", "ok")
        time.sleep(0.02)
    healthy, body = health.verdict(0)
    assert not healthy
    assert "GetLogEvents" in str(body["reasons"]) and "DescribeLogStreams" not in str(
        body["reasons"]
    )
    health.aws_call("GetLogEvents", "ok")
    assert health.verdict(0)[0]


def test_an_operation_that_failed_once_and_was_not_called_since_does_not_stick() -> None:
    health = Health(stall_timeout_s=0.1)
    health.started = True
    health.aws_call("DescribeLogGroups", "throttled")
    time.sleep(0.25)
    assert health.verdict(0)[0]


def test_calls_hanging_past_the_stall_timeout_keep_the_operation_unhealthy() -> None:
    """Measured by ``bench/faults_net.py cloudwatch-down`` (truncated 200s,
    then a proxy that never answers): old code forgot the failures of an
    operation whose calls were all still waiting ("not called since"), so
    /healthz turned 200 while CloudWatch was unreachable, and the next
    failure started the count again from zero."""
    health = Health(stall_timeout_s=0.3)
    health.started = True
    health.aws_call("GetLogEvents", "error")  # a garbled answer...
    first_failure = health.aws_failing["GetLogEvents"][0]
    hung = health.aws_call_started("GetLogEvents")  # ...then a call that hangs
    time.sleep(0.45)
    healthy, body = health.verdict(0)
    assert not healthy, "a hanging call was taken for a recovered operation"
    assert "GetLogEvents" in str(body["reasons"])
    health.aws_call_ended("GetLogEvents", hung)
    health.aws_call("GetLogEvents", "error")  # it timed out: the streak goes on
    assert not health.verdict(0)[0]
    assert health.aws_failing["GetLogEvents"][0] == first_failure, "the count started again"
    health.aws_call("GetLogEvents", "ok")
    assert health.verdict(0)[0]


def test_a_call_without_an_answer_past_the_stall_timeout_is_unhealthy() -> None:
    """The first call after a success hangs (CWC_AWS_TIMEOUT longer than
    CWC_STALL_TIMEOUT): no failure recorded yet, still no answer."""
    health = Health(stall_timeout_s=0.2)
    health.started = True
    health.aws_call("DescribeLogStreams", "ok")
    started = health.aws_call_started("DescribeLogStreams")
    assert health.verdict(0)[0]
    time.sleep(0.3)
    healthy, body = health.verdict(0)
    assert not healthy and "DescribeLogStreams: no answer" in str(body["reasons"])
    health.aws_call_ended("DescribeLogStreams", started)
    health.aws_call("DescribeLogStreams", "ok")
    assert health.verdict(0)[0]
    assert not health.aws_in_flight, "a finished call left its start behind"


async def test_the_client_reports_every_call_in_flight_until_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LogsClient tells health when a call leaves and when it ends, whatever
    ends it (an answer, an error, the timeout)."""
    health = Health(stall_timeout_s=0.5)
    health.started = True
    async with FakeCloudWatchLogs(seed=1) as fake:
        fake.put("/h", "s", [(1_000, "x")])
        for k, v in fake.client_env().items():
            monkeypatch.setenv(k, v)
        async with LogsClient(
            fake.region,
            get_rate=100,
            describe_rate=100,
            timeout_s=1.0,
            observe=health.aws_call,
            calls=health,
        ) as logs:
            await logs.get_log_events("/h", "s", None, None)
            assert health.verdict(0)[0] and not health.aws_in_flight
            fake.garble_next(1)
            with pytest.raises(AwsError):
                await logs.get_log_events("/h", "s", None, None)
            fake.set_latency(30.0, operation="GetLogEvents")  # a proxy that never answers
            async with anyio.create_task_group() as tg:
                tg.start_soon(_quietly, logs.get_log_events("/h", "s", None, None))
                await anyio.sleep(0.8)  # past the stall timeout, before the call's timeout
                healthy, body = health.verdict(0)
                assert not healthy and "GetLogEvents" in str(body["reasons"]), body
                assert health.aws_in_flight.get("GetLogEvents")
            assert not health.aws_in_flight, "the timed-out call is still counted"
            fake.set_latency(0.0, operation="GetLogEvents")
            await logs.get_log_events("/h", "s", None, None)
            assert health.verdict(0)[0]


async def _quietly(call: Awaitable[object]) -> None:
    with contextlib.suppress(AwsError):
        await call


def test_a_sink_refusing_requests_and_a_failing_commit_are_unhealthy_until_cleared() -> None:
    health = Health(stall_timeout_s=60)
    health.started = True
    health.sink_refusing = "HTTP 404: Not Found"
    healthy, body = health.verdict(0)
    assert not healthy and "HTTP 404" in str(body["reasons"])
    health.sink_refusing = None
    health.store_error = "cannot write cwc.db: database or disk is full"
    healthy, body = health.verdict(0)
    assert not healthy and "disk is full" in str(body["reasons"])
    health.store_error = None
    assert health.verdict(0)[0]


# -- item 14: the healthcheck command and HTTP_PROXY --------------------------------


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200 if self.path.startswith("/healthz") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def healthz_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthcheck_ignores_the_proxy_of_its_environment(
    healthz_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fast tier's proof (in process; the command as a process is the
    next test): with HTTP_PROXY pointing at nothing, the check still reaches
    the loopback /healthz directly."""
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    args = argparse.Namespace(standby_ok=False)
    code = healthcheck.main(args, {"CWC_ADMIN_ADDR": f"127.0.0.1:{healthz_port}"})
    assert code == EXIT_OK, capsys.readouterr().err
    assert '"ok"' in capsys.readouterr().out


@pytest.mark.slow  # starts the command as a process (the fast tier: the test above)
def test_healthcheck_never_goes_through_a_proxy(healthz_port: int) -> None:
    """Old code: urllib honoured HTTP_PROXY (set for the sink or AWS), sent
    the loopback check to the proxy, and the container was reported sick."""

    dead_proxy = f"http://127.0.0.1:{free_port()}"
    env = run_env({}, "http://127.0.0.1:9/", Path("/nonexistent/cwc.db"))
    env.update(
        CWC_ADMIN_ADDR=f"127.0.0.1:{healthz_port}",
        HTTP_PROXY=dead_proxy,
        http_proxy=dead_proxy,
    )
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    done = subprocess.run(
        [sys.executable, "-m", "cwconsumer", "healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"ok"' in done.stdout


# -- item 8: bounded answers ------------------------------------------------------


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _serve(handler: object) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/"


async def test_an_endless_answer_is_cut_at_the_bound_and_retried_not_read_into_memory() -> None:
    """Old code read the whole body: an endless chunked 200 took the process
    to gigabytes within the request timeout. Here a 200 streams 256 MiB;
    the sink reads at most ANSWER_MAX_BYTES and answers RETRY."""
    streamed = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"x" * (1 << 20)
        try:
            for _ in range(256):
                await resp.write(block)
                streamed[0] += len(block)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    runner, url = await _serve(endless)
    poster = HttpPoster(HttpOptions(timeout_s=20.0))
    sink = HttpSink(url, poster, NDJSON)
    try:
        before = _maxrss_mb()
        with pytest.raises(SinkError, match="longer than"):
            await poster.request("POST", url, body=b"{}\n")
        res = await sink.send(OutBatch([b'{"a":1}'], [1]))
        assert res.outcome is Outcome.RETRY and "longer than" in res.detail
        grown = _maxrss_mb() - before
        assert grown < 3 * ANSWER_MAX_BYTES / (1 << 20) + 50, f"RSS grew {grown:.0f} MB"
        assert streamed[0] < 256 << 20  # the server was cut off, not read to the end
    finally:
        await sink.aclose()
        await runner.cleanup()


async def test_an_answer_within_the_bound_is_read_whole() -> None:
    body = b"y" * (ANSWER_MAX_BYTES - 10)

    async def big(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=400, body=body)

    runner, url = await _serve(big)
    poster = HttpPoster(HttpOptions(timeout_s=20.0))
    try:
        resp = await poster.request("POST", url, body=b"{}\n")
        assert resp.status == 400 and resp.body == body
    finally:
        await poster.aclose()
        await runner.cleanup()
