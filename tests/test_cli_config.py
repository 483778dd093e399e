"""Bad configuration through the real command line: what only a process can show.

Exit status 2, one line per problem naming the variable (or path), no
traceback, no secret, nothing created on disk, for ``run`` and ``check``, on a
few representative cases. Which setting is wrong and what the line says is
checked in-process, case by case, in ``test_config.py`` (which also runs
``cli.main(["check"])`` for each case these tests used to spawn a process for).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE = {
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "CWC_LOG_GROUPS": "/g",
    "CWC_SINK_URL": "http://127.0.0.1:9/",
    "CWC_ADMIN_ADDR": "off",
}


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, program: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CWC_", "AWS_"))}
    clean.update(env)
    return subprocess.run(
        [*(program or [sys.executable, "-m", "cwconsumer"]), *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("command", "env", "variable"),
    [
        ("run", {"CWC_SINK_FORMAT": "xml"}, "CWC_SINK_FORMAT"),
        ("check", {"CWC_POLL_INTERVAL": "soon"}, "CWC_POLL_INTERVAL"),
    ],
    ids=["run", "check"],
)
def test_bad_configuration_exits_2_naming_the_variable(
    tmp_path: Path, command: str, env: dict[str, str], variable: str
) -> None:
    db = tmp_path / "state" / "cwc.db"
    result = run_cli([command], {**BASE, "CWC_DB_PATH": str(db), **env}, tmp_path)
    assert result.returncode == 2, result.stderr
    out = result.stderr + result.stdout
    assert variable in out
    assert "Traceback" not in out
    assert not db.exists() and not db.parent.exists(), "nothing may be created on disk"
    assert list(tmp_path.iterdir()) == [], "nothing may be created in the working directory"


def test_every_problem_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    db = tmp_path / "state" / "cwc.db"
    env = {
        **BASE,
        "CWC_DB_PATH": str(db),
        "CWC_SINK_URL": "ftp://user:hunter2secret@example.com/",
        "CWC_POLL_INTERVAL": "soon",
        "CWC_BATCH_MAX_BYTES": "-1",
        "CWC_LOG_GROUPS": "",
        "CWC_START_POSITION": "whenever",
    }
    result = run_cli(["run"], env, tmp_path)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    for variable in (
        "CWC_SINK_URL",
        "CWC_POLL_INTERVAL",
        "CWC_BATCH_MAX_BYTES",
        "CWC_LOG_GROUPS",
        "CWC_START_POSITION",
    ):
        assert sum(variable in ln for ln in lines) >= 1, (variable, lines)
    assert len(lines) == 5, lines
    assert "hunter2secret" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == [], "nothing may be created on disk"


def test_unwritable_database_path_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    db = blocker / "sub" / "cwc.db"
    result = run_cli(["run"], {**BASE, "CWC_DB_PATH": str(db)}, tmp_path)
    assert result.returncode == 2
    assert "CWC_DB_PATH" in result.stderr and str(blocker) in result.stderr
    assert "Traceback" not in result.stderr
    assert blocker.read_text() == "a file where a directory should be"
    assert list(tmp_path.iterdir()) == [blocker]


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = run_cli(["frobnicate"], BASE, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_python_dash_m_and_console_script_are_the_same_program(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("cwconsumer")
    if not script.exists():
        pytest.skip(
            f"no console script at {script}: the package is not installed (pip install -e .)"
        )
    for args, status in ((["--version"], 0), (["frobnicate"], 2)):
        by_module = run_cli(args, BASE, tmp_path)
        by_script = run_cli(args, BASE, tmp_path, program=[str(script)])
        assert by_module.returncode == by_script.returncode == status, args
        # Same parser, same name, same words: the usage lists every command.
        assert (by_script.stdout, by_script.stderr) == (by_module.stdout, by_module.stderr)
        assert "cwconsumer" in by_module.stdout + by_module.stderr
