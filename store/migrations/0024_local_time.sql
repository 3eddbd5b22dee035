-- The zone a tenant's users without one of their own get local-time sends in (an IANA name);
-- NULL falls back to UTC.
ALTER TABLE tenants ADD COLUMN default_timezone TEXT;
