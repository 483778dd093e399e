"""The checkpoint database itself: paths that cannot be used, files that are
not ours (left byte for byte untouched), databases from a newer version, and
the journal mode (WAL on local disks, the rollback journal on network file
systems such as EFS/NFS where WAL does not work, or as CWC_DB_JOURNAL_MODE
says)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from cwconsumer.store import Store, detect_journal_mode
from tests.conftest import Product, wait_until
from tests.support.fakecwl import FakeCloudWatchLogs
from tests.support.fakesinks import RecordingSink
from tests.support.harness import fake_env, log_records, run_cli


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def journal_byte(path: Path) -> int:
    """SQLite header byte 18: 1 = rollback journal, 2 = WAL."""
    return path.read_bytes()[18]


def env_for(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CWC_", "AWS_"))}
    env.update(
        CWC_DB_PATH=str(db),
        CWC_SINK_URL="http://127.0.0.1:9",
        CWC_LOG_GROUPS="/g",
        CWC_ADMIN_ADDR="off",
        CWC_LOG_FORMAT="json",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        **extra,
    )
    return env


def _lock(path: Path) -> bool:
    """Make ``path`` unwritable for this process: mode bits, or for root (whom
    mode bits do not stop) the immutable attribute. False if impossible here."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        return True
    try:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    except OSError:
        return False
    return done.returncode == 0


def _unlock(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
    path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a directory, a file) this process may not write."""
    d, f = tmp_path / "locked", tmp_path / "theirs.db"
    d.mkdir()
    f.write_bytes(b"")
    if not (_lock(d) and _lock(f)):
        _unlock(d)
        pytest.skip("cannot make a path unwritable here (root without chattr)")
    yield d, f
    _unlock(d)
    _unlock(f)


def test_a_path_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    db = blocker / "state" / "cwc.db"
    for command in ("run", "check"):
        r = run_cli(env_for(db), command)
        out = r.stdout + r.stderr
        assert r.returncode == 2, out
        assert f"cannot create '{db}'" in out and "CWC_DB_PATH" in out and "Traceback" not in out
    assert blocker.read_text() == "not a directory"


def test_a_path_that_cannot_be_written_is_a_configuration_error(
    locked: tuple[Path, Path],
) -> None:
    directory, theirs = locked
    r = run_cli(env_for(directory / "sub" / "cwc.db"), "run")
    assert r.returncode == 2, r.stderr
    assert f"CWC_DB_PATH: directory '{directory}' is not writable" in r.stderr
    r = run_cli(env_for(theirs), "run")
    assert r.returncode == 2, r.stderr
    assert f"CWC_DB_PATH: database file '{theirs}' is not readable and writable" in r.stderr
    assert list(directory.iterdir()) == [] and theirs.read_bytes() == b""


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.commit()
    conn.close()


def _garbage(path: Path) -> None:
    path.write_bytes(b"%PDF-1.7\n" + os.urandom(5000))


def _corrupt(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8176))


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_garbage, "is not an SQLite database (left untouched"),
        (_corrupt, "is not a usable SQLite database"),
        (_foreign, "is an SQLite database of another program (tables: invoices); left untouched"),
    ],
    ids=["garbage", "corrupt", "foreign"],
)
def test_a_file_that_is_not_ours_is_refused_and_left_byte_for_byte_untouched(
    tmp_path: Path, make: Callable[[Path], None], says: str
) -> None:
    db = tmp_path / "cwc.db"
    make(db)
    before = digest(db)
    for command in (["run"], ["status"], ["dead-letters"]):
        r = run_cli(env_for(db), *command)
        assert r.returncode == 1, (command, r.stdout, r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        assert str(db) in last and says in last, (command, last)
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwc.db"], "journal files were created"


def test_a_database_written_by_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "cwc.db"

    async def create() -> None:
        store = await Store.open(str(db), "delete")
        await store.aclose()

    anyio.run(create)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_version VALUES (99, 0, '0099_future.sql')")
    conn.commit()
    conn.close()
    before = digest(db)
    r = run_cli(env_for(db), "run")
    assert r.returncode == 1
    assert "was written by a newer cwconsumer (schema 99" in r.stderr.strip().splitlines()[-1]
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwc.db"]


def _run_briefly(
    fake: FakeCloudWatchLogs, sink: RecordingSink, db: Path, log: Path, **extra: str
) -> dict[str, object]:
    product = Product(fake_env(fake, sink.url, db, CWC_LOG_GROUPS="/g", **extra), log)
    product.start()
    try:
        wait_until(lambda: "streams found" in product.logs(), 20, "the run to find its stream")
        assert product.terminate() == 0
    finally:
        product.stop_quietly()
    return next(r for r in log_records(product.logs()) if r["message"] == "starting")


def test_journal_mode_is_wal_by_default_delete_when_asked_and_kept_by_readers(
    start_fakecwl: Callable[..., FakeCloudWatchLogs], sink: RecordingSink, tmp_path: Path
) -> None:
    fake = start_fakecwl()
    fake.add_stream("/g", "s")
    wal, rollback = tmp_path / "local" / "cwc.db", tmp_path / "efs" / "cwc.db"
    assert _run_briefly(fake, sink, wal, tmp_path / "wal.log")["journal_mode"] == "wal"
    assert journal_byte(wal) == 2
    started = _run_briefly(
        fake, sink, rollback, tmp_path / "delete.log", CWC_DB_JOURNAL_MODE="delete"
    )
    assert started["journal_mode"] == "delete"
    assert journal_byte(rollback) == 1
    assert not Path(f"{rollback}-wal").exists()

    # Commands that only read or patch keep the file's mode: a `status` run on
    # an EFS database must not switch it to WAL under a running `run`.
    env = fake_env(fake, sink.url, rollback, CWC_LOG_GROUPS="/g")
    for command in (
        ["status", "--json"],
        ["dead-letters"],
        ["reset", "--group", "/g", "--to", "end"],
    ):
        r = run_cli(env, *command)
        assert r.returncode == 0, (command, r.stderr)
        assert journal_byte(rollback) == 1, f"`{' '.join(command)}` changed the journal mode"
    assert not Path(f"{rollback}-wal").exists()
    check = run_cli(env, "check")
    assert "journal delete" in check.stdout, check.stdout


MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1p1 / xfs rw,noatime,attr2,inode64 0 0
127.0.0.1:/ /mnt/efs nfs4 rw,relatime,vers=4.1,rsize=1048576,wsize=1048576,hard,proto=tcp 0 0
/dev/nvme1n1 /mnt/efs/local-cache ext4 rw,relatime 0 0
fs-0123.efs.eu-west-1.amazonaws.com:/ /var/lib/cwc\\040state nfs rw,vers=3 0 0
//filer/share /mnt/smb cifs rw,vers=3.0 0 0
"""


@pytest.mark.parametrize(
    ("db", "mode"),
    [
        ("/var/lib/cwconsumer/state.db", "wal"),  # the image's default on the root disk
        ("/mnt/efs/cwconsumer/state.db", "delete"),  # EFS mounts are nfs4
        ("/mnt/efs/local-cache/state.db", "wal"),  # the longest mount point wins
        ("/var/lib/cwc state/state.db", "delete"),  # mount points with spaces are escaped
        ("/mnt/smb/state.db", "delete"),
        ("/mnt/efsx/state.db", "wal"),  # a prefix of a name is not a mount point
    ],
)
def test_network_file_systems_are_detected_from_the_mount_table(db: str, mode: str) -> None:
    assert detect_journal_mode(db, MOUNTS) == mode
