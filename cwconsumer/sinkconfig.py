"""Reading the sink's variables: ``CWC_SINK_URL`` (user:password and secret
query parameters kept as secrets), the token or its file, extra headers, Loki
labels, the Splunk index, the CA file. Problems go to the :class:`Reader`,
one line each naming the variable, never showing a secret."""

from __future__ import annotations

import json
import os
import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from cwconsumer.variables import CONTROL, REDACTED, Reader, Secret, show, split_list

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SPLUNK_INDEX = re.compile(r"[a-z0-9][a-z0-9_-]*")
# Set by the HTTP sender itself; letting an operator override them breaks framing.
_RESERVED_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "host", "connection"}
)
_TOKEN_FILE_LIMIT = 64 * 1024


class _Pairs(list[tuple[str, object]]):
    """A JSON object read as its key/value pairs (keeps duplicate keys visible)."""


def redact_url(url: str) -> str:
    """The URL for display: password replaced by ``***``, credential-like query values too.

    Works on text that is not a valid URL as well. The *last* ``@`` ends the
    user information, so an unencoded ``/`` or ``@`` in a password stays hidden.
    """
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    at = url.rfind("@", start)
    if at != -1:
        user, colon, _ = url[start:at].partition(":")
        url = f"{url[:start]}{user}{':' + REDACTED if colon else ''}{url[at:]}"
    base, question, rest = url.partition("?")
    if not question:
        return url
    query, hash_mark, fragment = rest.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(v for _, v in pairs):
        return url
    # Every value: a signed URL's parameters have names nobody can list.
    query = urlencode([(k, REDACTED if v else v) for k, v in pairs], safe="*")
    return f"{base}?{query}{hash_mark}{fragment}"


def read_sink_url(env: Reader) -> tuple[str, str | None, Secret | None]:
    name = "CWC_SINK_URL"
    raw = env.raw(name)
    if raw is None:
        env.problem(name, "not set (the http:// or https:// URL of the log pipeline)")
        return "", None, None
    shown = show(redact_url(raw))
    if CONTROL.search(raw) or " " in raw:
        env.problem(name, f"must not contain spaces or control characters, got {shown}")
        return "", None, None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        env.problem(name, f"is not a valid URL (check the host and port), got {shown}")
        return "", None, None
    if parts.scheme.lower() not in ("http", "https"):
        env.problem(name, f"must be an http:// or https:// URL, got {shown}")
        return "", None, None
    if not parts.hostname:
        env.problem(name, f"must name a host, got {shown}")
        return "", None, None
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        env.problem(
            name,
            "has an '@' after the host; percent-encode special characters in the user name "
            f"and password ('@' as %40, '/' as %2F), got {shown}",
        )
        return "", None, None
    host_port = parts.netloc.rpartition("@")[2]
    url = urlunsplit((parts.scheme.lower(), host_port, parts.path, parts.query, parts.fragment))
    username = unquote(parts.username) if parts.username else None
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    if password is not None and username is None:
        username = ""
    return url, username, password


def read_token(env: Reader) -> Secret | None:
    token = env.raw("CWC_SINK_TOKEN")
    path = env.raw("CWC_SINK_TOKEN_FILE")
    if token is not None and path is not None:
        env.problem("CWC_SINK_TOKEN_FILE", "cannot be used together with CWC_SINK_TOKEN; set one")
        return None
    name = "CWC_SINK_TOKEN"
    if path is not None:
        name = "CWC_SINK_TOKEN_FILE"
        token, problem = _read_token_file(path)
        if problem is not None:
            env.problem(name, problem)
            return None
    if token is None:
        return None
    if CONTROL.search(token) or not token.isascii():
        where = "the token in the file" if path is not None else "the token"
        env.problem(name, f"{where} contains line breaks, control or non-ASCII characters")
        return None
    return Secret(token)


