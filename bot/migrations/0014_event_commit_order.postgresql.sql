-- /metrics counts each job's queue wait once, from its `submitting` event (bot/store/metrics.py). It
-- read new events by id, but on PostgreSQL ids are handed out before their transactions commit, and
-- commits come in any order (a crowd's records are one statement without the fleet's lock): a scrape
-- that read id 12 while id 11's transaction was still open moved past 11 for good. Each event now also
-- carries the id of the transaction that wrote it; a scrape reads only events of transactions older
-- than every transaction still open (pg_snapshot_xmin), which can no longer gain rows, in the order
-- (xact, id). Existing rows get this migration's transaction id.
ALTER TABLE job_events ADD COLUMN xact BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX job_events_xact ON job_events (xact, id);
