"""The operator commands in-process: each reads only the part of the
configuration it needs, through config.py's readers, with their messages
(one line naming the variable, exit 2, nothing created), and a problem
elsewhere in the configuration does not stop it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cwconsumer import cli
from cwconsumer.commands.healthcheck import health_url
from cwconsumer.config import (
    DEFAULT_LEASE_TTL_S,
    load_admin_addr,
    load_existing_db_path,
    load_lease_ttl_s,
)
from cwconsumer.errors import ConfigError


def problems(fn: object, env: dict[str, str]) -> list[str]:
    assert callable(fn)
    with pytest.raises(ConfigError) as info:
        fn(env)
    return info.value.problems


def test_the_database_path_resolves_as_run_resolves_it_and_must_exist(tmp_path: Path) -> None:
    db = tmp_path / "cwc.db"
    assert problems(load_existing_db_path, {"CWC_DB_PATH": str(db)}) == [
        f"CWC_DB_PATH: {db} does not exist yet (start `cwconsumer run` first)"
    ]
    db.write_bytes(b"")
    # Unlike `run`, nothing else is asked of an existing file (a read-only
    # database can still be looked at), and a bad CWC_WORKERS is no concern.
    assert load_existing_db_path({"CWC_DB_PATH": f" {db} ", "CWC_WORKERS": "x"}) == str(db)
    home = Path(os.path.expanduser("~"))
    with pytest.raises(ConfigError) as info:
        load_existing_db_path({"CWC_DB_PATH": "~/surely-not-here/cwc.db"})
    assert str(home / "surely-not-here" / "cwc.db") in info.value.problems[0]


def test_a_database_path_that_cannot_be_one_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    db = tmp_path / "file" / "cwc.db"
    assert problems(load_existing_db_path, {"CWC_DB_PATH": str(db)}) == [
        f"CWC_DB_PATH: cannot create '{db}': '{tmp_path / 'file'}' is not a directory"
    ]


def test_lease_ttl_uses_the_same_reader_as_run() -> None:
    assert load_lease_ttl_s({}) == DEFAULT_LEASE_TTL_S
    assert load_lease_ttl_s({"CWC_LEASE_TTL": "2s", "CWC_LEASE_HEARTBEAT": "x"}) == 2.0
    [line] = problems(load_lease_ttl_s, {"CWC_LEASE_TTL": "soon"})
    assert line.startswith("CWC_LEASE_TTL: ")
    [line] = problems(load_lease_ttl_s, {"CWC_LEASE_TTL": "0s"})
    assert line == "CWC_LEASE_TTL: must be longer than 0, got '0s'"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:9600/healthz"),
        ("127.0.0.1:9700", "http://127.0.0.1:9700/healthz"),
        (":9700", "http://127.0.0.1:9700/healthz"),
        ("0.0.0.0:9700", "http://127.0.0.1:9700/healthz"),
        ("[::]:9700", "http://127.0.0.1:9700/healthz"),
        ("[::1]:9700", "http://[::1]:9700/healthz"),
        ("admin.local:80", "http://admin.local:80/healthz"),
    ],
)
def test_healthcheck_asks_where_run_listens(value: str | None, url: str) -> None:
    env = {} if value is None else {"CWC_ADMIN_ADDR": value}
    addr = load_admin_addr(env)
    assert addr is not None
    assert health_url(addr) == url


def test_healthcheck_with_the_admin_server_off_or_a_bad_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CWC_ADMIN_ADDR", "off")
    assert cli.main(["healthcheck"]) == 1
    assert "CWC_ADMIN_ADDR is off" in capsys.readouterr().err
    monkeypatch.setenv("CWC_ADMIN_ADDR", "::1:9600")
    assert cli.main(["healthcheck"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("cwconsumer: CWC_ADMIN_ADDR: put an IPv6 address in brackets")


def test_status_reset_and_dead_letters_report_a_missing_database_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "none" / "cwc.db"
    monkeypatch.setenv("CWC_DB_PATH", str(db))
    monkeypatch.setenv("CWC_LEASE_TTL", "later")
    for argv in (["status"], ["dead-letters"], ["reset", "--group", "/g", "--to", "end"]):
        assert cli.main(argv) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert (
            line
            == f"cwconsumer: CWC_DB_PATH: {db} does not exist yet (start `cwconsumer run` first)"
        )
    assert list(tmp_path.iterdir()) == []


def test_reset_reports_a_bad_target_and_a_bad_lease_ttl_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cwc.db"
    db.write_bytes(b"")
    monkeypatch.setenv("CWC_DB_PATH", str(db))
    monkeypatch.setenv("CWC_LEASE_TTL", "later")
    assert cli.main(["reset", "--group", "/g", "--to", "yesterday-ish"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["--to", "CWC_LEASE_TTL"]
