"""Shared fixtures: moto in server mode, the product as a real subprocess,
and the recording HTTP sink (tests/support/fakesinks.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cwconsumer.sinks.base import Sink
from tests.support.fakesinks import RecordingSink
from tests.support.harness import run_env

REGION = "us-east-1"

# The suites that start the product (or another cwconsumer command) as a
# subprocess are marked ``slow``: ``pytest -m "not slow"`` runs the fast tier
# alone, CI runs everything. A test is also slow when it asks for a product.
SUBPROCESS_SUITES = frozenset(
    {
        "test_admin",
        "test_cli_config",
        "test_crash",
        "test_database",
        "test_demo",
        "test_discovery_walk",
        "test_e2e",
        "test_e2e_formats",
        "test_failure_paths",
        "test_fairness",
        "test_faults_aws",
        "test_health_aws",
        "test_lease",
        "test_logging",
        "test_operator_cli",
        "test_poison",
    }
)
_PRODUCT_FIXTURES = frozenset({"make_product", "make_fake_product"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mod = getattr(item, "module", None)
        module = mod.__name__.rsplit(".", 1)[-1] if mod is not None else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if module in SUBPROCESS_SUITES or fixtures & _PRODUCT_FIXTURES:
            item.add_marker(pytest.mark.slow)


class Moto:
    """moto in server mode over HTTP, with a synchronous botocore client for setup."""

    def __init__(self, endpoint: str) -> None:
        import botocore.session

        self.endpoint = endpoint
        self.client: Any = botocore.session.get_session().create_client(
            "logs",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def group(self, name: str) -> None:
        self.client.create_log_group(logGroupName=name)

    def stream(self, group: str, stream: str) -> None:
        self.client.create_log_stream(logGroupName=group, logStreamName=stream)

    def put(
        self, group: str, stream: str, messages: list[str], *, ts_ms: int | None = None
    ) -> None:
        """Put messages in order; all share one timestamp unless spread."""
        base = ts_ms if ts_ms is not None else int(time.time() * 1000) - 60_000
        for i in range(0, len(messages), 5000):
            part = messages[i : i + 5000]
            self.client.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[
                    {"timestamp": base + (i + j) // 7, "message": m} for j, m in enumerate(part)
                ],
            )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_server: str) -> Moto:
    m = Moto(moto_server)
    m.reset()  # fresh AWS state; every test also has its own database
    return m


@pytest.fixture
async def sinks() -> AsyncIterator[list[Sink]]:
    """Sinks built by a test (append them); all closed afterwards."""
    built: list[Sink] = []
    yield built
    for built_sink in built:
        await built_sink.aclose()


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    fake = RecordingSink().start()
    yield fake
    fake.stop()


@dataclass
class Product:
    """``python -m cwconsumer run`` as a child process."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: list[int] = field(default_factory=list)

    def start(self, **extra_env: str) -> Product:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(self.env, **extra_env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cwconsumer", "run"], env=env, stdout=log, stderr=log
        )
        log.close()
        return self

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout_s)
        self.runs.append(rc)
        return rc

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop_quietly(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


def product_env(moto: Moto, sink_url: str, db_path: Path, **overrides: str) -> dict[str, str]:
    return run_env(moto.env(), sink_url, db_path, **overrides)


@pytest.fixture
def make_product(tmp_path: Path) -> Iterator[Callable[..., Product]]:
    made: list[Product] = []

    def make(moto: Moto, sink_url: str, **overrides: str) -> Product:
        n = len(made)
        env = product_env(moto, sink_url, tmp_path / "state" / "cwc.db", **overrides)
        p = Product(env, tmp_path / f"product-{n}.log")
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop_quietly()
        # Shown by pytest only when the test failed: what the product said.
        print(f"--- {p.log_path.name} (last 60 lines) ---")
        print("\n".join(p.logs().splitlines()[-60:]))


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


# -- the CloudWatch Logs stand-in, for the reliability tests ---------------------------


@pytest.fixture
def start_fakecwl() -> Iterator[Callable[..., Any]]:
    """``start_fakecwl(seed=0)``: a started FakeCloudWatchLogs, stopped after the test."""
    from tests.support.fakecwl import FakeCloudWatchLogs

    started: list[FakeCloudWatchLogs] = []

    def start(seed: int = 0) -> FakeCloudWatchLogs:
        fake = FakeCloudWatchLogs(seed=seed).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def make_fake_product(tmp_path: Path) -> Iterator[Callable[..., Product]]:
    """``make_fake_product(fake, sink_url, **env)``: like ``make_product``, against
    the stand-in. Products made in one test share one database."""
    from tests.support.harness import fake_env

    made: list[Product] = []

    def make(fake: Any, sink_url: str, **overrides: str) -> Product:
        env = fake_env(fake, sink_url, tmp_path / "state" / "cwc.db", **overrides)
        p = Product(env, tmp_path / f"fake-product-{len(made)}.log")
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop_quietly()
        # Shown by pytest only when the test failed: what the product said.
        print(f"--- {p.log_path.name} (last 60 lines) ---")
        print("\n".join(p.logs().splitlines()[-60:]))
