"""cwconsumer benchmark driver: runs the scenarios and prints one table.

    /work/venv/bin/python bench/run.py --quick          # ~10 minutes, scaled settings
    /work/venv/bin/python bench/run.py                  # full: the nominal durations (> 1 h)
    /work/venv/bin/python bench/run.py --only backlog,rate --repeats 5

Three kinds of process, so that only the product is measured:

- the CloudWatch Logs stand-in (``bench/standin.py``), data preloaded;
- the counting sink (``bench/sink.py``);
- the product, ``python -m cwconsumer run``, configured by environment only.

The product's CPU (user + sys, all its threads) comes from ``/proc/<pid>/stat``,
its peak RSS from ``VmHWM`` in ``/proc/<pid>/status``. Every figure is the
median over repeated runs or repeated measurement windows; the table says
which, and how many. Results are also written as JSON to ``bench/results/``.

The machine is the caller's: run nothing else heavy meanwhile. On a 2-core
machine the stand-in and the sink share the core the product does not use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEER_VENV = BENCH / ".venv" / "peer"  # awslogs, kept apart from the product's packages
TOOLS_VENV = BENCH / ".venv" / "tools"  # py-spy
RESULTS = BENCH / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
EVENT_SIZE = 200
AWS_EVENT_BYTES = EVENT_SIZE + 26  # what the 1 MB page cap counts per event
EVENTS_PER_FULL_PAGE = 1_048_576 // AWS_EVENT_BYTES
EXTRA_SETTINGS: dict[str, str] = {}  # --set: applied to the product in every scenario


# ----------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 on)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (``/proc/<pid>/stat``)."""
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_sys_faults(pid: int) -> tuple[float, int]:
    """System CPU seconds and minor page faults of a process (``/proc/<pid>/stat``)."""
    fields = _proc_stat(pid)
    return int(fields[12]) / CLK_TCK, int(fields[7])


