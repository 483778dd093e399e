"""SQLite edge: migrations, checkpoints, the single-writer lease, dead letters.
The one door to the database: no SQL is written anywhere else.

- :mod:`.database`: :class:`Store`, the open database. Every write made by a
  ``run`` is *fenced*: it happens in one ``BEGIN IMMEDIATE`` transaction that
  first checks the lease still names this process and epoch, so a process
  that lost the lease (it stalled, another took over) can never move a
  checkpoint again. The operator's commands have named methods of their own.
- :mod:`.rows`: the rows, and :class:`CheckpointStore`, what the pipeline's
  stages use (tests above the edge may give them an in-memory one).
- :mod:`.files`: migrations, the journal mode, start-up path checks, what
  ``check`` inspects, and the error translation.

Every sqlite3 error is translated at the edge into :class:`StoreError` with
``retriable`` set where trying again may help (``database is locked``, busy,
``database or disk is full``, I/O errors): the caller retries those within a
bound and stops the process (exit 1, the cause logged) after it. A read-only
or corrupt database is not retriable. No raw ``sqlite3`` exception leaves
this package.
"""

from cwconsumer.model import Commit, DeadLetter
from cwconsumer.store.database import Store
from cwconsumer.store.files import (
    DatabaseFacts,
    detect_journal_mode,
    inspect_database,
    journal_mode_of,
    load_migrations,
    migrations_dir,
    translate,
)
from cwconsumer.store.rows import (
    CheckpointStore,
    DeadLetterRow,
    GroupInfoRow,
    GroupRow,
    LeaseInfo,
    StreamMeta,
    StreamRow,
)

__all__ = [
    "CheckpointStore",
    "Commit",
    "DatabaseFacts",
    "DeadLetter",
    "DeadLetterRow",
    "GroupInfoRow",
    "GroupRow",
    "LeaseInfo",
    "Store",
    "StreamMeta",
    "StreamRow",
    "detect_journal_mode",
    "inspect_database",
    "journal_mode_of",
    "load_migrations",
    "migrations_dir",
    "translate",
]
