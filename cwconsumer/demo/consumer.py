"""The consumer under demonstration: ``python -m cwconsumer run`` as a child process.

:class:`Consumer` starts, kills (SIGKILL: the crash), stops (SIGTERM) and cleans
up the child, appending its log to a file whose tail is shown if the demo fails;
:func:`consumer_env` gives it an environment of its own, pointed at the demo's
stand-in and receiver and at nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cwconsumer
from cwconsumer.demo.settings import CONSUMER_SETTINGS, REGION, TAIL_LINES, DemoFailed

__all__ = ["Consumer", "consumer_env"]


class Consumer:
    """``python -m cwconsumer run`` as a child process, its log appended to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self._env = env
        self.log_path = log_path
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> int:
        """Start the child (again); returns its pid."""
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- demo: start #{self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cwconsumer", "run"],
                env=self._env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self.proc.pid

    @property
    def pid(self) -> int:
        """The child's pid, 0 before the first start."""
        return self.proc.pid if self.proc is not None else 0

    def check_alive(self) -> None:
        """:class:`DemoFailed` if the child has exited by itself."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoFailed(
                f"the consumer stopped by itself with exit code {self.proc.returncode}"
            )

    def kill(self) -> None:
        """SIGKILL the child and reap it: the crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout_s: float) -> int:
        """SIGTERM the child and return its exit code; :class:`DemoFailed` (after a kill)
        if it does not stop within ``timeout_s``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise DemoFailed(
                f"the consumer did not stop within {timeout_s:.0f} s of SIGTERM"
            ) from None

    def cleanup(self) -> None:
        """Stop the child if it still runs (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last ``lines`` of the child's log, for a failure report."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


def consumer_env(moto_url: str, sink_url: str, db_path: Path) -> dict[str, str]:
    """The child's environment: the caller's, without any AWS or CWC setting that
    could point it elsewhere (a real account, a real sink), plus the demo's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CWC_"))}
    # The child runs this very package, also from a source tree that is not installed.
    package_root = str(Path(cwconsumer.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(CONSUMER_SETTINGS)
    env.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_EC2_METADATA_DISABLED": "true",
            "CWC_SINK_URL": sink_url,
            "CWC_DB_PATH": str(db_path),
        }
    )
    return env
