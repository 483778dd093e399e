"""Small host-side helpers for deploy/verify-image.sh (standard library and botocore only).

Subcommands:
  free-port                       print a free TCP port on 127.0.0.1
  sink PORT_FILE OUT_FILE         HTTP receiver: records every POST body as one JSON line
  seed ENDPOINT GROUP STREAM N K  put N events numbered from K into a CloudWatch Logs stand-in
  wait-events OUT_FILE N TIMEOUT  wait until the sink holds N distinct seeded events
  http-status URL                 print the status code of GET URL (000 if unreachable)
  health-role URL                 print the "role" of a /healthz answer (active, standby, none)

Nothing here is part of the product; it only drives the image from the outside.
"""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MARKER = "verify-image event"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_sink(port_file: Path, out_file: Path) -> None:
    """Serve on a free port, append {"path", "body"} per POST to out_file, answer 200."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            record = {"path": self.path, "body": body.decode("utf-8", "replace")}
            with lock, out_file.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            reply = b'{"errors":false}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    out_file.touch()
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def seed(endpoint: str, group: str, stream: str, count: int, first: int) -> None:
    """Create group and stream if needed and put `count` numbered events."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "logs",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="verify",
        aws_secret_access_key="verify",
    )
    for call, kwargs in (
        (client.create_log_group, {"logGroupName": group}),
        (client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
    ):
        try:
            call(**kwargs)
        except client.exceptions.ResourceAlreadyExistsException:
            pass
    now_ms = int(time.time() * 1000)
    events = [{"timestamp": now_ms + i, "message": f"{MARKER} {first + i}"} for i in range(count)]
    client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def _seeded_messages(out_file: Path) -> list[str]:
    """Every seeded event message found in the sink's records, duplicates included."""
    found: list[str] = []
    if not out_file.exists():
        return found
    for line in out_file.read_text(encoding="utf-8").splitlines():
        body = json.loads(line)["body"]
        for doc_line in body.splitlines():
            doc_line = doc_line.strip()
            if not doc_line:
                continue
            try:
                parsed = json.loads(doc_line)
            except ValueError:
                continue
            docs = parsed if isinstance(parsed, list) else [parsed]
            for doc in docs:
                message = doc.get("message") if isinstance(doc, dict) else None
                if isinstance(message, str) and message.startswith(MARKER):
                    found.append(message)
    return found


def wait_events(out_file: Path, want: int, timeout_s: float) -> int:
    """Wait until `want` distinct seeded events arrived; print counts; 0 on success."""
    deadline = time.monotonic() + timeout_s
    while True:
        messages = _seeded_messages(out_file)
        distinct = len(set(messages))
        if distinct >= want or time.monotonic() >= deadline:
            print(f"received={len(messages)} distinct={distinct} wanted={want}")
            return 0 if distinct >= want else 1
        time.sleep(0.5)


def http_status(url: str) -> str:
    """Status code of GET url as three digits, or 000 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except OSError:
        return "000"


def health_role(url: str) -> str:
    """The "role" field of a /healthz answer, whatever its status code; "none" if absent."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        return "none"
    try:
        role = json.loads(body).get("role")
    except (ValueError, AttributeError):
        return "none"
    return role if isinstance(role, str) else "none"


def main(argv: list[str]) -> int:
    """Dispatch one subcommand (see the module docstring)."""
    match argv:
        case ["free-port"]:
            print(free_port())
        case ["sink", port_file, out_file]:
            run_sink(Path(port_file), Path(out_file))
        case ["seed", endpoint, group, stream, count, first]:
            seed(endpoint, group, stream, int(count), int(first))
        case ["wait-events", out_file, want, timeout_s]:
            return wait_events(Path(out_file), int(want), float(timeout_s))
        case ["http-status", url]:
            print(http_status(url))
        case ["health-role", url]:
            print(health_role(url))
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
