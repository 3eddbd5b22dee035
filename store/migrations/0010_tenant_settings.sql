-- Operator administration: API keys get a stable public id (to list and revoke them without
-- the key itself) and an optional label; tenants get settings, starting with their ingest quota.

ALTER TABLE api_keys ADD COLUMN key_id TEXT;
ALTER TABLE api_keys ADD COLUMN label TEXT;
-- Keys issued before this migration get an id derived from their hash (which is not secret:
-- it is the SHA-256 of 192 random bits).
UPDATE api_keys SET key_id = 'key_' || substr(key_hash, 1, 16) WHERE key_id IS NULL;
CREATE UNIQUE INDEX api_keys_by_key_id ON api_keys (key_id);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at_ms);

-- NULL means "use the platform default" (from the API's configuration).
CREATE TABLE tenant_settings (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants (tenant_id),
    ingest_per_second  BIGINT,
    ingest_burst       BIGINT,
    updated_at_ms      BIGINT NOT NULL
);
