"""The HTTP poster, the ndjson/json sinks and the factory, against real local servers."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
import pytest

from cwconsumer import __version__
from cwconsumer.errors import ConfigError
from cwconsumer.model import OutBatch
from cwconsumer.sinks.base import Outcome, Sink
from cwconsumer.sinks.elasticsearch import ElasticsearchSink
from cwconsumer.sinks.factory import build_sink, http_options
from cwconsumer.sinks.formats import dumps_each, join_json_array, join_ndjson
from cwconsumer.sinks.http import (
    _GZIP_IN_THREAD_BYTES,
    HttpSink,
    Response,
    classify_response,
    parse_retry_after,
)
from cwconsumer.sinks.loki import LokiSink
from cwconsumer.sinks.splunk import SplunkHecSink
from tests.support.fakesinks import (
    PlainSecret,
    RecordingSink,
    SinkTestSettings,
    make_self_signed,
    sample_batch,
    server_ssl_context,
)

TOKEN = "tok-3f9c2b7d1e"
PASSWORD = "pa55-w0rd-x9"


@pytest.fixture
def fake() -> Iterator[RecordingSink]:
    with RecordingSink() as server:
        yield server


def make(sinks: list[Sink], url: str, **overrides: Any) -> Sink:
    sink = build_sink(SinkTestSettings(sink_url=url, **overrides))
    sinks.append(sink)
    return sink


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- encoding (pure) -----------------------------------------------------------


def test_ndjson_and_json_array_encoding() -> None:
    batch = sample_batch(3)
    lines, bad = dumps_each(batch.docs)
    assert bad == {}
    body = join_ndjson(lines)
    assert body.endswith(b"\n") and body.count(b"\n") == 3
    assert join_json_array(lines).startswith(b"[{") and join_json_array(lines).endswith(b"}]")
    assert join_ndjson([]) == b""


def test_unencodable_document_is_reported_by_index() -> None:
    docs = [{"a": 1}, {"big": 2**70}, {"c": 3}]
    lines, bad = dumps_each(docs)
    assert list(bad) == [1]
    assert lines[0] == b'{"a":1}' and lines[2] == b'{"c":3}'


# -- classification (pure) -----------------------------------------------------


def answer(status: int, body: bytes = b"", **headers: str) -> Response:
    return Response(status, headers, body)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (204, Outcome.OK),
        (302, Outcome.RETRY),
        (400, Outcome.POISON),
        (401, Outcome.AUTH),
        (403, Outcome.AUTH),
        (404, Outcome.POISON),
        (408, Outcome.RETRY),
        (413, Outcome.TOO_LARGE),
        (422, Outcome.POISON),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    result = classify_response(answer(status, b"why"))
    assert result.outcome is outcome
    assert result.status == status


def test_poison_detail_has_status_and_start_of_body() -> None:
    result = classify_response(answer(400, b"bad field\n" + b"x" * 2000))
    assert result.detail.startswith("HTTP 400: bad field x")
    assert len(result.detail) < 520


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    now = time.time()
    date = formatdate(now + 30, usegmt=True)
    parsed = parse_retry_after(date, now_s=now)
    assert parsed is not None and 28 <= parsed <= 31
    assert parse_retry_after(formatdate(now - 60, usegmt=True), now_s=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("99999999") == 3600.0
    result = classify_response(answer(429, b"slow down", **{"Retry-After": "7"}))
    assert (result.outcome, result.retry_after_s) == (Outcome.RETRY, 7.0)


# -- plain sinks against a recording server ------------------------------------


async def test_ndjson_round_trip(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url + "/ingest")
    batch = sample_batch(5)
    result = await sink.send(batch)
    assert result.outcome is Outcome.OK and result.status == 200
    assert fake.docs() == batch.docs
    (req,) = fake.requests()
    assert (req.method, req.path) == ("POST", "/ingest")
    assert req.header("Content-Type") == "application/x-ndjson"
    assert req.header("User-Agent") == f"cwconsumer/{__version__}"
    assert req.header("Authorization") is None
    assert req.body.endswith(b"\n")


async def test_json_array_round_trip(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url, sink_format="json")
    batch = sample_batch(3)
    assert (await sink.send(batch)).outcome is Outcome.OK
    (req,) = fake.requests()
    assert req.header("Content-Type") == "application/json"
    assert isinstance(req.json(), list)
    assert fake.docs() == batch.docs


async def test_gzip_round_trip(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url, sink_gzip=True, sink_gzip_level=9)
    batch = sample_batch(200)
    assert (await sink.send(batch)).outcome is Outcome.OK
    (req,) = fake.requests()
    assert req.gzip and req.header("Content-Encoding") == "gzip"
    assert req.wire_bytes < len(req.body)
    assert fake.docs() == batch.docs


async def test_large_gzip_body_is_compressed_off_the_loop(
    fake: RecordingSink, sinks: list[Sink], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where gzip ran, seen from the standard library's side (the real compress still runs).
    compressed: list[tuple[int, threading.Thread]] = []
    real_compress = gzip.compress

    def compress_and_note_the_thread(data: bytes, *args: Any, **kwargs: Any) -> bytes:
        compressed.append((len(data), threading.current_thread()))
        return real_compress(data, *args, **kwargs)

    monkeypatch.setattr(gzip, "compress", compress_and_note_the_thread)
    sink = make(sinks, fake.url, sink_gzip=True)
    small, large = sample_batch(2), sample_batch(3000)
    assert (await sink.send(small)).outcome is Outcome.OK
    assert (await sink.send(large)).outcome is Outcome.OK
    assert fake.docs() == small.docs + large.docs
    loop_thread = threading.current_thread()
    (small_bytes, small_thread), (large_bytes, large_thread) = compressed
    assert small_bytes < _GZIP_IN_THREAD_BYTES <= large_bytes
    assert small_thread is loop_thread  # a small body is not worth a thread hop
    assert large_thread is not loop_thread


async def test_extra_headers_reach_the_server(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url, sink_headers=(("X-Scope-OrgID", "team-a"), ("X-Env", "prod")))
    assert (await sink.send(sample_batch(1))).outcome is Outcome.OK
    (req,) = fake.requests()
    assert req.header("X-Scope-OrgID") == "team-a" and req.header("X-Env") == "prod"


async def test_empty_batch_sends_nothing(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url)
    assert (await sink.send(OutBatch([], []))).outcome is Outcome.OK
    assert fake.requests() == []


async def test_concurrent_sends_all_arrive(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url, sink_concurrency=2)
    batches = [sample_batch(10, start_ms=1_732_183_200_000 + k * 1000) for k in range(6)]
    outcomes: list[Outcome] = []

    async def one(batch: OutBatch) -> None:
        outcomes.append((await sink.send(batch)).outcome)

    async with anyio.create_task_group() as tg:
        for batch in batches:
            tg.start_soon(one, batch)
    assert outcomes == [Outcome.OK] * 6
    assert len(fake.docs()) == 60


# -- authentication and secrets -------------------------------------------------


async def test_basic_auth_reaches_server_and_stays_out_of_details(sinks: list[Sink]) -> None:
    with RecordingSink(username="shipper", password=PASSWORD) as fake:
        good = make(sinks, fake.url, sink_username="shipper", sink_password=PlainSecret(PASSWORD))
        assert (await good.send(sample_batch(2))).outcome is Outcome.OK
        assert len(fake.docs()) == 2
        assert (fake.requests()[0].header("Authorization") or "").startswith("Basic ")

        wrong = make(
            sinks, fake.url, sink_username="shipper", sink_password=PlainSecret("nope-123")
        )
        refused = await wrong.send(sample_batch(1))
        assert refused.outcome is Outcome.AUTH and refused.status == 401
        assert "nope-123" not in refused.detail

        fake.set_fault(400, body=f"rejected request with password {PASSWORD} and more")
        echoed = await good.send(sample_batch(1))
        assert echoed.outcome is Outcome.POISON
        assert PASSWORD not in echoed.detail and "***" in echoed.detail


async def test_bearer_token_reaches_server_and_never_appears_in_details(
    sinks: list[Sink],
) -> None:
    with RecordingSink(token=TOKEN) as fake:
        sink = make(sinks, fake.url, sink_token=PlainSecret(TOKEN))
        assert (await sink.send(sample_batch(2))).outcome is Outcome.OK
        assert fake.requests()[0].header("Authorization") == f"Bearer {TOKEN}"

        fake.set_fault(400, body=f"invalid: Authorization: Bearer {TOKEN}")
        echoed = await sink.send(sample_batch(1))
        assert echoed.outcome is Outcome.POISON
        assert TOKEN not in echoed.detail

        fake.set_fault(503, body=f"upstream saw {TOKEN}")
        busy = await sink.send(sample_batch(1))
        assert busy.outcome is Outcome.RETRY and TOKEN not in busy.detail

        refused = await make(sinks, fake.url).send(sample_batch(1))
        assert refused.outcome is Outcome.AUTH and refused.status == 401


def test_options_repr_hides_secrets() -> None:
    settings = SinkTestSettings(
        sink_url="https://logs.example",
        sink_token=PlainSecret(TOKEN),
        sink_headers=(("X-Api-Key", "k-77aa88"),),
    )
    text = repr(http_options(settings))
    assert TOKEN not in text and "k-77aa88" not in text


# -- failures of the server -------------------------------------------------------


async def test_hanging_server_is_retried_within_the_timeout(
    fake: RecordingSink, sinks: list[Sink]
) -> None:
    sink = make(sinks, fake.url, sink_timeout_s=0.5)
    fake.set_fault(hang_s=30)
    with anyio.fail_after(5):  # guard: the test must not hang if the timeout were missing
        result = await sink.send(sample_batch(2))
    assert result.outcome is Outcome.RETRY and result.status is None
    assert "no answer within 0.5 s" in result.detail
    assert fake.docs() == []
    assert (await sink.send(sample_batch(2))).outcome is Outcome.OK


async def test_connection_refused_is_retry(sinks: list[Sink]) -> None:
    sink = make(sinks, f"http://127.0.0.1:{free_port()}/")
    result = await sink.send(sample_batch(1))
    assert result.outcome is Outcome.RETRY and result.status is None
    assert "cannot connect" in result.detail


async def test_unknown_host_is_retry(sinks: list[Sink]) -> None:
    sink = make(sinks, "http://no-such-host.invalid/", sink_timeout_s=2)
    result = await sink.send(sample_batch(1))
    assert result.outcome is Outcome.RETRY


async def test_connection_reset_is_retry(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url)
    fake.set_fault(reset=True)
    result = await sink.send(sample_batch(1))
    assert result.outcome is Outcome.RETRY
    assert (await sink.send(sample_batch(1))).outcome is Outcome.OK


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(413, Outcome.TOO_LARGE), (401, Outcome.AUTH), (400, Outcome.POISON), (502, Outcome.RETRY)],
)
async def test_status_answers(
    fake: RecordingSink, sinks: list[Sink], status: int, outcome: Outcome
) -> None:
    sink = make(sinks, fake.url)
    fake.set_fault(status, body="refused for a reason")
    result = await sink.send(sample_batch(2))
    assert (result.outcome, result.status) == (outcome, status)
    assert result.detail == f"HTTP {status}: refused for a reason"
    assert fake.docs() == []


async def test_retry_after_from_server(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url)
    fake.set_fault(429, retry_after=12)
    seconds = await sink.send(sample_batch(1))
    assert (seconds.outcome, seconds.retry_after_s) == (Outcome.RETRY, 12.0)
    fake.set_fault(503, retry_after=formatdate(time.time() + 120, usegmt=True))
    dated = await sink.send(sample_batch(1))
    assert dated.outcome is Outcome.RETRY
    assert dated.retry_after_s is not None and 100 < dated.retry_after_s <= 121


async def test_redirect_is_not_followed(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url)
    fake.set_fault(301, body="moved")
    result = await sink.send(sample_batch(1))
    assert result.outcome is Outcome.RETRY and "redirect" in result.detail
    assert len(fake.requests()) == 1


async def test_body_above_the_limit_is_not_sent(fake: RecordingSink, sinks: list[Sink]) -> None:
    sink = make(sinks, fake.url, sink_max_request_bytes=2000)
    result = await sink.send(sample_batch(50))
    assert result.outcome is Outcome.TOO_LARGE and result.status is None
    assert "not sent" in result.detail
    assert fake.requests() == []
    assert (await sink.send(sample_batch(2))).outcome is Outcome.OK


async def test_unencodable_document_is_poison_and_nothing_sent(
    fake: RecordingSink, sinks: list[Sink]
) -> None:
    sink = make(sinks, fake.url)
    batch = sample_batch(3)
    batch.docs[1]["huge"] = 2**80
    result = await sink.send(batch)
    assert result.outcome is Outcome.RETRY
    assert result.items == [Outcome.RETRY, Outcome.POISON, Outcome.RETRY]
    assert "cannot be encoded" in result.item_detail[1]
    assert fake.requests() == []


async def test_closed_sink_answers_retry(fake: RecordingSink) -> None:
    sink = build_sink(SinkTestSettings(sink_url=fake.url))
    assert (await sink.send(sample_batch(1))).outcome is Outcome.OK
    await sink.aclose()
    await sink.aclose()
    result = await sink.send(sample_batch(1))
    assert result.outcome is Outcome.RETRY and "closed" in result.detail


# -- TLS -------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    files = make_self_signed(tmp_path)
    if files is None:
        pytest.skip("neither the cryptography package nor the openssl CLI is available")
    return files


async def test_private_ca_file_is_trusted(tls_files: tuple[Path, Path], sinks: list[Sink]) -> None:
    cert, key = tls_files
    with RecordingSink(ssl_context=server_ssl_context(cert, key)) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        trusting = make(sinks, fake.url, sink_ca_file=str(cert))
        assert (await trusting.send(sample_batch(2))).outcome is Outcome.OK
        assert len(fake.docs()) == 2

        default = make(sinks, fake.url)
        refused = await default.send(sample_batch(1))
        assert refused.outcome is Outcome.RETRY
        assert "certificate" in refused.detail.lower()
        ok, why = await default.probe()
        assert not ok and "certificate" in why.lower()


def test_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError) as info:
        build_sink(SinkTestSettings(sink_url="https://x.example", sink_ca_file=str(bad)))
    assert "CWC_SINK_CA_FILE" in str(info.value)


def test_ssl_context_verifies(tls_files: tuple[Path, Path]) -> None:
    from cwconsumer.sinks.http import make_ssl_context

    # No CA file: aiohttp's own default, which verifies certificates and names
    # (test_private_ca_file_is_trusted: it refuses a certificate it does not know).
    assert make_ssl_context(None) is True
    context = make_ssl_context(str(tls_files[0]))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


# -- probe -------------------------------------------------------------------------


async def test_probe(fake: RecordingSink, sinks: list[Sink]) -> None:
    ok, why = await make(sinks, fake.url).probe()
    assert ok and "HTTP 200" in why
    fake.set_fault(405)
    ok, why = await make(sinks, fake.url).probe()
    assert ok and "405" in why
    fake.set_fault(401)
    ok, why = await make(sinks, fake.url).probe()
    assert not ok and "credentials" in why
    fake.set_fault(503)
    ok, _ = await make(sinks, fake.url).probe()
    assert not ok
    ok, why = await make(sinks, f"http://127.0.0.1:{free_port()}").probe()
    assert not ok and "cannot connect" in why


# -- factory -------------------------------------------------------------------------


def test_factory_builds_each_format() -> None:
    url = "https://sink.example:8443"
    token = PlainSecret(TOKEN)
    kinds = {
        "ndjson": HttpSink,
        "json": HttpSink,
        "elasticsearch": ElasticsearchSink,
        "splunk-hec": SplunkHecSink,
        "loki": LokiSink,
    }
    for fmt, cls in kinds.items():
        sink = build_sink(SinkTestSettings(sink_url=url, sink_format=fmt, sink_token=token))
        assert isinstance(sink, cls)
        assert sink.name == fmt


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"sink_format": "syslog"}, "CWC_SINK_FORMAT"),
        ({"sink_format": "splunk-hec"}, "CWC_SINK_TOKEN"),
        ({"sink_token": PlainSecret(TOKEN), "sink_username": "u"}, "CWC_SINK_TOKEN"),
        ({"sink_format": "elasticsearch", "sink_index": "logs-%Q"}, "CWC_SINK_INDEX"),
    ],
)
def test_factory_refuses_settings_that_cannot_work(
    overrides: dict[str, Any], variable: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_sink(SinkTestSettings(sink_url="https://sink.example", **overrides))
    assert info.value.problems[0].startswith(variable)


async def test_factory_with_the_real_config(
    fake: RecordingSink, tmp_path: Path, sinks: list[Sink]
) -> None:
    from cwconsumer.config import load_config

    url = fake.url.replace("://", f"://shipper:{PASSWORD}@") + "/in"
    env = {
        "CWC_LOG_GROUPS": "/aws/lambda/orders",
        "CWC_SINK_URL": url,
        "CWC_SINK_GZIP": "true",
        "CWC_DB_PATH": str(tmp_path / "state.db"),
        "AWS_REGION": "us-east-1",
    }
    sink = build_sink(load_config(env))
    sinks.append(sink)
    assert (await sink.send(sample_batch(2))).outcome is Outcome.OK
    (req,) = fake.requests()
    assert req.path == "/in" and req.gzip
    assert (req.header("Authorization") or "").startswith("Basic ")
    assert fake.docs() == sample_batch(2).docs
