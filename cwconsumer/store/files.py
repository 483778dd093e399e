"""The database file: migrations, the journal mode, the path checks made at
start-up, what ``check`` looks at, and the translation of every sqlite3 error
into :class:`~cwconsumer.errors.StoreError` (``retriable`` where trying again
may help). Synchronous: called once at start-up, or in a thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cwconsumer.errors import StoreError

_NETWORK_FS = ("nfs", "nfs4", "efs", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "lustre")
_MIGRATION_NAME = re.compile(r"^(\d+)_[\w.-]+\.sql$")
_RETRIABLE = frozenset(
    {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_PROTOCOL"}
)


def translate(exc: sqlite3.Error, path: str, doing: str) -> StoreError:
    """The project's error for a sqlite3 one: ``retriable`` for the primary
    result codes that can clear by themselves (locked/busy, disk full, I/O),
    not for read-only, corrupt or not-a-database."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    primary = "_".join(name.split("_")[:2])
    retriable = primary in _RETRIABLE or (not name and "locked" in str(exc))
    return StoreError(f"{doing} {path}: {exc}", retriable=retriable)


@contextlib.contextmanager
def edge(path: str, doing: str) -> Iterator[None]:
    """Translate sqlite3 errors raised in the body (awaits included)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc, path, doing) from exc


def file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def migrations_dir() -> Path:
    """Migrations ship inside the package (``cwconsumer/migrations``, a link to
    the top-level ``migrations/`` in the source tree)."""
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(folder: Path | None = None) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every numbered migration, in order."""
    folder = folder or migrations_dir()
    found: list[tuple[int, str, str]] = []
    for path in folder.iterdir():
        m = _MIGRATION_NAME.match(path.name)
        if m:
            found.append((int(m.group(1)), path.name, path.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"migrations in {folder} are not numbered 1..N: {versions}")
    return found


def detect_journal_mode(db_path: str, mounts: str | None = None) -> str:
    """``delete`` on network file systems (EFS/NFS: WAL needs shared memory that
    they do not provide), ``wal`` elsewhere. ``mounts`` is the text of
    /proc/mounts (read from there when None; ``wal`` when it cannot be read)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return "wal"
    target = os.path.realpath(os.path.dirname(os.path.abspath(db_path)))
    best, fstype = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, fstype = mnt, parts[2]
    return "delete" if fstype in _NETWORK_FS or fstype.startswith("nfs") else "wal"


def journal_mode_of(path: str) -> str:
    """The journal mode an existing database file is in (``wal`` or ``delete``)."""
    with open(path, "rb") as fh:
        header = fh.read(20)
    # Header bytes 18/19 are 2 in WAL mode, 1 with a rollback journal.
    return "wal" if len(header) == 20 and header[18] == 2 else "delete"


@dataclass(slots=True)
class DatabaseFacts:
    """What ``check`` found out about a database file (:func:`inspect_database`)."""

    exists: bool
    problem: str | None = None
    version: int = 0
    latest: int = 0
    journal_mode: str = ""
    holder: str | None = None  # "host pid N" while a run holds the lease


INSPECT_LOCK_TIMEOUT_S = 5.0


def inspect_database(path: str, ttl_ms: int) -> DatabaseFacts:
    """For ``check`` (synchronous: run it in a thread): writable, ours, schema
    known to this version, who holds it. Changes nothing: a write transaction
    is opened and rolled back, no migration, no journal mode switch."""
    if not os.path.exists(path):
        return DatabaseFacts(exists=False)
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header and header != b"SQLite format 3\x00":
        return DatabaseFacts(True, f"{path} is not an SQLite database")
    latest = len(load_migrations())
    try:
        conn = sqlite3.connect(
            Path(path).absolute().as_uri() + "?mode=rw",
            uri=True,
            timeout=INSPECT_LOCK_TIMEOUT_S,
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        return DatabaseFacts(True, f"cannot open {path} for writing: {exc}")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "schema_version" not in tables:
            return DatabaseFacts(True, f"{path} belongs to another program (no schema_version)")
        version = 0
        if "schema_version" in tables:
            version = int(
                conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            )
        if version > latest:
            return DatabaseFacts(
                True, f"{path} has schema {version}, newer than this cwconsumer ({latest}); upgrade"
            )
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            return DatabaseFacts(True, f"{path} is not writable: {exc}")
        holder = None
        if "lease" in tables:
            row = conn.execute(
                "SELECT owner, host, pid, heartbeat_ms FROM lease WHERE id = 1"
            ).fetchone()
            if row is not None and row[0] and time.time() * 1000 - row[3] < ttl_ms:
                holder = f"{row[1]} pid {row[2]}"
    except sqlite3.DatabaseError as exc:
        return DatabaseFacts(True, f"{path} is not usable: {exc}")
    finally:
        conn.close()
    return DatabaseFacts(True, None, version, latest, mode, holder)


def prepare_path(path: str, create: bool) -> str:
    """Start-up file checks (synchronous, once): create the directory when
    allowed; refuse a file that is not SQLite rather than overwrite it."""
    path = os.path.abspath(path)
    exists = os.path.exists(path)
    if not exists and not create:
        raise StoreError(f"database {path} does not exist (has `cwconsumer run` been started?)")
    if not exists:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create directory for {path}: {exc.strerror}") from exc
    elif os.path.getsize(path) > 0:
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise StoreError(
                    f"{path} is not an SQLite database (left untouched; "
                    "point CWC_DB_PATH at another file)"
                )
    return path


def split_sql(sql: str) -> list[str]:
    statements: list[str] = []
    buf: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("--")):
            continue
        buf.append(line)
        candidate = "\n".join(buf)
        if stripped.endswith(";") and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            buf = []
    if any(b.strip() for b in buf):
        statements.append("\n".join(buf))
    return statements
