"""A small, controllable fake CloudWatch Logs endpoint for tests and benchmarks.

It speaks the AWS JSON 1.1 protocol the real ``aiobotocore`` client uses for the
``logs`` service (``POST /``, ``X-Amz-Target: Logs_20140328.<Operation>``) and
reproduces the behaviours moto lacks: empty and partial pages mid-stream, the
1 MB page cap, exclusive ``endTime``, tokens that expire or are rejected,
throttling, and eventually consistent ``lastEventTimestamp``. Signatures are
not verified; any credentials work.

Start it in a background thread (sync tests, subprocess tests, benchmarks)::

    with FakeCloudWatchLogs(seed=1) as fake:          # or fake.start() / fake.stop()
        fake.put("/g", "s", [(1_000, "hello")])
        session.create_client("logs", **fake.client_kwargs())
        subprocess.run([...], env={**os.environ, **fake.client_env()})

or on the running event loop with ``async with FakeCloudWatchLogs() as fake``
(``astart()`` / ``astop()``). ``python -m tests.support.fakecwl`` runs it
standalone and prints ``ENDPOINT <url>``.

Operations: DescribeLogGroups, DescribeLogStreams, GetLogEvents, CreateLogGroup,
CreateLogStream, PutLogEvents, DeleteLogStream, DeleteLogGroup, and
ListLogGroups when ``list_log_groups`` is set. Anything else answers
``UnknownOperationException``. STS on the same endpoint (``client_env`` points
``AWS_ENDPOINT_URL_STS`` here): GetCallerIdentity (account ``ACCOUNT_ID``) and
AssumeRole (``deny_assume_role``: AccessDenied; ``sts_calls`` records the
parameters). ``access_keys`` counts logs calls per signing access key id.
Groups have a ``logGroupClass`` (``set_group_class``; GetLogEvents refuses
``DELIVERY``) and a ``dataProtectionStatus`` (``set_data_protection``);
``refuse_unmask`` refuses ``unmask=true``.

GetLogEvents semantics (as AWS documents them):

- events are ordered by (timestamp, ingestion order); ``startTime`` is
  inclusive, ``endTime`` exclusive; a page holds at most ``limit`` (default and
  maximum 10,000) events and at most 1,048,576 bytes counted as
  ``sum(len(message.encode()) + 26)``;
- a forward token is a *position* in that order: the next page holds the
  events after the last one returned, so an event put later with an older
  timestamp is never seen by forward paging (AWS's likely behaviour);
- at the end of the stream the token passed in comes back unchanged; events
  appended later are returned by that same token;
- tokens look like ``f/<66 digits>/s`` (``b/.../s`` backwards) and carry the
  stream incarnation, a generation, the issue time, the position, a serial and
  a checksum, so the fake can reject garbage, foreign, old or expired tokens
  with ``InvalidParameterException`` "The specified nextToken is invalid."
  (a token of a deleted and re-created stream is foreign);
- direction follows the token's prefix, or ``startFromHead`` without a token.
  With ``strict_start_from_head`` (default on) a forward token sent without
  ``startFromHead=True`` answers ``InvalidParameterException`` with a distinct
  message, because AWS requires the flag.

Controls (thread-safe; call them from any thread, also while serving):

- data: ``add_group``, ``add_stream``, ``put``, ``delete_stream``, ``delete_group``,
  ``events``;
- ``empty_pages(group, stream, next_n=N, every=k)``: the next N GetLogEvents
  calls, and/or every k-th call, answer an empty page with a new token for the
  same position (nothing is skipped); only calls whose token was accepted count;
- ``page_cap(group, stream, n)``: at most n events a page;
- ``endless_empty(group, stream)``: empty pages with a new token forever
  (events past retention); ``stream_calls`` counts the calls;
- ``reject_tokens(group, stream, n)``, ``set_token_max_age(seconds)``,
  ``expire_tokens()`` (generation bump);
- ``set_throttle(p, operation=..., unavailable=q)`` (seeded RNG) and
  ``throttle_next(n, operation=..., code=...)``; ``ServiceUnavailableException``
  answers with status 503, every other error with 400;
- ``freeze_stream_stats(group, stream, ...)`` / ``unfreeze_stream_stats``:
  DescribeLogStreams reports (and orders by) frozen or given values;
- ``set_latency(seconds, operation=None)``;
- observation: ``counts(op)``, ``get_calls(...)``, ``stream_calls(...)``,
  ``clear_calls()``; ``reset_faults()`` removes every injected fault.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import re
import secrets
import signal
import socket
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

__all__ = [
    "ACCOUNT_ID",
    "EVENT_OVERHEAD_BYTES",
    "INVALID_TOKEN_MESSAGE",
    "MAX_PAGE_BYTES",
    "ApiError",
    "FakeCloudWatchLogs",
    "GetLogEventsCall",
    "OpCounts",
]

ACCOUNT_ID = "123456789012"
TARGET_PREFIX = "Logs_20140328."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_PAGE_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_GET_LIMIT = 10_000
MAX_DESCRIBE_LIMIT = 50
INVALID_TOKEN_MESSAGE = "The specified nextToken is invalid."
START_FROM_HEAD_MESSAGE = (
    "startFromHead must be true when paging with a forward token (fake strict mode)."
)

# An event's sort key is timestamp * 2**40 + global ingestion sequence: one int
# orders by (timestamp, ingestion order) and bisects fast.
_SEQ_SPAN = 1 << 40
_MAX_TS = 10**13 - 1
_MAX_POS = (_MAX_TS + 1) * _SEQ_SPAN
_TOKEN_RE = re.compile(r"([fb])/(\d{66})/s")
_LIST_TOKEN_RE = re.compile(r"(\d{10})(\d{6})")
_CREDENTIAL_RE = re.compile(r"Credential=([A-Z0-9]+)/")


class ApiError(Exception):
    """An AWS error answer: ``{"__type": code, "message": message}`` with ``status``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


_LIST_PATTERN = re.compile(r"(\^?[.\-_/#A-Za-z0-9]{3,24})(\|\^?[.\-_/#A-Za-z0-9]{3,24}){0,4}")


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


