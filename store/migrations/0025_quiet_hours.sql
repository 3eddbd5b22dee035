-- Quiet hours: a user's own daily window (`HH:MM:SS-HH:MM:SS`, local time), the tenant's
-- default for users without one, and the template categories that go out through them anyway
-- (a JSON array of names). A deferred receipt records when it is released.
ALTER TABLE users ADD COLUMN quiet_hours TEXT;
ALTER TABLE tenants ADD COLUMN quiet_hours TEXT;
ALTER TABLE tenants ADD COLUMN quiet_bypass TEXT;
ALTER TABLE receipts ADD COLUMN release_at_ms BIGINT;
-- Whether a tenant's users use quiet hours at all, asked once per request at accept time.
CREATE INDEX users_with_quiet_hours ON users (tenant_id) WHERE quiet_hours IS NOT NULL;
