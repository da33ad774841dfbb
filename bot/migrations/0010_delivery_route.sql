-- How a job's messages reach the member (issue 20 item 4): 'channel' (the bot's own posts there, the DM
-- as fallback) or 'interaction' (the bot cannot post in the channel: a DM, a group DM, a member's own
-- install in a server without the bot; progress and video go through the interaction while its token
-- lives, then the DM). Kept so a restarted bot never posts such a job in its channel.
ALTER TABLE jobs ADD COLUMN deliver_via TEXT NOT NULL DEFAULT 'channel';
