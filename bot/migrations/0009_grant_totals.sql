-- Bonus credits a server's admins granted per operator period, bounded by QUOTA__GUILD_GRANT_CREDITS
-- (issue 18). The ledger keeps every grant; this row is what makes the bound hold under concurrency on
-- PostgreSQL as on SQLite: a grant adds to it with one conditional upsert (bot/store/ledger.py), which
-- the database serialises on the row, so two grants can never both see the room that only one fits in.
CREATE TABLE quota_grant_totals (
    guild_id     TEXT    NOT NULL,
    -- The operator's period that holds the grants (its start, epoch seconds in QUOTA__TIMEZONE).
    period_start REAL    NOT NULL,
    credits      INTEGER NOT NULL CHECK (credits >= 0),
    PRIMARY KEY (guild_id, period_start)
);
