"""The project's own promises about itself: README and CI agree, the
configuration table is complete, the package ships its migrations."""

from __future__ import annotations

import re
from pathlib import Path

from cwconsumer.config import VARIABLES
from cwconsumer.store import load_migrations

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, re.S)


def test_readme_quick_start_has_exactly_two_commands_demo_then_tests() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "cwconsumer demo" in commands[0] and "[demo]" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_as_written() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci.splitlines()


def test_readme_configuration_table_lists_every_variable_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, default, _ in VARIABLES:
        row = next((ln for ln in readme.splitlines() if ln.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} missing from the README configuration table"
        if default:
            assert f"`{default}`" in row, f"{name}: README default differs from {default!r}"


def test_migrations_are_numbered_and_shipped_in_the_package() -> None:
    migrations = load_migrations()
    assert [v for v, _, _ in migrations] == list(range(1, len(migrations) + 1))
    top = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert [name for _, name, _ in migrations] == top