@dataclass(frozen=True, slots=True)
class OpCounts:
    """Calls of one operation: ``total`` = ``ok`` + sum of ``errors`` by code."""

    total: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Calls answered with any error."""
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True)
class GetLogEventsCall:
    """One GetLogEvents request as received, and what the fake answered."""

    group: str | None
    stream: str | None
    token: str | None
    start_time: int | None
    end_time: int | None
    start_from_head: bool
    limit: int | None
    returned: int
    next_forward_token: str | None
    error: str | None
    note: str


class _Stream:
    __slots__ = (
        "creation_ms",
        "cum",
        "empty_every",
        "empty_next",
        "empty_seen",
        "endless",
        "frags",
        "frozen",
        "get_calls",
        "keys",
        "last_ingestion",
        "name",
        "page_cap",
        "reject_next",
        "sizes",
        "uid",
    )

    def __init__(self, name: str, uid: int, creation_ms: int) -> None:
        self.name = name
        self.uid = uid
        self.creation_ms = creation_ms
        self.keys: list[int] = []
        self.frags: list[bytes] = []
        self.sizes: list[int] = []
        self.cum: list[int] = [0]  # cum[i] = AWS byte size of events[0:i]
        self.last_ingestion: int | None = None
        self.frozen: tuple[int | None, int | None, int | None] | None = None
        self.get_calls = 0
        self.empty_next = 0
        self.empty_every = 0
        self.empty_seen = 0
        self.endless = False
        self.page_cap: int | None = None
        self.reject_next = 0

    def stats(self) -> tuple[int | None, int | None, int | None]:
        """(firstEventTimestamp, lastEventTimestamp, lastIngestionTime) as reported."""
        if self.frozen is not None:
            return self.frozen
        if not self.keys:
            return None, None, None
        return self.keys[0] // _SEQ_SPAN, self.keys[-1] // _SEQ_SPAN, self.last_ingestion


class _Group:
    __slots__ = (
        "by_last",
        "creation_ms",
        "data_protection",
        "last_key",
        "log_class",
        "name",
        "order_cache",
        "retention_days",
        "streams",
        "touched",
        "uid",
        "version",
    )

    def __init__(self, name: str, uid: int, creation_ms: int) -> None:
        self.log_class = "STANDARD"
        self.data_protection: str | None = None
        self.retention_days: int | None = None
        self.name = name
        self.uid = uid
        self.creation_ms = creation_ms
        self.streams: dict[str, _Stream] = {}
        self.version = 0
        self.order_cache: dict[tuple[str, bool], tuple[int, list[_Stream]]] = {}
        # The LastEventTime order, kept up to date incrementally: (last event
        # time or -1, name) ascending, each stream's entry in ``last_key``;
        # the streams changed since it was last brought up to date in
        # ``touched`` (None: rebuild). Re-sorting a group of 10^5 streams on
        # every DescribeLogStreams call made the benchmarks' stand-in slow
        # down with the group's size, which AWS does not.
        self.by_last: list[tuple[int, str]] = []
        self.last_key: dict[str, tuple[int, str]] = {}
        self.touched: set[str] | None = set()

    def touch(self, stream: str) -> None:
        """A stream was added, deleted, or its events or stats changed."""
        self.version += 1
        if self.touched is not None:
            self.touched.add(stream)

    def by_last_event(self) -> list[tuple[int, str]]:
        """(last event time or -1, name) of every stream, ascending."""
        touched = self.touched
        if touched is None or len(touched) * 8 > len(self.streams) + 64:
            # (many changed, e.g. a data set just loaded: one sort is cheaper)
            self.last_key = {name: _last_key(st) for name, st in self.streams.items()}
            self.by_last = sorted(self.last_key.values())
        else:
            order, keys = self.by_last, self.last_key
            for name in touched:
                old = keys.pop(name, None)
                if old is not None:
                    del order[bisect.bisect_left(order, old)]
                st = self.streams.get(name)
                if st is not None:
                    keys[name] = key = _last_key(st)
                    bisect.insort(order, key)
        self.touched = set()
        return self.by_last


def _last_key(st: _Stream) -> tuple[int, str]:
    last = st.stats()[1]
    return (-1 if last is None else last, st.name)


class _OpStats:
    __slots__ = ("errors", "ok", "total")

    def __init__(self) -> None:
        self.total = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()


def _opt_int(req: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = req.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise _invalid(f"{name} must be an integer.")
    if value < lo:
        raise _invalid(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
            f"constraint: Member must have value greater than or equal to {lo}"
        )
    if value > hi:
        raise _invalid(
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
            f"constraint: Member must have value less than or equal to {hi}"
        )
    return value


def _opt_str(req: dict[str, Any], name: str) -> str | None:
    value = req.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{name} must be a non-empty string.")
    return value


def _frag(ts: int, message: str, ingestion_ms: int) -> bytes:
    # %-formatting around orjson's string encoding: orjson.dumps of a whole dict is
    # an order of magnitude slower here when millions of results are kept alive.
    return b'{"timestamp":%d,"message":%b,"ingestionTime":%d}' % (
        ts,
        orjson.dumps(message),
        ingestion_ms,
    )


class FakeCloudWatchLogs:
    """The fake service: in-memory state, fault controls and an aiohttp server.

    ``clock`` (seconds, like ``time.time``) drives creation and ingestion times
    and token ages; pass a controllable one to test token expiry without sleeping.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        log_calls: bool = True,
        strict_start_from_head: bool = True,
    ) -> None:
        self.region = region
        self.account_id = ACCOUNT_ID
        self.host = host
        self.strict_start_from_head = strict_start_from_head
        self._port = port
        self._clock = clock
        self._log_calls = log_calls
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._salt = secrets.token_bytes(8)
        self._groups: dict[str, _Group] = {}
        self._groups_version = 0
        self._groups_sorted: tuple[int, list[str]] = (-1, [])
        self._uids = itertools.count(1)
        self._seq = itertools.count(1)
        self._serial = itertools.count(1)
        self._generation = 0
        self._token_max_age_s: float | None = None
        self._throttle: dict[str | None, tuple[float, float]] = {}
        self._throttle_next: dict[str | None, list[str]] = {}
        self._garble_next = 0
        self._latency: dict[str | None, float] = {}
        self._stats: dict[str, _OpStats] = {}
        self._calls: list[GetLogEventsCall] = []
        self._ops: dict[str, Callable[[dict[str, Any]], bytes]] = {
            "DescribeLogGroups": self._op_describe_log_groups,
            "DescribeLogStreams": self._op_describe_log_streams,
            "CreateLogGroup": self._op_create_log_group,
            "CreateLogStream": self._op_create_log_stream,
            "PutLogEvents": self._op_put_log_events,
            "DeleteLogStream": self._op_delete_log_stream,
            "DeleteLogGroup": self._op_delete_log_group,
        }
        # ListLogGroups is off by default, like moto: the product falls back
        # to DescribeLogGroups; list_log_groups=True serves it (1,000 a page).
        self.list_log_groups = False
        self.deny_list_log_groups = False  # AccessDenied, as for a policy without it
        self.refuse_unmask = False  # GetLogEvents with unmask=true: AccessDenied (no logs:Unmask)
        self.unmask_calls = 0  # GetLogEvents calls that asked for unmask=true
        # GetLogEvents on a group of these classes: InvalidOperationException with
        # this message (AWS documents no answer for it: AWS-NOTES; invented here).
        self.refused_classes = {"DELIVERY"}
        self.described_prefixes: list[
            str | None
        ] = []  # logGroupNamePrefix of each DescribeLogGroups
        self.class_refusal_message = (
            "GetLogEvents is not supported for log groups of the DELIVERY log class."
        )
        # STS (Query protocol, same endpoint): GetCallerIdentity and AssumeRole.
        self.deny_assume_role = False
        self.sts_calls: list[dict[str, str]] = []
        self.access_keys: Counter[str] = Counter()  # access key id -> signed logs calls
        self._endpoint_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._endpoint_url is None:
            raise RuntimeError("FakeCloudWatchLogs is not started")
        return self._endpoint_url

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``session.create_client("logs", **kwargs)``."""
        return {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def client_env(self) -> dict[str, str]:
        """Environment variables that point a botocore process at this fake."""
        return {
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.endpoint_url,
            "AWS_ENDPOINT_URL_STS": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        port = sock.getsockname()[1]
        self._endpoint_url = f"http://{self.host}:{port}"
        return sock

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def _unserve(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def start(self) -> Self:
        """Serve from a background thread with its own event loop; returns self."""
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("FakeCloudWatchLogs is already started")
        sock = self._bind()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:
                failure.append(exc)
                sock.close()
                self._endpoint_url = None
                loop.close()
                started.set()
                return
            self._loop = loop
            started.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self._unserve())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fakecwl", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the background server; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            if self._runner is not None:
                raise RuntimeError("started with astart(): stop it with astop()")
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None

    async def astart(self) -> Self:
        """Serve on the running event loop; returns self."""
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("FakeCloudWatchLogs is already started")
        await self._serve(self._bind())
        return self

    async def astop(self) -> None:
        """Stop the server (``astart`` or ``start``); idempotent."""
        if self._thread is not None:
            await asyncio.to_thread(self.stop)
        else:
            await self._unserve()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    # ------------------------------------------------------------------ data

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            raise ApiError("ResourceNotFoundException", "The specified log group does not exist.")
        return group

    def _stream(self, group: str, stream: str) -> _Stream:
        found = self._group(group).streams.get(stream)
        if found is None:
            raise ApiError("ResourceNotFoundException", "The specified log stream does not exist.")
        return found

    def _add_group(self, name: str, creation_ms: int | None) -> _Group:
        group = self._groups.get(name)
        if group is None:
            now = self._now_ms() if creation_ms is None else creation_ms
            group = self._groups[name] = _Group(name, next(self._uids), now)
            self._groups_version += 1
        return group

    def _add_stream(self, group: str, stream: str, creation_ms: int | None) -> _Stream:
        grp = self._add_group(group, None)
        found = grp.streams.get(stream)
        if found is None:
            now = self._now_ms() if creation_ms is None else creation_ms
            found = grp.streams[stream] = _Stream(stream, next(self._uids), now)
            grp.touch(stream)
        return found

    def add_group(self, name: str, *, creation_time_ms: int | None = None) -> None:
        """Create a log group unless it exists."""
        with self._lock:
            self._add_group(name, creation_time_ms)

    def add_stream(self, group: str, stream: str, *, creation_time_ms: int | None = None) -> None:
        """Create a stream (and its group) unless it exists."""
        with self._lock:
            self._add_stream(group, stream, creation_time_ms)

    def put(
        self,
        group: str,
        stream: str,
        events: Iterable[tuple[int, str]],
        *,
        ingestion_time_ms: int | None = None,
    ) -> None:
        """Store ``(timestamp_ms, message)`` events, creating group and stream if needed.

        Events are kept in (timestamp, ingestion) order whatever order they come in;
        ingestion order is the order of this call's iterable. ``ingestion_time_ms``
        defaults to the clock's now.
        """
        with self._lock:
            self._put(self._add_stream(group, stream, None), events, ingestion_time_ms)
            self._groups[group].touch(stream)

    def _put(
        self, st: _Stream, events: Iterable[tuple[int, str]], ingestion_ms: int | None
    ) -> None:
        ing = self._now_ms() if ingestion_ms is None else ingestion_ms
        keys, frags, sizes, cum = st.keys, st.frags, st.sizes, st.cum
        dirty_from: int | None = None
        for ts, message in events:
            if not 0 <= ts <= _MAX_TS:
                raise ValueError(f"timestamp out of range: {ts}")
            key = ts * _SEQ_SPAN + next(self._seq)
            frag = _frag(ts, message, ing)
            size = len(message.encode()) + EVENT_OVERHEAD_BYTES
            if not keys or key > keys[-1]:
                keys.append(key)
                frags.append(frag)
                sizes.append(size)
                if dirty_from is None:
                    cum.append(cum[-1] + size)
            else:
                i = bisect.bisect_right(keys, key)
                keys.insert(i, key)
                frags.insert(i, frag)
                sizes.insert(i, size)
                dirty_from = i if dirty_from is None else min(dirty_from, i)
        if dirty_from is not None:
            del cum[dirty_from + 1 :]
            cum.extend(itertools.accumulate(sizes[dirty_from:], initial=cum[dirty_from]))
            del cum[dirty_from + 1]  # accumulate repeats the initial value
        if keys:
            st.last_ingestion = max(ing, st.last_ingestion or ing)

    def delete_stream(self, group: str, stream: str) -> None:
        """Delete a stream with its events and faults; no error if it is absent."""
        with self._lock:
            grp = self._groups.get(group)
            if grp is not None and grp.streams.pop(stream, None) is not None:
                grp.touch(stream)

    def delete_group(self, group: str) -> None:
        """Delete a group with its streams; no error if it is absent."""
        with self._lock:
            if self._groups.pop(group, None) is not None:
                self._groups_version += 1

    def events(self, group: str, stream: str) -> list[tuple[int, str, int]]:
        """All stored events of a stream as (timestamp, message, ingestionTime), in order."""
        with self._lock:
            frags = list(self._known_stream(group, stream).frags)
        out = []
        for frag in frags:
            ev = orjson.loads(frag)
            out.append((ev["timestamp"], ev["message"], ev["ingestionTime"]))
        return out

    # ------------------------------------------------------------------ faults

    def _known_stream(self, group: str, stream: str) -> _Stream:
        try:
            return self._stream(group, stream)
        except ApiError:
            raise KeyError(f"no stream {group!r}/{stream!r}") from None

    def _with_stream(self, group: str, stream: str, change: Callable[[_Stream], None]) -> None:
        with self._lock:
            change(self._known_stream(group, stream))
            self._groups[group].touch(stream)

    def empty_pages(self, group: str, stream: str, *, next_n: int = 0, every: int = 0) -> None:
        """Answer the next ``next_n`` GetLogEvents calls, and every ``every``-th call
        from now on, with an empty page and a new token for the same position."""

        def change(st: _Stream) -> None:
            st.empty_next = next_n
            st.empty_every = every
            st.empty_seen = 0

        self._with_stream(group, stream, change)

    def page_cap(self, group: str, stream: str, max_events: int | None) -> None:
        """Return at most ``max_events`` events a page (``None`` removes the cap)."""
        if max_events is not None and max_events < 1:
            raise ValueError("max_events must be at least 1")

        def change(st: _Stream) -> None:
            st.page_cap = max_events

        self._with_stream(group, stream, change)

    def endless_empty(self, group: str, stream: str, enabled: bool = True) -> None:
        """Make every GetLogEvents call answer an empty page with a new token."""

        def change(st: _Stream) -> None:
            st.endless = enabled

        self._with_stream(group, stream, change)

    def reject_tokens(self, group: str, stream: str, next_n: int) -> None:
        """Reject the next ``next_n`` GetLogEvents calls on the stream that carry a token."""

        def change(st: _Stream) -> None:
            st.reject_next = next_n

        self._with_stream(group, stream, change)

    def set_token_max_age(self, seconds: float | None) -> None:
        """Reject GetLogEvents tokens issued more than ``seconds`` ago (``None``: never)."""
        with self._lock:
            self._token_max_age_s = seconds

    def expire_tokens(self) -> int:
        """Invalidate every GetLogEvents token issued so far; returns the new generation."""
        with self._lock:
            self._generation += 1
            return self._generation

    def set_throttle(
        self, probability: float, *, operation: str | None = None, unavailable: float = 0.0
    ) -> None:
        """Answer ``ThrottlingException`` with ``probability`` and
        ``ServiceUnavailableException`` (503) with ``unavailable``, drawn from the seeded
        RNG, for ``operation`` (``None``: every operation without its own setting)."""
        if not (0 <= probability and 0 <= unavailable and probability + unavailable <= 1):
            raise ValueError("probabilities must be in [0, 1] and sum to at most 1")
        with self._lock:
            self._throttle[operation] = (probability, unavailable)

    def throttle_next(
        self, n: int, *, operation: str | None = None, code: str = "ThrottlingException"
    ) -> None:
        """Answer the next ``n`` calls of ``operation`` (``None``: any) with ``code``."""
        with self._lock:
            self._throttle_next.setdefault(operation, []).extend([code] * n)

    def garble_next(self, n: int) -> None:
        """Cut the next ``n`` successful GetLogEvents answers in half (status 200,
        a body that is not JSON): a proxy or a network fault, not AWS itself."""
        with self._lock:
            self._garble_next += n

    def stop_garbling(self) -> None:
        """Answer GetLogEvents whole again (cancels every pending ``garble_next``)."""
        with self._lock:
            self._garble_next = 0

    def freeze_stream_stats(
        self,
        group: str,
        stream: str,
        *,
        last_event_timestamp: int | None = None,
        last_ingestion_time: int | None = None,
    ) -> None:
        """DescribeLogStreams reports (and orders by) the stream's current timestamps, or
        the given ones, until ``unfreeze_stream_stats``: eventual consistency."""

        def change(st: _Stream) -> None:
            first, last, ing = st.stats() if st.frozen is None else st.frozen
            st.frozen = (
                first,
                last if last_event_timestamp is None else last_event_timestamp,
                ing if last_ingestion_time is None else last_ingestion_time,
            )

        self._with_stream(group, stream, change)

    def unfreeze_stream_stats(self, group: str, stream: str) -> None:
        """Report the stream's real timestamps again."""

        def change(st: _Stream) -> None:
            st.frozen = None

        self._with_stream(group, stream, change)

    def set_latency(self, seconds: float, *, operation: str | None = None) -> None:
        """Sleep ``seconds`` before answering ``operation`` (``None``: every operation
        without its own setting)."""
        with self._lock:
            self._latency[operation] = seconds

    def reset_faults(self) -> None:
        """Remove every injected fault; data, counters and the call log stay."""
        with self._lock:
            self._throttle.clear()
            self._throttle_next.clear()
            self._garble_next = 0
            self._latency.clear()
            self._token_max_age_s = None
            for grp in self._groups.values():
                for st in grp.streams.values():
                    st.empty_next = st.empty_every = st.empty_seen = st.reject_next = 0
                    st.endless = False
                    st.page_cap = None
                    st.frozen = None
                grp.version += 1
                grp.touched = None  # (stats may have changed: rebuild the order)

    # ------------------------------------------------------------------ observation

    def counts(self, operation: str) -> OpCounts:
        """Calls of ``operation`` so far (injected errors included)."""
        with self._lock:
            s = self._stats.get(operation)
            return OpCounts() if s is None else OpCounts(s.total, s.ok, dict(s.errors))

    def get_calls(
        self, group: str | None = None, stream: str | None = None
    ) -> list[GetLogEventsCall]:
        """The GetLogEvents call log, optionally for one group and/or stream."""
        with self._lock:
            calls = list(self._calls)
        return [
            c
            for c in calls
            if (group is None or c.group == group) and (stream is None or c.stream == stream)
        ]

    def stream_calls(self, group: str, stream: str) -> int:
        """GetLogEvents calls that reached this stream (not throttled before it)."""
        with self._lock:
            return self._known_stream(group, stream).get_calls

    def clear_calls(self) -> None:
        """Empty the GetLogEvents call log and the per-operation counters."""
        with self._lock:
            self._calls.clear()
            self._stats.clear()

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        if not target:
            return self._sts(dict(await request.post()))
        match = _CREDENTIAL_RE.search(request.headers.get("Authorization", ""))
        if match is not None:
            with self._lock:
                self.access_keys[match.group(1)] += 1
        op = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else target
        body = await request.read()
        delay = self._latency.get(op, self._latency.get(None, 0.0))
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            req = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            req = None
        with self._lock:
            status, out = self._dispatch(op, req)
        return web.Response(
            body=out,
            status=status,
            headers={"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _sts(self, form: dict[str, Any]) -> web.Response:
        """STS over the Query protocol: GetCallerIdentity and AssumeRole (refused
        with ``AccessDenied`` while ``deny_assume_role``); anything else 400."""
        action = str(form.get("Action", ""))
        request_id = str(uuid.uuid4())
        with self._lock:
            self.sts_calls.append({k: str(v) for k, v in form.items()})
        ns = "https://sts.amazonaws.com/doc/2011-06-15/"
        if action == "GetCallerIdentity":
            body = (
                f'<GetCallerIdentityResponse xmlns="{ns}"><GetCallerIdentityResult>'
                f"<Arn>arn:aws:iam::{self.account_id}:user/fake</Arn><UserId>AIDAFAKE</UserId>"
                f"<Account>{self.account_id}</Account></GetCallerIdentityResult>"
                f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
                "</GetCallerIdentityResponse>"
            )
            return web.Response(body=body.encode(), content_type="text/xml")
        if action == "AssumeRole" and not self.deny_assume_role:
            role = str(form.get("RoleArn", ""))
            session = str(form.get("RoleSessionName", ""))
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock() + 3600))
            key = "ASIA" + secrets.token_hex(8).upper()
            body = (
                f'<AssumeRoleResponse xmlns="{ns}"><AssumeRoleResult><Credentials>'
                f"<AccessKeyId>{key}</AccessKeyId><SecretAccessKey>fake</SecretAccessKey>"
                f"<SessionToken>fake-session</SessionToken><Expiration>{expires}</Expiration>"
                f"</Credentials><AssumedRoleUser><AssumedRoleId>AROAFAKE:{session}</AssumedRoleId>"
                f"<Arn>{role.replace(':iam:', ':sts:').replace(':role/', ':assumed-role/')}/"
                f"{session}</Arn></AssumedRoleUser></AssumeRoleResult>"
                f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
                "</AssumeRoleResponse>"
            )
            return web.Response(body=body.encode(), content_type="text/xml")
        if action == "AssumeRole":
            code, status = "AccessDenied", 403
            message = (
                f"User: arn:aws:iam::{self.account_id}:user/fake is not authorized to perform: "
                f"sts:AssumeRole on resource: {form.get('RoleArn', '')}"
            )
        else:
            code, status, message = "InvalidAction", 400, f"Could not find operation {action}"
        body = (
            f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        )
        return web.Response(status=status, body=body.encode(), content_type="text/xml")

    def set_group_class(self, name: str, log_class: str) -> None:
        """``logGroupClass`` of a group. GetLogEvents on a group of a class in
        ``refused_classes`` is refused (``class_refusal_message``)."""
        with self._lock:
            self._group(name).log_class = log_class

    def set_retention(self, name: str, days: int | None) -> None:
        """``retentionInDays`` shown by DescribeLogGroups (None: never expire);
        events are not removed by it here."""
        with self._lock:
            self._group(name).retention_days = days

    def set_data_protection(self, name: str, status: str | None) -> None:
        """``dataProtectionStatus`` shown by DescribeLogGroups (e.g. ``ACTIVATED``)."""
        with self._lock:
            self._group(name).data_protection = status

    def _dispatch(self, op: str, req: Any) -> tuple[int, bytes]:
        stats = self._stats.get(op)
        if stats is None:
            stats = self._stats[op] = _OpStats()
        stats.total += 1
        info: dict[str, Any] = {}
        try:
            listing = op == "ListLogGroups" and self.list_log_groups
            if op == "ListLogGroups" and self.deny_list_log_groups:
                raise ApiError(
                    "AccessDeniedException",
                    "User is not authorized to perform: logs:ListLogGroups",
                )
            if op != "GetLogEvents" and op not in self._ops and not listing:
                raise ApiError("UnknownOperationException", f"Unknown operation {op!r}")
            if not isinstance(req, dict):
                raise ApiError("SerializationException", "Request body is not a JSON object.")
            self._inject_throttle(op)
            if op == "GetLogEvents":
                out = self._op_get_log_events(req, info)
            elif listing:
                out = self._op_list_log_groups(req)
            else:
                out = self._ops[op](req)
        except ApiError as exc:
            stats.errors[exc.code] += 1
            info["error"] = exc.code
            info.setdefault("note", exc.message)
            status, out = exc.status, orjson.dumps({"__type": exc.code, "message": exc.message})
        else:
            stats.ok += 1
            status = 200
            if op == "GetLogEvents" and self._garble_next > 0:  # under self._lock
                self._garble_next -= 1
                out = out[: len(out) // 2]
                info["note"] = "garbled"
        if op == "GetLogEvents" and self._log_calls:
            self._log_get(req if isinstance(req, dict) else {}, info)
        return status, out

    def _log_get(self, req: dict[str, Any], info: dict[str, Any]) -> None:
        limit = req.get("limit")
        start, end = req.get("startTime"), req.get("endTime")
        self._calls.append(
            GetLogEventsCall(
                group=info.get("group") or req.get("logGroupName") or req.get("logGroupIdentifier"),
                stream=req.get("logStreamName"),
                token=req.get("nextToken"),
                start_time=start if isinstance(start, int) else None,
                end_time=end if isinstance(end, int) else None,
                start_from_head=bool(req.get("startFromHead", False)),
                limit=limit if isinstance(limit, int) else None,
                returned=info.get("returned", 0),
                next_forward_token=info.get("next_forward_token"),
                error=info.get("error"),
                note=info.get("note", ""),
            )
        )

    def _inject_throttle(self, op: str) -> None:
        for key in (op, None):
            queue = self._throttle_next.get(key)
            if queue:
                code = queue.pop(0)
                raise self._throttle_error(code)
        p_throttle, p_unavailable = self._throttle.get(op, self._throttle.get(None, (0.0, 0.0)))
        if p_throttle or p_unavailable:
            r = self._rng.random()
            if r < p_throttle:
                raise self._throttle_error("ThrottlingException")
            if r < p_throttle + p_unavailable:
                raise self._throttle_error("ServiceUnavailableException")

    @staticmethod
    def _throttle_error(code: str) -> ApiError:
        if code == "ServiceUnavailableException":
            return ApiError(code, "The service is unavailable. Please try again later.", 503)
        if code == "ThrottlingException":
            return ApiError(code, "Rate exceeded")
        return ApiError(code, "Injected error")

    def _resolve_group(self, req: dict[str, Any]) -> _Group:
        name = _opt_str(req, "logGroupName")
        ident = _opt_str(req, "logGroupIdentifier")
        if name is not None and ident is not None:
            raise _invalid(
                "LogGroup name and LogGroup identifier are mutually exclusive parameters."
            )
        if ident is not None:
            arn_prefix = f"arn:aws:logs:{self.region}:{self.account_id}:log-group:"
            if ident.startswith("arn:"):
                if not ident.startswith(arn_prefix) or ident.endswith(":*"):
                    raise _invalid(f"Invalid log group identifier: {ident}")
                ident = ident[len(arn_prefix) :]
            name = ident
        if name is None:
            raise _invalid("Either logGroupName or logGroupIdentifier must be given.")
        return self._group(name)

    def _group_arn(self, name: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{name}"

    # ------------------------------------------------------------------ paging tokens

    def _event_token(self, direction: str, st: _Stream, pos: int) -> str:
        body = (
            f"{st.uid % 10**8:08d}{self._generation % 10**4:04d}{self._now_ms() % 10**13:013d}"
            f"{pos + 1:026d}{next(self._serial) % 10**9:09d}"
        )
        check = zlib.crc32(self._salt + body.encode()) % 10**6
        return f"{direction}/{body}{check:06d}/s"

    def _check_event_token(self, st: _Stream, token: str, info: dict[str, Any]) -> tuple[str, int]:
        m = _TOKEN_RE.fullmatch(token)
        reason = ""
        if m is None:
            reason = "token-malformed"
        else:
            digits = m.group(2)
            body, check = digits[:60], int(digits[60:])
            if zlib.crc32(self._salt + body.encode()) % 10**6 != check:
                reason = "token-malformed"
            elif int(body[0:8]) != st.uid % 10**8:
                reason = "token-other-stream"
            elif int(body[8:12]) != self._generation % 10**4:
                reason = "token-expired-generation"
            elif (
                self._token_max_age_s is not None
                and self._now_ms() - int(body[12:25]) > self._token_max_age_s * 1000
            ):
                reason = "token-expired-age"
            elif st.reject_next > 0:
                st.reject_next -= 1
                reason = "token-rejected"
        if m is None or reason:
            info["note"] = reason
            raise _invalid(INVALID_TOKEN_MESSAGE)
        return m.group(1), int(m.group(2)[25:51]) - 1

    def _list_token(self, offset: int, fingerprint: str) -> str:
        body = f"{offset:010d}"
        check = zlib.crc32(self._salt + fingerprint.encode() + body.encode()) % 10**6
        return f"{body}{check:06d}"

    def _list_offset(self, token: str | None, fingerprint: str) -> int:
        if token is None:
            return 0
        m = _LIST_TOKEN_RE.fullmatch(token)
        if m is None or self._list_token(int(m.group(1)), fingerprint) != token:
            raise _invalid(INVALID_TOKEN_MESSAGE)
        return int(m.group(1))

    # ------------------------------------------------------------------ operations

    def _op_get_log_events(self, req: dict[str, Any], info: dict[str, Any]) -> bytes:
        group = self._resolve_group(req)
        name = _opt_str(req, "logStreamName")
        if name is None:
            raise _invalid("logStreamName is required.")
        info["group"] = group.name
        if group.log_class in self.refused_classes:
            raise ApiError("InvalidOperationException", self.class_refusal_message)
        if req.get("unmask"):
            self.unmask_calls += 1
        if req.get("unmask") and self.refuse_unmask:
            raise ApiError(
                "AccessDeniedException",
                f"User is not authorized to perform: logs:Unmask on resource: "
                f"{self._group_arn(group.name)}",
            )
        st = group.streams.get(name)
        if st is None:
            raise ApiError("ResourceNotFoundException", "The specified log stream does not exist.")
        st.get_calls += 1
        start = _opt_int(req, "startTime", 0, 2**63 - 1)
        end = _opt_int(req, "endTime", 0, 2**63 - 1)
        limit = _opt_int(req, "limit", 1, MAX_GET_LIMIT) or MAX_GET_LIMIT
        head = bool(req.get("startFromHead", False))
        token = _opt_str(req, "nextToken")
        keys = st.keys
        lo_pos = min(start, _MAX_TS + 1) * _SEQ_SPAN if start is not None else 0
        hi_pos = min(end, _MAX_TS + 1) * _SEQ_SPAN if end is not None else _MAX_POS
        lo = bisect.bisect_left(keys, lo_pos)
        hi = bisect.bisect_left(keys, hi_pos)
        if token is not None:
            direction, pos = self._check_event_token(st, token, info)
            if direction == "f" and not head and self.strict_start_from_head:
                info["note"] = "forward-token-without-startFromHead"
                raise _invalid(START_FROM_HEAD_MESSAGE)
        else:
            direction = "f" if head else "b"
            pos = lo_pos - 1 if head else hi_pos
        forward = direction == "f"

        empty_note = self._take_empty(st)
        if empty_note:
            info["note"] = empty_note
            fwd = self._event_token("f", st, pos if forward else pos - 1)
            bwd = self._event_token("b", st, pos + 1 if forward else pos)
            return self._page(info, [], fwd, bwd)

        cap = min(limit, st.page_cap or limit)
        cum = st.cum
        if forward:
            a = max(lo, bisect.bisect_right(keys, pos))
            b = min(hi, a + cap)
            if b > a:
                b = min(b, max(a + 1, bisect.bisect_right(cum, cum[a] + MAX_PAGE_BYTES) - 1))
        else:
            b = min(hi, bisect.bisect_left(keys, pos))
            a = max(lo, b - cap)
            if b > a:
                a = max(a, min(b - 1, bisect.bisect_left(cum, cum[b] - MAX_PAGE_BYTES)))
        if a < b:
            fwd = self._event_token("f", st, keys[b - 1])
            bwd = self._event_token("b", st, keys[a])
            return self._page(info, st.frags[a:b], fwd, bwd)
        # Nothing to return: the token passed in comes back unchanged (end of stream).
        if token is not None and forward:
            fwd, bwd = token, self._event_token("b", st, pos + 1)
        elif token is not None:
            fwd, bwd = self._event_token("f", st, pos - 1), token
        else:
            fwd, bwd = self._event_token("f", st, lo_pos - 1), self._event_token("b", st, lo_pos)
        return self._page(info, [], fwd, bwd)

    @staticmethod
    def _take_empty(st: _Stream) -> str:
        if st.endless:
            return "endless-empty"
        if st.empty_next > 0:
            st.empty_next -= 1
            return "injected-empty"
        if st.empty_every > 0:
            st.empty_seen += 1
            if st.empty_seen % st.empty_every == 0:
                return "injected-empty"
        return ""

    @staticmethod
    def _page(info: dict[str, Any], frags: list[bytes], fwd: str, bwd: str) -> bytes:
        info["returned"] = len(frags)
        info["next_forward_token"] = fwd
        return b"".join(
            (
                b'{"events":[',
                b",".join(frags),
                b'],"nextForwardToken":"',
                fwd.encode(),
                b'","nextBackwardToken":"',
                bwd.encode(),
                b'"}',
            )
        )

    def _ordered_streams(self, group: _Group, descending: bool) -> list[_Stream]:
        """The streams by name (LastEventTime is :meth:`_Group.by_last_event`)."""
        hit = group.order_cache.get(("LogStreamName", descending))
        if hit is not None and hit[0] == group.version:
            return hit[1]
        streams = sorted(group.streams.values(), key=lambda s: s.name, reverse=descending)
        group.order_cache[("LogStreamName", descending)] = (group.version, streams)
        return streams

    def _op_describe_log_streams(self, req: dict[str, Any]) -> bytes:
        group = self._resolve_group(req)
        prefix = _opt_str(req, "logStreamNamePrefix")
        order = req.get("orderBy", "LogStreamName")
        if order not in ("LogStreamName", "LastEventTime"):
            raise _invalid(f"Invalid orderBy: {order}")
        if prefix is not None and order == "LastEventTime":
            raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        descending = bool(req.get("descending", False))
        limit = _opt_int(req, "limit", 1, MAX_DESCRIBE_LIMIT) or MAX_DESCRIBE_LIMIT
        fingerprint = f"streams/{group.uid}/{order}/{descending}/{prefix}"
        offset = self._list_offset(_opt_str(req, "nextToken"), fingerprint)
        page: list[_Stream]
        if order == "LastEventTime":
            keys = group.by_last_event()
            total = len(keys)
            if descending:
                keys = keys[max(0, total - offset - limit) : max(0, total - offset)][::-1]
            else:
                keys = keys[offset : offset + limit]
            page = [group.streams[name] for _, name in keys]
        else:
            view = self._ordered_streams(group, descending)
            if prefix is not None:
                view = [s for s in view if s.name.startswith(prefix)]
            total = len(view)
            page = view[offset : offset + limit]
        arn = self._group_arn(group.name)
        items = []
        for st in page:
            item: dict[str, Any] = {
                "logStreamName": st.name,
                "creationTime": st.creation_ms,
                "arn": f"{arn}:log-stream:{st.name}",
                "storedBytes": 0,
            }
            first, last, ingestion = st.stats()
            for key, value in (
                ("firstEventTimestamp", first),
                ("lastEventTimestamp", last),
                ("lastIngestionTime", ingestion),
            ):
                if value is not None:
                    item[key] = value
            items.append(item)
        out: dict[str, Any] = {"logStreams": items}
        if offset + limit < total:
            out["nextToken"] = self._list_token(offset + limit, fingerprint)
        return orjson.dumps(out)

    def _op_describe_log_groups(self, req: dict[str, Any]) -> bytes:
        prefix = _opt_str(req, "logGroupNamePrefix")
        self.described_prefixes.append(prefix)
        pattern = req.get("logGroupNamePattern")
        if prefix is not None and pattern is not None:
            raise _invalid(
                "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters."
            )
        limit = _opt_int(req, "limit", 1, MAX_DESCRIBE_LIMIT) or MAX_DESCRIBE_LIMIT
        fingerprint = f"groups/{prefix}/{pattern}"
        offset = self._list_offset(_opt_str(req, "nextToken"), fingerprint)
        version, names = self._groups_sorted
        if version != self._groups_version:
            names = sorted(self._groups)
            self._groups_sorted = (self._groups_version, names)
        if prefix is not None:
            names = names[bisect.bisect_left(names, prefix) :]
            names = list(itertools.takewhile(lambda n: n.startswith(prefix), names))
        elif isinstance(pattern, str) and pattern:
            names = [n for n in names if pattern in n]
        items = []
        for name in names[offset : offset + limit]:
            group = self._groups[name]
            arn = self._group_arn(name)
            item: dict[str, Any] = {
                "logGroupName": name,
                "creationTime": group.creation_ms,
                "arn": f"{arn}:*",
            }
            if pattern is None:
                item.update(
                    logGroupArn=arn,
                    storedBytes=0,
                    metricFilterCount=0,
                    logGroupClass=group.log_class,
                )
                if group.data_protection is not None:
                    item["dataProtectionStatus"] = group.data_protection
                if group.retention_days is not None:
                    item["retentionInDays"] = group.retention_days
            items.append(item)
        out: dict[str, Any] = {"logGroups": items}
        if offset + limit < len(names):
            out["nextToken"] = self._list_token(offset + limit, fingerprint)
        return orjson.dumps(out)

    def _op_list_log_groups(self, req: dict[str, Any]) -> bytes:
        """ListLogGroups: regex ``logGroupNamePattern`` (case-insensitive), 1,000 a
        page, name, ARN and class only."""
        pattern = _opt_str(req, "logGroupNamePattern")
        if pattern is not None and not _LIST_PATTERN.fullmatch(pattern):
            # AWS's model (LogGroupNameRegexPattern): up to five alternatives of
            # 3 to 24 name characters, each maybe after a ``^``.
            raise _invalid(
                f"1 validation error detected: Value '{pattern}' at "
                "'logGroupNamePattern' failed to satisfy constraint"
            )
        limit = _opt_int(req, "limit", 1, 1000) or 1000
        fingerprint = f"list/{pattern}"
        offset = self._list_offset(_opt_str(req, "nextToken"), fingerprint)
        names = sorted(self._groups)
        if pattern:
            regex = re.compile(pattern, re.IGNORECASE)
            names = [n for n in names if regex.search(n)]
        items = [
            {
                "logGroupName": name,
                "logGroupArn": self._group_arn(name),
                "logGroupClass": self._groups[name].log_class,
            }
            for name in names[offset : offset + limit]
        ]
        out: dict[str, Any] = {"logGroups": items}
        if offset + limit < len(names):
            out["nextToken"] = self._list_token(offset + limit, fingerprint)
        return orjson.dumps(out)

    def _op_create_log_group(self, req: dict[str, Any]) -> bytes:
        name = _opt_str(req, "logGroupName")
        if name is None:
            raise _invalid("logGroupName is required.")
        if name in self._groups:
            raise ApiError(
                "ResourceAlreadyExistsException", "The specified log group already exists"
            )
        self._add_group(name, None)
        return b"{}"

    def _op_create_log_stream(self, req: dict[str, Any]) -> bytes:
        group = self._resolve_group(req)
        name = _opt_str(req, "logStreamName")
        if name is None:
            raise _invalid("logStreamName is required.")
        if name in group.streams:
            raise ApiError(
                "ResourceAlreadyExistsException", "The specified log stream already exists"
            )
        self._add_stream(group.name, name, None)
        return b"{}"

    def _op_put_log_events(self, req: dict[str, Any]) -> bytes:
        group = self._resolve_group(req)
        name = _opt_str(req, "logStreamName")
        st = group.streams.get(name or "")
        if st is None:
            raise ApiError("ResourceNotFoundException", "The specified log stream does not exist.")
        raw = req.get("logEvents")
        if not isinstance(raw, list) or not raw:
            raise _invalid("logEvents must be a non-empty list.")
        events: list[tuple[int, str]] = []
        for ev in raw:
            ts = ev.get("timestamp") if isinstance(ev, dict) else None
            message = ev.get("message") if isinstance(ev, dict) else None
            if type(ts) is not int or not isinstance(message, str) or not 0 <= ts <= _MAX_TS:
                raise _invalid("Each log event needs an integer timestamp and a message.")
            events.append((ts, message))
        if any(a[0] > b[0] for a, b in itertools.pairwise(events)):
            raise _invalid(
                "Log events in a single PutLogEvents request must be in chronological order."
            )
        self._put(st, events, None)
        group.touch(st.name)
        return b"{}"

    def _op_delete_log_stream(self, req: dict[str, Any]) -> bytes:
        group = self._resolve_group(req)
        name = _opt_str(req, "logStreamName")
        if group.streams.pop(name or "", None) is None:
            raise ApiError("ResourceNotFoundException", "The specified log stream does not exist.")
        group.touch(name or "")
        return b"{}"

    def _op_delete_log_group(self, req: dict[str, Any]) -> bytes:
        group = self._resolve_group(req)
        del self._groups[group.name]
        self._groups_version += 1
        return b"{}"


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone until SIGINT/SIGTERM; prints ``ENDPOINT <url>``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with FakeCloudWatchLogs(
            region=args.region, seed=args.seed, host=args.host, port=args.port
        ) as fake:
            print(f"ENDPOINT {fake.endpoint_url}", flush=True)
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
