-- The language of a job's public messages (progress card, result card, failure notice), chosen when the
-- job is made: the server's preferred locale where the server added the bot, else the member's own
-- (a DM, a member's install). Kept so a job delivered after a restart, long after its interaction is
-- gone, still speaks that language. NULL (jobs from before): the server's preferred locale at delivery.
ALTER TABLE jobs ADD COLUMN locale TEXT;
