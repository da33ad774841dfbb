-- A job that ended without a video but that the API may still bill: its submission was uncertain (a
-- timeout or 5xx after sending), or stopping it at the API failed. The member gets the credits back,
-- but the refund leaves the job's USD counted against the operator's daily cap (usd_micros 0 on that
-- refund row, not minus the reserve's), so an API outage cannot let spend pass the cap.
ALTER TABLE jobs ADD COLUMN may_be_billed INTEGER NOT NULL DEFAULT 0;
