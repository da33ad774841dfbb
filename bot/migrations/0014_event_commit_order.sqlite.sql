-- Nothing on SQLite: its one writer commits events in id order, so /metrics reads them by id
-- (see 0014_event_commit_order.postgresql.sql).
SELECT 1;
