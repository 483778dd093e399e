"""Each wire format end to end: moto → the product (a real process) → a
local server that answers like Elasticsearch, Splunk HEC or Loki."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.conftest import Moto, wait_until
from tests.support.fakesinks import ElasticsearchFake, LokiFake, SplunkHecFake

INDEX = "logs-aws.cloudwatch-default"


def fill(moto: Moto, group: str, streams: int, per_stream: int) -> set[str]:
    moto.group(group)
    expected: set[str] = set()
    for s in range(streams):
        name = f"s{s}"
        moto.stream(group, name)
        messages = [f"{group}|{name}|{i:06d}" for i in range(per_stream)]
        moto.put(group, name, messages)
        expected |= set(messages)
    return expected


def test_elasticsearch_crash_redeliveries_overwrite_by_id(moto: Moto, make_product: Any) -> None:
    expected = fill(moto, "/aws/lambda/orders", 3, 2000)
    with ElasticsearchFake() as es:
        product = make_product(
            moto,
            es.url,
            CWC_LOG_GROUPS="/aws/lambda/orders",
            CWC_SINK_FORMAT="elasticsearch",
            CWC_BATCH_MAX_EVENTS="300",
        )
        product.start()
        wait_until(lambda: len(es.index_docs(INDEX)) >= 1500, 60, "first deliveries")
        product.kill()
        product.start()
        wait_until(lambda: len(es.index_docs(INDEX)) >= len(expected), 60, "all documents")
        assert product.terminate() == 0
        stored = es.index_docs(INDEX)
        assert len(stored) == len(expected), "every event once in the index"
        assert {d["message"] for d in stored.values()} == expected
        for _id, doc in stored.items():
            assert doc["event"]["id"] == _id, "the bulk _id is event.id"
        # Every bulk action is a `create`, so a re-delivery can never overwrite
        # or duplicate: Elasticsearch answers 409 and the product counts it as delivered.
        actions = [
            orjson.loads(line)
            for r in es.requests()
            if r.path.endswith("/_bulk")
            for line in r.body.splitlines()[::2]
        ]
        assert actions and all(set(a) == {"create"} for a in actions)


def test_splunk_hec_checkpoints_only_after_indexer_acknowledgement(
    moto: Moto, make_product: Any
) -> None:
    expected = fill(moto, "/ecs/checkout", 2, 500)
    token = "11111111-2222-3333-4444-555555555555"
    with SplunkHecFake(token=token, ack=True, ack_delay_s=0.5) as hec:
        product = make_product(
            moto,
            hec.url,
            CWC_LOG_GROUPS="/ecs/checkout",
            CWC_SINK_FORMAT="splunk-hec",
            CWC_SINK_TOKEN=token,
            CWC_SPLUNK_ACK="true",
        ).start()
        wait_until(lambda: len(hec.docs()) >= len(expected), 60, "acknowledged events")
        assert product.terminate() == 0
        events = hec.events()
        assert {e["event"]["message"] for e in events} == expected
        assert all(e["source"] == "/ecs/checkout" for e in events)
        assert all(e["sourcetype"] == "aws:cloudwatchlogs" for e in events)
        assert hec.acked, "the product polled the ack endpoint"
        assert token not in product.logs()


def test_loki_labels_stay_small_and_every_line_arrives(moto: Moto, make_product: Any) -> None:
    # One CloudWatch stream per group: the product keeps each stream's order,
    # and the log group is the only varying label, so each Loki stream gets one
    # CloudWatch stream's events in time order. (Several CloudWatch streams of
    # one group share a Loki stream; a Loki that refuses out-of-order entries,
    # like this fake and Loki before 2.4, drops their interleavings, which the
    # product treats as handled.)
    groups = ["/app/api", "/app/web", "/app/jobs"]
    expected: set[str] = set()
    for g in groups:
        expected |= fill(moto, g, 1, 400)
    with LokiFake() as loki:
        product = make_product(
            moto,
            loki.url,
            CWC_LOG_GROUP_PREFIXES="/app/",
            CWC_SINK_FORMAT="loki",
            CWC_LOKI_LABELS="env=test",
        ).start()
        wait_until(lambda: len(loki.stored()) >= len(expected), 60, "every entry")
        assert product.terminate() == 0
        stored = loki.stored()
        assert {orjson.loads(line)["message"] for _, _, line, _ in stored} == expected
        assert {tuple(sorted(labels.items())) for labels, _, _, _ in stored} == {
            (("env", "test"), ("log_group", g)) for g in groups
        }, "stream names must not become labels"
        assert {meta["log_stream"] for _, _, _, meta in stored} == {"s0"}


def test_otlp_both_encodings_partial_success_dead_letters_and_counts(
    moto: Moto, make_product: Any, tmp_path: Path
) -> None:
    import json

    from tests.support.harness import Admin, free_port, run_cli
    from tests.support.otlpfake import OtlpFake

    group = "/aws/lambda/orders"
    expected = fill(moto, group, 2, 300)
    moto.stream(group, "rejects")
    moto.put(group, "rejects", ["keep me", "REJECT-ME please", "keep me too"])
    expected |= {"keep me", "keep me too"}
    for encoding in ("protobuf", "json"):
        with OtlpFake(partial_reject="REJECT-ME") as receiver:
            port = free_port()
            product = make_product(
                moto,
                receiver.url,  # no path: the product posts to /v1/logs
                CWC_LOG_GROUPS=group,
                CWC_SINK_FORMAT="otlp",
                CWC_OTLP_ENCODING=encoding,
                CWC_SINK_GZIP="true",
                CWC_BATCH_MAX_EVENTS="250",
                CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
                CWC_DB_PATH=str(tmp_path / f"{encoding}.db"),
            ).start()
            wait_until(lambda: len(receiver.received()) >= len(expected), 60, "every record")
            admin = Admin(port)

            def dead_lettered(admin: Admin = admin) -> bool:
                return (admin.metric("cwconsumer_events_failed_total", group=group) or 0) >= 1

            wait_until(
                dead_lettered,
                30,
                "the rejected record dead-lettered",
            )
            dead = json.loads(run_cli(product.env, "dead-letters", "--json").stdout)
            assert product.terminate() == 0
            got = receiver.received()
            assert {r.body for r in got} == expected
            assert len(got) == len(expected), "each record once: a partial success is not retried"
            assert {r.encoding for r in got} == {encoding}
            assert {p.path for p in receiver.requests()} == {"/v1/logs"}
            assert all(r.resource["faas.name"] == "orders" for r in got)
            assert all(r.resource["cloud.region"] == "us-east-1" for r in got)
            assert all(r.resource["cloud.account.id"] == "123456789012" for r in got)
            assert len({r.uid for r in got}) == len(got)
            assert [d["document"]["message"] for d in dead] == ["REJECT-ME please"]
            assert dead[0]["event_id"] == receiver.rejected[0].uid
            assert "partial success: 1 record(s) rejected" in dead[0]["answer"]
