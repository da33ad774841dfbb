-- Community showcases (issue 11): the server's showcase channel, showcased videos and members' votes.
-- All SQL on these tables is in bot/store/showcases.py.

CREATE TABLE showcase_servers (
    guild_id      TEXT PRIMARY KEY,
    channel_id    TEXT,               -- a text channel or a forum channel
    forum_tag_id  TEXT,               -- the tag every forum post gets (admin-chosen), if any
    auto          INTEGER NOT NULL DEFAULT 0,  -- showcase every finished video (members may opt out)
    weekly_post   INTEGER NOT NULL DEFAULT 0,  -- post /top of the week in the channel
    weekly_day    INTEGER NOT NULL DEFAULT 0,  -- when: 0 = Monday … 6 = Sunday, UTC
    weekly_hour   INTEGER NOT NULL DEFAULT 18, -- and the hour, 0-23 UTC
    last_weekly   REAL,               -- when the weekly post was last made
    updated_at    REAL NOT NULL
);

-- Members who keep their own videos out of auto-showcase.
CREATE TABLE showcase_optouts (
    guild_id  TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    at        REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

CREATE TABLE showcases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    TEXT    NOT NULL,
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    author_id   TEXT    NOT NULL,   -- who asked for the video
    shared_by   TEXT    NOT NULL,   -- who pressed Showcase (or 'auto')
    prompt      TEXT    NOT NULL,
    settings    TEXT    NOT NULL,   -- shown as is, e.g. "5 s · audio"
    channel_id  TEXT,               -- the text channel, or the forum post's thread
    message_id  TEXT,               -- the post; NULL until it is made
    video_url   TEXT,               -- the Discord-hosted copy, for the gallery
    -- Kept equal to the number of rows in showcase_votes by the triggers below, inside the vote's own
    -- transaction: a gallery sorted by votes reads an index instead of counting a million rows.
    vote_count  INTEGER NOT NULL DEFAULT 0,
    created_at  REAL    NOT NULL,
    removed_at  REAL
);
-- A video is showcased at most once while its showcase stands.
CREATE UNIQUE INDEX showcases_job ON showcases (job_id) WHERE removed_at IS NULL;
CREATE INDEX showcases_newest ON showcases (guild_id, id DESC) WHERE removed_at IS NULL;
CREATE INDEX showcases_top ON showcases (guild_id, vote_count DESC, id DESC) WHERE removed_at IS NULL;
CREATE INDEX showcases_author ON showcases (guild_id, author_id, id DESC) WHERE removed_at IS NULL;
CREATE INDEX showcases_recent ON showcases (guild_id, created_at) WHERE removed_at IS NULL;

-- One row per member and showcase: the vote itself. Pressing Vote again deletes it.
CREATE TABLE showcase_votes (
    showcase_id INTEGER NOT NULL REFERENCES showcases (id),
    user_id     TEXT    NOT NULL,
    at          REAL    NOT NULL,
    PRIMARY KEY (showcase_id, user_id)
) WITHOUT ROWID;

CREATE TRIGGER showcase_vote_added AFTER INSERT ON showcase_votes BEGIN
    UPDATE showcases SET vote_count = vote_count + 1 WHERE id = NEW.showcase_id;
END;
CREATE TRIGGER showcase_vote_removed AFTER DELETE ON showcase_votes BEGIN
    UPDATE showcases SET vote_count = vote_count - 1 WHERE id = OLD.showcase_id;
END;

-- /top's most active creators: a server's delivered jobs by time.
CREATE INDEX jobs_guild_created ON jobs (guild_id, created_at);
