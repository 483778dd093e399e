"""The one HTTP sender every sink uses, and the generic ``ndjson`` / ``json`` sink.

:class:`HttpPoster` owns one ``aiohttp.ClientSession`` per sink (created lazily
on first use, inside the running event loop) and is the only place that talks
aiohttp: its errors are translated here into :class:`~cwconsumer.errors.SinkError`.

Guarantees every request gets:

- a hard deadline: ``ClientTimeout(total=timeout_s)`` and, around the whole
  exchange including reading the answer, ``anyio.fail_after(timeout_s + 1)``,
  so a server that accepts the connection and never answers cannot hold a lane;
- TLS verification, always on; ``ca_file`` adds a private CA to the system ones;
- ``User-Agent: cwconsumer/<version>``, the ``Authorization`` header the
  factory chose (Basic, Bearer or Splunk), the operator's extra headers;
- optional gzip (``Content-Encoding: gzip``) at the configured level;
- no redirects followed: a 3xx means the URL is wrong, and is retried with a
  detail saying so rather than silently turning a POST into a GET;
- a bounded answer: at most :data:`ANSWER_MAX_BYTES` of body (after
  decompression) are read; a longer answer (a proxy's error page streamed for
  ever, a misrouted download) is a transport failure, retried like one, and
  never grows the process's memory.

Answer classification for plain formats (:func:`classify_response`): 2xx OK;
408, 429, 5xx, 3xx, connection errors and timeouts RETRY (with
``Retry-After`` honoured); 413 TOO_LARGE; 401/403 AUTH; any other 4xx POISON
with the status and the first 500 characters of the answer as ``detail``.
Details never contain request headers, and every configured secret is masked
out of them in case a server echoes it back.

Size limit: a body larger than ``max_request_bytes`` (measured before gzip,
since receivers such as Elasticsearch and Splunk enforce their limits on the
decompressed content) is never sent; :meth:`HttpPoster.oversize` answers
TOO_LARGE and the delivery lane splits the batch. A single event larger than
the limit therefore comes back as TOO_LARGE with one document: that decision
(dead letter) belongs to the lane too.
"""

from __future__ import annotations

import email.utils
import gzip
import math
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC

import aiohttp
import anyio
import anyio.to_thread

from cwconsumer import __version__
from cwconsumer.errors import ConfigError, SinkError
from cwconsumer.model import OutBatch
from cwconsumer.secrets import header_is_secret
from cwconsumer.sinks.base import Outcome, SendResult
from cwconsumer.sinks.formats import PlainFormat, dumps_each

