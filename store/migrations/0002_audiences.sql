-- Audiences beyond explicit lists: followers and segments, plus the profile fields push and
-- scheduling need. Portable SQL, like 0001: it runs unchanged on SQLite and PostgreSQL.

-- Both nullable: rows written before this migration have neither. `devices` is a JSON array of
-- {"platform", "token"} objects; NULL means none.
ALTER TABLE users ADD COLUMN timezone TEXT;
ALTER TABLE users ADD COLUMN devices TEXT;

-- Who follows whom. Followers need not have a user row (they may be created later or deleted):
-- the resolver counts those as suppressed. The primary key is also the index the resolver pages
-- through: every follower of (tenant_id, user_id) in follower_id order.
CREATE TABLE follows (
    tenant_id      TEXT NOT NULL REFERENCES tenants (tenant_id),
    user_id        TEXT NOT NULL,
    follower_id    TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, follower_id)
);

CREATE TABLE segments (
    tenant_id      TEXT NOT NULL REFERENCES tenants (tenant_id),
    segment_id     TEXT NOT NULL,
    name           TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, segment_id)
);

-- As with follows, members need not have a user row, and the primary key is the paging index.
CREATE TABLE segment_members (
    tenant_id      TEXT NOT NULL,
    segment_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, user_id),
    FOREIGN KEY (tenant_id, segment_id) REFERENCES segments (tenant_id, segment_id)
);
