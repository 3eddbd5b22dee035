-- Users erased (GDPR/CCPA) by opaque id and time, so deliveries already holding a page of
-- profiles learn of an erasure within a heartbeat and skip the user.
CREATE TABLE erasures (
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    erased_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX erasures_by_time ON erasures (tenant_id, erased_at_ms);
