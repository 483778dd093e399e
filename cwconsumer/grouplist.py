"""Which groups a prefix names: one listing of CloudWatch Logs groups per
prefix (ListLogGroups, else DescribeLogGroups; :meth:`LogsClient.list_groups`),
each group keyed by its name in the credentials' own account and by its ARN
in another, with the log class the listing reports."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from cwconsumer.arns import group_name, parse_group_arn
from cwconsumer.aws import LogsClient
from cwconsumer.errors import AwsError

log = logging.getLogger("cwconsumer.discovery")

MAX_GROUP_PAGES = 200
"""Pages of one prefix's listing per discovery interval (200,000 groups with
ListLogGroups, 10,000 with DescribeLogGroups)."""


def group_matches(name: str, groups: Iterable[str], prefixes: Iterable[str]) -> bool:
    """A configured group (name or ARN), or one whose *name* has a configured prefix
    (a linked account's group found by prefix is keyed by its ARN)."""
    return name in set(groups) or any(group_name(name).startswith(p) for p in prefixes)


def listed_group_key(listed: dict[str, Any], own_account: str) -> str | None:
    """A listed group's identity: its name in the credentials' own account;
    its ARN (no ``:*``) in another (a linked source account, listed with
    ``includeLinkedAccounts``), so same-named groups stay apart."""
    name = listed.get("logGroupName")
    if not isinstance(name, str):
        return None
    raw_arn = listed.get("logGroupArn") or listed.get("arn")
    arn = parse_group_arn(str(raw_arn)) if raw_arn else None
    if arn is not None and own_account and arn.account != own_account:
        return str(arn)
    return name


class GroupLister:
    """Lists the groups of a prefix; keeps the log class each was listed with."""

    def __init__(self, logs: LogsClient, account: str) -> None:
        self._logs = logs
        self._account = account  # the credentials' own account ("" unknown)
        self.classes: dict[str, str] = {}  # group key -> logGroupClass as listed

    async def list(self, prefix: str) -> set[str] | None:
        """Every group key whose name starts with ``prefix``; None when the
        listing failed (said in the log; the caller keeps what it knew)."""
        names: set[str] = set()
        token: str | None = None
        for _ in range(MAX_GROUP_PAGES):
            listed_with = self._logs.list_groups_available
            try:
                groups, token = await self._logs.list_groups(prefix, token)
            except AwsError as exc:
                log.warning(
                    "listing log groups failed", extra={"prefix": prefix, "error": str(exc)}
                )
                return None
            if listed_with and not self._logs.list_groups_available:
                names.clear()  # fell back to DescribeLogGroups: its listing starts again
            for g in groups:
                key = listed_group_key(g, self._account)
                if key is not None:
                    names.add(key)
                    if g.get("logGroupClass"):
                        self.classes[key] = str(g["logGroupClass"])
            if not token:
                break
        return names