USER_AGENT = f"cwconsumer/{__version__}"
DETAIL_BODY_CHARS = 500
RETRY_AFTER_MAX_S = 3600.0
_GZIP_IN_THREAD_BYTES = 256 * 1024
ANSWER_MAX_BYTES = 8 * 1024 * 1024
"""The longest answer body read. Every format's useful answer is far smaller
(an Elasticsearch bulk answer for 10,000 items with ``filter_path`` is well
under 2 MiB); anything longer is treated as no answer."""
_MASK = "***"


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Everything :class:`HttpPoster` needs; built by the factory from the config.

    ``authorization`` is the complete ``Authorization`` header value (or None);
    ``secrets`` are extra strings (password, token) masked out of every detail.
    """

    timeout_s: float = 30.0
    concurrency: int = 2
    authorization: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    gzip: bool = False
    gzip_level: int = 6
    ca_file: str | None = None
    max_request_bytes: int = 10 * 1024 * 1024
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP answer (body already read and decompressed)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def excerpt(self, limit: int = DETAIL_BODY_CHARS, redact: Redactor = None) -> str:
        """The start of the body as one line of text, for details and logs.
        Secrets are masked *before* cutting, so none can straddle the cut."""
        text = self.body[: limit * 4 + 4096].decode("utf-8", "replace")
        if redact is not None:
            text = redact(text)
        return " ".join(text.split())[:limit]


def make_ssl_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """System trust store plus ``ca_file``; verification and hostname checks on.

    Without ``ca_file`` this is ``True``: aiohttp's own verifying context
    (``ssl.create_default_context()``, built when aiohttp is imported), not a
    second copy of the system trust store (~15-25 ms of start-up).
    Raises :class:`ConfigError` when the CA file cannot be loaded.
    """
    if not ca_file:
        return True
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"CWC_SINK_CA_FILE: cannot load {ca_file!r}: {exc}"]) from exc
    return context


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date.

    Returns None when absent or unreadable; clamps to [0, 1 h] so a broken
    header cannot park a lane for days.
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now_s is None else now_s)
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_MAX_S)


Redactor = Callable[[str], str] | None


def _identity(text: str) -> str:
    return text


def classify_response(resp: Response, redact: Redactor = None) -> SendResult:
    """Outcome of a whole request for formats without per-item answers."""
    redact = redact or _identity
    status = resp.status
    detail = redact(f"HTTP {status}" + (f": {resp.excerpt(redact=redact)}" if resp.body else ""))
    if 200 <= status < 300:
        return SendResult(Outcome.OK, status=status)
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return SendResult(Outcome.RETRY, status=status, detail=detail, retry_after_s=retry_after)
    if status == 413:
        return SendResult(Outcome.TOO_LARGE, status=status, detail=detail)
    if status in (401, 403):
        return SendResult(Outcome.AUTH, status=status, detail=detail)
    if 400 <= status < 500:
        return SendResult(Outcome.POISON, status=status, detail=detail)
    if 300 <= status < 400:
        location = resp.headers.get("Location", "?")
        detail = redact(f"HTTP {status}: redirect to {location}; fix CWC_SINK_URL")
    return SendResult(Outcome.RETRY, status=status, detail=detail)


def judge_probe(resp: Response, url: str, redact: Redactor = None) -> tuple[bool, str]:
    """Probe verdict: 2xx and 4xx other than 401/403 mean reachable and answering."""
    redact = redact or _identity
    status = resp.status
    if status in (401, 403):
        return False, redact(f"{url} answered HTTP {status}: credentials refused")
    if 300 <= status < 400:
        location = resp.headers.get("Location", "?")
        return False, redact(f"{url} answered HTTP {status}: redirect to {location}")
    if 200 <= status < 500:
        return True, f"{url} answered HTTP {status}"
    return False, redact(f"{url} answered HTTP {status}: {resp.excerpt(200, redact)}")


def poison_items(
    count: int, bad: dict[int, str], detail: str = "", status: int | None = None
) -> SendResult:
    """Refuse the documents in ``bad`` as poison and ask for the rest again
    (by default: documents that cannot be encoded)."""
    items = [Outcome.POISON if i in bad else Outcome.RETRY for i in range(count)]
    return SendResult(
        Outcome.RETRY,
        status=status,
        detail=detail or f"{len(bad)} document(s) cannot be encoded as JSON",
        items=items,
        item_detail=dict(bad),
    )


def _secret_values(options: HttpOptions) -> list[str]:
    values = [s for s in options.secrets if s]
    if options.authorization:
        values.append(options.authorization)
        _, _, credential = options.authorization.partition(" ")
        if credential:
            values.append(credential)
    values.extend(v for k, v in options.headers if v and header_is_secret(k, v))
    # Longest first so a value containing another is masked whole.
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


class HttpPoster:
    """One HTTP client for one sink. Not thread-safe; safe for concurrent tasks."""

    def __init__(self, options: HttpOptions) -> None:
        self.options = options
        self._ssl = make_ssl_context(options.ca_file)
        self._secrets = _secret_values(options)
        self._client: aiohttp.ClientSession | None = None
        self._closed = False
        headers = {"User-Agent": USER_AGENT}
        if options.authorization:
            headers["Authorization"] = options.authorization
        headers.update(options.headers)
        self._base_headers = headers

    @property
    def timeout_s(self) -> float:
        return self.options.timeout_s

    def redact(self, text: str) -> str:
        """Mask every configured secret in ``text``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def oversize(self, body: bytes, count: int) -> SendResult | None:
        """TOO_LARGE (without sending) when ``body`` exceeds the request limit."""
        limit = self.options.max_request_bytes
        if len(body) <= limit:
            return None
        return SendResult(
            Outcome.TOO_LARGE,
            detail=f"request of {count} event(s) is {len(body)} bytes, above the "
            f"{limit}-byte limit; not sent",
        )

    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise SinkError("sink is closed")
        if self._client is None:
            connector = aiohttp.TCPConnector(
                limit=self.options.concurrency + 2, ssl=self._ssl, ttl_dns_cache=60
            )
            self._client = aiohttp.ClientSession(
                connector=connector,
                headers=self._base_headers,
                timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
                trust_env=False,
            )
        return self._client

    async def _encode(self, body: bytes) -> bytes:
        level = self.options.gzip_level
        if len(body) < _GZIP_IN_THREAD_BYTES:
            return gzip.compress(body, compresslevel=level, mtime=0)
        return await anyio.to_thread.run_sync(lambda: gzip.compress(body, level, mtime=0))

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        compress: bool = True,
    ) -> Response:
        """Send one request and read the whole answer.

        Raises :class:`SinkError` (with a secret-free message) for every
        failure to get an answer: connection refused or reset, DNS, TLS,
        timeout, a closed sink. Cancellation propagates untouched.
        """
        request_headers = dict(headers)
        if content_type:
            request_headers["Content-Type"] = content_type
        data = body
        if body and compress and self.options.gzip:
            data = await self._encode(body)
            request_headers["Content-Encoding"] = "gzip"
        deadline = self.options.timeout_s + 1.0
        try:
            with anyio.fail_after(deadline):
                session = self._session()
                async with session.request(
                    method, url, data=data, headers=request_headers, allow_redirects=False
                ) as resp:
                    payload = await _read_bounded(resp, ANSWER_MAX_BYTES)
                    if payload is None:
                        # The rest is not read: the connection is closed, not reused.
                        resp.close()
                        raise SinkError(
                            self.redact(
                                f"{method} {url}: HTTP {resp.status} answer longer than "
                                f"{ANSWER_MAX_BYTES} bytes; not read"
                            )
                        )
                    return Response(resp.status, resp.headers, payload)
        except SinkError:
            raise
        except TimeoutError as exc:
            raise SinkError(f"{method} {url}: no answer within {self.timeout_s:g} s") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = f"{method} {url}: TLS certificate refused: {exc.certificate_error}"
            raise SinkError(self.redact(reason)) from exc
        except aiohttp.ClientConnectorError as exc:
            raise SinkError(self.redact(f"{method} {url}: cannot connect: {exc.os_error}")) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise SinkError(f"{method} {url}: connection closed before an answer") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise SinkError(self.redact(f"{method} {url}: {type(exc).__name__}: {exc}")) from exc
        except RuntimeError as exc:  # aiohttp: "Session is closed" after aclose()
            raise SinkError(f"{method} {url}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent; later requests fail with SinkError."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The answer's body, or None when it is longer than ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for part in resp.content.iter_any():
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
    return b"".join(parts)


class PosterSink:
    """Common part of the HTTP sinks: a name, a poster, a URL, closing."""

    name: str

    def __init__(self, name: str, url: str, poster: HttpPoster) -> None:
        self.name = name
        self.url = url
        self._poster = poster

    async def _post(
        self,
        url: str,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response | SendResult:
        """POST; a transport failure comes back as a RETRY result."""
        try:
            return await self._poster.request(
                "POST", url, body=body, content_type=content_type, headers=headers
            )
        except SinkError as exc:
            return SendResult(Outcome.RETRY, detail=str(exc))

    async def _ask(
        self, method: str, url: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> Response | str:
        """A probe request: the answer, or why there was none."""
        try:
            return await self._poster.request(
                method, url, body=body or None, headers=headers, compress=False
            )
        except SinkError as exc:
            return str(exc)

    async def _probe(self, method: str, url: str) -> tuple[bool, str]:
        answer = await self._ask(method, url)
        if isinstance(answer, str):
            return False, answer
        return judge_probe(answer, url, self._poster.redact)

    async def aclose(self) -> None:
        await self._poster.aclose()


class HttpSink(PosterSink):
    """Any HTTP endpoint taking ``ndjson`` or a ``json`` array (Logstash ``http``
    input, Vector, Fluent Bit, a custom receiver)."""

    def __init__(self, url: str, poster: HttpPoster, fmt: PlainFormat) -> None:
        super().__init__(fmt.name, url, poster)
        self.format = fmt

    async def send(self, batch: OutBatch) -> SendResult:
        if not batch.docs:
            return SendResult(Outcome.OK, detail="empty batch")
        lines, bad = dumps_each(batch.docs)
        if bad:
            return poison_items(len(batch), bad)
        body = self.format.join(lines)
        too_large = self._poster.oversize(body, len(batch))
        if too_large is not None:
            return too_large
        answer = await self._post(self.url, body, self.format.content_type)
        if isinstance(answer, SendResult):
            return answer
        return classify_response(answer, self._poster.redact)

    async def probe(self) -> tuple[bool, str]:
        """HEAD on the sink URL: any answer but 401/403/3xx/5xx means reachable."""
        return await self._probe("HEAD", self.url)
