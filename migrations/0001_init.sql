-- cwconsumer schema, version 1.
-- Checkpoints store the *next* position of a stream (see cwconsumer/model.py: Checkpoint).

CREATE TABLE groups (
    name            TEXT PRIMARY KEY,
    first_seen_ms   INTEGER NOT NULL,  -- when this database first saw the group
    start_time_ms   INTEGER,           -- where streams that existed at first sight start (NULL: their beginning)
    deleted_ms      INTEGER            -- set while the group is gone
) WITHOUT ROWID;

CREATE TABLE streams (
    group_name              TEXT NOT NULL,
    stream_name             TEXT NOT NULL,
    created_ms              INTEGER,           -- creationTime reported by DescribeLogStreams
    token                   TEXT,              -- forward token of the page holding the next undelivered event
    start_time_ms           INTEGER,           -- startTime to use when token is NULL
    skip                    INTEGER NOT NULL DEFAULT 0,   -- events of that page already delivered
    last_ts                 INTEGER,           -- timestamp of the last delivered event
    last_ord                INTEGER NOT NULL DEFAULT -1,  -- its ordinal within that millisecond
    delivered               INTEGER NOT NULL DEFAULT 0,   -- events confirmed by the sink, all time
    dead_lettered           INTEGER NOT NULL DEFAULT 0,
    state                   TEXT NOT NULL DEFAULT 'new',
    last_event_seen_ms      INTEGER,           -- lastEventTimestamp from DescribeLogStreams
    last_ingestion_seen_ms  INTEGER,           -- lastIngestionTime from DescribeLogStreams
    last_read_ms            INTEGER,           -- wall clock when events were last read
    checkpoint_ms           INTEGER,           -- wall clock of the last checkpoint write
    PRIMARY KEY (group_name, stream_name)
) WITHOUT ROWID;

-- Single writer: one row. `epoch` grows at every take-over and fences every write.
CREATE TABLE lease (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    owner         TEXT,
    epoch         INTEGER NOT NULL DEFAULT 0,
    heartbeat_ms  INTEGER NOT NULL DEFAULT 0,
    host          TEXT,
    pid           INTEGER
);
INSERT INTO lease (id, owner, epoch, heartbeat_ms) VALUES (1, NULL, 0, 0);

-- Events the sink refused for good, with its answer.
CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name    TEXT NOT NULL,
    stream_name   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    timestamp_ms  INTEGER NOT NULL,
    document      BLOB NOT NULL,     -- the shipped JSON document
    status        INTEGER,           -- HTTP status of the refusal
    answer        TEXT NOT NULL,     -- the sink's answer (truncated)
    created_ms    INTEGER NOT NULL,
    replayed_ms   INTEGER            -- set when `dead-letters --replay` delivered it
);
CREATE INDEX dead_letters_pending ON dead_letters (replayed_ms, id);
