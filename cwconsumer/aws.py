"""CloudWatch Logs edge: one aiobotocore client, a fast response parser,
shared adaptive rates, whole-call timeouts, and botocore errors translated
into :mod:`cwconsumer.errors`.

Credentials: the standard chain (the ECS task role), or, with
``CWC_AWS_ROLE_ARN``, that role assumed with STS by aiobotocore's own
refreshable assume-role credentials (:func:`install_assumed_role`): the
first AssumeRole happens at the first call, and botocore refreshes the
temporary credentials before they expire. A refused AssumeRole surfaces as
:class:`~cwconsumer.errors.AccessDenied` naming the role (never the external id).

Groups are named, or given by ARN (:mod:`cwconsumer.arns`): an ARN is sent as
``logGroupIdentifier`` (cross-account observability), a name as
``logGroupName``.

Retries: botocore's own retrying is switched off (``standard`` mode with one
attempt) so that every throttle reaches :class:`~cwconsumer.ratelimit.AdaptiveRate`
and the metrics; the callers retry on their own schedule (``retriable``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import anyio
import msgspec
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from cwconsumer.arns import group_name, is_group_arn, parse_group_arn
from cwconsumer.awsparse import decode_get_log_events, make_session
from cwconsumer.awsrole import AssumeRole, aws_role, install_assumed_role
from cwconsumer.errors import (
    AccessDenied,
    AwsError,
    ClassRefused,
    NotFound,
    Throttled,
    TokenRejected,
)
from cwconsumer.model import LogEvent
from cwconsumer.ratelimit import AdaptiveRate

__all__ = [
    "AssumeRole",
    "LogsClient",
    "Page",
    "aws_role",
    "decode_get_log_events",
    "install_assumed_role",
    "list_pattern",
    "make_session",
]

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

# ListLogGroups' logGroupNamePattern (botocore's model: LogGroupNameRegexPattern)
# takes 3 to 24 of these characters after the ``^``; longer prefixes are cut
# (and the answer filtered), shorter ones are listed with DescribeLogGroups.
_PATTERN_CHARS = frozenset("._-/#ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_PATTERN_MAX = 24


def list_pattern(prefix: str) -> str | None:
    """The ListLogGroups pattern listing every group whose name starts with
    ``prefix`` (and maybe more), or None when no valid pattern can."""
    head = prefix[:_PATTERN_MAX]
    if len(head) < 3 or not set(head) <= _PATTERN_CHARS:
        return None
    return "^" + head


# ListLogGroups answers for these when the endpoint or the policy lacks it:
# prefix discovery falls back to DescribeLogGroups for good.
_NO_LIST_CODES = frozenset(
    {"UnknownOperationException", "InvalidAction", "NotImplemented", "ValidationException"}
)


@dataclass(slots=True)
class Page:
    """One GetLogEvents answer: its events and the forward token after it."""

    events: list[LogEvent]
    next_token: str


CallObserver = Callable[[str, str], None]
"""``observe(operation, outcome)`` with outcome ok / throttled / denied / error."""


class CallWatch(Protocol):
    """Hears when each call leaves and when it ends, whatever ends it
    (:class:`cwconsumer.health.Health`): a call that never answers is seen
    while it waits, not only once its timeout fires."""

    def aws_call_started(self, operation: str) -> float: ...

    def aws_call_ended(self, operation: str, started: float) -> None: ...


class LogsClient:
    """The CloudWatch Logs edge: ``async with LogsClient(...) as logs``.

    Every call is rate-limited (``get_rate`` for GetLogEvents,
    ``describe_rate`` for the Describe/List calls, all callers together),
    bounded by ``timeout_s`` as a whole, and its botocore errors translated
    into :mod:`cwconsumer.errors` (throttling, not found, access denied, a
    rejected token). With ``role`` the calls go through an assumed role,
    refreshed before it expires; ``observe(operation, outcome)`` hears of
    every call (metrics and health), ``calls`` of each one leaving and ending."""

    def __init__(
        self,
        region: str,
        *,
        get_rate: float,
        describe_rate: float,
        timeout_s: float,
        max_connections: int = 32,
        observe: CallObserver | None = None,
        calls: CallWatch | None = None,
        role: AssumeRole | None = None,
        unmask: bool = False,
        include_linked_accounts: bool = False,
    ) -> None:
        self.region = region
        self.timeout_s = timeout_s
        self.role = role
        self.unmask = unmask
        self.include_linked_accounts = include_linked_accounts
        self.list_groups_available = True  # ListLogGroups until it proves missing
        describe = AdaptiveRate(describe_rate)
        self.rates = {
            "GetLogEvents": AdaptiveRate(get_rate),
            "DescribeLogStreams": AdaptiveRate(describe_rate),
            "DescribeLogGroups": describe,
            "ListLogGroups": describe,  # the same account-wide budget for listing groups
        }
        self._observe = observe or (lambda op, outcome: None)
        self._calls = calls
        self._config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=min(10.0, timeout_s),
            read_timeout=timeout_s,
            max_pool_connections=max_connections,
            tcp_keepalive=True,
        )
        self._client: Any = None
        self._cm: Any = None
        self._session: AioSession | None = None

    async def __aenter__(self) -> LogsClient:
        session = self._session = make_session()
        if self.role is not None:
            install_assumed_role(session, self.role, self.region, self._config)
        self._cm = session.create_client("logs", region_name=self.region, config=self._config)
        self._client = await self._cm.__aenter__()
        # Every paced call is checked again as its request leaves (ratelimit).
        service = self._client.meta.service_model.service_id.hyphenize()
        for op, rate in self.rates.items():
            if op != "ListLogGroups":  # shares DescribeLogGroups' rate: one departure check
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
            started = self._calls.aws_call_started(op) if self._calls is not None else 0.0
            try:
                with anyio.fail_after(self.timeout_s + 5):
                    result: dict[str, Any] = await method(**params)
            finally:
                if self._calls is not None:
                    self._calls.aws_call_ended(op, started)
        except TimeoutError as exc:
            self._observe(op, "error")
            raise AwsError(f"{op} timed out after {self.timeout_s:g}s", retriable=True) from exc
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            message = str(err.get("Message", ""))[:300]
            if getattr(exc, "operation_name", "") == "AssumeRole":
                raise self._assume_role_failed(code, message) from exc
            if op == "ListLogGroups" and code in _DENIED_CODES:
                # A policy without logs:ListLogGroups (older ones): expected, and
                # the caller falls back; not a refusal for /healthz.
                self._observe(op, "error")
                raise AccessDenied(f"{op}: {code}: {message}", code=code) from exc
            if op == "ListLogGroups" and not code.isalpha():
                # An endpoint that does not know the operation (moto answers an
                # HTML 500): not throttling; the caller falls back.
                self._observe(op, "error")
                raise AwsError(
                    f"{op}: not served by this endpoint ({code})", code="NotImplemented"
                ) from exc
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
            if op == "GetLogEvents" and _refused_for_class(code, message):
                raise ClassRefused(f"{op}: {code}: {message}", code=code) from exc
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

    def _assume_role_failed(self, code: str, message: str) -> AccessDenied:
        role = self.role.role_arn if self.role is not None else "?"
        self._observe("AssumeRole", "denied" if code in _DENIED_CODES else "error")
        text = f"AssumeRole of {role} refused: {code}: {message}"
        if code in _THROTTLE_CODES:
            return AccessDenied(text, code=code, retriable=True)
        return AccessDenied(text, code=code)

    async def describe_log_groups(
        self,
        prefix: str | None,
        next_token: str | None,
        *,
        identifiers: list[str] | None = None,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of DescribeLogGroups (by ``prefix``, or by ARN/name
        ``identifiers``): the groups and the next token."""
        params: dict[str, Any] = {"limit": limit}
        if prefix:
            params["logGroupNamePrefix"] = prefix
        if identifiers:
            params["logGroupIdentifiers"] = identifiers
        if self.include_linked_accounts and not identifiers:
            params["includeLinkedAccounts"] = True
        if next_token:
            params["nextToken"] = next_token
        r = await self._call("DescribeLogGroups", **params)
        return list(r.get("logGroups", [])), r.get("nextToken")

    async def describe_group(self, group: str) -> dict[str, Any] | None:
        """The DescribeLogGroups entry of one group, by name or ARN (None: not
        listed, e.g. deleted). Carries ``logGroupClass``,
        ``dataProtectionStatus`` and ``retentionInDays`` where AWS reports them."""
        if is_group_arn(group):
            found, _ = await self.describe_log_groups(None, None, identifiers=[group])
        else:
            found, _ = await self.describe_log_groups(group, None)
        name = group_name(group)
        return next((g for g in found if g.get("logGroupName") == name), None)

    async def list_groups(
        self, prefix: str, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the groups whose name starts with ``prefix``: ListLogGroups
        (1,000 a page) where the endpoint and the policy allow it, else
        DescribeLogGroups (50 a page), for good after the first refusal. Items
        have ``logGroupName`` and, when the API gives it, ``logGroupArn`` /
        ``arn`` and ``logGroupClass``. A token from one operation is never
        given to the other: a switch starts the listing again."""
        pattern = list_pattern(prefix)
        if self.list_groups_available and pattern is not None:
            params: dict[str, Any] = {"limit": 1000, "logGroupNamePattern": pattern}
            if self.include_linked_accounts:
                params["includeLinkedAccounts"] = True
            if next_token:
                params["nextToken"] = next_token
            try:
                r = await self._call("ListLogGroups", **params)
            except (AccessDenied, AwsError) as exc:
                if isinstance(exc, Throttled) or (
                    not isinstance(exc, AccessDenied) and exc.code not in _NO_LIST_CODES
                ):
                    raise
                self.list_groups_available = False
                log.info(
                    "ListLogGroups is not available; listing groups with DescribeLogGroups",
                    extra={"error": str(exc)[:200]},
                )
                return await self.describe_log_groups(prefix, None)
            # The pattern may be a shortened prefix: keep the exact prefix only.
            groups = [
                g
                for g in r.get("logGroups", [])
                if str(g.get("logGroupName", "")).startswith(prefix)
            ]
            return groups, r.get("nextToken")
        return await self.describe_log_groups(prefix, next_token)

    async def assume_role_now(self) -> None:
        """Assume the configured role at once (``check``); raises
        :class:`AccessDenied` naming the role when STS refuses."""
        assert self._session is not None and self.role is not None
        try:
            with anyio.fail_after(self.timeout_s + 5):
                credentials = await self._session.get_credentials()
                await credentials.get_frozen_credentials()
        except TimeoutError as exc:
            raise AwsError(
                f"AssumeRole of {self.role.role_arn}: no answer", retriable=True
            ) from exc
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = str(err.get("Code", "")), str(err.get("Message", ""))[:300]
            raise self._assume_role_failed(code, message) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise AccessDenied(
                f"AssumeRole of {self.role.role_arn}: no base AWS credentials found"
            ) from exc
        except (BotoCoreError, OSError) as exc:
            raise AwsError(
                f"AssumeRole of {self.role.role_arn}: {type(exc).__name__}: {exc}", retriable=True
            ) from exc

    async def caller_account(self) -> str:
        """The AWS account id the credentials read from: the assumed role's
        account; else the account in the ARN of one of the credentials' own
        groups (DescribeLogGroups, on the CloudWatch Logs endpoint that every
        other call uses, so that no STS endpoint is needed: a VPC with only a
        logs endpoint, or ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`` alone); else,
        in an account without groups yet, STS GetCallerIdentity (allowed to
        every principal). The answers agree: a group's ARN names the account
        that owns it, and without linked accounts only the own ones are listed."""
        if self.role is not None:
            return self.role.account
        listed = await self._call("DescribeLogGroups", limit=1)
        for g in listed.get("logGroups", []):
            arn = parse_group_arn(str(g.get("logGroupArn") or g.get("arn") or ""))
            if arn is not None:
                return arn.account
        assert self._session is not None
        try:
            with anyio.fail_after(self.timeout_s + 5):
                async with self._session.create_client(
                    "sts", region_name=self.region, config=self._config
                ) as sts:
                    answer = await sts.get_caller_identity()
        except TimeoutError as exc:
            self._observe("GetCallerIdentity", "error")
            raise AwsError(
                f"GetCallerIdentity timed out after {self.timeout_s:g}s", retriable=True
            ) from exc
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = str(err.get("Code", "")), str(err.get("Message", ""))[:300]
            if getattr(exc, "operation_name", "") == "AssumeRole":
                raise self._assume_role_failed(code, message) from exc
            self._observe("GetCallerIdentity", "denied" if code in _DENIED_CODES else "error")
            raise AwsError(f"GetCallerIdentity: {code}: {message}", code=code) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            self._observe("GetCallerIdentity", "denied")
            raise AccessDenied(
                f"GetCallerIdentity: no AWS credentials found ({type(exc).__name__})"
            ) from exc
        except (BotoCoreError, OSError) as exc:
            self._observe("GetCallerIdentity", "error")
            raise AwsError(
                f"GetCallerIdentity: {type(exc).__name__}: {exc}", retriable=True
            ) from exc
        self._observe("GetCallerIdentity", "ok")
        return str(answer.get("Account", ""))

    async def describe_log_streams(
        self, group: str, next_token: str | None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a group's streams, most recent event first: the
        streams and the next token."""
        params: dict[str, Any] = {
            **_group_param(group),
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
        """One page of a stream's events, forward from ``token`` (or from
        ``start_time_ms``, or the head); ``paced=False`` when the caller
        already took the rate's slot (:meth:`pace`)."""
        params: dict[str, Any] = {
            **_group_param(group),
            "logStreamName": stream,
            "startFromHead": True,  # required when paging forward with a token
            "limit": max(1, min(10000, limit)),
        }
        if self.unmask:
            params["unmask"] = True
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
    "ListLogGroups": "list_log_groups",
}


def _group_param(group: str) -> dict[str, str]:
    """``logGroupIdentifier`` for a group given by ARN, else ``logGroupName``."""
    if is_group_arn(group):
        return {"logGroupIdentifier": group}
    return {"logGroupName": group}


_CLASS_WORDS = ("log class", "loggroupclass", "infrequent_access", "infrequent access", "delivery")


def _refused_for_class(code: str, message: str) -> bool:
    """A GetLogEvents refusal that names the group's log class: the class does
    not support the operation, and asking again will not change that."""
    text = message.lower()
    return code in {
        "InvalidParameterException",
        "InvalidOperationException",
        "ValidationException",
    } and any(word in text for word in _CLASS_WORDS)
