"""The house's rules, checked on the source: SQL only behind the store's
door, the environment read only by config.py and cli.py, pure modules free
of I/O and async imports, no import running back up to the service or the
commands, and no package module far beyond a readable size."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cwconsumer"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "demo" not in p.relative_to(PACKAGE).parts)

SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|PRAGMA)\b")
PURE = (
    "batching",
    "units",
    "model",
    "secrets",
    "arns",
    "errors",
    "parsing",
    "sinks.formats",
    "streams",
)
ASYNC_OR_IO = ("anyio", "asyncio", "aiohttp", "aiobotocore", "aiosqlite", "botocore", "sqlite3")
MAX_LINES = 560  # ~500: a module of one purpose reads in one sitting
TOO_BIG_FOR_NOW: set[str] = set()


def module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_sql_only_in_the_store() -> None:
    outside = [
        module(p)
        for p in SOURCES
        if module(p).split(".")[0] != "store" and SQL.search(p.read_text())
    ]
    assert outside == []


def test_the_environment_is_read_by_config_and_cli_only() -> None:
    """config.py reads the mapping cli.py hands it (os.environ); the commands
    get it from cli.py too. logs.py looks up the AWS secret values to keep
    out of the log, and allocator.py glibc's own GLIBC_TUNABLES, to leave an
    operator's malloc settings alone (neither is configuration)."""
    readers = [module(p) for p in SOURCES if re.search(r"os\.environ|getenv", p.read_text())]
    assert sorted(readers) == ["allocator", "cli", "logs"]


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_nothing_async(name: str) -> None:
    paths = [p for p in SOURCES if module(p) == name or module(p).startswith(name + ".")]
    assert paths, name
    for p in paths:
        bad = {i for i in imports(p) if i.split(".")[0] in ASYNC_OR_IO}
        assert not bad, f"{module(p)} imports {bad}"


def test_no_import_runs_back_up() -> None:
    """Only the run command knows the service; only cli knows the commands."""
    for p in SOURCES:
        mod = module(p)
        found = imports(p)
        if mod not in ("commands.run",):
            assert "cwconsumer.service" not in found, mod
        if not mod.startswith("commands"):
            assert not any(i.startswith("cwconsumer.commands") for i in found), mod
        if mod.startswith("sinks"):
            assert not {i for i in found if i in ("cwconsumer.aws", "cwconsumer.reader")}, mod


def test_modules_stay_readable_in_size() -> None:
    big = {
        str(p.relative_to(PACKAGE)): n
        for p in SOURCES
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert set(big) <= TOO_BIG_FOR_NOW, big
