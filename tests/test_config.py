"""Configuration: units, every variable's parsing, problems reported together, secrets hidden."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

import cwconsumer.config as config_module
from cwconsumer import cli
from cwconsumer.config import (
    VARIABLES,
    Secret,
    StartPosition,
    load_config,
    parse_start_position,
    validate_db_path,
)
from cwconsumer.errors import ConfigError
from cwconsumer.units import format_duration, parse_bool, parse_duration, parse_size

NOW_MS = 1_795_255_200_000  # 2026-11-21T10:00:00Z
ARN = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/orders"


def base_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "CWC_LOG_GROUPS": "/aws/lambda/orders",
        "CWC_SINK_URL": "https://logs.example.com:8443/ingest",
        "CWC_DB_PATH": str(tmp_path / "state" / "cwc.db"),
        "AWS_REGION": "us-east-1",
    }
    env.update(overrides)
    return env


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(env, now_ms=NOW_MS)
    return info.value.problems


def only_problem(env: dict[str, str]) -> str:
    problems = problems_of(env)
    assert len(problems) == 1, problems
    return problems[0]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- units -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("30", 30.0),
        ("1.5", 1.5),
        (".5s", 0.5),
        ("0", 0.0),
        ("1h30m", 5400.0),
        ("1m30.5s", 90.5),
        (" 5S ", 5.0),
        ("100MS", 0.1),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "negative"),
        ("-1", "negative"),
        ("5x", "expected a duration like"),
        ("five seconds", "expected a duration like"),
        ("5 s", "expected a duration like"),
        ("s5", "expected a duration like"),
        ("1e3", "expected a duration like"),
        ("inf", "expected a duration like"),
        ("nan", "expected a duration like"),
        ("9" * 400 + "d", "too large"),
    ],
)
def test_parse_duration_rejects_with_readable_message(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512KiB", 512 * 1024),
        ("5MiB", 5 * 1024**2),
        ("1GiB", 1024**3),
        ("1TiB", 1024**4),
        ("10KB", 10_000),
        ("5MB", 5_000_000),
        ("2GB", 2_000_000_000),
        ("65536", 65536),
        ("100B", 100),
        ("5 mib", 5 * 1024**2),
        ("1.5KiB", 1536),
        ("0.1KiB", 102),
        ("0", 0),
    ],
)
def test_parse_size_accepts(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("-1", "negative"),
        ("-5MiB", "negative"),
        ("5XB", "unknown size unit"),
        ("5M", "unknown size unit"),
        ("lots", "expected a size like"),
        ("MiB", "expected a size like"),
        ("1,5MiB", "expected a size like"),
    ],
)
def test_parse_size_rejects_with_readable_message(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_size(text)


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "Yes", "on", " on "])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "NO", "off"])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "2", "enabled", "y", "t"])
def test_parse_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected true/false"):
        parse_bool(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (90, "1m30s"),
        (3600, "1h"),
        (7200, "2h"),
        (3661.25, "1h1m1.25s"),
        (7 * 86400, "7d"),
        (86400 + 60, "1d1m"),
        (0.0004, "0.4ms"),
        (-5, "-5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.001, 0.25, 1.1, 59.999, 61, 3599.5, 86399, 90061.5])
def test_format_duration_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


# --- defaults ----------------------------------------------------------------------------


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(
        {"CWC_LOG_GROUPS": "g", "CWC_SINK_URL": "http://127.0.0.1:8080/", "AWS_REGION": "eu-west-1"}
    )
    assert config.log_groups == ("g",)
    assert config.log_group_prefixes == ()
    assert config.sink_url == "http://127.0.0.1:8080/"
    assert config.sink_username is None
    assert config.sink_password is None
    assert config.sink_format == "ndjson"
    assert config.sink_token is None
    assert config.sink_headers == ()
    assert config.sink_gzip is False
    assert config.sink_gzip_level == 1
    assert config.sink_timeout_s == 30.0
    assert config.sink_concurrency == 2
    assert config.sink_index == "logs-aws.cloudwatch-default"
    assert config.splunk_ack is False
    assert config.splunk_sourcetype == "aws:cloudwatchlogs"
    assert config.splunk_index is None
    assert config.loki_labels == ()
    assert config.sink_ca_file is None
    assert config.sink_max_request_bytes == 10 * 1024**2
    assert config.batch_max_events == 5000
    assert config.batch_max_bytes == 5 * 1024**2
    assert config.batch_max_wait_s == 1.0
    assert config.buffer_max_events == 40000
    assert config.buffer_max_bytes == 64 * 1024**2
    assert config.db_path == str(tmp_path / "cwconsumer.db")
    assert os.path.isabs(config.db_path)
    assert config.db_journal_mode is None
    assert config.start_position == StartPosition("beginning", None)
    assert config.poll_interval_s == 5.0
    assert config.discovery_interval_s == 30.0
    assert config.idle_grace_s == 7200.0
    assert config.workers == 16
    assert config.api_rate == 10.0
    assert config.describe_rate == 5.0
    assert config.admin_addr == ("127.0.0.1", 9600)
    assert config.stall_timeout_s == 300.0
    assert config.shutdown_timeout_s == 20.0
    assert config.log_level == "INFO"
    assert config.log_format == "json"
    assert config.parse_mode == "auto"
    assert config.emf_metrics is False
    assert config.region == "eu-west-1"
    assert config.lease_heartbeat_s == 2.0
    assert config.lease_ttl_s == 10.0
    assert config.aws_timeout_s == 30.0
    assert config.warnings == ()
    assert tree(tmp_path) == []


def test_every_documented_default_is_the_real_default(tmp_path: Path) -> None:
    implicit = load_config(base_env(tmp_path), now_ms=NOW_MS)
    explicit_env = base_env(tmp_path)
    for name, default, _meaning in VARIABLES:
        if default and name != "CWC_DB_PATH":
            explicit_env[name] = default
    explicit = load_config(explicit_env, now_ms=NOW_MS)
    # Format-specific defaults given explicitly only add "has no effect" warnings.
    assert dataclasses.replace(explicit, warnings=()) == implicit


def test_variables_table_lists_every_variable_read() -> None:
    names = [name for name, _, _ in VARIABLES]
    assert len(names) == len(set(names))
    assert all(name.startswith("CWC_") and meaning for name, _, meaning in VARIABLES)
    # Every module that reads configuration (config.py and the readers it uses).
    package = Path(config_module.__file__).parent
    for module in ("config.py", "variables.py", "awsconfig.py", "sinkconfig.py"):
        source = (package / module).read_text()
        assert set(re.findall(r"\bCWC_[A-Z_]*[A-Z]\b", source)) <= set(names), module


def test_blank_values_count_as_unset(tmp_path: Path) -> None:
    config = load_config(
        base_env(tmp_path, CWC_WORKERS="", CWC_SINK_TOKEN="  ", CWC_LOG_GROUP_PREFIXES=""),
        now_ms=NOW_MS,
    )
    assert config.workers == 16
    assert config.sink_token is None
    assert config.log_group_prefixes == ()


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(base_env(tmp_path), now_ms=NOW_MS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 3  # type: ignore[misc]


def test_unknown_variable_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    config = load_config(base_env(tmp_path, CWC_BATCH_MAX_EVENT="10"), now_ms=NOW_MS)
    assert config.batch_max_events == 5000
    assert config.warnings == (
        "CWC_BATCH_MAX_EVENT: unknown variable, ignored; did you mean CWC_BATCH_MAX_EVENTS?",
    )


# --- log groups --------------------------------------------------------------------------


def test_groups_and_prefixes_are_stripped_and_deduplicated(tmp_path: Path) -> None:
    config = load_config(
        base_env(
            tmp_path,
            CWC_LOG_GROUPS=" /aws/lambda/a , ,/aws/lambda/b,/aws/lambda/a,",
            CWC_LOG_GROUP_PREFIXES="/ecs/, /aws/lambda/,/ecs/",
        ),
        now_ms=NOW_MS,
    )
    assert config.log_groups == ("/aws/lambda/a", "/aws/lambda/b")
    assert config.log_group_prefixes == ("/ecs/", "/aws/lambda/")


def test_prefixes_alone_are_enough(tmp_path: Path) -> None:
    env = base_env(tmp_path, CWC_LOG_GROUP_PREFIXES="/ecs/")
    del env["CWC_LOG_GROUPS"]
    config = load_config(env, now_ms=NOW_MS)
    assert config.log_groups == ()
    assert config.log_group_prefixes == ("/ecs/",)


def test_no_groups_names_both_variables(tmp_path: Path) -> None:
    env = base_env(tmp_path, CWC_LOG_GROUPS=" , ")
    problem = only_problem(env)
    assert problem.startswith("CWC_LOG_GROUPS: ")
    assert "CWC_LOG_GROUP_PREFIXES" in problem


@pytest.mark.parametrize("suffix", ["", ":*"])
def test_group_arn_is_kept_as_its_identity(tmp_path: Path, suffix: str) -> None:
    # An ARN names a group in one account (cross-account observability): it is
    # kept, without ":*", and read with logGroupIdentifier; the same name
    # given plainly is another group (the credentials' own account).
    config = load_config(
        base_env(tmp_path, CWC_LOG_GROUPS=f"{ARN}{suffix},/aws/lambda/orders,{ARN},other"),
        now_ms=NOW_MS,
    )
    assert config.log_groups == (ARN, "/aws/lambda/orders", "other")


def test_group_arn_of_another_partition(tmp_path: Path) -> None:
    arn = "arn:aws-cn:logs:cn-north-1:123456789012:log-group:app:*"
    config = load_config(base_env(tmp_path, CWC_LOG_GROUPS=arn, AWS_REGION="cn-north-1"))
    assert config.log_groups == (arn.removesuffix(":*"),)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:logs:us-east-1:123456789012:log-group:",
        "arn:aws:logs:us-east-1:1234:log-group:app",
        "arn:aws:s3:::bucket",
        "arn:aws:logs:us-east-1:123456789012:log-group:app:log-stream:s",
        "arn:aws:logs:us-east-1:123456789012:destination:d",
    ],
)
def test_invalid_group_arn(tmp_path: Path, arn: str) -> None:
    problem = only_problem(base_env(tmp_path, CWC_LOG_GROUPS=f"ok,{arn}"))
    assert problem.startswith("CWC_LOG_GROUPS: ")
    assert "is not a log group ARN" in problem


def test_group_arn_in_another_region(tmp_path: Path) -> None:
    arn = ARN.replace("us-east-1", "eu-west-1")
    problem = only_problem(base_env(tmp_path, CWC_LOG_GROUPS=arn))
    assert problem.startswith("CWC_LOG_GROUPS: ")
    assert "eu-west-1" in problem
    assert "us-east-1" in problem


def test_invalid_group_name_and_prefix(tmp_path: Path) -> None:
    problems = problems_of(
        base_env(tmp_path, CWC_LOG_GROUPS="good,bad name", CWC_LOG_GROUP_PREFIXES=f"{ARN},/ok/")
    )
    assert len(problems) == 2
    assert problems[0].startswith("CWC_LOG_GROUPS: 'bad name' is not a valid log group name")
    assert problems[1].startswith("CWC_LOG_GROUP_PREFIXES: must be name prefixes, not ARNs")


# --- sink URL, basic auth, token ---------------------------------------------------------


def test_basic_auth_is_taken_out_of_the_url(tmp_path: Path) -> None:
    url = "https://shipper:s3cr%40t%2Fpw@logs.example.com:9200/_bulk?pipeline=cw"
    config = load_config(base_env(tmp_path, CWC_SINK_URL=url), now_ms=NOW_MS)
    assert config.sink_url == "https://logs.example.com:9200/_bulk?pipeline=cw"
    assert config.sink_username == "shipper"
    assert config.sink_password is not None
    assert config.sink_password.get() == "s3cr@t/pw"
    shown = repr(config) + str(config) + json.dumps(config.redacted())
    assert "s3cr" not in shown
    assert "***" in shown


def test_ipv6_sink_url_keeps_its_brackets(tmp_path: Path) -> None:
    config = load_config(base_env(tmp_path, CWC_SINK_URL="HTTP://u:pw@[::1]:8080/x"))
    assert config.sink_url == "http://[::1]:8080/x"
    assert config.sink_username == "u"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/x", "must be an http:// or https:// URL, got 'ftp://example.com/x'"),
        ("logs.example.com:8080", "must be an http:// or https:// URL"),
        ("https:///path", "must name a host"),
        ("https://example.com:99999/", "is not a valid URL"),
        ("https://exa mple.com/", "must not contain spaces"),
    ],
)
def test_bad_sink_url(tmp_path: Path, url: str, fragment: str) -> None:
    problem = only_problem(base_env(tmp_path, CWC_SINK_URL=url))
    assert problem.startswith("CWC_SINK_URL: ")
    assert fragment in problem


def test_missing_sink_url(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    del env["CWC_SINK_URL"]
    assert only_problem(env).startswith("CWC_SINK_URL: not set")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://admin:hunter2pw@example.com/x",
        "https://admin:hunter2pw@example.com:notaport/",
        "https://admin:hunter2pw@/x",
        # An unencoded '/' or '@' in the password must not leak either.
        "https://admin:hun/ter2pw@example.com/",
        "https://admin:9/hunter2pw@example.com/",
        "gopher://admin:hunter2pw@example.com/ x",
    ],
)
def test_password_never_appears_in_problems(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(base_env(tmp_path, CWC_SINK_URL=url), now_ms=NOW_MS)
    assert info.value.problems
    for line in info.value.problems:
        assert line.startswith("CWC_SINK_URL: ")
        assert "hunter2" not in line
        assert "ter2pw" not in line
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value)


def test_credential_query_values_are_redacted_for_display(tmp_path: Path) -> None:
    # Every query value is masked for display (issue 14): a signed URL's
    # parameters have names no list can hold (``?sig=``, ``?X-Amz-Signature=``).
    url = "https://example.com/in?api_key=hunter2pw&env=prod&sig=c2lnbmVk"
    config = load_config(base_env(tmp_path, CWC_SINK_URL=url), now_ms=NOW_MS)
    assert config.sink_url == url
    assert "hunter2" not in repr(config)
    assert config.redacted()["sink_url"] == "https://example.com/in?api_key=***&env=***&sig=***"


def test_secret_hides_itself() -> None:
    secret = Secret("hunter2")
    assert secret.get() == "hunter2"
    assert repr(secret) == "***"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert secret == Secret("hunter2")
    assert secret != Secret("other")


def test_token_from_variable(tmp_path: Path) -> None:
    config = load_config(base_env(tmp_path, CWC_SINK_TOKEN=" tok-123 "), now_ms=NOW_MS)
    assert config.sink_token == Secret("tok-123")
    assert "tok-123" not in repr(config)
    assert config.redacted()["sink_token"] == "***"


def test_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n  abc-DEF-123\n")
    config = load_config(
        base_env(tmp_path, CWC_SINK_TOKEN_FILE=str(token_file), CWC_SINK_FORMAT="splunk-hec"),
        now_ms=NOW_MS,
    )
    assert config.sink_token is not None
    assert config.sink_token.get() == "abc-DEF-123"
    assert "abc-DEF" not in repr(config)


def test_token_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "token"
    problem = only_problem(base_env(tmp_path, CWC_SINK_TOKEN_FILE=str(path)))
    assert problem == f"CWC_SINK_TOKEN_FILE: file '{path}' does not exist"
    assert not (tmp_path / "nope").exists()


def test_token_file_empty(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(" \n\t\n")
    problem = only_problem(base_env(tmp_path, CWC_SINK_TOKEN_FILE=str(path)))
    assert problem == f"CWC_SINK_TOKEN_FILE: file '{path}' is empty"


def test_token_file_is_a_directory(tmp_path: Path) -> None:
    problem = only_problem(base_env(tmp_path, CWC_SINK_TOKEN_FILE=str(tmp_path)))
    assert problem == f"CWC_SINK_TOKEN_FILE: '{tmp_path}' is not a regular file"


def test_token_file_with_two_lines_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-secret\nsecond-secret\n")
    problem = only_problem(base_env(tmp_path, CWC_SINK_TOKEN_FILE=str(path)))
    assert problem.startswith("CWC_SINK_TOKEN_FILE: ")
    assert "line breaks" in problem
    assert "secret" not in problem


def test_token_and_token_file_both_set(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file")
    problem = only_problem(
        base_env(tmp_path, CWC_SINK_TOKEN="from-var", CWC_SINK_TOKEN_FILE=str(path))
    )
    assert problem.startswith("CWC_SINK_TOKEN_FILE: cannot be used together with CWC_SINK_TOKEN")
    assert "from-var" not in problem
    assert "from-file" not in problem


def test_splunk_hec_needs_a_token(tmp_path: Path) -> None:
    problem = only_problem(base_env(tmp_path, CWC_SINK_FORMAT="splunk-hec"))
    assert problem.startswith("CWC_SINK_TOKEN: required for CWC_SINK_FORMAT=splunk-hec")


def test_token_and_basic_auth_conflict(tmp_path: Path) -> None:
    problem = only_problem(base_env(tmp_path, CWC_SINK_URL="https://u:pw@h/", CWC_SINK_TOKEN="tok"))
    assert problem.startswith("CWC_SINK_TOKEN: cannot be combined with a user:password")


def test_token_over_plain_http_is_a_warning(tmp_path: Path) -> None:
    config = load_config(
        base_env(tmp_path, CWC_SINK_URL="http://h/", CWC_SINK_TOKEN="tok"), now_ms=NOW_MS
    )
    assert any(w.startswith("CWC_SINK_TOKEN: is sent in clear text") for w in config.warnings)


@pytest.mark.parametrize("name", ["ndjson", "json", "elasticsearch", "loki", "SPLUNK-HEC"])
def test_sink_formats(tmp_path: Path, name: str) -> None:
    config = load_config(base_env(tmp_path, CWC_SINK_FORMAT=name, CWC_SINK_TOKEN="t"))
    assert config.sink_format == name.lower()


def test_unknown_sink_format(tmp_path: Path) -> None:
    problem = only_problem(base_env(tmp_path, CWC_SINK_FORMAT="syslog"))
    assert problem == (
        "CWC_SINK_FORMAT: must be one of ndjson, json, elasticsearch, splunk-hec, loki, otlp, "
        "got 'syslog'"
    )


# --- headers, labels, CA file and format-specific settings -------------------------------


def test_sink_headers(tmp_path: Path) -> None:
    headers = json.dumps({"X-Env": "prod", "Authorization": "ApiKey c2VjcmV0a2V5"})
    config = load_config(base_env(tmp_path, CWC_SINK_HEADERS=headers), now_ms=NOW_MS)
    assert config.sink_headers == (("X-Env", "prod"), ("Authorization", "ApiKey c2VjcmV0a2V5"))
    assert config.redacted()["sink_headers"] == {"X-Env": "prod", "Authorization": "***"}
    assert "c2VjcmV0a2V5" not in repr(config)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not json", "must be a JSON object"),
        ('["X-Env", "prod"]', "must be a JSON object"),
        ('[["X-Env", "prod"]]', "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ('{"X-Count": 3}', "value of header 'X-Count' must be a string"),
        ('{"X-Obj": {"a": "b"}}', "value of header 'X-Obj' must be a string"),
        ('{"Bad Name": "v"}', "'Bad Name' is not a valid header name"),
        ('{"X-Evil": "a\\r\\nInjected: 1"}', "contains control characters"),
        ('{"Content-Length": "5"}', "set by cwconsumer"),
        ('{"X-A": "1", "x-a": "2"}', "given twice"),
    ],
)
def test_bad_sink_headers(tmp_path: Path, value: str, fragment: str) -> None:
    problem = only_problem(base_env(tmp_path, CWC_SINK_HEADERS=value))
    assert problem.startswith("CWC_SINK_HEADERS: ")
    assert fragment in problem


def test_authorization_header_conflicts_with_token(tmp_path: Path) -> None:
    headers = json.dumps({"Authorization": "Bearer hunter2pw"})
    problem = only_problem(base_env(tmp_path, CWC_SINK_HEADERS=headers, CWC_SINK_TOKEN="t"))
    assert problem.startswith("CWC_SINK_HEADERS: header 'Authorization' conflicts")
    assert "hunter2" not in problem


def test_loki_labels(tmp_path: Path) -> None:
    config = load_config(
        base_env(tmp_path, CWC_SINK_FORMAT="loki", CWC_LOKI_LABELS="env=prod, team = core,_x=1"),
        now_ms=NOW_MS,
    )
    assert config.loki_labels == (("env", "prod"), ("team", "core"), ("_x", "1"))
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("env", "expected name=value pairs"),
        ("env=", "expected name=value pairs"),
        ("=prod", "expected name=value pairs"),
        ("1env=prod", "must match [a-zA-Z_][a-zA-Z0-9_]*"),
        ("e-nv=prod", "must match"),
        ("__name__=x", "reserved"),
        ("env=a,env=b", "given twice"),
    ],
)
def test_bad_loki_labels(tmp_path: Path, value: str, fragment: str) -> None:
    problem = only_problem(base_env(tmp_path, CWC_SINK_FORMAT="loki", CWC_LOKI_LABELS=value))
    assert problem.startswith("CWC_LOKI_LABELS: ")
    assert fragment in problem


def test_format_specific_settings_for_another_format_are_warnings(tmp_path: Path) -> None:
    config = load_config(
        base_env(tmp_path, CWC_SPLUNK_ACK="true", CWC_LOKI_LABELS="a=b"), now_ms=NOW_MS
    )
    assert config.splunk_ack is True
    assert config.warnings == (
        "CWC_SPLUNK_ACK: has no effect with CWC_SINK_FORMAT=ndjson (only with splunk-hec)",
        "CWC_LOKI_LABELS: has no effect with CWC_SINK_FORMAT=ndjson (only with loki)",
    )


def test_splunk_settings(tmp_path: Path) -> None:
    config = load_config(
        base_env(
            tmp_path,
            CWC_SINK_FORMAT="splunk-hec",
            CWC_SINK_TOKEN="t",
            CWC_SPLUNK_ACK="yes",
            CWC_SPLUNK_SOURCETYPE="aws:lambda",
            CWC_SPLUNK_INDEX="main_logs-1",
        ),
        now_ms=NOW_MS,
    )
    assert (config.splunk_ack, config.splunk_sourcetype, config.splunk_index) == (
        True,
        "aws:lambda",
        "main_logs-1",
    )
    problem = only_problem(
        base_env(
            tmp_path, CWC_SINK_FORMAT="splunk-hec", CWC_SINK_TOKEN="t", CWC_SPLUNK_INDEX="Main"
        )
    )
    assert problem.startswith("CWC_SPLUNK_INDEX: ")


def test_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(base_env(tmp_path, CWC_SINK_CA_FILE=str(ca)), now_ms=NOW_MS)
    assert config.sink_ca_file == str(ca)
    missing = tmp_path / "missing.pem"
    assert only_problem(base_env(tmp_path, CWC_SINK_CA_FILE=str(missing))) == (
        f"CWC_SINK_CA_FILE: file '{missing}' does not exist"
    )
    assert only_problem(base_env(tmp_path, CWC_SINK_CA_FILE=str(tmp_path))) == (
        f"CWC_SINK_CA_FILE: '{tmp_path}' is not a regular file"
    )


# --- numbers, sizes and their relations --------------------------------------------------


def test_numbers_and_sizes(tmp_path: Path) -> None:
    config = load_config(
        base_env(
            tmp_path,
            CWC_SINK_GZIP="on",
            CWC_SINK_GZIP_LEVEL="9",
            CWC_SINK_TIMEOUT="1m30s",
            CWC_SINK_CONCURRENCY="64",
            CWC_SINK_MAX_REQUEST_BYTES="64KiB",
            CWC_BATCH_MAX_EVENTS="100000",
            CWC_BATCH_MAX_BYTES="1MB",
            CWC_BATCH_MAX_WAIT="250ms",
            CWC_BUFFER_MAX_EVENTS="100000",
            CWC_BUFFER_MAX_BYTES="1000000",
            CWC_WORKERS="256",
            CWC_API_RATE="2.5",
            CWC_DESCRIBE_RATE="0.5",
            CWC_POLL_INTERVAL="500ms",
            CWC_IDLE_GRACE="1d",
            CWC_EMF_METRICS="1",
        ),
        now_ms=NOW_MS,
    )
    assert config.sink_gzip is True
    assert config.sink_gzip_level == 9
    assert config.sink_timeout_s == 90.0
    assert config.sink_concurrency == 64
    assert config.sink_max_request_bytes == 65536
    assert config.batch_max_events == 100000
    assert config.batch_max_bytes == 1_000_000
    assert config.batch_max_wait_s == 0.25
    assert config.buffer_max_events == 100000
    assert config.buffer_max_bytes == 1_000_000
    assert config.workers == 256
    assert config.api_rate == 2.5
    assert config.describe_rate == 0.5
    assert config.poll_interval_s == 0.5
    assert config.idle_grace_s == 86400.0
    assert config.emf_metrics is True


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CWC_WORKERS", "0", "CWC_WORKERS: must be from 1 to 256, got 0"),
        ("CWC_WORKERS", "257", "CWC_WORKERS: must be from 1 to 256, got 257"),
        ("CWC_WORKERS", "8.5", "CWC_WORKERS: expected a whole number, got '8.5'"),
        ("CWC_SINK_CONCURRENCY", "65", "CWC_SINK_CONCURRENCY: must be from 1 to 64, got 65"),
        ("CWC_SINK_GZIP_LEVEL", "0", "CWC_SINK_GZIP_LEVEL: must be from 1 to 9, got 0"),
        ("CWC_BATCH_MAX_EVENTS", "100001", "CWC_BATCH_MAX_EVENTS: must be from 1 to 100000"),
        ("CWC_BATCH_MAX_BYTES", "0", "CWC_BATCH_MAX_BYTES: must be more than 0, got '0'"),
        (
            "CWC_SINK_MAX_REQUEST_BYTES",
            "1KiB",
            "CWC_SINK_MAX_REQUEST_BYTES: must be at least 64KiB",
        ),
        ("CWC_API_RATE", "0", "CWC_API_RATE: must be more than 0 and at most 1000"),
        ("CWC_API_RATE", "1001", "CWC_API_RATE: must be more than 0 and at most 1000"),
        ("CWC_API_RATE", "fast", "CWC_API_RATE: expected a number, got 'fast'"),
        ("CWC_DESCRIBE_RATE", "9" * 400, "CWC_DESCRIBE_RATE: expected a number"),
        ("CWC_DESCRIBE_RATE", "-1", "CWC_DESCRIBE_RATE: must be more than 0 (calls per second)"),
        ("CWC_SINK_TIMEOUT", "0s", "CWC_SINK_TIMEOUT: must be longer than 0, got '0s'"),
        ("CWC_POLL_INTERVAL", "soon", "CWC_POLL_INTERVAL: expected a duration like"),
        ("CWC_SINK_GZIP", "maybe", "CWC_SINK_GZIP: expected true/false"),
        ("CWC_DB_JOURNAL_MODE", "truncate", "CWC_DB_JOURNAL_MODE: must be one of wal, delete"),
        ("CWC_LOG_FORMAT", "xml", "CWC_LOG_FORMAT: must be one of json, text, got 'xml'"),
        ("CWC_PARSE", "yaml", "CWC_PARSE: must be one of auto, none, lambda, json"),
        ("CWC_LOG_LEVEL", "TRACE", "CWC_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_bad_values(tmp_path: Path, name: str, value: str, expected: str) -> None:
    assert only_problem(base_env(tmp_path, **{name: value})).startswith(expected)


def test_buffer_must_hold_a_batch(tmp_path: Path) -> None:
    problems = problems_of(
        base_env(tmp_path, CWC_BATCH_MAX_EVENTS="50000", CWC_BUFFER_MAX_BYTES="1MiB")
    )
    assert problems == [
        "CWC_BUFFER_MAX_EVENTS: 40000 (the default) is less than CWC_BATCH_MAX_EVENTS=50000; "
        "set it to at least 50000",
        "CWC_BUFFER_MAX_BYTES: 1048576 is less than CWC_BATCH_MAX_BYTES=5242880; "
        "set it to at least 5242880",
    ]


def test_lease_ttl_must_exceed_two_heartbeats(tmp_path: Path) -> None:
    problem = only_problem(base_env(tmp_path, CWC_LEASE_HEARTBEAT="5s", CWC_LEASE_TTL="10s"))
    assert problem == "CWC_LEASE_TTL: must be more than twice CWC_LEASE_HEARTBEAT (5s), got 10s"
    config = load_config(base_env(tmp_path, CWC_LEASE_HEARTBEAT="5s", CWC_LEASE_TTL="11s"))
    assert (config.lease_heartbeat_s, config.lease_ttl_s) == (5.0, 11.0)


def test_choices_are_case_insensitive(tmp_path: Path) -> None:
    config = load_config(
        base_env(
            tmp_path,
            CWC_LOG_LEVEL="warn",
            CWC_LOG_FORMAT="TEXT",
            CWC_PARSE="Lambda",
            CWC_DB_JOURNAL_MODE="WAL",
        ),
        now_ms=NOW_MS,
    )
    assert (config.log_level, config.log_format, config.parse_mode) == ("WARNING", "text", "lambda")
    assert config.db_journal_mode == "wal"
    assert load_config(base_env(tmp_path, CWC_LOG_LEVEL="debug")).log_level == "DEBUG"


# --- region, admin address ---------------------------------------------------------------


def test_region(tmp_path: Path) -> None:
    env = base_env(tmp_path, AWS_DEFAULT_REGION="eu-central-1")
    assert load_config(env).region == "us-east-1"
    del env["AWS_REGION"]
    assert load_config(env).region == "eu-central-1"
    del env["AWS_DEFAULT_REGION"]
    assert only_problem(env) == "AWS_REGION: not set (the region of the log groups)"


@pytest.mark.parametrize(
    ("value", "addr"),
    [
        ("off", None),
        ("OFF", None),
        ("127.0.0.1:9600", ("127.0.0.1", 9600)),
        ("localhost:0", ("localhost", 0)),
        (":9600", ("0.0.0.0", 9600)),
        ("[::1]:9600", ("::1", 9600)),
        ("[::]:65535", ("::", 65535)),
    ],
)
def test_admin_addr(tmp_path: Path, value: str, addr: tuple[str, int] | None) -> None:
    config = load_config(base_env(tmp_path, CWC_ADMIN_ADDR=value), now_ms=NOW_MS)
    assert config.admin_addr == addr


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("9600", "expected host:port"),
        ("localhost", "expected host:port"),
        ("host:65536", "port must be a number from 0 to 65535"),
        ("host:-1", "port must be a number"),
        ("host:", "port must be a number"),
        ("::1:9600", "put an IPv6 address in brackets"),
        ("[::1]9600", "expected host:port"),
        ("[nope]:9600", "is not an IPv6 address"),
        ("bad_host!:9600", "is not a host name or address"),
    ],
)
def test_bad_admin_addr(tmp_path: Path, value: str, fragment: str) -> None:
    problem = only_problem(base_env(tmp_path, CWC_ADMIN_ADDR=value))
    assert problem.startswith("CWC_ADMIN_ADDR: ")
    assert fragment in problem


# --- start position ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("beginning", StartPosition("beginning", None)),
        ("END", StartPosition("end", None)),
        ("2026-11-21T10:00:00Z", StartPosition("time", NOW_MS)),
        ("2026-11-21T10:00:00.250Z", StartPosition("time", NOW_MS + 250)),
        ("2026-11-21T12:00:00+02:00", StartPosition("time", NOW_MS)),
        ("2026-11-21T10:00:00", StartPosition("time", NOW_MS)),
        ("2026-11-21", StartPosition("time", NOW_MS - 10 * 3_600_000)),
        ("2h", StartPosition("time", NOW_MS - 2 * 3_600_000)),
        ("7d", StartPosition("time", NOW_MS - 7 * 86_400_000)),
        ("90s", StartPosition("time", NOW_MS - 90_000)),
    ],
)
def test_start_position(tmp_path: Path, value: str, position: StartPosition) -> None:
    config = load_config(base_env(tmp_path, CWC_START_POSITION=value), now_ms=NOW_MS)
    assert config.start_position == position
    assert parse_start_position(value, NOW_MS) == position


def test_start_position_resolve() -> None:
    assert StartPosition("beginning", None).resolve(NOW_MS) is None
    assert StartPosition("end", None).resolve(NOW_MS + 5) == NOW_MS + 5
    assert StartPosition("time", 1234).resolve(NOW_MS) == 1234
    assert str(StartPosition("time", NOW_MS + 1)) == "2026-11-21T10:00:00.001Z"
    with pytest.raises(ValueError):
        StartPosition("time", None)
    with pytest.raises(ValueError):
        StartPosition("end", 5)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("yesterday", "expected 'beginning', 'end', an ISO-8601 time"),
        ("-2h", "expected 'beginning', 'end', an ISO-8601 time"),
        ("3600", "a bare number is ambiguous"),
        ("2026-13-01", "is not a valid ISO-8601 time"),
        ("1969-12-31T00:00:00Z", "before 1970"),
        ("100000d", "before 1970"),
    ],
)
def test_bad_start_position(tmp_path: Path, value: str, fragment: str) -> None:
    problem = only_problem(base_env(tmp_path, CWC_START_POSITION=value))
    assert problem.startswith("CWC_START_POSITION: ")
    assert fragment in problem


def test_start_position_in_the_future_is_a_warning(tmp_path: Path) -> None:
    config = load_config(
        base_env(tmp_path, CWC_START_POSITION="2027-01-01T00:00:00Z"), now_ms=NOW_MS
    )
    assert config.start_position.kind == "time"
    assert config.warnings == (
        "CWC_START_POSITION: 2027-01-01T00:00:00.000Z is in the future; "
        "new groups skip events until then",
    )


# --- database path -----------------------------------------------------------------------


def test_db_path_is_made_absolute_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(base_env(tmp_path, CWC_DB_PATH="deep/er/state.db"), now_ms=NOW_MS)
    assert config.db_path == str(tmp_path / "deep" / "er" / "state.db")
    assert tree(tmp_path) == []


def test_existing_db_file_is_fine(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"")
    assert validate_db_path(str(db)) is None
    assert load_config(base_env(tmp_path, CWC_DB_PATH=str(db))).db_path == str(db)


def test_db_path_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    db = blocker / "sub" / "state.db"
    before = tree(tmp_path)
    problem = only_problem(base_env(tmp_path, CWC_DB_PATH=str(db)))
    assert problem == f"CWC_DB_PATH: cannot create '{db}': '{blocker}' is not a directory"
    assert tree(tmp_path) == before
    assert blocker.read_text() == "x"


def test_db_path_that_is_a_directory(tmp_path: Path) -> None:
    problem = only_problem(base_env(tmp_path, CWC_DB_PATH=str(tmp_path)))
    assert problem.startswith(f"CWC_DB_PATH: '{tmp_path}' is a directory")


def test_db_path_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "state.db"
    link.symlink_to(tmp_path / "gone" / "state.db")
    assert validate_db_path(str(link)) == f"'{link}' is a broken symbolic link"
    assert not (tmp_path / "gone").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a 0o500 directory")
def test_db_directory_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        problem = only_problem(base_env(tmp_path, CWC_DB_PATH=str(locked / "a" / "state.db")))
        assert problem == f"CWC_DB_PATH: directory '{locked}' is not writable"
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# --- many problems at once ---------------------------------------------------------------


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    env = {
        "AWS_REGION": "us-east-1",
        "CWC_DB_PATH": str(tmp_path / "cwc.db"),
        "CWC_POLL_INTERVAL": "5 minutes",
        "CWC_BATCH_MAX_BYTES": "-5MiB",
        "CWC_START_POSITION": "yesterday",
    }
    problems = problems_of(env)
    assert len(problems) == 5, problems
    named = [line.partition(": ")[0] for line in problems]
    # In the order of the variables table, like the README.
    assert named == [
        "CWC_LOG_GROUPS",
        "CWC_SINK_URL",
        "CWC_BATCH_MAX_BYTES",
        "CWC_START_POSITION",
        "CWC_POLL_INTERVAL",
    ]
    assert all("\n" not in line for line in problems)
    assert tree(tmp_path) == []


def test_every_problem_line_names_its_variable(tmp_path: Path) -> None:
    env = {name: "!" for name, _, _ in VARIABLES}
    env["CWC_DB_PATH"] = str(tmp_path / "x" / "db")
    env["AWS_REGION"] = "Not A Region"
    problems = problems_of(env)
    known = {name for name, _, _ in VARIABLES} | {"AWS_REGION"}
    for line in problems:
        name, sep, text = line.partition(": ")
        assert sep and text, line
        assert name in known, line
    # Every variable that can be wrong on its own says so.
    named = {line.partition(": ")[0] for line in problems}
    # (CWC_SINK_TOKEN is reported as set together with CWC_SINK_TOKEN_FILE.)
    always_valid = {"CWC_DB_PATH", "CWC_SPLUNK_SOURCETYPE", "CWC_SINK_INDEX", "CWC_SINK_TOKEN"}
    assert named >= known - always_valid
    assert tree(tmp_path) == []


# --- the command line's cases, in-process ------------------------------------------------
# tests/test_cli_config.py spawns processes only for what a process can show (exit status,
# no traceback, nothing on disk); every bad setting it used to spawn one for is checked here.

CLI_CASES = [
    ("missing sink URL", {"CWC_SINK_URL": ""}, "CWC_SINK_URL: not set"),
    ("bad scheme", {"CWC_SINK_URL": "ftp://example.com/x"}, "CWC_SINK_URL: must be an http"),
    ("unparsable duration", {"CWC_POLL_INTERVAL": "soon"}, "CWC_POLL_INTERVAL: expected a"),
    ("negative size", {"CWC_BATCH_MAX_BYTES": "-5MiB"}, "CWC_BATCH_MAX_BYTES: must not be neg"),
    ("no groups", {"CWC_LOG_GROUPS": ""}, "CWC_LOG_GROUPS: no log groups configured"),
    (
        "unknown start position",
        {"CWC_START_POSITION": "yesterday-ish"},
        "CWC_START_POSITION: expected 'beginning'",
    ),
    ("unknown format", {"CWC_SINK_FORMAT": "xml"}, "CWC_SINK_FORMAT: must be one of"),
]


@pytest.mark.parametrize(("name", "env", "expected"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_each_bad_setting_is_one_problem_naming_its_variable(
    tmp_path: Path, name: str, env: dict[str, str], expected: str
) -> None:
    assert only_problem(base_env(tmp_path, **env)).startswith(expected)
    assert tree(tmp_path) == []


@pytest.mark.parametrize(("name", "env", "expected"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_check_command_reports_a_bad_setting_and_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for key in list(os.environ):
        if key.startswith(("CWC_", "AWS_")):
            monkeypatch.delenv(key)
    for key, value in base_env(tmp_path, **env).items():
        monkeypatch.setenv(key, value)
    assert cli.main(["check"]) == 2
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0] == "✗ configuration: 1 problem(s)"
    assert printed.out.splitlines()[1].strip().startswith(expected)
    assert len(printed.out.splitlines()) == 2
    assert tree(tmp_path) == []
