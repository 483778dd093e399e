"""/healthz does not say 200 while AWS refuses to let us read."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.fakesinks import RecordingSink
from tests.support.harness import Admin, fake_env, free_port


def test_denied_reads_make_healthz_fail_with_the_reason(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    with FakeCloudWatchLogs() as fake, RecordingSink() as sink:
        fake.put("/g", "s", [(now - 1000 + i, f"m {i}") for i in range(10)])
        fake.throttle_next(1000, operation="GetLogEvents", code="AccessDeniedException")
        port = free_port()
        env = fake_env(
            fake,
            sink.url,
            tmp_path / "db" / "cwc.db",
            CWC_LOG_GROUPS="/g",
            CWC_ADMIN_ADDR=f"127.0.0.1:{port}",
        )
        product = Product(env, tmp_path / "product.log").start()
        admin = Admin(port)
        try:

            def denied() -> bool:
                answer = admin.healthz()
                return (
                    answer is not None
                    and answer[0] == 503
                    and "AWS refuses GetLogEvents" in str(answer[1])
                )

            wait_until(denied, 30, "/healthz to report the refusal")
            assert sink.docs() == [], "nothing can have been read"
            assert product.terminate() == 0
        finally:
            product.stop_quietly()
