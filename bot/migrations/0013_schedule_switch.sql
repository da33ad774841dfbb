-- A server's time zone and period change only at a period boundary (issue 18, item 1): an admin who
-- moved the zone to where midnight had just passed started a fresh period for every member, again and
-- again, and a change from weekly to monthly on the 1st started a month the week's spending was not in.
-- `timezone` and `period` stay the ones in force; a change waits in `pending_timezone` / `pending_period`
-- until `pending_at` (the end of the period then running, epoch seconds), and `switched_at` records when
-- the ones in force took over, where their first period begins (bot/quota/rules.py: schedule_at).
ALTER TABLE quota_guild_settings ADD COLUMN switched_at REAL;
ALTER TABLE quota_guild_settings ADD COLUMN pending_timezone TEXT;
ALTER TABLE quota_guild_settings ADD COLUMN pending_period TEXT CHECK (pending_period IN ('daily', 'weekly', 'monthly'));
ALTER TABLE quota_guild_settings ADD COLUMN pending_at REAL;
