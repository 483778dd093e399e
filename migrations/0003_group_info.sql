-- cwconsumer schema, version 3: what CloudWatch Logs says about each group read.

-- From DescribeLogGroups, refreshed hourly by the running service
-- (cwconsumer/groupinfo.py); `status` shows them without calling AWS.
CREATE TABLE group_info (
    name             TEXT PRIMARY KEY,  -- the group's key: its name, or its ARN
    log_class        TEXT,              -- logGroupClass (NULL: not reported, i.e. STANDARD)
    data_protection  TEXT,              -- dataProtectionStatus (NULL: no policy)
    retention_days   INTEGER,           -- retentionInDays (NULL: never expire)
    checked_ms       INTEGER NOT NULL   -- when it was read
) WITHOUT ROWID;
