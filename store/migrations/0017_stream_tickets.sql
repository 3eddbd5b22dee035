-- Stream tickets: single-use, short-lived stand-ins for an inbox token in a stream URL
-- (`?ticket=`), bound to the token (by its public id) that asked for them. Only the hash of a
-- ticket is kept; `used_at_ms` is set by the one redemption that succeeds.
CREATE TABLE stream_tickets (
    ticket_hash    TEXT PRIMARY KEY,
    token_id       TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    used_at_ms     BIGINT
);
-- Retention deletes tickets by expiry.
CREATE INDEX stream_tickets_by_expiry ON stream_tickets (expires_at_ms);
