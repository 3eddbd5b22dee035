-- A request sent with send_at or delay_seconds: when it runs (milliseconds since the epoch),
-- moved by a reschedule; NULL for a request that ran at once. Its state is 'scheduled' until then.
ALTER TABLE requests ADD COLUMN run_at_ms BIGINT;
