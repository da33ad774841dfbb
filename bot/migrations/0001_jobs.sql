-- One row per /animate command, written before the interaction is acknowledged.
-- `state` follows the machine in bot/jobs.py; every change is `UPDATE … WHERE id = ? AND state = ?`.
CREATE TABLE jobs (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    -- A gateway redelivery of the same interaction must not become a second job.
    interaction_id       TEXT    NOT NULL UNIQUE,
    guild_id             TEXT,
    channel_id           TEXT    NOT NULL,
    user_id              TEXT    NOT NULL,
    state                TEXT    NOT NULL,
    -- The command's options as JSON (prompt, negative_prompt, duration, audio, voice_ids, attachments).
    params               TEXT    NOT NULL,
    -- Largest file the channel accepts, from the interaction (attachment_size_limit).
    upload_limit         INTEGER NOT NULL DEFAULT 10485760,
    start_image_url      TEXT,
    end_image_url        TEXT,
    request_id           TEXT,
    progress_message_id  TEXT,
    result_message_id    TEXT,
    video_url            TEXT,
    video_size           INTEGER,
    -- How the job ended when it did not deliver: a code, the member-facing text, whether retrying helps.
    error_code           TEXT,
    error_message        TEXT,
    retryable            INTEGER,
    -- 1 once the member has been told how a failed/cancelled/uncertain job ended.
    notified             INTEGER NOT NULL DEFAULT 0,
    cost_credits         INTEGER NOT NULL DEFAULT 0,
    created_at           REAL    NOT NULL,
    updated_at           REAL    NOT NULL,
    submitted_at         REAL,
    finished_at          REAL,
    -- The job is cancelled if it has not finished by then (configurable maximum lifetime).
    deadline             REAL    NOT NULL
);

CREATE INDEX jobs_open ON jobs (state)
    WHERE state NOT IN ('delivered', 'failed', 'cancelled', 'refused', 'uncertain');
CREATE INDEX jobs_unnotified ON jobs (notified) WHERE notified = 0;
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_request ON jobs (request_id);

-- Every transition, for the operator's eyes and for tests that check no state was skipped.
CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    at         REAL    NOT NULL,
    detail     TEXT
);
CREATE INDEX job_events_job ON job_events (job_id);

-- Small facts the bot keeps between runs (for instance the hash of the synced command tree).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
