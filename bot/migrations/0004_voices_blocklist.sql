-- A server's named voices (/voices) and its prompt block list (/showcase-admin blocklist).
-- All SQL on these tables is in bot/store/voices.py and bot/store/blocklist.py.

-- `name` is what members pick in /animate's voice_1/voice_2; names are unique per server whatever
-- their case, so "Narrator" and "narrator" cannot both exist and confuse a member.
CREATE TABLE voices (
    guild_id  TEXT NOT NULL,
    name      TEXT NOT NULL COLLATE NOCASE,
    voice_id  TEXT NOT NULL,
    added_by  TEXT NOT NULL,
    added_at  REAL NOT NULL,
    PRIMARY KEY (guild_id, name)
);

-- Patterns as the admin typed them (whole words, `*` and `?` wildcards), compared without case.
CREATE TABLE prompt_blocklist (
    guild_id  TEXT NOT NULL,
    pattern   TEXT NOT NULL COLLATE NOCASE,
    added_by  TEXT NOT NULL,
    added_at  REAL NOT NULL,
    PRIMARY KEY (guild_id, pattern)
);
