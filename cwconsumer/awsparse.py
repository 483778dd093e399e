"""The CloudWatch Logs client's response parser: GetLogEvents answers decoded
straight into :class:`~cwconsumer.model.LogEvent` (messages left as their JSON
strings) by msgspec, the listing answers by orjson, everything else by
botocore's own parser. :func:`make_session` installs it."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson
from aiobotocore.parsers import AioJSONParser, AioResponseParserFactory
from aiobotocore.session import AioSession, get_session

from cwconsumer.model import LogEvent

# Response shapes whose JSON maps one-to-one onto botocore's parsed form
# (strings, integers, lists of flat objects): decoded with orjson instead of
# botocore's shape walker, which costs ~5 µs per log event.
_FAST_SHAPES = frozenset(
    {"DescribeLogStreamsResponse", "DescribeLogGroupsResponse", "ListLogGroupsResponse"}
)


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
    """An aiobotocore session with the fast response parser installed."""
    session = get_session()
    session.register_component("response_parser_factory", _FastParserFactory())
    return session