def system_busy_s() -> float:
    """CPU seconds spent busy by the whole machine, all cores (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def proc_mem_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB (``VmRSS`` / ``VmHWM``)."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def http_json(url: str, data: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if data is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def http_text(url: str, timeout: float = 30) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CWC_", "AWS_"))}
    env["PYTHONPATH"] = str(ROOT)
    # The product as installed: pip byte-compiles a wheel's modules, while a
    # checkout run under PYTHONDONTWRITEBYTECODE would compile its sources at
    # every start (about 0.05 CPU-s, counted in the start-up figures). The
    # checkout's __pycache__ is ignored by git.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


class Child:
    """A helper process that prints ``KEY value`` banner lines, then serves."""

    def __init__(self, args: list[str], banners: tuple[str, ...], timeout_s: float = 120) -> None:
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=None, env=child_env(), cwd=ROOT, text=True
        )
        self.info: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        assert self.proc.stdout is not None
        while not all(b in self.info for b in banners):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args[1]} did not start in {timeout_s}s")
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{args[1]} exited with {self.proc.wait()}")
            key, _, value = line.strip().partition(" ")
            self.info[key] = value

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Standin(Child):
    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(
            [sys.executable, str(BENCH / "standin.py"), "--data", json.dumps(data)],
            ("ENDPOINT", "CONTROL", "LOADED"),
            timeout_s=600,
        )
        self.endpoint = self.info["ENDPOINT"]
        self.control = self.info["CONTROL"]

    def stats(self) -> dict[str, Any]:
        return dict(http_json(f"{self.control}/stats"))

    def get_times(self, since: float) -> list[float]:
        return list(http_json(f"{self.control}/get_times?since={since}"))

    def steady(self, rate: float, prefix: str) -> None:
        http_json(f"{self.control}/steady", {"rate": rate, "prefix": prefix})

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


class Sink(Child):
    def __init__(self, *flags: str) -> None:
        super().__init__([sys.executable, str(BENCH / "sink.py"), *flags], ("SINK",))
        self.url = self.info["SINK"]

    def stats(self) -> dict[str, Any]:
        return dict(http_json(f"{self.url}/_stats"))

    def latency(self, since: float, until: float) -> dict[str, Any]:
        return dict(http_json(f"{self.url}/_latency?since={since}&until={until}"))


@dataclass
class Product:
    """``python -m cwconsumer run`` with its own database and log file."""

    standin: Standin
    sink: Sink
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    admin: str = ""
    started_at: float = 0.0

    def start(self) -> Product:
        port = free_port()
        self.admin = f"http://127.0.0.1:{port}"
        env = child_env(**self.standin.aws_env())
        env.update(
            {
                "CWC_LOG_GROUP_PREFIXES": "/bench/",
                "CWC_SINK_URL": f"{self.sink.url}/ingest",
                "CWC_DB_PATH": str(self.workdir / "state.db"),
                "CWC_ADMIN_ADDR": f"127.0.0.1:{port}",
                "CWC_LOG_FORMAT": "json",
            }
        )
        env.update(self.settings)
        env.update(EXTRA_SETTINGS)
        log = (self.workdir / "product.log").open("ab")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cwconsumer", "run"], env=env, stdout=log, stderr=log, cwd=ROOT
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def mem_mb(self) -> tuple[float, float]:
        return proc_mem_mb(self.pid)

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample of the product's Prometheus text, e.g. ``streams``, ``state="idle"``."""
        try:
            text = http_text(f"{self.admin}/metrics", timeout=10)
        except OSError:
            return None
        want = f"cwconsumer_{name}{{{labels}}}" if labels else f"cwconsumer_{name}"
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return None

    def metric_sum(self, name: str) -> float | None:
        """The sum of every sample of one metric (e.g. ``streams`` over its states)."""
        try:
            text = http_text(f"{self.admin}/metrics", timeout=10)
        except OSError:
            return None
        want = f"cwconsumer_{name}"
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith((want + " ", want + "{"))
        )

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"the product exited ({self.proc.returncode if self.proc else '?'}); "
                f"see {self.workdir / 'product.log'}"
            )

    def stop(self, timeout_s: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cwc-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def poll_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    """Whether ``predicate`` came true within ``timeout_s`` (asked once more at the end)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.2
) -> None:
    if not poll_until(predicate, timeout_s, every_s):
        raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what}")


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- scenarios


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    figure: str
    value: str
    target: str
    verdict: str
    runs: str
    detail: dict[str, Any] = field(default_factory=dict)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


BACKLOG_DATA = {"kind": "backlog", "groups": 2, "streams": 20, "size": EVENT_SIZE}


def run_backlog_once(
    standin: Standin,
    total: int,
    keep: bool,
    settings: dict[str, str],
    profile: Path | None = None,
) -> dict[str, Any]:
    """One product run over the preloaded backlog, from a fresh database.

    With ``profile``, py-spy samples the product from its first delivery on and
    writes collapsed stacks there (the figures of such a run carry its overhead).
    """
    sink = Sink()
    spy: subprocess.Popen[bytes] | None = None
    try:
        with workdir(keep) as wd:
            product = Product(standin, sink, wd, settings).start()
            t_start = product.started_at
            standin_cpu0 = standin.cpu_s()
            samples: list[tuple[float, int, float, float, float, float]] = []
            sys_faults: list[tuple[float, int]] = []
            deadline = time.monotonic() + 600
            cpu_first_get: float | None = None  # product CPU when its first GetLogEvents came
            while True:
                product.check_alive()
                if cpu_first_get is None:
                    cpu = product.cpu_s()
                    if standin.get_times(t_start):
                        cpu_first_get = cpu
                now = time.time()
                sink_stats = sink.stats()
                events = int(sink_stats["events"])
                sys_faults.append(proc_sys_faults(product.pid))
                samples.append(
                    (now, events, product.cpu_s(), standin.cpu_s(), sink.cpu_s(), system_busy_s())
                )
                if events >= total:
                    break
                if profile is not None and spy is None and events > 0:
                    spy = start_profiler(product.pid, profile)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"backlog not delivered in 600 s ({events}/{total})")
                time.sleep(0.02)
            _, peak = product.mem_mb()
            rc = product.stop()
            if spy is not None:
                spy.wait(60)
            i_first = next(i for i, s in enumerate(samples) if s[1] > 0)
            first = samples[i_first]
            last = samples[-1]
            window_s = last[0] - first[0]
            n = last[1] - first[1]
            return {
                "events": last[1],
                "exit_code": rc,
                "events_per_s": n / window_s,
                "cpu_us_per_event": (last[2] - first[2]) / n * 1e6,
                "events_per_cpu_s": n / (last[2] - first[2]),
                "wall_from_start_s": last[0] - t_start,
                "events_per_s_from_start": last[1] / (last[0] - t_start),
                "cpu_total_s": last[2],
                # The whole process, start-up included, over every event.
                "cpu_us_per_event_whole": last[2] / last[1] * 1e6,
                # From exec to the first GetLogEvents call: the CPU read just
                # before asking the stand-in whether it has seen one, every
                # ~20 ms (so within one sampling interval, mostly above).
                "startup_cpu_s": cpu_first_get,
                # How much of the CPU per event is the kernel's, and how many
                # fresh pages the process touched per 1,000 events.
                "cpu_sys_us_per_event": (sys_faults[-1][0] - sys_faults[i_first][0]) / n * 1e6,
                "minor_faults_per_1000_events": (sys_faults[-1][1] - sys_faults[i_first][1])
                / n
                * 1000,
                "startup_to_first_delivery_s": first[0] - t_start,
                # Sink requests (batches, retries included) and events per request.
                "sink_requests": sink_stats["requests"],
                "events_per_request": last[1] / max(1, int(sink_stats["requests"])),
                "peak_rss_mb": peak,
                "product_cpu_util": (last[2] - first[2]) / window_s,
                "standin_cpu_util": (last[3] - first[3]) / window_s,
                "sink_cpu_util": (last[4] - first[4]) / window_s,
                "standin_cpu_total_s": last[3] - standin_cpu0,
                # Everything else on the machine (other users, this driver): noise.
                "other_cpu_util": (
                    (last[5] - first[5]) - sum(last[i] - first[i] for i in (2, 3, 4))
                )
                / window_s,
            }
    finally:
        sink.stop()


def ensure_profiler() -> Path:
    """py-spy: from the product's environment (``pip install -e '.[bench]'``), else
    in bench/.venv/tools, installed from PyPI on first use."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return beside
    exe = TOOLS_VENV / "bin" / "py-spy"
    if not exe.exists():
        log("installing py-spy from PyPI into bench/.venv/tools")
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        subprocess.run([str(TOOLS_VENV / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    return exe


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (only the thread holding the GIL) into ``out``."""
    exe = ensure_profiler()
    return subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
         "--nonblocking", "--gil", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_n: dict[str, int] = {}
    incl_n: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]  # fmt: skip
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        for f in set(frames):
            incl_n[f] = incl_n.get(f, 0) + n
    lines = [f"{total} samples", "", "self %  function"]
    for f, n in sorted(self_n.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / total:6.1f}  {f}")
    lines += ["", "incl %  function"]
    for f, n in sorted(incl_n.items(), key=lambda kv: -kv[1])[: top * 2]:
        lines.append(f"{100 * n / total:6.1f}  {f}")
    return "\n".join(lines)


def backlog_runs(
    name: str,
    standin: Standin,
    args: argparse.Namespace,
    settings: dict[str, str],
    describe: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """``args.repeats`` product runs over the stand-in's preloaded backlog (each
    logged as ``describe`` says), then, with ``--profile``, one more under
    py-spy (not in the results); the stand-in is stopped at the end."""
    total = args.backlog_events
    runs: list[dict[str, Any]] = []
    try:
        for i in range(args.repeats):
            r = run_backlog_once(standin, total, args.keep, settings)
            log(f"{name} run {i + 1}/{args.repeats}: {describe(r)}")
            runs.append(r)
        if args.profile:
            RESULTS.mkdir(exist_ok=True)
            raw = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-profile.txt"
            run_backlog_once(standin, total, args.keep, settings, profile=raw)
            summary = summarize_profile(raw)
            raw.with_suffix(".summary.txt").write_text(summary)
            log(f"profile (extra run, not in the medians): {raw.with_suffix('.summary.txt')}")
            print(summary, file=sys.stderr)
    finally:
        standin.stop()
    return runs


def scenario_backlog(args: argparse.Namespace) -> list[Row]:
    total = args.backlog_events
    log(f"backlog: loading {total:,} events into the stand-in")
    standin = Standin({**BACKLOG_DATA, "events": total})
    settings = {"CWC_API_RATE": str(args.backlog_rate)}
    runs = backlog_runs(
        "backlog",
        standin,
        args,
        settings,
        lambda r: (
            f"{r['events_per_s']:,.0f} ev/s, "
            f"{r['cpu_us_per_event']:.2f} µs CPU/ev, peak RSS {r['peak_rss_mb']:.0f} MB, "
            f"stand-in CPU {r['standin_cpu_util']:.0%}, sink CPU {r['sink_cpu_util']:.0%}, "
            f"other CPU {r['other_cpu_util']:.0%} of a core"
        ),
    )
    eps = median([r["events_per_s"] for r in runs])
    cpu = median([r["cpu_us_per_event"] for r in runs])
    per_cpu_s = median([r["events_per_cpu_s"] for r in runs])
    rss = median([r["peak_rss_mb"] for r in runs])
    from_start = median([r["events_per_s_from_start"] for r in runs])
    n = f"median of {len(runs)} runs"
    detail = {"runs": runs, "settings": settings, "events": total}
    return [
        Row(
            "1 backlog",
            "events/s wall (first to last delivery)",
            f"{eps:,.0f}",
            "-",
            "n/a",
            n,
            detail,
        ),
        Row("1 backlog", "events/s wall incl. start-up", f"{from_start:,.0f}", "-", "n/a", n),
        Row(
            "1 backlog",
            "CPU µs per event (user+sys)",
            f"{cpu:.2f} ({per_cpu_s:,.0f} ev/CPU-s)",
            "≤ 4 µs (≥ 250,000 ev/CPU-s)",
            verdict(cpu <= 4.0),
            n,
        ),
        Row("1 backlog", "peak RSS MB", f"{rss:.0f}", "-", "n/a", n),
    ]


def scenario_lambda(args: argparse.Namespace) -> list[Row]:
    """Issue 15: the backlog as users ship it, Lambda invocations in an
    ``/aws/lambda/`` group and an ``/ecs/`` group, parsed (``CWC_PARSE=auto``)."""
    total = args.backlog_events
    log(f"lambda: loading {total:,} Lambda-shaped events into the stand-in")
    standin = Standin({**BACKLOG_DATA, "kind": "lambda", "events": total})
    settings = {
        "CWC_API_RATE": str(args.backlog_rate),
        "CWC_LOG_GROUP_PREFIXES": "/aws/lambda/bench-,/ecs/bench-",
        "CWC_PARSE": "auto",
    }
    runs = backlog_runs(
        "lambda",
        standin,
        args,
        settings,
        lambda r: (
            f"{r['cpu_us_per_event']:.2f} µs CPU/ev steady, "
            f"{r['cpu_us_per_event_whole']:.2f} whole process, start-up "
            f"{r['startup_cpu_s'] or float('nan'):.2f} CPU-s, peak RSS "
            f"{r['peak_rss_mb']:.0f} MB, {r['events_per_s']:,.0f} ev/s, "
            f"other CPU {r['other_cpu_util']:.0%} of a core"
        ),
    )
    steady = median([r["cpu_us_per_event"] for r in runs])
    whole = median([r["cpu_us_per_event_whole"] for r in runs])
    startup = median([r["startup_cpu_s"] for r in runs if r["startup_cpu_s"] is not None])
    rss = median([r["peak_rss_mb"] for r in runs])
    eps = median([r["events_per_s"] for r in runs])
    n = f"median of {len(runs)} runs"
    detail = {"runs": runs, "settings": settings, "events": total}
    return [
        Row("1b lambda", "events/s wall (first to last delivery)", f"{eps:,.0f}", "-", "n/a", n,
            detail),
        Row("1b lambda", "CPU µs per event, steady (first to last delivery)", f"{steady:.2f}",
            "-", "n/a", n),
        Row("1b lambda", "CPU µs per event, whole process incl. start-up",
            f"{whole:.2f} ({1e6 / whole:,.0f} ev/CPU-s)", "≤ 4 µs (stretch 3)",
            verdict(whole <= 4.0), n),
        Row("1b lambda", "start-up CPU s, exec to first GetLogEvents", f"{startup:.2f}", "-",
            "n/a", n),
        Row("1b lambda", "peak RSS MB", f"{rss:.0f}", "≤ 150 MB", verdict(rss <= 150), n),
    ]  # fmt: skip


def wait_calls(standin: Standin) -> list[float]:
    """GetLogEvents call times, once there is at least one."""
    deadline = time.monotonic() + 60
    while not (times := standin.get_times(0)):
        if time.monotonic() > deadline:
            raise RuntimeError("no GetLogEvents call in 60 s")
        time.sleep(0.2)
    return times


def max_in_any(times: list[float], seconds: float) -> int:
    """Most calls in any half-open interval of ``seconds``."""
    best = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - seconds:
            j += 1
        best = max(best, i - j + 1)
    return best


def scenario_rate(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for rate in (10, 25):
        need = int(
            rate * (args.rate_warmup_s + args.rate_window_s + 10) * EVENTS_PER_FULL_PAGE * 1.2
        )
        log(f"rate {rate}/s: loading {need:,} events (full 1 MB pages) into the stand-in")
        standin = Standin({**BACKLOG_DATA, "events": need})
        sink = Sink()
        try:
            with workdir(args.keep) as wd:
                product = Product(standin, sink, wd, {"CWC_API_RATE": str(rate)}).start()
                first_calls = wait_calls(standin)
                t0 = first_calls[0] + args.rate_warmup_s
                time.sleep(max(0.0, t0 + args.rate_window_s + 0.5 - time.time()))
                product.check_alive()
                delivered = int(sink.stats()["events"])
                times = [t for t in standin.get_times(t0) if t < t0 + args.rate_window_s]
                cpu = product.cpu_s()
                product.stop()
        finally:
            sink.stop()
            standin.stop()
        k = args.rate_windows
        width = args.rate_window_s / k
        per_window = [
            sum(1 for t in times if t0 + i * width <= t < t0 + (i + 1) * width) / width
            for i in range(k)
        ]
        pages = median(per_window)
        peak = max_in_any(times, 1.0)
        peak5 = max_in_any(times, 5.0)
        backlog_left = delivered < need
        log(
            f"rate {rate}/s: pages/s per window {[round(p, 2) for p in per_window]}, "
            f"max in any 1 s: {peak}, in any 5 s: {peak5}, backlog left: {backlog_left}"
        )
        # Calls are reserved 1/rate apart and checked again as they leave (no
        # more than the rate within any 1.03 s), so no 1-second window at the
        # stand-in may hold more than the rate.
        ok = pages >= 0.95 * rate and peak <= rate and peak5 <= 5 * rate and backlog_left
        rows.append(
            Row(
                "2 rate",
                f"pages/s at CWC_API_RATE={rate} (most in any 1 s / any 5 s)",
                f"{pages:.2f} = {pages / rate:.1%} ({peak} / {peak5})",
                f"≥ {0.95 * rate:g}/s; ≤ {rate} / {5 * rate}",
                verdict(ok),
                f"median of {k} × {width:g}-s windows",
                {
                    "per_window": per_window,
                    "max_in_any_second": peak,
                    "max_in_any_5_seconds": peak5,
                    "calls": len(times),
                    "events_loaded": need,
                    "delivered": delivered,
                    "product_cpu_s": cpu,
                },
            )
        )
    return rows


def scenario_idle(args: argparse.Namespace) -> list[Row]:
    """Priming run at a high rate until every idle stream went idle, then a
    restart with the default CWC_API_RATE, observed in windows."""
    streams, active = 10_000, 100
    grace = args.idle_grace
    log(f"idle: {streams:,} streams, {active} active; grace {grace}; loading")
    standin = Standin({"kind": "idle", "groups": 2, "streams": streams, "active": active,
                       "size": EVENT_SIZE})  # fmt: skip
    sink = Sink()
    prime = {
        "CWC_IDLE_GRACE": grace,
        "CWC_API_RATE": str(args.idle_prime_rate),
        "CWC_START_POSITION": "beginning",
    }
    measure = {"CWC_IDLE_GRACE": grace}
    try:
        with workdir(args.keep) as wd:
            product = Product(standin, sink, wd, prime).start()
            standin.steady(args.idle_active_rate, "active-")
            started = time.monotonic()

            def all_idle() -> bool:
                product.check_alive()
                return (product.metric("streams", 'state="idle"') or 0) >= streams - active

            wait_for(all_idle, args.idle_prime_timeout_s, "every idle stream to go idle", 2.0)
            prime_s = time.monotonic() - started
            # States reach the database with discovery's periodic save; stopping
            # before that would make the restart poll streams stored as tailing.
            wait_for(
                lambda: db_states(wd).get("idle", 0) >= streams - active,
                120,
                "the idle states to be saved",
                2.0,
            )
            same = standin.stats()
            t_same = time.monotonic()
            time.sleep(args.idle_same_window_s)
            product.check_alive()
            same_process = idle_window(
                same, standin.stats(), time.monotonic() - t_same, streams, active
            )
            log(f"idle: same process, {args.idle_same_window_s:g} s after priming: {same_process}")
            product.stop()
            stored = db_states(wd)
            log(f"idle: primed in {prime_s:.0f} s; restarting with {measure} and observing")
            product = Product(standin, sink, wd, measure).start()
            restart_before = standin.stats()
            time.sleep(args.idle_warmup_s)
            windows: list[dict[str, float]] = []
            before = standin.stats()
            restart_idle_calls = before["get_per_prefix"].get("idle", 0) - restart_before[
                "get_per_prefix"
            ].get("idle", 0)
            first = before
            cpu_before, t_before = product.cpu_s(), time.monotonic()
            t_first = t_before
            for i in range(args.idle_windows):
                time.sleep(args.idle_window_s)
                product.check_alive()
                after = standin.stats()
                cpu_after, t_after = product.cpu_s(), time.monotonic()
                w = idle_window(before, after, t_after - t_before, streams, active)
                w["product_cpu_util"] = (cpu_after - cpu_before) / (t_after - t_before)
                log(f"idle window {i + 1}/{args.idle_windows}: {w}")
                windows.append(w)
                before, cpu_before, t_before = after, cpu_after, t_after
            whole = idle_window(first, before, t_before - t_first, streams, active)
            _, peak = product.mem_mb()
            delivered = sink.stats()["events"]
            product.stop()
    finally:
        sink.stop()
        standin.stop()
    per_hour = median([w["per_idle_stream_per_hour"] for w in windows])
    act = median([w["active_calls_per_stream_per_min"] for w in windows])
    util = median([w["product_cpu_util"] for w in windows])
    n = f"median of {len(windows)} × {args.idle_window_s:g}-s windows"
    detail = {"windows": windows, "whole": whole, "prime_s": prime_s, "prime": prime,
              "measure": measure, "peak_rss_mb": peak, "delivered": delivered,
              "idle_calls_in_restart_warmup": restart_idle_calls,
              "states_stored_at_stop": stored, "same_process": same_process}  # fmt: skip
    observed = f"{len(windows) * args.idle_window_s:g} s"
    same_per_hour = same_process["per_idle_stream_per_hour"]
    return [
        Row("3 idle", "GetLogEvents per idle stream per hour, same process after grace "
            f"(CWC_API_RATE={args.idle_prime_rate})", f"{same_per_hour:.3f}", "0",
            verdict(same_per_hour == 0), f"1 × {args.idle_same_window_s:g}-s window", detail),
        Row("3 idle", "GetLogEvents per idle stream per hour, after a restart (CWC_API_RATE=10)",
            f"{per_hour:.3f}", "0", verdict(per_hour == 0), n),
        Row("3 idle", "GetLogEvents to idle streams in the restart's first "
            f"{args.idle_warmup_s:g} s", f"{restart_idle_calls}", "-", "n/a", "1 run"),
        Row("3 idle", "discovery calls per minute (Describe*)",
            f"{whole['discovery_calls_per_min']:.1f}", "-", "n/a", f"whole {observed}"),
        Row("3 idle", "GetLogEvents per active stream per minute", f"{act:.1f}", "-", "n/a", n),
        Row("3 idle", "product CPU (% of a core)", f"{util:.1%}", "-", "n/a", n),
    ]  # fmt: skip


def db_states(wd: Path) -> dict[str, int]:
    """Stream states as stored in the product's database (read-only)."""
    import sqlite3

    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{wd / 'state.db'}?mode=ro", uri=True, timeout=5)
        ) as db:
            return dict(db.execute("SELECT state, count(*) FROM streams GROUP BY state").fetchall())
    except sqlite3.Error:
        return {}


def idle_window(
    before: dict[str, Any], after: dict[str, Any], span: float, streams: int, active: int
) -> dict[str, float]:
    def delta(prefix: str) -> int:
        return int(after["get_per_prefix"].get(prefix, 0) - before["get_per_prefix"].get(prefix, 0))

    discovery = sum(
        after["ops"][op] - before["ops"][op] for op in ("DescribeLogStreams", "DescribeLogGroups")
    )
    return {
        "idle_calls": delta("idle"),
        "per_idle_stream_per_hour": delta("idle") / (streams - active) / span * 3600,
        "active_calls_per_stream_per_min": delta("active") / active / span * 60,
        "discovery_calls_per_min": discovery / span * 60,
        "span_s": span,
    }


def scenario_dead(args: argparse.Namespace) -> list[Row]:
    streams_per_group, per_stream = 5_000, 50
    total = 2 * streams_per_group * per_stream
    log(f"dead sink: 10,000 streams × {per_stream} events; {args.dead_s:g} s")
    standin = Standin({**BACKLOG_DATA, "streams": streams_per_group, "events": total})
    sink = Sink("--dead")
    samples: list[tuple[float, float, float]] = []
    try:
        with workdir(args.keep) as wd:
            product = Product(standin, sink, wd, {"CWC_API_RATE": "25"}).start()
            started = time.monotonic()
            while time.monotonic() - started < args.dead_s:
                product.check_alive()
                rss, hwm = product.mem_mb()
                samples.append((time.monotonic() - started, rss, hwm))
                time.sleep(1.0)
            buffered = product.metric("buffer_events")
            requests = sink.stats()["requests"]
            gets = standin.stats()["ops"]["GetLogEvents"]
            product.stop(timeout_s=90)
    finally:
        sink.stop()
        standin.stop()
    half = args.dead_s / 2
    first = max(s[1] for s in samples if s[0] < half)
    second = max(s[1] for s in samples if s[0] >= half)
    peak = samples[-1][2]
    growth = second - first
    ok = peak <= 150 and growth <= 5
    detail = {"rss_samples": samples[:: max(1, len(samples) // 60)], "buffered_events": buffered,
              "sink_requests": requests, "get_log_events_calls": gets}  # fmt: skip
    n = f"1 run, {args.dead_s:g} s, RSS sampled every 1 s"
    return [
        Row("4 dead sink", "peak RSS MB (VmHWM)", f"{peak:.0f}", "≤ 150", verdict(peak <= 150), n, detail),
        Row("4 dead sink", "RSS growth 2nd half vs 1st half (MB)", f"{growth:+.1f}",
            "flat (≤ +5)", verdict(ok), n),
    ]  # fmt: skip


def scenario_latency(args: argparse.Namespace) -> list[Row]:
    groups, streams = 2, args.latency_streams
    log(f"latency: {args.latency_rate:g} events/s over {groups * streams} streams")
    standin = Standin({"kind": "recent", "groups": groups, "streams": groups * streams})
    sink = Sink("--latency")
    settings = {"CWC_START_POSITION": "beginning"}
    try:
        with workdir(args.keep) as wd:
            product = Product(standin, sink, wd, settings).start()
            wait_for(lambda: sink.stats()["events"] >= groups * streams, 60, "the first events")
            standin.steady(args.latency_rate, "")
            t0 = time.time() + args.latency_warmup_s
            width = args.latency_window_s / args.latency_windows
            time.sleep(args.latency_warmup_s + args.latency_window_s + 1)
            product.check_alive()
            windows = [
                sink.latency(t0 + i * width, t0 + (i + 1) * width)
                for i in range(args.latency_windows)
            ]
            cpu = product.cpu_s()
            product.stop()
    finally:
        sink.stop()
        standin.stop()
    for w in windows:
        w["events_per_s"] = w["count"] / width
    log(f"latency windows: {windows}")
    p50 = median([w["p50_ms"] for w in windows]) / 1000
    p99 = median([w["p99_ms"] for w in windows]) / 1000
    eps = median([w["events_per_s"] for w in windows])
    bound = 5 + 1 + 1  # CWC_POLL_INTERVAL + CWC_BATCH_MAX_WAIT + 1 s (defaults)
    n = f"median of {len(windows)} × {width:g}-s windows"
    detail = {"windows": windows, "product_cpu_s": cpu, "streams": groups * streams}
    return [
        Row("5 latency", f"p50 / p99 s ({eps:,.0f} ev/s delivered)", f"{p50:.2f} / {p99:.2f}",
            f"p99 ≤ {bound} s", verdict(p99 <= bound), n, detail),
    ]  # fmt: skip


def ensure_peer() -> Path:
    exe = PEER_VENV / "bin" / "awslogs"
    if not exe.exists():
        log("peer: installing awslogs from PyPI into bench/.venv/peer")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(PEER_VENV / "bin" / "pip"), "install", "-q", "awslogs==0.15.0"], check=True
        )
    return exe


def scenario_peer(args: argparse.Namespace) -> list[Row]:
    exe = ensure_peer()
    total = args.peer_events
    log(f"peer: awslogs and cwconsumer on the same {total:,} events")
    standin = Standin({**BACKLOG_DATA, "events": total})
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        started = time.time()
        lines = 0
        cpu = 0.0
        for g in range(2):
            proc = subprocess.Popen(
                [str(exe), "get", f"/bench/g{g}", "ALL", "--start", "3h",
                 "--aws-endpoint-url", standin.endpoint, "--aws-region", "us-east-1",
                 "--aws-access-key-id", "testing", "--aws-secret-access-key", "testing",
                 "--color", "never"],
                stdout=subprocess.PIPE, env=env,
            )  # fmt: skip
            out = proc.stdout
            assert out is not None
            while chunk := out.read(1 << 20):
                lines += chunk.count(b"\n")
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
            if proc.returncode:
                raise RuntimeError(f"awslogs exited with {proc.returncode}")
        peer_s = time.time() - started
        peer_eps = lines / peer_s
        log(
            f"peer: awslogs {lines:,} lines in {peer_s:.1f} s = {peer_eps:,.0f} ev/s, {cpu:.1f} s CPU"
        )
        ours = run_backlog_once(standin, total, args.keep, {"CWC_API_RATE": str(args.backlog_rate)})
    finally:
        standin.stop()
    ours_eps = ours["events_per_s"]
    whole_eps = ours["events_per_s_from_start"]
    peer_cpu_us = cpu / lines * 1e6
    return [
        Row("6 peer", "awslogs events/s (whole run; CPU µs/event)",
            f"{peer_eps:,.0f} ({peer_cpu_us:,.0f} µs)", "-", "n/a", "1 run",
            {"events": lines, "wall_s": peer_s, "cpu_s": cpu, "data_events": total}),
        Row("6 peer", "cwconsumer events/s, same data (first to last delivery; CPU µs/event)",
            f"{ours_eps:,.0f} ({ours['cpu_us_per_event']:.1f} µs)", "-", "n/a", "1 run", ours),
        Row("6 peer", "ratio cwconsumer / awslogs, events/s", f"{ours_eps / peer_eps:.1f}×",
            "≥ 20×", verdict(ours_eps / peer_eps >= 20), "1 run each"),
        Row("6 peer", "ratio incl. cwconsumer's start-up", f"{whole_eps / peer_eps:.1f}×",
            "-", "n/a", "1 run each"),
        Row("6 peer", "ratio of CPU per event", f"{peer_cpu_us / ours['cpu_us_per_event']:.0f}×",
            "-", "n/a", "1 run each"),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- main

FRESHNESS = ("fleet", "biggroup", "months")  # bench/freshness.py
SCENARIOS = ("backlog", "lambda", "otlp", "rate", "idle", "dead", "latency", "peer", *FRESHNESS)


def _freshness() -> Any:
    """bench/freshness.py, importing this module as ``run`` (not a second copy)."""
    sys.modules.setdefault("run", sys.modules[__name__])
    import freshness

    return freshness


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gib": f"{mem_gb:.0f}",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "cwconsumer",
        "aiobotocore",
        "botocore",
        "aiohttp",
        "orjson",
        "aiosqlite",
        "anyio",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "?"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cwconsumer"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        out["git"] = head + (" + uncommitted changes in cwconsumer/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        out["git"] = "?"
    return out


def table(rows: list[Row]) -> str:
    head = ("scenario", "figure", "value", "target", "verdict", "median over")
    cells = [head] + [(r.scenario, r.figure, r.value, r.target, r.verdict, r.runs) for r in rows]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c) + " |" for c in cells[1:]]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="cwconsumer benchmarks", allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="scaled durations (about 10 minutes)")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument(
        "--repeats", type=int, default=None, help="backlog runs (default 3 quick, 5 full)"
    )
    p.add_argument("--keep", action="store_true", help="keep each run's database and product log")
    p.add_argument("--profile", action="store_true", help="one more backlog run under py-spy")
    p.add_argument(
        "--set", action="append", default=[], metavar="CWC_NAME=VALUE",
        help="extra product setting for every scenario (repeatable); shown in the results",
    )  # fmt: skip
    _freshness().add_args(p)
    args = p.parse_args(argv)
    _freshness().settle_args(args)
    args.settings = dict(item.split("=", 1) for item in args.set)
    q = args.quick
    args.repeats = args.repeats or (3 if q else 5)
    args.backlog_events = 1_000_000
    args.backlog_rate = 1000  # the highest CWC_API_RATE: the pacing is not what is measured
    args.rate_warmup_s = 3.0
    args.rate_window_s = 15.0 if q else 60.0
    args.rate_windows = 3
    args.idle_grace = "5s" if q else "5m"
    args.idle_prime_rate = 1000
    args.idle_prime_timeout_s = 600 if q else 3600
    args.idle_active_rate = 100.0
    args.idle_same_window_s = 30.0 if q else 600.0
    args.idle_warmup_s = 15.0
    args.idle_window_s = 60.0 if q else 1200.0
    args.idle_windows = 2 if q else 3
    args.dead_s = 120.0 if q else 600.0
    args.latency_rate = 5000.0
    args.latency_streams = 5
    args.latency_warmup_s = 10.0
    args.latency_window_s = 45.0 if q else 300.0
    args.latency_windows = 3
    args.peer_events = 200_000 if q else 1_000_000
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    subprocess.run(  # the bytecode cache of child_env, filled before anything is measured
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "cwconsumer")],
        env=child_env(), check=True,
    )  # fmt: skip
    EXTRA_SETTINGS.update(args.settings)
    if args.profile:
        ensure_profiler()
    if "peer" in args.only.split(","):
        ensure_peer()
    only = args.only.split(",")
    started = time.time()
    rows: list[Row] = []
    for name in SCENARIOS:
        if name not in only:
            continue
        t = time.monotonic()
        if name == "backlog":
            rows += scenario_backlog(args)
        elif name == "lambda":
            rows += scenario_lambda(args)
        elif name == "otlp":
            sys.modules.setdefault("run", sys.modules[__name__])
            import otlp

            rows += otlp.scenario_otlp(args)
        elif name == "rate":
            rows += scenario_rate(args)
        elif name == "idle":
            rows += scenario_idle(args)
        elif name == "dead":
            rows += scenario_dead(args)
        elif name == "latency":
            rows += scenario_latency(args)
        elif name == "peer":
            rows += scenario_peer(args)
        elif name in FRESHNESS:
            rows += _freshness().SCENARIOS[name](args)
        log(f"{name}: done in {time.monotonic() - t:.0f} s")
    mode = "quick" if args.quick else "full"
    print(f"\ncwconsumer benchmark ({mode} mode, {time.time() - started:.0f} s)")
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
          f"Linux {info['kernel']}, Python {info['python']}\n")  # fmt: skip
    print(f"product: git {versions()['git']}\n")
    print(table(rows))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}.json"
    result = {
        "mode": mode,
        "machine": info,
        "versions": versions(),
        "argv": sys.argv[1:],
        "settings": dict(vars(args)),
        "rows": [r.__dict__ for r in rows],
    }
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nfull results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
