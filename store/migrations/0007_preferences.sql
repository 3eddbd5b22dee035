-- User preferences and the per-tenant suppression list. Portable SQL, like 0001: it runs
-- unchanged on SQLite and PostgreSQL. Booleans are 0/1 BIGINTs.

-- One row per rule. `category` is '' for a channel's default and a template category (never
-- empty) for a rule on that category; a category rule overrides its channel's default, and a
-- missing rule allows. Preferences need no user row: products set them before creating users.
-- The primary key is also the index delivery reads through: (tenant, user IN page, channel).
CREATE TABLE preferences (
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    channel        TEXT NOT NULL,
    category       TEXT NOT NULL,
    enabled        BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, channel, category)
);

-- Addresses no channel sends to: email addresses (stored lowercased) and push device tokens
-- (verbatim). The primary key serves both delivery's lookups and the keyset listing.
CREATE TABLE suppressions (
    tenant_id      TEXT NOT NULL,
    channel        TEXT NOT NULL,
    address        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    detail         TEXT,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, channel, address)
);
