-- cwconsumer schema, version 2: bounded discovery walks and stream pruning.

-- When the last complete deep walk of the group started (DescribeLogStreams
-- newest first): the next deep walk stops at streams whose last event is older
-- than this minus CWC_IDLE_GRACE, also after a restart. NULL: never completed.
ALTER TABLE groups ADD COLUMN walked_ms INTEGER;

