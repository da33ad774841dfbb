-- PostgreSQL's spelling of 0004_voices_blocklist.sql (see __init__.py).
-- A server's named voices (/voices) and its prompt block list (/showcase-admin blocklist).
-- All SQL on these tables is in bot/store/voices.py and bot/store/blocklist.py.

-- SQLite's NOCASE under the same name, so the store's `COLLATE NOCASE` reads the same on both engines:
-- an ICU collation that ignores case (level 2) for comparisons, keys and ORDER BY. It folds every
-- script's case, where SQLite folds only ASCII.
CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

-- `name` is what members pick in /animate's voice_1/voice_2; names are unique per server whatever
-- their case, so "Narrator" and "narrator" cannot both exist and confuse a member.
CREATE TABLE voices (
    guild_id  TEXT NOT NULL,
    name      TEXT NOT NULL COLLATE NOCASE,
    voice_id  TEXT NOT NULL,
    added_by  TEXT NOT NULL,
    added_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, name)
);

-- Patterns as the admin typed them (whole words, `*` and `?` wildcards), compared without case.
CREATE TABLE prompt_blocklist (
    guild_id  TEXT NOT NULL,
    pattern   TEXT NOT NULL COLLATE NOCASE,
    added_by  TEXT NOT NULL,
    added_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, pattern)
);
