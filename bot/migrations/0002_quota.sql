-- Credits, allowances and the admin tools of /quota-admin. All SQL on these tables is in bot/store/ledger.py.

-- The credit ledger. Append-only: every balance is a sum over these rows, never a counter that can drift.
-- `guild_id` is the server's id, or 'dm' for use in direct messages; one server's rows never count for
-- another (only the operator's USD cap sums across servers).
CREATE TABLE quota_ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id        TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('reserve', 'commit', 'refund', 'grant', 'adjust')),
    job_id          INTEGER,
    -- Signed change to the member's allowance of the period that holds `charged_at` (reserve < 0,
    -- refund > 0, an admin's removal < 0).
    allowance_delta INTEGER NOT NULL DEFAULT 0,
    -- Signed change to the member's bonus pool, which never resets (grant > 0, reserve < 0, refund > 0).
    bonus_delta     INTEGER NOT NULL DEFAULT 0,
    -- The job's price (reserve, commit, refund) or the amount an admin asked for (grant, adjust); for
    -- reports only: balances are sums of the two deltas above.
    credits         INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0),
    -- Signed spend in millionths of a USD (integers stay exact when summed), counted against the
    -- operator's daily cap: reserve > 0, its refund < 0.
    usd_micros      INTEGER NOT NULL DEFAULT 0,
    -- When the credits were taken: a commit or refund repeats its reserve's time, so a refund gives the
    -- credits back to the period (and the UTC day) they were taken from, never to a later one.
    charged_at      REAL    NOT NULL,
    at              REAL    NOT NULL,
    -- The admin behind a grant or adjust.
    actor_id        TEXT,
    reason          TEXT,
    CHECK ((kind IN ('reserve', 'commit', 'refund')) = (job_id IS NOT NULL))
);

-- One reservation per job, and at most one settlement (commit or refund): a second commit or refund of
-- the same job is ignored by the database itself, whatever the code does.
CREATE UNIQUE INDEX quota_ledger_reserve_once ON quota_ledger (job_id) WHERE kind = 'reserve';
CREATE UNIQUE INDEX quota_ledger_settle_once ON quota_ledger (job_id) WHERE kind IN ('commit', 'refund');
-- Every quota check sums a member's period, the server's period and the UTC day: the last two indexes
-- carry the summed columns so those sums never visit the table.
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

-- A server's own settings; NULL = the operator's default. The operator's limits are applied when the
-- settings are read, so lowering a limit in the config file takes effect at once everywhere.
CREATE TABLE quota_guild_settings (
    guild_id         TEXT PRIMARY KEY,
    allowance        INTEGER CHECK (allowance >= 0),
    period           TEXT CHECK (period IN ('daily', 'weekly', 'monthly')),
    cap              INTEGER CHECK (cap >= 0),
    timezone         TEXT,
    cooldown_seconds REAL CHECK (cooldown_seconds >= 0),
    allow_10s        INTEGER,
    allow_audio      INTEGER,
    allow_voices     INTEGER,
    updated_at       REAL NOT NULL
);

-- Per-role allowances; a member with several gets the most generous.
CREATE TABLE quota_role_allowances (
    guild_id   TEXT    NOT NULL,
    role_id    TEXT    NOT NULL,
    credits    INTEGER NOT NULL CHECK (credits >= 0),
    updated_at REAL    NOT NULL,
    PRIMARY KEY (guild_id, role_id)
);

CREATE TABLE quota_blocks (
    guild_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    reason   TEXT,
    actor_id TEXT NOT NULL,
    at       REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- Every admin action, with its details as JSON.
CREATE TABLE quota_audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id  TEXT NOT NULL,
    actor_id  TEXT NOT NULL,
    action    TEXT NOT NULL,
    target_id TEXT,
    details   TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX quota_audit_guild ON quota_audit (guild_id, at);
