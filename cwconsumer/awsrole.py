"""Reading through an assumed role (``CWC_AWS_ROLE_ARN``, ``CWC_AWS_EXTERNAL_ID``,
``CWC_AWS_ROLE_SESSION_NAME``): aiobotocore's own refreshable assume-role
credentials put first in a session's chain (:func:`install_assumed_role`);
the first AssumeRole happens at the first call, and botocore refreshes the
temporary credentials before they expire. The external id is a secret: never
in ``repr`` nor in a message."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioDeferredRefreshableCredentials,
)
from aiobotocore.session import AioSession, get_session
from botocore.credentials import CredentialProvider
from botocore.exceptions import NoCredentialsError

from cwconsumer.arns import role_account


@dataclass(frozen=True, slots=True)
class AssumeRole:
    """``CWC_AWS_ROLE_ARN`` and friends. ``external_id`` is a secret: kept out
    of ``repr`` and every message."""

    role_arn: str
    session_name: str = "cwconsumer"
    external_id: str | None = field(default=None, repr=False)

    @property
    def account(self) -> str:
        return role_account(self.role_arn)


class _OneLineRefreshFailure(logging.Filter):
    """botocore logs a failed credential refresh at WARNING *with a traceback*;
    the product's logs carry no tracebacks for an outside failure: keep the
    line, with the error's one-line text instead. (The failure itself reaches
    the caller as :class:`AccessDenied` naming the role.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"[:500]
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


for _name in ("aiobotocore.credentials", "botocore.credentials"):
    logging.getLogger(_name).addFilter(_OneLineRefreshFailure())


class RoleSettings(Protocol):
    """The part of the configuration :func:`aws_role` reads (``Config`` has it)."""

    @property
    def aws_role_arn(self) -> str | None: ...
    @property
    def aws_role_session_name(self) -> str: ...
    @property
    def aws_external_id(self) -> Any: ...


def aws_role(settings: RoleSettings) -> AssumeRole | None:
    """The role to assume, from ``CWC_AWS_ROLE_ARN`` and friends (None: none)."""
    if not settings.aws_role_arn:
        return None
    external = settings.aws_external_id
    return AssumeRole(
        settings.aws_role_arn,
        settings.aws_role_session_name,
        external.get() if external is not None else None,
    )


class _AssumedRoleProvider(CredentialProvider):  # type: ignore[misc]
    """Puts the refreshable assumed-role credentials first in a session's chain."""

    METHOD = "cwconsumer-assume-role"

    def __init__(self, credentials: Any) -> None:
        super().__init__()
        self._credentials = credentials

    async def load(self) -> Any:
        return self._credentials


def install_assumed_role(
    session: AioSession, role: AssumeRole, region: str, config: AioConfig
) -> None:
    """Make ``session`` sign with ``role``'s temporary credentials.

    aiobotocore's :class:`AioAssumeRoleCredentialFetcher` calls STS with the
    base credentials (the standard chain of a separate session: environment,
    ECS task role, instance profile...) and caches the answer until shortly
    before it expires; :class:`AioDeferredRefreshableCredentials` calls it at
    first use and again before expiry (botocore's advisory and mandatory
    refresh windows). Nothing here loops or sleeps.
    """
    base = get_session()
    fetcher: AioAssumeRoleCredentialFetcher | None = None
    extra: dict[str, Any] = {"RoleSessionName": role.session_name}
    if role.external_id:
        extra["ExternalId"] = role.external_id

    def sts_client(service: str, **kwargs: Any) -> Any:
        return base.create_client(service, region_name=region, config=config, **kwargs)

    async def refresh() -> Any:
        nonlocal fetcher
        if fetcher is None:
            source = await base.get_credentials()
            if source is None:
                raise NoCredentialsError()
            fetcher = AioAssumeRoleCredentialFetcher(
                client_creator=sts_client,
                source_credentials=source,
                role_arn=role.role_arn,
                extra_args=extra,
            )
        return await fetcher.fetch_credentials()

    credentials = AioDeferredRefreshableCredentials(refresh_using=refresh, method="assume-role")
    resolver = session.get_component("credential_provider")
    resolver.providers.insert(0, _AssumedRoleProvider(credentials))
