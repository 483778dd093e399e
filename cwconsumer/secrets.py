"""What counts as secret, decided once (pure: no I/O).

:data:`SENSITIVE_NAME` is the one pattern for names whose values are secret:
headers (``CWC_SINK_HEADERS``, request headers in details), the keys of a
``key=value`` in free text, and wherever configuration is shown. The sink
URL's query string is treated more strictly: *every* value in it is secret
(signed URLs carry ``?signature=``, ``?sig=``, ``?key=``, ``?api_key=``,
``?token=`` and names nobody can list): it is shown with every value masked,
and :func:`url_secrets` returns the values to mask in every other text (logs,
``/healthz``, ``/stats``, status, errors).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

SENSITIVE_WORDS = (
    "auth",
    "token",
    "key",
    "secret",
    "passw",
    "pwd",
    "cookie",
    "session",
    "signature",
    "credential",
)
SENSITIVE_NAME = re.compile("|".join(SENSITIVE_WORDS), re.IGNORECASE)
"""A header, setting or field name whose value is secret."""


URL_VALUE_MIN_CHARS = 8
"""A sink URL query value this long is secret whatever its name (shorter ones
only under a sensitive name or ``sig``): masking ``json`` or ``true`` in every
log line would hide more than it protects. The URL itself is always shown
with every query value masked."""


def header_is_secret(name: str, value: str) -> bool:
    """Whether a ``CWC_SINK_HEADERS`` value is masked wherever text is shown:
    under a sensitive name, or as long as :data:`URL_VALUE_MIN_CHARS`
    whatever its name (vendors carry API keys in headers no pattern can
    list: ``x-honeycomb-team``, ``X-Scope-OrgID`` tokens, ...)."""
    return bool(SENSITIVE_NAME.search(name)) or len(value) >= URL_VALUE_MIN_CHARS


def _secret_param(name: str) -> bool:
    return bool(SENSITIVE_NAME.search(name)) or name.lower() in ("sig", "sv", "se", "sp")


def url_secrets(url: str) -> list[str]:
    """The values of ``url`` to mask wherever text is shown: the password of
    its user information, and its query values (as written and decoded)."""
    out: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    if parts.password:
        out.extend((parts.password, unquote(parts.password)))
    for raw in parts.query.split("&"):
        name, eq, value = raw.partition("=")
        if not (eq and value):
            continue
        decoded = unquote(value.replace("+", " "))
        if len(decoded) >= URL_VALUE_MIN_CHARS or _secret_param(unquote(name)):
            out.extend((value, decoded))
    return sorted(set(out), key=len, reverse=True)
