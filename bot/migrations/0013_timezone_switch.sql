-- A server's time zone changes only at a period boundary (issue 18, item 1): an admin who moved the
-- zone to where midnight had just passed started a fresh period for every member, again and again.
-- `timezone` stays the zone in force; a change waits in `pending_timezone` until `pending_timezone_at`
-- (the end of the period then running, epoch seconds), and `timezone_since` records when the zone in
-- force took over, where its first period begins (bot/quota/rules.py: zone_in_force, policy_bounds).
ALTER TABLE quota_guild_settings ADD COLUMN timezone_since REAL;
ALTER TABLE quota_guild_settings ADD COLUMN pending_timezone TEXT;
ALTER TABLE quota_guild_settings ADD COLUMN pending_timezone_at REAL;
