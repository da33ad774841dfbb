-- A compensating entry of its own kind, linked to its job (see 0012_ledger_compensate.sql). PostgreSQL
-- changes the two CHECK constraints in place; rows, indexes and the append-only triggers stay.
ALTER TABLE quota_ledger DROP CONSTRAINT quota_ledger_kind_check;
ALTER TABLE quota_ledger ADD CONSTRAINT quota_ledger_kind_check
    CHECK (kind IN ('reserve', 'commit', 'refund', 'compensate', 'grant', 'adjust'));
ALTER TABLE quota_ledger DROP CONSTRAINT quota_ledger_check;
ALTER TABLE quota_ledger ADD CONSTRAINT quota_ledger_check
    CHECK ((kind IN ('reserve', 'commit', 'refund', 'compensate')) = (job_id IS NOT NULL));
CREATE UNIQUE INDEX quota_ledger_compensate_once ON quota_ledger (job_id) WHERE kind = 'compensate';
