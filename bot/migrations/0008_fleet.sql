-- Several processes on one database (issue 16, bot/fleet.py).
-- A job belongs to the shard of its guild ((guild_id >> 22) % SHARD_COUNT; direct messages: 0): while
-- the process owning that shard lives, only it follows and delivers the job.
ALTER TABLE jobs ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
-- When a dispatcher took the job out of the queue to submit it: the fleet's submit pacer counts these.
ALTER TABLE jobs ADD COLUMN claimed_at REAL;
-- The dispatcher's next job: the first waiting job of each member, on the shards of one process, read
-- from this index alone, in member order (no sort).
CREATE INDEX jobs_queue ON jobs (state, user_id, id, shard, channel_id);
-- Waiting jobs whose lifetime ended, without reading the whole queue.
CREATE INDEX jobs_deadline ON jobs (state, deadline);
-- Fairness weighs each member's jobs submitted in the last day.
CREATE INDEX jobs_user_submitted ON jobs (user_id, submitted_at);
CREATE INDEX jobs_claimed ON jobs (claimed_at);

-- One row per shard: the process that owns it (a random id per process) until `expires_at` (epoch
-- seconds), renewed while it lives. A process killed with SIGKILL stops renewing; the process started
-- in its place takes the shard once the lease has run out, and only then resumes the shard's jobs.
CREATE TABLE shard_leases (
    shard       INTEGER PRIMARY KEY,
    shard_count INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    expires_at  REAL    NOT NULL
);
