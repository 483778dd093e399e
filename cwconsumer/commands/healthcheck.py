"""``cwconsumer healthcheck [--standby-ok]``: exit 0 when ``/healthz`` of the
local ``run`` answers 200, for container health checks (no curl in the image).

Never through a proxy: an ``HTTP_PROXY`` set for the sink or AWS must not send
a check of this very container's loopback port elsewhere.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from cwconsumer.commands import EXIT_ERROR, EXIT_OK
from cwconsumer.config import load_admin_addr

HEALTHCHECK_TIMEOUT_S = 5


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """0 when ``/healthz`` answers 200 (with ``--standby-ok`` a standby counts),
    1 otherwise; 2 when ``CWC_ADMIN_ADDR`` is not an address."""
    addr = load_admin_addr(environ)
    if addr is None:
        print("cwconsumer: CWC_ADMIN_ADDR is off; no health endpoint", file=sys.stderr)
        return EXIT_ERROR
    url = health_url(addr)
    if getattr(args, "standby_ok", False):
        url += "?standby=ok"  # a standby counts as healthy for this check
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=HEALTHCHECK_TIMEOUT_S) as resp:
            print(resp.read().decode(errors="replace"))
            return EXIT_OK if resp.status == 200 else EXIT_ERROR
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(errors="replace"))
        return EXIT_ERROR
    except OSError as exc:
        print(f"cwconsumer: {url}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def health_url(addr: tuple[str, int]) -> str:
    """The ``/healthz`` URL of a run listening on ``addr``: a wildcard
    address (all interfaces) is asked on the loopback."""
    host, port = addr
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
