"""What CloudWatch Logs says about each group (issue 16, part 3): its log class,
data protection and retention are read by the running service
(cwconsumer/groupinfo.py), shown in ``/stats`` and written to the database,
where ``cwconsumer status`` shows them without calling AWS; and ListLogGroups'
pattern within AWS's limits (3 to 24 name characters after the ``^``).

End to end through the real product (a subprocess) against the stand-in,
which answers DescribeLogGroups with class, data protection and retention and
validates ListLogGroups' pattern as AWS's model does.
"""

from __future__ import annotations

import json
from typing import Any

from cwconsumer.aws import list_pattern
from tests.conftest import wait_until
from tests.support.fakesinks import RecordingSink
from tests.support.harness import Admin, Writer, fake_env, free_port, run_cli


def test_list_pattern_stays_within_the_api_limits() -> None:
    assert list_pattern("/aws/lambda/") == "^/aws/lambda/"
    long = "/aws/lambda/payments-prod-"  # 26 characters
    assert list_pattern(long) == "^" + long[:24]
    assert list_pattern("/a") is None  # under 3 characters: DescribeLogGroups lists it
    assert list_pattern("abc") == "^abc"


def test_a_prefix_longer_than_the_pattern_allows_is_listed_and_kept_exact(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink
) -> None:
    """Old code sent ``^`` + the whole prefix: AWS refuses a pattern over 24
    characters, and prefix discovery found nothing, for ever."""
    fake = start_fakecwl()
    fake.list_log_groups = True
    writer = Writer(fake, seed=3)
    prefix = "/aws/lambda/payments-prod-"
    for group in (prefix + "api", prefix + "worker", "/aws/lambda/payments-produce"):
        writer.put(group, "s", 10)
    product = make_fake_product(fake, sink.url, CWC_LOG_GROUP_PREFIXES=prefix).start()
    wait_until(lambda: len(sink.docs()) >= 20, 60, "both groups of the long prefix")
    assert product.terminate() == 0
    groups = {d["aws"]["cloudwatch"]["log_group"] for d in sink.docs()}
    assert groups == {prefix + "api", prefix + "worker"}
    listed = fake.counts("ListLogGroups")
    assert listed.ok >= 1 and not listed.errors, listed


def test_status_and_stats_show_log_class_data_protection_and_retention(
    start_fakecwl: Any, make_fake_product: Any, sink: RecordingSink, tmp_path: Any
) -> None:
    fake = start_fakecwl()
    writer = Writer(fake, seed=8)
    for group in ("/plain", "/masked", "/cold"):
        writer.put(group, "s", 5)
    fake.set_data_protection("/masked", "ACTIVATED")
    fake.set_retention("/masked", 30)
    fake.set_group_class("/cold", "INFREQUENT_ACCESS")
    fake.refused_classes = set()
    port = free_port()
    product = make_fake_product(
        fake, sink.url, CWC_LOG_GROUPS="/plain,/masked,/cold", CWC_ADMIN_ADDR=f"127.0.0.1:{port}"
    ).start()
    admin = Admin(port)
    wait_until(lambda: len(sink.docs()) >= 15, 60, "every group")

    def described() -> dict[str, Any]:
        stats = admin.stats() or {}
        groups: dict[str, Any] = stats.get("groups", {})
        return groups

    def told() -> bool:
        groups = described()
        return "data_protection" in groups.get("/masked", {}) and "log_class" in groups.get(
            "/cold", {}
        )

    wait_until(told, 30, "/stats to show what DescribeLogGroups said")
    groups = described()
    assert groups["/masked"]["data_protection"] == "ACTIVATED"
    assert groups["/masked"]["masked"] is True
    assert groups["/cold"]["log_class"] == "INFREQUENT_ACCESS"
    assert "data_protection" not in groups["/plain"]
    assert product.terminate() == 0

    env = fake_env(fake, sink.url, tmp_path / "state" / "cwc.db")
    done = run_cli(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    by_name = {g["group"]: g for g in json.loads(done.stdout)["groups"]}
    assert by_name["/masked"]["data_protection"] == "ACTIVATED"
    assert by_name["/masked"]["retention_days"] == 30
    assert by_name["/cold"]["log_class"] == "INFREQUENT_ACCESS"
    assert by_name["/plain"]["log_class"] == "STANDARD"
    assert by_name["/plain"]["data_protection"] is None
    assert by_name["/plain"]["retention_days"] is None

    done = run_cli(env, "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("GROUP"))
    assert "CLASS" in header.split()
    cold = next(line for line in lines if line.startswith("/cold"))
    assert "INFREQUENT_ACCESS" in cold.split()
    protected = [line for line in lines if line.startswith("data protection on:")]
    assert len(protected) == 1 and "/masked (ACTIVATED)" in protected[0]
    assert "/plain" not in protected[0] and "/cold" not in protected[0]


class _Logs:
    """DescribeLogGroups of a few groups; counts calls."""

    def __init__(self, listed: dict[str, dict[str, Any]]) -> None:
        self.listed = listed
        self.calls: list[str] = []

    async def describe_group(self, group: str) -> dict[str, Any] | None:
        self.calls.append(group)
        return self.listed.get(group)


async def test_facts_are_read_once_an_interval_and_rows_of_groups_no_longer_read_go(
    tmp_path: Any,
) -> None:
    from cwconsumer.groupinfo import GroupInfo
    from cwconsumer.store import Store

    store = await Store.open(str(tmp_path / "cwc.db"), "wal")
    try:
        assert await store.acquire_lease("me", 0, 60_000, "host", 1) is not None
        logs = _Logs(
            {
                "/a": {"logGroupName": "/a", "retentionInDays": 7},
                "/b": {"logGroupName": "/b", "dataProtectionStatus": "ACTIVATED"},
            }
        )
        read = ["/a", "/b", "/gone"]
        info = GroupInfo(logs, store, lambda: read, tick_s=1.0, refresh_s=3600)  # type: ignore[arg-type]
        await info.refresh(now_ms=1_000)
        assert logs.calls == ["/a", "/b", "/gone"]
        await info.refresh(now_ms=2_000)  # fresh: nothing asked again
        assert logs.calls == ["/a", "/b", "/gone"]
        await info.refresh(now_ms=1_000 + 3_600_000)
        # Stale after the interval; "/gone" (not listed) is asked again after RETRY_S.
        assert logs.calls[3:] == ["/a", "/b", "/gone"]
        read.remove("/b")
        await info.refresh(now_ms=1_000 + 3_600_001)
        rows = await store.load_group_info()
        assert set(rows) == {"/a"} and rows["/a"].retention_days == 7
        assert rows["/a"].log_class is None  # not reported: STANDARD, shown as such by status
    finally:
        await store.aclose()
