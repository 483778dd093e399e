"""The consumer's own logs: one JSON object per line on stderr (or text for
humans), with secrets masked in the finished line.

Masking happens on the formatted line, so it covers the message, every extra
field (also inside nested values), and tracebacks alike. Masked are:

- every known secret (sink password and token, the Basic credential, values
  of sensitive ``CWC_SINK_HEADERS``, AWS secret key and session token), also
  in their JSON-escaped and URL-encoded forms;
- credentials after an HTTP auth scheme (``Bearer …``, ``Basic …``,
  ``Splunk …``) and after ``password=`` / ``token:``-like keys, whatever their
  value: a sink that echoes our request headers in its answer must not put a
  credential in our log, even one we do not know about.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import orjson

from cwconsumer.secrets import SENSITIVE_WORDS, header_is_secret, url_secrets

if TYPE_CHECKING:
    from cwconsumer.config import Config

MASK = "***"
_MIN_SECRET = 4
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
# A credential after an auth scheme: 8+ characters with a digit or a base64
# symbol, or 16+ characters; never a plain word ("Basic authentication",
# "Token Rejected" stay readable).
_SCHEME_CREDENTIAL = re.compile(
    r"\b(Bearer|Basic|Splunk|Token)(\s+)"
    r"(?![A-Za-z][a-z]{0,14}\b)"
    r"((?=[A-Za-z0-9._~-]*[0-9+/=])[A-Za-z0-9._~+/=-]{8,}|[A-Za-z0-9._~+/=-]{16,})"
)
# ``name=value`` / ``"name": "value"`` in free text, for every name the one
# sensitive-name pattern (cwconsumer.secrets) recognises.
_KEY_VALUE = re.compile(
    r"(?i)\b([A-Za-z0-9_-]*(?:" + "|".join(SENSITIVE_WORDS) + r")[A-Za-z0-9_-]*)"
    r"([\"']?\s*[:=]\s*[\"']?)(?!\*\*\*|(?:Bearer|Basic|Splunk|Token)\b)([^\s\"',;&]{6,})"
)
_AWS_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class Redactor:
    """Masks secrets in text. One per process (:data:`REDACTOR`); secrets are
    only ever added."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def add(self, values: Iterable[str | None]) -> None:
        """Mask these values (and their JSON-escaped and URL-encoded forms)
        from now on. Values shorter than 4 characters are ignored."""
        found = set(self.secrets)
        for value in values:
            if not value or len(value) < _MIN_SECRET:
                continue
            found.add(value)
            found.add(orjson.dumps(value).decode()[1:-1])
            found.add(quote(value, safe=""))
            found.add(quote_plus(value, safe=""))
        self.secrets = sorted(found, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every secret and every credential-looking value masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _SCHEME_CREDENTIAL.sub(rf"\1\2{MASK}", text)
        return _KEY_VALUE.sub(rf"\1\2{MASK}", text)


REDACTOR = Redactor()
"""The process-wide redactor used by the log formatters, the admin server and
the commands' output."""


def secrets_of(cfg: Config) -> list[str]:
    """Every secret value that ``cfg`` and the AWS environment hold, in the
    forms they may show up in."""
    out: list[str] = []
    password = cfg.sink_password.get() if cfg.sink_password else None
    if password:
        out.append(password)
    if cfg.sink_username is not None and password is not None:
        pair = f"{cfg.sink_username}:{password}".encode()
        out.append(base64.b64encode(pair).decode())
    if cfg.sink_token:
        out.append(cfg.sink_token.get())
    if cfg.aws_external_id:
        out.append(cfg.aws_external_id.get())
    out.extend(v for k, v in cfg.sink_headers if header_is_secret(k, v))
    out.extend(url_secrets(cfg.sink_url))  # every query value of the sink URL
    out.extend(aws_secrets())
    return out


def aws_secrets() -> list[str]:
    """The AWS secret key and session tokens set in the environment, to keep out of logs."""
    return [v for v in (os.environ.get(name) for name in _AWS_SECRET_VARS) if v]


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``,
    ``message``, the ``extra`` fields, and ``error`` with a traceback."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, known secrets replaced."""
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["error"] = record.exc_text
        return self.redactor.scrub(orjson.dumps(doc, default=str).decode())


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL message  key=value ...`` for people at a terminal."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text (a traceback on the lines after), known secrets replaced."""
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return self.redactor.scrub(line)


def setup(
    level: str = "INFO",
    fmt: str = "json",
    secrets: Iterable[str | None] = (),
    *,
    config: Config | None = None,
) -> None:
    """Send logs to stderr in ``fmt`` (``json`` or ``text``): cwconsumer's
    at ``level``, libraries' at WARNING and above. Masks ``secrets``, the
    secrets of ``config`` and the AWS secrets in the environment."""
    REDACTOR.add(secrets)
    REDACTOR.add(aws_secrets())
    if config is not None:
        REDACTOR.add(secrets_of(config))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("cwconsumer").setLevel(level)
    # Libraries speak at WARNING and above only; botocore would log request
    # details (never secrets, but a lot) at DEBUG.
    for noisy in ("botocore", "aiobotocore", "aiohttp", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
