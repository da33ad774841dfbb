-- A compensating entry of its own kind, linked to its job: the credits of a paid video that could not
-- be fetched (bot/store/undeliverable.py). Written as an `adjust` without a job before, it left the
-- job counted in /quota's recent spending and in the server's cap. `compensate` rows carry their job,
-- at most one per job (quota_ledger_compensate_once), and are summed with reserves and refunds.
-- (Numbered 0012: 0010 and 0011 may be taken by work merged alongside.)
--
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt with the same rows, ids,
-- indexes and append-only triggers. Its triggers go first, so nothing is deleted row by row.
DROP TRIGGER quota_ledger_no_update;
DROP TRIGGER quota_ledger_no_delete;

CREATE TABLE quota_ledger_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id        TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('reserve', 'commit', 'refund', 'compensate', 'grant', 'adjust')),
    job_id          INTEGER,
    allowance_delta INTEGER NOT NULL DEFAULT 0,
    bonus_delta     INTEGER NOT NULL DEFAULT 0,
    credits         INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0),
    usd_micros      INTEGER NOT NULL DEFAULT 0,
    charged_at      REAL    NOT NULL,
    at              REAL    NOT NULL,
    actor_id        TEXT,
    reason          TEXT,
    CHECK ((kind IN ('reserve', 'commit', 'refund', 'compensate')) = (job_id IS NOT NULL))
);
INSERT INTO quota_ledger_new SELECT id, guild_id, user_id, kind, job_id, allowance_delta, bonus_delta, credits,
    usd_micros, charged_at, at, actor_id, reason FROM quota_ledger;
DROP TABLE quota_ledger;
ALTER TABLE quota_ledger_new RENAME TO quota_ledger;

CREATE UNIQUE INDEX quota_ledger_reserve_once ON quota_ledger (job_id) WHERE kind = 'reserve';
CREATE UNIQUE INDEX quota_ledger_settle_once ON quota_ledger (job_id) WHERE kind IN ('commit', 'refund');
CREATE UNIQUE INDEX quota_ledger_compensate_once ON quota_ledger (job_id) WHERE kind = 'compensate';
CREATE INDEX quota_ledger_member ON quota_ledger (guild_id, user_id, charged_at);
CREATE INDEX quota_ledger_guild ON quota_ledger (guild_id, charged_at, kind, allowance_delta, bonus_delta);
CREATE INDEX quota_ledger_day ON quota_ledger (charged_at, usd_micros);
CREATE INDEX quota_ledger_bonus ON quota_ledger (guild_id, user_id) WHERE bonus_delta != 0;

CREATE TRIGGER quota_ledger_no_update BEFORE UPDATE ON quota_ledger
BEGIN
    SELECT RAISE(ABORT, 'quota_ledger is append-only');
END;

CREATE TRIGGER quota_ledger_no_delete BEFORE DELETE ON quota_ledger
BEGIN
    SELECT RAISE(ABORT, 'quota_ledger is append-only');
END;
