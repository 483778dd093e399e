"""Build the configured sink: ``build_sink(settings) -> Sink``.

May be called inside the running event loop or outside it: nothing here
touches the network; each sink opens its connection pool on first use.
Raises :class:`~cwconsumer.errors.ConfigError` for settings that cannot work
(unknown format, Splunk without a token, an unreadable CA file, a bad index
pattern, a token together with user:password).

Authorization header: ``Splunk <token>`` for ``splunk-hec``; otherwise
``Bearer <token>`` when a token is set, else Basic from the user:password
that was in the URL. An ``Authorization`` entry in the extra headers wins
over both (for example ``ApiKey ...`` for Elasticsearch).
"""

from __future__ import annotations

import base64
from typing import Protocol

from cwconsumer.errors import ConfigError
from cwconsumer.secrets import url_secrets
from cwconsumer.sinks.base import Sink
from cwconsumer.sinks.elasticsearch import ElasticsearchSink
from cwconsumer.sinks.formats import PLAIN_FORMATS
from cwconsumer.sinks.http import HttpOptions, HttpPoster, HttpSink
from cwconsumer.sinks.loki import LokiSink
from cwconsumer.sinks.splunk import SplunkHecSink

FORMATS = ("ndjson", "json", "elasticsearch", "splunk-hec", "loki", "otlp")


class Secret(Protocol):
    """A secret value that only yields its text on purpose."""

    def get(self) -> str: ...


class SinkSettings(Protocol):
    """The part of the configuration the sinks read (``Config`` satisfies it)."""

    @property
    def sink_url(self) -> str: ...
    @property
    def sink_username(self) -> str | None: ...
    @property
    def sink_password(self) -> Secret | None: ...
    @property
    def sink_format(self) -> str: ...
    @property
    def sink_token(self) -> Secret | None: ...
    @property
    def sink_headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def sink_gzip(self) -> bool: ...
    @property
    def sink_gzip_level(self) -> int: ...
    @property
    def sink_timeout_s(self) -> float: ...
    @property
    def sink_concurrency(self) -> int: ...
    @property
    def sink_index(self) -> str: ...
    @property
    def splunk_ack(self) -> bool: ...
    @property
    def splunk_sourcetype(self) -> str: ...
    @property
    def splunk_index(self) -> str | None: ...
    @property
    def loki_labels(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def sink_ca_file(self) -> str | None: ...
    @property
    def sink_max_request_bytes(self) -> int: ...
    @property
    def otlp_encoding(self) -> str: ...


def _authorization(settings: SinkSettings) -> tuple[str | None, list[str]]:
    """The Authorization header value and the raw secrets to mask."""
    token = settings.sink_token.get() if settings.sink_token is not None else ""
    password = settings.sink_password.get() if settings.sink_password is not None else ""
    secrets = [s for s in (token, password) if s]
    if settings.sink_format == "splunk-hec":
        if not token:
            raise ConfigError(["CWC_SINK_TOKEN: required for CWC_SINK_FORMAT=splunk-hec"])
        return f"Splunk {token}", secrets
    if token and settings.sink_username:
        raise ConfigError(
            ["CWC_SINK_TOKEN: cannot be used together with user:password in CWC_SINK_URL"]
        )
    if token:
        return f"Bearer {token}", secrets
    if settings.sink_username:
        pair = f"{settings.sink_username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii"), secrets
    return None, secrets


def http_options(settings: SinkSettings) -> HttpOptions:
    """The HTTP options for ``settings``."""
    authorization, secrets = _authorization(settings)
    return HttpOptions(
        timeout_s=settings.sink_timeout_s,
        concurrency=settings.sink_concurrency,
        authorization=authorization,
        headers=tuple(settings.sink_headers),
        gzip=settings.sink_gzip,
        gzip_level=settings.sink_gzip_level,
        ca_file=settings.sink_ca_file,
        max_request_bytes=settings.sink_max_request_bytes,
        # Every query value of the sink URL too: a signed URL's parameters.
        secrets=(*secrets, *url_secrets(settings.sink_url)),
    )


def build_sink(settings: SinkSettings) -> Sink:
    """The sink for ``settings.sink_format``."""
    fmt = settings.sink_format
    if fmt not in FORMATS:
        raise ConfigError([f"CWC_SINK_FORMAT: {fmt!r} is not one of {', '.join(FORMATS)}"])
    poster = HttpPoster(http_options(settings))
    url = settings.sink_url
    if fmt in PLAIN_FORMATS:
        return HttpSink(url, poster, PLAIN_FORMATS[fmt])
    if fmt == "elasticsearch":
        return ElasticsearchSink(url, poster, settings.sink_index)
    if fmt == "splunk-hec":
        return SplunkHecSink(
            url,
            poster,
            sourcetype=settings.splunk_sourcetype,
            index=settings.splunk_index,
            ack=settings.splunk_ack,
        )
    if fmt == "otlp":
        # Imported only for this format: protobuf and the OTLP classes are
        # ~15 ms of every other configuration's start-up.
        from cwconsumer.sinks.otlp import OtlpSink

        return OtlpSink(url, poster, settings.otlp_encoding)
    return LokiSink(url, poster, settings.loki_labels)
