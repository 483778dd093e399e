"""Log group and role ARNs (pure: no I/O).

A group given by ARN in ``CWC_LOG_GROUPS`` (a source account's group read
from a CloudWatch cross-account observability monitoring account, or any
group named unambiguously) keeps the ARN, without the ``:*`` suffix
DescribeLogGroups adds, as its identity: checkpoints, ``status``, the
document's ``aws.cloudwatch.log_group``, and ``logGroupIdentifier`` in the
API calls. A group given by name belongs to the account of the credentials.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

_GROUP_ARN: Final = re.compile(
    r"arn:(aws[a-z-]*):logs:([a-z0-9-]+):(\d{12}):log-group:([^:]+)(?::\*)?", re.ASCII
)
_ROLE_ARN: Final = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/.+", re.ASCII)


class GroupArn(NamedTuple):
    """A log group ARN's parts."""

    partition: str
    region: str
    account: str
    name: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:{self.name}"


def parse_group_arn(text: str) -> GroupArn | None:
    """The parts of a log group ARN (with or without ``:*``), or None."""
    match = _GROUP_ARN.fullmatch(text)
    return None if match is None else GroupArn(*match.groups())


def is_group_arn(group: str) -> bool:
    """Whether ``group`` is given as a log group ARN rather than a name."""
    return group.startswith("arn:") and _GROUP_ARN.fullmatch(group) is not None


def group_name(group: str) -> str:
    """The name of a group given by name or by ARN."""
    arn = parse_group_arn(group) if group.startswith("arn:") else None
    return group if arn is None else arn.name


def group_account(group: str, default: str) -> str:
    """The account a group lives in: its ARN's, else ``default`` (the
    credentials' account)."""
    arn = parse_group_arn(group) if group.startswith("arn:") else None
    return default if arn is None else arn.account


def role_account(role_arn: str) -> str:
    """The account of an IAM role ARN (``""`` if it is not one)."""
    match = _ROLE_ARN.fullmatch(role_arn)
    return "" if match is None else match.group(1)
