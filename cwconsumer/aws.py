"""CloudWatch Logs edge: one aiobotocore client, a fast response parser,
shared adaptive rates, whole-call timeouts, and botocore errors translated
into :mod:`cwconsumer.errors`.

Retries: botocore's own retrying is switched off (``standard`` mode with one
attempt) so that every throttle reaches :class:`~cwconsumer.ratelimit.AdaptiveRate`
and the metrics; the callers retry on their own schedule (``retriable``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import msgspec
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.parsers import AioJSONParser, AioResponseParserFactory
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from cwconsumer.errors import AccessDenied, AwsError, NotFound, Throttled, TokenRejected
from cwconsumer.model import LogEvent
from cwconsumer.ratelimit import AdaptiveRate

log = logging.getLogger("cwconsumer.aws")

_THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "LimitExceededException",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)

# Response shapes whose JSON maps one-to-one onto botocore's parsed form
# (strings, integers, lists of flat objects): decoded with orjson instead of
# botocore's shape walker, which costs ~5 µs per log event.
_FAST_SHAPES = frozenset({"DescribeLogStreamsResponse", "DescribeLogGroupsResponse"})


class _GetLogEventsBody(msgspec.Struct, gc=False):
    events: list[LogEvent] = []
    nextForwardToken: str | None = None  # the API's names
    nextBackwardToken: str | None = None


_decoder = msgspec.json.Decoder(_GetLogEventsBody)


def _decode_get_log_events(body: bytes) -> _GetLogEventsBody:
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError:
        pass
    # msgspec (like orjson) refuses a lone surrogate escape ("\ud800") even in
    # text it does not decode; the standard library reads it, so such a page
    # still moves (the event is shipped, or dead-lettered by a sink that
    # refuses it) instead of failing its stream for ever. Anything else
    # malformed raises here as before.
    try:
        raw = json.loads(body)
        return _GetLogEventsBody(
            events=[
                LogEvent(
                    timestamp=int(item["timestamp"]),
                    message=msgspec.Raw(json.dumps(item["message"]).encode()),
                    ingestionTime=item.get("ingestionTime"),
                )
                for item in raw.get("events") or []
            ],
            nextForwardToken=raw.get("nextForwardToken"),
            nextBackwardToken=raw.get("nextBackwardToken"),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise msgspec.DecodeError(f"GetLogEvents answer is not as documented: {exc}") from exc


def decode_get_log_events(body: bytes) -> tuple[list[LogEvent], str | None]:
    """A GetLogEvents answer as the product reads it: its events and forward token."""
    page = _decode_get_log_events(body)
    return page.events, page.nextForwardToken


class _FastJSONParser(AioJSONParser):  # type: ignore[misc]
    def _handle_json_body(self, raw_body: bytes, shape: Any) -> Any:
        if shape is None or not raw_body:
            return super()._handle_json_body(raw_body, shape)
        if shape.name == "GetLogEventsResponse":
            # The hot path: events as LogEvent, messages left as their JSON
            # strings (cwconsumer.model.LogEvent); about half orjson's cost.
            body = _decode_get_log_events(raw_body)
            return {
                "events": body.events,
                "nextForwardToken": body.nextForwardToken,
                "nextBackwardToken": body.nextBackwardToken,
            }
        if shape.name in _FAST_SHAPES:
            return orjson.loads(raw_body)
        return super()._handle_json_body(raw_body, shape)


class _FastParserFactory(AioResponseParserFactory):  # type: ignore[misc]
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "json":
            return _FastJSONParser(**self._defaults)
        return super().create_parser(protocol_name)


def make_session() -> AioSession:
    session = get_session()
    session.register_component("response_parser_factory", _FastParserFactory())
    return session


@dataclass(slots=True)
class Page:
    events: list[LogEvent]
    next_token: str


CallObserver = Callable[[str, str], None]
"""``observe(operation, outcome)`` with outcome ok / throttled / denied / error."""


class LogsClient:
    """``async with LogsClient(...) as logs``. Every call: rate-limited,
    bounded by ``timeout_s`` as a whole, errors translated."""

    def __init__(
        self,
        region: str,
        *,
        get_rate: float,
        describe_rate: float,
        timeout_s: float,
        max_connections: int = 32,
        observe: CallObserver | None = None,
    ) -> None:
        self.region = region
        self.timeout_s = timeout_s
        self.rates = {
            "GetLogEvents": AdaptiveRate(get_rate),
            "DescribeLogStreams": AdaptiveRate(describe_rate),
            "DescribeLogGroups": AdaptiveRate(describe_rate),
        }
        self._observe = observe or (lambda op, outcome: None)
        self._config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=min(10.0, timeout_s),
            read_timeout=timeout_s,
            max_pool_connections=max_connections,
            tcp_keepalive=True,
        )
        self._client: Any = None
        self._cm: Any = None

    async def __aenter__(self) -> LogsClient:
        session = make_session()
        self._cm = session.create_client("logs", region_name=self.region, config=self._config)
        self._client = await self._cm.__aenter__()
        # Every paced call is checked again as its request leaves (ratelimit).
        service = self._client.meta.service_model.service_id.hyphenize()
        for op, rate in self.rates.items():
            self._client.meta.events.register(f"before-send.{service}.{op}", _departure(rate))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.move_on_after(5, shield=True):
            await self._cm.__aexit__(exc_type, exc, tb)

    async def pace(self, op: str) -> None:
        """Wait for a slot of ``op``'s rate; the call that follows passes
        ``paced=False`` (the reader takes its slot before it picks a stream)."""
        rate = self.rates.get(op)
        if rate is not None:
            await rate.acquire()

    async def _call(self, op: str, paced: bool = True, **params: Any) -> dict[str, Any]:
        rate = self.rates.get(op)
        if rate is not None and paced:
            await rate.acquire()
        method = getattr(self._client, _SNAKE[op])
        try:
            with anyio.fail_after(self.timeout_s + 5):
                result: dict[str, Any] = await method(**params)
        except TimeoutError as exc:
            self._observe(op, "error")
            raise AwsError(f"{op} timed out after {self.timeout_s:g}s", retriable=True) from exc
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            message = str(err.get("Message", ""))[:300]
            if (
                code in _THROTTLE_CODES
                or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
            ):
                self._observe(op, "throttled")
                if rate is not None and rate.on_throttle():
                    log.warning(
                        "throttled: rate lowered",
                        extra={"operation": op, "code": code, "rate_per_s": round(rate.rate, 2)},
                    )
                raise Throttled(f"{op}: {code}", code=code) from exc
            if code not in _DENIED_CODES:
                self._observe(op, "error")
            if code == "ResourceNotFoundException":
                raise NotFound(f"{op}: {message or code}", code=code) from exc
            if code in _DENIED_CODES:
                self._observe(op, "denied")
                raise AccessDenied(f"{op}: {code}: {message}", code=code) from exc
            if code == "InvalidParameterException" and "nextToken" in params:
                raise TokenRejected(f"{op}: {message or code}", code=code) from exc
            raise AwsError(f"{op}: {code}: {message}", code=code) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            self._observe(op, "denied")
            raise AccessDenied(f"{op}: no AWS credentials found ({type(exc).__name__})") from exc
        except BotoCoreError as exc:
            self._observe(op, "error")
            raise AwsError(f"{op}: {type(exc).__name__}: {exc}", retriable=True) from exc
        except (msgspec.DecodeError, orjson.JSONDecodeError) as exc:  # a garbled answer
            self._observe(op, "error")
            raise AwsError(f"{op}: malformed response: {exc}", retriable=True) from exc
        except OSError as exc:  # aiohttp connection errors surface as OSError subclasses
            self._observe(op, "error")
            raise AwsError(f"{op}: {type(exc).__name__}: {exc}", retriable=True) from exc
        self._observe(op, "ok")
        return result

    async def describe_log_groups(
        self, prefix: str | None, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {"limit": 50}
        if prefix:
            params["logGroupNamePrefix"] = prefix
        if next_token:
            params["nextToken"] = next_token
        r = await self._call("DescribeLogGroups", **params)
        return list(r.get("logGroups", [])), r.get("nextToken")

    async def describe_log_streams(
        self, group: str, next_token: str | None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {
            "logGroupName": group,
            "orderBy": "LastEventTime",
            "descending": True,
            "limit": limit,
        }
        if next_token:
            params["nextToken"] = next_token
        r = await self._call("DescribeLogStreams", **params)
        return list(r.get("logStreams", [])), r.get("nextToken")

    async def get_log_events(
        self,
        group: str,
        stream: str,
        token: str | None,
        start_time_ms: int | None,
        limit: int = 10000,
        *,
        paced: bool = True,
    ) -> Page:
        params: dict[str, Any] = {
            "logGroupName": group,
            "logStreamName": stream,
            "startFromHead": True,  # required when paging forward with a token
            "limit": max(1, min(10000, limit)),
        }
        if token:
            params["nextToken"] = token
        elif start_time_ms is not None:
            params["startTime"] = start_time_ms
        r = await self._call("GetLogEvents", paced, **params)
        return Page(r.get("events") or [], r.get("nextForwardToken") or token or "")


def _departure(rate: AdaptiveRate) -> Callable[..., Awaitable[None]]:
    """A ``before-send`` handler: waits for :meth:`AdaptiveRate.depart`, then
    lets botocore send (it must return None, or botocore takes the result as
    the answer)."""

    async def before_send(**_: Any) -> None:
        await rate.depart()

    return before_send


_SNAKE = {
    "GetLogEvents": "get_log_events",
    "DescribeLogStreams": "describe_log_streams",
    "DescribeLogGroups": "describe_log_groups",
}
