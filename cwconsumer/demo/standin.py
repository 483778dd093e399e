"""The demo's CloudWatch Logs: moto in server mode, in a thread of the demo's process.

:class:`CloudWatch` starts moto on a free loopback port and fills it through a
plain botocore client, in calls PutLogEvents accepts (:func:`put_chunks`);
:func:`aws_settings_set_aside` keeps the caller's AWS settings (a broken config
file, a missing profile) from reaching moto while the demo runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from moto.server import ThreadedMotoServer

from cwconsumer.demo.settings import REGION, DemoFailed
from cwconsumer.demo.sources import StreamLog

__all__ = ["CloudWatch", "aws_settings_set_aside", "put_chunks"]


class CloudWatch:
    """moto in server mode, in a thread, filled through a plain botocore client."""

    def __init__(self) -> None:
        # werkzeug logs every request, and moto's errors, to stderr unless told otherwise;
        # an error reaches the client here anyway, and is reported from there.
        logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._client: Any = None
        self._groups: set[str] = set()
        self._streams: set[tuple[str, str]] = set()

    @property
    def url(self) -> str:
        """The endpoint (``AWS_ENDPOINT_URL`` for the consumer)."""
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Start moto on a free loopback port and a client to fill it."""
        import botocore.config
        import botocore.session

        self._server.start()
        self._client = botocore.session.Session().create_client(
            "logs",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
            config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 2}),
        )

    def stop(self) -> None:
        """Close the client and stop moto."""
        if self._client is not None:
            self._client.close()
        self._server.stop()

    def put(self, logs: Sequence[StreamLog]) -> None:
        """Create what is missing and put the events, in calls PutLogEvents accepts."""
        for log in logs:
            if log.group not in self._groups:
                self._client.create_log_group(logGroupName=log.group)
                self._groups.add(log.group)
            if (log.group, log.stream) not in self._streams:
                self._client.create_log_stream(logGroupName=log.group, logStreamName=log.stream)
                self._streams.add((log.group, log.stream))
            for chunk in put_chunks(log.events):
                answer = self._client.put_log_events(
                    logGroupName=log.group,
                    logStreamName=log.stream,
                    logEvents=[{"timestamp": ts, "message": m} for ts, m in chunk],
                )
                if answer.get("rejectedLogEventsInfo"):
                    raise DemoFailed(f"moto refused events of {log.group} {log.stream}")


def put_chunks(events: Sequence[tuple[int, str]]) -> Iterator[Sequence[tuple[int, str]]]:
    """At most 10,000 events and 1 MiB (message bytes + 26 each) per PutLogEvents call."""
    start, size = 0, 0
    for i, (_, message) in enumerate(events):
        n = len(message.encode()) + 26
        if i > start and (i - start >= 10_000 or size + n > 1_000_000):
            yield events[start:i]
            start, size = i, 0
        size += n
    if start < len(events):
        yield events[start:]


@contextlib.contextmanager
def aws_settings_set_aside() -> Iterator[None]:
    """Hide the caller's AWS settings from this process while the demo runs.

    moto (in this process) reads the AWS config file through boto3: a broken
    file, or a profile that does not exist, must not stop a demo that needs
    neither. The consumer gets an environment of its own (:func:`~cwconsumer.demo.consumer.consumer_env`).
    """
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for key in saved:
        del os.environ[key]
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)
