"""Reading the AWS-side variables: the region, the log groups (names or
ARNs) and prefixes, the role to assume. Problems go to the :class:`Reader`,
one line each naming the variable; the external id never appears."""

from __future__ import annotations

import re

from cwconsumer.variables import DEFAULTS, Reader, Secret, show, split_list

_GROUP_NAME = re.compile(r"[A-Za-z0-9_./#-]{1,512}")
_GROUP_ARN = re.compile(
    r"arn:(aws[a-z-]*):logs:([a-z0-9-]+):(\d{12}):log-group:([^:]+)(?::\*)?", re.ASCII
)
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}", re.ASCII)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


_REGION_VARS = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})


def read_region(env: Reader) -> str:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = env.raw(name)
        if value is not None:
            if not _REGION.fullmatch(value):
                env.problem(name, f"is not a valid AWS region name, got {show(value)}")
            return value
    env.problem("AWS_REGION", "not set (the region of the log groups)")
    return ""


def read_groups(env: Reader, region: str) -> tuple[str, ...]:
    names: list[str] = []
    for item in split_list(env.raw("CWC_LOG_GROUPS")):
        name = item
        if item.startswith("arn:"):
            match = _GROUP_ARN.fullmatch(item)
            if match is None:
                env.problem(
                    "CWC_LOG_GROUPS",
                    f"{show(item)} is not a log group ARN "
                    "(expected arn:aws:logs:REGION:ACCOUNT:log-group:NAME)",
                )
                continue
            name = match.group(4)
            arn_region = match.group(2)
            # Kept as the ARN (without ":*"): the group's identity everywhere
            # (logGroupIdentifier in the API calls, checkpoints, event.id),
            # so groups of one name in several accounts stay apart.
            item = item.removesuffix(":*")
            if region and not env.failed & _REGION_VARS and arn_region != region:
                env.problem(
                    "CWC_LOG_GROUPS",
                    f"{show(item)} is in region {arn_region}, but the configured region is "
                    f"{region}; one process reads one region",
                )
                continue
        if not _GROUP_NAME.fullmatch(name):
            env.problem(
                "CWC_LOG_GROUPS",
                f"{show(name)} is not a valid log group name "
                "(1-512 characters from A-Z a-z 0-9 _ - / . #)",
            )
            continue
        names.append(item)
    return tuple(dict.fromkeys(names))


def read_role(env: Reader) -> tuple[str | None, Secret | None, str]:
    """``CWC_AWS_ROLE_ARN``, ``CWC_AWS_EXTERNAL_ID`` (a secret: never shown),
    ``CWC_AWS_ROLE_SESSION_NAME``."""
    role = env.raw("CWC_AWS_ROLE_ARN")
    if role is not None and not _ROLE_ARN.fullmatch(role):
        env.problem(
            "CWC_AWS_ROLE_ARN",
            f"{show(role)} is not an IAM role ARN (expected arn:aws:iam::ACCOUNT:role/NAME)",
        )
        role = None
    raw_external = env.raw("CWC_AWS_EXTERNAL_ID")
    external: Secret | None = None
    if raw_external is not None:
        if not _EXTERNAL_ID.fullmatch(raw_external):
            # The value is a secret: never repeated in the problem line.
            env.problem(
                "CWC_AWS_EXTERNAL_ID",
                "must be 2 to 1224 characters from A-Z a-z 0-9 and + = , . @ : / - _",
            )
        elif env.raw("CWC_AWS_ROLE_ARN") is None:
            env.problem(
                "CWC_AWS_EXTERNAL_ID", "is only used with CWC_AWS_ROLE_ARN, which is not set"
            )
        else:
            external = Secret(raw_external)
    session = env.text("CWC_AWS_ROLE_SESSION_NAME")
    if not _SESSION_NAME.fullmatch(session):
        env.problem(
            "CWC_AWS_ROLE_SESSION_NAME",
            f"must be 2 to 64 characters from A-Z a-z 0-9 and + = , . @ - _, got {show(session)}",
        )
        session = DEFAULTS["CWC_AWS_ROLE_SESSION_NAME"]
    return role, external, session


def read_prefixes(env: Reader) -> tuple[str, ...]:
    prefixes: list[str] = []
    for item in split_list(env.raw("CWC_LOG_GROUP_PREFIXES")):
        if item.startswith("arn:"):
            env.problem(
                "CWC_LOG_GROUP_PREFIXES", f"must be name prefixes, not ARNs, got {show(item)}"
            )
        elif not _GROUP_NAME.fullmatch(item):
            env.problem(
                "CWC_LOG_GROUP_PREFIXES",
                f"{show(item)} is not a valid log group name prefix "
                "(1-512 characters from A-Z a-z 0-9 _ - / . #)",
            )
        else:
            prefixes.append(item)
    return tuple(prefixes)
