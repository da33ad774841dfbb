-- A Cancel press on a job already at the API, kept until the job ends: the press is handled by the
-- job's own task, so a process killed before the API confirmed the cancel would otherwise forget it,
-- and the restarted bot would deliver (and charge) a video the member was told was being cancelled.
ALTER TABLE jobs ADD COLUMN cancel_reason TEXT;
