"""Reading other accounts and the CloudWatch Logs features of 2023-2026, end to
end through the real product (a subprocess):

- an assumed role (CWC_AWS_ROLE_ARN / CWC_AWS_EXTERNAL_ID) through moto in
  server mode, which answers STS AssumeRole on the same endpoint and serves
  the role's account as a separate account; a refused AssumeRole through the
  stand-in (tests/support/fakecwl.py), whose STS can say no;
- groups named by ARN (logGroupIdentifier), event.id across accounts;
- ListLogGroups for prefix discovery, and the fallback to DescribeLogGroups;
- a group whose log class GetLogEvents refuses, CWC_UNMASK, and `check`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from cwconsumer.eventid import event_id
from tests.conftest import REGION, Moto, wait_until
from tests.support.fakesinks import RecordingSink
from tests.support.harness import Admin, Writer, free_port, log_records, run_cli

SOURCE = "111111111111"
ROLE = f"arn:aws:iam::{SOURCE}:role/cwconsumer-reader"
EXTERNAL_ID = "ext-Secret-4711-do-not-log"


def source_client(moto: Moto) -> Any:
    """A logs client in the source account (moto: keys from AssumeRole belong to
    the role's account)."""
    session = botocore.session.get_session()
    sts = session.create_client(
        "sts",
        region_name=REGION,
        endpoint_url=moto.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    creds = sts.assume_role(RoleArn=ROLE, RoleSessionName="setup")["Credentials"]
    return session.create_client(
        "logs",
        region_name=REGION,
        endpoint_url=moto.endpoint,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def put(client: Any, group: str, stream: str, messages: list[str], ts: int) -> None:
    client.create_log_group(logGroupName=group)
    client.create_log_stream(logGroupName=group, logStreamName=stream)
    client.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": ts, "message": m} for m in messages],
    )


def test_assumed_role_reads_the_source_account_by_name_and_by_arn(
    moto: Moto, sink: RecordingSink, make_product: Any
) -> None:
    import time

    ts = int(time.time() * 1000) - 60_000
    source = source_client(moto)
    put(source, "/src/app", "a", ["source 1", "source 2"], ts)
    put(source, "/src/by-arn", "b", ["by arn"], ts)
    # The same group name in the base (central) account: must NOT be read.
    moto.group("/src/app")
    moto.stream("/src/app", "a")
    moto.put("/src/app", "a", ["central account, not configured"], ts_ms=ts)
    arn = f"arn:aws:logs:{REGION}:{SOURCE}:log-group:/src/by-arn"
    product = make_product(
        moto,
        sink.url,
        CWC_LOG_GROUPS=f"/src/app,{arn}:*",
        CWC_AWS_ROLE_ARN=ROLE,
        CWC_AWS_EXTERNAL_ID=EXTERNAL_ID,
        CWC_LOG_LEVEL="DEBUG",
    )
    checked = run_cli(product.env, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert f"✓ role {ROLE}: assumed with an external id (session cwconsumer)" in "\n".join(lines)
    assert any(x.startswith(f"✓ AWS account: {SOURCE} (the role's)") for x in lines)
    assert any(x.startswith(f"✓ group {arn}: DescribeLogStreams and GetLogEvents") for x in lines)
    assert EXTERNAL_ID not in checked.stdout + checked.stderr
    product.start()
    wait_until(lambda: len(sink.docs()) >= 3, 60, "the source account's events")
    assert product.terminate() == 0
    docs = sink.docs()
    assert sorted(d["message"] for d in docs) == ["by arn", "source 1", "source 2"]
    assert {d["cloud"]["account"]["id"] for d in docs} == {SOURCE}
    by_message = {d["message"]: d for d in docs}
    assert by_message["by arn"]["aws"]["cloudwatch"]["log_group"] == arn
    assert by_message["source 1"]["event"]["id"] == event_id(
        "/src/app", "a", ts, 0, account=SOURCE, region=REGION
    )
    assert by_message["by arn"]["event"]["id"] == event_id(
        arn, "b", ts, 0, account=SOURCE, region=REGION
    )
    text = product.logs()
    assert EXTERNAL_ID not in text, "the external id is a secret"
    assert "Traceback" not in text


def test_refused_assume_role_check_fails_naming_the_role_and_run_waits_then_recovers(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    fake = start_fakecwl()
    fake.deny_assume_role = True
    Writer(fake, seed=3).put("/g", "s", 40)
    product = make_fake_product(
        fake,
        sink.url,
        CWC_LOG_GROUPS="/g",
        CWC_AWS_ROLE_ARN=ROLE,
        CWC_AWS_EXTERNAL_ID=EXTERNAL_ID,
        CWC_ADMIN_ADDR=f"127.0.0.1:{free_port()}",
    )
    checked = run_cli(product.env, "check")
    assert checked.returncode == 1
    line = next(x for x in checked.stdout.splitlines() if x.startswith("✗ role"))
    assert ROLE in line and "AccessDenied" in line
    assert EXTERNAL_ID not in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stdout + checked.stderr

    product.start()
    admin = Admin(int(product.env["CWC_ADMIN_ADDR"].rsplit(":", 1)[1]))

    def refused() -> bool:
        got = admin.healthz()
        return (
            got is not None
            and got[0] == 503
            and any("AssumeRole" in r and ROLE in r for r in got[1].get("reasons", []))
        )

    wait_until(refused, 30, "/healthz to name the refused role")
    assert sink.docs() == []
    assert product.running(), "a refused role is retried, not fatal"
    calls = [c for c in fake.sts_calls if c.get("Action") == "AssumeRole"]
    assert calls and all(c["RoleArn"] == ROLE for c in calls)
    assert all(
        c["ExternalId"] == EXTERNAL_ID and c["RoleSessionName"] == "cwconsumer" for c in calls
    )
    fake.deny_assume_role = False
    wait_until(lambda: len(sink.docs()) >= 40, 60, "events once the role is allowed")
    assert product.terminate() == 0
    keys = set(fake.access_keys)
    assert keys and all(k.startswith("ASIA") for k in keys), "every logs call signed by the role"
    text = product.logs()
    assert EXTERNAL_ID not in text
    assert "Traceback" not in text
    assert any(ROLE in str(r) for r in log_records(text) if r.get("level") == "WARNING")


@pytest.mark.parametrize("listing", [True, False])
def test_prefix_discovery_with_list_log_groups_and_the_fallback(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink, listing: bool
) -> None:
    fake = start_fakecwl()
    fake.list_log_groups = listing
    writer = Writer(fake, seed=5)
    for group in ("/app/a", "/app/b", "/apples", "/other"):
        writer.put(group, "s", 10)
    product = make_fake_product(fake, sink.url, CWC_LOG_GROUP_PREFIXES="/app/").start()
    wait_until(lambda: len(sink.docs()) >= 20, 60, "both groups of the prefix")
    assert product.terminate() == 0
    groups = {d["aws"]["cloudwatch"]["log_group"] for d in sink.docs()}
    assert groups == {"/app/a", "/app/b"}, "a regex pattern may match more: exact prefix kept"
    listed = fake.counts("ListLogGroups")
    described = fake.counts("DescribeLogGroups")
    if listing:
        # DescribeLogGroups tells the account (a group's ARN) and each group's
        # class and data protection; the prefix itself is listed with
        # ListLogGroups only.
        assert listed.ok >= 1 and "/app/" not in fake.described_prefixes
        assert described.total <= 3
    else:
        assert listed.errors == {"UnknownOperationException": 1}, "asked once, then never again"
        assert described.ok >= 1


def test_a_policy_without_list_log_groups_falls_back_and_stays_healthy(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    fake = start_fakecwl()
    fake.list_log_groups = True
    fake.deny_list_log_groups = True
    Writer(fake, seed=6).put("/app/a", "s", 10)
    port = free_port()
    product = make_fake_product(
        fake, sink.url, CWC_LOG_GROUP_PREFIXES="/app/", CWC_ADMIN_ADDR=f"127.0.0.1:{port}"
    ).start()
    wait_until(lambda: len(sink.docs()) >= 10, 60, "the group found by DescribeLogGroups")
    got = Admin(port).healthz()
    assert got is not None and got[0] == 200, got
    assert product.terminate() == 0
    assert fake.counts("ListLogGroups").errors == {"AccessDeniedException": 1}


def test_a_group_whose_class_refuses_get_log_events_is_said_once_and_stalls_nothing(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    fake = start_fakecwl()
    writer = Writer(fake, seed=9)
    writer.put("/fine", "s", 30)
    for s in ("x", "y", "z"):
        writer.put("/delivery", s, 5)
    fake.set_group_class("/delivery", "DELIVERY")
    port = free_port()
    product = make_fake_product(
        fake, sink.url, CWC_LOG_GROUPS="/fine,/delivery", CWC_ADMIN_ADDR=f"127.0.0.1:{port}"
    ).start()
    admin = Admin(port)
    wait_until(lambda: len(sink.docs()) >= 30, 60, "the readable group")

    def reported() -> bool:
        got = admin.healthz()
        return got is not None and "/delivery" in got[1].get("groups_not_read", {})

    wait_until(reported, 30, "/healthz to name the refused group")
    status, body = admin.healthz() or (0, {})
    assert status == 200, body  # reported, not failing: a restart would not help
    writer.put("/fine", "s", 20)
    wait_until(lambda: len(sink.docs()) >= 50, 60, "the readable group keeps flowing")
    refused_calls = len(fake.get_calls(group="/delivery"))
    assert refused_calls <= 3, "each stream asked at most once, never retried for ever"
    assert product.terminate() == 0
    assert {d["aws"]["cloudwatch"]["log_group"] for d in sink.docs()} == {"/fine"}
    lines = [r for r in log_records(product.logs()) if "log class" in str(r.get("message", ""))]
    assert len(lines) == 1 and lines[0]["group"] == "/delivery"


def test_a_refusal_naming_no_class_counts_for_a_group_listed_with_another_class(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    # The refusal's text is unknown (AWS documents none): a final refusal of a
    # group that discovery listed as INFREQUENT_ACCESS is taken for one.
    fake = start_fakecwl()
    fake.list_log_groups = True
    writer = Writer(fake, seed=4)
    writer.put("/logs/fine", "s", 20)
    writer.put("/logs/cold", "s", 5)
    fake.set_group_class("/logs/cold", "INFREQUENT_ACCESS")
    fake.refused_classes = {"INFREQUENT_ACCESS"}
    fake.class_refusal_message = "The operation is not supported."
    port = free_port()
    product = make_fake_product(
        fake, sink.url, CWC_LOG_GROUP_PREFIXES="/logs/", CWC_ADMIN_ADDR=f"127.0.0.1:{port}"
    ).start()
    admin = Admin(port)
    wait_until(lambda: len(sink.docs()) >= 20, 60, "the readable group")

    def reported() -> bool:
        got = admin.healthz()
        return got is not None and "/logs/cold" in got[1].get("groups_not_read", {})

    wait_until(reported, 30, "/healthz to name the refused group")
    stats = admin.stats() or {}
    groups = stats.get("groups", {})
    assert groups["/logs/cold"]["log_class"] == "INFREQUENT_ACCESS"
    assert "not supported" in groups["/logs/cold"]["not_read"]
    assert groups["/logs/fine"]["log_class"] == "STANDARD"
    assert product.terminate() == 0
    assert len(fake.get_calls(group="/logs/cold")) == 1


def test_unmask_is_asked_for_on_every_read(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    fake = start_fakecwl()
    Writer(fake, seed=1).put("/protected", "s", 25)
    product = make_fake_product(
        fake, sink.url, CWC_LOG_GROUPS="/protected", CWC_UNMASK="true"
    ).start()
    wait_until(lambda: len(sink.docs()) >= 25, 60, "the events")
    assert product.terminate() == 0
    calls = fake.counts("GetLogEvents").total
    assert calls >= 1 and fake.unmask_calls == calls


def test_check_shows_class_data_protection_and_the_unmask_permission(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    fake = start_fakecwl()
    Writer(fake, seed=2).put("/protected", "s", 3)
    Writer(fake, seed=2).put("/cold", "s", 3)
    fake.set_data_protection("/protected", "ACTIVATED")
    fake.set_group_class("/cold", "INFREQUENT_ACCESS")
    env = make_fake_product(fake, sink.url, CWC_LOG_GROUPS="/protected,/cold").env
    out = run_cli(env, "check")
    assert out.returncode == 0, out.stdout + out.stderr
    protected = next(x for x in out.stdout.splitlines() if "group /protected" in x)
    assert "data protection ACTIVATED" in protected and "CWC_UNMASK" in protected
    cold = next(x for x in out.stdout.splitlines() if "group /cold" in x)
    assert "class INFREQUENT_ACCESS" in cold
    assert any(x.startswith("✓ AWS account: 123456789012") for x in out.stdout.splitlines())
    fake.refuse_unmask = True
    out = run_cli(dict(env, CWC_UNMASK="true"), "check")
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if "group /protected" in x)
    assert line.startswith("✗") and "logs:Unmask" in line


def test_role_and_external_id_configuration_problems(tmp_path: Path) -> None:
    from cwconsumer.config import load_config
    from cwconsumer.errors import ConfigError

    base = {
        "AWS_REGION": REGION,
        "CWC_LOG_GROUPS": "/g",
        "CWC_SINK_URL": "http://127.0.0.1:9",
        "CWC_DB_PATH": str(tmp_path / "x.db"),
    }
    cfg = load_config({**base, "CWC_AWS_ROLE_ARN": ROLE, "CWC_AWS_EXTERNAL_ID": EXTERNAL_ID})
    assert cfg.aws_role_arn == ROLE and cfg.aws_role_session_name == "cwconsumer"
    assert EXTERNAL_ID not in json.dumps(cfg.redacted()) + repr(cfg)
    from cwconsumer.logs import Redactor, secrets_of

    redactor = Redactor()
    redactor.add(secrets_of(cfg))
    assert redactor.scrub(f"echoed {EXTERNAL_ID} back") == "echoed *** back"
    with pytest.raises(ConfigError) as err:
        load_config(
            {
                **base,
                "CWC_AWS_ROLE_ARN": "arn:aws:iam::1:user/x",
                "CWC_AWS_EXTERNAL_ID": "bad id with spaces " + EXTERNAL_ID,
                "CWC_AWS_ROLE_SESSION_NAME": "x",
                "CWC_OTLP_ENCODING": "xml",
                "CWC_UNMASK": "maybe",
            }
        )
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "CWC_OTLP_ENCODING",
        "CWC_AWS_ROLE_ARN",
        "CWC_AWS_EXTERNAL_ID",
        "CWC_AWS_ROLE_SESSION_NAME",
        "CWC_UNMASK",
    ]
    assert EXTERNAL_ID not in " ".join(problems)
    with pytest.raises(ConfigError) as err:
        load_config({**base, "CWC_AWS_EXTERNAL_ID": EXTERNAL_ID})
    assert err.value.problems == [
        "CWC_AWS_EXTERNAL_ID: is only used with CWC_AWS_ROLE_ARN, which is not set"
    ]


def test_linked_accounts_groups_are_keyed_by_arn_and_match_prefixes_by_name() -> None:
    from cwconsumer.arns import group_account, group_name
    from cwconsumer.grouplist import group_matches, listed_group_key

    own = {
        "logGroupName": "/app/x",
        "arn": f"arn:aws:logs:{REGION}:123456789012:log-group:/app/x:*",
    }
    linked = {
        "logGroupName": "/app/x",
        "logGroupArn": f"arn:aws:logs:{REGION}:{SOURCE}:log-group:/app/x",
    }
    assert listed_group_key(own, "123456789012") == "/app/x"
    key = listed_group_key(linked, "123456789012")
    assert key == f"arn:aws:logs:{REGION}:{SOURCE}:log-group:/app/x"
    assert group_name(key) == "/app/x" and group_account(key, "123456789012") == SOURCE
    assert group_matches(key, (), ("/app/",)) and not group_matches(key, (), ("/other/",))
    assert listed_group_key({"arn": "x"}, "1") is None


def test_the_account_is_read_from_a_groups_arn_without_an_sts_endpoint(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    """Only the CloudWatch Logs endpoint is reachable (a VPC with a logs
    endpoint alone): the account in event.id comes from a group's ARN, and
    reading starts without STS."""
    fake = start_fakecwl()
    writer = Writer(fake, seed=7)
    writer.put("/app/a", "s", 10)
    product = make_fake_product(
        fake, sink.url, CWC_LOG_GROUPS="/app/a", AWS_ENDPOINT_URL_STS="http://127.0.0.1:9"
    ).start()
    wait_until(lambda: len(sink.docs()) >= 10, 60, "events without an STS endpoint")
    assert product.terminate() == 0
    assert {d["cloud"]["account"]["id"] for d in sink.docs()} == {fake.account_id}
    assert fake.counts("GetCallerIdentity").total == 0
