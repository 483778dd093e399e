"""Secrets in the sink URL's query string (issue 14, item 14): a signed URL
(``?signature=``, ``?sig=``, ``?key=``, ``?api_key=``, ``?token=``) must not
reach logs, ``/healthz`` or ``/stats`` through an error text. One pattern
decides which names are sensitive; every query value of the sink URL is
treated as secret whatever its name."""

from __future__ import annotations

import re
from pathlib import Path

from cwconsumer import config as config_module
from cwconsumer import logs, sinkconfig, variables
from cwconsumer.config import load_config
from cwconsumer.model import OutBatch
from cwconsumer.secrets import SENSITIVE_NAME, SENSITIVE_WORDS, url_secrets
from cwconsumer.sinks import http
from cwconsumer.sinks.base import Outcome
from cwconsumer.sinks.factory import build_sink, http_options
from tests.support.harness import free_port

SIGNED = {
    "signature": "c2lnbmF0dXJlLXZhbHVl",
    "sig": "Zm9vYmFyYmF6cXV4",
    "key": "AKIAEXAMPLEKEY77",
    "api_key": "apikey-0123456789",
    "token": "tok_9f8e7d6c5b4a",
    "X-Amz-Credential": "AKIA/20261206/us-east-1/s3/aws4_request",
    "pipeline": "orders-pipeline-7",  # no sensitive name: still masked
}


def signed_url(port: int) -> str:
    query = "&".join(f"{k}={v}" for k, v in SIGNED.items())
    return f"http://127.0.0.1:{port}/ingest?{query}"


def test_one_sensitive_name_pattern_is_used_everywhere() -> None:
    for reading in (config_module, sinkconfig, variables):  # headers: secrets.header_is_secret
        assert not hasattr(reading, "_SENSITIVE")
    assert not hasattr(http, "_SECRET_HEADER")
    assert not hasattr(logs, "_SENSITIVE_HEADER")
    for name in ("Authorization", "X-Api-Key", "X-Auth-Token", "Cookie", "X-Signature"):
        assert SENSITIVE_NAME.search(name), name


def test_every_query_value_is_a_secret() -> None:
    found = url_secrets(signed_url(80) + "&v=1&fmt=json")
    for value in SIGNED.values():
        assert value in found
    assert "json" not in found and "1" not in found  # too short to mask in every text


async def test_a_sink_error_names_the_url_without_its_query_values(tmp_path: Path) -> None:
    """Old code: ``POST http://...?sig=...: cannot connect`` carried the
    signature into the log, /healthz and /stats."""
    url = signed_url(free_port())  # nothing listens there
    cfg = load_config(
        {
            "CWC_LOG_GROUPS": "/g",
            "CWC_SINK_URL": url,
            "CWC_DB_PATH": str(tmp_path / "cwc.db"),
            "AWS_REGION": "us-east-1",
            "CWC_SINK_TIMEOUT": "2s",
        }
    )
    sink = build_sink(cfg)
    try:
        res = await sink.send(OutBatch([b'{"a":1}'], [1]))
    finally:
        await sink.aclose()
    assert res.outcome is Outcome.RETRY
    assert "127.0.0.1" in res.detail
    for value in SIGNED.values():
        assert value not in res.detail, res.detail
    # The logs' redactor (also used by /healthz and /stats) masks them too.
    redactor = logs.Redactor()
    redactor.add(logs.secrets_of(cfg))
    text = redactor.scrub(f"sink error: POST {url}: timed out")
    for value in SIGNED.values():
        assert value not in text, text
    assert re.search(r"pipeline=\*\*\*", text)
    assert str(cfg.redacted()["sink_url"]).count("***") == len(SIGNED)


def test_a_vendor_api_key_header_is_masked_whatever_its_name() -> None:
    """Honeycomb's key travels in ``x-honeycomb-team``, a name no pattern
    lists: a header value that long is a secret in the shown configuration,
    the log redactor's list and the sink's error texts."""
    key = "hcaik_01j9examplekey0000000000"
    cfg = load_config(
        {
            "CWC_LOG_GROUPS": "/g",
            "CWC_SINK_URL": "http://127.0.0.1:1/",
            "CWC_SINK_FORMAT": "otlp",
            "AWS_REGION": "us-east-1",
            "CWC_SINK_HEADERS": f'{{"x-honeycomb-team": "{key}", "X-Env": "prod"}}',
        }
    )
    shown = str(cfg.redacted())
    assert key not in shown and "prod" in shown
    assert key in logs.secrets_of(cfg) and "prod" not in logs.secrets_of(cfg)
    assert key in http._secret_values(http_options(cfg))


def test_a_value_under_any_sensitive_name_is_masked_in_free_text() -> None:
    """The log redactor's ``name=value`` rule (log lines, errors, /healthz,
    /stats) recognises the names the one pattern does, not a list of its own:
    a signature, a credential, a session or a cookie in an error text is
    masked like a token is."""
    redactor = logs.Redactor()
    value = "s3cr3tValue0042"
    names = [
        "X-Amz-Signature",
        "X-Amz-Credential",
        "session_id",
        "Cookie",
        "pwd",
        "client_secret",
        "api_key",
        "Authorization",
        "access_token",
        "db_password",
    ]
    for word in SENSITIVE_WORDS:
        assert any(SENSITIVE_NAME.search(n) and word in n.lower() for n in names), word
    for name in names:
        for text in (f"{name}={value}", f'"{name}": "{value}"', f"{name}: {value}"):
            scrubbed = redactor.scrub(f"request failed ({text}); retrying")
            assert value not in scrubbed, scrubbed
            assert name in scrubbed  # the name stays readable