def _read_token_file(path: str) -> tuple[str | None, str | None]:
    """``(token, None)`` or ``(None, problem)``; the token is stripped of surrounding whitespace."""
    if not os.path.exists(path):
        return None, f"file '{path}' does not exist"
    if not os.path.isfile(path):
        return None, f"'{path}' is not a regular file"
    try:
        with open(path, "rb") as handle:
            data = handle.read(_TOKEN_FILE_LIMIT + 1)
    except OSError as exc:
        return None, f"cannot read file '{path}': {exc.strerror or exc}"
    if len(data) > _TOKEN_FILE_LIMIT:
        return None, f"file '{path}' is larger than 64 KiB; is it really the token file?"
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"file '{path}' is not UTF-8 text"
    if not text:
        return None, f"file '{path}' is empty"
    return text, None


def read_headers(env: Reader, *, has_auth: bool) -> tuple[tuple[str, str], ...]:
    name = "CWC_SINK_HEADERS"
    raw = env.raw(name)
    if raw is None:
        return ()
    try:
        # Pairs, not a dict, so duplicate keys are seen instead of silently collapsed.
        document = json.loads(raw, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        env.problem(
            name,
            'must be a JSON object like {"X-Env": "prod"}: '
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
        )
        return ()
    if not isinstance(document, _Pairs):
        env.problem(name, 'must be a JSON object of strings like {"X-Env": "prod"}')
        return ()
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in document:
        lowered = key.lower()
        if not isinstance(value, str):
            env.problem(name, f"the value of header {show(key)} must be a string")
        elif not _HEADER_NAME.fullmatch(key):
            env.problem(name, f"{show(key)} is not a valid header name")
        elif CONTROL.search(value):
            env.problem(name, f"the value of header {show(key)} contains control characters")
        elif lowered in _RESERVED_HEADERS:
            env.problem(name, f"header {show(key)} is set by cwconsumer and cannot be overridden")
        elif lowered == "authorization" and has_auth:
            env.problem(
                name,
                "header 'Authorization' conflicts with CWC_SINK_TOKEN/CWC_SINK_TOKEN_FILE or "
                "the user:password in CWC_SINK_URL; use one of them",
            )
        elif lowered in seen:
            env.problem(name, f"header {show(key)} is given twice")
        else:
            seen.add(lowered)
            headers.append((key, value))
    return tuple(headers)


def read_loki_labels(env: Reader) -> tuple[tuple[str, str], ...]:
    name = "CWC_LOKI_LABELS"
    labels: dict[str, str] = {}
    for item in split_list(env.raw(name)):
        label, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not label or not value:
            env.problem(name, f"expected name=value pairs separated by commas, got {show(item)}")
        elif not _LABEL_NAME.fullmatch(label):
            env.problem(name, f"label name {show(label)} must match [a-zA-Z_][a-zA-Z0-9_]*")
        elif label.startswith("__"):
            env.problem(name, f"label names starting with '__' are reserved, got {show(label)}")
        elif label in labels:
            env.problem(name, f"label {show(label)} is given twice")
        else:
            labels[label] = value
    return tuple(labels.items())


def read_splunk_index(env: Reader) -> str | None:
    index = env.raw("CWC_SPLUNK_INDEX")
    if index is not None and not _SPLUNK_INDEX.fullmatch(index):
        env.problem(
            "CWC_SPLUNK_INDEX",
            "Splunk index names are lowercase letters, digits, '_' and '-', not starting with "
            f"'_' or '-', got {show(index)}",
        )
        return None
    return index


def read_ca_file(env: Reader) -> str | None:
    name = "CWC_SINK_CA_FILE"
    raw = env.raw(name)
    if raw is None:
        return None
    path = os.path.abspath(os.path.expanduser(raw))
    if not os.path.exists(path):
        env.problem(name, f"file '{path}' does not exist")
    elif not os.path.isfile(path):
        env.problem(name, f"'{path}' is not a regular file")
    elif not os.access(path, os.R_OK):
        env.problem(name, f"file '{path}' is not readable")
    return path
