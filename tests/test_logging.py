"""The consumer's own logs: JSON lines (or text), one line per notable event and
nothing per event, and secrets that never show — not in the logs, not on the
admin endpoints, not in ``status`` or ``check``, also when a sink echoes our
credentials back in its error answers."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from cwconsumer.logs import JsonFormatter, Redactor, TextFormatter
from tests.conftest import Moto, Product, wait_until
from tests.support.fakesinks import RecordingSink

# -- helpers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    return records


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cwconsumer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def msgs(stream: str, n: int) -> list[str]:
    return [f"{stream}|{i:05d}" for i in range(n)]


# -- what is logged ----------------------------------------------------------------


def test_json_lines_one_per_notable_event_and_nothing_per_event(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    moto.group("/g")
    for s in ("a", "b"):
        moto.stream("/g", s)
        moto.put("/g", s, msgs(s, 1500))
    product: Product = make_product(
        moto, sink.url, CWC_LOG_GROUPS="/g", CWC_BATCH_MAX_EVENTS="500"
    ).start()
    wait_until(lambda: len(sink.docs()) >= 3000, 60, "delivery")
    moto.client.delete_log_stream(logGroupName="/g", logStreamName="b")
    wait_until(lambda: "stream deleted" in product.logs(), 30, "the deleted stream noticed")
    sink.set_fault(status=500, times=2, body="upstream down")
    moto.put("/g", "a", ["one more"], ts_ms=int(time.time() * 1000))
    wait_until(lambda: "one more" in {d["message"] for d in sink.docs()}, 30, "retried delivery")
    assert product.terminate() == 0

    records = json_lines(product.logs())
    by_message: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_message.setdefault(r["message"], []).append(r)
    assert by_message["group found"][0]["group"] == "/g"
    assert by_message["streams found"][0]["count"] == 2
    deleted = by_message["stream deleted; no longer polled"][0]
    assert deleted["level"] == "WARNING" and deleted["stream"] == "/g/b"
    failing = by_message["sink delivery failed; retrying"]
    assert failing[0]["status"] == 500 and failing[0]["attempt"] == 1
    assert "upstream down" in failing[0]["detail"]
    # 3,000 events, a handful of lines: nothing is logged per event or per batch.
    assert len(records) < 30, [r["message"] for r in records]
    assert not any("one more" in json.dumps(r) or "a|00001" in json.dumps(r) for r in records)


def test_text_format_for_people(moto: Moto, sink: RecordingSink, make_product: Any) -> None:
    moto.group("/g")
    product: Product = make_product(
        moto, sink.url, CWC_LOG_GROUPS="/g", CWC_LOG_FORMAT="text"
    ).start()
    wait_until(lambda: "group found" in product.logs(), 30, "discovery")
    assert product.terminate() == 0
    lines = product.logs().splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    found = next(line for line in lines if "group found" in line)
    assert " INFO    group found  group=/g" in found


def test_throttling_is_logged_with_the_new_rate(
    start_fakecwl: Any, sink: RecordingSink, make_fake_product: Any
) -> None:
    fake = start_fakecwl()
    fake.put("/g", "a", [(1_795_000_000_000 + i, m) for i, m in enumerate(msgs("a", 50))])
    fake.throttle_next(3, operation="GetLogEvents")
    product: Product = make_fake_product(fake, sink.url, CWC_LOG_GROUPS="/g").start()
    wait_until(lambda: len(sink.docs()) >= 50, 30, "delivery through throttling")
    assert product.terminate() == 0
    throttled = [r for r in json_lines(product.logs()) if r["message"] == "throttled: rate lowered"]
    assert throttled and throttled[0]["level"] == "WARNING"
    assert throttled[0]["operation"] == "GetLogEvents" and throttled[0]["rate_per_s"] == 5.0


def test_checkpoint_lag_crossing_a_threshold_is_logged_both_ways(
    start_fakecwl: Any, sink: RecordingSink, make_fake_product: Any
) -> None:
    fake = start_fakecwl()
    now = int(time.time() * 1000)
    # Events that reached CloudWatch two minutes ago, and a sink that hangs.
    events = [(now - 130_000 + i, m) for i, m in enumerate(msgs("a", 20))]
    fake.put("/g", "a", events, ingestion_time_ms=now - 120_000)
    sink.set_fault(hang_s=60, times=-1)
    port = free_port()
    product: Product = make_fake_product(
        fake, sink.url, CWC_LOG_GROUPS="/g", CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
        CWC_SINK_TIMEOUT="1s", CWC_SHUTDOWN_TIMEOUT="2s",
    ).start()  # fmt: skip

    def logged(message: str) -> bool:
        fetch(port, "/metrics")  # a scrape refreshes the lag figures at once
        return message in product.logs()

    wait_until(lambda: logged("checkpoint lag above 1m"), 30, "the lag warning")
    sink.clear_faults()
    wait_until(lambda: logged("checkpoint lag back under 1m"), 60, "the all-clear")
    assert product.terminate() == 0
    records = [r for r in json_lines(product.logs()) if r["logger"] == "cwconsumer.lag"]
    up, down = records[0], records[-1]
    assert (up["level"], up["group"], up["stream"], up["threshold_s"]) == ("WARNING", "/g", "a", 60)
    assert 115 <= up["lag_s"] < 600
    assert (down["level"], down["message"], down["lag_s"]) == (
        "INFO",
        "checkpoint lag back under 1m",
        0,
    )
    assert len(records) == 2


# -- secrets -----------------------------------------------------------------------


def _forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), json.dumps(secret)[1:-1]]


def _assert_clean(text: str, where: str, words: list[str], fragments: list[str]) -> None:
    for word in words:
        for form in _forms(word):
            assert form not in text, f"{where} shows a secret: {form[:4]}…"
    for piece in fragments:
        assert piece not in text, f"{where} shows part of a secret: {piece[:4]}…"


def _surfaces(product: Product, port: int) -> dict[str, str]:
    out = {name: fetch(port, path)[1] for name, path in (
        ("/healthz", "/healthz"), ("/stats", "/stats"), ("/metrics", "/metrics"),
    )}  # fmt: skip
    for args in (("status",), ("status", "--json", "--streams"), ("check",)):
        done = cli(product.env, *args)
        out[" ".join(args)] = done.stdout + done.stderr
    return out


def test_secrets_never_appear_even_when_the_sink_echoes_them(moto: Moto, make_product: Any) -> None:
    moto.group("/g")
    moto.stream("/g", "s")
    moto.put("/g", "s", msgs("s", 30))
    token = "tok-" + secrets.token_hex(16)
    api_key = "key-" + secrets.token_hex(12)
    aws_secret = "aws/" + secrets.token_urlsafe(24)
    password = "p@ss:" + secrets.token_hex(10)
    fragments = [s[i : i + 10] for s in (token, api_key, aws_secret) for i in range(len(s) - 9)]

    # 1. A bearer token and a secret header; the sink fails, then refuses
    #    them, each time echoing the request's headers back in its answer.
    with RecordingSink(token="the-right-one-1234") as sink:
        echo = f"You sent Authorization: Bearer {token}, X-Api-Key: {api_key}"
        sink.set_fault(status=500, times=1, body=f"internal error. {echo}")
        sink.set_fault(status=401, times=-1, body=f"denied. {echo} password={password}")
        port = free_port()
        product: Product = make_product(
            moto, sink.url, CWC_LOG_GROUPS="/g", CWC_SINK_TOKEN=token,
            CWC_SINK_HEADERS=json.dumps({"X-Api-Key": api_key}),
            CWC_ADMIN_ADDR=f"127.0.0.1:{port}", CWC_SHUTDOWN_TIMEOUT="1s",
            AWS_SECRET_ACCESS_KEY=aws_secret,
        ).start()  # fmt: skip
        wait_until(lambda: "credentials" in fetch(port, "/healthz")[1], 30, "503 credentials")
        surfaces = _surfaces(product, port)
        assert "sink rejects the credentials: HTTP 401" in surfaces["/healthz"]
        assert "X-Api-Key: ***" in surfaces["/healthz"]
        assert product.terminate() == 0
        surfaces["stderr"] = product.logs()
        assert "sink rejects the credentials" in surfaces["stderr"]
        assert "internal error. You sent Authorization: ***" in surfaces["stderr"]
        for where, text in surfaces.items():
            _assert_clean(text, where, [token, api_key, aws_secret, password], fragments)

    # 2. user:password in the URL (Basic auth), echoed back the same way.
    basic = base64.b64encode(f"ops:{password}".encode()).decode()
    with RecordingSink(username="ops", password="the-right-one") as sink:
        sink.set_fault(status=401, times=-1, body=f"bad Authorization: Basic {basic} ({password})")
        port = free_port()
        url = sink.url.replace("http://", f"http://ops:{quote(password, safe='')}@")
        product = make_product(
            moto, url, CWC_LOG_GROUPS="/g", CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
            CWC_SHUTDOWN_TIMEOUT="1s", AWS_SECRET_ACCESS_KEY=aws_secret,
        ).start()  # fmt: skip
        wait_until(lambda: "credentials" in fetch(port, "/healthz")[1], 30, "503 credentials")
        surfaces = _surfaces(product, port)
        assert product.terminate() == 0
        surfaces["stderr"] = product.logs()
        assert '"sink_password":"***"' in surfaces["stderr"]
        for where, text in surfaces.items():
            _assert_clean(text, where, [password, basic, aws_secret], [])


def test_redactor_masks_known_secrets_in_every_form_and_echoed_credentials() -> None:
    r = Redactor()
    r.add(['s3cr"t/pw', "tok", None])  # "tok" is too short to mask safely
    assert r.scrub('password is s3cr"t/pw') == "password is ***"
    assert r.scrub('{"x": "s3cr\\"t/pw"}') == '{"x": "***"}'
    assert r.scrub("url ?p=s3cr%22t%2Fpw") == "url ?p=***"
    assert r.scrub("tok stays") == "tok stays"
    assert r.scrub("Authorization: Bearer 9f8e7d6c5b4a") == "Authorization: Bearer ***"
    assert r.scrub("Basic dXNlcjpwYXNzd29yZA==") == "Basic ***"
    assert r.scrub("Splunk 1234-abcd-5678") == "Splunk ***"
    assert r.scrub('{"password": "hunter22", "user": "bob"}') == '{"password": "***", "user": "bob"}'  # fmt: skip
    assert r.scrub("api_key=abcdef123&page=2") == "api_key=***&page=2"
    # Our own words stay readable.
    for text in (
        "Basic authentication failed",
        "Token Rejected",
        "check CWC_SINK_TOKEN / the URL's user:password",
        '"sink_token":"***"',
        "The specified nextToken is invalid.",
    ):
        assert r.scrub(text) == text


def test_formatters_mask_messages_extras_and_tracebacks() -> None:
    r = Redactor()
    r.add(["hunter2-hunter2"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(r))
    logger = logging.getLogger("cwconsumer.test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("auth with %s", "hunter2-hunter2", extra={"nested": {"pw": "hunter2-hunter2"}})  # fmt: skip
        try:
            raise RuntimeError("login hunter2-hunter2 refused")
        except RuntimeError:
            logger.exception("failed")
        handler.setFormatter(TextFormatter(r))
        logger.error("text %s", "hunter2-hunter2", extra={"detail": "x hunter2-hunter2"})
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter2" not in out
    first, second = (json.loads(line) for line in out.splitlines()[:2])
    assert first["message"] == "auth with ***" and first["nested"] == {"pw": "***"}
    assert "RuntimeError: login *** refused" in second["error"]
    assert "text ***  detail=x ***" in out
